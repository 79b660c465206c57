"""The output contract of `dcopt solve` (issue 4): JSON keys, the published plan
schema, the --out files (plan.json, bom.csv, report.md, the resolved instance),
BOM arithmetic and determinism.

`jsonschema` is not a dependency, so plans are checked against the published
schema (`dcopt schema --plan`) by the small validator below, which implements
exactly the keywords the schema uses and refuses any other: a keyword added to
the schema later cannot be silently ignored here.
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
import re
from pathlib import Path

import pytest
from conftest import INSTANCE_DIR, TINY_INSTANCE

from optimizer.instance import load_instance
from optimizer.lp import DEFAULT_BACKEND
from optimizer.plan import BOM_FIELDS, PLAN_SCHEMA_VERSION, plan_json_schema

# ------------------------------------------------------------ a small JSON Schema validator

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_ANNOTATIONS = {"$schema", "title", "description"}
_KEYWORDS = {"type", "required", "properties", "additionalProperties", "items", "enum", "const",
             "minimum", "allOf", "if", "then"} | _ANNOTATIONS


def schema_errors(value, schema: dict, path: str = "$") -> list[str]:
    """Violations of `schema` by `value` (draft 2020-12 semantics for the keywords used)."""
    unknown = set(schema) - _KEYWORDS
    assert not unknown, f"the test validator does not implement {sorted(unknown)} (at {path})"
    errors: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{path}: {value!r} is not of type {types}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{path}: {value!r} < {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required key '{key}'")
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key in value:
                errors += schema_errors(value[key], sub, f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in props:
                    errors += schema_errors(value[key], extra, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, path)
    if "if" in schema and not schema_errors(value, schema["if"], path):
        errors += schema_errors(value, schema.get("then", {}), path)
    return errors


def test_the_validator_catches_what_it_should():
    schema = plan_json_schema()
    assert schema_errors({"schema_version": "1.0"}, schema)                      # no status, solver
    bad_status = {"schema_version": PLAN_SCHEMA_VERSION, "status": "done", "instance": "x",
                  "solver": {"backend": "highs", "build_s": 0.1, "solve_s": 0.1, "variables": 1, "constraints": 1}}
    assert any("not in" in e for e in schema_errors(bad_status, schema))
    optimal_without_sections = dict(bad_status, status="optimal")
    errs = schema_errors(optimal_without_sections, schema)
    assert any("'totals'" in e for e in errs) and any("'parallelism'" in e for e in errs)
    assert schema_errors({"tp": "8"}, schema["properties"]["parallelism"])
    assert schema_errors({"tp": True}, {"properties": {"tp": {"type": "integer"}}})


# ------------------------------------------------------------ helpers

TIMING = re.compile(r'"(build_s|solve_s|primary_solve_s|tie_break_solve_s|wall_s)": [-+0-9.eE]+')
REPORT_TIMING = re.compile(r"build [0-9.]+ s, solve [0-9.]+ s( \(objective [0-9.]+ s, tie-break [0-9.]+ s\))?"
                           r"(, [0-9.]+ s in all)?")


def _solve_out(run_cli, path, out_dir, *extra):
    code, stdout, err = run_cli(["solve", path, "--format", "json", "--out", out_dir, *extra])
    return code, stdout, err


# Two regions, one campus each, 1,000 km of leased fiber; min-cost with 8
# accelerators. Campus a reaches its leaves with 2 m DAC, b needs 3 m AEC, so the
# job goes to a (cheaper cables) and the plan is unique.
BOM_CASE = """
name: bom-by-hand
pue: 1.2
objective: min-cost
regions:
  - name: west
    campuses:
      - {name: a, power_budget_mw: 1, scale_up_domain: HGX-H100-8, accelerators: 16,
         fabric_lengths_m: {nic_to_leaf: 2}}
  - name: east
    campuses:
      - {name: b, power_budget_mw: 1, scale_up_domain: HGX-H100-8, accelerators: 16}
routes:
  - {a: a, b: b, distance_km: 1000, fiber_pairs_available: 2, band_plans: [C]}
targets: {intra_region_pbps: 0, inter_region_pbps: 0.0016}
job:
  model: {layers: 4, hidden: 1024, heads: 8, seq_len: 1024, vocab: 32000, global_batch_sequences: 8}
  efficiency_loss_bound: {campus: 0.05, intra_region: 0.05, inter_region: 0.10}
  micro_batch_sizes: [1, 2]
  interleave_options: [1]
  recompute_modes: [selective]
  min_accelerators: 8
