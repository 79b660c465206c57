"""Fuzz `dcopt solve` at larger counts than CI (issue 5).

Runs the properties of tests/test_solve_fuzz.py (defined in
tests/solve_properties.py) on N random examples each:

1. solve: a random valid instance (1-20 campuses; tests/instance_gen.py)
   solves with a plan the independent verifier accepts, or is reported
   infeasible with an explanation whose smallest changes (and alternative),
   applied to the file, give a plan. Never a traceback.
2. corrupt-structure: a random valid instance with one node deleted, replaced
   by random YAML, duplicated or renamed gives exit 2 with the file, the line
   and a field path for every problem, or still solves.
3. corrupt-text: the same file truncated, with random characters or a raw YAML
   snippet inserted, or a line deleted / duplicated / re-indented gives exit 2
   naming the file (and a line inside it), or still solves.

A failing example does not stop the run: it is counted, its instance written
to --out, and the first lines of the failure printed. Exit 1 if any failed.

    python scripts/fuzz.py --examples 200                 # all three properties
    python scripts/fuzz.py --examples 50 --only solve --seed 7 --backend cbc
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import yaml  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from instance_gen import as_yaml, valid_instances  # noqa: E402
from solve_properties import (PropertyFailed, check_corruption, check_solve, corrupt_structure,  # noqa: E402
                              corrupt_text)

PROPERTIES = ("solve", "corrupt-structure", "corrupt-text")


def run_property(name: str, examples: int, rng_seed: int, folder: Path, out: Path, backend: str,
                 time_limit_s: float, shrink: bool) -> tuple[collections.Counter, list[str]]:
    counts: collections.Counter = collections.Counter()
    failures: list[str] = []
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    def record_failure(text: str, exc: BaseException) -> None:
        counts["FAILED"] += 1
        where = out / f"{name}-{rng_seed}-{len(failures)}.yaml"
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(text, encoding="utf-8")
        detail = str(exc) if isinstance(exc, PropertyFailed) else traceback.format_exc()
        failures.append(f"{where}: {detail.splitlines()[0] if detail else type(exc).__name__}")
        print(f"  FAILED ({name}) -> {where}\n    " + "\n    ".join(detail.splitlines()[:6]), flush=True)

    @seed(rng_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=phases,
              suppress_health_check=list(HealthCheck))
    @given(doc=valid_instances(max_campuses=20 if name == "solve" else 8), data=st.data())
    def prop(doc, data):
        text = as_yaml(doc)
        try:
            if name == "solve":
                outcome = check_solve(doc, folder, backend=backend, time_limit_s=time_limit_s)
            elif name == "corrupt-structure":
                text = yaml.safe_dump(corrupt_structure(doc, data.draw), sort_keys=False, allow_unicode=True)
                outcome = check_corruption(text, folder, parses=True)
            else:
                text = corrupt_text(text, data.draw)
                outcome = check_corruption(text, folder, parses=False)
            counts[outcome] += 1
        except Exception as exc:  # counted and kept, the run goes on
            if shrink:
                raise
            record_failure(text, exc)
        counts["examples"] += 1
        if counts["examples"] % 25 == 0:
            print(f"  {name}: {counts['examples']} examples ...", flush=True)

    prop()
    return counts, failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200, help="examples per property (default 200)")
    ap.add_argument("--only", choices=PROPERTIES, action="append", help="run only this property (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="highs")
    ap.add_argument("--time-limit", type=float, default=10.0, help="per solve, s (default 10)")
    ap.add_argument("--out", default="out/fuzz-failures", help="where failing instances are written")
    ap.add_argument("--shrink", action="store_true", help="stop at the first failure and let Hypothesis shrink it")
    args = ap.parse_args(argv)
    out = Path(args.out)
    total_failed = 0
    with tempfile.TemporaryDirectory(prefix="dcopt-fuzz-") as tmp:
        for name in args.only or PROPERTIES:
            start = time.perf_counter()
            print(f"{name}: {args.examples} examples, seed {args.seed}", flush=True)
            counts, failures = run_property(name, args.examples, args.seed, Path(tmp), out, args.backend,
                                            args.time_limit, args.shrink)
            total_failed += counts["FAILED"]
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "examples")
            print(f"{name}: {counts['examples']} examples in {time.perf_counter() - start:,.0f} s: {detail}",
                  flush=True)
    print(f"failed: {total_failed}")
    return 1 if total_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
