"""Benchmark of `dcopt sweep`: the same sweep from scratch with 1 and with 2 local workers.

Runs sweeps/power-x-800zr-price.yaml (100 scenarios of the default instance
us-two-regions: the campus power budgets x0.5..x1.4 against the 800ZR price)
on the project's default backend (`scip`; --solver picks another) and prints
one line per worker count. What the figures mean, for a run with W workers:

- wall s: the sweep's wall time, start to end of run_sweep(): expanding and
  validating the scenarios, starting the pool, every scenario, writing the
  records and the summary files.
- solve s (per scenario): the plan's solver.wall_s, the time of the solve
  itself, solve_instance() (the API's solve()): candidate splits, model builds,
  every solver call (stage 1, the tie-break, and for an infeasible scenario
  the elastic solves of its explanation), plan extraction and the independent
  verification. This is what solving the scenario directly (`dcopt solve`)
  spends beyond reading its file.
- solver s (per scenario): the part of solve s in the solver layer as the plan
  reports it, solver.build_s + solver.solve_s (candidate splits, model builds,
  solver calls): solve s without plan extraction and verification (~4 ms).
- scenario s (per scenario): the record's elapsed_s, a worker's end-to-end
  time for it: validating the instance, solve_instance() and the record.
- overhead: (W x wall - sum of solve s) / sum of solve s, i.e. with 1 worker
  (wall - sum of solve s) / sum of solve s: the share of the W workers'
  capacity not spent solving (expansion and validation of the scenarios, pool
  start-up, moving tasks and results between processes, writing files, a
  worker idle at the end while the other finishes). "vs solver" and "vs
  scenario" are the same against the sum of solver s and of scenario s.
- speed-up: wall with 1 worker / wall with W workers.

With 2 workers on a 2-core machine the parent process shares the cores with
the workers, and two solves at once run slower than one alone, so the sum of
solve s grows too: compare the walls for the speed-up. --breakdown N first
times N scenarios (a fixed sample) in this process, split by step.

    python scripts/sweep_bench.py                         # 1 and 2 workers, ~4-5 min on 2 idle cores
    python scripts/sweep_bench.py --breakdown 10          # and where the time of a scenario goes
    python scripts/sweep_bench.py --workers 2 --spec sweeps/other.yaml --limit 20
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.scenarios import expand, load_spec, run_sweep  # noqa: E402


def _solver_s(record: dict) -> float:
    solver = (record.get("result") or {}).get("solver") or {}
    return (solver.get("build_s") or 0.0) + (solver.get("solve_s") or 0.0)


def _solve_s(record: dict) -> float:
    solver = (record.get("result") or {}).get("solver") or {}
    return solver.get("wall_s") or 0.0


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def one_run(spec, out: Path, workers: int) -> dict:
    if out.exists():
        shutil.rmtree(out)
    load_before = _load()
    start = time.perf_counter()
    run = run_sweep(spec, out, workers=workers, progress="off")
    wall = time.perf_counter() - start
    records = [json.loads((out / "scenarios" / f"{r['id']}.json").read_text()) for r in run.rows]
    solve_s = sum(_solve_s(r) for r in records)
    solver_s = sum(_solver_s(r) for r in records)
    scenario_s = sum(r.get("elapsed_s") or 0.0 for r in records)
    return {"workers": workers, "scenarios": len(records), "counts": run.counts, "wall_s": wall,
            "solve_s": solve_s, "solver_s": solver_s, "scenario_s": scenario_s,
            "overhead_vs_solve": (workers * wall - solve_s) / solve_s,
            "overhead_vs_solver": (workers * wall - solver_s) / solver_s,
            "overhead_vs_scenario": (workers * wall - scenario_s) / scenario_s,
            "load_before": load_before, "load_after": _load()}


def breakdown(spec, n: int) -> tuple[int, list[tuple[str, float]]]:
    """Mean time per step of n scenarios (a fixed random sample) solved in this process."""
    import optimizer.scenarios as sw
    import optimizer.solving as so

    totals: dict[str, float] = {}

    def timed(module, name, label):
        fn = getattr(module, name)

        @functools.wraps(fn)
        def wrapper(*args, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t0
        setattr(module, name, wrapper)
        return fn

    scenarios = [s for s in expand(spec) if s.valid]
    pick = sorted(random.Random(0).sample(range(len(scenarios)), min(n, len(scenarios))))
    tasks = [sw._task(scenarios[i], spec) for i in pick]
    sw.run_scenario(tasks[0])          # imports and first-call costs: not a scenario's
    steps = [(sw, "instance_from_data", "validate the instance"), (so, "select_candidates", "candidate splits (min-cost)"),
             (so, "ranked_splits", "candidate splits (max-throughput)"),
             (so, "build_model", "model build"), (so, "solve", "lp.solve calls (stage 1, tie-break)"),
             (so, "extract_plan", "plan extraction"), (so, "verify_plan", "verification")]
    saved = [(m, name, timed(m, name, label)) for m, name, label in steps]
    try:
        elapsed = sum(sw.run_scenario(t)["elapsed_s"] for t in tasks)
    finally:
        for m, name, fn in saved:
            setattr(m, name, fn)
    rows = [(label, totals.get(label, 0.0) / len(tasks)) for _, _, label in steps]
    rows.append(("rest (record, timers)", elapsed / len(tasks) - sum(v for _, v in rows)))
    rows.append(("scenario (elapsed_s)", elapsed / len(tasks)))
    return len(tasks), rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "sweeps" / "power-x-800zr-price.yaml"))
    ap.add_argument("--solver", help="backend (default: the spec's, which is the project default)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--limit", type=int, help="only the first N scenarios (a shorter run)")
    ap.add_argument("--breakdown", type=int, default=0, metavar="N",
                    help="first time N scenarios in this process, step by step")
    ap.add_argument("--out", default=str(ROOT / "out" / "sweep-bench"))
    args = ap.parse_args(argv)

    spec = load_spec(Path(args.spec), backend=args.solver)
    if args.limit:
        # about the first N scenarios of expand()'s order: the last (fastest-varying)
        # dimension keeps up to N steps, the ones before it what is left
        import math
        dims, keep = spec.dimensions, args.limit
        for d in reversed(dims):
            d.rows = d.rows[:max(1, min(len(d.rows), keep))]
            keep = math.ceil(keep / len(d.rows))
    n = len(expand(spec))
    print(f"dcopt sweep benchmark, {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    print(f"sweep: {Path(args.spec).name}, {n} scenarios of {Path(spec.base_path).name}, backend "
          f"{spec.solver.backend}, gap {spec.solver.gap:g}, time limit {spec.solver.time_limit_s or 'none'}")

    if args.breakdown:
        count, rows = breakdown(spec, args.breakdown)
        print(f"\nper scenario, mean of {count} (a fixed sample) solved in this process, ms:")
        for label, v in rows:
            print(f"  {label:32s} {1000 * v:9.1f}")

    results = []
    for w in [int(x) for x in args.workers.split(",")]:
        res = one_run(spec, Path(args.out) / f"workers-{w}", w)
        results.append(res)
        print(f"workers {w}: wall {res['wall_s']:.1f} s (load average before {res['load_before']}, "
              f"after {res['load_after']})", file=sys.stderr, flush=True)
    base = next((r for r in results if r["workers"] == 1), None)
    print(f"\n{'scenarios':>9}  {'workers':>7}  {'wall s':>7}  {'solve s':>8}  {'solver s':>8}  {'scenario s':>10}  "
          f"{'overhead':>8}  {'vs solver':>9}  {'vs scenario':>11}  {'speed-up':>8}  statuses")
    for r in results:
        speed = f"{base['wall_s'] / r['wall_s']:.2f}x" if base else "-"
        counts = ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items()))
        print(f"{r['scenarios']:>9}  {r['workers']:>7}  {r['wall_s']:>7.1f}  {r['solve_s']:>8.1f}  "
              f"{r['solver_s']:>8.1f}  {r['scenario_s']:>10.1f}  {r['overhead_vs_solve']:>8.1%}  "
              f"{r['overhead_vs_solver']:>9.1%}  {r['overhead_vs_scenario']:>11.1%}  {speed:>8}  {counts}")
    print("load average (1/5/15 min) before -> after each run: "
          + "; ".join(f"{r['workers']} workers {r['load_before']} -> {r['load_after']}" for r in results))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {Path(args.out) / 'bench.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
