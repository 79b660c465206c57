"""Property tests of `dcopt solve` on random valid instances (issue 5, fuzzing).

Random valid instances (tests/instance_gen.py: 1 to 20 campuses, 1 to 4
regions, random fiber routes and module lists, power and capex budgets,
targets, max-throughput or min-cost, small models) either solve with a plan
the independent verifier accepts, or are reported infeasible with an
explanation whose smallest changes, applied to the file, give a plan. Random
corruptions of such files give exit 2 with the file, the line and (when the
YAML still parses) a field path for every problem, or still solve. Never a
traceback. The properties live in tests/solve_properties.py; scripts/fuzz.py
runs them at larger counts (docs/fuzz.md has the counts).

Bounded and derandomized for CI: about 45 s on 2 cores (the solves dominate).
"""
from __future__ import annotations

import pytest
import yaml
from conftest import TINY_INSTANCE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from instance_gen import as_yaml, valid_instances
from solve_properties import check_corruption, check_solve, corrupt_structure, corrupt_text

CI = dict(deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("solve-fuzz")


@settings(max_examples=20, **CI)
@given(data=valid_instances(max_campuses=20))
def test_valid_instances_solve_with_a_verified_plan_or_are_explained(folder, data):
    check_solve(data, folder)


@settings(max_examples=30, **CI)
@given(doc=valid_instances(max_campuses=6), data=st.data())
def test_corrupted_instances_are_rejected_with_a_field_path(folder, doc, data):
    mutated = corrupt_structure(doc, data.draw)
    check_corruption(yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True), folder, parses=True)


@settings(max_examples=30, **CI)
@given(doc=valid_instances(max_campuses=6), data=st.data())
def test_corrupted_text_is_rejected_with_file_and_line(folder, doc, data):
    check_corruption(corrupt_text(as_yaml(doc), data.draw), folder, parses=False)


# ---------------------------------------------------------------- what the fuzzing found

@pytest.mark.parametrize("field", ["recompute_modes", "micro_batch_sizes", "interleave_options"])
def test_an_empty_list_of_split_options_is_a_bad_input(tmp_path, run_cli, field):
    """scripts/fuzz.py, seed 0: `recompute_modes: []` passed validation, left no split to
    enumerate and crashed the memory explanation (IndexError); it is now exit 2."""
    text = TINY_INSTANCE.read_text(encoding="utf-8").replace(
        "  efficiency_loss_bound:", f"  {field}: []\n  efficiency_loss_bound:")
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["solve", path])
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"job.{field}: must not be empty" in err
