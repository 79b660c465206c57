"""`dcopt evaluate FILE --tp T --pp P --dp D [--placement ...]`: time, memory and traffic of one split.

Exit 0 when the split is feasible, 4 when it is not (the report says which rule,
memory term or capacity fails and by how much), 2 for bad input.

Cross-site figures use the planner's own rules (optimizer/planner.py), so that
what evaluate prints is what the MILP sizes: the share of the single-site step
each DP phase may take comes from planner.loss_budgets, the accelerator bound
from planner.power_limited_accelerators, the split-pipeline latency room from
planner.pp_latency_room, and the traffic formulas from performance.py.
"""
from __future__ import annotations

import json
import re

from . import performance as perf

MW = 1e6
_PLACEMENT_HELP = ("DP replicas per campus, e.g. 'omaha=40,new-albany=88'; 'a+b=K' puts K pipelines with "
                   "half their PP stages at each of two campuses of a region joined by a route; counts sum to --dp")


def register(sub) -> None:
    e = sub.add_parser("evaluate", help="time, memory, MFU and per-link traffic of one parallelism split")
    e.add_argument("file", help="instance file (its model, accelerator and loss bounds are used)")
    e.add_argument("--tp", type=int, required=True, help="tensor-parallel degree (inside one scale-up domain)")
    e.add_argument("--pp", type=int, required=True, help="pipeline-parallel degree (stages)")
    e.add_argument("--dp", type=int, required=True, help="data-parallel degree (pipelines)")
    e.add_argument("--micro-batch", type=int, default=1, help="sequences per micro-batch (default 1)")
    e.add_argument("--interleave", type=int, default=1, help="model chunks per stage, interleaved 1F1B (default 1)")
    e.add_argument("--recompute", choices=perf.RECOMPUTE_MODES, default="selective",
                   help="activation recomputation (default selective)")
    e.add_argument("--distributed-optimizer", action="store_true",
                   help="shard the Adam states over DP (ZeRO-1); default: the instance's job.distributed_optimizer")
    e.add_argument("--placement", help=_PLACEMENT_HELP)
    e.add_argument("--format", choices=["text", "json"], default="text")
    e.set_defaults(func=run)


def run(args) -> int:
    from .cli import EXIT_INFEASIBLE, EXIT_OK
    from .errors import InputError, Problem
    from .instance import load_instance

    bad = [Problem("command line", f"--{name.replace('_', '-')}", f"must be a whole number >= 1 (got {val})")
           for name, val in (("tp", args.tp), ("pp", args.pp), ("dp", args.dp),
                             ("micro_batch", args.micro_batch), ("interleave", args.interleave)) if val < 1]
    if bad:
        raise InputError(bad)
    li = load_instance(args.file)
    placement = parse_placement(li, args.placement, args.tp, args.pp, args.dp) if args.placement else None
    w = perf.workload_from_instance(li)
    if args.distributed_optimizer:
        w = w.replace(distributed_optimizer=True)
    ev = perf.evaluate_split(w, args.tp, args.pp, args.dp, micro_batch=args.micro_batch,
                             interleave=args.interleave, recompute=args.recompute)
    report = build_report(li, w, ev, placement)
    if args.format == "json":
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(render_text(report), end="")
    return EXIT_OK if report["evaluation"]["feasible"] else EXIT_INFEASIBLE


# ---------------------------------------------------------------- capacity

def campus_power_limit(li, campus) -> int:
    """Accelerators a campus can hold: what it has, and what its power budget feeds at the domain's
    power per accelerator times PUE (planner.power_limited_accelerators sums these)."""
    dom = li.catalog.scale_up_domains[campus.scale_up_domain]
    by_power = campus.power_budget_mw * MW / (li.campus_pue(campus) * dom.power_w_per_accelerator)
    return min(li.accelerators_at(campus), int(by_power))


def capacity_check(li, accelerators: int) -> tuple[dict, list[str]]:
    """t·p·d against the accelerators the instance has, what its power budgets feed
    (planner.power_limited_accelerators) and job.max_accelerators."""
    from .planner import power_limited_accelerators

    available = sum(li.accelerators_at(c) for c in li.campuses)
    limited = power_limited_accelerators(li)
    cap = li.instance.job.max_accelerators
    figures = {"accelerators_needed": accelerators, "accelerators_available": available,
               "accelerators_power_limited": limited, "job_max_accelerators": cap}
    reasons = []
    if accelerators > available or accelerators > limited:
        reasons.append(
            f"capacity: the split needs {accelerators:,} accelerators but the instance has {available:,} "
            f"and its campus power budgets let it use at most {limited:,} "
            f"({accelerators - min(available, limited):,} short)")
    if cap is not None and accelerators > cap:
        reasons.append(f"capacity: the split needs {accelerators:,} accelerators, more than job.max_accelerators "
                       f"({cap:,})")
    return figures, reasons


