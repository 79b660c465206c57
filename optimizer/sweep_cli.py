"""`dcopt sweep`, `dcopt compare`, `dcopt pareto`: many scenarios, one table."""
from __future__ import annotations

import contextlib
import json
import sys

from .lp import BACKENDS, DEFAULT_BACKEND, DEFAULT_GAP

# what `compare` shows unless --columns says otherwise (csv always has every column)
_HIDDEN_BY_DEFAULT = {"slug", "capex_dci_usd", "capex_cables_usd", "cable_mix", "gap", "solve_s",
                      "elapsed_s", "reason"}


def register(sub) -> None:
    s = sub.add_parser("sweep", help="solve every scenario of a sweep spec (parallel, resumable)",
                       description="Expand SPEC (a base instance and axes of overrides) into scenarios and solve "
                                   "them; each result is written to OUT/scenarios/<id>.json as it finishes, a re-run "
                                   "skips finished scenarios, and OUT/summary.csv / summary.md compare them.")
    s.add_argument("spec")
    s.add_argument("--out", required=True, help="sweep directory (created; reused to resume)")
    s.add_argument("--workers", type=int, default=2, help="local worker processes (default 2; 0 = in this process)")
    s.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster: tcp://host:8786, or 'local' for a LocalCluster of --workers processes")
    s.add_argument("--solver", choices=BACKENDS, help="override the spec's solver backend")
    s.add_argument("--time-limit", type=float, help="override the spec's time limit per scenario, s")
    s.add_argument("--gap", type=float, help="override the spec's relative MIP gap")
    s.add_argument("--force", action="store_true", help="re-solve finished scenarios too")
    s.add_argument("--list", action="store_true", help="list the scenarios (id, overrides, validity) and stop")
    s.add_argument("--progress", choices=["auto", "bar", "lines", "off"], default="auto",
                   help="progress display on stderr (auto: a bar on a terminal, one line per scenario otherwise)")
    s.set_defaults(func=run_sweep_cmd)

    c = sub.add_parser("compare", help="print the scenario table of a sweep directory, sorted or grouped")
    c.add_argument("dir")
    c.add_argument("--sort", metavar="COLUMN", help="sort by this column (numbers by value); '-COLUMN' or --desc for descending")
    c.add_argument("--desc", action="store_true", help="sort descending")
    c.add_argument("--group-by", metavar="COLUMN", help="one table per value of this column")
    c.add_argument("--format", choices=["text", "md", "csv"], default="text")
    c.add_argument("--columns", help="comma-separated columns to show, or 'all'")
    c.set_defaults(func=run_compare_cmd)

    p = sub.add_parser("pareto", help="capex-throughput Pareto front of an instance (epsilon-constraint)")
    p.add_argument("file")
    p.add_argument("--between", nargs=2, metavar=("X", "Y"), default=["capex", "throughput"],
                   help="the two objectives (only 'capex throughput' is supported)")
    p.add_argument("--points", type=int, default=8, help="capex caps solved between the two extremes (default 8)")
    p.add_argument("--out", help="directory for pareto.csv, pareto_points.csv and pareto.png")
    p.add_argument("--solver", choices=BACKENDS, default=DEFAULT_BACKEND)
    p.add_argument("--time-limit", type=float, help="seconds per solve")
    p.add_argument("--gap", type=float, default=DEFAULT_GAP)
    p.add_argument("--workers", type=int, default=1, help="solve the capex caps in this many processes")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text")
    p.set_defaults(func=run_pareto_cmd)


def _bad(path: str, message: str):
    from .errors import InputError, Problem
    return InputError([Problem("command line", path, message)])


