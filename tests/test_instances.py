"""The example instances, the shipped catalog, `dcopt schema` and catalog overrides."""
from __future__ import annotations

import json

import pytest
from conftest import DEFAULT_INSTANCE, INSTANCE_DIR, INSTANCES, ROOT

from optimizer import catalog as cat
from optimizer.instance import load_instance
from optimizer.network import route_options
from optimizer.yamlio import load_yaml

EXPECTED_INSTANCES = {"us-two-regions", "trn2-ultra64-region", "two-building-campus", "phoenix-texas"}


def _ids(paths):
    return [p.stem for p in paths]


# ---------------------------------------------------------------- instances

def test_the_example_instances_are_all_there():
    assert EXPECTED_INSTANCES <= {p.stem for p in INSTANCES}
    readme = (INSTANCE_DIR / "README.md").read_text(encoding="utf-8")
    for stem in (p.stem for p in INSTANCES):
        assert f"{stem}.yaml" in readme, f"instances/README.md does not describe {stem}.yaml"


@pytest.mark.parametrize("path", INSTANCES, ids=_ids(INSTANCES))
def test_instance_validates_with_summary(run_cli, path):
    code, out, err = run_cli(["validate", path])
    assert code == 0, err
    assert err == ""
    li = load_instance(path)
    assert out.startswith(f"{path}: valid")
    assert f"instance: {li.instance.name}" in out
    for campus in li.campuses:
        assert f"campus {campus.name}:" in out
    for word in ("regions:", "routes", "targets:", "budgets:", "totals:"):
        assert word in out
    assert len(out.splitlines()) < 60, "the summary should fit one screen"


def test_validate_works_from_another_directory(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["validate", DEFAULT_INSTANCE])
    assert code == 0, err
    assert "valid" in out


@pytest.mark.parametrize("path", INSTANCES, ids=_ids(INSTANCES))
def test_instance_is_a_realistic_planning_case(path):
    """Realistic sizes, a capital budget, and a comment saying what the case is for."""
    li = load_instance(path)
    total = sum(li.accelerators_at(c) for c in li.campuses)
    assert 10_000 <= total <= 500_000
    assert li.instance.budgets.capex_usd is not None
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "an instance starts with a comment saying what it is for"


POWER_BOUND_CASES = ["trn2-ultra64-region", "two-building-campus", "phoenix-texas"]


@pytest.mark.parametrize("stem", POWER_BOUND_CASES)
def test_some_power_budgets_bind(stem):
    """Some campuses cannot power all their installed domains, others can: real choices."""
    li = load_instance(INSTANCE_DIR / f"{stem}.yaml")
    binding, slack = [], []
    for c in li.campuses:
        dom = li.catalog.scale_up_domains[c.scale_up_domain]
        installed_mw = li.accelerators_at(c) / dom.accelerators_per_domain * dom.domain_power_w * li.campus_pue(c) / 1e6
        (binding if installed_mw > c.power_budget_mw else slack).append(c.name)
    assert binding, "no campus power budget binds"
    assert slack, "every campus power budget binds"


def test_two_building_campus_uses_a_campus_scope_link():
    li = load_instance(INSTANCE_DIR / "two-building-campus.yaml")
    assert len(li.instance.regions) == 1 and len(li.campuses) == 2
    (route,) = li.instance.routes
    assert route.distance_km <= li.instance.network.campus_scope_max_km
    assert li.route_scope(route) == "campus"
    grey = [o for o in route_options(route, li.catalog) if o.band is None]
    assert grey, "a 10 km building link should be able to use grey LR optics"


