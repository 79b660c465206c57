"""The split, the placement and the network are chosen together (issue 4).

(a) Tightening the capex budget or one campus's power budget changes the chosen
    split and placement: the 32-accelerator split needs a DCI link the budget
    cannot pay for (or a campus that cannot power its half).
(b) Lengthening an inter-region route changes the DCI module: 800ZR up to its
    120 km reach, then the cheapest mode that still reaches.

Every expected value below is derived by hand from the catalog (models/*.yaml)
in the comments; the test asserts the solver's plan equals it.

Catalog figures used (HGX-H100-8 campus, 400G scale-out, one link per
accelerator per class):
- accelerator: 10,200 W per 8-GPU domain = 1,275 W;
- nic_to_leaf 3 m: AEC-400G $300, 5 W (a 2 m length takes DAC-400G $100, 0.1 W);
  leaf_to_spine 40 m: SR4-400G $700, 20 W; spine_to_core 300 m: DR4-400G $900,
  20 W. So $1,900 and 45 W per accelerator (DAC: $1,700 and 40.1 W);
- 800ZR: 800 Gb/s, 150 GHz, $4,800, 30 W, 120 km; one module at each end of a
  wavelength; C band 4,800 GHz -> 32 channels per fiber pair; C line terminal
  $25,000 and 150 W per pair end; an in-line amplifier hut every 80 km,
  $40,000 per pair per hut.
"""
from __future__ import annotations

import math

import pytest

from optimizer import performance as perf
from optimizer.instance import load_instance
from optimizer.lp import SolveParameters
from optimizer.solving import solve_instance

JOB = """
job:
  model: {layers: 4, hidden: 1024, heads: 8, seq_len: 1024, vocab: 32000, global_batch_sequences: 8}
  efficiency_loss_bound: {campus: 0.05, intra_region: 0.05, inter_region: 0.10}
  micro_batch_sizes: [1, 2]
  interleave_options: [1]
  recompute_modes: [selective]
"""

# Two campuses 40 km apart in one region, 16 H100 each, 800ZR only, operator-
# owned fiber (no lease), no bandwidth target: DCI is built only if the job
# spans both campuses. Campus a's NICs are 2 m from the leaves (DAC), so a is
# the cheaper campus for a job that fits in one.
SPLIT_CASE = """
name: split-vs-budgets
pue: 1.2
objective: max-throughput
regions:
  - name: r1
    campuses:
      - {name: a, power_budget_mw: POWER_A_MW, scale_up_domain: HGX-H100-8, accelerators: 16,
         fabric_lengths_m: {nic_to_leaf: 2}}
      - {name: b, power_budget_mw: 1, scale_up_domain: HGX-H100-8, accelerators: 16}
routes:
  - {a: a, b: b, distance_km: 40, fiber_pairs_available: 2, modules: [800ZR], band_plans: [C], fiber: existing}
targets: {intra_region_pbps: 0, inter_region_pbps: 0}
network: {allow_split_pipelines: false}
budgets: {capex_usd: CAPEX_USD}
""" + JOB

# Two regions, one campus each, a route of DISTANCE_KM km (operator-owned fiber,
# C band, every catalog module allowed), a 1.6 Tb/s inter-region target, and a
# min-cost job of 8 accelerators that fits in one campus (so the only DCI demand
# is the target). Campus a has the cheaper cables and gets the job.
DISTANCE_CASE = """
name: module-vs-distance
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
  - {a: a, b: b, distance_km: DISTANCE_KM, fiber_pairs_available: 2, band_plans: [C], fiber: existing}
targets: {intra_region_pbps: 0, inter_region_pbps: 0.0016}
""" + JOB + "  min_accelerators: 8\n"


def _split_case(power_a_mw: float, capex_usd: float) -> str:
    return SPLIT_CASE.replace("POWER_A_MW", repr(power_a_mw)).replace("CAPEX_USD", repr(capex_usd))


def _distance_case(distance_km: float) -> str:
    return DISTANCE_CASE.replace("DISTANCE_KM", repr(distance_km))


def _solve(tmp_path, text: str) -> dict:
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    plan = solve_instance(load_instance(path), SolveParameters(backend="highs"))
    assert plan["status"] == "optimal", plan.get("infeasibility")
    assert plan["verification"]["passed"]
    return plan


def _split(plan) -> tuple[int, int, int, int]:
    p = plan["parallelism"]
    return p["tp"], p["pp"], p["dp"], p["micro_batch"]


def _placement(plan) -> dict[str, int]:
    return {p["campus"]: p["accelerators"] for p in plan["placement"]}


def _link(plan) -> dict:
    (link,) = plan["dci_links"]
    return link


# ---------------------------------------------------------------- (a) budgets