"""

INFEASIBLE_CASE = TINY_INSTANCE.read_text(encoding="utf-8").replace(
    "intra_region_pbps: 0.01", "intra_region_pbps: 5")   # 5 Pbit/s over 16 fiber pairs: impossible


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One `dcopt solve tiny --format json --out DIR` run shared by the contract tests."""
    from conftest import invoke_cli
    out = tmp_path_factory.mktemp("tiny-out")
    code, stdout, err = _solve_out(invoke_cli, TINY_INSTANCE, out)
    assert code == 0, err
    return out, stdout


# ------------------------------------------------------------ JSON and schema

def test_schema_cli_prints_the_published_plan_schema(run_cli, tmp_path):
    code, out, err = run_cli(["schema", "--plan"])
    assert code == 0, err
    assert json.loads(out) == plan_json_schema()
    code, _, err = run_cli(["schema", "--plan", "--out", tmp_path / "plan.schema.json"])
    assert code == 0, err
    assert json.loads((tmp_path / "plan.schema.json").read_text()) == plan_json_schema()


ISSUE_KEYS = {  # issue 4, "Outputs": at least these keys
    "objective": ["name", "value", "bound", "gap"],
    "parallelism": ["tp", "pp", "dp", "micro_batch", "accelerators"],
    "performance": ["step_time_s", "tokens_per_s", "mfu", "efficiency_loss"],
    "totals": ["capex_usd", "power_w_by_campus", "intra_region_capacity_gbps", "inter_region_capacity_gbps"],
    "solver": ["backend", "build_s", "solve_s", "variables", "constraints"],
}
LINK_KEYS = ["a", "b", "distance_km", "scope", "module", "wavelengths", "modules", "fiber_pairs",
             "capacity_gbps", "demand_gbps", "cost_usd", "power_w"]
CABLE_KEYS = ["campus", "connection", "type", "count", "cost_usd", "power_w"]


def test_json_plan_has_the_issue_keys_and_validates(tiny_run):
    out, stdout = tiny_run
    plan = json.loads(stdout)
    assert json.loads((out / "plan.json").read_text()) == plan, "plan.json is what --format json printed"
    assert schema_errors(plan, plan_json_schema()) == []
    assert plan["schema_version"] == PLAN_SCHEMA_VERSION and plan["status"] == "optimal"
    for section, keys in ISSUE_KEYS.items():
        assert set(keys) <= set(plan[section]), section
    assert isinstance(plan["placement"], list) and {p["campus"] for p in plan["placement"]} == {"a", "b"}
    assert plan["dci_links"] and all(set(LINK_KEYS) <= set(link) for link in plan["dci_links"])
    assert plan["cables"] and all(set(CABLE_KEYS) <= set(c) for c in plan["cables"])
    assert plan["dci_links"][0]["scope"] == "intra_region"
    assert set(plan["totals"]["intra_region_capacity_gbps"]) == {"r1"}
    assert plan["solver"]["backend"] == DEFAULT_BACKEND


def test_infeasible_run_writes_a_valid_plan_json_and_no_bom(run_cli, tmp_path):
    src = tmp_path / "impossible.yaml"
    src.write_text(INFEASIBLE_CASE, encoding="utf-8")
    code, stdout, err = _solve_out(run_cli, src, tmp_path / "out")
    assert code == 4, err
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["status"] == "infeasible"
    assert schema_errors(plan, plan_json_schema()) == []
    assert json.loads(stdout) == plan
    assert not (tmp_path / "out" / "bom.csv").exists()
    assert (tmp_path / "out" / "report.md").read_text().startswith("# INFEASIBLE")


@pytest.mark.parametrize("stopped_as", ["feasible", "no_solution"])
def test_a_run_stopped_by_the_time_limit_validates(run_cli, tmp_path, monkeypatch, stopped_as):
    """A time-limited run (exit 3) writes a plan.json that the schema accepts.

    The solver is made to report a time-limit stop: 'feasible' keeps its plan and
    gets a bound 1 % away, 'no_solution' has none."""
    import optimizer.solving as solving
    real_solve = solving.solve

    def stopped(model, params, hint=None):
        res = real_solve(model, params)
        if stopped_as == "feasible":
            bound = res.objective * (1.01 if model.maximize else 0.99)
            return replace(res, status="feasible", bound=bound, gap=0.01, message="Time limit reached")
        return replace(res, status="no_solution", values=None, objective=None, bound=None, gap=None,
                       message="Time limit reached")
    monkeypatch.setattr(solving, "solve", stopped)
    code, stdout, err = _solve_out(run_cli, TINY_INSTANCE, tmp_path / "out", "--time-limit", "30",
                                   "--search", "monolithic")
    assert code == 3, err
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["status"] == stopped_as
    assert schema_errors(plan, plan_json_schema()) == []
    assert (tmp_path / "out" / "bom.csv").exists() == (stopped_as == "feasible")


