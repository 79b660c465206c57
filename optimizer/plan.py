"""Turn a solved planning model into a plan: plain data, JSON, BOM CSV, report.

The plan JSON is the contract procurement code relies on (schema_version,
published with `dcopt schema --plan`).
"""
from __future__ import annotations

import csv
import io
import math
from itertools import combinations

from . import network as net
from . import performance as perf
from .lp import SolveResult
from .planner import GBPS_PER_PBPS, MW, PlanningModel

PLAN_SCHEMA_VERSION = "1.0"


def _r(x: float) -> int:
    return int(round(x))


def extract_plan(pm: PlanningModel, res: SolveResult) -> dict:
    li, cat, inst = pm.li, pm.li.catalog, pm.li.instance
    V, E, F = pm.v, pm.e, pm.facts
    val = res.value
    routes = inst.routes
    k = max(range(len(pm.candidates)), key=lambda i: val(V["z"][i]))
    cand = pm.candidates[k]
    w = perf.workload_from_instance(li)
    terms = perf.evaluate_split(w, cand.tp, cand.pp, cand.dp, micro_batch=cand.micro_batch,
                                interleave=cand.interleave, recompute=cand.recompute)

    placement = []
    for c in li.campuses:
        reps = _r(val(V["x"][c.name, k])) if (c.name, k) in V["x"] else 0
        halves = sum(_r(val(var)) for (i, kk), var in V["n"].items()
                     if kk == k and c.name in (routes[i].a, routes[i].b))
        acc = reps * cand.replica_accelerators + halves * (cand.replica_accelerators // 2)
        dom = cat.scale_up_domains[c.scale_up_domain]
        placement.append({
            "campus": c.name, "region": li.region_of[c.name], "replicas": reps,
            "split_pipeline_halves": halves, "accelerators": acc,
            "accelerators_available": li.accelerators_at(c),
            "domains_used": math.ceil(acc / dom.accelerators_per_domain),
        })
    split_pipes = [{"a": routes[i].a, "b": routes[i].b, "pipelines": _r(val(var))}
                   for (i, kk), var in sorted(V["n"].items()) if kk == k and _r(val(var)) > 0]

    # DCI links
    dci_links = []
    g = net.fiber_graph(li)
    for i, r in enumerate(routes):
        rows = []
        for o, opt in enumerate(E["options"][i]):
            wlv = _r(val(V["wavelengths"][i, o]))
            pairs = _r(val(V["pairs"][i, o])) if (i, o) in V["pairs"] else wlv
            # a solver stopped early (or an incomplete tie-break) may light pairs it
            # puts no wavelength on: they are paid for, so the plan lists them
            if wlv == 0 and pairs == 0:
                continue
            line = cat.line_systems[opt.band] if opt.band else None
            fiber_usd = net.fiber_cost_usd_per_pair(r, line, cat) * pairs
            rows.append({
                "module": opt.module, "band_plan": opt.band, "wavelengths": wlv, "modules": 2 * wlv,
                "fiber_pairs": pairs, "capacity_gbps": wlv * opt.rate_gbps,
                "inline_amplifier_sites": opt.amplifiers_per_pair,
                "cost_usd": 2 * wlv * opt.module_price_usd + pairs * opt.pair_cost_usd,
                "fiber_cost_usd": fiber_usd,
                "power_w": 2 * wlv * opt.module_power_w + 2 * pairs * opt.pair_power_w_per_end,
            })
        cap = sum(x["capacity_gbps"] for x in rows)
        dp_load = val(E["dp_load"][i])
        pp_load = sum(pm.candidates[kk].pp_gbps_per_split_pipeline * val(var)
                      for (ri, kk), var in V["n"].items() if ri == i)
        demand = max(dp_load, pp_load)
        dci_links.append({
            "a": r.a, "b": r.b, "distance_km": r.distance_km, "scope": li.route_scope(r),
            "module": "+".join(sorted({x["module"] for x in rows})) or None,
            "wavelengths": sum(x["wavelengths"] for x in rows),
            "modules": sum(x["modules"] for x in rows),
            "fiber_pairs": sum(x["fiber_pairs"] for x in rows),
            "fiber_pairs_available": r.fiber_pairs_available,
            "capacity_gbps": cap, "demand_gbps": round(demand, 3),
            "dp_demand_gbps": round(dp_load, 3), "pp_demand_gbps": round(pp_load, 3),
            "utilization": round(demand / cap, 4) if cap else 0.0,
            "cost_usd": round(sum(x["cost_usd"] for x in rows), 2),
            "power_w": round(sum(x["power_w"] for x in rows), 2),
            "latency_ms": round(perf.one_way_latency_s(r.distance_km, inst.network.latency_us_per_km) * 1e3, 4),
            "detail": rows,
        })

    flows = []
    for key, var in sorted(V["flow"].items(), key=lambda kv: str(kv[0])):
        gbps = val(var)
        if gbps <= 1e-6:
            continue
        kind, a, b, p = key
        path = E["paths"][("intra" if kind == "intra" else "inter", a, b)][p]
        flows.append({"kind": {"intra": "dp_intra_region", "inter": "dp_inter_region",
                               "target": "inter_region_target"}[kind],
                      "between": [a, b], "path": list(path), "gbps": round(gbps, 3)})

    cables = []
    for (cn, cls, t), var in sorted(V["cables"].items()):
        cnt = _r(val(var))
        if cnt == 0:
            continue
        cab = cat.cables[t]
        dom = cat.scale_up_domains[next(c.scale_up_domain for c in li.campuses if c.name == cn)]
        cc = next(x for x in dom.connection_classes if x.name == cls)
        camp = next(c for c in li.campuses if c.name == cn)
        cables.append({"campus": cn, "connection": cls, "type": t, "count": cnt,
                       "length_m": camp.fabric_lengths_m.get(cls, cc.default_length_m),
                       "cost_usd": cnt * cab.price_usd_per_link, "power_w": cnt * cab.power_w_per_link})

    # performance with the provisioned network
    perf_report = network_performance(li, cand, placement, dci_links, flows, split_pipes, F)
    capex_parts = {name: round(val(expr), 2) for name, expr in E["capex_parts"].items()}
    capex = round(sum(capex_parts.values()), 2)
    power = {c.name: round(val(E["power_at"][c.name]), 1) for c in li.campuses}
    intra_cap = {}
    for region in inst.regions:
        names = {c.name for c in region.campuses}
        intra_cap[region.name] = sum(l["capacity_gbps"] for l in dci_links if l["a"] in names and l["b"] in names)
    inter_cap = inter_region_capacity(li, dci_links)

    objective_name = inst.objective
    plan = {
        "schema_version": PLAN_SCHEMA_VERSION,
        "instance": inst.name,
        "status": res.status,
        "objective": {"name": objective_name,
                      "unit": "tokens/s" if objective_name == "max-throughput" else "USD",
                      "value": res.objective, "bound": res.bound, "gap": res.gap},
        "parallelism": {"tp": cand.tp, "pp": cand.pp, "dp": cand.dp, "micro_batch": cand.micro_batch,
                        "interleave": cand.interleave, "recompute": cand.recompute,
                        "accelerators": cand.accelerators, "replica_accelerators": cand.replica_accelerators,
                        "micro_batches_per_pipeline": int(terms.get("micro_batches", 0)),
                        "candidates_considered": len(pm.candidates)},
        "placement": placement,
        "split_pipelines": split_pipes,
        "performance": perf_report,
        "memory": {key: terms[key] for key in terms if key.endswith("_gb")},
        "dci_links": dci_links,
        "flows": flows,
        "cables": cables,
        "totals": {
            "capex_usd": capex, "capex_usd_by_category": capex_parts,
            "power_w_by_campus": power,
            "power_budget_w_by_campus": {c.name: c.power_budget_mw * MW for c in li.campuses},
            "accelerators": sum(p["accelerators"] for p in placement),
            "intra_region_capacity_gbps": intra_cap,
            "inter_region_capacity_gbps": inter_cap,
        },
        "targets": {
            "intra_region_gbps": {r.name: li.intra_target_pbps(r) * GBPS_PER_PBPS for r in inst.regions},
            "inter_region_gbps": inst.targets.inter_region_pbps * GBPS_PER_PBPS,
        },
        "budgets": {"capex_usd": inst.budgets.capex_usd},
    }
    return plan


def network_performance(li, cand, placement, dci_links, flows, split_pipes, facts) -> dict:
    """Step time with the provisioned DCI: single-site step + exposed cross-site phases."""
    params, beta = facts["params"], facts["bytes_per_element"]
    active = {p["campus"] for p in placement if p["accelerators"] > 0}
    region_of = li.region_of
    by_region: dict[str, list[str]] = {}
    for cn in sorted(active):
        by_region.setdefault(region_of[cn], []).append(cn)
    flow_gbps: dict[tuple, float] = {}
    for f in flows:
        if f["kind"] == "inter_region_target":
            continue
        key = tuple(f["between"])
        flow_gbps[key] = flow_gbps.get(key, 0.0) + f["gbps"]
    intra_s = {}
    for rname, names in by_region.items():
        n = len(names)
        worst = 0.0
        for a, b in combinations(names, 2):
            key = (a, b) if (a, b) in flow_gbps else (b, a)
            bytes_pair = 2 * params * beta / n
            rate = flow_gbps.get(key, 0.0)
            worst = max(worst, math.inf if rate <= 0 else bytes_pair * 8 / (rate * 1e9))
        intra_s[rname] = worst
    n_regions = len(by_region)
    inter_s = 0.0
    for ra, rb in combinations(sorted(by_region), 2):
        key = (ra, rb) if (ra, rb) in flow_gbps else (rb, ra)
        rate = flow_gbps.get(key, 0.0)
        bytes_pair = 2 * params * beta / n_regions
        inter_s = max(inter_s, math.inf if rate <= 0 else bytes_pair * 8 / (rate * 1e9))
    pp_latency = 0.0
    km = {(l["a"], l["b"]): l["distance_km"] for l in dci_links}
    for sp in split_pipes:
        pp_latency = max(pp_latency, 2 * perf.one_way_latency_s(km[(sp["a"], sp["b"])], li.instance.network.latency_us_per_km))
    t_single = cand.step_time_s
    exposed = max(intra_s.values(), default=0.0) + inter_s + pp_latency
    t = t_single + exposed
    eff = t_single / t
    return {
        "step_time_s": t, "step_time_single_site_s": t_single,
        "tokens_per_s": cand.tokens_per_s * eff, "tokens_per_s_single_site": cand.tokens_per_s,
        "mfu": cand.mfu * eff, "mfu_single_site": cand.mfu,
        "efficiency_loss": 1 - eff,
        "exposed_s": {"intra_region": max(intra_s.values(), default=0.0), "inter_region": inter_s,
                      "pp_latency": pp_latency},
        "efficiency_loss_bound": li.instance.job.efficiency_loss_bound.model_dump(),
        "active_campuses": len(active), "active_regions": n_regions,
    }


def inter_region_capacity(li, dci_links) -> dict[str, float]:
    """Max flow between every pair of regions over the provisioned capacities."""
    import networkx as nx
    out = {}
    regions = li.instance.regions
    for x in range(len(regions)):
        for y in range(x + 1, len(regions)):
            g = nx.DiGraph()
            for l in dci_links:
                if l["capacity_gbps"] > 0:
                    g.add_edge(l["a"], l["b"], capacity=l["capacity_gbps"])
                    g.add_edge(l["b"], l["a"], capacity=l["capacity_gbps"])
            for c in regions[x].campuses:
                g.add_edge("__s__", c.name, capacity=math.inf)
            for c in regions[y].campuses:
                g.add_edge(c.name, "__t__", capacity=math.inf)
            out[f"{regions[x].name}|{regions[y].name}"] = nx.maximum_flow_value(g, "__s__", "__t__") \
                if g.has_node("__s__") and g.has_node("__t__") else 0.0
    return out


# ------------------------------------------------------------------ outputs

def bom_rows(plan: dict, li) -> list[dict]:
    """One row per part and site: catalog id, description, quantity, prices, power."""
    cat = li.catalog
    rows = []
    for link in plan["dci_links"]:
        site = f"{link['a']}-{link['b']}"
        for d in link["detail"]:
            o = cat.dci_optics[d["module"]]
            rows.append({"site": site, "catalog_id": d["module"], "category": "dci_optic",
                         "description": f"{d['module']} {o.rate_gbps:g}G, {o.reach_km:g} km ({o.confidence} price)",
                         "quantity": d["modules"], "unit_price_usd": o.price_usd,
                         "extended_price_usd": d["modules"] * o.price_usd, "power_w": d["modules"] * o.power_w})
            if d["band_plan"]:
                ls = cat.line_systems[d["band_plan"]]
                rows.append({"site": site, "catalog_id": f"line-terminal-{d['band_plan']}", "category": "line_system",
                             "description": f"MUX/DEMUX + amplifiers, {d['band_plan']} band, per fiber-pair end",
                             "quantity": 2 * d["fiber_pairs"], "unit_price_usd": ls.terminal_price_usd_per_pair_end,
                             "extended_price_usd": 2 * d["fiber_pairs"] * ls.terminal_price_usd_per_pair_end,
                             "power_w": 2 * d["fiber_pairs"] * ls.terminal_power_w_per_pair_end})
                if d["inline_amplifier_sites"]:
                    q = d["inline_amplifier_sites"] * d["fiber_pairs"]
                    rows.append({"site": site, "catalog_id": f"inline-amplifier-{d['band_plan']}", "category": "line_system",
                                 "description": f"in-line amplifier, {d['band_plan']} band, per fiber pair per hut",
                                 "quantity": q, "unit_price_usd": ls.inline_amplifier_price_usd,
                                 "extended_price_usd": q * ls.inline_amplifier_price_usd,
                                 "power_w": q * ls.inline_amplifier_power_w})
            if d["fiber_cost_usd"] > 0:
                rows.append({"site": site, "catalog_id": "fiber-iru-pair-km", "category": "fiber",
                             "description": f"fiber pair IRU, {link['distance_km']:g} km",
                             "quantity": d["fiber_pairs"], "unit_price_usd": d["fiber_cost_usd"] / d["fiber_pairs"],
                             "extended_price_usd": d["fiber_cost_usd"], "power_w": 0})
    for c in plan["cables"]:
        cab = cat.cables[c["type"]]
        rows.append({"site": c["campus"], "catalog_id": c["type"], "category": "cable",
                     "description": f"{c['type']} for {c['connection']} ({c['length_m']:g} m, {cab.medium})",
                     "quantity": c["count"], "unit_price_usd": cab.price_usd_per_link,
                     "extended_price_usd": c["cost_usd"], "power_w": c["power_w"]})
    return rows


def bom_csv(plan: dict, li) -> str:
    buf = io.StringIO()
    fields = ["site", "catalog_id", "category", "description", "quantity", "unit_price_usd",
              "extended_price_usd", "power_w"]
    wr = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    wr.writeheader()
    for row in bom_rows(plan, li):
        wr.writerow({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def plan_json_schema() -> dict:
    num = {"type": "number"}
    nnum = {"type": ["number", "null"]}
    s = {"type": "string"}
    link = {"type": "object", "required": ["a", "b", "distance_km", "scope", "module", "wavelengths", "modules",
                                           "fiber_pairs", "capacity_gbps", "demand_gbps", "cost_usd", "power_w"],
            "properties": {"a": s, "b": s, "distance_km": num, "scope": {"enum": ["campus", "intra_region", "inter_region"]},
                           "module": {"type": ["string", "null"]}, "wavelengths": {"type": "integer"},
                           "modules": {"type": "integer"}, "fiber_pairs": {"type": "integer"},
                           "capacity_gbps": num, "demand_gbps": num, "utilization": num, "cost_usd": num, "power_w": num}}
    cable = {"type": "object", "required": ["campus", "connection", "type", "count", "cost_usd", "power_w"],
             "properties": {"campus": s, "connection": s, "type": s, "count": {"type": "integer"},
                            "cost_usd": num, "power_w": num}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dcopt plan", "type": "object",
        "required": ["schema_version", "status", "objective", "parallelism", "placement", "performance",
                     "dci_links", "cables", "totals", "solver"],
        "properties": {
            "schema_version": {"const": PLAN_SCHEMA_VERSION},
            "status": {"enum": ["optimal", "feasible", "infeasible"]},
            "objective": {"type": "object", "required": ["name", "value", "bound", "gap"],
                          "properties": {"name": s, "value": nnum, "bound": nnum, "gap": nnum}},
            "parallelism": {"type": "object", "required": ["tp", "pp", "dp", "micro_batch", "accelerators"],
                            "properties": {k: {"type": "integer"} for k in ("tp", "pp", "dp", "micro_batch", "accelerators")}},
            "placement": {"type": "array", "items": {"type": "object", "required": ["campus", "accelerators"]}},
            "performance": {"type": "object", "required": ["step_time_s", "tokens_per_s", "mfu", "efficiency_loss"],
                            "properties": {k: num for k in ("step_time_s", "tokens_per_s", "mfu", "efficiency_loss")}},
            "dci_links": {"type": "array", "items": link},
            "cables": {"type": "array", "items": cable},
            "totals": {"type": "object", "required": ["capex_usd", "power_w_by_campus", "intra_region_capacity_gbps",
                                                      "inter_region_capacity_gbps"]},
            "solver": {"type": "object", "required": ["backend", "build_s", "solve_s", "variables", "constraints"]},
        },
    }
