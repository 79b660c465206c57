"""Scenario sweeps: spec checking, expansion and ids, overrides, the process
pool and Dask paths, resuming, failure records and `dcopt compare`.

Every sweep here runs a tiny instance (two campuses of HGX-H100-8, a 4-layer
model) whose solves take a fraction of a second.
"""
from __future__ import annotations

import csv
import io
import json
import os
import textwrap
from pathlib import Path

import pytest
from conftest import TINY_INSTANCE

from optimizer import scenarios as sw
from optimizer.errors import InputError

TINY = TINY_INSTANCE.read_text()

# four scenarios: two that solve, one infeasible (no campus can power a server),
# one invalid (a route beyond every module's reach)
SPEC = textwrap.dedent("""\
    base: tiny.yaml
    solver: {backend: highs, time_limit_s: 30}
    zip:
      - name: power
        axes:
          - path: regions[0].campuses[0].power_budget_mw
            values: [2, 0.5, 0.001, 2]
          - path: regions[0].campuses[1].power_budget_mw
            values: [2, 0.5, 0.001, 2]
          - path: routes[0].distance_km
            values: [40, 20, 40, 5000]
    """)


@pytest.fixture
def tiny(tmp_path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SPEC)
    return spec


def write_spec(tmp_path, body: str) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    spec = tmp_path / "spec.yaml"
    spec.write_text("base: tiny.yaml\n" + textwrap.dedent(body))
    return spec


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize("text, parts", [
    ("routes[8].distance_km", ("routes", 8, "distance_km")),
    ("regions[0].campuses[1].power_budget_mw", ("regions", 0, "campuses", 1, "power_budget_mw")),
    ("catalog_overrides.dci_optics.800ZR.price_usd", ("catalog_overrides", "dci_optics", "800ZR", "price_usd")),
    ('catalog_overrides.llm_presets["GPT-1.7B"].layers', ("catalog_overrides", "llm_presets", "GPT-1.7B", "layers")),
    ("job.model", ("job", "model")),
])
def test_parse_path(text, parts):
    assert sw.parse_path(text) == parts
    assert sw.parse_path(sw.normalise_path(parts)) == parts


@pytest.mark.parametrize("text", ["", "[0].a", "routes[0]..a", "routes[x]", "a]"])
def test_parse_path_rejects(text):
    with pytest.raises(ValueError):
        sw.parse_path(text)


def test_dotted_catalog_name_unquoted_is_joined():
    raw = {"catalog_overrides": {}}
    parts = sw.resolve_path(raw, sw.parse_path("catalog_overrides.llm_presets.GPT-1.7B.layers"))
    assert parts == ("catalog_overrides", "llm_presets", "GPT-1.7B", "layers")


# ---------------------------------------------------------------- expansion and ids


def test_expansion_is_the_full_factorial_in_spec_order(tmp_path):
    spec = sw.load_spec(write_spec(tmp_path, """\
        axes:
          - path: routes[0].distance_km
            values: [20, 80]
          - path: catalog_overrides.dci_optics.800ZR.price_usd
            range: {start: 3000, stop: 5000, step: 1000}
        zip:
          - axes:
              - {path: "regions[0].campuses[0].power_budget_mw", values: [2, 3]}
              - {path: "regions[0].campuses[1].power_budget_mw", values: [4, 5]}
        """))
    scenarios = sw.expand(spec)
    assert len(scenarios) == 2 * 3 * 2
    first = scenarios[0].overrides
    assert first == {"routes[0].distance_km": 20, "catalog_overrides.dci_optics.800ZR.price_usd": 3000,
                     "regions[0].campuses[0].power_budget_mw": 2, "regions[0].campuses[1].power_budget_mw": 4}
    # zipped paths move together; the first axis varies slowest
    assert [s.overrides["regions[0].campuses[1].power_budget_mw"] for s in scenarios[:2]] == [4, 5]
    assert [s.overrides["routes[0].distance_km"] for s in scenarios] == [20] * 6 + [80] * 6
    assert len({s.id for s in scenarios}) == len(scenarios)
    assert len({s.slug for s in scenarios}) == len(scenarios)
    assert all(s.valid for s in scenarios)
    # the overrides reached the instance each scenario will solve
    inst = scenarios[-1].instance
    assert inst["routes"][0]["distance_km"] == 80
    assert inst["catalog_overrides"]["dci_optics"]["800ZR"]["price_usd"] == 5000
    assert inst["regions"][0]["campuses"][1]["power_budget_mw"] == 5


