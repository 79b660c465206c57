"""Fiber graph facts the planner and the verifier share: which modules and band
plans fit a route, how many channels a pair holds, amplifier huts, candidate
paths (k shortest by km, networkx) for every site pair and region pair.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations, islice

import networkx as nx

from .catalog import Catalog, DciOptic, LineSystem
from .instance import LoadedInstance, Route


@dataclass(frozen=True)
class RouteOption:
    """One way to light a route: a module mode on a band plan (grey optics: band None)."""

    module: str
    band: str | None
    rate_gbps: float
    channels_per_pair: int
    module_price_usd: float
    module_power_w: float
    pair_cost_usd: float        # line terminals at both ends + in-line amplifiers + fiber IRU, per lit pair
    pair_power_w_per_end: float  # line terminal power at each end, per lit pair
    amplifiers_per_pair: int


def route_key(route: Route) -> tuple[str, str]:
    return (route.a, route.b)


def inline_amplifiers(distance_km: float, line: LineSystem) -> int:
    """In-line amplifier huts on a route: one per span beyond the first."""
    return max(0, math.ceil(distance_km / line.span_km) - 1)


def channels_per_pair(optic: DciOptic, line: LineSystem | None) -> int:
    if not optic.is_dwdm:
        return 1
    return int(line.usable_ghz // optic.spectral_width_ghz)


def fiber_cost_usd_per_pair(route: Route, line: LineSystem | None, catalog: Catalog) -> float:
    if route.fiber == "existing":
        return 0.0
    # grey optics lease plain fiber at the cheapest line-system IRU figure
    iru = line.fiber_iru_usd_per_pair_km if line is not None else min(
        ls.fiber_iru_usd_per_pair_km for ls in catalog.line_systems.values())
    return iru * route.distance_km


def route_options(route: Route, catalog: Catalog) -> list[RouteOption]:
    options = []
    bands = route.band_plans or sorted(catalog.line_systems)
    for name in sorted(catalog.dci_optics):
        optic = catalog.dci_optics[name]
        if optic.reach_km < route.distance_km or (route.modules is not None and name not in route.modules):
            continue
        if not optic.is_dwdm:
            options.append(RouteOption(name, None, optic.rate_gbps, 1, optic.price_usd, optic.power_w,
                                       fiber_cost_usd_per_pair(route, None, catalog), 0.0, 0))
            continue
        for band in bands:
            line = catalog.line_systems[band]
            ch = channels_per_pair(optic, line)
            if ch < 1:
                continue
            amps = inline_amplifiers(route.distance_km, line)
            pair_cost = (2 * line.terminal_price_usd_per_pair_end + amps * line.inline_amplifier_price_usd
                         + fiber_cost_usd_per_pair(route, line, catalog))
            options.append(RouteOption(name, band, optic.rate_gbps, ch, optic.price_usd, optic.power_w,
                                       pair_cost, line.terminal_power_w_per_pair_end, amps))
    return options


def dominates(a: RouteOption, b: RouteOption) -> bool:
    """True if every plan using option b on a route can use a instead at no higher cost or power.

    Same band plan (so the same cost and power per lit pair), a faster module
    (r_a >= r_b), at least as much capacity per pair (r_a ch_a >= r_b ch_b), and a
    module no dearer and no hungrier: then w waves of b become ceil(w r_b / r_a) <= w
    waves of a, carrying at least as much on no more pairs (with P = ceil(w / ch_b),
    w r_b / r_a <= P ch_b r_b / r_a <= P ch_a). Options equal in every respect do not
    dominate each other."""
    if a.band != b.band or a == b:
        return False
    no_worse = (a.rate_gbps >= b.rate_gbps and a.rate_gbps * a.channels_per_pair >= b.rate_gbps * b.channels_per_pair
                and a.module_price_usd <= b.module_price_usd and a.module_power_w <= b.module_power_w
                and a.pair_cost_usd <= b.pair_cost_usd and a.pair_power_w_per_end <= b.pair_power_w_per_end)
    better = (a.rate_gbps, a.rate_gbps * a.channels_per_pair, -a.module_price_usd, -a.module_power_w,
              -a.pair_cost_usd, -a.pair_power_w_per_end) != \
             (b.rate_gbps, b.rate_gbps * b.channels_per_pair, -b.module_price_usd, -b.module_power_w,
              -b.pair_cost_usd, -b.pair_power_w_per_end)
    return no_worse and better


def undominated_options(options: list[RouteOption]) -> list[RouteOption]:
    """The options of a route that no other option dominates (order kept). The MILP needs
    only these: dropping the others cannot raise the optimum, and on the benchmark family
    (scripts/bench.py) it leaves 4-6 of the 18-19 options of a short route."""
    return [b for b in options if not any(dominates(a, b) for a in options)]


def fiber_graph(li: LoadedInstance) -> nx.Graph:
    g = nx.Graph()
    for c in li.campuses:
        g.add_node(c.name, region=li.region_of[c.name])
    for i, r in enumerate(li.instance.routes):
        g.add_edge(r.a, r.b, km=r.distance_km, route=i)
    return g


def _k_paths(g: nx.Graph, s, t, k: int) -> list[list[str]]:
    try:
        return [list(p) for p in islice(nx.shortest_simple_paths(g, s, t, weight="km"), k)]
    except nx.NetworkXNoPath:
        return []


def path_routes(g: nx.Graph, path: list[str]) -> list[int]:
    return [g.edges[a, b]["route"] for a, b in zip(path, path[1:])]


def intra_region_paths(li: LoadedInstance) -> dict[tuple[str, str], list[list[str]]]:
    """k shortest paths inside the region's own fiber for every campus pair of a region."""
    g = fiber_graph(li)
    k = li.instance.network.k_paths
    out = {}
    for region in li.instance.regions:
        names = [c.name for c in region.campuses]
        sub = g.subgraph(names)
        for a, b in combinations(names, 2):
            out[(a, b)] = _k_paths(sub, a, b, k)
    return out


