"""Errors a user can cause. The CLI prints them in one line each and exits 2."""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass
class Problem:
    """One thing wrong with an input: where it is and what is expected."""

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        # one line per problem, even when a path or message quotes input with line breaks
        return text.translate(_LINE_BREAKS)


# every character str.splitlines() breaks at, shown escaped instead (\n, \x85, \u2028, ...)
_LINE_BREAKS = {ord(c): c.encode("unicode_escape").decode("ascii")
                for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


class InputError(Exception):
    """Bad input: carries every problem found, each with file, line and field path."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SolverError(Exception):
    """A solver backend failed (missing, crashed, numerical trouble)."""


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    known = ", ".join(sorted(str(c) for c in choices))
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown name '{name}'{hint}; known: {known}"