def test_ids_are_stable_and_depend_only_on_the_overrides(tmp_path):
    a = {"routes[0].distance_km": 1000, "job.model": "GPT-3-175B"}
    b = {"job.model": "GPT-3-175B", "routes[0].distance_km": 1000.0}   # other order, 1000.0 == 1000
    assert sw.scenario_id(a) == sw.scenario_id(b)
    assert sw.scenario_id(a) != sw.scenario_id({**a, "routes[0].distance_km": 1001})
    assert len(sw.scenario_id(a)) == 12
    # the same spec expands to the same ids in another run and directory
    spec = write_spec(tmp_path, "axes: [{path: \"routes[0].distance_km\", values: [20, 80]}]\n")
    ids1 = [s.id for s in sw.expand(sw.load_spec(spec))]
    other = tmp_path / "elsewhere"
    other.mkdir()
    ids2 = [s.id for s in sw.expand(sw.load_spec(write_spec(other, "axes: [{path: \"routes[0].distance_km\", values: [20, 80]}]\n")))]
    assert ids1 == ids2
    # a pinned value: the hash of {"routes[0].distance_km": 20} must never change between releases
    assert ids1[0] == sw.scenario_id({"routes[0].distance_km": 20})


def test_model_dimensions_can_be_varied_only_when_the_base_gives_them(tmp_path):
    # the tiny base gives job.model as a mapping: one dimension can be varied
    spec = sw.load_spec(write_spec(tmp_path, "axes: [{path: job.model.layers, values: [2, 8]}]\n"))
    assert [s.instance["job"]["model"]["layers"] for s in sw.expand(spec)] == [2, 8]
    # a preset name has no fields: the whole job.model must be set instead
    (tmp_path / "tiny.yaml").write_text(TINY.replace(
        "model: {layers: 4, hidden: 1024, heads: 8, seq_len: 1024, vocab: 32000, global_batch_sequences: 8}",
        "model: GPT-1.7B"))
    with pytest.raises(InputError) as err:
        sw.load_spec(tmp_path / "spec.yaml")
    assert "job.model is the text 'GPT-1.7B' in the base instance, not a mapping of fields" in str(err.value)


def test_range_includes_stop_and_keeps_integers(tmp_path):
    spec = sw.load_spec(write_spec(tmp_path, """\
        axes:
          - path: routes[0].distance_km
            range: {start: 10, stop: 40, step: 10}
          - path: regions[0].campuses[0].pue
            range: {start: 1.1, stop: 1.3, step: 0.1}
        """))
    assert spec.dimensions[0].rows == [(10,), (20,), (30,), (40,)]
    assert [r[0] for r in spec.dimensions[1].rows] == [1.1, 1.2, 1.3]


# ---------------------------------------------------------------- overrides


def test_apply_overrides_copies_and_creates_missing_mappings():
    base = {"routes": [{"distance_km": 40}]}
    out = sw.apply_overrides(base, {"routes[0].distance_km": 90, "budgets.capex_usd": 1e6,
                                    "catalog_overrides.dci_optics.800ZR.price_usd": 4000})
    assert base == {"routes": [{"distance_km": 40}]}
    assert out["routes"][0]["distance_km"] == 90
    assert out["budgets"] == {"capex_usd": 1e6}
    assert out["catalog_overrides"] == {"dci_optics": {"800ZR": {"price_usd": 4000}}}


def test_override_of_an_aliased_mapping_stays_local(tmp_path):
    # YAML anchors share one object between campuses; changing one campus must not change the other
    text = TINY.replace("{name: a, power_budget_mw: 2, scale_up_domain: HGX-H100-8, domains: 16}",
                        "{name: a, power_budget_mw: 2, scale_up_domain: HGX-H100-8, domains: 16, "
                        "fabric_lengths_m: &fl {nic_to_leaf: 3}}")
    text = text.replace("{name: b, power_budget_mw: 2, scale_up_domain: HGX-H100-8, domains: 16}",
                        "{name: b, power_budget_mw: 2, scale_up_domain: HGX-H100-8, domains: 16, fabric_lengths_m: *fl}")
    (tmp_path / "tiny.yaml").write_text(text)
    spec = tmp_path / "s.yaml"
    spec.write_text("base: tiny.yaml\naxes:\n  - path: regions[0].campuses[0].fabric_lengths_m.nic_to_leaf\n"
                    "    values: [1.5]\n")
    (sc,) = sw.expand(sw.load_spec(spec))
    campuses = sc.instance["regions"][0]["campuses"]
    assert campuses[0]["fabric_lengths_m"]["nic_to_leaf"] == 1.5
    assert campuses[1]["fabric_lengths_m"]["nic_to_leaf"] == 3


