"""Scenario sweeps: one base instance, axes of overrides by field path, solved
in parallel, resumably, and summarised one row per scenario.

A sweep spec (YAML) names its base instance (relative to the spec file) and
the fields to vary, in the same dotted/indexed form as validation errors:

    base: ../instances/us-two-regions.yaml
    solver: {backend: highs, time_limit_s: 300, gap: 1.0e-4}
    axes:                                   # full factorial over axes and zip groups
      - path: routes[8].distance_km
        values: [500, 1000, 1500]
      - path: catalog_overrides.dci_optics.800ZR.price_usd
        range: {start: 2000, stop: 6000, step: 1000}     # stop included
    zip:                                    # paths varied together, value by value
      - name: ohio-power
        axes:
          - {path: "regions[1].campuses[0].power_budget_mw", values: [200, 250]}
          - {path: "regions[1].campuses[1].power_budget_mw", values: [120, 150]}

Steps, each callable alone: load_spec() validates the spec against the base
instance; expand() turns it into Scenario objects (stable id = hash of the
override set, plus a readable slug), each validated as load_instance() would
(instance_from_data(): the same checks on the mapping, no YAML round trip);
run_sweep() solves the pending ones on a process pool or a Dask cluster and
writes each result the moment it arrives (DIR/scenarios/<id>.json, atomic), so
an interrupted sweep resumes where it stopped; load_sweep_dir() turns the
records into plain rows (pandas.DataFrame(rows) works) for summary.csv/.md and
`dcopt compare`. The public entry point is optimizer.sweep() (api.py).

Cost of a sweep beyond its solves (scripts/sweep_bench.py measures it,
docs/sweeps.md has the figures): a scenario travels to its worker as plain
data and is validated there from it (~3 ms); the pool's processes start
(spawn, imports, solver warm-up, ~0.8 s) while the scenarios are expanded;
a worker ends when the sweeping process dies, never left waiting for work.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
import traceback
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from . import __version__
from .errors import InputError, Problem, did_you_mean
from .instance import (Instance, LoadedInstance, _describe_pydantic_error, _fields_at, format_path, load_instance,
                       validate_instance_data)
from .lp import BACKENDS, DEFAULT_BACKEND, DEFAULT_GAP, SolveParameters
from .strict import StrictModel
from .yamlio import LineMap, load_yaml

SPEC_SCHEMA_VERSION = "1.0"
MAX_SCENARIOS = 10_000
MAX_RANGE_VALUES = 10_000
DASK_CONNECT_TIMEOUT_S = 20
# a scenario whose record has one of these is done; "error" records are retried on a re-run
FINAL_STATUSES = ("optimal", "feasible", "no_solution", "infeasible", "invalid")
# the columns record_row() fills from a scenario's record, plus one power_mw.<region>
# per region: an axis or zip group is never shown under one of these names
RESULT_COLUMNS = ("id", "slug", "status", "reason", "capex_usd", "capex_dci_usd", "capex_cables_usd",
                  "tp", "pp", "dp", "accelerators", "tokens_per_s", "mfu", "efficiency_loss",
                  "dci_capacity_pbps", "module_mix", "cable_mix", "gap", "solve_s", "elapsed_s")
RESULT_PREFIXES = ("power_mw.",)
AXIS_COLUMN_PREFIX = "axis:"     # the last resort when even the whole path is a result column


def is_result_column(name: str) -> bool:
    return name in RESULT_COLUMNS or name.startswith(RESULT_PREFIXES)


# ---------------------------------------------------------------- spec file

class RangeSpec(StrictModel):
    start: Union[int, float]
    stop: Union[int, float]
    step: Union[PositiveInt, PositiveFloat]


class AxisSpec(StrictModel):
    path: str = Field(min_length=1, description="field path in the base instance, e.g. routes[8].distance_km")
    values: Optional[list[Any]] = Field(None, min_length=1, description="the values to try, in order")
    range: Optional[RangeSpec] = Field(None, description="start, stop (included), step")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.values is None) == (self.range is None):
            raise ValueError("give either 'values' or 'range'")
        return self


class ZipSpec(StrictModel):
    name: Optional[str] = Field(None, min_length=1, description="label of the group")
    axes: list[AxisSpec] = Field(min_length=1, description="paths varied together; same number of values each")


class SolverSpec(StrictModel):
    backend: Literal[BACKENDS] = DEFAULT_BACKEND  # type: ignore[valid-type]
    time_limit_s: Optional[PositiveFloat] = Field(None, description="per scenario")
    gap: float = Field(DEFAULT_GAP, ge=0, le=1)
    threads: PositiveInt = 1
    seed: int = 0


class SpecFile(StrictModel):
    base: str = Field(min_length=1, description="base instance file, relative to the spec file")
    name: Optional[str] = Field(None, min_length=1)
    description: str = ""
    objective: Optional[Literal["max-throughput", "min-cost"]] = Field(
        None, description="overrides the base's objective for every scenario")
    solver: SolverSpec = Field(default_factory=SolverSpec)
    axes: list[AxisSpec] = Field(default_factory=list)
    zip: list[ZipSpec] = Field(default_factory=list)


@dataclass
class Dimension:
    """One factor of the sweep: a single axis, or a zip group of axes."""

    label: str
    paths: list[str]                 # normalised field paths
    rows: list[tuple]                # one tuple of values (one per path) per step
    loc: tuple                       # location in the spec file, for messages
    named: bool = False              # a named zip group: its slug is name=<first path's value>


@dataclass
class Scenario:
    id: str                          # hash of the override set
    slug: str                        # readable: short path names and values
    overrides: dict[str, Any]        # normalised path -> value, in spec order
    instance: dict                   # the base's parsed YAML with the overrides applied
    problems: list[str] = field(default_factory=list)   # validation problems (status invalid)
    fingerprint: str = ""            # instance + solver + catalog: a changed one is re-solved

    @property
    def valid(self) -> bool:
        return not self.problems


@dataclass
class SweepSpec:
    path: str
    name: str
    description: str
    base_path: str
    base_raw: dict
    objective: Optional[str]
    solver: SolveParameters
    dimensions: list[Dimension]
    columns: dict[str, str]          # normalised path -> short column name

    @property
    def paths(self) -> list[str]:
        return [p for d in self.dimensions for p in d.paths]


# ---------------------------------------------------------------- field paths

_TOKEN = re.compile(r"""\[(\d+)\]|\[\s*"([^"]*)"\s*\]|\[\s*'([^']*)'\s*\]|\.?([^.\[\]]+)""")


