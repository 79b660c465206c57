"""The independent verifier catches broken plans, and `solve` refuses to emit one.

Every other test checks verify_plan(...) == [] on good plans, which a verifier
that always passed would also satisfy. Here one good plan is solved once and
each test breaks one figure of a deep copy (keeping the rest consistent where
it can), then checks that the verifier names what broke.

The plan: tests/data/tiny-two-campus.yaml with 0.1 MW per campus instead of 2.
The fastest split (TP 8 x PP 2 x DP 8, 128 accelerators) cannot be powered, so
the plan runs TP 8 x PP 2 x DP 4 on 64 accelerators: 3 replicas (48) at one
campus ("big" below; a and b are alike, either may be it), 1 replica (16) at the
other ("small"), and 43 800ZR wavelengths on one C+L fiber pair of the 40 km
route a-b (16 pairs available) carry the DP sync between them.
"""
from __future__ import annotations

import copy
import math

import pytest
from conftest import TINY_INSTANCE

import optimizer.solving as solving
from optimizer.instance import load_instance
from optimizer.lp import SolveParameters
from optimizer.solving import PlanRejected, solve_instance
from optimizer.verify import verify_plan

POWER_MW = 0.1


@pytest.fixture(scope="module")
def tiny_power_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("verify") / "tiny-power.yaml"
    text = TINY_INSTANCE.read_text(encoding="utf-8")
    assert text.count("power_budget_mw: 2") == 2
    path.write_text(text.replace("power_budget_mw: 2", f"power_budget_mw: {POWER_MW}"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def solved(tiny_power_path):
    li = load_instance(tiny_power_path)
    plan = solve_instance(li, SolveParameters())
    assert plan["status"] == "optimal"
    return li, plan


@pytest.fixture
def plan(solved):
    """A fresh deep copy of the good plan for each test to break."""
    return copy.deepcopy(solved[1])


@pytest.fixture
def li(solved):
    return solved[0]


def _big_small(plan):
    """(campus with 3 replicas, campus with 1)."""
    by_reps = {p["replicas"]: p["campus"] for p in plan["placement"]}
    return by_reps[3], by_reps[1]


def _link(plan):
    (link,) = plan["dci_links"]
    return link


def _detail(plan):
    (d,) = _link(plan)["detail"]
    return d


def _cable(plan, campus, connection):
    return next(c for c in plan["cables"] if c["campus"] == campus and c["connection"] == connection)


def _placement(plan, campus):
    return next(p for p in plan["placement"] if p["campus"] == campus)


def _set_wavelengths(plan, li, n):
    """Change the wavelength count of the link consistently (modules, capacity)."""
    d, link = _detail(plan), _link(plan)
    rate = li.catalog.dci_optics[d["module"]].rate_gbps
    for x in (d, link):
        x["wavelengths"], x["modules"], x["capacity_gbps"] = n, 2 * n, n * rate


def violations_matching(plan, li, *substrings):
    """The violations that contain every substring (the test fails if there is none)."""
    bad = verify_plan(plan, li)
    hits = [v for v in bad if all(s in v for s in substrings)]
    assert hits, f"no violation mentions {substrings}; the verifier said: {bad}"
    return hits


# ------------------------------------------------------------ the plan under test

def test_the_good_plan_is_what_the_docstring_says_and_passes(solved):
    li, plan = solved
    P = plan["parallelism"]
    assert (P["tp"], P["pp"], P["dp"], P["accelerators"]) == (8, 2, 4, 64)
    assert sorted((p["replicas"], p["accelerators"]) for p in plan["placement"]) == [(1, 16), (3, 48)]
    d = _detail(plan)
    assert (d["module"], d["band_plan"], d["wavelengths"], d["fiber_pairs"]) == ("800ZR", "C+L", 43, 1)
    assert verify_plan(plan, li) == []
    assert plan["verification"] == {"passed": True, "violations": []}


# ------------------------------------------------------------ one broken figure each

def test_link_capacity_above_what_the_modules_give(plan, li):
    # 43 x 800G = 34,400 Gb/s; the plan claims one more wavelength's worth
    n = _detail(plan)["wavelengths"]
    _link(plan)["capacity_gbps"] += 800
    violations_matching(plan, li, "link a-b", f"capacity {(n + 1) * 800}", f"modules give {n * 800}")


def test_wavelengths_above_the_spectrum_of_the_lit_pairs(plan, li):
    # C+L: 9,600 GHz usable / 150 GHz per 800ZR channel = 64 channels on the one lit pair
    ls = li.catalog.line_systems["C+L"]
    per_pair = int(ls.usable_ghz // li.catalog.dci_optics["800ZR"].spectral_width_ghz)
    assert per_pair == 64
    _set_wavelengths(plan, li, per_pair + 1)
    violations_matching(plan, li, "link a-b", "65 x 150", "do not fit 1 pairs")
    _set_wavelengths(plan, li, per_pair)           # 64 fit: no spectrum violation
    assert not [v for v in verify_plan(plan, li) if "do not fit" in v]


def test_accelerators_above_what_a_campus_has(plan, li):
    # each campus has 16 HGX domains = 128 accelerators; 9 replicas of 16 = 144
    big, _ = _big_small(plan)
    row = _placement(plan, big)
    row["replicas"], row["accelerators"] = 9, 144
    violations_matching(plan, li, f"placement {big}", "144 accelerators > 128 on site")


def test_placement_that_misreports_its_accelerators(plan, li):
    _, small = _big_small(plan)
    _placement(plan, small)["accelerators"] = 32     # 1 replica x 16
    violations_matching(plan, li, f"placement {small}", "replicas give 16", "plan says 32")


def test_capex_total_off(plan, li):
    plan["totals"]["capex_usd"] += 1_000
    capex = plan["totals"]["capex_usd"]
    violations_matching(plan, li, "capex", f"plan says {capex:.0f} USD", f"recomputed {capex - 1_000:.0f} USD")


def test_capex_above_budget(plan, li):
    li = copy.copy(li)
    li.instance = li.instance.model_copy(update={"budgets": li.instance.budgets.model_copy(
        update={"capex_usd": plan["totals"]["capex_usd"] - 1})})
    violations_matching(plan, li, "capex", "> budget")


def test_campus_power_above_budget(plan, li):
    """Move the small campus's replica to the big one, cables with it, and drop the
    DCI link (the intra-region target then fails too): 64 accelerators there draw,
    by hand, 1.2 x 64 x (10,200/8 W + 5 + 20 + 20 W of the plan's AEC, SR4 and DR4
    cables) = 101,376 W, over the 0.1 MW budget."""
    big, small = _big_small(plan)
    a, b = _placement(plan, big), _placement(plan, small)
    a["replicas"], a["accelerators"], b["replicas"], b["accelerators"] = 4, 64, 0, 0
    plan["flows"], plan["dci_links"] = [], []     # one active campus: no DP sync to carry
    for cls in ("nic_to_leaf", "leaf_to_spine", "spine_to_core"):
        _cable(plan, big, cls)["count"] = 64
        plan["cables"].remove(_cable(plan, small, cls))
    assert 1.2 * 64 * (1_275 + 5 + 20 + 20) == pytest.approx(101_376)
    (msg,) = violations_matching(plan, li, f"power {big}:", "MW > budget 0.1 MW")
    assert "0.101 MW" in msg


def test_reported_power_that_is_not_the_recomputed_power(plan, li):
    plan["totals"]["power_w_by_campus"]["b"] -= 500
    violations_matching(plan, li, "power b: plan says", "recomputed")


def test_fiber_pairs_above_what_the_route_has(plan, li):
    # route a-b offers 16 pairs
    _detail(plan)["fiber_pairs"] = 17
    _link(plan)["fiber_pairs"] = 17
    violations_matching(plan, li, "link a-b", "17 fiber pairs > 16 available")


def test_tp_change_that_breaks_t_p_d(plan, li):
    plan["parallelism"]["tp"] = 4                 # 4 x 2 x 4 = 32, the plan places 64
    violations_matching(plan, li, "split", "tp*pp*dp = 32 != accelerators 64")


def test_tp_beyond_the_scale_up_domain(plan, li):
    P = plan["parallelism"]
    P["tp"], P["dp"] = 16, 2                      # t.p.d still 64, but TP 16 spans two HGX-8 domains
    violations_matching(plan, li, "split", "TP 16 does not divide the scale-up domain (8)")


def test_tp_change_that_breaks_memory(plan, li):
    """TP 1 x PP 2 for a 100-layer, 16,384-hidden model (~12 x 100 x 16,384^2 = 322 B
    parameters) puts ~161 B parameters on each accelerator, ~2.6 TB of weights,
    gradients and Adam states at 16 bytes each, against 80 GB of HBM: the verifier
    asks the performance model, not the plan."""
    li = copy.copy(li)
    job = li.instance.job
    big = job.model.model_copy(update={"layers": 100, "hidden": 16_384, "heads": 128})
    li.instance = li.instance.model_copy(update={"job": job.model_copy(update={"model": big})})
    P = plan["parallelism"]
    P["tp"], P["dp"] = 1, 32                      # t.p.d = 64 still
    violations_matching(plan, li, "split: infeasible per the performance model", "memory")


def test_cables_below_links_times_accelerators(plan, li):
    # HGX-H100-8 nic_to_leaf: 1 link per accelerator, 48 accelerators at the big campus
    big, _ = _big_small(plan)
    _cable(plan, big, "nic_to_leaf")["count"] = 47
    violations_matching(plan, li, f"cables {big}/nic_to_leaf", "47 < 48 links needed")


def test_cable_type_that_does_not_reach(plan, li):
    # nic_to_leaf runs 3 m here; DAC-400G reaches 2 m
    row = _cable(plan, "a", "nic_to_leaf")   # both campuses host replicas
    assert (row["type"], row["length_m"], li.catalog.cables["DAC-400G"].reach_m) == ("AEC-400G", 3.0, 2)
    row["type"] = "DAC-400G"
    violations_matching(plan, li, "cables a/nic_to_leaf", "DAC-400G does not fit 3.0 m")


def test_module_beyond_its_reach_on_the_route(plan, li):
    # 400G-LR4 reaches 10 km; the route is 40 km
    d = _detail(plan)
    d["module"], d["band_plan"], d["fiber_pairs"] = "400G-LR4", None, d["wavelengths"]
    violations_matching(plan, li, "link a-b", "400G-LR4 reaches 10.0 km < 40.0 km")


def test_intra_region_target_not_met(plan, li):
    # target 0.01 Pbit/s = 10,000 Gb/s; 12 x 800G = 9,600 Gb/s
    _set_wavelengths(plan, li, 12)
    violations_matching(plan, li, "target r1", "0.010 Pbit/s < 0.01")


def test_dp_sync_routed_below_what_the_loss_bound_needs(plan, li):
    (flow,) = plan["flows"]
    flow["gbps"] /= 2
    violations_matching(plan, li, "traffic a-b", "routed <", "DP sync needs")


def test_link_loaded_above_its_utilisation_cap(plan, li):
    # the DP sync (27,468 Gb/s) on the most wavelengths whose 80 % it overfills (34 x 800G:
    # 0.8 x 27,200 = 21,760 Gb/s; the plan's 43 give 0.8 x 34,400 = 27,520)
    (flow,) = plan["flows"]
    u = li.instance.network.link_utilization_max
    n = math.ceil(flow["gbps"] / (u * 800)) - 1
    assert u == 0.8 and u * n * 800 < flow["gbps"] <= u * _detail(plan)["wavelengths"] * 800
    _set_wavelengths(plan, li, n)
    violations_matching(plan, li, "link a-b", "DP load", f"> 0.8 x capacity {n * 800}")


def test_wavelength_without_a_module_at_both_ends(plan, li):
    """A wavelength needs a module at each end (the BOM puts modules/2 at each
    campus): a plan listing one module per wavelength (43 for 43) is short of half."""
    d = _detail(plan)
    n = d["wavelengths"]
    d["modules"] = _link(plan)["modules"] = n
    violations_matching(plan, li, "link a-b", f"{n} modules of 800ZR for {n} wavelengths", f"need {2 * n}")


def test_link_totals_that_disagree_with_their_detail(plan, li):
    """Procurement reads the link row (wavelengths, modules, fiber pairs): it must
    be the sum of its detail rows."""
    _link(plan)["fiber_pairs"] = 0
    violations_matching(plan, li, "link a-b", "fiber_pairs 0", "detail")


def test_misreported_single_site_step_time(plan, li):
    plan["performance"]["step_time_single_site_s"] *= 1.01
    violations_matching(plan, li, "performance: single-site step")


def test_misreported_efficiency_loss_and_delivered_rate(plan, li):
    """The delivered rate and its loss are recomputed from the routed flows: the
    plan cannot claim a smaller loss than its network gives."""
    perf = plan["performance"]
    assert perf["efficiency_loss"] > 0.04
    perf["efficiency_loss"] = 0.0
    perf["tokens_per_s"] = perf["tokens_per_s_single_site"]
    violations_matching(plan, li, "performance: efficiency loss")
    violations_matching(plan, li, "performance: tokens/s")


def test_split_pipeline_latency_is_recomputed_not_read_from_the_plan(plan, li):
    """Turn the small campus's replica into a pipeline split across a-b (8
    accelerators, one stage, at each end): its fill/drain adds 2 x 40 km x 4.9 us/km = 0.392 ms
    to a ~1 ms step, far over the 5 % bound. A plan that reports no PP latency must
    not hide that."""
    big, small = _big_small(plan)
    a, b = _placement(plan, big), _placement(plan, small)
    a["split_pipeline_halves"] = b["split_pipeline_halves"] = 1
    a["accelerators"], b["replicas"], b["accelerators"] = 56, 0, 8
    plan["split_pipelines"] = [{"a": "a", "b": "b", "pipelines": 1}]
    for cls in ("nic_to_leaf", "leaf_to_spine", "spine_to_core"):
        _cable(plan, big, cls)["count"], _cable(plan, small, cls)["count"] = 56, 8
    assert plan["performance"]["exposed_s"]["pp_latency"] == 0
    assert 2 * 40 * 4.9e-6 == pytest.approx(0.392e-3)
    bad = verify_plan(plan, li)
    assert any("PP latency" in v and "0.392 ms" in v for v in bad), bad
    assert any(v.startswith("efficiency loss") for v in bad), bad


# ------------------------------------------------------------ solve refuses a rejected plan

def _reject(plan, li):
    return ["link a-b: injected violation for the test"]


def test_solve_instance_raises_plan_rejected(monkeypatch, tiny_power_path):
    monkeypatch.setattr(solving, "verify_plan", _reject)
    with pytest.raises(PlanRejected, match="independent verifier rejected the plan:\n  link a-b: injected violation"):
        solve_instance(load_instance(tiny_power_path), SolveParameters())


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_cli_solve_emits_no_plan_when_the_verifier_rejects_it(monkeypatch, run_cli, tiny_power_path, tmp_path, fmt):
    monkeypatch.setattr(solving, "verify_plan", _reject)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["solve", tiny_power_path, "--format", fmt, "--out", out])
    assert code == 1                       # optimizer/cli.py: an internal error, not a plan status
    assert stdout == "", "no plan (text or JSON) on stdout"
    assert not out.exists(), "no plan.json / bom.csv written"
    assert "Traceback" not in stderr
    assert stderr.splitlines()[0] == ("internal error (please report): the independent verifier rejected the "
                                      "plan:")
    assert "link a-b: injected violation for the test" in stderr


def test_flows_stated_to_a_mb_per_s_are_judged_within_their_rounding(plan, li):
    """Flows are written to 3 decimals of Gb/s (plan.FLOW_DECIMALS): a pair's demand
    carried by K flows, each rounded to the nearest 0.001, may sum up to K x 0.0005
    Gb/s short of the solver's exact value (at 64 campuses four flows rounded up put
    640.001 Gb/s on a link capped at 640.000). The verifier allows each flow its
    half-unit and no more. 300 equal shares of the tiny plan's pair demand round down
    by 0.000218 each: 0.0655 Gb/s short in all, more than the 1e-6 relative tolerance
    (0.027 Gb/s) alone allows."""
    from optimizer import performance as perf
    from optimizer.plan import FLOW_ROUNDING_GBPS
    (flow,) = [f for f in plan["flows"] if f["kind"] == "dp_intra_region"]
    # what the pair needs: 2 N beta bytes / n sites within 5 % of the single-site step
    w = perf.workload_from_instance(li)
    n_params, beta, share = perf.parameter_count(w.dims), w.bytes_per_element, 0.05
    need = 2 * n_params * beta * 8 / (2 * share * plan["performance"]["step_time_single_site_s"]) / 1e9
    assert flow["gbps"] >= need - FLOW_ROUNDING_GBPS
    k = 300
    stated = round(need / k, 3)
    assert 0 < need / k - stated <= FLOW_ROUNDING_GBPS                # rounded down, by less than half a unit
    assert need - k * stated > need * 1e-6 + 1e-6                    # beyond the relative tolerance
    rounded = copy.deepcopy(plan)
    rounded["flows"] = [dict(flow, gbps=stated) for _ in range(k)]
    assert not [v for v in verify_plan(rounded, li) if "routed <" in v]
    short = copy.deepcopy(plan)
    short["flows"] = [dict(flow, gbps=round(stated - 0.001, 3)) for _ in range(k)]   # 0.3 Gb/s more short
    assert any("routed <" in v for v in verify_plan(short, li))