def _check_common(args) -> None:
    if getattr(args, "workers", 0) is not None and args.workers < 0:
        raise _bad("--workers", f"must be >= 0 (got {args.workers})")
    if getattr(args, "time_limit", None) is not None and args.time_limit <= 0:
        raise _bad("--time-limit", f"must be > 0 (got {args.time_limit:g})")
    if getattr(args, "gap", None) is not None and not 0 <= args.gap <= 1:
        raise _bad("--gap", f"must be between 0 and 1 (got {args.gap:g})")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (`timeout`, a batch system) stops a sweep as Ctrl-C does: what
    finished is kept and summarised, the workers are ended, exit 130."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield          # only the main thread may set signal handlers
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sweep_cmd(args) -> int:
    from .cli import EXIT_OK, EXIT_SOLVER
    from .scenarios import expand, format_table, load_spec, load_sweep_dir, ordered_columns, run_sweep

    _check_common(args)
    spec = load_spec(args.spec, backend=args.solver, time_limit_s=args.time_limit, gap=args.gap)
    if args.list:
        scenarios = expand(spec)
        for sc in scenarios:
            state = "valid" if sc.valid else "INVALID: " + "; ".join(sc.problems)
            print(f"{sc.id}  {sc.slug}  {state}")
        print(f"{len(scenarios)} scenarios ({sum(not s.valid for s in scenarios)} invalid)", file=sys.stderr)
        return EXIT_OK
    with _sigterm_as_interrupt():
        run = run_sweep(spec, args.out, workers=args.workers, dask_scheduler=args.dask_scheduler,
                        progress=args.progress, force=args.force)
    man, _ = load_sweep_dir(args.out)
    cols = [c for c in ordered_columns(run.rows, man, compact=True) if c not in _HIDDEN_BY_DEFAULT]
    print(format_table(run.rows, cols, "text"), end="")
    counts = ", ".join(f"{n} {st}" for st, n in sorted(run.counts.items()))
    print(f"{len(run.rows)} scenarios: {counts}; solved {len(run.solved)}, reused {len(run.skipped)}, "
          f"{run.wall_s:,.1f} s wall ({run.executor}, {args.workers} workers)", file=sys.stderr)
    for r in run.rows:
        if r["status"] in ("invalid", "error"):
            print(f"{r['status']}: {r['id']} {r['slug']}: {r['reason']}", file=sys.stderr)
    print(f"wrote {args.out}/summary.csv, {args.out}/summary.md, {args.out}/scenarios/*.json", file=sys.stderr)
    return EXIT_SOLVER if run.counts.get("error") else EXIT_OK


def run_compare_cmd(args) -> int:
    from .cli import EXIT_OK
    from .errors import did_you_mean
    from .scenarios import format_table, load_sweep_dir, ordered_columns, sort_rows

    man, rows = load_sweep_dir(args.dir)
    every = ordered_columns(rows, man)
    known = set(every) | {k for r in rows for k in r}
    if args.columns and args.columns != "all":
        cols = [c.strip() for c in args.columns.split(",") if c.strip()]
    elif args.columns == "all" or args.format == "csv":
        cols = every
    else:
        cols = [c for c in ordered_columns(rows, man, compact=True) if c not in _HIDDEN_BY_DEFAULT]
    sort, desc = args.sort, args.desc
    if sort and sort.startswith("-") and sort[1:] in known:
        sort, desc = sort[1:], True
    for flag, name in (("--sort", sort), ("--group-by", args.group_by)) + tuple(("--columns", c) for c in cols):
        if name and name not in known:
            raise _bad(flag, did_you_mean(name, every).replace("unknown name", "unknown column"))
    if sort:
        rows = sort_rows(rows, sort, desc)
    if not args.group_by:
        print(format_table(rows, cols, args.format), end="")
        return EXIT_OK
    groups: dict = {}
    for r in sort_rows(rows, args.group_by):   # stable: keeps the --sort order inside each group
        groups.setdefault(json.dumps(r.get(args.group_by), default=str), []).append(r)
    if args.format == "csv":
        print(format_table([r for g in groups.values() for r in g], cols, "csv"), end="")
        return EXIT_OK
    shown = [c for c in cols if c != args.group_by]
    for i, (key, members) in enumerate(groups.items()):
        value = members[0].get(args.group_by)
        head = f"{args.group_by} = {'-' if value in (None, '') else value} ({len(members)} scenario{'' if len(members) == 1 else 's'})"
        print(("\n" if i else "") + (f"## {head}\n" if args.format == "md" else f"{head}\n"))
        print(format_table(members, shown, args.format), end="")
    return EXIT_OK


def run_pareto_cmd(args) -> int:
    from .cli import EXIT_INFEASIBLE, EXIT_OK
    from .instance import load_instance
    from .lp import SolveParameters
    from .pareto_front import AXES, front_csv, front_text, pareto_front, write_outputs

    _check_common(args)
    if sorted(args.between) != sorted(AXES):
        raise _bad("--between", f"only 'capex throughput' is supported (got '{' '.join(args.between)}')")
    if args.points < 0 or args.points > 200:
        raise _bad("--points", f"must be between 0 and 200 (got {args.points})")
    li = load_instance(args.file)
    params = SolveParameters(backend=args.solver, time_limit_s=args.time_limit, gap=args.gap)
    result = pareto_front(li, points=args.points, params=params, workers=args.workers)
    if result.status != "ok":
        print(f"INFEASIBLE: {result.instance} has no plan, so no front: {result.reason}", file=sys.stderr)
        return EXIT_INFEASIBLE
    if args.format == "json":
        print(json.dumps({"instance": result.instance, "front": result.front, "points": result.points},
                         indent=2, sort_keys=True))
    elif args.format == "csv":
        print(front_csv(result.front), end="")
    else:
        print(front_text(result), end="")
    if args.out:
        print("wrote " + ", ".join(write_outputs(result, args.out)), file=sys.stderr)
    return EXIT_OK
