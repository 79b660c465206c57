"""Capex-throughput Pareto front: no dominated points, extremes equal to the
two single-objective solves, the CLI's files."""
from __future__ import annotations

import csv
import io

import pytest
from conftest import TINY_INSTANCE

# the API functions (the solver module is optimizer.solving, so `optimizer.solve` stays the function)
from optimizer.api import pareto, solve
from optimizer.instance import load_instance
from optimizer.lp import SolveParameters
from optimizer.pareto_front import CapexCap, dominates, non_dominated, pareto_front

TINY = TINY_INSTANCE.read_text()


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("pareto") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def front_result(tiny_path):
    return pareto_front(load_instance(tiny_path), points=5)


def _pt(c, t):
    return {"capex_usd": c, "throughput_tokens_per_s": t}


def test_dominance_rules():
    assert dominates(_pt(1, 10), _pt(2, 10))
    assert dominates(_pt(1, 11), _pt(1, 10))
    assert not dominates(_pt(1, 10), _pt(1, 10))          # equal: neither dominates
    assert not dominates(_pt(1, 5), _pt(2, 10))           # a trade-off
    pts = [_pt(3, 30), _pt(1, 10), _pt(2, 10), _pt(2, 25), _pt(2, 25), {"kind": "x", "status": "infeasible"}]
    assert [(p["capex_usd"], p["throughput_tokens_per_s"]) for p in non_dominated(pts)] == [(1, 10), (2, 25), (3, 30)]


def test_front_has_no_dominated_points_and_rises_with_capex(front_result):
    assert front_result.status == "ok"
    front = front_result.front
    assert len(front) >= 3
    for p in front:
        assert not any(dominates(q, p) for q in front_result.points if "capex_usd" in q)
    capex = [p["capex_usd"] for p in front]
    thr = [p["throughput_tokens_per_s"] for p in front]
    assert capex == sorted(capex) and len(set(capex)) == len(capex)
    assert thr == sorted(thr) and len(set(thr)) == len(thr)
    # every epsilon point respects its cap
    for p in front_result.points:
        if p["kind"] == "epsilon":
            assert p["capex_usd"] <= p["capex_cap_usd"] * (1 + 1e-9)


def test_front_extremes_equal_the_single_objective_solves(front_result, tiny_path):
    fast = solve(tiny_path, objective="max-throughput")
    cheap = solve(tiny_path, objective="min-cost")
    lo, hi = front_result.front[0], front_result.front[-1]
    assert hi["throughput_tokens_per_s"] == pytest.approx(fast["objective"]["value"], rel=1e-9)
    assert hi["capex_usd"] == pytest.approx(fast["totals"]["capex_usd"], rel=1e-9)
    assert lo["capex_usd"] == pytest.approx(cheap["objective"]["value"], rel=1e-9)
    assert lo["capex_usd"] == pytest.approx(cheap["totals"]["capex_usd"], rel=1e-9)
    assert lo["throughput_tokens_per_s"] == pytest.approx(cheap["performance"]["tokens_per_s_single_site"], rel=1e-9)
    assert (lo["kind"], hi["kind"]) == ("min-capex", "max-throughput")


def test_capex_cap_hook_binds(tiny_path, front_result):
    # a cap just below the dearest plan must give up some throughput
    hi = front_result.front[-1]
    capped = solve(tiny_path, extra_rows=CapexCap(hi["capex_usd"] - 1.0))
    assert capped["totals"]["capex_usd"] <= hi["capex_usd"] - 1.0
    assert capped["performance"]["tokens_per_s_single_site"] < hi["throughput_tokens_per_s"]


def test_api_pareto_returns_rows_for_pandas(tiny_path):
    import pandas as pd     # in the [test] extras: never skipped
    rows = pareto(tiny_path, points=1)
    df = pd.DataFrame(rows)
    assert {"capex_usd", "throughput_tokens_per_s", "tokens_per_s", "mfu", "tp", "pp", "dp"} <= set(df.columns)
    assert df["capex_usd"].is_monotonic_increasing