def inter_region_paths(li: LoadedInstance) -> dict[tuple[str, str], list[list[str]]]:
    """k shortest paths from any campus of one region to any campus of another."""
    g = fiber_graph(li)
    k = li.instance.network.k_paths
    regions = [r.name for r in li.instance.regions]
    out = {}
    for ra, rb in combinations(regions, 2):
        h = g.copy()
        src, dst = ("__src__", ra), ("__dst__", rb)
        for r in li.instance.regions:
            if r.name == ra:
                for c in r.campuses:
                    h.add_edge(src, c.name, km=0.0)
            elif r.name == rb:
                for c in r.campuses:
                    h.add_edge(c.name, dst, km=0.0)
        paths = []
        for p in _k_paths(h, src, dst, k * 3):
            inner = p[1:-1]
            # a path that re-enters its own region after leaving is never useful
            if inner and inner not in paths:
                paths.append(inner)
            if len(paths) == k:
                break
        # The k shortest paths may all cross on the same long-haul route (detours
        # inside a region are cheap in km), leaving a parallel long-haul route
        # unusable for the target: phoenix-texas needs both of its 48-pair routes
        # for 1 Pbit/s. Add the shortest path through every region-crossing route
        # that no candidate path uses yet.
        for i, r in enumerate(li.instance.routes):
            if li.region_of[r.a] == li.region_of[r.b]:
                continue
            if any(i in path_routes(g, p) for p in paths):
                continue
            via = _shortest_path_through(h, src, dst, r.a, r.b)
            if via is not None and via[1:-1] not in paths:
                paths.append(via[1:-1])
        out[(ra, rb)] = paths
    return out


def _shortest_path_through(h: nx.Graph, s, t, u, v) -> list | None:
    """Shortest simple s-t path in h that traverses edge u-v (either direction)."""
    rest = h.copy()
    rest.remove_edge(u, v)
    best = None
    for x, y in ((u, v), (v, u)):
        try:
            head = nx.shortest_path(rest, s, x, weight="km")
            tail = nx.shortest_path(rest, y, t, weight="km")
        except nx.NetworkXNoPath:
            continue
        path = head + tail
        if len(set(path)) != len(path):
            continue
        km = sum(h.edges[a, b]["km"] for a, b in zip(path, path[1:]))
        if best is None or km < best[0]:
            best = (km, path)
    return None if best is None else best[1]
