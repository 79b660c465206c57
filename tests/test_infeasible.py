"""Infeasible instances are explained: one small instance per kind of conflict.

Each case gives exit 4 (or exit 2 where the conflict is a bad input, see
test_reach_*), a first line that says INFEASIBLE and names the conflict, an
explanation that names the budget, route or target and the amount in the
planner's units (MW, USD, pairs, km, GB, Pbit/s), and the smallest set of
changes, each with the field to edit. The amounts are checked against hand
arithmetic, and every suggested change is applied and solved again: the
changed instance must have a plan (so the suggestion is sufficient), and the
smaller amount one step below it must not (so it is not padded), where that
step is meaningful.

Reach is a validation error, not an infeasibility: a route no allowed module
can light is unusable whatever the budgets, almost always a typo in
distance_km or in the route's module list, and saying so at the door (exit 2,
with the field path, the distance and the longest reach) is more useful than
an elastic model that can only report "no capacity on that route".
"""
from __future__ import annotations

import json
import math

import pytest
import yaml
from conftest import TINY_INSTANCE

from optimizer.instance import load_instance
from optimizer.lp import SolveParameters
from optimizer.scenarios import apply_overrides
from optimizer.solving import solve_instance

TINY_MODEL = "{layers: 4, hidden: 1024, heads: 8, seq_len: 1024, vocab: 32000, global_batch_sequences: 8}"


def two_campus(*, objective="max-throughput", lincoln_mw=2, omaha_mw=2, km=40, pairs=16, model=TINY_MODEL,
               job_extra="", intra_pbps=0.01, capex="1.0e9", domains=16) -> str:
    """Two HGX-H100 campuses of one region (the tiny test instance, renamed), as YAML text."""
    return f"""\
name: conflict
objective: {objective}
pue: 1.2
regions:
  - name: nebraska
    campuses:
      - {{name: lincoln, power_budget_mw: {lincoln_mw}, scale_up_domain: HGX-H100-8, domains: {domains}}}
      - {{name: omaha, power_budget_mw: {omaha_mw}, scale_up_domain: HGX-H100-8, domains: {domains}}}
routes:
  - {{a: lincoln, b: omaha, distance_km: {km}, fiber_pairs_available: {pairs}}}
job:
  model: {model}
  efficiency_loss_bound: {{campus: 0.05, intra_region: 0.05, inter_region: 0.10}}
  {job_extra}
targets: {{intra_region_pbps: {intra_pbps}, inter_region_pbps: 0}}
budgets: {{capex_usd: {capex}}}
"""


TWO_REGIONS = f"""\
name: long-haul
objective: max-throughput
pue: 1.2
regions:
  - name: west
    campuses:
      - {{name: omaha, power_budget_mw: 2, scale_up_domain: HGX-H100-8, domains: 16}}
  - name: east
    campuses:
      - {{name: columbus, power_budget_mw: 2, scale_up_domain: HGX-H100-8, domains: 16}}
routes:
  - {{a: omaha, b: columbus, distance_km: 1050, fiber_pairs_available: 24}}
job:
  model: {TINY_MODEL}
  efficiency_loss_bound: {{campus: 0.05, intra_region: 0.05, inter_region: 0.10}}
targets: {{intra_region_pbps: 0, inter_region_pbps: 1.0}}
"""