# ---------------------------------------------------------------- placement

def parse_placement(li, text: str, tp: int, pp: int, dp: int) -> dict:
    """--placement 'a=N,b=M,c+d=K' -> {"replicas": {campus: N}, "split_pipelines": {(c, d): K}}, checked
    against the instance (campus names, routes for split pipelines) and the split (counts sum to dp).
    Raises InputError naming the entry and the fix."""
    from .errors import InputError, Problem, did_you_mean

    where = ("command line", "--placement")
    problems: list[str] = []
    names = [c.name for c in li.campuses]
    region_of = li.region_of
    replicas: dict[str, int] = {}
    splits: dict[tuple[str, str], int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        m = re.fullmatch(r"([^=+]+?)\s*(?:\+\s*([^=+]+?))?\s*=\s*(\S+)", entry)
        if not m:
            problems.append(f"'{entry}': expected CAMPUS=COUNT or CAMPUS+CAMPUS=COUNT")
            continue
        a, b, count_text = m.group(1), m.group(2), m.group(3)
        if not re.fullmatch(r"[0-9]+", count_text):
            problems.append(f"'{entry}': the count must be a whole number >= 0 (got '{count_text}')")
            continue
        count = int(count_text)
        unknown = [x for x in (a, b) if x is not None and x not in names]
        for x in unknown:
            problems.append(f"'{entry}': {did_you_mean(x, names)} (the campuses of {li.path})")
        if unknown:
            continue
        if b is None:
            if a in replicas:
                problems.append(f"'{entry}': campus {a} is given twice; give each campus once")
            replicas[a] = count
            continue
        key = tuple(sorted((a, b)))
        if a == b:
            problems.append(f"'{entry}': a split pipeline needs two different campuses")
        elif region_of[a] != region_of[b]:
            problems.append(f"'{entry}': {a} ({region_of[a]}) and {b} ({region_of[b]}) are in different regions; "
                            "pipelines split only inside a region")
        elif _route(li, a, b) is None:
            problems.append(f"'{entry}': no route joins {a} and {b}; split a pipeline across a pair with a route")
        elif key in splits:
            problems.append(f"'{entry}': campus pair {a}+{b} is given twice; give each pair once")
        else:
            splits[key] = count
    if splits and not li.instance.network.allow_split_pipelines:
        problems.append("split pipelines are off in this instance (network.allow_split_pipelines: false); "
                        "place whole replicas")
    if any(splits.values()) and (pp < 2 or pp % 2):
        problems.append(f"a split pipeline puts half its PP stages at each campus: PP must be even (got {pp})")
    total = sum(replicas.values()) + sum(splits.values())
    if not problems and total != dp:
        problems.append(f"the counts sum to {total:,} pipelines but --dp is {dp:,}; place every pipeline once")
    if problems:
        raise InputError([Problem(*where, p) for p in problems])
    return {"replicas": replicas, "split_pipelines": splits}


def _route(li, a: str, b: str):
    return next((r for r in li.instance.routes if {r.a, r.b} == {a, b}), None)


def placement_report(li, ev: dict, placement: dict, intra: dict, inter: float) -> tuple[dict, list[str]]:
    """Accelerators per campus against what it has and powers, split-pipeline latency against the
    room the loss bounds leave, and perf.placement_traffic with the planner's shares."""
    from .planner import pp_latency_room

    T = ev["step_time_s"]
    rep = ev["replica_accelerators"]
    replicas, splits = placement["replicas"], placement["split_pipelines"]
    reasons = []
    campuses = {}
    for c in li.campuses:
        used = rep * replicas.get(c.name, 0) + rep // 2 * sum(n for pair, n in splits.items() if c.name in pair)
        has, limit = li.accelerators_at(c), campus_power_limit(li, c)
        campuses[c.name] = {"accelerators_used": used, "accelerators_available": has,
                            "accelerators_power_limited": limit}
        if used > min(has, limit):
            reasons.append(f"placement: {c.name} would hold {used:,} accelerators but has {has:,} and its "
                           f"{c.power_budget_mw:g} MW budget feeds {limit:,} of them")
    room = pp_latency_room(li, intra, inter)
    us_per_km = li.instance.network.latency_us_per_km
    split_scope = {}
    latency = {}
    for (a, b), n in splits.items():
        route = _route(li, a, b)
        split_scope[(a, b)] = li.route_scope(route)
        fill_drain = perf.pp_fill_drain_latency_s(route.distance_km, us_per_km)
        latency[f"{a}+{b}"] = fill_drain
        if n and fill_drain > room * T:
            reasons.append(f"placement: pipelines split over {a}-{b} ({route.distance_km:g} km) add "
                           f"{fill_drain * 1e3:.3f} ms of fill/drain latency, more than the {room * T * 1e3:.3f} ms "
                           f"({room:.2%} of the step) the loss bounds leave after the DP phases")
    region_scope = {r.name: _region_scope(li, r) for r in li.instance.regions}
    traffic = perf.placement_traffic(
        ev["params"], li.bytes_per_element, T, ev["pp_bytes_per_pipeline_boundary"], replicas, li.region_of,
        region_scope, intra, inter, split_pipelines=splits, split_scope=split_scope)
    out = {"replicas": dict(replicas),
           "split_pipelines": [{"a": a, "b": b, "pipelines": n} for (a, b), n in splits.items()],
           "campuses": campuses, "pp_fill_drain_latency_s": latency, "pp_latency_room_share": room,
           "traffic": traffic}
    return out, reasons


def _region_scope(li, region) -> str:
    """The link class of a region's intra-region DP phase, as planner.loss_budgets classifies it."""
    names = {c.name for c in region.campuses}
    scopes = {li.route_scope(r) for r in li.instance.routes if r.a in names and r.b in names}
    return "campus" if scopes and scopes == {"campus"} else "intra_region"


# ---------------------------------------------------------------- report

def build_report(li, w: perf.Workload, ev: dict, placement: dict | None = None) -> dict:
    """The evaluation, the capacity check and the cross-site traffic as the planner sizes it."""
    from .planner import loss_budgets

    job = li.instance.job
    params = ev["params"]
    beta = w.bytes_per_element
    T = ev["step_time_s"]
    intra, inter = loss_budgets(li)
    ev = dict(ev)
    reasons = list(ev["reasons"])
    capacity, why = capacity_check(li, ev["accelerators"])
    reasons += why
    phases = []
    for region in li.instance.regions:
        n = len(region.campuses)
        if n > 1:
            phases.append(_phase_table(_region_scope(li, region), region.name, intra[region.name], n, params, beta, T))
    if len(li.instance.regions) > 1:
        phases.append(_phase_table("inter_region", "regions", inter, len(li.instance.regions), params, beta, T))
    pp_pipe = ev["pp_bytes_per_pipeline_boundary"]
    model_name = job.model if isinstance(job.model, str) else "custom"
    report = {
        "instance": li.instance.name, "model": model_name, "accelerator": w.domain.accelerator,
        "scale_up_domain": w.domain_name, "evaluation": ev, "capacity": capacity,
        "efficiency_loss_bound": job.efficiency_loss_bound.model_dump(),
        "loss_shares": {"intra_region": intra, "inter_region": inter if len(li.instance.regions) > 1 else None},
        "cross_site": {
            "dp_phases": phases,
            # each way, as the planner sizes a split pipeline's stream
            # (Candidate.pp_gbps_per_split_pipeline): half the boundary's bytes per direction
            "pp_gbps_per_split_pipeline": perf.dci_required_gbps(pp_pipe / 2, T) if pp_pipe else 0.0,
            "latency_us_per_km": li.instance.network.latency_us_per_km,
        },
        "assumptions": {"sequence_parallel": w.sequence_parallel, "distributed_optimizer": w.distributed_optimizer,
                        "hbm_reserve_fraction": w.hbm_reserve_fraction,
                        "achievable_gemm_fraction": w.accelerator.achievable_gemm_fraction,
                        "nongemm_hbm_bytes_per_activation_byte": w.accelerator.nongemm_hbm_bytes_per_activation_byte},
    }
    if placement is not None:
        report["placement"], why = placement_report(li, ev, placement, intra, inter)
        reasons += why
    ev["reasons"] = reasons
    ev["reason"] = "; ".join(reasons)
    ev["feasible"] = not reasons
    return report


def _phase_table(scope: str, group: str, share: float, max_sites: int, params: float, beta: int, T: float) -> dict:
    return {"link_class": scope, "group": group, "share": share, "time_budget_s": share * T,
            "by_active_sites": {str(j): {"bytes_per_site": perf.hierarchical_dp_bytes_per_site(params, beta, j),
                                         "bytes_per_pair": perf.dp_pair_bytes_per_step(params, beta, j),
                                         "gbps_per_pair": perf.dp_pair_gbps(params, beta, j, share, T),
                                         "gbps_per_site": (j - 1) * perf.dp_pair_gbps(params, beta, j, share, T)}
                                for j in range(2, max_sites + 1)}}


def _fmt_bytes(x: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if x >= scale:
            return f"{x / scale:,.2f} {unit}"
    return f"{x:,.0f} B"


def _fmt_gbps(x: float) -> str:
    return f"{x / 1e3:,.1f} Tb/s" if x >= 1e4 else f"{x:,.1f} Gb/s"


def _class_name(scope: str) -> str:
    return scope.replace("_", "-")


def render_text(r: dict) -> str:
    ev = r["evaluation"]
    T = ev["step_time_s"]
    out = []
    add = out.append
    add(f"instance: {r['instance']}  model: {r['model']} ({ev['params'] / 1e9:,.1f} B parameters)  "
        f"accelerator: {r['accelerator']} in {r['scale_up_domain']}")
    cap = r["capacity"]
    add(f"split: TP {ev['tp']} x PP {ev['pp']} x DP {ev['dp']} = {ev['accelerators']:,} accelerators "
        f"({ev['replica_accelerators']:,} per replica; the instance has {cap['accelerators_available']:,}, "
        f"its power budgets let it use {cap['accelerators_power_limited']:,}); micro-batch {ev['micro_batch']}, "
        f"interleave {ev['interleave']}, recompute {ev['recompute']}; {ev['micro_batches']:g} micro-batches per "
        f"pipeline, {ev['layers_per_stage']} layer{'s' if ev['layers_per_stage'] > 1 else ''} on the largest stage")
    a = r["assumptions"]
    add(f"assumptions: sequence parallel {'on' if a['sequence_parallel'] else 'off'}, distributed optimizer "
        f"{'on' if a['distributed_optimizer'] else 'off'}, achievable GEMM fraction {a['achievable_gemm_fraction']:g}")
    add("status: " + ("feasible" if ev["feasible"] else "INFEASIBLE"))
    if not ev["feasible"]:
        for reason in ev["reasons"]:
            add(f"  why: {reason}")
    add("")
    add("memory per accelerator, worst pipeline stage (GB):")
    for key, label in (("weights_gb", "weights"), ("grads_gb", "gradients (fp32)"),
                       ("optimizer_gb", "optimizer states (Adam, fp32)"), ("activations_gb", "activations")):
        add(f"  {label:<32}{ev[key]:>10.1f}")
    add(f"  {'total':<32}{ev['memory_gb']:>10.1f}   of {ev['usable_gb']:.1f} usable "
        f"({ev['capacity_gb']:g} HBM - {ev['reserve_gb']:.1f} reserve)")
    add("")
    add("time per optimizer step (s):")
    for key, label in (("gemm_s", "compute: GEMM"), ("nongemm_s", "compute: non-GEMM (HBM-bound)"),
                       ("tp_comm_s", "TP collectives (scale-up)"), ("bubble_s", "pipeline bubble"),
                       ("pp_comm_s", "PP sends (scale-out)"), ("dp_comm_s", "DP all-reduce, exposed"),
                       ("optimizer_s", "optimizer step")):
        add(f"  {label:<32}{ev[key]:>10.3f}  {ev[key] / T:6.1%}")
    add(f"  {'step (single site)':<32}{T:>10.3f}")
    add(f"  (in-site DP all-reduce takes {ev['dp_comm_total_s']:.3f} s, overlapped with the last backward pass)")
    add(f"throughput: {ev['tokens_per_s']:,.0f} tokens/s, MFU {ev['mfu']:.1%}, "
        f"{ev['tflops_per_accelerator']:,.0f} TFLOP/s per accelerator incl. recompute")
    add("")
    add("traffic per optimizer step:")
    add(f"  TP, scale-up, per rank: {_fmt_bytes(ev['tp_bytes_per_step'])} sent "
        f"({ev['tp_collectives_per_step']:,.0f} all-reduces of {_fmt_bytes(ev['tp_buffer_bytes'])})")
    if ev["pp"] > 1:
        add(f"  PP, per stage boundary: {_fmt_bytes(ev['pp_bytes_per_pipeline_boundary'])} per pipeline, "
            f"{_fmt_bytes(ev['pp_bytes_per_boundary'])} for all {ev['dp']} pipelines (both directions)")
    else:
        add("  PP: none (one stage)")
    add(f"  DP in site, scale-out, per rank: {_fmt_bytes(ev['dp_bytes_per_rank'])} sent (ring all-reduce)")
    cs = r["cross_site"]
    add("")
    add(f"DCI for hierarchical DP across sites, as the planner sizes it: each phase may take a share of the "
        f"single-site step T = {T:.3f} s (planner.loss_budgets); Gb/s each way")
    if not cs["dp_phases"]:
        add("  none: one campus")
    for ph in cs["dp_phases"]:
        what = (f"inter-region phase ({r['efficiency_loss_bound']['inter_region']:.0%} bound less the largest "
                f"intra share)" if ph["link_class"] == "inter_region"
                else f"{_class_name(ph['link_class'])} phase, {ph['group']}")
        add(f"  {what}: {ph['share']:.1%} of T = {ph['time_budget_s']:.3f} s")
        site = "region" if ph["link_class"] == "inter_region" else "site"
        for j, c in ph["by_active_sites"].items():
            add(f"    DP across {j} {site}s: {_fmt_bytes(c['bytes_per_site'])} per {site}, "
                f"{_fmt_gbps(c['gbps_per_pair'])} per {site} pair, {_fmt_gbps(c['gbps_per_site'])} per {site}")
    if r["loss_shares"]["inter_region"] is None:
        add("  inter-region: none (one region)")
    if ev["pp"] > 1:
        add(f"  PP boundary across a DCI link: {_fmt_gbps(cs['pp_gbps_per_split_pipeline'])} each way per split "
            f"pipeline (activations one way, gradients the other, over T), plus 2 x {cs['latency_us_per_km']:g} "
            "us/km latency on fill and drain")
    if "placement" in r:
        out.extend(_render_placement(r["placement"], ev))
    return "\n".join(out) + "\n"


def _render_placement(p: dict, ev: dict) -> list[str]:
    out = [""]
    parts = [f"{c}={n}" for c, n in p["replicas"].items()] + \
        [f"{s['a']}+{s['b']}={s['pipelines']}" for s in p["split_pipelines"]]
    tr = p["traffic"]
    n_camp = sum(len(v) for v in tr["active_campuses"].values())
    out.append(f"placement: {', '.join(parts)} ({ev['dp']} pipelines; {n_camp} campus"
               f"{'es' if n_camp != 1 else ''} active in {len(tr['active_campuses'])} region"
               f"{'s' if len(tr['active_campuses']) != 1 else ''})")
    for name, c in p["campuses"].items():
        if c["accelerators_used"]:
            out.append(f"  {name}: {c['accelerators_used']:,} accelerators of {c['accelerators_available']:,} "
                       f"(power feeds {c['accelerators_power_limited']:,})")
    for ph in tr["dp_phases"]:
        group = "" if ph["link_class"] == "inter_region" else f", {ph['group']}"
        out.append(f"  DP {_class_name(ph['link_class'])} phase{group} ({len(ph['sites'])} active: "
                   f"{', '.join(ph['sites'])}): {_fmt_bytes(ph['bytes_per_pair'])} each way per pair in "
                   f"{ph['share']:.1%} of T = {_fmt_gbps(ph['gbps_per_pair'])} per pair, "
                   f"{_fmt_gbps(ph['gbps_per_site'])} per site")
    for link in tr["pp_links"]:
        out.append(f"  PP {link['a']}-{link['b']} ({_class_name(link['link_class'])}): {link['pipelines']} split "
                   f"pipelines, {_fmt_bytes(link['bytes_per_step'])} per step = {_fmt_gbps(link['gbps'])}")
    out.append("  per link class, summed over site pairs (DP each way, PP both directions):")
    for scope, c in tr["link_classes"].items():
        out.append(f"    {_class_name(scope):<13} DP {_fmt_bytes(c['dp_bytes_per_step'])} per step, "
                   f"{_fmt_gbps(c['dp_gbps'])} over {c['pairs']} pair{'s' if c['pairs'] != 1 else ''}; "
                   f"PP {_fmt_bytes(c['pp_bytes_per_step'])}, {_fmt_gbps(c['pp_gbps'])}")
    return out