def test_the_32_accelerator_split_needs_38_wavelengths_by_hand(tmp_path):
    """The DCI the 32-accelerator split needs, from the traffic model by hand.

    Hierarchical DP across D = 2 campuses sends 2(D-1)/D N beta = N beta bytes per
    step over the link (DOMAIN.md §2), within the intra-region loss bound, 5 % of
    the single-site step T. N = 84,201,472 parameters, beta = 2 bytes,
    T = 1.127 ms for TP 8 x PP 1 x DP 4, micro-batch 2:
    84.2e6 x 2 x 8 / (0.05 x 1.127e-3 s) = 23,903 Gb/s. Planned at <= 80 %
    utilisation on 800G wavelengths: 23,903 / 640 = 37.3 -> 38 wavelengths;
    38 > 32 channels per C pair -> 2 fiber pairs.
    """
    plan = _solve(tmp_path, _split_case(1, 1_000_000))
    li = load_instance(tmp_path / "case.yaml")
    w = perf.workload_from_instance(li)
    n_params = perf.parameter_count(w.dims)
    assert (n_params, w.bytes_per_element) == (84_201_472, 2)
    step_s = plan["performance"]["step_time_single_site_s"]
    assert step_s == pytest.approx(1.127e-3, rel=1e-3)
    need_gbps = perf.dci_required_gbps(perf.hierarchical_dp_bytes_per_site(n_params, 2, 2), 0.05 * step_s)
    assert need_gbps == pytest.approx(23_903, rel=1e-4)
    assert math.ceil(need_gbps / (0.8 * 800)) == 38
    link = _link(plan)
    assert (link["module"], link["wavelengths"], link["modules"], link["fiber_pairs"]) == ("800ZR", 38, 76, 2)


def test_tightening_the_capex_budget_changes_split_and_placement(tmp_path):
    """Capex of the 32-accelerator plan (TP 8 x DP 4, micro-batch 2), by hand:
      cables a 16 x $1,700 = $27,200, b 16 x $1,900 = $30,400;
      DCI 38 wavelengths x 2 modules x $4,800 = $364,800;
      line terminals 2 pairs x 2 ends x $25,000 = $100,000; fiber owned: $0;
      total $522,400.
    With a budget of $522,399 it no longer fits, and the split changes: micro-batch 1
    is slower (step 1.284 ms instead of 1.127 ms), so the DP sync may take longer
    and needs N beta 8 / (0.05 T) = 20,991 Gb/s between the campuses: 33
    wavelengths at 0.8 x 800 Gb/s. Capex $57,600 + 33 x 2 x $4,800 + $100,000 =
    $474,400. (The Pareto front of accelerators and speed the search used before
    had no such split: it dropped the slower micro-batch and answered 16
    accelerators in one campus, with 17 % less throughput.) At $150,000 the
    optimum leaves the second campus: the slowest two-campus split the budget sweep
    reached still needed 29 wavelengths ($278,400 of modules, at a $400,000 budget),
    so the plan moves to one campus: TP 8 x DP 2 = 16 accelerators in the cheaper
    one, a, $27,200, no DCI (cables a 16 x $1,700).
    """
    before = _solve(tmp_path, _split_case(1, 522_400))
    assert _split(before) == (8, 1, 4, 2)
    assert _placement(before) == {"a": 16, "b": 16}
    assert _link(before)["wavelengths"] == 38
    assert before["totals"]["capex_usd"] == 27_200 + 30_400 + 364_800 + 100_000 == 522_400

    after = _solve(tmp_path, _split_case(1, 522_399))
    assert _split(after) == (8, 1, 4, 1)
    assert _placement(after) == {"a": 16, "b": 16}
    li = load_instance(tmp_path / "case.yaml")
    n_params = perf.parameter_count(perf.workload_from_instance(li).dims)
    step_s = after["performance"]["step_time_single_site_s"]
    assert step_s == pytest.approx(1.2836e-3, rel=1e-3)
    need_gbps = n_params * 2 * 8 / (0.05 * step_s) / 1e9
    assert need_gbps == pytest.approx(20_991, rel=1e-3) and math.ceil(need_gbps / (0.8 * 800)) == 33
    assert _link(after)["wavelengths"] == 33
    assert after["totals"]["capex_usd"] == 57_600 + 33 * 2 * 4_800 + 100_000 == 474_400
    # the budget, not the objective, made the difference: it costs throughput
    assert after["performance"]["tokens_per_s"] < before["performance"]["tokens_per_s"]

    one_campus = _solve(tmp_path, _split_case(1, 150_000))
    assert _split(one_campus) == (8, 1, 2, 2)
    assert _placement(one_campus) == {"a": 16, "b": 0}
    assert _link(one_campus)["wavelengths"] == 0 and _link(one_campus)["module"] is None
    assert one_campus["totals"]["capex_usd"] == 16 * 1_700 == 27_200
    assert one_campus["performance"]["tokens_per_s"] < after["performance"]["tokens_per_s"]


