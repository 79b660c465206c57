"""Benchmark of `dcopt sweep`: the same sweep with 1 and with 2 local workers.

Runs sweeps/power-x-800zr-price.yaml (100 scenarios of the default instance:
campus power budgets x0.5..x1.4 against the 800ZR price) from scratch once per
worker count and prints, for each run:

- wall: the sweep's wall time, expansion and validation of the scenarios,
  pool start-up and the summary files included;
- scenario time: the sum over scenarios of their time inside a worker (load
  the instance, build, solve, tie-break, extract, verify);
- solver time: the sum of the solver's own build_s + solve_s of each plan;
- overhead: the share of the workers' capacity not spent in scenarios,
  workers x wall / scenario time - 1 (and the same over solver time);
- speed-up: wall with 1 worker / wall with N workers.

    python scripts/sweep_bench.py                       # 1 and 2 workers, ~30 min on 2 cores
    python scripts/sweep_bench.py --workers 2 --spec sweeps/other.yaml
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optimizer.scenarios import expand, load_spec, run_sweep  # noqa: E402


def one_run(spec_path: Path, out: Path, workers: int, time_limit_s: float | None) -> dict:
    if out.exists():
        shutil.rmtree(out)
    spec = load_spec(spec_path, time_limit_s=time_limit_s)
    start = time.perf_counter()
    run = run_sweep(spec, out, workers=workers, progress="lines")
    wall = time.perf_counter() - start
    records = [json.loads((out / "scenarios" / f"{r['id']}.json").read_text()) for r in run.rows]
    scenario_s = sum(r.get("elapsed_s") or 0.0 for r in records)
    solver_s = sum(((r.get("result") or {}).get("solver") or {}).get("solve_s", 0.0)
                   + ((r.get("result") or {}).get("solver") or {}).get("build_s", 0.0) for r in records)
    return {"workers": workers, "scenarios": len(records), "counts": run.counts, "wall_s": wall,
            "scenario_s": scenario_s, "solver_s": solver_s,
            "overhead_vs_scenarios": workers * wall / scenario_s - 1,
            "overhead_vs_solver": workers * wall / solver_s - 1,
            "mean_scenario_s": scenario_s / max(1, len(records))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "sweeps" / "power-x-800zr-price.yaml"))
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--time-limit", type=float, default=None, help="per-scenario time limit, s")
    ap.add_argument("--out", default=str(ROOT / "out" / "sweep-bench"))
    args = ap.parse_args(argv)

    spec_path = Path(args.spec)
    n = len(expand(load_spec(spec_path)))
    print(f"sweep {spec_path.name}: {n} scenarios; {os.cpu_count()} CPUs", file=sys.stderr)
    results = []
    for w in [int(x) for x in args.workers.split(",")]:
        res = one_run(spec_path, Path(args.out) / f"workers-{w}", w, args.time_limit)
        results.append(res)
        print(f"workers {w}: wall {res['wall_s']:.1f} s", file=sys.stderr)
    base = next((r for r in results if r["workers"] == 1), None)
    print(f"\n{'workers':>7}  {'wall s':>8}  {'scenario s':>10}  {'solver s':>8}  {'overhead':>8}  "
          f"{'vs solver':>9}  {'speed-up':>8}  statuses")
    for r in results:
        speed = f"{base['wall_s'] / r['wall_s']:.2f}x" if base else "-"
        counts = ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items()))
        print(f"{r['workers']:>7}  {r['wall_s']:>8.1f}  {r['scenario_s']:>10.1f}  {r['solver_s']:>8.1f}  "
              f"{r['overhead_vs_scenarios']:>8.1%}  {r['overhead_vs_solver']:>9.1%}  {speed:>8}  {counts}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {Path(args.out) / 'bench.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