def test_phoenix_texas_long_haul_needs_the_2000_km_modes():
    li = load_instance(INSTANCE_DIR / "phoenix-texas.yaml")
    inter = [r for r in li.instance.routes if li.route_scope(r) == "inter_region"]
    assert inter
    for route in inter:
        assert 1_280 < route.distance_km <= 2_000
        modules = {o.module for o in route_options(route, li.catalog)}
        assert modules == {name for name, o in li.catalog.dci_optics.items() if o.reach_km >= route.distance_km}
        assert modules and all(li.catalog.dci_optics[m].reach_km >= 2_000 for m in modules)
    assert (li.instance.targets.intra_region_pbps, li.instance.targets.inter_region_pbps) == (5, 1)
    assert {c.scale_up_domain for c in li.campuses} == {"GB300-NVL72"}


def test_trn2_region_is_a_single_region():
    li = load_instance(INSTANCE_DIR / "trn2-ultra64-region.yaml")
    assert len(li.instance.regions) == 1
    assert 3 <= len(li.campuses) <= 4
    assert li.instance.targets.inter_region_pbps == 0
    assert li.instance.targets.intra_region_pbps == 5
    assert {c.scale_up_domain for c in li.campuses} == {"Trn2-Ultra64"}
    assert all(20 <= r.distance_km <= 80 and li.route_scope(r) == "intra_region" for r in li.instance.routes)


# ---------------------------------------------------------------- catalog

CATALOG_FILES = sorted((ROOT / "models").glob("*.yaml"))


def test_catalog_files_are_the_known_sections():
    assert {p.stem for p in CATALOG_FILES} == set(cat.CATALOG_SECTIONS)


@pytest.mark.parametrize("path", CATALOG_FILES, ids=_ids(CATALOG_FILES))
def test_every_catalog_entry_has_a_source(path):
    data, _ = load_yaml(path)
    assert isinstance(data, dict) and data
    for name, entry in data.items():
        assert isinstance(entry, dict), f"{path.name}: {name} is not a mapping"
        source = entry.get("source")
        assert isinstance(source, str) and source.strip(), f"{path.name}: {name} has no source"


def test_catalog_loads_with_the_required_entries():
    catalog = cat.load_catalog()
    accelerators = " ".join(catalog.accelerators)
    for chip in ("H100", "B200", "GB200", "GB300", "Trn2", "MI300X", "MI355X"):
        assert chip in accelerators
    for domain in ("HGX-H100-8", "HGX-B200-8", "GB200-NVL72", "GB300-NVL72", "Trn2-Ultra64"):
        assert domain in catalog.scale_up_domains
        assert catalog.scale_up_domains[domain].accelerator in catalog.accelerators
    modules = {o.module for o in catalog.dci_optics.values()}
    assert {"400G-LR4", "400ZR", "OpenZR+", "800ZR", "800ZR+"} <= modules
    assert {"C", "C+L"} <= set(catalog.line_systems)
    for preset in ("GPT-1.7B", "GPT-1T", "GPT-3-175B", "Llama-3-405B", "Dense-10T", "Dense-100T"):
        assert preset in catalog.llm_presets


# ---------------------------------------------------------------- schema

def test_schema_prints_json_schema(run_cli):
    code, out, err = run_cli(["schema"])
    assert code == 0, err
    schema = json.loads(out)
    assert schema["type"] == "object"
    assert {"name", "description", "objective", "pue", "regions", "routes", "job", "targets",
            "budgets", "network", "catalog_overrides"} <= set(schema["properties"])
    assert {"name", "regions", "job", "targets"} <= set(schema["required"])
    assert "$schema" in schema


