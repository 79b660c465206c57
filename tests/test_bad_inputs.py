"""Bad instance files: each gives exit 2, the field path, the line and a helpful message.

Every case is a small YAML text made from BASE (a valid two-region instance) by
one targeted replacement, or written out whole. The expected line is found in
the produced text by a marker, so the table states *which* line is meant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import pytest

BASE = """\
name: bad-input-base
objective: max-throughput
pue: 1.2
regions:
  - name: west
    campuses:
      - {name: alpha, power_budget_mw: 100, scale_up_domain: GB200-NVL72, domains: 400,
         fabric_lengths_m: {nic_to_leaf: 3, leaf_to_spine: 40}}
      - {name: bravo, power_budget_mw: 80, scale_up_domain: GB200-NVL72, domains: 300}
  - name: east
    campuses:
      - {name: charlie, power_budget_mw: 120, scale_up_domain: GB200-NVL72, domains: 500}
      - {name: delta, power_budget_mw: 60, scale_up_domain: GB200-NVL72, domains: 200}
routes:
  - {a: alpha, b: bravo, distance_km: 30, fiber_pairs_available: 96}
  - {a: charlie, b: delta, distance_km: 40, fiber_pairs_available: 96}
  - {a: bravo, b: charlie, distance_km: 900, fiber_pairs_available: 48}
job:
  model: GPT-3-175B
  precision: bf16
  efficiency_loss_bound: {campus: 0.05, intra_region: 0.05, inter_region: 0.10}
targets:
  intra_region_pbps: 5
  inter_region_pbps: 1
budgets:
  capex_usd: 5.0e8
network:
  k_paths: 3
