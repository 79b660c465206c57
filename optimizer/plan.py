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


# flows are written to 1 Mb/s (Gb/s to 3 decimals); the verifier allows each flow its
# half-unit of rounding (at 64 campuses four flows rounded up put 640.001 Gb/s on an
# 800G link capped at 0.8, which the solver had filled to 640.000)
FLOW_DECIMALS = 3
FLOW_ROUNDING_GBPS = 0.5 * 10 ** -FLOW_DECIMALS


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
                      "between": [a, b], "path": list(path), "gbps": round(gbps, FLOW_DECIMALS)})

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
    perf_report.update(split_choice(cand, terms, perf_report, pm.candidates))
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
    pp_scope = "campus"
    km = {(l["a"], l["b"]): l["distance_km"] for l in dci_links}
    scope_of = {(l["a"], l["b"]): l["scope"] for l in dci_links}
    for sp in split_pipes:
        lat = 2 * perf.one_way_latency_s(km[(sp["a"], sp["b"])], li.instance.network.latency_us_per_km)
        if lat > pp_latency:
            pp_latency, pp_scope = lat, scope_of[(sp["a"], sp["b"])]
    t_single = cand.step_time_s
    intra_worst = max(intra_s.values(), default=0.0)
    exposed = intra_worst + inter_s + pp_latency
    t = t_single + exposed
    eff = t_single / t
    # loss per distance class: the share of the step each class's exposed phase takes
    # (they add up to efficiency_loss = exposed / step). The intra-region phase is
    # the worst region's, classed as loss_budgets() bounds it: `campus` when all the
    # region's routes are building links; the PP fill/drain by its route's scope.
    loss_by_scope = {"campus": 0.0, "intra_region": 0.0, "inter_region": inter_s / t}
    if intra_s:
        worst_region = max(sorted(intra_s), key=lambda rn: intra_s[rn])
        loss_by_scope[_region_scope(li, worst_region)] += intra_worst / t
    loss_by_scope[pp_scope] += pp_latency / t
    return {
        "step_time_s": t, "step_time_single_site_s": t_single,
        "tokens_per_s": cand.tokens_per_s * eff, "tokens_per_s_single_site": cand.tokens_per_s,
        "mfu": cand.mfu * eff, "mfu_single_site": cand.mfu,
        "efficiency_loss": 1 - eff,
        "exposed_s": {"intra_region": intra_worst, "inter_region": inter_s, "pp_latency": pp_latency},
        "efficiency_loss_by_scope": loss_by_scope,
        "efficiency_loss_bound": li.instance.job.efficiency_loss_bound.model_dump(),
        "active_campuses": len(active), "active_regions": n_regions,
    }


def _region_scope(li, region_name: str) -> str:
    """`campus` if every route inside the region is a building link, else `intra_region`
    (the class whose loss bound the region's DP phase gets, planner.loss_budgets)."""
    names = {c.name for r in li.instance.regions if r.name == region_name for c in r.campuses}
    scopes = {li.route_scope(r) for r in li.instance.routes if r.a in names and r.b in names}
    return "campus" if scopes == {"campus"} else "intra_region"


STEP_TERMS = (("compute", "compute_s"), ("tp", "tp_comm_s"), ("bubble", "bubble_s"), ("pp", "pp_comm_s"),
              ("dp_exposed", "dp_comm_s"), ("optimizer", "optimizer_s"))


def split_choice(cand, terms: dict, perf_report: dict, candidates) -> dict:
    """Why this split: its step-time terms and the faster candidates it beat.

    step_time_terms_s: the single-site terms of the performance model (compute,
    TP collectives, pipeline bubble, PP sends, exposed DP all-reduce, optimizer
    step) plus the DCI phases the plan exposes; they add up to step_time_s.
    faster_candidate_splits: candidates with a higher single-site rate; with a
    proven max-throughput optimum none of them has a feasible plan.
    """
    ex = perf_report["exposed_s"]
    step_terms = {name: float(terms[key]) for name, key in STEP_TERMS}
    step_terms.update({"dci_intra_region": ex["intra_region"], "dci_inter_region": ex["inter_region"],
                       "pp_latency": ex["pp_latency"]})
    faster = [c for c in candidates if c.tokens_per_s > cand.tokens_per_s]
    return {"step_time_terms_s": step_terms,
            "faster_candidate_splits": len(faster),
            "fastest_candidate_tokens_per_s": max((c.tokens_per_s for c in candidates), default=cand.tokens_per_s)}


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

