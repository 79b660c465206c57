"""`dcopt solve`: the main job."""
from __future__ import annotations

import json
import sys

from .lp import BACKENDS, DEFAULT_BACKEND, DEFAULT_GAP, SolveParameters


def register(sub) -> None:
    s = sub.add_parser("solve", help="plan split, placement, DCI optics and cables for an instance")
    s.add_argument("file")
    s.add_argument("--objective", choices=["max-throughput", "min-cost"], help="override the instance's objective")
    s.add_argument("--solver", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"MILP backend (default: {DEFAULT_BACKEND}, fastest measured: docs/backends.md)")
    s.add_argument("--time-limit", type=float, default=None,
                   help="seconds of solver time; a run it stops reports its incumbent, bound and gap (exit 3) or "
                        "that it has no plan yet, never 'optimal'; the tie-break stage gets what stage 1 leaves, "
                        "an infeasibility explanation at least 1 s per solve")
    s.add_argument("--gap", type=float, default=DEFAULT_GAP,
                   help=f"relative MIP gap: optimal means proven within it (default {DEFAULT_GAP:g})")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--search", choices=["split-order", "monolithic"], default="split-order",
                   help="max-throughput: try the splits fastest first with the split fixed (default; exact, "
                        "much faster on large instances) or solve the whole model at once")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", choices=["text", "json"], default="text")
    s.add_argument("--out", help="directory for plan.json, bom.csv, report.md and the resolved instance")
    s.set_defaults(func=run)


def run(args) -> int:
    from .cli import EXIT_FEASIBLE, EXIT_INFEASIBLE, EXIT_OK
    from .instance import load_instance
    from .report import render
    from .solving import solve_instance, write_outputs

    li = load_instance(args.file)
    if args.time_limit is not None and args.time_limit <= 0:
        from .errors import InputError, Problem
        raise InputError([Problem("command line", "--time-limit", f"must be > 0 (got {args.time_limit:g})")])
    params = SolveParameters(backend=args.solver, time_limit_s=args.time_limit, gap=args.gap,
                             threads=args.threads, seed=args.seed, search=args.search)
    plan = solve_instance(li, params, objective=args.objective)
    if args.format == "json":
        print(json.dumps(plan, indent=2, sort_keys=True))
    else:
        print(render(plan), end="")
    if args.out:
        files = write_outputs(plan, li, args.out, render(plan, md=True))
        print("wrote " + ", ".join(files), file=sys.stderr)
    return {"optimal": EXIT_OK, "feasible": EXIT_FEASIBLE, "no_solution": EXIT_FEASIBLE}.get(plan["status"], EXIT_INFEASIBLE)