def test_schema_out_writes_a_file(run_cli, tmp_path):
    target = tmp_path / "instance.schema.json"
    code, out, err = run_cli(["schema", "--out", target])
    assert code == 0, err
    assert "properties" in json.loads(target.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- catalog overrides

NEW_MODULE = """
    1.6ZR-test:
      module: 1.6ZR
      rate_gbps: 1600
      spectral_width_ghz: 200
      reach_km: 80
      power_w: 45
      price_usd: 9000
      confidence: illustrative
      source: "test entry"
"""


def _with_overrides(tmp_path, overrides: str):
    text = DEFAULT_INSTANCE.read_text(encoding="utf-8")
    assert "catalog_overrides" not in text
    path = tmp_path / "override.yaml"
    path.write_text(text + "catalog_overrides:\n" + overrides, encoding="utf-8")
    return path


def test_override_changes_one_field(run_cli, tmp_path):
    path = _with_overrides(tmp_path, "  dci_optics:\n    800ZR:\n      price_usd: 3000\n")
    code, _, err = run_cli(["validate", path])
    assert code == 0, err
    li = load_instance(path)
    optic = li.catalog.dci_optics["800ZR"]
    assert optic.price_usd == 3000
    shipped = cat.load_catalog().dci_optics["800ZR"]
    assert optic.reach_km == shipped.reach_km and optic.source == shipped.source
    assert shipped.price_usd != 3000, "the override must not leak into the shipped catalog"


def test_override_adds_a_new_module(run_cli, tmp_path):
    path = _with_overrides(tmp_path, "  dci_optics:" + NEW_MODULE)
    code, _, err = run_cli(["validate", path])
    assert code == 0, err
    optic = load_instance(path).catalog.dci_optics["1.6ZR-test"]
    assert (optic.rate_gbps, optic.reach_km, optic.price_usd) == (1600, 80, 9000)
    assert "1.6ZR-test" not in cat.load_catalog().dci_optics


def test_override_new_module_missing_fields_is_rejected(run_cli, tmp_path):
    text = "\n".join(line for line in NEW_MODULE.splitlines() if "reach_km" not in line and "price_usd" not in line)
    path = _with_overrides(tmp_path, "  dci_optics:" + text + "\n")
    code, out, err = run_cli(["validate", path])
    assert code == 2
    assert out == "" and "Traceback" not in err
    assert "catalog_overrides.dci_optics.1.6ZR-test.reach_km: required field is missing" in err
    assert "catalog_overrides.dci_optics.1.6ZR-test.price_usd: required field is missing" in err
    lines = path.read_text(encoding="utf-8").splitlines()
    entry_line = next(i for i, line in enumerate(lines, 1) if line.strip() == "1.6ZR-test:")
    assert f"{path}:{entry_line}: catalog_overrides.dci_optics.1.6ZR-test.reach_km" in err


# ---------------------------------------------------------------- catalog gaps of issue 2

def test_1p6t_aoc_and_sr8_are_in_the_catalog():
    """1.6T (8 x 200G lanes) AOC and SR8 next to the DAC, AEC, DR8 and 2xFR4 entries:
    at a 40 m GB300 leaf-to-spine run copper does not reach and, by price per link,
    SR8 ($2,050) < DR8 ($2,400) < AOC ($2,700) < 2xFR4 ($3,000)."""
    catalog = cat.load_catalog()
    for name, medium in (("AOC-1.6T", "optical"), ("SR8-1.6T", "optical")):
        c = catalog.cables[name]
        assert (c.medium, c.port_gbps, c.lane_gbps) == (medium, 1600, 200)
        assert "soft" in c.source
    sr8, aoc = catalog.cables["SR8-1.6T"], catalog.cables["AOC-1.6T"]
    assert sr8.power_w_per_link <= 2 * 25          # 1.6T SR8 module < 25 W (Broadcom Sian2M), two per link
    assert aoc.power_w_per_link == 4 * catalog.cables["AOC-400G"].power_w_per_link
    cls = next(c for c in catalog.scale_up_domains["GB300-NVL72"].connection_classes if c.name == "leaf_to_spine")
    fits = sorted((c.price_usd_per_link, name) for name, c in catalog.cables.items()
                  if (c.port_gbps, c.lane_gbps) == (cls.port_gbps, cls.lane_gbps) and c.reach_m >= 40)
    assert fits == [(2050, "SR8-1.6T"), (2400, "DR8-1.6T"), (2700, "AOC-1.6T"), (3000, "2xFR4-1.6T")]


def test_phoenix_texas_takes_sr8_for_its_1p6t_leaf_to_spine_runs():
    """phoenix-texas leaf-to-spine runs are 40-50 m at 1.6T: SR8-1.6T reaches (50 m) and
    is the cheapest that does, at the same 50 W per link as DR8-1.6T."""
    from optimizer.lp import SolveParameters
    from optimizer.solving import solve_instance
    plan = solve_instance(load_instance(INSTANCE_DIR / "phoenix-texas.yaml"), SolveParameters())
    assert plan["status"] == "optimal"
    rows = [c for c in plan["cables"] if c["connection"] == "leaf_to_spine"]
    assert rows and {c["type"] for c in rows} == {"SR8-1.6T"}
    assert all(c["cost_usd"] == 2050 * c["count"] and c["power_w"] == 50 * c["count"] for c in rows)


def test_trn2_ultra64_has_the_pcb_in_tray_class():
    """DOMAIN.md §3: PCB in tray, DAC in server, AEC between servers, AEC:chip = 1:1."""
    catalog = cat.load_catalog()
    classes = {c.name: c for c in catalog.scale_up_domains["Trn2-Ultra64"].connection_classes}
    assert list(classes)[:3] == ["in_tray", "in_server", "between_servers"]
    assert classes["between_servers"].links_per_accelerator == 1
    tray = classes["in_tray"]
    pcb = catalog.cables["PCB-TRAY-800G-200GL"]
    assert (tray.scope, tray.links_per_accelerator) == ("scale_up", 0.5)      # 2 chips per tray
    assert (pcb.port_gbps, pcb.lane_gbps) == (tray.port_gbps, tray.lane_gbps)
    assert (pcb.price_usd_per_link, pcb.power_w_per_link) == (0, 0) and pcb.reach_m >= tray.default_length_m
    # the trace must not stand in for a cable: no other 800G / 200G-lane class is that short
    for dom in catalog.scale_up_domains.values():
        for c in dom.connection_classes:
            if c.name != "in_tray" and (c.port_gbps, c.lane_gbps) == (pcb.port_gbps, pcb.lane_gbps):
                assert c.default_length_m > pcb.reach_m, (dom, c.name)


@pytest.fixture(scope="module")
def trn2_plan():
    from optimizer.lp import SolveParameters
    from optimizer.solving import solve_instance
    plan = solve_instance(load_instance(INSTANCE_DIR / "trn2-ultra64-region.yaml"), SolveParameters(gap=1e-9))   # the capex below is exact
    assert plan["status"] == "optimal" and plan["verification"]["passed"]
    return plan


def test_trn2_plan_lists_pcb_in_tray_at_no_cost(trn2_plan):
    """Every campus hosting chips has its in-tray links, 0.5 per chip, as PCB at $0 and
    0 W: the class adds nothing to capex or power (436,906,600 USD, as before it existed)."""
    tray = {c["campus"]: c for c in trn2_plan["cables"] if c["connection"] == "in_tray"}
    for p in trn2_plan["placement"]:
        if p["accelerators"]:
            row = tray[p["campus"]]
            assert row["type"] == "PCB-TRAY-800G-200GL" and row["count"] >= p["accelerators"] // 2
    assert all(c["cost_usd"] == 0 and c["power_w"] == 0 for c in tray.values())
    assert trn2_plan["totals"]["capex_usd"] == pytest.approx(436_906_600, abs=1)
    assert trn2_plan["totals"]["capex_usd_by_category"]["cables"] == pytest.approx(
        sum(c["cost_usd"] for c in trn2_plan["cables"]), abs=0.01)


def test_trn2_pcb_counts_are_what_the_chips_need(trn2_plan):
    need = {p["campus"]: p["accelerators"] // 2 for p in trn2_plan["placement"]}
    got = {c["campus"]: c["count"] for c in trn2_plan["cables"] if c["connection"] == "in_tray"}
    assert got == {k: v for k, v in need.items() if v}