BAD_SPECS = [
    # (spec body after 'base:', field path in the message, words the message must contain)
    ("axes:\n  - path: routes[3].distance_km\n    values: [1]\n", "axes[0].path", "routes[3] does not exist"),
    ("axes:\n  - path: routes[0].distnce_km\n    values: [1]\n", "axes[0].path", "did you mean 'distance_km'"),
    ("axes:\n  - path: regions[0].campuses[0].power_budget\n    values: [1]\n", "axes[0].path", "power_budget_mw"),
    ("axes:\n  - path: catalog_overrides.dci_optics.800Z.price_usd\n    values: [1]\n", "axes[0].path", "did you mean '800ZR'"),
    ("axes:\n  - path: catalog_overrides.dci_optics.800ZR.price\n    values: [1]\n", "axes[0].path", "did you mean 'price_usd'"),
    ("axes:\n  - path: catalog_overrides.dci_optix.800ZR.price_usd\n    values: [1]\n", "axes[0].path", "unknown catalog section"),
    ("axes:\n  - path: job.model.layerz\n    values: [1]\n", "axes[0].path", "did you mean 'layers'"),
    ("axes:\n  - path: routes[0]..a\n    values: [1]\n", "axes[0].path", "cannot read field path"),
    ("axes:\n  - path: routes[0].distance_km\n    values: [1, 1.0]\n", "axes[0].values", "listed twice"),
    ("axes:\n  - path: routes[0].distance_km\n", "axes[0]", "give either 'values' or 'range'"),
    ("axes:\n  - path: routes[0].distance_km\n    values: []\n", "axes[0].values", "must not be empty"),
    ("axes:\n  - path: routes[0].distance_km\n    range: {start: 9, stop: 1, step: 1}\n", "axes[0].range", "below start"),
    ("axes:\n  - path: routes[0].distance_km\n    range: {start: 1, stop: 9, step: 0}\n", "axes[0].range.step", "must be > 0"),
    ("axes:\n  - {path: budgets.capex_usd, values: [1]}\n  - {path: budgets, values: [{}]}\n", "axes[1].path", "overlaps"),
    ("axes:\n  - {path: network.k_paths, values: [1]}\n  - {path: network.k_paths, values: [2]}\n", "axes[1].path", "already varied"),
    ("zip:\n  - axes:\n    - {path: network.k_paths, values: [1, 2]}\n    - {path: pue, values: [1.2]}\n",
     "zip[0].axes", "same number of values"),
    ("axs: []\n", "axs", "did you mean 'axes'"),
    ("solver: {backend: gurobi}\n", "solver.backend", "must be one of"),
    ("axes:\n  - {path: routes[0].distance_km, values: [1]}\n", "", "quote a path"),
    ("zip:\n  - name: capex_usd\n    axes:\n      - {path: network.k_paths, values: [1, 2]}\n",
     "zip[0].name", "'capex_usd' is a result column"),
    ("zip:\n  - name: g\n    axes: [{path: network.k_paths, values: [1, 2]}]\n"
     "  - name: g\n    axes: [{path: pue, values: [1.2, 1.3]}]\n", "zip[1].name", "already used by zip[0]"),
]


@pytest.mark.parametrize("body, field, words", BAD_SPECS, ids=[b[2] for b in BAD_SPECS])
def test_bad_spec_is_explained_with_file_line_and_field(tmp_path, run_cli, body, field, words):
    spec = write_spec(tmp_path, body)
    code, out, err = run_cli(["sweep", spec, "--out", tmp_path / "out"])
    assert code == 2, err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"error: {spec}:"), first
    line = first.split(":")[2]
    assert line.isdigit(), first          # a line number
    if field:
        assert f": {field}: " in first, first
    assert words in first, first
    assert not (tmp_path / "out").exists()


def test_missing_base_and_bad_base(tmp_path, run_cli):
    spec = tmp_path / "s.yaml"
    spec.write_text("base: nowhere.yaml\n")
    code, _, err = run_cli(["sweep", spec, "--out", tmp_path / "o"])
    assert code == 2 and "base: base instance 'nowhere.yaml' not found" in err
    # a broken base is reported in the base file's own terms
    (tmp_path / "tiny.yaml").write_text(TINY.replace("pue: 1.2", "pue: 9"))
    spec.write_text("base: tiny.yaml\n")
    code, _, err = run_cli(["sweep", spec, "--out", tmp_path / "o"])
    assert code == 2 and "tiny.yaml:5: pue: must be <= 3" in err


def test_list_shows_ids_and_invalid_scenarios(tiny, run_cli):
    code, out, err = run_cli(["sweep", tiny, "--out", tiny.parent / "o", "--list"])
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4
    assert "INVALID: routes[0].distance_km: 5000 km is beyond every DCI module's reach" in lines[3]
    assert not (tiny.parent / "o").exists()


# ---------------------------------------------------------------- running