def test_pareto_cli_writes_csv_and_png(tiny_path, tmp_path, run_cli):
    out = tmp_path / "front"
    code, text, err = run_cli(["pareto", tiny_path, "--between", "capex", "throughput", "--points", "2", "--out", out])
    assert code == 0, err
    assert text.startswith("Pareto front of tiny")
    rows = list(csv.DictReader(io.StringIO((out / "pareto.csv").read_text())))
    assert len(rows) >= 2
    assert [float(r["capex_usd"]) for r in rows] == sorted(float(r["capex_usd"]) for r in rows)
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("args, words", [
    (["--between", "capex", "latency"], "only 'capex throughput'"),
    (["--points", "-1"], "--points: must be between 0 and 200"),
    (["--time-limit", "0"], "--time-limit: must be > 0"),
])
def test_pareto_cli_errors(tiny_path, run_cli, args, words):
    code, _, err = run_cli(["pareto", tiny_path] + args)
    assert code == 2 and words in err and "Traceback" not in err


def test_infeasible_instance_has_no_front(tmp_path, run_cli):
    path = tmp_path / "starved.yaml"
    path.write_text(TINY.replace("power_budget_mw: 2", "power_budget_mw: 0.001"))
    result = pareto_front(load_instance(path), points=2, params=SolveParameters())
    assert result.status == "infeasible" and not result.front and result.reason
    code, _, err = run_cli(["pareto", path, "--points", "1"])
    assert code == 4 and "INFEASIBLE" in err


def test_cable_capex_floor_by_hand(tmp_path):
    from optimizer.planner import cable_capex_floor_usd
    li = load_instance(tiny_path_of(tmp_path, TINY))
    # HGX-H100 classes at the tiny campuses' default lengths: nic_to_leaf 3 m AEC-400G $300,
    # leaf_to_spine 40 m SR4-400G $700, spine_to_core 300 m DR4-400G $900, one link each:
    # $1,900 per accelerator; 16 domains x 8 = 128 accelerators per campus
    floor = cable_capex_floor_usd(li, [0, 72, 256, 257])
    assert list(floor[:3]) == [0.0, 72 * 1900.0, 256 * 1900.0] and floor[3] == float("inf")
    # campus b's NIC links at 10 m: past the AEC's reach, SR4 $700 -> $2,300 per accelerator;
    # the floor fills campus a first
    li = load_instance(tiny_path_of(tmp_path, TINY.replace(
        "domains: 16}\nroutes", "domains: 16, fabric_lengths_m: {nic_to_leaf: 10}}\nroutes")))
    assert cable_capex_floor_usd(li, [200])[0] == 128 * 1900.0 + 72 * 2300.0


def tiny_path_of(tmp_path, text):
    path = tmp_path / "tiny-variant.yaml"
    path.write_text(text)
    return path


def test_capex_screen_only_skips_splits_without_a_plan(tiny_path, front_result, monkeypatch):
    """Every cap of the front solved with and without the capex screen gives the same
    optimum; the screen does skip splits at the low caps (the test is not vacuous)."""
    from optimizer import solving
    from optimizer.planner import ranked_splits
    li = load_instance(tiny_path)
    ranked = ranked_splits(li)
    caps = [p["capex_cap_usd"] for p in front_result.points if p["kind"] == "epsilon"]
    screened = {cap: len(solving._capex_screen(li, ranked, SolveParameters(), CapexCap(cap))[0].rows) for cap in caps}
    assert min(screened.values()) < len(ranked.rows)
    with_screen = {cap: solve(tiny_path, extra_rows=CapexCap(cap))["objective"]["value"] for cap in caps}
    monkeypatch.setattr(solving, "_capex_screen", lambda li, r, p, e: (r, 0.0))
    without = {cap: solve(tiny_path, extra_rows=CapexCap(cap))["objective"]["value"] for cap in caps}
    assert with_screen == pytest.approx(without, rel=1e-9)