def parse_path(text: str) -> tuple:
    """'regions[0].campuses[1].power_budget_mw' -> ('regions', 0, 'campuses', 1, 'power_budget_mw').

    A key with a dot in it can be quoted: llm_presets["GPT-1.7B"].layers
    (unquoted also works when the dotted name exists: resolve_path joins parts).
    """
    parts: list = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or (m.group(4) is not None and m.group(0).startswith(".") and not parts):
            raise ValueError(f"cannot read field path '{text}' at character {pos + 1}: "
                             "expected names joined by '.', list indices as [0]")
        if m.group(1) is not None:
            if not parts:
                raise ValueError(f"field path '{text}' must start with a field name")
            parts.append(int(m.group(1)))
        else:
            key = next(g for g in m.group(2, 3, 4) if g is not None)
            if m.group(4) is not None and not m.group(0).startswith(".") and parts and pos > 0:
                raise ValueError(f"cannot read field path '{text}' at character {pos + 1}: missing '.'")
            parts.append(key)
        pos = m.end()
    if not parts:
        raise ValueError("empty field path")
    return tuple(parts)


def _unwrap(ann):
    """Optional[X] -> X; Annotated[X, ...] -> X."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(ann)[0])
    if origin is Union or (sys.version_info >= (3, 10) and origin is __import__("types").UnionType):
        members = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return ann


def _is_model(ann) -> bool:
    return isinstance(ann, type) and hasattr(ann, "model_fields")


def resolve_path(raw: dict, parts: tuple) -> tuple:
    """Check a field path against the base instance and the instance schema.

    Returns the normalised parts (dotted catalog names joined). Raises
    ValueError naming the part that is wrong. A mapping key the schema knows
    may be missing from the base (it is added); a list index must exist.
    """
    from . import catalog as cat

    node: Any = raw
    ann: Any = Instance
    done: list = []
    i = 0
    section = None      # inside catalog_overrides: the section name
    while i < len(parts):
        part = parts[i]
        here = format_path(done) or "the top level"
        ann = _unwrap(ann)
        if isinstance(part, int):
            if typing.get_origin(ann) is not list and not isinstance(node, list):
                raise ValueError(f"{here} is not a list: [{part}] does not apply")
            if not isinstance(node, list):
                raise ValueError(f"{here} is not in the base instance, so [{part}] cannot be varied; "
                                 f"set the whole {here} instead")
            if not 0 <= part < len(node):
                raise ValueError(f"{here}[{part}] does not exist: the base has {len(node)} "
                                 f"{'entry' if len(node) == 1 else 'entries'} in {here}"
                                 + (f" (indices 0-{len(node) - 1})" if node else ""))
            node = node[part]
            args = typing.get_args(ann)
            ann = args[0] if args else Any
            done.append(part)
            i += 1
            continue
        # a mapping key; a name with dots (GPT-1.7B) arrives split: join it back
        key, used = part, 1
        names = set(node) if isinstance(node, dict) else set()
        if section and len(done) == 2:
            names |= set(cat.shipped_raw_catalog()[section])
        if key not in names:
            for j in range(i + 2, len(parts) + 1):
                if all(isinstance(p, str) for p in parts[i:j]) and ".".join(parts[i:j]) in names:
                    key, used = ".".join(parts[i:j]), j - i
                    break
        if node is not None and not isinstance(node, dict):
            raise ValueError(f"{here} is {_describe_value(node)} in the base instance, not a mapping of fields; "
                             f"override {here} as a whole")
        if typing.get_origin(ann) is Union:     # e.g. job.model: a preset name or a mapping of dimensions
            ann = next((a for a in typing.get_args(ann) if _is_model(a)), ann)
        if _is_model(ann):
            if key not in ann.model_fields:
                raise ValueError(did_you_mean(key, ann.model_fields).replace(
                    "unknown name", f"unknown field at {here}"))
            ann = ann.model_fields[key].annotation
            if not done and key == "catalog_overrides":
                section = ""
        elif typing.get_origin(ann) is dict:
            kt, vt = typing.get_args(ann)
            if section == "" and typing.get_origin(kt) is Literal:
                if key not in typing.get_args(kt):
                    raise ValueError(did_you_mean(key, typing.get_args(kt)).replace(
                        "unknown name", "unknown catalog section"))
                section = key
            elif section and len(done) == 2:
                # an entry: shipped, or added by the base's own overrides, or a new one set whole
                known = set(cat.shipped_raw_catalog()[section]) | set((node or {}))
                if key not in known and i + used < len(parts):
                    raise ValueError(did_you_mean(key, known).replace(
                        "unknown name", f"unknown {section} entry"))
                if i + used < len(parts):
                    entry_fields = cat.ENTRY_TYPES[section].model_fields
                    fname = parts[i + used]
                    if isinstance(fname, str) and fname not in entry_fields:
                        raise ValueError(did_you_mean(fname, entry_fields).replace(
                            "unknown name", f"unknown field of {section} entries"))
            ann = vt
        elif ann is Any or ann is object:
            if node is None or key not in node:
                raise ValueError(f"{format_path(done + [key])} is not in the base instance; "
                                 f"override {here} as a whole")
        else:
            raise ValueError(f"{here} is a single value, it has no field '{key}'")
        done.append(key)
        node = node.get(key) if isinstance(node, dict) else None
        i += used
    return tuple(done)


def _describe_value(v) -> str:
    if isinstance(v, str):
        return f"the text '{v}'"
    if isinstance(v, list):
        return "a list"
    return f"the value {v!r}"


def _unshared(obj):
    """Deep copy that never shares (YAML aliases share objects; a change must stay local)."""
    if isinstance(obj, dict):
        return {k: _unshared(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unshared(v) for v in obj]
    return obj


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """A copy of the base's parsed YAML with each path set to its value (paths
    already checked by resolve_path; missing mappings on the way are created)."""
    data = _unshared(raw)
    for path, value in overrides.items():
        parts = parse_path(path)      # normalised paths quote keys that contain dots
        node = data
        for part in parts[:-1]:
            if isinstance(part, int):
                node = node[part]
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
        node[parts[-1]] = _unshared(value)
    return data


def normalise_path(parts: tuple) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif "." in p or "[" in p or "]" in p:
            out += f'["{p}"]'
        else:
            out += ("." if out else "") + p
    return out


# ---------------------------------------------------------------- loading a spec

def _spec_problems(exc: ValidationError, fname: str, lines: LineMap) -> list[Problem]:
    problems, seen = [], set()
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("int", "float", "constrained-int", "constrained-float")
                    and not str(p).startswith("function-"))
        msg = _describe_pydantic_error(err)
        if err["type"] == "extra_forbidden":
            parent = _fields_at(loc[:-1], SpecFile)
            msg = did_you_mean(loc[-1], parent).replace("unknown name", "unknown field") if parent \
                else f"unknown field '{loc[-1]}'"
        if (loc, msg) in seen:
            continue
        seen.add((loc, msg))
        problems.append(Problem(fname, format_path(loc), msg, lines.line(loc)))
    return problems


def _range_values(r: RangeSpec) -> list:
    if r.stop < r.start:
        raise ValueError(f"stop ({r.stop:g}) is below start ({r.start:g})")
    n = int(math.floor((r.stop - r.start) / r.step + 1e-9)) + 1
    if n > MAX_RANGE_VALUES:
        raise ValueError(f"{n:,} values; at most {MAX_RANGE_VALUES:,} per axis")
    whole = all(isinstance(x, int) for x in (r.start, r.stop, r.step))
    return [r.start + k * r.step if whole else round(r.start + k * r.step, 12) for k in range(n)]


def load_spec(path: str | Path, text: str | None = None, *, backend: str | None = None,
              time_limit_s: float | None = None, gap: float | None = None) -> SweepSpec:
    """Read and check a sweep spec: shape, base instance, every path. Raises InputError.

    backend / time_limit_s / gap, when given, replace the spec's solver options.
    """
    fname = str(path)
    try:
        data, lines = load_yaml(path, text)
    except InputError as exc:
        for p in exc.problems:   # the usual slip: an unquoted [0] inside {...}
            if "but got '['" in p.message or "but found '['" in p.message:
                p.message += ('; inside {...} or [...] quote a path that has [index] in it: '
                              '{path: "routes[8].distance_km", values: [...]}')
        raise InputError(exc.problems) from None
    if not isinstance(data, dict):
        raise InputError([Problem(fname, "", f"top level must be a mapping of fields (got {type(data).__name__})", 1)])
    try:
        spec = SpecFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(_spec_problems(exc, fname, lines))
    problems: list[Problem] = []

    def add(loc, msg):
        problems.append(Problem(fname, format_path(loc), msg, lines.line(loc)))

    base_path = Path(spec.base)
    if not base_path.is_absolute():
        base_path = Path(fname).resolve().parent / base_path
    if not base_path.is_file():
        add(("base",), f"base instance '{spec.base}' not found (looked for {base_path})")
        raise InputError(problems)
    base = load_instance(base_path)          # a bad base is reported in the base file's own terms
    base_raw = base.raw

    groups = [(("axes", i), None, [a]) for i, a in enumerate(spec.axes)]
    groups += [(("zip", i), z.name, z.axes) for i, z in enumerate(spec.zip)]
    dimensions: list[Dimension] = []
    seen_paths: dict[str, tuple] = {}
    for gloc, gname, axes in groups:
        paths, columns = [], []
        for j, axis in enumerate(axes):
            aloc = gloc + (("axes", j) if gloc[0] == "zip" else ())
            try:
                parts = resolve_path(base_raw, parse_path(axis.path))
            except ValueError as exc:
                add(aloc + ("path",), str(exc))
                continue
            norm = normalise_path(parts)
            if norm in seen_paths:
                add(aloc + ("path",), f"{norm} is already varied by {format_path(seen_paths[norm])}; "
                                      "vary a path in one axis only")
                continue
            for other, oloc in seen_paths.items():
                if norm.startswith(other + ".") or norm.startswith(other + "[") or \
                        other.startswith(norm + ".") or other.startswith(norm + "["):
                    add(aloc + ("path",), f"{norm} overlaps {other} (varied by {format_path(oloc)}); "
                                          "the two would overwrite each other")
            seen_paths[norm] = aloc
            if axis.values is not None:
                values = list(axis.values)
            else:
                try:
                    values = _range_values(axis.range)
                except ValueError as exc:
                    add(aloc + ("range",), str(exc))
                    continue
            keys = [_canonical(v) for v in values]
            dup = next((v for k, v in zip(keys, values) if keys.count(k) > 1), None)
            if dup is not None and gloc[0] == "axes":
                add(aloc + ("values",), f"value {json.dumps(dup)} is listed twice; each scenario must differ")
                continue
            paths.append(norm)
            columns.append((aloc, values))
        if len(paths) != len(axes):
            continue
        lengths = {len(v) for _, v in columns}
        if len(lengths) > 1:
            counts = ", ".join(f"{p}: {len(v)}" for p, (_, v) in zip(paths, columns))
            add(gloc + ("axes",), f"zipped axes need the same number of values ({counts})")
            continue
        rows = list(zip(*[v for _, v in columns]))
        if gloc[0] == "zip":
            keys = [_canonical(list(r)) for r in rows]
            if len(set(keys)) < len(keys):
                add(gloc + ("axes",), "two steps of this zip group set the same values; each scenario must differ")
                continue
        if gname is not None:
            if is_result_column(gname):
                add(gloc + ("name",), f"'{gname}' is a result column of the summary; give the group another name")
                continue
            other = next((d for d in dimensions if d.named and d.label == gname), None)
            if other is not None:
                add(gloc + ("name",), f"zip group name '{gname}' is already used by {format_path(other.loc)}")
                continue
        label = gname or (paths[0] if len(paths) == 1 else "+".join(paths))
        dimensions.append(Dimension(label, paths, rows, gloc, named=bool(gname)))
    if problems:
        raise InputError(problems)
    total = math.prod(len(d.rows) for d in dimensions) if dimensions else 1
    if total > MAX_SCENARIOS:
        add(("axes",), f"{total:,} scenarios; at most {MAX_SCENARIOS:,} per sweep (split the sweep)")
        raise InputError(problems)
    params = SolveParameters(backend=backend or spec.solver.backend,
                             time_limit_s=time_limit_s if time_limit_s is not None else spec.solver.time_limit_s,
                             gap=gap if gap is not None else spec.solver.gap,
                             threads=spec.solver.threads, seed=spec.solver.seed)
    all_paths = [p for d in dimensions for p in d.paths]
    return SweepSpec(path=fname, name=spec.name or Path(fname).stem, description=spec.description,
                     base_path=str(base_path), base_raw=base_raw, objective=spec.objective, solver=params,
                     dimensions=dimensions,
                     columns=short_names(all_paths, reserved=[d.label for d in dimensions if d.named]))


def short_names(paths: list[str], reserved: typing.Iterable[str] = ()) -> dict[str, str]:
    """Shortest path suffix that tells the paths apart: power_budget_mw, or
    campuses[1].power_budget_mw when several campuses are varied.

    A name is never a result column of the summary (budgets.capex_usd, not
    capex_usd, which is the plan's capex) nor one of `reserved` (the zip group
    names); if even the whole path is taken, the column is 'axis:<path>'.
    """
    taken = set(reserved)
    free = lambda name: not is_result_column(name) and name not in taken
    split = {p: re.findall(r'\[\d+\]|\["[^"]*"\]|[^.\[\]]+', p) for p in paths}
    out = {}
    for p, parts in split.items():
        for n in range(1, len(parts) + 1):
            tail = parts[-n:]
            # an index alone is not a name: take the part before it too
            while tail and tail[0].startswith("[") and n < len(parts):
                n += 1
                tail = parts[-n:]
            name = _join(tail)
            if free(name) and all(_join(q[-len(tail):]) != name for o, q in split.items() if o != p):
                out[p] = name
                break
        else:
            out[p] = p if free(p) else AXIS_COLUMN_PREFIX + p
    return out


def _join(parts: list[str]) -> str:
    out = ""
    for s in parts:
        out += s if s.startswith("[") or not out else "." + s
    return out


# ---------------------------------------------------------------- scenarios

def _canonical(value) -> str:
    """Stable text of a value: 1000 and 1000.0 are the same setting."""
    def norm(v):
        if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
            return int(v)
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return v
    return json.dumps(norm(value), sort_keys=True, separators=(",", ":"), default=str)


def scenario_id(overrides: dict[str, Any]) -> str:
    """Hash of the override set (order-free, 1000 == 1000.0): stable across runs and machines."""
    text = _canonical({k: overrides[k] for k in sorted(overrides)})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _slug_value(v) -> str:
    if isinstance(v, float):
        text = f"{v:g}"
    elif isinstance(v, (dict, list)):
        text = hashlib.sha256(_canonical(v).encode()).hexdigest()[:6]
    else:
        text = str(v)
    return re.sub(r"[^A-Za-z0-9.+_-]+", "~", text) or "x"


def scenario_slug(steps: list[tuple["Dimension", tuple]], columns: dict[str, str]) -> str:
    """Readable name: column=value per axis; a named zip group shows its name
    and its first path's value (power-scale=150) instead of every path."""
    parts = []
    for dim, row in steps:
        if dim.named:
            parts.append(f"{_slug_value(dim.label)}={_slug_value(row[0])}")
        else:
            parts += [f"{columns.get(p, p)}={_slug_value(v)}" for p, v in zip(dim.paths, row)]
    return "_".join(parts) or "base"