BOM_FIELDS = ["site", "site_kind", "catalog_id", "category", "description", "quantity", "unit_price_usd",
              "extended_price_usd", "power_w"]
_CATEGORY_ORDER = {"dci_optic": 0, "line_system": 1, "cable": 2, "fiber": 3}


def route_site(a: str, b: str) -> str:
    """BOM site of parts along a route (in-line amplifier huts, leased fiber)."""
    return f"{a}|{b}"


def bom_rows(plan: dict, li) -> list[dict]:
    """One row per part and site: catalog id, description, quantity, unit and extended price, power.

    Sites are campuses (DCI modules and line terminals at each end of a route,
    cables) and routes `a|b` (in-line amplifiers along the route, leased fiber).
    A wavelength needs a module at both ends, so a route with w wavelengths puts
    w modules at each of its two campuses. Rows of the same part at the same site
    are merged; extended prices sum to totals.capex_usd.
    """
    cat = li.catalog
    merged: dict[tuple[str, str], dict] = {}

    def add(site, kind, catalog_id, category, description, quantity, unit_price, power_w, extended=None):
        if quantity <= 0:
            return
        row = merged.get((site, catalog_id))
        ext = quantity * unit_price if extended is None else extended
        if row is None:
            merged[site, catalog_id] = {"site": site, "site_kind": kind, "catalog_id": catalog_id,
                                        "category": category, "description": description, "quantity": quantity,
                                        "unit_price_usd": unit_price, "extended_price_usd": ext, "power_w": power_w}
            return
        row["quantity"] += quantity
        row["extended_price_usd"] += ext
        row["power_w"] += power_w
        if description not in row["description"].split("; "):
            row["description"] += "; " + description

    for link in plan["dci_links"]:
        a, b, km = link["a"], link["b"], link["distance_km"]
        for d in link["detail"]:
            o = cat.dci_optics[d["module"]]
            per_end = d["modules"] // 2
            for end in (a, b):
                add(end, "campus", d["module"], "dci_optic",
                    f"{d['module']} {o.rate_gbps:g}G DCI module, {o.reach_km:g} km reach ({o.confidence} price)",
                    per_end, o.price_usd, per_end * o.power_w)
            if d["band_plan"]:
                band = d["band_plan"]
                ls = cat.line_systems[band]
                for end in (a, b):
                    add(end, "campus", f"line-terminal-{band}", "line_system",
                        f"DWDM line terminal (MUX/DEMUX + booster/pre-amp), {band} band, one per lit fiber pair",
                        d["fiber_pairs"], ls.terminal_price_usd_per_pair_end,
                        d["fiber_pairs"] * ls.terminal_power_w_per_pair_end)
                huts = d["inline_amplifier_sites"] * d["fiber_pairs"]
                add(route_site(a, b), "route", f"inline-amplifier-{band}", "line_system",
                    f"in-line amplifier, {band} band, one per lit fiber pair per hut "
                    f"({d['inline_amplifier_sites']} huts over {km:g} km)",
                    huts, ls.inline_amplifier_price_usd, huts * ls.inline_amplifier_power_w)
            if d["fiber_cost_usd"] > 0:
                pair_km = d["fiber_pairs"] * km
                add(route_site(a, b), "route", "fiber-iru-pair-km", "fiber",
                    f"leased fiber pair (IRU), {km:g} km per pair", pair_km,
                    d["fiber_cost_usd"] / pair_km, 0.0, extended=d["fiber_cost_usd"])
    for c in plan["cables"]:
        cab = cat.cables[c["type"]]
        add(c["campus"], "campus", c["type"], "cable",
            f"{c['type']} ({cab.medium}, {cab.reach_m:g} m reach) for {c['connection']} ({c['length_m']:g} m)",
            c["count"], cab.price_usd_per_link, c["power_w"], extended=c["cost_usd"])
    return sorted(merged.values(), key=lambda r: (r["site_kind"] != "campus", r["site"],
                                                 _CATEGORY_ORDER[r["category"]], r["catalog_id"]))