def _statuses(rows):
    return [r["status"] for r in rows]


def test_small_sweep_on_the_process_pool_records_every_outcome(tiny, tmp_path, run_cli):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["sweep", tiny, "--out", out, "--workers", "2", "--progress", "lines"])
    assert code == 0, err
    man = json.loads((out / "sweep.json").read_text())
    ids = [s["id"] for s in man["scenarios"]]
    records = {i: json.loads((out / "scenarios" / f"{i}.json").read_text()) for i in ids}
    assert [records[i]["status"] for i in ids] == ["optimal", "optimal", "infeasible", "invalid"]
    assert "needs" in records[ids[2]]["reason"] and "budget" in records[ids[2]]["reason"]
    assert "5000 km is beyond" in records[ids[3]]["reason"]
    plan = records[ids[0]]["result"]
    assert plan["verification"]["passed"] and plan["parallelism"]["accelerators"] == 128
    # summary files: one row per scenario, in spec order
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert [r["id"] for r in rows] == ids
    assert [r["status"] for r in rows] == ["optimal", "optimal", "infeasible", "invalid"]
    assert [r["power"] for r in rows] == ["2", "0.5", "0.001", "2"]     # the named zip group's column
    assert float(rows[0]["capex_usd"]) == pytest.approx(plan["totals"]["capex_usd"])
    assert rows[0]["tp"] and rows[0]["module_mix"].startswith("800ZR:")
    assert float(rows[0]["power_mw.r1"]) > 0
    md = (out / "summary.md").read_text()
    assert md.count("\n| ") >= 5 and "## Not solved to optimality" in md
    assert "[4/4]" in err or "[3/4]" in err          # non-TTY: one progress line per scenario
    assert not list((out / "scenarios").glob(".*.tmp"))   # atomic writes leave no temp files
    # run again: nothing to solve, the workers started for it are let go at once
    code, _, err = run_cli(["sweep", tiny, "--out", out, "--workers", "2", "--progress", "off"])
    assert code == 0, err
    assert "solved 0, reused 4" in err


def test_a_crashing_scenario_is_recorded_and_the_others_survive(tiny, tmp_path, monkeypatch):
    import optimizer.solving as solve_mod
    real = solve_mod.solve_instance

    def flaky(li, params, **kw):
        if li.instance.routes[0].distance_km == 20:
            raise RuntimeError("simulated solver bug")
        return real(li, params, **kw)

    monkeypatch.setattr(solve_mod, "solve_instance", flaky)
    run = sw.run_sweep(sw.load_spec(tiny), tmp_path / "out", workers=0)
    assert _statuses(run.rows) == ["optimal", "error", "infeasible", "invalid"]
    bad = run.rows[1]
    assert "RuntimeError: simulated solver bug" in bad["reason"]
    rec = json.loads((tmp_path / "out" / "scenarios" / f"{bad['id']}.json").read_text())
    assert "Traceback" in rec["traceback"]
    # a re-run retries the error only (it was transient), the rest is reused
    monkeypatch.setattr(solve_mod, "solve_instance", real)
    again = sw.run_sweep(sw.load_spec(tiny), tmp_path / "out", workers=0)
    assert again.solved == [bad["id"]]
    assert _statuses(again.rows) == ["optimal", "optimal", "infeasible", "invalid"]


def _die_on_crash_task(task: dict) -> dict:
    # runs in a spawned worker process: a crash there is a dead process, not an exception
    if task["id"] == "crash":
        os._exit(3)
    return {"id": task["id"], "status": "optimal"}


def test_a_dying_worker_process_costs_only_its_own_scenario():
    tasks = [{"id": i, "slug": i, "overrides": {}, "fingerprint": "", "params": {}} for i in ("one", "crash", "two")]
    done = []
    sw._run_pool(tasks, 1, done.append, solve_one=_die_on_crash_task)
    by_id = {r["id"]: r for r in done}
    assert sorted(by_id) == ["crash", "one", "two"]
    assert by_id["one"]["status"] == by_id["two"]["status"] == "optimal"
    assert by_id["crash"]["status"] == "error" and "died twice" in by_id["crash"]["reason"]


def test_with_two_workers_a_dying_worker_costs_only_its_own_scenario():
    # two scenarios per worker are in flight, so a death breaks up to four; each of
    # them is retried alone, and only the one that dies again is an error
    ids = ("one", "two", "crash", "three", "four", "five", "six")
    tasks = [{"id": i, "slug": i, "overrides": {}, "fingerprint": "", "params": {}} for i in ids]
    done = []
    sw._run_pool(tasks, 2, done.append, solve_one=_die_on_crash_task)
    by_id = {r["id"]: r for r in done}
    assert sorted(by_id) == sorted(ids) and len(done) == len(ids)
    assert all(by_id[i]["status"] == "optimal" for i in ids if i != "crash"), by_id
    assert by_id["crash"]["status"] == "error" and "died twice" in by_id["crash"]["reason"]