def _catalog_hash() -> str:
    from . import catalog as cat
    return hashlib.sha256(_canonical(cat.shipped_raw_catalog()).encode()).hexdigest()[:12]


def _params_dict(params: SolveParameters) -> dict:
    return {"backend": params.backend, "time_limit_s": params.time_limit_s, "gap": params.gap,
            "threads": params.threads, "seed": params.seed}


def expand(spec: SweepSpec) -> list[Scenario]:
    """All scenarios of the spec, in order (first axis slowest), each validated."""
    catalog_hash = _catalog_hash()
    solver_key = _canonical(_params_dict(spec.solver))
    scenarios = []
    steps = product(*[d.rows for d in spec.dimensions]) if spec.dimensions else [()]
    for combo in steps:
        overrides: dict[str, Any] = {}
        for dim, row in zip(spec.dimensions, combo):
            overrides.update(zip(dim.paths, row))
        data = apply_overrides(spec.base_raw, overrides)
        if spec.objective:
            data["objective"] = spec.objective
        sid = scenario_id(overrides)
        slug = scenario_slug(list(zip(spec.dimensions, combo)), spec.columns)
        sc = Scenario(sid, slug, overrides, data)
        sc.problems = validate_scenario(sc, spec)
        sc.fingerprint = hashlib.sha256(
            f"{_canonical(data)}|{solver_key}|{catalog_hash}|{__version__}".encode()).hexdigest()[:16]
        scenarios.append(sc)
    return scenarios


