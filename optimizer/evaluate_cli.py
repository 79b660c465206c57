"""`dcopt evaluate FILE --tp T --pp P --dp D`: time, memory and traffic of one split.

Exit 0 when the split is feasible, 4 when it is not (the report says which rule
or memory term fails and by how much), 2 for bad input.
"""
from __future__ import annotations

import json

from . import performance as perf

GB = 1e9


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
    w = perf.workload_from_instance(li)
    if args.distributed_optimizer:
        w = w.replace(distributed_optimizer=True)
    ev = perf.evaluate_split(w, args.tp, args.pp, args.dp, micro_batch=args.micro_batch,
                             interleave=args.interleave, recompute=args.recompute)
    report = build_report(li, w, ev)
    if args.format == "json":
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(render_text(report), end="")
    return EXIT_OK if ev["feasible"] else EXIT_INFEASIBLE


def build_report(li, w: perf.Workload, ev: dict) -> dict:
    """The evaluation plus cross-site traffic for the instance's loss bounds."""
    job = li.instance.job
    params = ev["params"]
    beta = w.bytes_per_element
    T = ev["step_time_s"]
    bounds = job.efficiency_loss_bound.model_dump()
    cross = {}
    for n in (2, 4):
        per_site = perf.hierarchical_dp_bytes_per_site(params, beta, n)
        cross[str(n)] = {
            "bytes_per_site": per_site,
            "gbps_per_site": {scope: perf.dci_required_gbps(per_site, perf.exposed_budget_s(T, b))
                              for scope, b in bounds.items()},
        }
    pp_pipe = ev["pp_bytes_per_pipeline_boundary"]
    model_name = job.model if isinstance(job.model, str) else "custom"
    return {
        "instance": li.instance.name, "model": model_name, "accelerator": w.domain.accelerator,
        "scale_up_domain": w.domain_name, "evaluation": ev,
        "efficiency_loss_bound": bounds,
        "cross_site": {
            "hierarchical_dp": cross,
            "pp_gbps_per_split_pipeline_each_way": perf.dci_required_gbps(pp_pipe / 2, T) if pp_pipe else 0.0,
            "latency_us_per_km": li.instance.network.latency_us_per_km,
        },
        "assumptions": {"sequence_parallel": w.sequence_parallel, "distributed_optimizer": w.distributed_optimizer,
                        "hbm_reserve_fraction": w.hbm_reserve_fraction,
                        "achievable_gemm_fraction": w.accelerator.achievable_gemm_fraction},
    }


def _fmt_bytes(x: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if x >= scale:
            return f"{x / scale:,.2f} {unit}"
    return f"{x:,.0f} B"


def _fmt_gbps(x: float) -> str:
    return f"{x / 1e3:,.1f} Tb/s" if x >= 1e4 else f"{x:,.1f} Gb/s"


def render_text(r: dict) -> str:
    ev = r["evaluation"]
    T = ev["step_time_s"]
    out = []
    add = out.append
    add(f"instance: {r['instance']}  model: {r['model']} ({ev['params'] / 1e9:,.1f} B parameters)  "
        f"accelerator: {r['accelerator']} in {r['scale_up_domain']}")
    add(f"split: TP {ev['tp']} x PP {ev['pp']} x DP {ev['dp']} = {ev['accelerators']:,} accelerators "
        f"({ev['replica_accelerators']:,} per replica); micro-batch {ev['micro_batch']}, interleave {ev['interleave']}, "
        f"recompute {ev['recompute']}; {ev['micro_batches']:g} micro-batches per pipeline, "
        f"{ev['layers_per_stage']} layer{'s' if ev['layers_per_stage'] > 1 else ''} on the largest stage")
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
    bounds = r["efficiency_loss_bound"]
    for n, c in cs["hierarchical_dp"].items():
        need = ", ".join(f"{scope.replace('_', '-')} ({bounds[scope]:.0%} loss): {_fmt_gbps(g)}"
                         for scope, g in c["gbps_per_site"].items())
        add(f"  DP across {n} sites (hierarchical): {_fmt_bytes(c['bytes_per_site'])} per site; DCI per site to "
            f"stay within the bound: {need}")
    if ev["pp"] > 1:
        add(f"  PP boundary across a DCI link: {_fmt_gbps(cs['pp_gbps_per_split_pipeline_each_way'])} each way per "
            f"pipeline, plus 2 x {cs['latency_us_per_km']:g} us/km latency on fill and drain")
    return "\n".join(out) + "\n"