def test_tightening_a_campus_power_budget_changes_split_and_placement(tmp_path):
    """Power at campus a, by hand (PUE 1.2):
      per accelerator (1,275 W + DAC 0.1 + SR4 20 + DR4 20 W) x 1.2 = 1,578.12 W;
      16 accelerators 25,249.9 W, plus the DCI end of the 32-accelerator plan
      (38 x 30 W + 2 x 150 W) x 1.2 = 1,728 W: 26,977.9 W, within 1 MW.
    Cut to 0.02 MW = 20,000 W, campus a powers one 8-GPU domain (12,625 W) but
    not two (25,250 W). The 32-accelerator split would need 32 <= 8 + 16 = 24:
    infeasible. Among 16-accelerator plans, 8 at a + 8 at b needs DCI while 16 at
    b does not (b: 16 x (1,275 + 45) x 1.2 = 25,344 W of 1 MW): TP 8 x DP 2, all
    at b, capex 16 x $1,900 = $30,400.
    """
    before = _solve(tmp_path, _split_case(1, 1_000_000))
    assert _split(before) == (8, 1, 4, 2)
    assert _placement(before) == {"a": 16, "b": 16}
    assert before["totals"]["power_w_by_campus"]["a"] == pytest.approx(1.2 * (16 * (1_275 + 40.1) + 38 * 30 + 2 * 150))
    assert before["totals"]["power_w_by_campus"]["a"] == pytest.approx(26_977.9, abs=0.1)

    after = _solve(tmp_path, _split_case(0.02, 1_000_000))
    assert _split(after) == (8, 1, 2, 2)
    assert _placement(after) == {"a": 0, "b": 16}
    assert _link(after)["wavelengths"] == 0
    assert after["totals"]["power_w_by_campus"]["b"] == pytest.approx(16 * (1_275 + 45) * 1.2) == 25_344
    assert after["totals"]["capex_usd"] == 16 * 1_900 == 30_400


# ---------------------------------------------------------------- (b) distance

# distance km -> (module, wavelengths, link cost USD), by hand:
# a wavelength costs two modules; the target is 1,600 Gb/s and nothing else
# crosses the route (the job sits in campus a). Per Gb/s: 800ZR 2 x 4,800 / 800
# = $12, 400ZR 2 x 3,230 / 400 = $16.15, 800ZR+ 800G $15, OpenZR+ 400G $22.5,
# 800ZR+ 400G $30, OpenZR+ 200G $45, 800ZR+ 200G $60, OpenZR+ 100G $90. The
# line system is the same for every mode at one distance (one C pair: 2
# terminals $50,000, ceil(km / 80) - 1 amplifier huts x $40,000), so the
# cheapest mode that reaches wins:
# - 120 km: 800ZR reaches (120 km): 1,600 / 800 = 2 wavelengths;
#   4 x $4,800 + $50,000 + 1 hut x $40,000 = $109,200;
# - 1,000 km: 800ZR/400ZR (120), OpenZR+ 400G/300G (450/480) and 800ZR+ 800G
#   (120) are out of reach; 800ZR+ 400G (1,000 km) is the cheapest left:
#   4 wavelengths, 8 x $6,000 + $50,000 + 12 huts x $40,000 = $578,000;
# - 1,100 km: beyond 800ZR+ 400G too; OpenZR+ 200G (1,280 km): 8 wavelengths,
#   16 x $4,500 + $50,000 + 13 huts x $40,000 = $642,000.
DISTANCE_EXPECTED = {
    120: ("800ZR", 2, 4 * 4_800 + 50_000 + 1 * 40_000),
    1_000: ("800ZR+-400G", 4, 8 * 6_000 + 50_000 + 12 * 40_000),
    1_100: ("OpenZR+-200G", 8, 16 * 4_500 + 50_000 + 13 * 40_000),
}


@pytest.mark.parametrize("distance_km", sorted(DISTANCE_EXPECTED))
def test_a_longer_route_changes_the_dci_module(tmp_path, distance_km):
    module, wavelengths, link_usd = DISTANCE_EXPECTED[distance_km]
    plan = _solve(tmp_path, _distance_case(distance_km))
    link = _link(plan)
    assert link["scope"] == "inter_region"
    assert (link["module"], link["wavelengths"], link["modules"], link["fiber_pairs"]) == \
        (module, wavelengths, 2 * wavelengths, 1)
    assert link["capacity_gbps"] == 1_600
    assert link["cost_usd"] == link_usd
    # the job itself is the same at every distance: 8 accelerators at campus a,
    # cables 8 x (DAC $100 + SR4 $700 + DR4 $900) = $13,600
    assert _placement(plan) == {"a": 8, "b": 0}
    assert plan["totals"]["capex_usd"] == 13_600 + link_usd


def test_the_module_changes_exactly_where_reach_runs_out(tmp_path):
    """One km past the 120 km of 800ZR, 400ZR and 800ZR+ 800G, the cheapest mode
    that reaches is OpenZR+ 400G (450 km, $22.5 per Gb/s): 1,600 / 400 = 4
    wavelengths, 8 x $4,500 + $50,000 + (ceil(121 / 80) - 1 = 1) x $40,000."""
    link = _link(_solve(tmp_path, _distance_case(121)))
    assert (link["module"], link["wavelengths"]) == ("OpenZR+-400G", 4)
    assert link["cost_usd"] == 8 * 4_500 + 50_000 + 40_000 == 126_000