def validate_scenario(sc: Scenario, spec: SweepSpec) -> list[str]:
    """Problems of the scenario's instance ('path: message'), empty when valid."""
    try:
        instance_from_data(f"{spec.path}[{sc.slug}]", sc.instance)
    except InputError as exc:
        return [f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems]
    return []


def instance_from_data(name: str, data: dict) -> LoadedInstance:
    """load_instance() for a scenario: the same validation and cross-checks on
    the base's parsed YAML with the overrides applied, without writing it out
    as YAML and parsing it again (that round trip was ~13 ms of each scenario,
    in the parent and again in the worker). A problem has its field path and
    no line: a scenario has no file of its own. Raises InputError.

    tests/test_sweep.py checks that it agrees with load_instance() on valid
    and invalid scenarios.
    """
    return validate_instance_data(data, name)


# ---------------------------------------------------------------- solving one scenario

def run_scenario(task: dict) -> dict:
    """Solve one scenario (in a worker process, a Dask worker, or in-process).

    Never raises: a failure becomes a record with status 'error' and its reason,
    so one bad scenario never loses the others. Returns a JSON-ready record.
    """
    from .errors import SolverError
    start = time.perf_counter()
    record = {"id": task["id"], "slug": task["slug"], "overrides": task["overrides"],
              "fingerprint": task["fingerprint"], "solver_options": task["params"]}
    try:
        from .solving import solve_instance
        li = instance_from_data(f"{task['spec']}[{task['slug']}]", task["instance"])
        params = SolveParameters(**task["params"])
        result = solve_instance(li, params)
        record["status"] = result["status"]
        record["reason"] = _reason(result)
        record["result"] = result
    except InputError as exc:
        record.update(status="invalid", reason="; ".join(f"{p.path}: {p.message}" if p.path else p.message
                                                         for p in exc.problems), result=None)
    except SolverError as exc:
        record.update(status="error", reason=f"solver error: {exc}", result=None)
    except Exception as exc:  # a bug: recorded with its traceback, the sweep goes on
        kind = "verifier rejected the plan" if type(exc).__name__ == "PlanRejected" else type(exc).__name__
        record.update(status="error", reason=f"{kind}: {exc}".splitlines()[0][:500], result=None,
                      traceback=traceback.format_exc())
    record["elapsed_s"] = round(time.perf_counter() - start, 4)
    record["worker"] = f"{platform.node()}:{os.getpid()}"
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def _reason(result: dict) -> str:
    st = result.get("status")
    if st == "infeasible":
        lines = result.get("infeasibility", {}).get("explanation") or []
        return "; ".join(lines) or "infeasible"
    if st == "no_solution":
        return result.get("message", "no plan found within the time limit")
    if st == "feasible":
        gap = result.get("objective", {}).get("gap")
        return f"time limit reached, gap {gap:.2%}" if isinstance(gap, (int, float)) else "time limit reached"
    return ""