def bom_csv(plan: dict, li) -> str:
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=BOM_FIELDS, lineterminator="\n")
    wr.writeheader()
    for row in bom_rows(plan, li):
        wr.writerow({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def plan_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of the plan `dcopt solve --format json` prints and --out writes.

    A plan (status optimal or feasible) carries every section; a run without a
    plan (infeasible, or no_solution: stopped by the time limit before any plan
    was found) carries status, the explanation and the solver record.
    """
    num = {"type": "number"}
    nnum = {"type": ["number", "null"]}
    s = {"type": "string"}
    integer = {"type": "integer", "minimum": 0}
    nonneg = {"type": "number", "minimum": 0}
    num_map = {"type": "object", "additionalProperties": num}
    link = {"type": "object", "required": ["a", "b", "distance_km", "scope", "module", "wavelengths", "modules",
                                           "fiber_pairs", "capacity_gbps", "demand_gbps", "cost_usd", "power_w"],
            "properties": {"a": s, "b": s, "distance_km": num, "scope": {"enum": ["campus", "intra_region", "inter_region"]},
                           "module": {"type": ["string", "null"]}, "wavelengths": integer,
                           "modules": integer, "fiber_pairs": integer,
                           "capacity_gbps": num, "demand_gbps": num, "utilization": num, "cost_usd": num, "power_w": num,
                           "detail": {"type": "array", "items": {
                               "type": "object",
                               "required": ["module", "band_plan", "wavelengths", "modules", "fiber_pairs",
                                            "capacity_gbps", "cost_usd", "power_w"],
                               "properties": {"module": s, "band_plan": {"type": ["string", "null"]},
                                              "wavelengths": integer, "modules": integer, "fiber_pairs": integer,
                                              "capacity_gbps": num, "cost_usd": num, "power_w": num}}}}}
    cable = {"type": "object", "required": ["campus", "connection", "type", "count", "cost_usd", "power_w"],
             "properties": {"campus": s, "connection": s, "type": s, "count": integer,
                            "cost_usd": num, "power_w": num}}
    placement = {"type": "object", "required": ["campus", "region", "replicas", "accelerators"],
                 "properties": {"campus": s, "region": s, "replicas": integer, "split_pipeline_halves": integer,
                                "accelerators": integer, "accelerators_available": integer,
                                "domains_used": integer}}
    solver = {"type": "object", "required": ["backend", "build_s", "solve_s", "variables", "constraints"],
              "properties": {"backend": {"enum": ["highs", "cbc", "scip", "cpsat"]}, "build_s": num, "solve_s": num,
                             "primary_solve_s": num, "tie_break_solve_s": num, "wall_s": num,
                             "tie_break_gap": {"type": ["number", "null"]},
                             "variables": integer, "constraints": integer}}
    # one change that makes an infeasible instance feasible (optimizer/solving.py): the
    # field in sweep path syntax (null when no single field, e.g. "add accelerators")
    change = {"type": "object", "required": ["kind", "field", "limit", "needed", "unit", "action"],
              "properties": {"kind": s, "where": s, "field": {"type": ["string", "null"]}, "limit": num,
                             "needed": num, "unit": s, "action": s}}
    # step time of the chosen split, s, by term (they add up to performance.step_time_s):
    # the performance model's single-site terms, then the DCI phases the plan exposes
    step_terms = {"type": "object",
                  "required": [name for name, _ in STEP_TERMS] + ["dci_intra_region", "dci_inter_region", "pp_latency"],
                  "additionalProperties": nonneg}
    # share of the step lost to each distance class's exposed sync (adds up to efficiency_loss)
    loss_by_scope = {"type": "object", "required": ["campus", "intra_region", "inter_region"],
                     "properties": {k: nonneg for k in ("campus", "intra_region", "inter_region")}}
    plan_sections = ["objective", "parallelism", "placement", "performance", "dci_links", "cables", "totals"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dcopt plan",
        "description": "Output of `dcopt solve --format json` and plan.json of `--out DIR`. Times (solver.build_s, "
                       "solver.solve_s, its stages, solver.wall_s: the whole solve with plan extraction and "
                       "verification) are the only fields that change between two runs of the same input.",
        "type": "object",
        "required": ["schema_version", "status", "instance", "solver"],
        "properties": {
            "schema_version": {"const": PLAN_SCHEMA_VERSION},
            "instance": s,
            "status": {"enum": ["optimal", "feasible", "infeasible", "no_solution"]},
            "objective": {"type": "object", "required": ["name", "value", "bound", "gap"],
                          "properties": {"name": {"enum": ["max-throughput", "min-cost"]},
                                         "unit": {"enum": ["tokens/s", "USD"]},
                                         "value": nnum, "bound": nnum, "gap": nnum}},
            "parallelism": {"type": "object", "required": ["tp", "pp", "dp", "micro_batch", "accelerators"],
                            "properties": {k: {"type": "integer", "minimum": 1}
                                           for k in ("tp", "pp", "dp", "micro_batch", "accelerators")}
                                        | {"candidates_considered": integer, "candidate_set": s}},
            "placement": {"type": "array", "items": placement},
            "performance": {"type": "object",
                            "required": ["step_time_s", "tokens_per_s", "mfu", "efficiency_loss", "step_time_terms_s",
                                         "efficiency_loss_by_scope", "faster_candidate_splits"],
                            "properties": {**{k: num for k in ("step_time_s", "tokens_per_s", "mfu", "efficiency_loss")},
                                           "step_time_terms_s": step_terms, "efficiency_loss_by_scope": loss_by_scope,
                                           "faster_candidate_splits": integer,
                                           # max-throughput: faster splits that were no candidates
                                           # (more accelerators than power feeds, or no packing)
                                           "faster_splits_without_room": integer,
                                           "fastest_candidate_tokens_per_s": num}},
            "dci_links": {"type": "array", "items": link},
            "cables": {"type": "array", "items": cable},
            "totals": {"type": "object", "required": ["capex_usd", "power_w_by_campus", "intra_region_capacity_gbps",
                                                      "inter_region_capacity_gbps"],
                       "properties": {"capex_usd": num, "capex_usd_by_category": num_map,
                                      "power_w_by_campus": num_map, "accelerators": integer,
                                      "intra_region_capacity_gbps": num_map,
                                      "inter_region_capacity_gbps": num_map}},
            "solver": solver,
            "infeasibility": {"type": "object", "required": ["explanation"],
                              "properties": {"explanation": {"type": "array", "items": s},
                                             "summary": s,
                                             "smallest_changes": {"type": "array", "items": change},
                                             "alternatives": {"type": "array", "items": change},
                                             "proven_minimal": {"type": "boolean"}}},
            "termination": {"type": "object", "required": ["reason"],
                            "properties": {"reason": {"enum": ["time_limit", "solver_stopped"]},
                                           "time_limit_s": nnum, "solver_message": s}},
            "message": s,
        },
        "allOf": [
            {"if": {"properties": {"status": {"enum": ["optimal", "feasible"]}}},
             "then": {"required": plan_sections}},
            {"if": {"properties": {"status": {"const": "infeasible"}}},
             "then": {"required": ["infeasibility"]}},
            {"if": {"properties": {"status": {"const": "no_solution"}}},
             "then": {"required": ["message"]}},
        ],
    }
