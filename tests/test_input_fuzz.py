"""Property tests: mutated example files never crash `dcopt validate`.

Whatever the mutation (a key deleted or renamed, a value replaced by random
YAML, a list item duplicated, the text truncated or sprinkled with random
characters or bytes), validate either accepts the file (exit 0) or rejects it
with exit 2 and one `error: FILE[:LINE]: ...` line per problem. An exception
escaping the CLI fails the test with its traceback. Bounded and derandomized,
so CI is deterministic and the file runs in well under 30 s.
"""
from __future__ import annotations

import copy
import re

import pytest
import yaml
from conftest import INSTANCES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEXTS = {p.stem: p.read_text(encoding="utf-8") for p in INSTANCES}
DATA = {stem: yaml.safe_load(text) for stem, text in TEXTS.items()}

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# scalars and collections YAML can express, including the awkward ones
scalars = (st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["", "0", "-1", "1e400", "GB200-NVL72", "800ZR", "campus", "min-cost"]))
yaml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)

# raw snippets that are not values of any Python type: broken or unusual YAML
yaml_snippets = st.sampled_from([
    "", "-1", "0", ".inf", "-.inf", ".nan", "true", "no", "null", "~", "[]", "{}", "[1, 2", "{a: 1",
    "!!python/object/apply:os.system ['true']", "!!binary aGk=", "!!set {a}", "&a x", "*nope",
    "'unterminated", '"\\x00"', "|", ">", "@at", "`tick", "%TAG", "? key", "- item", ": colon",
    "0x1F", "1_000", "2024-01-01", "1:30", "<<: {}", "\t", "\u00e9t\u00e9", "\ufeff"])


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _parent(data, path):
    for part in path[:-1]:
        data = data[part]
    return data


def _check(run_cli, path, text=None):
    code, out, err = run_cli(["validate", path])
    assert code in (0, 2), f"exit {code}\n{err}"
    if code == 0:
        assert out.startswith(f"{path}: valid")
        assert err == ""
        return
    assert out == ""
    lines = err.splitlines()
    assert lines, "exit 2 without a message"
    n_lines = text.count("\n") + 1 if text is not None else None
    for line in lines:
        assert line.startswith("error: "), line
        found = re.match(rf"error: {re.escape(str(path))}(?::(\d+))?: \S", line)
        assert found, f"the message does not name the file: {line!r}"
        if found.group(1) and n_lines is not None:
            assert 1 <= int(found.group(1)) <= n_lines, line


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _write_text(fuzz_dir, text: str):
    path = fuzz_dir / "mutant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- structural mutations

@FUZZ
@given(stem=st.sampled_from(sorted(DATA)), data=st.data())
def test_structural_mutation_never_crashes(run_cli, fuzz_dir, stem, data):
    doc = copy.deepcopy(DATA[stem])
    paths = [p for p in _paths(doc) if p]
    target = data.draw(st.sampled_from(paths), label="path")
    op = data.draw(st.sampled_from(["delete", "replace", "duplicate", "rename"]), label="op")
    parent = _parent(doc, target)
    last = target[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = data.draw(yaml_values, label="value")
    elif op == "duplicate":
        if isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        else:  # a mapping: the same value under a second, similar key
            parent[f"{last}_"] = copy.deepcopy(parent[last])
    else:  # rename a key (typo) or an item's name
        if isinstance(parent, dict):
            parent[str(last)[:-1] or "x"] = parent.pop(last)
        elif isinstance(parent[last], dict) and "name" in parent[last]:
            parent[last]["name"] = str(parent[last]["name"])[::-1]
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    _check(run_cli, _write_text(fuzz_dir, text), text)


# ---------------------------------------------------------------- text mutations

@FUZZ
@given(stem=st.sampled_from(sorted(TEXTS)), data=st.data())
def test_truncated_text_never_crashes(run_cli, fuzz_dir, stem, data):
    text = TEXTS[stem]
    cut = data.draw(st.integers(min_value=0, max_value=len(text)), label="cut")
    mutated = text[:cut]
    _check(run_cli, _write_text(fuzz_dir, mutated), mutated)


@FUZZ
@given(stem=st.sampled_from(sorted(TEXTS)), data=st.data())
def test_inserted_characters_never_crash(run_cli, fuzz_dir, stem, data):
    text = TEXTS[stem]
    mutated = text
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="edits")):
        at = data.draw(st.integers(min_value=0, max_value=len(mutated)), label="at")
        chars = data.draw(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=4)
                          | st.sampled_from(list("{}[]:,-#&*!|>'\"%@`?\t\n ")), label="chars")
        mutated = mutated[:at] + chars + mutated[at:]
    _check(run_cli, _write_text(fuzz_dir, mutated), mutated)


@FUZZ
@given(stem=st.sampled_from(sorted(TEXTS)), data=st.data())
def test_replaced_value_text_never_crashes(run_cli, fuzz_dir, stem, data):
    """Replace what follows one 'key:' in the file with a raw YAML snippet."""
    text = TEXTS[stem]
    spots = [m.end() for m in re.finditer(r"[\w-]+: ?", text)]
    at = data.draw(st.sampled_from(spots), label="at")
    end = min(i for i in (text.find(",", at), text.find("}", at), text.find("\n", at), len(text)) if i >= 0)
    snippet = data.draw(yaml_snippets, label="snippet")
    mutated = text[:at] + snippet + text[end:]
    _check(run_cli, _write_text(fuzz_dir, mutated), mutated)


@FUZZ
@given(stem=st.sampled_from(sorted(TEXTS)), data=st.data())
def test_line_edits_never_crash(run_cli, fuzz_dir, stem, data):
    """Delete, duplicate or re-indent one line."""
    lines = TEXTS[stem].splitlines(keepends=True)
    i = data.draw(st.integers(min_value=0, max_value=len(lines) - 1), label="line")
    op = data.draw(st.sampled_from(["delete", "duplicate", "indent", "dedent"]), label="op")
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "indent":
        lines[i] = " " * data.draw(st.integers(1, 4)) + lines[i]
    else:
        lines[i] = lines[i].lstrip(" ")
    mutated = "".join(lines)
    _check(run_cli, _write_text(fuzz_dir, mutated), mutated)


@FUZZ
@given(stem=st.sampled_from(sorted(TEXTS)), data=st.data())
def test_random_bytes_never_crash(run_cli, fuzz_dir, stem, data):
    raw = TEXTS[stem].encode("utf-8")
    at = data.draw(st.integers(min_value=0, max_value=len(raw)), label="at")
    junk = data.draw(st.binary(min_size=1, max_size=4), label="bytes")
    path = fuzz_dir / "mutant.yaml"
    path.write_bytes(raw[:at] + junk + raw[at:])
    _check(run_cli, path)