def _invalid_record(sc: Scenario, params: SolveParameters) -> dict:
    return {"id": sc.id, "slug": sc.slug, "overrides": sc.overrides, "fingerprint": sc.fingerprint,
            "solver_options": _params_dict(params), "status": "invalid", "reason": "; ".join(sc.problems),
            "problems": sc.problems, "result": None, "elapsed_s": 0.0, "worker": "validation",
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_json_atomic(path: Path, obj) -> None:
    """Temp file in the same directory + rename: a reader never sees half a file,
    and a sweep killed mid-write leaves no broken result behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- running a sweep

@dataclass
class SweepRun:
    """What one `run_sweep` call did."""

    out_dir: str
    rows: list[dict]                 # one per scenario, in spec order
    solved: list[str]                # ids solved by this call
    skipped: list[str]               # ids whose finished result was already there
    wall_s: float
    workers: int
    executor: str                    # in-process | processes | dask

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out


def manifest(spec: SweepSpec, scenarios: list[Scenario]) -> dict:
    return {"schema_version": SPEC_SCHEMA_VERSION, "name": spec.name, "description": spec.description,
            "spec": str(Path(spec.path).resolve()), "base": spec.base_path,
            "objective": spec.objective, "solver": _params_dict(spec.solver),
            "axes": [{"label": d.label, "paths": d.paths, "steps": len(d.rows), "named": d.named}
                     for d in spec.dimensions],
            "columns": spec.columns,
            "scenarios": [{"id": s.id, "slug": s.slug, "overrides": s.overrides,
                           "fingerprint": s.fingerprint, "valid": s.valid} for s in scenarios],
            "dcopt_version": __version__}


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, workers: int = 2, dask_scheduler=None,
              progress: str = "off", force: bool = False, log=None) -> SweepRun:
    """Solve every scenario of spec not already finished in out_dir; write
    scenarios/<id>.json as each finishes, then summary.csv and summary.md.

    workers: processes of the local pool (0 = solve in this process).
    dask_scheduler: a scheduler address ('tcp://host:8786'), 'local' for a
    LocalCluster of `workers` processes, or a distributed.Client.
    progress: 'bar' (rich), 'lines' (one line per scenario), 'auto' (bar on a
    terminal, lines otherwise) or 'off'.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    pool = None
    if dask_scheduler is None and workers > 0:
        # the workers start now (spawn, imports, solver warm-up: ~0.8 s each) while
        # this process expands and validates the scenarios
        total = math.prod(len(d.rows) for d in spec.dimensions) if spec.dimensions else 1
        pool = _start_pool(min(workers, total))
    try:
        rec_dir = out / "scenarios"
        rec_dir.mkdir(parents=True, exist_ok=True)
        scenarios = expand(spec)
        write_json_atomic(out / "sweep.json", manifest(spec, scenarios))

        skipped, invalid, todo = [], [], []
        for sc in scenarios:
            old = None if force else read_record(rec_dir / f"{sc.id}.json")
            if old and old.get("fingerprint") == sc.fingerprint and old.get("status") in FINAL_STATUSES:
                skipped.append(sc.id)
            elif not sc.valid:          # recorded now, with its reason: nothing to solve
                write_json_atomic(rec_dir / f"{sc.id}.json", _invalid_record(sc, spec.solver))
                invalid.append(sc.id)
            else:
                todo.append(sc)
        solved = list(invalid)
        tasks = [_task(sc, spec) for sc in todo]
    except BaseException:
        _discard_pool(pool)
        raise
    if pool is not None and not tasks:     # everything was finished already
        _discard_pool(pool)
        pool = None

    reporter = _Progress(progress, total=len(scenarios), done=len(scenarios) - len(tasks), log=log)
    executor = "in-process" if (workers == 0 and dask_scheduler is None) else ("dask" if dask_scheduler is not None else "processes")
    try:
        with reporter:
            def finished(record: dict) -> None:
                write_json_atomic(rec_dir / f"{record['id']}.json", record)
                solved.append(record["id"])
                reporter.advance(record)

            if not tasks:
                pass
            elif dask_scheduler is not None:
                _run_dask(tasks, dask_scheduler, workers, finished)
            elif workers == 0:
                for t in tasks:
                    finished(run_scenario(t))
            else:
                pool, started = None, pool
                _run_pool(tasks, workers, finished, pool=started)
    finally:
        _discard_pool(pool)     # only if the run ended before the pool was handed over
        # whatever finished is summarised, also after an interruption
        rows = write_summaries(out)
    run = SweepRun(str(out), rows, solved, skipped, time.perf_counter() - start, workers, executor)
    write_json_atomic(out / "run.json", {
        "wall_s": round(run.wall_s, 3), "workers": workers, "executor": executor,
        "solved": solved, "skipped": skipped, "counts": run.counts,
        "sum_elapsed_s": round(sum(r.get("elapsed_s") or 0 for r in rows if r["id"] in solved), 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return run


def _task(sc: Scenario, spec: SweepSpec) -> dict:
    # the instance travels as plain data (a few kB pickled), so a Dask worker on
    # another machine needs no access to the spec or base files
    return {"id": sc.id, "slug": sc.slug, "overrides": sc.overrides, "fingerprint": sc.fingerprint,
            "spec": spec.path, "instance": sc.instance, "params": _params_dict(spec.solver)}


def _crash_record(task: dict, reason: str) -> dict:
    return {"id": task["id"], "slug": task["slug"], "overrides": task["overrides"],
            "fingerprint": task["fingerprint"], "solver_options": task["params"], "status": "error",
            "reason": reason, "result": None, "elapsed_s": None, "worker": None,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _new_pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if multiprocessing.parent_process() is not None:
        # a spawned worker re-imports the caller's script: a sweep called at its
        # top level would start pools recursively
        raise RuntimeError(
            "sweep() was called while a worker process imported the calling script; put the "
            "call under `if __name__ == \"__main__\":` (worker processes are spawned), or use workers=0")
    # spawn: a fork of a parent holding threads (rich, Dask, a test runner) can deadlock
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)


def _worker_ready() -> None:
    """A no-op task: submitting one per worker starts the processes."""


def _start_pool(workers: int):
    """A pool whose `workers` processes start now, not at the first scenario
    (ProcessPoolExecutor starts one process per submitted task)."""
    pool = _new_pool(workers)
    for _ in range(workers):
        pool.submit(_worker_ready)
    return pool


def _discard_pool(pool) -> None:
    if pool is not None:
        _terminate(pool)
        pool.shutdown(wait=False, cancel_futures=True)


def _run_pool(tasks: list[dict], workers: int, finished: Callable[[dict], None],
              solve_one: Callable[[dict], dict] = run_scenario, pool=None) -> None:
    """Local process pool. Until a worker dies, two scenarios per worker are in
    flight (one solving, one waiting in the pool's queue, so a worker that finishes
    starts its next at once instead of waiting for this process to hear of it and
    send one: ~4 ms per scenario measured). A worker that dies (a solver crash) is
    blamed on the scenarios in flight: each is retried once in a fresh pool, alone
    (nothing else in flight, so a second death is its own), and recorded as an
    error if it dies again; the other scenarios go on, from then on at most
    `workers` in flight.

    pool: one from _start_pool() to use first (it is shut down here)."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = list(reversed(tasks))
    attempts: dict[str, int] = {}

    def room(running: dict) -> bool:
        if any(attempts.get(t["id"]) for t in running.values()):
            return False                        # a retried scenario runs alone
        if running and attempts.get(queue[-1]["id"]):
            return False                        # the next is a retry: it waits for the others
        return len(running) < (workers if attempts else 2 * workers)

    while queue:
        if pool is None:
            pool = _new_pool(min(workers, len(queue)))
        running: dict = {}
        broken = False
        try:
            while queue or running:
                while queue and room(running):
                    t = queue.pop()
                    try:
                        running[pool.submit(solve_one, t)] = t
                    except BrokenProcessPool:     # a worker died before this task was sent: not its fault
                        queue.append(t)
                        broken = True
                        break
                if broken and not running:
                    print("warning: a worker process died before it was given a scenario; starting a fresh "
                          "pool", file=sys.stderr, flush=True)
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                done = [(fut, running.pop(fut)) for fut in done]
                # the queue is refilled before the records are written, so a worker never
                # waits on this process's file writes (a worker that died is not
                # replaced: its pool is broken)
                for fut, _ in done:
                    if queue and not broken and room(running) and not fut.cancelled() \
                            and fut.exception() is None:
                        t = queue.pop()
                        try:
                            running[pool.submit(solve_one, t)] = t
                        except BrokenProcessPool:
                            queue.append(t)
                            broken = True
                for fut, t in done:
                    try:
                        record = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        attempts[t["id"]] = attempts.get(t["id"], 0) + 1
                        if attempts[t["id"]] >= 2:
                            finished(_crash_record(t, "the worker process died twice while solving this scenario "
                                                      "(a solver crash or out of memory)"))
                        else:
                            queue.append(t)
                        continue
                    except Exception as exc:   # e.g. the task could not be unpickled in the worker
                        record = _crash_record(t, f"worker failed: {type(exc).__name__}: {exc}")
                    finished(record)
                if broken:
                    for fut, t in running.items():   # the pool is gone: its other tasks too
                        attempts[t["id"]] = attempts.get(t["id"], 0) + 1
                        if attempts[t["id"]] >= 2:
                            finished(_crash_record(t, "the worker process died twice while solving this scenario"))
                        else:
                            queue.append(t)
                    running.clear()
                    print("warning: a worker process died (solver crash or out of memory); the scenarios it "
                          "may have been solving are retried once in a fresh pool", file=sys.stderr, flush=True)
                    break
        except BaseException:
            _terminate(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=not broken, cancel_futures=True)
        pool = None


def _worker_init() -> None:
    """Initializer of every worker process of a sweep's local pool."""
    # Ctrl-C reaches every process of the terminal's group: the parent alone
    # handles it (keeps what finished, ends the workers), so workers ignore it
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    # the solver stack once per worker, before its first scenario, so no
    # scenario's time includes it; a failure here shows again, with its
    # traceback, in the record of the scenario that imports it
    try:
        from . import solving  # noqa: F401
        from .lp import available_backends
        available_backends()
    except Exception:
        pass


def _exit_with_parent() -> None:
    """End this worker process when the process that started it dies.

    A pool worker waits for its next task on a pipe whose write end it holds
    too, so when the parent is killed (SIGKILL, or SIGTERM to the parent
    alone, e.g. a harness's timeout) the read never sees end-of-file: the
    worker, and multiprocessing's resource_tracker whose pipe it holds, would
    live on forever. Two guards: on Linux the kernel kills the worker with the
    parent (PR_SET_PDEATHSIG), also in the middle of a native solve that holds
    the GIL; everywhere a daemon thread waits on the parent's sentinel (end of
    file when the parent is gone) and exits.
    """
    import multiprocessing
    import signal
    import threading
    from multiprocessing.connection import wait as wait_ready

    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass   # the sentinel thread below still ends the worker
    if parent.pid is not None and os.getppid() != parent.pid:
        os._exit(1)   # the parent died before the guard was set

    def watch() -> None:
        wait_ready([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="dcopt-exit-with-parent", daemon=True).start()


def _terminate(pool) -> None:
    # on Ctrl-C do not wait for long solves: end the pool's own worker processes
    for proc in list(getattr(pool, "_processes", {}).values()):
        try:
            proc.terminate()
        except Exception:
            pass


def _run_dask(tasks: list[dict], scheduler, workers: int, finished: Callable[[dict], None]) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError([Problem("command line", "--dask-scheduler",
                                  "Dask is not installed: pip install 'dcopt[dask]'")])
    own_cluster = own_client = None
    if hasattr(scheduler, "submit"):
        client = scheduler
    else:
        if scheduler == "local":
            own_cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                                       dashboard_address=None)
            address = own_cluster.scheduler_address
        else:
            address = scheduler
        try:
            client = own_client = Client(address, timeout=f"{DASK_CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            if own_cluster:
                own_cluster.close()
            raise InputError([Problem("command line", "--dask-scheduler",
                                      f"cannot reach the Dask scheduler at {address}: {exc}")])
    try:
        futures = {}
        for t in tasks:
            fut = client.submit(run_scenario, t, key=f"dcopt-scenario-{t['id']}-{os.getpid()}-{time.time_ns()}",
                                pure=False)
            futures[fut] = t
        for fut in as_completed(list(futures)):
            t = futures[fut]
            try:
                finished(fut.result())
            except Exception as exc:  # KilledWorker and the like: the scenario, not the sweep, fails
                finished(_crash_record(t, f"Dask task failed: {type(exc).__name__}: {exc}"))
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()


class _Progress:
    """rich progress bar on a terminal; one plain line per scenario elsewhere."""

    def __init__(self, mode: str, total: int, done: int, log=None):
        self.total, self.done = total, done
        self.log = log or sys.stderr
        if mode == "auto":
            mode = "bar" if self.log.isatty() else "lines"
        self.mode = mode
        self._bar = None

    def __enter__(self):
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self._bar = Progress(TextColumn("[bold]sweep"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[last]}"), console=Console(file=self.log),
                                 transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("sweep", total=self.total, completed=self.done, last="")
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False

    def advance(self, record: dict) -> None:
        self.done += 1
        text = f"{record['slug']}: {record['status']}"
        if self._bar is not None:
            self._bar.update(self._task, advance=1, last=f"{record['id']} {record['status']}")
        elif self.mode == "lines":
            el = record.get("elapsed_s")
            print(f"[{self.done}/{self.total}] {record['id']} {text}"
                  + (f" ({el:.1f} s)" if isinstance(el, (int, float)) else ""), file=self.log, flush=True)


# ---------------------------------------------------------------- summary rows

def record_row(record: dict | None, scenario: dict, columns: dict[str, str],
               groups: list[tuple[str, str]] = ()) -> dict:
    """One plain row of the comparison table (numbers stay numbers). groups:
    (name, first path) of each named zip group, shown as a column of its own."""
    row: dict[str, Any] = {"id": scenario["id"], "slug": scenario["slug"]}
    for name, first in groups:
        row[name] = scenario["overrides"].get(first)
    for path, value in scenario["overrides"].items():
        row[columns.get(path, path)] = value
    if record is None:
        row.update(status="pending", reason="")
        return row
    row["status"] = record.get("status")
    row["reason"] = record.get("reason") or ""
    plan = record.get("result") or {}
    if row["status"] in ("optimal", "feasible") and plan.get("totals"):
        totals, par, perf = plan["totals"], plan["parallelism"], plan["performance"]
        parts = totals.get("capex_usd_by_category", {})
        row["capex_usd"] = totals.get("capex_usd")
        row["capex_dci_usd"] = sum(v for k, v in parts.items() if k != "cables")
        row["capex_cables_usd"] = parts.get("cables")
        region_of = {p["campus"]: p["region"] for p in plan.get("placement", [])}
        by_region: dict[str, float] = {}
        for campus, w in totals.get("power_w_by_campus", {}).items():
            reg = region_of.get(campus, campus)
            by_region[reg] = by_region.get(reg, 0.0) + w / 1e6
        for reg, mw in by_region.items():
            row[f"power_mw.{reg}"] = round(mw, 3)
        row.update(tp=par["tp"], pp=par["pp"], dp=par["dp"], accelerators=par["accelerators"],
                   tokens_per_s=perf.get("tokens_per_s"), mfu=perf.get("mfu"),
                   efficiency_loss=perf.get("efficiency_loss"))
        links = plan.get("dci_links", [])
        row["dci_capacity_pbps"] = sum(l.get("capacity_gbps") or 0 for l in links) / 1e6
        mix: dict[str, int] = {}
        for l in links:
            for d in l.get("detail", []):
                mix[d["module"]] = mix.get(d["module"], 0) + int(d.get("modules", 0))
        row["module_mix"] = " ".join(f"{m}:{n}" for m, n in sorted(mix.items(), key=lambda x: -x[1]) if n)
        cables: dict[str, int] = {}
        for c in plan.get("cables", []):
            cables[c["type"]] = cables.get(c["type"], 0) + int(c.get("count", 0))
        row["cable_mix"] = " ".join(f"{m}:{n}" for m, n in sorted(cables.items(), key=lambda x: -x[1]) if n)
        row["gap"] = plan.get("objective", {}).get("gap")
    solver = plan.get("solver") or {}
    row["solve_s"] = solver.get("solve_s")
    row["elapsed_s"] = record.get("elapsed_s")
    return row


def load_sweep_dir(out_dir: str | Path) -> tuple[dict, list[dict]]:
    """The manifest and the rows of a sweep directory (pending scenarios included)."""
    out = Path(out_dir)
    man_path = out / "sweep.json"
    if not man_path.is_file():
        what = "does not exist" if not out.exists() else "has no sweep.json"
        raise InputError([Problem(str(out), "", f"not a sweep directory: {what} (run `dcopt sweep SPEC --out {out}` first)")])
    man = json.loads(man_path.read_text(encoding="utf-8"))
    clash = sorted({c for c in list(man["columns"].values()) + [g for g, _ in _groups(man)] if is_result_column(c)})
    if clash:   # written before axis columns were kept apart from the results
        raise InputError([Problem(str(man_path), "columns", (
            f"axis column {', '.join(repr(c) for c in clash)} has the name of a result column (a sweep "
            f"directory from an older dcopt); run `dcopt sweep SPEC --out {out}` again to rewrite it "
            "(finished scenarios are reused)"))])
    rows = []
    for sc in man["scenarios"]:
        rec = read_record(out / "scenarios" / f"{sc['id']}.json")
        if rec is not None and rec.get("fingerprint") != sc["fingerprint"]:
            rec = None   # from an earlier version of the spec or catalog
        rows.append(record_row(rec, sc, man["columns"], _groups(man)))
    return man, rows


def _groups(man: dict) -> list[tuple[str, str]]:
    return [(a["label"], a["paths"][0]) for a in man["axes"] if a.get("named")]


def ordered_columns(rows: list[dict], man: dict, compact: bool = False) -> list[str]:
    """Every column in table order; compact: a named zip group by its name only."""
    axis_cols = []
    for a in man["axes"]:
        if a.get("named"):
            axis_cols.append(a["label"])
        if not (compact and a.get("named")):
            axis_cols += [man["columns"].get(p, p) for p in a["paths"]]
    first = ["id", "slug"] + axis_cols + ["status"]
    main = ["capex_usd", "capex_dci_usd", "capex_cables_usd"]
    power = sorted({k for r in rows for k in r if k.startswith("power_mw.")})
    rest = ["tp", "pp", "dp", "accelerators", "tokens_per_s", "mfu", "efficiency_loss", "dci_capacity_pbps",
            "module_mix", "cable_mix", "gap", "solve_s", "elapsed_s", "reason"]
    return first + main + power + rest


def write_summaries(out_dir: str | Path) -> list[dict]:
    man, rows = load_sweep_dir(out_dir)
    cols = ordered_columns(rows, man)
    out = Path(out_dir)
    write_text_atomic(out / "summary.csv", format_table(rows, cols, "csv"))
    title = f"# Sweep {man['name']}\n\n{len(rows)} scenarios of `{Path(man['base']).name}`" + \
        (f": {man['description']}" if man.get("description") else "") + "\n\n"
    write_text_atomic(out / "summary.md", title + format_table(rows, [c for c in cols if c != "reason"], "md")
                      + _reasons_md(rows))
    return rows


def _reasons_md(rows: list[dict]) -> str:
    lines = [f"- `{r['id']}` {r['slug']} ({r['status']}): {r['reason']}" for r in rows
             if r.get("reason") and r["status"] not in ("optimal",)]
    return ("\n\n## Not solved to optimality\n\n" + "\n".join(lines) + "\n") if lines else ""


# ---------------------------------------------------------------- tables

def _fmt(col: str, v) -> str:
    """Planner-readable cell for text and Markdown (CSV keeps raw values)."""
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        if col.startswith("capex") or col.rsplit(".", 1)[-1].startswith("capex"):   # and budgets.capex_usd
            return f"${v / 1e6:,.1f}M" if abs(v) >= 1e8 else f"${v / 1e6:,.2f}M"
        if col.startswith("tokens_per_s") or col == "throughput_tokens_per_s":
            return f"{v / 1e6:,.3f}M"
        if col in ("mfu", "efficiency_loss"):
            return f"{v:.1%}"
        if col == "gap":
            return f"{v:.1e}"
        if col.startswith("power_mw") or col.endswith("_mw") or col == "dci_capacity_pbps":
            return f"{v:,.2f}"
        if col.endswith("_s"):
            return f"{v:,.1f}"
        if isinstance(v, float) and not v.is_integer():
            return f"{v:,.6g}"
        return f"{int(v):,}" if abs(v) >= 10_000 else f"{int(v)}"
    if isinstance(v, (dict, list)):
        return _canonical(v)
    return str(v)


def format_table(rows: list[dict], columns: list[str], fmt: str = "text") -> str:
    """rows as text (aligned), md (Markdown table) or csv (raw values)."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else (_canonical(r[c]) if isinstance(r.get(c), (dict, list)) else r[c])
                        for c in columns])
        return buf.getvalue()
    cells = [[_fmt(c, r.get(c)) for c in columns] for r in rows]
    if fmt == "md":
        esc = lambda s: s.replace("|", "\\|")
        out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in cells]
        return "\n".join(out) + "\n"
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(_is_num(r.get(c)) for r in rows if r.get(c) not in (None, "")) and c not in ("id", "slug")
               for c in columns]
    line = lambda r: "  ".join(x.rjust(w) if num else x.ljust(w) for x, w, num in zip(r, widths, numeric)).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells]) + "\n"


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sort_rows(rows: list[dict], column: str, descending: bool = False) -> list[dict]:
    """Numbers by value, text alphabetically; missing values last either way."""
    def key(r):
        v = r.get(column)
        if v is None or v == "":
            return (2, 0, "")
        if _is_num(v):
            return (0, -v if descending else v, "")
        return (1, 0, str(v))
    out = sorted(rows, key=key)
    if descending:   # text descending too, keeping missing last
        nums = [r for r in out if _is_num(r.get(column))]
        texts = sorted([r for r in out if not _is_num(r.get(column)) and r.get(column) not in (None, "")],
                       key=lambda r: str(r[column]), reverse=True)
        missing = [r for r in out if r.get(column) in (None, "")]
        out = nums + texts + missing
    return out
