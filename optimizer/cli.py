"""Command line: a thin layer over the Python API.

Exit codes: 0 success / optimal, 2 bad input, 3 feasible but not proven optimal
(time limit), 4 infeasible, 5 solver failure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import InputError, SolverError

EXIT_OK, EXIT_BAD_INPUT, EXIT_FEASIBLE, EXIT_INFEASIBLE, EXIT_SOLVER = 0, 2, 3, 4, 5


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        print(f"dcopt: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _cmd_validate(args) -> int:
    from .instance import load_instance, summary
    li = load_instance(args.file)
    print(summary(li))
    return EXIT_OK


def _cmd_schema(args) -> int:
    if args.plan:
        from .plan import plan_json_schema
        schema = plan_json_schema()
    else:
        from .instance import instance_json_schema
        schema = instance_json_schema()
    text = json.dumps(schema, indent=2, sort_keys=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dcopt", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("validate", help="check an instance file and print its summary")
    v.add_argument("file")
    v.set_defaults(func=_cmd_validate)

    s = sub.add_parser("schema", help="print the JSON Schema of instance files (or of plans)")
    s.add_argument("--plan", action="store_true", help="schema of the plan JSON instead")
    s.add_argument("--out", help="write to this file instead of stdout")
    s.set_defaults(func=_cmd_schema)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


# Other modules add their subcommands here (evaluate, solve, sweep, ...).
_EXTRA_COMMANDS: list = []


def _load_extra_commands():
    import importlib
    _EXTRA_COMMANDS.clear()
    for name in ("optimizer.evaluate_cli", "optimizer.solve_cli", "optimizer.sweep_cli"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        _EXTRA_COMMANDS.append(mod.register)


def main(argv=None) -> int:
    _load_extra_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SolverError as exc:
        print(f"solver error: {exc}", file=sys.stderr)
        return EXIT_SOLVER
    except BrokenPipeError:  # output piped into `head`: not an error (before `except Exception`, which would re-raise it)
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as exc:
        from .solving import PlanRejected
        if isinstance(exc, PlanRejected):
            print(f"internal error (please report): {exc}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
