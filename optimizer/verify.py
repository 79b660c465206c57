"""Independent verifier: re-checks a plan from the plan itself.

It does not read the MILP's variables or expressions. From the plan's numbers,
the instance and the catalog it recomputes accelerators per campus, split
arithmetic, memory and step time (performance model), DP/PP demand per site
pair, link loads from the plan's flows, capacity from module counts, spectrum
per fiber pair, reach, power per campus, capex and targets. `solve` refuses to
emit a plan with any violation.
"""
from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations

import networkx as nx

from . import performance as perf
from .plan import FLOW_ROUNDING_GBPS

TOL = 1e-6


def verify_plan(plan: dict, li) -> list[str]:
    cat, inst = li.catalog, li.instance
    bad: list[str] = []
    P = plan["parallelism"]
    tp, pp, dp, b = P["tp"], P["pp"], P["dp"], P["micro_batch"]
    campuses = {c.name: c for c in li.campuses}
    dom = cat.scale_up_domains[next(iter(campuses.values())).scale_up_domain]
    dims = li.model_dims

    # --- split arithmetic and memory
    if tp * pp * dp != P["accelerators"]:
        bad.append(f"split: tp*pp*dp = {tp * pp * dp} != accelerators {P['accelerators']}")
    if dom.accelerators_per_domain % tp:
        bad.append(f"split: TP {tp} does not divide the scale-up domain ({dom.accelerators_per_domain})")
    if dims.heads % tp:
        bad.append(f"split: TP {tp} does not divide the head count {dims.heads}")
    if dims.global_batch_sequences % (b * dp):
        bad.append(f"split: micro-batch x DP = {b * dp} does not divide the global batch {dims.global_batch_sequences}")
    w = perf.workload_from_instance(li)
    ev = perf.evaluate_split(w, tp, pp, dp, micro_batch=b, interleave=P["interleave"], recompute=P["recompute"])
    if not ev["feasible"]:
        bad.append(f"split: infeasible per the performance model: {ev['reason']}")
    t_single = ev["step_time_s"]
    if not math.isclose(t_single, plan["performance"]["step_time_single_site_s"], rel_tol=1e-6):
        bad.append(f"performance: single-site step {plan['performance']['step_time_single_site_s']} s != model {t_single} s")

    # --- placement
    rep = tp * pp
    total_replicas = 0
    used = {}
    for row in plan["placement"]:
        c = campuses.get(row["campus"])
        if c is None:
            bad.append(f"placement: unknown campus {row['campus']}")
            continue
        acc = row["replicas"] * rep + row["split_pipeline_halves"] * rep // 2
        used[c.name] = acc
        if acc != row["accelerators"]:
            bad.append(f"placement {c.name}: replicas give {acc} accelerators, plan says {row['accelerators']}")
        if acc > li.accelerators_at(c):
            bad.append(f"placement {c.name}: {acc} accelerators > {li.accelerators_at(c)} on site")
        total_replicas += row["replicas"]
    halves = defaultdict(int)
    for sp in plan["split_pipelines"]:
        total_replicas += sp["pipelines"]
        halves[sp["a"]] += sp["pipelines"]
        halves[sp["b"]] += sp["pipelines"]
        if li.region_of[sp["a"]] != li.region_of[sp["b"]]:
            bad.append(f"split pipeline {sp['a']}-{sp['b']} crosses regions")
        if pp % 2:
            bad.append(f"split pipelines need an even PP degree (pp={pp})")
    for row in plan["placement"]:
        if halves[row["campus"]] != row["split_pipeline_halves"]:
            bad.append(f"placement {row['campus']}: {row['split_pipeline_halves']} pipeline halves, split list says {halves[row['campus']]}")
    if total_replicas != dp:
        bad.append(f"placement: {total_replicas} pipelines placed, DP degree is {dp}")

    # --- DCI links: reach, spectrum, fiber pairs, capacity, cost, power
    route_of = {frozenset((r.a, r.b)): r for r in inst.routes}
    power_it = defaultdict(float)
    capex = 0.0
    cap = {}
    for link in plan["dci_links"]:
        r = route_of.get(frozenset((link["a"], link["b"])))
        if r is None:
            bad.append(f"link {link['a']}-{link['b']}: no such route")
            continue
        pairs_total = 0
        cap_link = 0.0
        name = f"{link['a']}-{link['b']}"
        # procurement reads the link row: it must be the sum of its detail rows
        for key in ("wavelengths", "modules", "fiber_pairs"):
            in_detail = sum(d[key] for d in link["detail"])
            if link[key] != in_detail:
                bad.append(f"link {name}: {key} {link[key]} != {in_detail} in its detail rows")
        for d in link["detail"]:
            o = cat.dci_optics[d["module"]]
            # a wavelength needs a module at each end (the BOM puts modules / 2 at each campus)
            if d["modules"] != 2 * d["wavelengths"]:
                bad.append(f"link {name}: {d['modules']} modules of {d['module']} for {d['wavelengths']} wavelengths, "
                           f"which need {2 * d['wavelengths']} (one at each end)")
            if o.reach_km < r.distance_km:
                bad.append(f"link {link['a']}-{link['b']}: {d['module']} reaches {o.reach_km} km < {r.distance_km} km")
            if o.is_dwdm:
                ls = cat.line_systems[d["band_plan"]]
                per_pair = int(ls.usable_ghz // o.spectral_width_ghz)
                if d["wavelengths"] > per_pair * d["fiber_pairs"]:
                    bad.append(f"link {link['a']}-{link['b']}: {d['wavelengths']} x {o.spectral_width_ghz} GHz do not fit {d['fiber_pairs']} pairs of {ls.usable_ghz} GHz")
                amps = max(0, math.ceil(r.distance_km / ls.span_km) - 1)
                term = 2 * d["fiber_pairs"] * ls.terminal_price_usd_per_pair_end + amps * d["fiber_pairs"] * ls.inline_amplifier_price_usd
                iru = ls.fiber_iru_usd_per_pair_km
                for end in (r.a, r.b):
                    power_it[end] += d["fiber_pairs"] * ls.terminal_power_w_per_pair_end
            else:
                if d["fiber_pairs"] != d["wavelengths"]:
                    bad.append(f"link {link['a']}-{link['b']}: grey optics need one pair per wavelength")
                term = 0.0
                iru = min(ls.fiber_iru_usd_per_pair_km for ls in cat.line_systems.values())
            fiber = 0.0 if r.fiber == "existing" else iru * r.distance_km * d["fiber_pairs"]
            capex += 2 * d["wavelengths"] * o.price_usd + term + fiber
            for end in (r.a, r.b):
                power_it[end] += d["wavelengths"] * o.power_w
            pairs_total += d["fiber_pairs"]
            cap_link += d["wavelengths"] * o.rate_gbps
        if pairs_total > r.fiber_pairs_available:
            bad.append(f"link {link['a']}-{link['b']}: {pairs_total} fiber pairs > {r.fiber_pairs_available} available")
        if not math.isclose(cap_link, link["capacity_gbps"], rel_tol=1e-9, abs_tol=1e-6):
            bad.append(f"link {link['a']}-{link['b']}: capacity {link['capacity_gbps']} != modules give {cap_link}")
        cap[frozenset((r.a, r.b))] = cap_link

    # --- traffic: recompute demands from the placement, check flows and loads
    params = perf.parameter_count(dims)
    beta = li.bytes_per_element
    b_loss = inst.job.efficiency_loss_bound
    active = sorted(n for n, a in used.items() if a > 0)
    by_region = defaultdict(list)
    for n_ in active:
        by_region[li.region_of[n_]].append(n_)
    u = inst.network.link_utilization_max
    flow_by_pair = defaultdict(float)
    dp_load = defaultdict(float)
    target_load = defaultdict(float)
    target_by_pair = defaultdict(float)
    # the plan states each flow to FLOW_DECIMALS: a sum of n flows may be off by n half-units
    rounding_on = defaultdict(float)
    for f in plan["flows"]:
        path = f["path"]
        for a, c in zip(path, path[1:]):
            key = frozenset((a, c))
            if key not in route_of:
                bad.append(f"flow {f['between']}: path uses {a}-{c}, which is not a route")
                continue
            rounding_on[key] += FLOW_ROUNDING_GBPS
            if f["kind"] == "inter_region_target":
                target_load[key] += f["gbps"]
            else:
                dp_load[key] += f["gbps"]
        pair = frozenset(f["between"])
        rounding_on[("pair", pair)] += FLOW_ROUNDING_GBPS
        if f["kind"] == "inter_region_target":
            target_by_pair[pair] += f["gbps"]
        else:
            flow_by_pair[pair] += f["gbps"]
        ends = {li.region_of[path[0]], li.region_of[path[-1]]} if f["kind"] != "dp_intra_region" else {path[0], path[-1]}
        if f["kind"] == "dp_intra_region" and ends != set(f["between"]):
            bad.append(f"flow {f['between']}: path ends {path[0]}, {path[-1]}")
        if f["kind"] != "dp_intra_region" and ends != set(f["between"]):
            bad.append(f"flow {f['between']}: path joins regions {sorted(ends)}")
    exposed_intra = 0.0
    for rname, names in by_region.items():
        region_routes = [r for r in inst.routes if li.region_of[r.a] == rname and li.region_of[r.b] == rname]
        scopes = {li.route_scope(r) for r in region_routes}
        bound = b_loss.campus if scopes and scopes == {"campus"} else b_loss.intra_region
        n = len(names)
        for a, c in combinations(names, 2):
            need = perf.dci_required_gbps(perf.hierarchical_dp_bytes_per_site(params, beta, n) / (n - 1), bound * t_single)
            got = flow_by_pair[frozenset((a, c))]
            if got < need * (1 - 1e-6) - 1e-6 - rounding_on[("pair", frozenset((a, c)))]:
                bad.append(f"traffic {a}-{c}: {got:.1f} Gb/s routed < {need:.1f} Gb/s DP sync needs")
            if got > 0:
                exposed_intra = max(exposed_intra, 2 * params * beta / n * 8 / (got * 1e9))
    n_reg = len(by_region)
    exposed_inter = 0.0
    if n_reg > 1:
        inter_bound = b_loss.inter_region - max(
            (b_loss.campus if {li.route_scope(r) for r in inst.routes if li.region_of[r.a] == li.region_of[r.b] == reg.name} == {"campus"}
             else b_loss.intra_region) for reg in inst.regions)
        for ra, rb in combinations(sorted(by_region), 2):
            need = perf.dci_required_gbps(perf.hierarchical_dp_bytes_per_site(params, beta, n_reg) / (n_reg - 1), inter_bound * t_single)
            got = flow_by_pair[frozenset((ra, rb))]
            if got < need * (1 - 1e-6) - 1e-6 - rounding_on[("pair", frozenset((ra, rb)))]:
                bad.append(f"traffic {ra}-{rb}: {got:.1f} Gb/s routed < {need:.1f} Gb/s inter-region DP sync needs")
            if got > 0:
                exposed_inter = max(exposed_inter, 2 * params * beta / n_reg * 8 / (got * 1e9))
    pp_load = defaultdict(float)
    for sp in plan["split_pipelines"]:
        # each direction of the link carries half the boundary's bytes (activations one
        # way, gradients the other)
        rate = perf.dci_required_gbps(perf.pp_bytes_per_pipeline_boundary(dims, dp, beta) / 2, t_single)
        pp_load[frozenset((sp["a"], sp["b"]))] += rate * sp["pipelines"]
    for key in set(dp_load) | set(pp_load) | set(target_load):
        c_ = cap.get(key, 0.0)
        name = "-".join(sorted(key))
        if dp_load[key] > u * c_ * (1 + 1e-6) + 1e-6 + rounding_on[key]:
            bad.append(f"link {name}: DP load {dp_load[key]:.1f} Gb/s > {u:g} x capacity {c_:.0f}")
        if pp_load[key] > u * c_ * (1 + 1e-6) + 1e-6:
            bad.append(f"link {name}: PP load {pp_load[key]:.1f} Gb/s > {u:g} x capacity {c_:.0f}")
        if target_load[key] > c_ * (1 + 1e-6) + 1e-6 + rounding_on[key]:
            bad.append(f"link {name}: target flow {target_load[key]:.1f} Gb/s > capacity {c_:.0f}")
    # a split pipeline's fill/drain crosses its route twice per step: from the instance's
    # distances, not the plan's own figure
    pp_latency, pp_where = 0.0, ""
    for sp in plan["split_pipelines"]:
        r = route_of.get(frozenset((sp["a"], sp["b"])))
        if r is None:
            bad.append(f"split pipeline {sp['a']}-{sp['b']}: no such route")
            continue
        lat = 2 * perf.one_way_latency_s(r.distance_km, inst.network.latency_us_per_km)
        if lat > pp_latency:
            pp_latency, pp_where = lat, f"{r.a}-{r.b}, {r.distance_km:g} km"
    reported = plan["performance"]["exposed_s"]["pp_latency"]
    if not math.isclose(reported, pp_latency, rel_tol=1e-6, abs_tol=1e-12):
        bad.append(f"performance: PP latency plan says {reported * 1e3:.3f} ms, split pipelines give "
                   f"{pp_latency * 1e3:.3f} ms ({pp_where or 'none'})")
    loss = 1 - t_single / (t_single + exposed_intra + exposed_inter + pp_latency)
    widest = b_loss.inter_region if n_reg > 1 else max(b_loss.intra_region, b_loss.campus)
    if loss > widest + 1e-9:
        bad.append(f"efficiency loss {loss:.2%} > bound {widest:.0%}")
    perf_plan = plan["performance"]
    if not math.isclose(perf_plan["efficiency_loss"], loss, rel_tol=1e-6, abs_tol=1e-9):
        bad.append(f"performance: efficiency loss plan says {perf_plan['efficiency_loss']:.4%}, "
                   f"recomputed from the routed flows {loss:.4%}")
    delivered = ev["tokens_per_s"] * (1 - loss)
    if not math.isclose(perf_plan["tokens_per_s"], delivered, rel_tol=1e-6):
        bad.append(f"performance: tokens/s plan says {perf_plan['tokens_per_s']:,.0f}, recomputed {delivered:,.0f}")

    # --- cables
    for c in li.campuses:
        d = cat.scale_up_domains[c.scale_up_domain]
        for cls in d.connection_classes:
            rows = [x for x in plan["cables"] if x["campus"] == c.name and x["connection"] == cls.name]
            need = math.ceil(cls.links_per_accelerator * used.get(c.name, 0) - 1e-9)
            have = sum(x["count"] for x in rows)
            if have < need:
                bad.append(f"cables {c.name}/{cls.name}: {have} < {need} links needed")
            if len({x["type"] for x in rows}) > 1:
                bad.append(f"cables {c.name}/{cls.name}: more than one cable type")
            length = c.fabric_lengths_m.get(cls.name, cls.default_length_m)
            for x in rows:
                cab = cat.cables[x["type"]]
                if cab.reach_m < length or cab.port_gbps != cls.port_gbps or cab.lane_gbps != cls.lane_gbps:
                    bad.append(f"cables {c.name}/{cls.name}: {x['type']} does not fit {length} m at {cls.port_gbps}G/{cls.lane_gbps}G")
                capex += x["count"] * cab.price_usd_per_link
                power_it[c.name] += x["count"] * cab.power_w_per_link

    # --- power and capex
    for c in li.campuses:
        d = cat.scale_up_domains[c.scale_up_domain]
        p = li.campus_pue(c) * (used.get(c.name, 0) * d.domain_power_w / d.accelerators_per_domain + power_it[c.name])
        if p > c.power_budget_mw * 1e6 * (1 + 1e-9) + 1e-3:
            bad.append(f"power {c.name}: {p / 1e6:.3f} MW > budget {c.power_budget_mw} MW")
        reported = plan["totals"]["power_w_by_campus"][c.name]
        if not math.isclose(p, reported, rel_tol=1e-6, abs_tol=1.0):
            bad.append(f"power {c.name}: plan says {reported:.0f} W, recomputed {p:.0f} W")
    if not math.isclose(capex, plan["totals"]["capex_usd"], rel_tol=1e-6, abs_tol=1.0):
        bad.append(f"capex: plan says {plan['totals']['capex_usd']:.0f} USD, recomputed {capex:.0f} USD")
    if inst.budgets.capex_usd is not None and capex > inst.budgets.capex_usd * (1 + 1e-9):
        bad.append(f"capex {capex:,.0f} USD > budget {inst.budgets.capex_usd:,.0f} USD")

    # --- targets
    for region in inst.regions:
        names = {c.name for c in region.campuses}
        target = li.intra_target_pbps(region) * 1e6
        have = sum(v for k, v in cap.items() if k <= names)
        if len(names) > 1 and have < target * (1 - 1e-9):
            bad.append(f"target {region.name}: intra-region capacity {have / 1e6:.3f} Pbit/s < {target / 1e6:g}")
    if len(inst.regions) > 1 and inst.targets.inter_region_pbps > 0:
        g = nx.DiGraph()
        for key, c_ in cap.items():
            a, c = sorted(key)
            g.add_edge(a, c, capacity=c_)
            g.add_edge(c, a, capacity=c_)
        for x, y in combinations(inst.regions, 2):
            h = g.copy()
            for c in x.campuses:
                h.add_edge("__s__", c.name, capacity=math.inf)
            for c in y.campuses:
                h.add_edge(c.name, "__t__", capacity=math.inf)
            flow = nx.maximum_flow_value(h, "__s__", "__t__")
            if flow < inst.targets.inter_region_pbps * 1e6 * (1 - 1e-9):
                bad.append(f"target {x.name}-{y.name}: inter-region capacity {flow / 1e6:.3f} Pbit/s < {inst.targets.inter_region_pbps:g}")
    return bad