def test_a_pool_that_broke_before_its_first_scenario_is_replaced():
    # the pool is started before the scenarios are expanded; if one of its workers dies
    # before it is given a scenario, no scenario is blamed: a fresh pool solves them all
    from concurrent.futures.process import BrokenProcessPool
    pool = sw._start_pool(1)
    with pytest.raises(BrokenProcessPool):
        pool.submit(_die_on_crash_task, {"id": "crash"}).result()
    tasks = [{"id": i, "slug": i, "overrides": {}, "fingerprint": "", "params": {}} for i in ("one", "two")]
    done = []
    sw._run_pool(tasks, 1, done.append, solve_one=_die_on_crash_task, pool=pool)
    assert sorted((r["id"], r["status"]) for r in done) == [("one", "optimal"), ("two", "optimal")]


def test_resume_solves_only_what_is_missing(tiny, tmp_path):
    out = tmp_path / "out"
    first = sw.run_sweep(sw.load_spec(tiny), out, workers=0)
    assert sorted(first.solved) == sorted(r["id"] for r in first.rows)
    victim = first.rows[1]["id"]
    (out / "scenarios" / f"{victim}.json").unlink()
    kept = {r["id"]: os.stat(out / "scenarios" / f"{r['id']}.json").st_mtime_ns for r in first.rows if r["id"] != victim}
    second = sw.run_sweep(sw.load_spec(tiny), out, workers=0)
    assert second.solved == [victim]
    assert sorted(second.skipped) == sorted(kept)
    assert {i: os.stat(out / "scenarios" / f"{i}.json").st_mtime_ns for i in kept} == kept
    assert _statuses(second.rows) == _statuses(first.rows)
    # changed solver options change every fingerprint: everything is solved again
    third = sw.run_sweep(sw.load_spec(tiny, time_limit_s=17), out, workers=0)
    assert len(third.solved) == 4 and not third.skipped