"""

MARKER_NAME = "dcopt-pwned-marker"


def sub(old: str, new: str, text: str = BASE) -> str:
    """BASE with one exact, unique replacement (fails loudly if BASE changes)."""
    assert text.count(old) == 1, f"{old!r} must occur once in the base text"
    return text.replace(old, new)


@dataclass
class Case:
    id: str
    text: Union[str, bytes, Callable[[Path], Path]]
    path: str            # expected field path ('' for file-level problems)
    line: Union[str, int, None]  # marker text of the expected line, a line number, or None (no line)
    fragment: str        # part of the helpful message
    extra: tuple = ()    # more fragments that must appear (e.g. a suggestion)


def _missing(tmp: Path) -> Path:
    return tmp / "does-not-exist.yaml"


def _directory(tmp: Path) -> Path:
    d = tmp / "a-directory.yaml"
    d.mkdir()
    return d


CASES = [
    # --- YAML itself
    Case("syntax-unclosed-flow-mapping", sub("{name: bravo, power_budget_mw: 80,", "{name: bravo, power_budget_mw: 80"),
         "", "domains: 300}", "YAML syntax error", ("expected ',' or '}'",)),
    Case("syntax-bad-indentation", sub("  precision: bf16", "   precision: bf16"),
         "", "   precision: bf16", "YAML syntax error"),
    Case("syntax-tab-indentation", sub("  k_paths: 3", "\tk_paths: 3"),
         "", "\tk_paths: 3", "YAML syntax error", ("'\\t'",)),
    Case("control-character", sub("name: bad-input-base", "name: bad\x07base"),
         "", "name: bad", "unacceptable character #x0007"),
    Case("two-documents", BASE + "---\nname: again\n", "", "---", "single document"),
    Case("empty-file", "", "", None, "file is empty"),
    Case("only-comments", "# nothing here\n\n", "", None, "file is empty"),
    Case("top-level-list", "- name: a\n- name: b\n", "", 1, "top level must be a mapping", ("got list",)),
    Case("top-level-scalar", "just some text\n", "", 1, "top level must be a mapping", ("got str",)),
    Case("duplicate-yaml-key", sub("  inter_region_pbps: 1\n", "  inter_region_pbps: 1\n  intra_region_pbps: 4\n"),
         "", "intra_region_pbps: 4", "duplicate key 'intra_region_pbps'", ("first at line",)),
    Case("unsafe-tag-os-system",
         sub("name: bad-input-base", f"name: !!python/object/apply:os.system ['touch {{tmp}}/{MARKER_NAME}']"),
         "", "!!python", "unsupported YAML tag", ("not executed",)),
    Case("unsafe-tag-python-name", sub("  model: GPT-3-175B", "  model: !!python/name:os.system"),
         "", "!!python/name", "unsupported YAML tag"),
    Case("alias-bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
         + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i-1}'] * 10)}]\n" for i in range(1, 7)) + "regions: *a6\n",
         "", None, "expand to more than"),
    Case("non-utf8-bytes", sub("name: bad-input-base", "name: bad-\udcff-base").encode("utf-8", "surrogateescape"),
         "", None, "not UTF-8"),
    Case("nonexistent-file", _missing, "", None, "file not found"),
    Case("a-directory", _directory, "", None, "is a directory"),
    # --- shape and types
    Case("wrong-type-number", sub("power_budget_mw: 80", "power_budget_mw: lots"),
         "regions[0].campuses[1].power_budget_mw", "name: bravo", "must be a number", ("'lots'",)),
    Case("wrong-type-list", sub("routes:\n", "routes: {a: alpha}\nx-routes:\n"),
         "routes", "routes: {a: alpha}", "must be a list"),
    Case("wrong-type-mapping", sub("      - {name: delta, power_budget_mw: 60, scale_up_domain: GB200-NVL72, domains: 200}\n",
                                   "      - delta\n"),
         "regions[1].campuses[1]", "      - delta", "must be a mapping of fields", ("got str",)),
    Case("boolean-as-number", sub("domains: 200", "domains: yes"),
         "regions[1].campuses[1].domains", "name: delta", "must be a number, not true/false"),
    Case("whole-number-expected", sub("domains: 200", "domains: 200.5"),
         "regions[1].campuses[1].domains", "name: delta", "must be a whole number", ("200.5",)),
    Case("negative-power-budget", sub("power_budget_mw: 120", "power_budget_mw: -5"),
         "regions[1].campuses[0].power_budget_mw", "power_budget_mw: -5", "must be > 0", ("got -5",)),
    Case("zero-domains", sub("domains: 200", "domains: 0"),
         "regions[1].campuses[1].domains", "name: delta", "must be > 0", ("got 0",)),
    Case("negative-distance", sub("distance_km: 900", "distance_km: -900"),
         "routes[2].distance_km", "distance_km: -900", "must be > 0"),
    Case("zero-fiber-pairs", sub("distance_km: 30, fiber_pairs_available: 96", "distance_km: 30, fiber_pairs_available: 0"),
         "routes[0].fiber_pairs_available", "{a: alpha, b: bravo", "must be > 0"),
    Case("pue-below-one", sub("pue: 1.2", "pue: 0.9"), "pue", "pue: 0.9", "must be >= 1"),
    Case("infinite-budget", sub("capex_usd: 5.0e8", "capex_usd: .inf"),
         "budgets.capex_usd", "capex_usd: .inf", "must be a finite number"),
    Case("nan-power", sub("power_budget_mw: 100", "power_budget_mw: .nan"),
         "regions[0].campuses[0].power_budget_mw", "name: alpha", "must be"),
    Case("loss-bound-above-one", sub("inter_region: 0.10}", "inter_region: 1.5}"),
         "job.efficiency_loss_bound.inter_region", "efficiency_loss_bound", "must be < 1"),
    Case("unknown-literal", sub("precision: bf16", "precision: fp8"),
         "job.precision", "precision: fp8", "must be one of", ("'bf16'", "'fp8'")),
    Case("unknown-objective", sub("objective: max-throughput", "objective: fastest"),
         "objective", "objective: fastest", "must be one of", ("'min-cost'",)),
    Case("missing-required-section", sub("targets:\n  intra_region_pbps: 5\n  inter_region_pbps: 1\n", ""),
         "targets", 1, "required field is missing"),   # a missing top-level field: the document's first line
    Case("neither-domains-nor-accelerators", sub(", domains: 200}", "}"),
         "regions[1].campuses[1]", "name: delta", "give either 'domains' or 'accelerators'"),
    Case("empty-regions", "name: x\npue: 1.2\nregions: []\njob: {model: GPT-3-175B, efficiency_loss_bound: "
         "{campus: 0.05, intra_region: 0.05, inter_region: 0.1}}\ntargets: {intra_region_pbps: 0, inter_region_pbps: 0}\n",
         "regions", 3, "must not be empty"),
    Case("model-neither-name-nor-mapping", sub("model: GPT-3-175B", "model: 175"),
         "job.model", "model: 175", "llm_presets name", ("mapping of model dimensions",)),
    Case("k-paths-zero", sub("k_paths: 3", "k_paths: 0"), "network.k_paths", "k_paths: 0", "must be > 0"),
    # --- unknown names and fields (with suggestions)
    Case("unknown-field-top-level", sub("objective: max-throughput", "objectiv: max-throughput"),
         "objectiv", "objectiv:", "unknown field 'objectiv'", ("did you mean 'objective'?",)),
    Case("unknown-field-in-campus", sub("power_budget_mw: 60", "power_budget_MW: 60"),
         "regions[1].campuses[1].power_budget_MW", "name: delta", "unknown field 'power_budget_MW'",
         ("did you mean 'power_budget_mw'?",)),
    Case("unknown-field-in-job", sub("  precision: bf16", "  precission: bf16"),
         "job.precission", "precission", "unknown field", ("did you mean 'precision'?",)),
    Case("unknown-scale-up-domain", sub("scale_up_domain: GB200-NVL72, domains: 300", "scale_up_domain: GB200-NVL27, domains: 300"),
         "regions[0].campuses[1].scale_up_domain", "name: bravo", "unknown name 'GB200-NVL27'",
         ("did you mean 'GB200-NVL72'?",)),
    Case("unknown-model", sub("model: GPT-3-175B", "model: GPT-3-157B"),
         "job.model", "model: GPT-3-157B", "unknown name 'GPT-3-157B'", ("did you mean 'GPT-3-175B'?",)),
    Case("unknown-band-plan", sub("fiber_pairs_available: 48}", "fiber_pairs_available: 48, band_plans: [C+K]}"),
         "routes[2].band_plans[0]", "band_plans: [C+K]", "unknown name 'C+K'", ("did you mean 'C+L'?",)),
    Case("unknown-connection-class", sub("leaf_to_spine: 40", "leaf_to_spin: 40"),
         "regions[0].campuses[0].fabric_lengths_m.leaf_to_spin", "leaf_to_spin", "unknown connection class",
         ("did you mean 'leaf_to_spine'?",)),
    # --- cross-field checks
    Case("dangling-route-end", sub("{a: charlie, b: delta,", "{a: charlie, b: delte,"),
         "routes[1].b", "b: delte", "route to unknown campus 'delte'", ("did you mean 'delta'?",)),
    Case("self-route", sub("{a: alpha, b: bravo,", "{a: alpha, b: alpha,"),
         "routes[0].b", "{a: alpha, b: alpha", "to itself"),
    Case("duplicate-route", sub("routes:\n", "routes:\n  - {a: delta, b: charlie, distance_km: 41, fiber_pairs_available: 8}\n"),
         "routes[2]", "{a: charlie, b: delta", "second route between", ("also routes[0]",)),
    Case("duplicate-campus-name", sub("{name: delta,", "{name: charlie,"),
         "regions[1].campuses[1].name", "{name: charlie, power_budget_mw: 60", "duplicate campus name 'charlie'"),
    Case("duplicate-region-name", sub("  - name: east", "  - name: west"),
         "regions[1].name", "  - name: west\n    campuses:\n      - {name: charlie", "duplicate region name 'west'"),
    Case("accelerators-not-multiple-of-domain", sub("domains: 200", "accelerators: 1000"),
         "regions[1].campuses[1].accelerators", "accelerators: 1000", "not a whole number of GB200-NVL72 domains",
         ("multiple of 72",)),
    Case("domains-and-accelerators-disagree", sub("domains: 200", "domains: 200, accelerators: 72"),
         "regions[1].campuses[1].domains", "accelerators: 72", "give one of the two"),
    Case("route-beyond-every-reach", sub("distance_km: 900", "distance_km: 2500"),
         "routes[2].distance_km", "distance_km: 2500", "beyond every DCI module's reach", ("longest 2000 km",)),
    Case("fabric-length-no-cable-reaches", sub("leaf_to_spine: 40", "leaf_to_spine: 4000"),
         "regions[0].campuses[0].fabric_lengths_m.leaf_to_spine", "leaf_to_spine: 4000", "no cable in the catalog"),
    Case("mixed-scale-up-domains", sub("scale_up_domain: GB200-NVL72, domains: 200", "scale_up_domain: GB300-NVL72, domains: 200"),
         "regions", "regions:", "different scale-up domains", ("GB300-NVL72",)),
    Case("min-cost-without-throughput-target", sub("objective: max-throughput", "objective: min-cost"),
         "job", "job:", "min-cost needs a throughput", ("min_tokens_per_s",)),
    Case("min-above-max-accelerators", sub("  precision: bf16", "  precision: bf16\n  min_accelerators: 1000\n  max_accelerators: 10"),
         "job.min_accelerators", "min_accelerators", "above job.max_accelerators"),
    Case("disconnected-regions-with-inter-target",
         sub("  - {a: bravo, b: charlie, distance_km: 900, fiber_pairs_available: 48}\n", ""),
         "routes", "routes:", "not connected by any chain of fiber routes"),
    Case("intra-target-without-routes", sub("  - {a: alpha, b: bravo, distance_km: 30, fiber_pairs_available: 96}\n", ""),
         "regions[0]", "  - name: west", "no route between its campuses"),
    # --- catalog overrides
    Case("override-negative-price", BASE + "catalog_overrides:\n  dci_optics:\n    800ZR:\n      price_usd: -1\n",
         "catalog_overrides.dci_optics.800ZR.price_usd", "price_usd: -1", "must be >= 0"),
    Case("override-typo-field", BASE + "catalog_overrides:\n  dci_optics:\n    800ZR:\n      prise_usd: 3000\n",
         "catalog_overrides.dci_optics.800ZR.prise_usd", "prise_usd", "unknown field", ("did you mean 'price_usd'?",)),
    Case("override-unknown-section", BASE + "catalog_overrides:\n  dci_optic:\n    800ZR: {price_usd: 3000}\n",
         "catalog_overrides.dci_optic", "  dci_optic:", "must be one of", ("'dci_optics'",)),
    Case("override-new-entry-incomplete", BASE + "catalog_overrides:\n  dci_optics:\n    1.6ZR:\n      rate_gbps: 1600\n",
         "catalog_overrides.dci_optics.1.6ZR.reach_km", "1.6ZR:", "a new catalog entry needs every field"),
    Case("override-entry-not-a-mapping", BASE + "catalog_overrides:\n  dci_optics:\n    800ZR: 3000\n",
         "catalog_overrides.dci_optics.800ZR", "800ZR: 3000", "must be a mapping of fields"),
    Case("override-nested-typo", BASE + "catalog_overrides:\n  scale_up_domains:\n    GB200-NVL72:\n      connection_classes:\n"
         "        - {name: x, scope: scale_up, port_gbps: 800, lane_gbps: 200, links_per_accelerator: 9, default_lenght_m: 1}\n",
         "catalog_overrides.scale_up_domains.GB200-NVL72.connection_classes[0].default_lenght_m", "default_lenght_m",
         "unknown field", ("did you mean 'default_length_m'?",)),
    Case("override-unknown-accelerator", BASE + "catalog_overrides:\n  scale_up_domains:\n    GB200-NVL72: {accelerator: GB201}\n",
         "catalog_overrides.scale_up_domains.GB200-NVL72.accelerator", "GB201", "unknown name 'GB201'",
         ("did you mean 'GB200'?",)),
]


def _expected_line(case: Case, text: Optional[str]) -> Optional[int]:
    if case.line is None or isinstance(case.line, int):
        return case.line
    assert text is not None
    assert text.count(case.line) == 1, f"line marker {case.line!r} must occur once in the case's text"
    return text[: text.index(case.line)].count("\n") + 1


def _write(case: Case, tmp_path: Path) -> tuple[Path, Optional[str]]:
    if callable(case.text):
        return case.text(tmp_path), None
    path = tmp_path / f"{case.id}.yaml"
    if isinstance(case.text, bytes):
        path.write_bytes(case.text)
        return path, None
    text = case.text.replace("{tmp}", str(tmp_path))
    path.write_text(text, encoding="utf-8")
    return path, text


def test_base_is_valid(run_cli, tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(BASE, encoding="utf-8")
    code, out, err = run_cli(["validate", path])
    assert code == 0, err
    assert "valid" in out


def test_enough_cases():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(run_cli, tmp_path, case: Case):
    path, text = _write(case, tmp_path)
    code, out, err = run_cli(["validate", path])
    assert not (tmp_path / MARKER_NAME).exists(), "a YAML tag was executed"
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err and "Traceback" not in out
    assert out == ""
    lines = err.splitlines()
    assert lines, "no error message"
    for line in lines:
        assert line.startswith(f"error: {path}"), line
    # the problem the case is about: the line naming the expected path and fragment
    prefix = f"{case.path}: " if case.path else ""
    matching = [ln for ln in lines if case.fragment in ln and (not case.path or f": {prefix}" in ln)]
    assert matching, f"no error with path {case.path!r} and {case.fragment!r} in:\n{err}"
    message = matching[0]
    for fragment in case.extra:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    found = re.match(rf"error: {re.escape(str(path))}(?::(\d+))?: ", message)
    assert found, message
    expected = _expected_line(case, text)
    got = int(found.group(1)) if found.group(1) else None
    assert got == expected, f"line {got}, expected {expected}: {message}"


def test_unsafe_tag_is_never_executed(run_cli, tmp_path):
    marker = tmp_path / MARKER_NAME
    for tag in ("!!python/object/apply:os.system", "!!python/object/apply:subprocess.call"):
        path = tmp_path / "evil.yaml"
        path.write_text(f"name: {tag} [['touch', '{marker}']]\n" if "subprocess" in tag
                        else f"name: {tag} ['touch {marker}']\n", encoding="utf-8")
        code, _, err = run_cli(["validate", path])
        assert code == 2 and "unsupported YAML tag" in err
        assert not marker.exists(), "a YAML tag was executed"


def test_merge_keys_are_plain_yaml(run_cli, tmp_path):
    """'<<: *anchor' is ordinary YAML (not a tag to refuse) and duplicates inside it are fine."""
    text = sub("      - {name: bravo, power_budget_mw: 80, scale_up_domain: GB200-NVL72, domains: 300}\n",
               "      - &bravo {name: bravo, power_budget_mw: 80, scale_up_domain: GB200-NVL72, domains: 300}\n")
    text = sub("      - {name: delta, power_budget_mw: 60, scale_up_domain: GB200-NVL72, domains: 200}\n",
               "      - {<<: *bravo, name: delta, power_budget_mw: 60, domains: 200}\n", text)
    path = tmp_path / "merge.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["validate", path])
    assert code == 0, err
    assert "campus delta: 14,400 x GB200" in out


def test_console_script_reports_without_traceback(tmp_path):
    """The installed entry point, in a fresh process: exit 2, one line, no traceback."""
    import subprocess
    import sys
    path = tmp_path / "bad.yaml"
    path.write_text(sub("power_budget_mw: 120", "power_budget_mw: -5"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "optimizer", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}:12: regions[1].campuses[0].power_budget_mw: must be > 0" in proc.stderr
