"""The properties the solve fuzzing checks, shared by tests/test_solve_fuzz.py
(bounded, in CI) and scripts/fuzz.py (large counts).

`check_solve(data, folder)`: a valid instance either solves with a plan the
independent verifier accepts (exit 0, or exit 3 at the time limit), or is
reported infeasible (exit 4) with an explanation; then the suggested smallest
changes, applied to the file, give an instance that has a plan, and so does
the alternative that lowers targets. Never a traceback (an exception escapes).

`check_corruption(data, mutate, folder)`: a valid file, corrupted, gives exit 2
with one `error: FILE[:LINE]: PATH: message` line per problem (a field path
whenever the YAML still parses), or, if the corruption left it valid, any of
the solve outcomes above. Returns the outcome name for counting.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import yaml
from conftest import invoke_cli
from hypothesis import strategies as st
from instance_gen import as_yaml
# the corruptions of tests/test_input_fuzz.py (imported here, at the top: importing a
# module of @given tests inside a running @given trips Hypothesis's nesting check)
from test_input_fuzz import _parent, _paths, yaml_snippets, yaml_values

from optimizer.errors import InputError
from optimizer.instance import load_instance
from optimizer.lp import SolveParameters
from optimizer.scenarios import apply_overrides
from optimizer.solving import solve_instance
from optimizer.verify import verify_plan

# a safety net: most generated instances solve in well under a second, but proving an
# infeasibility explanation minimal can take minutes (an explanation found within the
# limit must still be sufficient, and that is what is checked)
TIME_LIMIT_S = 5.0


class PropertyFailed(AssertionError):
    pass


def _fail(msg: str, path: Path):
    raise PropertyFailed(f"{msg}\ninstance: {path}\n{path.read_text(encoding='utf-8')}")


def check_solve(data: dict, folder: Path, name: str = "instance.yaml", backend: str = "highs",
                time_limit_s: float = TIME_LIMIT_S) -> str:
    """Solve a generated valid instance through the CLI; return optimal | feasible | no_solution | infeasible."""
    path = Path(folder) / name
    path.write_text(as_yaml(data), encoding="utf-8")
    code, out, err = invoke_cli(["solve", path, "--format", "json", "--time-limit", time_limit_s,
                                 "--solver", backend])
    if code == 2:
        _fail(f"the generator made an invalid instance:\n{err}", path)
    if code not in (0, 3, 4):
        _fail(f"exit {code}\n{err}", path)
    if "Traceback" in err:
        _fail(f"traceback on stderr:\n{err}", path)
    plan = json.loads(out)
    status = plan["status"]
    li = load_instance(path)
    if code == 0 or status == "feasible":
        if status not in ("optimal", "feasible") or code != (0 if status == "optimal" else 3):
            _fail(f"exit {code} with status {status}", path)
        if not plan["verification"]["passed"] or verify_plan(plan, li):
            _fail(f"verifier: {verify_plan(plan, li)}", path)
        return status
    if code == 3:
        if status != "no_solution" or "time limit" not in plan.get("message", ""):
            _fail(f"exit 3 without a plan or a time-limit message: {plan}", path)
        return status
    # exit 4: explained, and the explanation's changes are enough
    inf = plan.get("infeasibility") or {}
    if status != "infeasible" or not inf.get("explanation"):
        _fail(f"exit 4 without an explanation: {plan}", path)
    for line in inf["explanation"]:
        if not line.strip():
            _fail("an empty explanation line", path)
    for label, changes in (("smallest_changes", inf.get("smallest_changes") or []),
                           ("alternatives", inf.get("alternatives") or [])):
        if not changes or not all(c.get("field") for c in changes):
            continue       # e.g. "add accelerators": not one field to edit
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        changed = apply_overrides(raw, {c["field"]: c["needed"] for c in changes})
        again = solve_instance(load_instance(f"{path}[{label} applied]", text=as_yaml(changed)),
                               SolveParameters(backend=backend, time_limit_s=time_limit_s))
        if again["status"] not in ("optimal", "feasible", "no_solution"):
            _fail(f"applying the {label} {[(c['field'], c['needed']) for c in changes]} still leaves it "
                  f"infeasible: {again.get('infeasibility', {}).get('explanation')}", path)
    return status


_ERROR_LINE = re.compile(r"error: (?P<file>.+?)(?::(?P<line>\d+))?: (?P<rest>\S.*)$")


def check_corruption(text: str, folder: Path, parses: bool, name: str = "corrupt.yaml") -> str:
    """Run `dcopt solve` on a corrupted file: exit 2 with located problems, or a solve outcome."""
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8")
    code, out, err = invoke_cli(["solve", path, "--format", "json", "--time-limit", TIME_LIMIT_S])
    if "Traceback" in err:
        _fail(f"traceback on stderr:\n{err}", path)
    if code in (0, 3, 4):
        json.loads(out)
        return "still_valid"
    if code != 2:
        _fail(f"exit {code}\n{err}", path)
    lines = err.splitlines()
    if not lines or out:
        _fail(f"exit 2 with stdout {out!r} / stderr {err!r}", path)
    n_lines = text.count("\n") + 1
    for line in lines:
        m = _ERROR_LINE.match(line)
        if not m or m.group("file") != str(path):
            _fail(f"the message does not name the file: {line!r}", path)
        if m.group("line") and not 1 <= int(m.group("line")) <= n_lines:
            _fail(f"line number out of the file: {line!r}", path)
    if parses:
        # the YAML still parses: every problem points at a field (checked on the API,
        # the CLI line cannot tell a path from a message)
        try:
            load_instance(path)
        except InputError as exc:
            for problem in exc.problems:
                if not problem.path:
                    _fail(f"no field path: {problem}", path)
        else:
            _fail("the CLI rejected a file the API accepts", path)
    return "rejected"


# ---------------------------------------------------------------- corruptions (tests/test_input_fuzz.py's, on any file)

def corrupt_structure(doc: dict, draw) -> dict:
    """Delete, replace (random YAML value), duplicate or rename one node of a parsed file."""
    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if p]
    target = draw(st.sampled_from(paths), label="path")
    op = draw(st.sampled_from(["delete", "replace", "duplicate", "rename"]), label="op")
    parent, last = _parent(doc, target), target[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = draw(yaml_values, label="value")
    elif op == "duplicate":
        if isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        else:
            parent[f"{last}_"] = copy.deepcopy(parent[last])
    elif isinstance(parent, dict):
        parent[str(last)[:-1] or "x"] = parent.pop(last)
    elif isinstance(parent[last], dict) and "name" in parent[last]:
        parent[last]["name"] = str(parent[last]["name"])[::-1]
    return doc


def corrupt_text(text: str, draw) -> str:
    """Truncate, insert random characters or a raw YAML snippet after a key, or edit a line."""
    op = draw(st.sampled_from(["truncate", "insert", "snippet", "line"]), label="text-op")
    if op == "truncate":
        return text[:draw(st.integers(0, len(text)), label="cut")]
    if op == "insert":
        at = draw(st.integers(0, len(text)), label="at")
        chars = draw(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=4)
                     | st.sampled_from(list("{}[]:,-#&*!|>'\"%@`?\t\n ")), label="chars")
        return text[:at] + chars + text[at:]
    if op == "snippet":
        spots = [m.end() for m in re.finditer(r"[\w-]+: ?", text)]
        at = draw(st.sampled_from(spots), label="at")
        end = min(i for i in (text.find(",", at), text.find("}", at), text.find("\n", at), len(text)) if i >= 0)
        return text[:at] + draw(yaml_snippets, label="snippet") + text[end:]
    lines = text.splitlines(keepends=True)
    i = draw(st.integers(0, len(lines) - 1), label="line")
    edit = draw(st.sampled_from(["delete", "duplicate", "indent", "dedent"]), label="line-op")
    if edit == "delete":
        del lines[i]
    elif edit == "duplicate":
        lines.insert(i, lines[i])
    elif edit == "indent":
        lines[i] = "  " + lines[i]
    else:
        lines[i] = lines[i].lstrip(" ")
    return "".join(lines)