def test_resume_after_an_interrupted_sweep(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = sw.run_scenario
    calls = []

    def interrupted(task):
        calls.append(task["id"])
        if len(calls) == 2:
            raise KeyboardInterrupt      # Ctrl-C while the second scenario solves
        return real(task)

    monkeypatch.setattr(sw, "run_scenario", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(sw.load_spec(tiny), out, workers=0)
    # what finished is on disk, and the summary shows the rest as pending
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert [r["status"] for r in rows] == ["optimal", "pending", "pending", "invalid"]
    monkeypatch.setattr(sw, "run_scenario", real)
    resumed = sw.run_sweep(sw.load_spec(tiny), out, workers=0)
    assert sorted(resumed.solved) == sorted([rows[1]["id"], rows[2]["id"]])
    assert _statuses(resumed.rows) == ["optimal", "optimal", "infeasible", "invalid"]


def test_dask_local_cluster(tiny, tmp_path):
    # dask[distributed] is in the [test] extras: a missing one fails here, never skips
    import distributed
    # two worker processes: every task and record is pickled across a process boundary
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        run = sw.run_sweep(sw.load_spec(tiny), tmp_path / "out", dask_scheduler=cluster.scheduler_address)
    assert run.executor == "dask"
    assert _statuses(run.rows) == ["optimal", "optimal", "infeasible", "invalid"]
    assert len(run.solved) == 4
    solved_by = {json.loads((tmp_path / "out" / "scenarios" / f"{r['id']}.json").read_text())["worker"]
                 for r in run.rows[:3]}
    assert all(w and int(w.rsplit(":", 1)[1]) != os.getpid() for w in solved_by), solved_by
    # the result does not depend on where it was solved
    local = sw.run_sweep(sw.load_spec(tiny), tmp_path / "local", workers=0)
    assert [r["capex_usd"] for r in run.rows[:2]] == [r["capex_usd"] for r in local.rows[:2]]
    assert all(r["capex_usd"] > 0 for r in run.rows[:2])


def test_unreachable_dask_scheduler_is_a_clean_error(tiny, tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(sw, "DASK_CONNECT_TIMEOUT_S", 1)
    code, _, err = run_cli(["sweep", tiny, "--out", tmp_path / "o", "--dask-scheduler", "tcp://127.0.0.1:9",
                            "--progress", "off"])
    assert code == 2 and "cannot reach the Dask scheduler" in err and "Traceback" not in err


def test_api_sweep_rows_make_a_dataframe(tiny, tmp_path):
    import pandas as pd     # in the [test] extras: never skipped
    from optimizer import sweep as api_sweep
    rows = api_sweep(tiny, tmp_path / "out", workers=0)
    df = pd.DataFrame(rows)
    assert list(df["status"]) == ["optimal", "optimal", "infeasible", "invalid"]
    assert df.loc[0, "capex_usd"] > 0 and df.loc[0, "tp"] >= 1
    assert "distance_km" in df.columns and "campuses[0].power_budget_mw" in df.columns


# ---------------------------------------------------------------- compare


@pytest.fixture
def finished_sweep(tmp_path) -> Path:
    spec = write_spec(tmp_path, """\
        axes:
          - path: routes[0].distance_km
            values: [80, 20]
          - path: catalog_overrides.dci_optics.800ZR.price_usd
            values: [3000, 9000]
        """)
    sw.run_sweep(sw.load_spec(spec), tmp_path / "out", workers=0)
    return tmp_path / "out"


def test_compare_sorts_and_prints_every_format(finished_sweep, run_cli):
    code, out, err = run_cli(["compare", finished_sweep, "--sort", "capex_usd", "--format", "csv"])
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    capex = [float(r["capex_usd"]) for r in rows]
    assert capex == sorted(capex) and len(rows) == 4
    assert {"distance_km", "price_usd", "status", "tp", "pp", "dp", "tokens_per_s", "mfu",
            "dci_capacity_pbps", "module_mix", "power_mw.r1"} <= set(rows[0])
    # cheapest: short route and cheap modules; dearest: long route and dear modules
    assert (rows[0]["distance_km"], rows[0]["price_usd"]) == ("20", "3000")
    assert (rows[-1]["distance_km"], rows[-1]["price_usd"]) == ("80", "9000")
    code, desc, _ = run_cli(["compare", finished_sweep, "--sort=-capex_usd", "--format", "csv"])
    assert [r["id"] for r in csv.DictReader(io.StringIO(desc))] == [r["id"] for r in reversed(rows)]
    code, text, _ = run_cli(["compare", finished_sweep])
    assert code == 0 and text.splitlines()[0].split()[:3] == ["id", "distance_km", "price_usd"]
    assert "$" in text and "%" in text
    code, md, _ = run_cli(["compare", finished_sweep, "--format", "md", "--columns", "id,distance_km,capex_usd"])
    assert md.splitlines()[0] == "| id | distance_km | capex_usd |" and len(md.splitlines()) == 6


def test_compare_group_by(finished_sweep, run_cli):
    code, out, err = run_cli(["compare", finished_sweep, "--group-by", "distance_km", "--sort", "capex_usd"])
    assert code == 0, err
    heads = [l for l in out.splitlines() if l.startswith("distance_km = ")]
    assert heads == ["distance_km = 20 (2 scenarios)", "distance_km = 80 (2 scenarios)"]


def test_compare_errors(finished_sweep, tmp_path, run_cli):
    code, _, err = run_cli(["compare", finished_sweep, "--sort", "capx_usd"])
    assert code == 2 and "unknown column 'capx_usd' (did you mean 'capex_usd'?)" in err
    code, _, err = run_cli(["compare", tmp_path / "nothing"])
    assert code == 2 and "not a sweep directory" in err and "Traceback" not in err


def test_a_sweep_started_inside_a_spawned_worker_is_refused(monkeypatch):
    # a script calling sweep() at top level is re-imported by every spawned worker;
    # the pool must refuse to start there instead of spawning pools recursively
    import multiprocessing
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    with pytest.raises(RuntimeError, match='__name__ == "__main__"'):
        sw._run_pool([{"id": "x"}], 2, lambda record: None)


# ---------------------------------------------------------------- summary columns


def test_short_names_never_take_a_result_column():
    paths = ["budgets.capex_usd", "job.tp", "routes[0].distance_km", "a.power_mw.r1", "status"]
    names = sw.short_names(paths, reserved=["distance_km"])
    assert names == {"budgets.capex_usd": "budgets.capex_usd",   # capex_usd is the plan's capex
                     "job.tp": "job.tp",                         # tp is the plan's split
                     "routes[0].distance_km": "routes[0].distance_km",   # a zip group is called distance_km
                     "a.power_mw.r1": "r1",
                     "status": "axis:status"}                    # even the whole path is taken
    # deterministic and independent of the order the paths come in
    assert sw.short_names(list(reversed(paths)), reserved=["distance_km"]) == names
    # the usual case is unchanged: the shortest suffix that tells the paths apart
    assert sw.short_names(["regions[0].campuses[0].power_budget_mw", "regions[0].campuses[1].power_budget_mw",
                           "catalog_overrides.dci_optics.800ZR.price_usd"]) == {
        "regions[0].campuses[0].power_budget_mw": "campuses[0].power_budget_mw",
        "regions[0].campuses[1].power_budget_mw": "campuses[1].power_budget_mw",
        "catalog_overrides.dci_optics.800ZR.price_usd": "price_usd"}


def test_an_axis_on_the_capex_budget_keeps_its_own_column(tmp_path, run_cli):
    # budgets.capex_usd used to be shown as 'capex_usd', the plan's capex: summary.csv had the
    # column twice, the optimal row showed the plan's capex as the budget and the infeasible
    # row the budget as the plan's capex
    spec = write_spec(tmp_path, """\
        solver: {backend: highs}
        axes:
          - path: budgets.capex_usd
            values: [1000000000000, 1]
        """)
    out = tmp_path / "out"
    code, _, err = run_cli(["sweep", spec, "--out", out, "--workers", "0", "--progress", "off"])
    assert code == 0, err
    man = json.loads((out / "sweep.json").read_text())
    assert man["columns"] == {"budgets.capex_usd": "budgets.capex_usd"}
    records = [json.loads((out / "scenarios" / f"{s['id']}.json").read_text()) for s in man["scenarios"]]
    assert [r["status"] for r in records] == ["optimal", "infeasible"]
    plan_capex = records[0]["result"]["totals"]["capex_usd"]
    assert 0 < plan_capex < 1e12

    text = (out / "summary.csv").read_text()
    header = next(csv.reader(io.StringIO(text)))
    assert len(header) == len(set(header)), header
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["budgets.capex_usd"] for r in rows] == ["1000000000000", "1"]
    assert float(rows[0]["capex_usd"]) == pytest.approx(plan_capex)
    assert rows[1]["capex_usd"] == "" and rows[1]["status"] == "infeasible"
    assert [r["slug"] for r in rows] == ["budgets.capex_usd=1000000000000", "budgets.capex_usd=1"]

    # dcopt compare shows the same two columns
    code, csv_out, err = run_cli(["compare", out, "--format", "csv"])
    assert code == 0, err
    assert csv_out == text
    code, table, err = run_cli(["compare", out, "--columns", "budgets.capex_usd,status,capex_usd"])
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split() == ["budgets.capex_usd", "status", "capex_usd"]
    assert lines[2].split()[:2] == ["$1,000,000.0M", "optimal"]
    assert lines[3].split() == ["$0.00M", "infeasible", "-"]


def test_every_summary_column_of_a_result_is_reserved(finished_sweep):
    # a new result column in record_row() must be added to RESULT_COLUMNS, or an axis could take its name
    man, rows = sw.load_sweep_dir(finished_sweep)
    axis_columns = set(man["columns"].values())
    solved = [r for r in rows if r["status"] == "optimal"]
    assert solved
    for row in solved:
        assert set(row) - axis_columns <= set(sw.RESULT_COLUMNS) | {k for k in row if k.startswith("power_mw.")}
        assert all(sw.is_result_column(k) for k in set(row) - axis_columns)
    columns = sw.ordered_columns(rows, man)
    assert len(columns) == len(set(columns))
    assert set(columns) - axis_columns == set(sw.RESULT_COLUMNS) | {k for k in columns if k.startswith("power_mw.")}


def test_a_sweep_directory_with_clashing_columns_is_refused(finished_sweep, run_cli):
    # written by an older dcopt: an axis shown as a result column; compare says how to repair it
    man = json.loads((finished_sweep / "sweep.json").read_text())
    man["columns"]["routes[0].distance_km"] = "capex_usd"
    (finished_sweep / "sweep.json").write_text(json.dumps(man))
    code, _, err = run_cli(["compare", finished_sweep])
    assert code == 2 and "Traceback" not in err
    assert "sweep.json: columns: axis column 'capex_usd' has the name of a result column" in err
    assert "dcopt sweep SPEC --out" in err


# ---------------------------------------------------------------- a sweep solves what a direct solve solves


def _problems(fn):
    try:
        fn()
    except InputError as exc:
        return [(p.path, p.message) for p in exc.problems]
    return []


@pytest.mark.parametrize("change, path", [
    (None, None),
    (lambda d: d.update(pue=9), "pue"),
    (lambda d: d["routes"][0].update(distance_km=5000), "routes[0].distance_km"),
    (lambda d: d.update(catalog_overrides={"dci_optics": {"800ZR": {"price_usd": -1}}}),
     "catalog_overrides.dci_optics.800ZR.price_usd"),
    (lambda d: d["regions"][0]["campuses"][0].update(scale_up_domain="HGX-H100-9"),
     "regions[0].campuses[0].scale_up_domain"),
    (lambda d: d.update(colour="blue"), "colour"),
])
def test_scenario_validation_agrees_with_load_instance(change, path):
    # the sweep validates a scenario's mapping directly (no YAML round trip): same verdict and
    # messages as writing the scenario out and loading it as a file
    import yaml
    from optimizer.instance import load_instance
    from optimizer.yamlio import load_yaml
    base, _ = load_yaml("tiny.yaml", TINY)
    data = sw.apply_overrides(base, {})
    if change:
        change(data)
    text = yaml.safe_dump(data, sort_keys=False)
    direct = _problems(lambda: load_instance("s", text=text))
    via_data = _problems(lambda: sw.instance_from_data("s", data))
    assert via_data == direct
    if path is None:
        assert direct == []
        a, b = load_instance("s", text=text), sw.instance_from_data("s", data)
        assert a.instance == b.instance and a.catalog == b.catalog and a.raw == b.raw
    else:
        assert direct and direct[0][0] == path, direct


def test_a_scenario_solved_in_a_sweep_equals_a_direct_solve(tmp_path):
    # the pool path (task pickled to a worker, instance validated there from plain data) must
    # give exactly the plan of solving the scenario's instance file directly
    import yaml
    from optimizer.instance import load_instance
    from optimizer.lp import SolveParameters
    from optimizer.solving import solve_instance
    spec_path = write_spec(tmp_path, """\
        solver: {backend: highs, time_limit_s: 30}
        axes:
          - path: catalog_overrides.dci_optics.800ZR.price_usd
            values: [3000, 9000]
          - path: routes[0].distance_km
            values: [20, 80]
        """)
    spec = sw.load_spec(spec_path)
    run = sw.run_sweep(spec, tmp_path / "out", workers=2)
    assert run.executor == "processes" and _statuses(run.rows) == ["optimal"] * 4
    for sc in sw.expand(spec):
        record = json.loads((tmp_path / "out" / "scenarios" / f"{sc.id}.json").read_text())
        file = tmp_path / f"{sc.id}.yaml"
        file.write_text(yaml.safe_dump(sc.instance, sort_keys=False))
        direct = solve_instance(load_instance(file), SolveParameters(backend="highs", time_limit_s=30))
        swept = record["result"]
        assert swept["objective"]["value"] == direct["objective"]["value"]
        assert swept["totals"]["capex_usd"] == direct["totals"]["capex_usd"]
        drop = lambda plan: json.loads(json.dumps({k: v for k, v in plan.items() if k != "solver"}, default=str))
        assert drop(swept) == drop(direct), sc.slug
    capex = [r["capex_usd"] for r in run.rows]
    assert len(set(capex)) == 4          # every override changed the plan: the test compares four plans


# ---------------------------------------------------------------- workers die with the sweep

ORPHAN_SCRIPT = textwrap.dedent("""\
    import os, sys, time
    from pathlib import Path
    from optimizer import scenarios as sw

    def slow(task):
        Path(task["id"]).write_text(str(os.getpid()))
        time.sleep(120)
        return {"id": task["id"], "status": "optimal"}

    if __name__ == "__main__":
        sw._run_pool([{"id": sys.argv[1], "slug": "x", "overrides": {}, "fingerprint": "", "params": {}}],
                     1, lambda record: None, solve_one=slow)
    """)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")      # a zombie has exited; init reaps it


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_a_worker_ends_when_the_sweeping_process_is_killed(tmp_path):
    # a pool worker blocks on its task pipe, whose write end it holds too: killing the parent
    # alone (SIGKILL, or a harness's timeout) used to leave the worker alive forever
    import signal
    import subprocess
    import sys
    import time
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN_SCRIPT)
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None and time.monotonic() < deadline, "the worker never started its task"
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), f"worker {worker} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path):
    # `timeout dcopt sweep ...` sends SIGTERM: what finished is kept and summarised, the
    # workers end, and a re-run resumes from there
    import signal
    import subprocess
    import sys
    import time
    spec = write_spec(tmp_path, """\
        solver: {backend: highs}
        axes:
          - path: routes[0].distance_km
            range: {start: 20, stop: 49, step: 1}
        """)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "optimizer", "sweep", str(spec), "--out", str(out),
                             "--workers", "1", "--progress", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(list((out / "scenarios").glob("*.json"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    statuses = [r["status"] for r in rows]
    assert len(rows) == 30 and "pending" in statuses and statuses.count("optimal") >= 2
    assert set(statuses) <= {"optimal", "pending"}
    resumed = sw.run_sweep(sw.load_spec(spec), out, workers=0)
    assert len(resumed.skipped) == statuses.count("optimal")
    assert _statuses(resumed.rows) == ["optimal"] * 30