@pytest.fixture
def solve_text(tmp_path, run_cli):
    """Write the text, run `dcopt solve --format json` and the text report; return both."""
    def run(text: str, name: str = "conflict.yaml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        code, out, err = run_cli(["solve", path, "--format", "json"])
        assert "Traceback" not in err
        plan = json.loads(out) if code in (0, 3, 4) else None
        tcode, text_out, _ = run_cli(["solve", path])
        assert tcode == code
        return code, plan, text_out, err, path
    return run


def resolve_with(path, changes) -> dict:
    """Apply the suggested changes (field path -> value) and solve again."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    data = apply_overrides(raw, {c["field"]: c["needed"] for c in changes})
    li = load_instance(f"{path.name}[changed]", text=yaml.safe_dump(data, sort_keys=False))
    return solve_instance(li, SolveParameters())


def assert_sufficient(path, changes):
    assert changes and all(c["field"] for c in changes), changes
    plan = resolve_with(path, changes)
    assert plan["status"] == "optimal", plan.get("infeasibility")


# ---------------------------------------------------------------- power

def test_power_budget_of_a_campus(solve_text):
    # min-cost with every accelerator: 128 H100 at lincoln draw 128 x 10,200/8 W x PUE 1.2
    # = 0.19584 MW before cables and DCI; the budget is 0.15 MW
    text = two_campus(objective="min-cost", lincoln_mw=0.15, job_extra="min_accelerators: 256")
    code, plan, report, _, path = solve_text(text)
    assert code == 4
    first = report.splitlines()[0]
    assert first.startswith("INFEASIBLE: conflict has no plan") and "power" in first
    inf = plan["infeasibility"]
    (change,) = inf["smallest_changes"]
    assert change["kind"] == "power" and change["where"] == "lincoln" and change["unit"] == "MW"
    assert change["field"] == "regions[0].campuses[0].power_budget_mw"
    assert change["limit"] == 0.15
    accelerators_mw = 128 * 10_200 / 8 * 1.2 / 1e6
    assert accelerators_mw < change["needed"] < accelerators_mw * 1.1
    # small budgets keep their digits: 0.15, not 0.1 or 0.2
    line = next(x for x in inf["explanation"] if x.startswith("power:"))
    assert "campus lincoln needs 0.2032 MW" in line and "budget is 0.15 MW" in line
    assert "128 accelerators 0.1958 MW" in line
    assert "0.15 -> 0.2032" in report
    assert_sufficient(path, inf["smallest_changes"])
    below = dict(change, needed=round(accelerators_mw, 4))
    assert resolve_with(path, [below])["status"] == "infeasible"


def test_power_needed_for_dci_terminals_at_a_small_campus(solve_text):
    # 4 Pbit/s between two campuses: every ZR-class module carries 26.7 Gb/s per W (800G
    # in 30 W, 400G in 15 W), so 150 kW of modules at each end; line terminals carry
    # 51.2 Tb/s per 300 W (C+L) or 25.6 Tb/s per 150 W (C), so >= 23.4 kW more; x PUE 1.2
    # >= 0.208 MW, more than omaha's 0.1 MW before any accelerator
    text = two_campus(omaha_mw=0.1, intra_pbps=4, pairs=96)
    code, plan, report, _, path = solve_text(text)
    assert code == 4
    changes = plan["infeasibility"]["smallest_changes"]
    omaha = next(c for c in changes if c["kind"] == "power" and c["where"] == "omaha")
    assert omaha["needed"] >= (4e6 / 800 * 30 + 4e6 / 51_200 * 300) * 1.2 / 1e6 * (1 - 1e-6)
    line = next(x for x in plan["infeasibility"]["explanation"] if "campus omaha" in x)
    assert "budget is 0.1 MW" in line and "cables and DCI optics" in line
    assert_sufficient(path, changes)
    # the alternative keeps the budgets and lowers the target
    (alt,) = plan["infeasibility"]["alternatives"]
    assert alt["field"] == "regions[0].intra_region_target_pbps" and 0 < alt["needed"] < 4
    assert "Or, keeping budgets and fiber as they are" in report
    assert_sufficient(path, [alt])


# ---------------------------------------------------------------- capex

def test_capex_budget(solve_text):
    # 128 accelerators need three cable classes of 128 links each before any DCI;
    # the budget is $10,000
    text = two_campus(objective="min-cost", capex="1.0e4", job_extra="min_accelerators: 128")
    code, plan, report, _, path = solve_text(text)
    assert code == 4
    inf = plan["infeasibility"]
    (change,) = inf["smallest_changes"]
    assert change["kind"] == "capex" and change["field"] == "budgets.capex_usd" and change["unit"] == "USD"
    li = load_instance(path)
    cheapest_cables = 0.0
    dom = li.catalog.scale_up_domains["HGX-H100-8"]
    for cls in dom.connection_classes:
        fits = [c.price_usd_per_link for c in li.catalog.cables.values()
                if c.port_gbps == cls.port_gbps and c.lane_gbps == cls.lane_gbps and c.reach_m >= cls.default_length_m]
        cheapest_cables += 128 * min(fits)
    assert change["needed"] >= cheapest_cables
    assert change["needed"] == math.ceil(change["needed"])          # whole dollars, rounded up
    line = inf["explanation"][0]
    assert line.startswith(f"capex: the closest feasible plan costs ${change['needed']:,.0f}; budget is $10,000")
    assert "INFEASIBLE: conflict has no plan (conflict: capex)" == report.splitlines()[0]
    assert_sufficient(path, inf["smallest_changes"])


# ---------------------------------------------------------------- fiber pairs

def test_fiber_pairs_on_a_route(solve_text):
    # 5 Pbit/s on one 40 km route: the best light is 64 x 800G per C+L pair = 51.2 Tb/s,
    # so 5,000 / 51.2 -> 98 pairs; the route has 2
    text = two_campus(pairs=2, intra_pbps=5)
    code, plan, report, _, path = solve_text(text)
    assert code == 4
    inf = plan["infeasibility"]
    (change,) = inf["smallest_changes"]
    assert change == {**change, "kind": "fiber_pairs", "where": "lincoln-omaha", "unit": "pairs",
                      "field": "routes[0].fiber_pairs_available", "limit": 2, "needed": math.ceil(5e6 / 51_200)}
    line = inf["explanation"][0]
    assert "route lincoln-omaha (40 km) needs 98 fiber pairs" in line and "it has 2 (+96)" in line
    assert "intra-region target of region nebraska (5 Pbit/s)" in line and "51.2 Tb/s per pair" in line
    assert_sufficient(path, inf["smallest_changes"])
    assert resolve_with(path, [dict(change, needed=97)])["status"] == "infeasible"
    # or keep the 2 pairs and lower the target to what they carry: 2 x 51.2 Tb/s
    (alt,) = inf["alternatives"]
    assert alt["needed"] == pytest.approx(0.1024, abs=1e-4) and alt["needed"] <= 0.1024
    assert_sufficient(path, [alt])


# ---------------------------------------------------------------- targets

def test_inter_region_target_over_long_haul(solve_text):
    # 1 Pbit/s over 1,050 km: only 200G and 100G modes reach; OpenZR+ 200G at 75 GHz
    # fills a C+L pair with 128 x 200G = 25.6 Tb/s, so 1,000 / 25.6 -> 40 pairs; the route has 24
    code, plan, report, _, path = solve_text(TWO_REGIONS, "long-haul.yaml")
    assert code == 4
    inf = plan["infeasibility"]
    (change,) = inf["smallest_changes"]
    assert change["kind"] == "fiber_pairs" and change["needed"] == 40 and change["limit"] == 24
    line = inf["explanation"][0]
    assert "route omaha-columbus (1,050 km) needs 40 fiber pairs for the inter-region target (1 Pbit/s" in line
    assert "OpenZR+-200G on C+L (25.6 Tb/s per pair)" in line and "it has 24 (+16)" in line
    (alt,) = inf["alternatives"]
    assert alt["field"] == "targets.inter_region_pbps" and alt["unit"] == "Pbit/s"
    assert alt["needed"] == pytest.approx(24 * 25.6 / 1000, abs=1e-4)
    assert "lower targets.inter_region_pbps from 1 to 0.6144" in report
    assert_sufficient(path, inf["smallest_changes"])
    assert_sufficient(path, [alt])


def test_intra_region_target_against_the_capex_budget(solve_text):
    # 2 Pbit/s costs far more than $1M of optics and line systems: raise capex, or lower
    # the target to what $1M buys once the cables are paid
    text = two_campus(intra_pbps=2, capex="1.0e6", pairs=96)
    code, plan, report, _, path = solve_text(text)
    assert code == 4
    inf = plan["infeasibility"]
    (change,) = inf["smallest_changes"]
    assert change["kind"] == "capex" and change["needed"] > 1e6
    (alt,) = inf["alternatives"]
    assert alt["kind"] == "intra_region_target" and alt["where"] == "nebraska" and alt["unit"] == "Pbit/s"
    assert 0 < alt["needed"] < 2
    assert f"lower the intra-region target of region nebraska from 2 to {alt['needed']:g} Pbit/s" in report
    assert_sufficient(path, inf["smallest_changes"])
    assert_sufficient(path, [alt])


# ---------------------------------------------------------------- memory

def test_memory_no_split_fits_at_any_size(solve_text):
    # hidden 262,144 on 8-GPU servers: even TP 8 x one layer per stage holds 1.6 G
    # parameters per GPU, 18 bytes each with gradients and Adam states: far over 72 GB
    big = "{layers: 2, hidden: 262144, heads: 8, seq_len: 1024, vocab: 32000, global_batch_sequences: 8}"
    code, plan, report, _, _ = solve_text(two_campus(model=big))
    assert code == 4
    assert report.splitlines()[0] == "INFEASIBLE: conflict has no plan (conflict: memory)"
    line = plan["infeasibility"]["explanation"][0]
    assert line.startswith("memory: no split of the model")
    assert "80 GB of HBM per H100-SXM (72.0 GB usable after the 10% reserve)" in line
    assert "TP 8" in line and "PP 2 (one layer per stage)" in line
    (change,) = plan["infeasibility"]["smallest_changes"]
    assert change["unit"] == "GB" and change["limit"] == 72.0 and change["needed"] > 1000


def test_memory_needs_more_accelerators_than_on_site(solve_text):
    # GPT-1T (128 layers, h = 25,600) at TP 8: 43 stages of 3 layers hold 3.1 G parameters
    # per GPU (~58 GB with gradients, Adam and activations); 42 stages of 4 layers need
    # ~74 GB > 72: at least 8 x 43 = 344 accelerators, the two campuses have 256
    code, plan, report, _, _ = solve_text(two_campus(model="GPT-1T"))
    assert code == 4
    line = plan["infeasibility"]["explanation"][0]
    assert "memory: GPT-1T needs at least 344 accelerators" in line and "the campuses have 256" in line
    assert "TP 8 x PP 43 x DP 1" in line
    (change,) = plan["infeasibility"]["smallest_changes"]
    assert change["needed"] == 344 and change["limit"] == 256 and change["unit"] == "accelerators"


# ---------------------------------------------------------------- reach (a bad input)

def test_reach_beyond_every_module_is_a_bad_input(tmp_path, run_cli):
    path = tmp_path / "reach.yaml"
    path.write_text(two_campus(km=2500), encoding="utf-8")
    code, out, err = run_cli(["solve", path])
    assert code == 2 and out == ""
    assert (f"error: {path}:10: routes[0].distance_km: 2500 km is beyond every DCI module's reach in the catalog "
            "(longest 2000 km: 800ZR+-200G, OpenZR+-100G)") in err


def test_reach_beyond_the_modules_allowed_on_a_route_is_a_bad_input(tmp_path, run_cli):
    path = tmp_path / "reach.yaml"
    path.write_text(two_campus(km=300).replace("fiber_pairs_available: 16}",
                                              "fiber_pairs_available: 16, modules: [400ZR, 800ZR]}"),
                    encoding="utf-8")
    code, _, err = run_cli(["solve", path])
    assert code == 2
    assert ("routes[0].modules: none of the allowed modules reaches 300 km (longest: 400ZR, 120 km); "
            "allow one that does, e.g. 800ZR+-400G (1000 km)") in err


# ---------------------------------------------------------------- the job's own minimums

def test_minimum_throughput_out_of_reach(solve_text):
    text = two_campus(objective="min-cost", job_extra="min_tokens_per_s: 1.0e12")
    code, plan, _, _, path = solve_text(text)
    assert code == 4
    (change,) = plan["infeasibility"]["smallest_changes"]
    assert change["field"] == "job.min_tokens_per_s" and change["unit"] == "tokens/s"
    line = plan["infeasibility"]["explanation"][0]
    assert line.startswith("job: job.min_tokens_per_s is 1,000,000,000,000; at most ")
    assert "tokens/s with the splits the campuses can host (split TP " in line
    assert_sufficient(path, [change])


def test_power_limited_minimum_gets_the_power_explanation(solve_text):
    # the power budgets host 0 accelerators: the job minimum is reachable on site, so
    # the explanation is the power each campus needs, not "no split"
    text = TINY_INSTANCE.read_text().replace("power_budget_mw: 2", "power_budget_mw: 0.001")
    code, plan, _, _, path = solve_text(text)
    assert code == 4
    changes = plan["infeasibility"]["smallest_changes"]
    assert {c["kind"] for c in changes} == {"power"}
    assert all(c["limit"] == 0.001 and c["needed"] > 0.001 for c in changes)
    assert_sufficient(path, changes)


# ---------------------------------------------------------------- the published plan schema

def test_explanations_match_the_published_plan_schema(solve_text):
    from test_outputs import schema_errors

    from optimizer.plan import plan_json_schema

    schema = plan_json_schema()
    for text in (two_campus(pairs=2, intra_pbps=5), two_campus(model="GPT-1T"), TWO_REGIONS):
        code, plan, _, _, _ = solve_text(text)
        assert code == 4
        assert schema_errors(plan, schema) == []
        assert plan["infeasibility"]["smallest_changes"]