# ------------------------------------------------------------ --out files

def _bom(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows


def test_out_dir_has_the_four_files(tiny_run):
    out, _ = tiny_run
    assert sorted(p.name for p in out.iterdir()) == ["bom.csv", "instance.resolved.yaml", "plan.json", "report.md"]
    report = (out / "report.md").read_text()
    assert report.startswith("# OPTIMAL plan for tiny")
    for heading in ("## Parallelism split", "## Placement", "## DCI links", "## Cables", "## Budgets and targets",
                    "## Solver"):
        assert heading in report


def test_resolved_instance_reproduces_the_plan(tiny_run, run_cli, tmp_path):
    """The resolved instance is a valid instance file and gives the same plan."""
    out, stdout = tiny_run
    li = load_instance(out / "instance.resolved.yaml")
    assert li.instance.name == "tiny"
    code, again, err = _solve_out(run_cli, out / "instance.resolved.yaml", tmp_path / "again")
    assert code == 0, err
    assert TIMING.sub("<time>", again) == TIMING.sub("<time>", stdout)


def test_bom_rows_are_one_per_part_and_site_and_sum_to_capex(tiny_run):
    out, _ = tiny_run
    rows = _bom(out / "bom.csv")
    assert list(rows[0]) == BOM_FIELDS
    keys = [(r["site"], r["catalog_id"]) for r in rows]
    assert len(keys) == len(set(keys)), "one row per part and site"
    plan = json.loads((out / "plan.json").read_text())
    for r in rows:
        assert float(r["extended_price_usd"]) == pytest.approx(float(r["quantity"]) * float(r["unit_price_usd"]),
                                                                abs=0.01)
        assert r["description"] and float(r["power_w"]) >= 0
    assert sum(float(r["extended_price_usd"]) for r in rows) == pytest.approx(plan["totals"]["capex_usd"], abs=0.01)
    # a wavelength has a module at each end: the two campuses list the same count
    optics = {r["site"]: int(r["quantity"]) for r in rows if r["category"] == "dci_optic"}
    assert set(optics) == {"a", "b"} and optics["a"] == optics["b"] == plan["dci_links"][0]["wavelengths"]


def test_bom_by_hand(run_cli, tmp_path):
    """Every row and the total of a 1,000 km two-region plan, by hand from the catalog.

    1.6 Tb/s inter-region target over 1,000 km: only 800ZR+-400G (1,000 km,
    $6,000, 30 W) and the OpenZR+ 200G/100G and 800ZR+-200G modes reach; per
    Gb/s 2 x $6,000 / 400 = $30 beats OpenZR+-200G 2 x $4,500 / 200 = $45, so
    4 wavelengths, 4 modules at each end. One C-band pair holds 4800/150 = 32
    channels: 1 lit pair, a terminal at each end ($25,000, 150 W), ceil(1000/80)
    - 1 = 12 in-line amplifier huts ($40,000, 300 W each), 1,000 pair-km of IRU
    at $1,500. The job takes 8 accelerators at campus a: 8 DAC-400G (2 m, $100,
    0.1 W), 8 SR4-400G (40 m, $700, 20 W), 8 DR4-400G (300 m, $900, 20 W).
    """
    src = tmp_path / "bom.yaml"
    src.write_text(BOM_CASE, encoding="utf-8")
    code, stdout, err = _solve_out(run_cli, src, tmp_path / "out")
    assert code == 0, err
    expected = {  # (site, catalog id): (quantity, unit price, extended price, power W)
        ("a", "800ZR+-400G"): (4, 6000, 24_000, 120),
        ("a", "line-terminal-C"): (1, 25_000, 25_000, 150),
        ("a", "DAC-400G"): (8, 100, 800, 0.8),
        ("a", "SR4-400G"): (8, 700, 5_600, 160),
        ("a", "DR4-400G"): (8, 900, 7_200, 160),
        ("b", "800ZR+-400G"): (4, 6000, 24_000, 120),
        ("b", "line-terminal-C"): (1, 25_000, 25_000, 150),
        ("a|b", "inline-amplifier-C"): (12, 40_000, 480_000, 3_600),
        ("a|b", "fiber-iru-pair-km"): (1000, 1500, 1_500_000, 0),
    }
    rows = {(r["site"], r["catalog_id"]): r for r in _bom(tmp_path / "out" / "bom.csv")}
    assert set(rows) == set(expected)
    for key, (qty, unit, ext, watts) in expected.items():
        r = rows[key]
        assert (float(r["quantity"]), float(r["unit_price_usd"]), float(r["extended_price_usd"]),
                float(r["power_w"])) == (qty, unit, ext, watts), key
    total = 2 * 24_000 + 2 * 25_000 + 800 + 5_600 + 7_200 + 480_000 + 1_500_000
    assert total == 2_091_600
    plan = json.loads(stdout)
    assert plan["totals"]["capex_usd"] == total
    assert sum(float(r["extended_price_usd"]) for r in rows.values()) == total
    assert plan["totals"]["capex_usd_by_category"] == {"dci_modules": 48_000, "line_terminals_amplifiers": 530_000,
                                                       "fiber": 1_500_000, "cables": 13_600}


# ------------------------------------------------------------ determinism

def test_same_input_twice_gives_identical_outputs_apart_from_timing(tiny_run, run_cli, tmp_path):
    out1, stdout1 = tiny_run
    code, stdout2, err = _solve_out(run_cli, TINY_INSTANCE, tmp_path / "second")
    assert code == 0, err
    out2 = tmp_path / "second"
    text1, text2 = (out1 / "plan.json").read_text(), (out2 / "plan.json").read_text()
    assert len(TIMING.findall(text1)) == 5, "build_s, solve_s, its two stages and wall_s are the only timing fields"
    assert TIMING.sub("<time>", text1) == TIMING.sub("<time>", text2)
    assert TIMING.sub("<time>", stdout1) == TIMING.sub("<time>", stdout2)
    for name in ("bom.csv", "instance.resolved.yaml"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name
    r1, r2 = (out1 / "report.md").read_text(), (out2 / "report.md").read_text()
    assert REPORT_TIMING.sub("<time>", r1) == REPORT_TIMING.sub("<time>", r2)


def test_report_says_the_objective_is_the_single_site_rate(run_cli, tmp_path):
    """max-throughput maximises the single-site rate of the split; the plan delivers
    that rate less the exposed DCI sync, and the objective line says both."""
    out = tmp_path / "out"
    code, stdout, err = _solve_out(run_cli, INSTANCE_DIR / "two-building-campus.yaml", out)
    assert code == 0, err
    plan = json.loads(stdout)
    perf = plan["performance"]
    assert plan["objective"]["name"] == "max-throughput" and perf["efficiency_loss"] > 0
    assert plan["objective"]["value"] == pytest.approx(perf["tokens_per_s_single_site"], rel=1e-9)
    assert perf["tokens_per_s"] == pytest.approx(perf["tokens_per_s_single_site"] * (1 - perf["efficiency_loss"]),
                                                 rel=1e-9)
    line = (out / "report.md").read_text().splitlines()[1]
    assert line == (f"objective max-throughput: {plan['objective']['value']:,.6g} tokens/s at single-site speed; "
                    f"with the DCI sync exposed ({perf['efficiency_loss']:.2%} loss, within its bound) "
                    f"the plan delivers {perf['tokens_per_s']:,.0f} tokens/s")


# ------------------------------------------------------------ the split and why (step-time terms)

STEP_TERM_KEYS = {"compute", "tp", "bubble", "pp", "dp_exposed", "optimizer",
                  "dci_intra_region", "dci_inter_region", "pp_latency"}


def _check_step_terms(plan, li):
    """The step-time terms are all there, non-negative, equal the performance model's
    terms of the chosen split and add up to the step time; the loss per distance
    class adds up to the efficiency loss."""
    from optimizer import performance as perf_model
    perf = plan["performance"]
    terms = perf["step_time_terms_s"]
    assert set(terms) == STEP_TERM_KEYS
    assert all(v >= 0 for v in terms.values()), terms
    single = sum(terms[k] for k in ("compute", "tp", "bubble", "pp", "dp_exposed", "optimizer"))
    assert single == pytest.approx(perf["step_time_single_site_s"], rel=1e-9)
    assert sum(terms.values()) == pytest.approx(perf["step_time_s"], rel=1e-9)
    ex = perf["exposed_s"]
    assert (terms["dci_intra_region"], terms["dci_inter_region"], terms["pp_latency"]) == \
        (ex["intra_region"], ex["inter_region"], ex["pp_latency"])
    # the single-site terms are the performance model's for this split (the shared physics)
    P = plan["parallelism"]
    ev = perf_model.evaluate_split(perf_model.workload_from_instance(li), P["tp"], P["pp"], P["dp"],
                                   micro_batch=P["micro_batch"], interleave=P["interleave"], recompute=P["recompute"])
    assert terms["compute"] == pytest.approx(ev["gemm_s"] + ev["nongemm_s"], rel=1e-12)
    assert (terms["tp"], terms["bubble"], terms["pp"], terms["dp_exposed"], terms["optimizer"]) == pytest.approx(
        (ev["tp_comm_s"], ev["bubble_s"], ev["pp_comm_s"], ev["dp_comm_s"], ev["optimizer_s"]), rel=1e-12)
    by_scope = perf["efficiency_loss_by_scope"]
    assert set(by_scope) == {"campus", "intra_region", "inter_region"}
    assert all(v >= 0 for v in by_scope.values())
    assert sum(by_scope.values()) == pytest.approx(perf["efficiency_loss"], rel=1e-9, abs=1e-15)
    return terms, by_scope


def test_step_time_terms_of_the_tiny_plan(tiny_run):
    """Tiny: the whole job on one campus (128 of its 128 accelerators; a and b are
    alike, either may host it), so no DCI phase is exposed and the loss is zero in
    every class."""
    out, stdout = tiny_run
    plan = json.loads(stdout)
    terms, by_scope = _check_step_terms(plan, load_instance(TINY_INSTANCE))
    assert sorted(p["accelerators"] for p in plan["placement"]) == [0, 128]
    assert terms["dci_intra_region"] == terms["dci_inter_region"] == terms["pp_latency"] == 0
    assert by_scope == {"campus": 0.0, "intra_region": 0.0, "inter_region": 0.0}
    report = (out / "report.md").read_text()
    line = next(l for l in report.splitlines() if l.startswith("single-site step "))
    labels = re.findall(r"(?:: |, )([A-Za-z][A-Za-z -]*?) [0-9.]+ ms \(", line)
    assert labels == ["compute", "TP collectives", "pipeline bubble", "PP sends", "DP all-reduce exposed",
                      "optimizer step"], line
    # the fastest candidate has a plan: nothing faster to rule out
    assert plan["performance"]["faster_candidate_splits"] == 0
    from optimizer.planner import ranked_splits
    n = len(ranked_splits(load_instance(TINY_INSTANCE)).rows)
    assert plan["parallelism"]["candidates_considered"] == n
    assert f"why this split: the fastest of the {n:,} candidate splits (none faster to rule out)" in report


def test_step_time_terms_and_loss_by_class_of_the_default_instance(run_cli):
    """us-two-regions: two regions whose campuses are 12-85 km apart (intra_region
    scope) and 1,050 km between them. The intra- and inter-region phases are both
    exposed; each class's loss is its exposed time over the step, and with no split
    pipelines on intra-region routes, their fill/drain latency counts to the
    intra-region class and nothing to the campus class."""
    code, stdout, err = run_cli(["solve", INSTANCE_DIR / "us-two-regions.yaml", "--format", "json"])
    assert code == 0, err
    plan = json.loads(stdout)
    assert schema_errors(plan, plan_json_schema()) == []
    li = load_instance(INSTANCE_DIR / "us-two-regions.yaml")
    terms, by_scope = _check_step_terms(plan, li)
    perf = plan["performance"]
    T = perf["step_time_s"]
    km = {frozenset((r.a, r.b)): r.distance_km for r in li.instance.routes}
    # 2 x one-way latency per split pipeline's route, the longest (4.9 us/km)
    assert terms["pp_latency"] == pytest.approx(
        max((2 * km[frozenset((sp["a"], sp["b"]))] * 4.9e-6 for sp in plan["split_pipelines"]), default=0.0))
    assert all(li.route_scope(r) == "intra_region" for r in li.instance.routes if li.region_of[r.a] == li.region_of[r.b])
    assert terms["dci_intra_region"] > 0 and terms["dci_inter_region"] > 0
    assert by_scope["campus"] == 0
    assert by_scope["intra_region"] == pytest.approx((terms["dci_intra_region"] + terms["pp_latency"]) / T, rel=1e-12)
    assert by_scope["inter_region"] == pytest.approx(terms["dci_inter_region"] / T, rel=1e-12)
    # hierarchical all-reduce: 2 (n-1)/n N beta per site, so with 2 regions each pair moves
    # 2 N beta / 2 = N beta bytes, and n active campuses of a region 2 N beta / n per pair:
    # the exposed times are those bytes over the routed rates (plan.flows)
    from optimizer import performance as perf_model
    n_bytes = perf_model.parameter_count(li.model_dims) * li.bytes_per_element
    inter_gbps = sum(f["gbps"] for f in plan["flows"] if f["kind"] == "dp_inter_region")
    assert terms["dci_inter_region"] == pytest.approx(2 * n_bytes / 2 * 8 / (inter_gbps * 1e9), rel=1e-6)
    active = {p["region"]: [] for p in plan["placement"]}
    for p in plan["placement"]:
        if p["accelerators"]:
            active[p["region"]].append(p["campus"])
    assert len(active) == 2 and max(len(c) for c in active.values()) >= 2    # both phases are exercised
    pair_gbps = {}
    for f in plan["flows"]:
        if f["kind"] == "dp_intra_region":
            pair_gbps[frozenset(f["between"])] = pair_gbps.get(frozenset(f["between"]), 0.0) + f["gbps"]
    worst = max(2 * n_bytes / len(camps) * 8 / (pair_gbps[frozenset((a, b))] * 1e9)
                for camps in active.values() for i, a in enumerate(camps) for b in camps[i + 1:])
    assert terms["dci_intra_region"] == pytest.approx(worst, rel=1e-6)


def test_report_says_why_the_split_when_faster_splits_have_no_plan(tiny_run, run_cli, tmp_path):
    """Tiny with 0.1 MW per campus. The fastest split (TP 8 x PP 2 x DP 8 = 128
    accelerators, the 2 MW tiny plan's) needs 64 per campus; by hand each campus then
    draws at least 1.2 x 64 x (10,200/8 W + 5 + 10 + 20 W of the least-power cables
    that reach: AEC-400G at 3 m, AOC-400G at 40 m, DR4-400G at 300 m) = 100,608 W
    > 100,000 W before any DCI module. So the plan takes the next split, and the
    report says that the one faster split has no plan."""
    src = tmp_path / "tiny-power.yaml"
    src.write_text(TINY_INSTANCE.read_text(encoding="utf-8").replace("power_budget_mw: 2", "power_budget_mw: 0.1"),
                   encoding="utf-8")
    li = load_instance(src)
    cab = li.catalog.cables
    assert (cab["AEC-400G"].power_w_per_link, cab["AOC-400G"].power_w_per_link, cab["DR4-400G"].power_w_per_link) == \
        (5, 10, 20)
    assert 1.2 * 64 * (10_200 / 8 + 5 + 10 + 20) == pytest.approx(100_608)
    code, stdout, err = _solve_out(run_cli, src, tmp_path / "out")
    assert code == 0, err
    plan = json.loads(stdout)
    _check_step_terms(plan, li)
    perf = plan["performance"]
    assert plan["parallelism"]["accelerators"] < 128
    # the 128-accelerator split is no candidate at all: 63 accelerators per campus fit the
    # power with their cables (0.1 MW / (1.2 x 1,310 W)), 3 replicas of 16, 6 < DP 8
    assert perf["faster_candidate_splits"] == 0 and perf["faster_splits_without_room"] >= 1
    # the split it could not power is the one the 2 MW tiny plan runs
    unconstrained = json.loads(tiny_run[1])
    assert unconstrained["parallelism"]["accelerators"] == 128
    fastest = unconstrained["performance"]["tokens_per_s_single_site"]
    assert perf["fastest_candidate_tokens_per_s"] == pytest.approx(fastest, rel=1e-12)
    assert perf["tokens_per_s_single_site"] < fastest
    report = (tmp_path / "out" / "report.md").read_text()
    assert 1_310 * 1.2 * 63 <= 100_000 < 1_310 * 1.2 * 64
    n, m = plan["parallelism"]["candidates_considered"], perf["faster_splits_without_room"]
    assert (f"why this split: the fastest of the {n:,} candidate splits (none faster to rule out); {m:,} faster "
            f"split{'s' if m > 1 else ''} (up to {fastest:,.0f} tokens/s single-site) "
            f"{'need' if m > 1 else 'needs'} more accelerators than the campuses' power budgets feed or do not "
            "pack onto them in whole replicas") in report
