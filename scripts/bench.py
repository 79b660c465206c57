"""Scaling benchmark of the planning MILP (issue 5): instance families of growing
size, one row per size and backend.

Instances are generated deterministically from a seed (`family_instance`):

- regions: 1 for 2 campuses, 2 for 4 and 8, 4 for 16 and 32, 8 for 64;
  region centres in a 1,400 x 800 km box (every inter-region route stays within
  the 2,000 km of the longest-reach module), campuses within ~50 km of theirs;
- fiber: inside a region each campus is joined to its nearest neighbours (a
  mesh, not a tree: several paths per campus pair); between regions a ring of
  gateway routes plus chords (every pair of regions directly for <= 4 regions,
  neighbours one and two steps away on the ring beyond);
- accelerators: GB200 NVL72 campuses, about 62,500 accelerators per campus up
  to 16 campuses (1.0 M in total at 16) and the same ~1.0 M spread thinner
  beyond, so sizes 32 and 64 test the network, not a bigger job; power budgets
  between 55 % and 110 % of what the racks on site draw, so some campuses are
  power-bound;
- job: Dense-10T with the full catalog and every split option (micro-batches,
  interleaving, recomputation) the instance schema defaults to; targets 5 Pbit/s
  inside a region and 1 Pbit/s between regions (DOMAIN.md §6).

For each size the row gives campuses, accelerators, candidate splits, model
size, times (split enumeration + model build, stage 1, tie-break stage 2,
extraction + verification) and build share of the total, status and gap. Every
plan is checked by the independent verifier (solve_instance refuses otherwise).

A second, tiny family (`tiny_instance`: 1-5 HGX-H100 campuses in a line, two
module types, small targets, as in tests/test_bruteforce.py) is solved both by
the MILP and by the plain exhaustive enumeration of tests/test_bruteforce.py;
the row gives both times, their ratio and whether both found the same optimum
(tokens/s, then capex). On the main family the enumeration cannot finish: it
walks every split x placement x wavelength vector x cable choice.

    python scripts/bench.py                              # sizes 2..64, default backend, 2 threads
    python scripts/bench.py --sizes 16 --backends highs,cbc,scip,cpsat
    python scripts/bench.py --format md > table.md       # markdown table
    python scripts/bench.py --write-instances out/bench  # the generated YAML files

Output apart from the time columns is deterministic for a given seed, backend
and solver version.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from optimizer.instance import load_instance  # noqa: E402
from optimizer.lp import DEFAULT_BACKEND, SolveParameters  # noqa: E402
from optimizer.solving import solve_instance  # noqa: E402

DEFAULT_SIZES = (2, 4, 8, 16, 32, 64)
TINY_SIZES = (1, 2, 3, 4, 5)
TINY_GAP = 1e-9                         # the tiny family is compared with an exact enumeration
TOTAL_ACCELERATORS = 1_000_000          # ~1 M at 16 campuses and beyond
PER_CAMPUS_ACCELERATORS = TOTAL_ACCELERATORS / 16
NVL72 = 72


def regions_for(n_campuses: int) -> int:
    if n_campuses <= 2:
        return 1
    if n_campuses <= 8:
        return 2
    if n_campuses <= 32:
        return 4
    return 8


def _km(p, q) -> float:
    return math.hypot(p[0] - q[0], p[1] - q[1])


def family_instance(n_campuses: int, seed: int = 0) -> dict:
    """A planning instance with n_campuses campuses, as the dict a YAML file holds."""
    rng = random.Random(f"dcopt-bench/{seed}/{n_campuses}")
    n_regions = regions_for(n_campuses)
    per_region = [n_campuses // n_regions + (1 if r < n_campuses % n_regions else 0) for r in range(n_regions)]
    centres = []
    while len(centres) < n_regions:          # regions at least 350 km apart
        p = (rng.uniform(0, 1400), rng.uniform(0, 800))
        if all(_km(p, q) >= 350 for q in centres):
            centres.append(p)
    acc_per_campus = min(PER_CAMPUS_ACCELERATORS, TOTAL_ACCELERATORS / n_campuses)
    regions, routes, where, gateways = [], [], {}, []
    for r in range(n_regions):
        names = []
        campuses = []
        for j in range(per_region[r]):
            name = f"r{r}c{j}"
            angle, radius = rng.uniform(0, 2 * math.pi), rng.uniform(3, 50)
            where[name] = (centres[r][0] + radius * math.cos(angle), centres[r][1] + radius * math.sin(angle))
            domains = max(1, round(acc_per_campus * rng.uniform(0.6, 1.4) / NVL72))
            power_mw = round(domains * 0.132 * 1.2 * rng.uniform(0.55, 1.10), 1)
            campuses.append({"name": name, "power_budget_mw": power_mw, "scale_up_domain": "GB200-NVL72",
                             "domains": domains})
            names.append(name)
        regions.append({"name": f"region{r}", "campuses": campuses})
        gateways.append(names[0])
        # intra-region mesh: every campus to its two nearest neighbours (plus a
        # chain so the region is connected)
        edges = set()
        for a_i, a in enumerate(names):
            near = sorted((b for b in names if b != a), key=lambda b: _km(where[a], where[b]))
            for b in near[:2]:
                edges.add(tuple(sorted((a, b))))
            if a_i:
                edges.add(tuple(sorted((names[a_i - 1], a))))
        for a, b in sorted(edges):
            km = round(max(1.0, 1.3 * _km(where[a], where[b])), 1)
            routes.append({"a": a, "b": b, "distance_km": km,
                           "fiber_pairs_available": rng.choice([96, 144, 192, 288])})
    pairs = set()
    for r in range(n_regions):
        steps = range(1, n_regions) if n_regions <= 4 else (1, 2)
        for s in steps:
            q = (r + s) % n_regions
            if q != r:
                pairs.add(tuple(sorted((r, q))))
    for r, q in sorted(pairs):
        a, b = gateways[r], gateways[q]
        km = round(min(1950.0, 1.2 * _km(where[a], where[b])), 1)
        routes.append({"a": a, "b": b, "distance_km": km, "fiber_pairs_available": 192})
    return {
        "name": f"bench-{n_campuses}-seed{seed}",
        "description": f"scripts/bench.py family: {n_campuses} campuses in {n_regions} regions (seed {seed})",
        "objective": "max-throughput",
        "pue": 1.2,
        "regions": regions,
        "routes": routes,
        "job": {"model": "Dense-10T", "precision": "bf16",
                "efficiency_loss_bound": {"campus": 0.05, "intra_region": 0.05, "inter_region": 0.10}},
        "targets": {"intra_region_pbps": 5, "inter_region_pbps": 1 if n_regions > 1 else 0},
        "network": {"link_utilization_max": 0.8, "k_paths": 3},
    }


def tiny_instance(n_campuses: int, seed: int = 0) -> dict:
    """1-5 small HGX-H100 campuses in a line: small enough for exhaustive enumeration."""
    rng = random.Random(f"dcopt-bench-tiny/{seed}/{n_campuses}")
    campuses = [{"name": f"c{j}", "power_budget_mw": round(rng.uniform(0.1, 0.4), 3),
                 "scale_up_domain": "HGX-H100-8", "accelerators": 8 * rng.choice([1, 2])}
                for j in range(n_campuses)]
    routes = [{"a": f"c{j}", "b": f"c{j + 1}", "distance_km": round(rng.uniform(5, 60), 1),
               "fiber_pairs_available": 1, "modules": ["400ZR", "800ZR"], "band_plans": ["C"]}
              for j in range(n_campuses - 1)]
    return {
        "name": f"tiny-{n_campuses}-seed{seed}", "pue": 1.2, "objective": "max-throughput",
        "regions": [{"name": "r1", "campuses": campuses}],
        "routes": routes,
        "job": {"model": {"layers": 4, "hidden": 1024, "heads": 8, "seq_len": 1024, "vocab": 32000,
                          "global_batch_sequences": 8},
                "efficiency_loss_bound": {"campus": 0.05, "intra_region": 0.05, "inter_region": 0.10},
                "micro_batch_sizes": [1, 2], "interleave_options": [1], "recompute_modes": ["selective"],
                "max_candidate_splits": 5},
        "targets": {"intra_region_pbps": 0.0008 * (n_campuses - 1), "inter_region_pbps": 0},
        "network": {"allow_split_pipelines": n_campuses == 2},
    }


def load(data: dict, label: str):
    text = yaml.safe_dump(data, sort_keys=False)
    return load_instance(f"<{label}>", text=text)


def _brute_force_module():
    spec = importlib.util.spec_from_file_location("dcopt_bruteforce", ROOT / "tests" / "test_bruteforce.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # its dataclasses look their module up there
    sys.path.insert(0, str(ROOT / "tests"))  # it imports conftest
    spec.loader.exec_module(mod)
    return mod.brute_force


def run_one(li, params: SolveParameters) -> dict:
    start = time.perf_counter()
    plan = solve_instance(li, params)
    total = time.perf_counter() - start
    s = plan.get("solver", {})
    build = s.get("build_s", 0.0)
    solve = s.get("solve_s", 0.0)
    row = {"accelerators": sum(li.accelerators_at(c) for c in li.campuses),
           "splits": s.get("splits_enumerated"), "candidates": (plan.get("parallelism") or {}).get("candidates_considered"),
           "variables": s.get("variables"), "constraints": s.get("constraints"),
           "build_s": build, "stage1_s": s.get("primary_solve_s", solve), "stage2_s": s.get("tie_break_solve_s", 0.0),
           "total_s": total, "status": plan.get("status"), "gap": (plan.get("objective") or {}).get("gap"),
           "tie_break": s.get("tie_break"), "tie_break_gap": s.get("tie_break_gap"),
           "proven": plan.get("status") == "optimal" and s.get("tie_break") == "optimal",
           "objective": (plan.get("objective") or {}).get("value"),
           "capex": (plan.get("totals") or {}).get("capex_usd")}
    row["solve_s"] = solve
    row["other_s"] = max(0.0, total - build - solve)
    row["build_share"] = build / total if total > 0 else 0.0
    return row


def fmt_rows(rows: list[dict], fmt: str) -> str:
    cols = [("campuses", "campuses", "{}"), ("regions", "regions", "{}"), ("accelerators", "accelerators", "{:,}"),
            ("backend", "backend", "{}"), ("variables", "vars", "{:,}"), ("constraints", "rows", "{:,}"),
            ("build_s", "build s", "{:.2f}"), ("stage1_s", "stage 1 s", "{:.2f}"),
            ("stage2_s", "tie-break s", "{:.2f}"), ("tie_break", "tie-break", "{}"),
            ("tie_break_gap", "tie-break gap", "{}"), ("proven", "both proven", "{}"),
            ("other_s", "other s", "{:.2f}"), ("total_s", "total s", "{:.2f}"),
            ("build_share", "build %", "{:.0%}"), ("status", "status", "{}"), ("gap", "gap", "{}"),
            ("objective", "tokens/s", "{:,.0f}"), ("capex", "capex $M", "{}")]
    out_rows = []
    for r in rows:
        cells = []
        for key, _, f in cols:
            v = r.get(key)
            if key in ("gap", "tie_break_gap"):
                cells.append("-" if v is None else f"{v:.1e}")
            elif key == "proven":
                cells.append("yes" if v else "NO")
            elif key == "capex":
                cells.append("-" if v is None else f"{v / 1e6:,.3f}")
            elif v is None:
                cells.append("-")
            else:
                cells.append(f.format(v))
        out_rows.append(cells)
    head = [h for _, h, _ in cols]
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c) + " |" for c in out_rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in out_rows)) if out_rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in out_rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="campus counts (default 2,4,8,16,32,64)")
    ap.add_argument("--backends", default=DEFAULT_BACKEND,
                    help=f"comma-separated: highs,cbc,scip,cpsat (default {DEFAULT_BACKEND}, the dcopt default)")
    ap.add_argument("--threads", type=int, default=1,
                    help="solver threads (default 1, as dcopt solve; SCIP runs its concurrent mode above 1)")
    ap.add_argument("--time-limit", type=float, default=600.0, help="per solve, s (default 600)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--search", choices=("split-order", "monolithic"), default="split-order",
                    help="stage 1 of max-throughput (dcopt solve --search); default split-order")
    ap.add_argument("--format", choices=("text", "md"), default="text")
    ap.add_argument("--no-tiny", action="store_true", help="skip the tiny family and its exhaustive enumeration")
    ap.add_argument("--tiny-sizes", default=",".join(map(str, TINY_SIZES)),
                    help="campus counts of the tiny family (default 1,2,3,4,5; 6 takes the enumeration ~70 s)")
    ap.add_argument("--write-instances", metavar="DIR", help="also write the generated instances as YAML")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]

    rows = []
    for n in sizes:
        data = family_instance(n, args.seed)
        if args.write_instances:
            Path(args.write_instances).mkdir(parents=True, exist_ok=True)
            (Path(args.write_instances) / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        li = load(data, data["name"])
        for backend in backends:
            params = SolveParameters(backend=backend, threads=args.threads, time_limit_s=args.time_limit,
                                     seed=args.seed, search=args.search)
            row = run_one(li, params)
            row.update(campuses=n, regions=regions_for(n), backend=backend)
            rows.append(row)
            print(f"# done {n} campuses on {backend}: {row['total_s']:.1f} s", file=sys.stderr, flush=True)
    print(fmt_rows(rows, args.format))
    print()
    print(split_enumeration_line())
    if not args.no_tiny:
        print()
        print(fmt_tiny(tiny_rows(backends, args), args.format))
    return 0


def split_enumeration_line(total: int = TOTAL_ACCELERATORS) -> str:
    """Issue 3's speed figure: every split of Dense-100T on GB200 NVL72 up to 1 M
    accelerators, enumerated and memory-pruned (optimizer/performance.py, numpy)."""
    from optimizer import performance as perf
    data = family_instance(16)
    data["job"]["model"] = "Dense-100T"
    li = load(data, "dense-100t")
    w = perf.workload_from_instance(li)
    perf.enumerate_splits(w, max_accelerators=total)          # warm-up (imports, caches)
    start = time.perf_counter()
    table = perf.enumerate_splits(w, max_accelerators=total)
    took = time.perf_counter() - start
    return (f"split enumeration: Dense-100T on GB200 NVL72, up to {total:,} accelerators: "
            f"{len(table):,} splits fit memory, {took * 1e3:.0f} ms")


def tiny_rows(backends: list[str], args) -> list[dict]:
    """The tiny family: MILP time vs the exhaustive enumeration of tests/test_bruteforce.py."""
    brute_force = _brute_force_module()
    rows = []
    for n in [int(x) for x in args.tiny_sizes.split(",") if x]:
        data = tiny_instance(n, args.seed)
        li = load(data, data["name"])
        start = time.perf_counter()
        best = brute_force(li)
        enum_s = time.perf_counter() - start
        for backend in backends:
            # against the enumeration's exact optimum: a gap limit of 1e-9, not the default
            params = SolveParameters(backend=backend, threads=args.threads, time_limit_s=args.time_limit,
                                     seed=args.seed, search=args.search, gap=TINY_GAP)
            start = time.perf_counter()
            plan = solve_instance(li, params)
            milp_s = time.perf_counter() - start
            if best is None:
                agree = plan["status"] == "infeasible"
            else:
                (k1, k2), *_ = best
                agree = (plan["status"] == "optimal"
                         and math.isclose(plan["performance"]["tokens_per_s_single_site"], -k1, rel_tol=1e-9)
                         and math.isclose(plan["totals"]["capex_usd"], k2, rel_tol=1e-7, abs_tol=1e-3))
            rows.append({"campuses": n, "backend": backend, "status": plan["status"], "milp_s": milp_s,
                         "enum_s": enum_s, "ratio": enum_s / milp_s if milp_s > 0 else float("inf"),
                         "agree": "yes" if agree else "NO"})
            print(f"# done tiny {n} on {backend}: MILP {milp_s:.2f} s, enumeration {enum_s:.2f} s",
                  file=sys.stderr, flush=True)
    return rows


def fmt_tiny(rows: list[dict], fmt: str) -> str:
    head = ["tiny campuses", "backend", "status", "MILP s", "enumeration s", "enumeration / MILP", "same optimum"]
    cells = [[str(r["campuses"]), r["backend"], r["status"], f"{r['milp_s']:.2f}", f"{r['enum_s']:.2f}",
              f"{r['ratio']:.2f}x", r["agree"]] for r in rows]
    if fmt == "md":
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    return "\n".join(["  ".join(h.rjust(w) for h, w in zip(head, widths))]
                     + ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells])


if __name__ == "__main__":
    sys.exit(main())
