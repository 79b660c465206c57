"""Backend benchmark: build and solve time of every MILP backend on every example.

For each instance in instances/*.yaml and each installed backend (highs, cbc,
scip, cpsat) it runs what `dcopt solve FILE --solver B --threads 2` runs (split
enumeration, model build, solve, tie-break, plan extraction, verification) and
prints one row: build s (split enumeration + model build), solve s (solver
stage 1 + tie-break stage 2), status, objective, tie-break capex. With
--repeat N each run is repeated and the median time reported (the solve times
of one backend vary by 2x from run to run on some instances).

At the end: the total time of each backend over all instances (a run that hit
the time limit counts with the limit and is marked), the fastest backend
overall, whether every backend found the same objective, and how the default
backend (optimizer/solve_cli.py, optimizer/api.py) compares.

    python scripts/backend_bench.py                         # all examples, threads 2
    python scripts/backend_bench.py --repeat 3 --format md  # the table in docs/backends.md
    python scripts/backend_bench.py --instances instances/two-building-campus.yaml --backends highs,scip
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.instance import load_instance  # noqa: E402
from optimizer.lp import BACKENDS, DEFAULT_BACKEND, SolveParameters, available_backends  # noqa: E402
from optimizer.solving import solve_instance  # noqa: E402

def run_once(path: Path, backend: str, threads: int, time_limit_s: float) -> dict:
    li = load_instance(path)
    params = SolveParameters(backend=backend, threads=threads, time_limit_s=time_limit_s)
    start = time.perf_counter()
    plan = solve_instance(li, params)
    wall = time.perf_counter() - start
    s = plan.get("solver", {})
    return {"instance": path.stem, "backend": backend, "status": plan["status"],
            "objective": (plan.get("objective") or {}).get("value"),
            "objective_name": (plan.get("objective") or {}).get("name", li.instance.objective),
            "capex_usd": (plan.get("totals") or {}).get("capex_usd"),
            "tie_break": s.get("tie_break", ""), "build_s": s.get("build_s", 0.0),
            "solve_s": s.get("solve_s", 0.0), "wall_s": wall}


def warm_up(paths, backends, threads) -> None:
    """Untimed: import every solver and run each once, enumerate every instance's splits once,
    so the first timed run pays no start-up cost the others do not."""
    from optimizer.planner import select_candidates
    tiny = load_instance(ROOT / "tests" / "data" / "tiny-two-campus.yaml")
    for backend in backends:
        solve_instance(tiny, SolveParameters(backend=backend, threads=threads))
    for path in paths:
        select_candidates(load_instance(path))


def bench(paths, backends, threads, time_limit_s, repeat, log=sys.stderr) -> list[dict]:
    warm_up(paths, backends, threads)
    rows = []
    for path in paths:
        for backend in backends:
            runs = []
            for _ in range(repeat):
                runs.append(run_once(path, backend, threads, time_limit_s))
                print(f"  {path.stem} {backend}: {runs[-1]['status']} build {runs[-1]['build_s']:.2f} s "
                      f"solve {runs[-1]['solve_s']:.2f} s", file=log, flush=True)
            row = dict(runs[-1])
            for key in ("build_s", "solve_s", "wall_s"):
                row[key] = statistics.median(r[key] for r in runs)
            row["solve_s_range"] = (min(r["solve_s"] for r in runs), max(r["solve_s"] for r in runs))
            row["hit_limit"] = any(r["status"] != "optimal" or r["tie_break"] not in ("optimal", "not_run")
                                   for r in runs)
            rows.append(row)
    return rows


def summary(rows, backends, time_limit_s) -> dict:
    total = {}
    for b in backends:
        mine = [r for r in rows if r["backend"] == b]
        total[b] = sum((time_limit_s if r["hit_limit"] else r["build_s"] + r["solve_s"]) for r in mine)
    fastest = min(total, key=total.get)
    wins = {b: 0 for b in backends}
    disagreements = []
    for inst in dict.fromkeys(r["instance"] for r in rows):
        mine = [r for r in rows if r["instance"] == inst]
        best = min(mine, key=lambda r: (r["hit_limit"], r["build_s"] + r["solve_s"]))
        wins[best["backend"]] += 1
        ref = next((r for r in mine if r["backend"] == DEFAULT_BACKEND), mine[0])
        for r in mine:
            same_status = r["status"] == ref["status"]
            same_obj = (r["objective"] is None and ref["objective"] is None) or (
                r["objective"] is not None and ref["objective"] is not None
                and abs(r["objective"] - ref["objective"]) <= 1e-6 * max(1.0, abs(ref["objective"])))
            if not (same_status and same_obj):
                disagreements.append(f"{inst}: {r['backend']} {r['status']} {r['objective']} vs "
                                     f"{ref['backend']} {ref['status']} {ref['objective']}")
    return {"total_s": total, "fastest": fastest, "wins": wins, "disagreements": disagreements}


def _fmt_obj(r) -> str:
    if r["objective"] is None:
        return "-"
    return f"{r['objective']:,.0f} tok/s" if r["objective_name"] == "max-throughput" else f"${r['objective']:,.0f}"


def render(rows, summ, backends, args, md: bool) -> str:
    head = ["instance", "backend", "build s", "solve s", "total s", "status", "objective", "capex USD", "tie-break"]
    body = []
    for r in rows:
        lo, hi = r["solve_s_range"]
        solve = f"{r['solve_s']:.2f}" + (f" ({lo:.2f}-{hi:.2f})" if args.repeat > 1 else "")
        body.append([r["instance"], r["backend"], f"{r['build_s']:.2f}", solve,
                     f"{r['build_s'] + r['solve_s']:.2f}" + (" (limit)" if r["hit_limit"] else ""),
                     r["status"], _fmt_obj(r), "-" if r["capex_usd"] is None else f"{r['capex_usd']:,.0f}",
                     r["tie_break"]])
    out = []
    if md:
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        out += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
        line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        out += [line(head), line(["-" * w for w in widths])] + [line(row) for row in body]
    out.append("")
    tot = summ["total_s"]
    out.append(("**Total over all instances** (build + solve, s): " if md else "total over all instances (build + solve, s): ")
               + ", ".join(f"{b} {tot[b]:.2f}" for b in sorted(tot, key=tot.get)))
    out.append(f"{'**Fastest overall**' if md else 'fastest overall'}: {summ['fastest']}"
               f" (fastest on {summ['wins'][summ['fastest']]} of {len(set(r['instance'] for r in rows))} instances; "
               + ", ".join(f"{b} {n}" for b, n in summ["wins"].items()) + ")")
    if DEFAULT_BACKEND in tot:
        d = tot[DEFAULT_BACKEND]
        verdict = ("the default is the fastest" if summ["fastest"] == DEFAULT_BACKEND else
                   f"the default is NOT the fastest: {DEFAULT_BACKEND} {d:.2f} s vs {summ['fastest']} "
                   f"{tot[summ['fastest']]:.2f} s ({d / tot[summ['fastest']]:.1f}x)")
        out.append(f"default backend {DEFAULT_BACKEND}: {verdict}")
    out.append("objectives: " + ("every backend found the same status and objective"
                                 if not summ["disagreements"] else "DISAGREE: " + "; ".join(summ["disagreements"])))
    out.append(f"threads {args.threads}, time limit {args.time_limit:g} s per run, repeat {args.repeat} "
               f"(median shown); {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", nargs="*", type=Path, help="default: instances/*.yaml")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all installed)")
    p.add_argument("--threads", type=int, default=1, help="solver threads (default 1, as dcopt solve)")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds per run (default 300)")
    p.add_argument("--repeat", type=int, default=1, help="runs per instance and backend; the median is shown")
    p.add_argument("--format", choices=["text", "md"], default="text")
    args = p.parse_args(argv)
    installed = available_backends()
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    missing = [b for b in wanted if b not in installed]
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}", file=sys.stderr)
    backends = [b for b in wanted if b in installed]
    paths = args.instances or sorted((ROOT / "instances").glob("*.yaml"))
    rows = bench(paths, backends, args.threads, args.time_limit, args.repeat)
    summ = summary(rows, backends, args.time_limit)
    print(render(rows, summ, backends, args, md=args.format == "md"), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
