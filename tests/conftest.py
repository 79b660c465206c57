"""Shared fixtures: the example instances and an in-process `dcopt` runner."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

import optimizer.cli as cli

ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = ROOT / "instances"
INSTANCES = sorted(INSTANCE_DIR.glob("*.yaml"))
DEFAULT_INSTANCE = INSTANCE_DIR / "us-two-regions.yaml"
TINY_INSTANCE = ROOT / "tests" / "data" / "tiny-two-campus.yaml"


def invoke_cli(args) -> tuple[int, str, str]:
    """Run `dcopt ARGS` in this process; return (exit code, stdout, stderr).

    An exception the CLI does not handle propagates, so a test sees it as a
    failure with its traceback (that is the bug a test is looking for).
    """
    # cli.main() registers the extra subcommands (solve, ...) on every call;
    # start from an empty list so repeated in-process calls do not clash.
    cli._EXTRA_COMMANDS.clear()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def run_cli():
    """`run_cli(["validate", path]) -> (exit_code, stdout, stderr)`, in-process."""
    return invoke_cli


@pytest.fixture(scope="session")
def instances() -> list[Path]:
    return list(INSTANCES)
