"""Generated instances for the tests and scripts/fuzz.py.

- `national_instance(n_campuses, n_regions, seed)`: a large, deterministic
  GB200-NVL72 build-out (Dense-10T, 5 / 1 Pbit/s targets) that no backend solves
  to optimality in a fraction of a second: the time-limit tests use it.
- `valid_instances()`: a Hypothesis strategy of small random *valid* instances
  (1 to 20 campuses, random regions, fiber routes, power and capex budgets,
  targets, a small model so a solve takes well under a second or two). Some are
  feasible, some are not: the property tests check that each either solves
  with a verified plan or is explained.

Every instance is the dict a YAML file holds; `as_yaml` turns it into text.
"""
from __future__ import annotations

import random

import yaml
from hypothesis import strategies as st

# HGX-A100-8 is left out: the shipped catalog has no 200G cable for its fabric, so
# every A100 instance fails validation (exit 2) until one is added
DOMAINS = {"HGX-H100-8": 8, "HGX-B200-8": 8, "GB200-NVL72": 72}


def as_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------- a large deterministic instance

def national_instance(n_campuses: int = 24, n_regions: int = 4, seed: int = 0) -> dict:
    """n_campuses GB200-NVL72 campuses in n_regions regions ~400-1,300 km apart; each
    region a ring of campuses 10-60 km apart plus chords, regions joined in a ring by
    long-haul routes. About 60k accelerators per campus, power budgets 60-110 % of
    what the racks draw, Dense-10T, 5 Pbit/s per region and 1 Pbit/s between regions."""
    rng = random.Random(f"dcopt-national/{n_campuses}/{n_regions}/{seed}")
    per = [n_campuses // n_regions + (r < n_campuses % n_regions) for r in range(n_regions)]
    regions, routes = [], []
    gateways = []
    for r in range(n_regions):
        names = [f"r{r}c{j}" for j in range(per[r])]
        campuses = []
        for name in names:
            domains = rng.randint(600, 1100)
            power = round(domains * 0.132 * 1.2 * rng.uniform(0.6, 1.1), 1)
            campuses.append({"name": name, "power_budget_mw": power, "scale_up_domain": "GB200-NVL72",
                             "domains": domains})
        regions.append({"name": f"region{r}", "campuses": campuses})
        gateways.append(names[0])
        pairs = {tuple(sorted((names[j], names[(j + 1) % len(names)]))) for j in range(len(names))
                 if len(names) > 1 and names[j] != names[(j + 1) % len(names)]}
        pairs |= {tuple(sorted((names[j], names[(j + 2) % len(names)]))) for j in range(0, len(names), 2)
                  if len(names) > 3}
        for a, b in sorted(pairs):
            routes.append({"a": a, "b": b, "distance_km": round(rng.uniform(10, 60), 1),
                           "fiber_pairs_available": rng.choice([96, 144, 192])})
    for r in range(n_regions if n_regions > 2 else n_regions - 1):
        a, b = gateways[r], gateways[(r + 1) % n_regions]
        routes.append({"a": a, "b": b, "distance_km": round(rng.uniform(400, 1300), 1),
                       "fiber_pairs_available": 96})
    return {
        "name": f"national-{n_campuses}",
        "objective": "max-throughput",
        "pue": 1.2,
        "regions": regions,
        "routes": routes,
        "job": {"model": "Dense-10T",
                "efficiency_loss_bound": {"campus": 0.05, "intra_region": 0.05, "inter_region": 0.10}},
        "targets": {"intra_region_pbps": 5, "inter_region_pbps": 1 if n_regions > 1 else 0},
    }


# ---------------------------------------------------------------- small random valid instances

# small models (4-8 layers, h 512-2048): the split table and the MILP stay small
_models = st.builds(
    lambda layers, hidden, heads, batch: {"layers": layers, "hidden": hidden, "heads": heads, "seq_len": 1024,
                                          "vocab": 32000, "global_batch_sequences": batch},
    st.sampled_from([2, 4, 6, 8]), st.sampled_from([512, 1024, 2048]), st.sampled_from([4, 8, 16]),
    st.sampled_from([4, 8, 16, 32]))

# a route allows all modules (up to 18 module x band options) now and then; a short
# list keeps most MILPs small
_MODULE_SETS = [None, ["400ZR", "800ZR"], ["800ZR"], ["OpenZR+-400G", "OpenZR+-200G", "OpenZR+-100G"],
                ["800ZR+-200G", "OpenZR+-100G"], ["400G-LR4", "400ZR"], ["800ZR", "800ZR+-400G"]]


@st.composite
def valid_instances(draw, max_campuses: int = 20) -> dict:
    """A random valid instance with 1..max_campuses campuses (see the module doc)."""
    n = draw(st.integers(1, max_campuses), label="campuses")
    n_regions = draw(st.integers(1, min(n, 4)), label="regions")
    domain = draw(st.sampled_from(sorted(DOMAINS)), label="domain")
    size = DOMAINS[domain]
    rng = random.Random(draw(st.integers(0, 2**32 - 1), label="seed"))
    # campuses dealt to regions, every region gets one
    owner = list(range(n_regions)) + [rng.randrange(n_regions) for _ in range(n - n_regions)]
    rng.shuffle(owner)
    per_region: list[list[str]] = [[] for _ in range(n_regions)]
    regions = []
    for r in range(n_regions):
        regions.append({"name": f"reg{r}", "campuses": []})
    acc_power_mw = {"HGX-H100-8": 10.2, "HGX-B200-8": 14.3, "GB200-NVL72": 132.0}[domain] / 1000
    for j in range(n):
        r = owner[j]
        name = f"c{j}"
        domains = rng.choice([1, 2, 4, 8, 16]) if size == 8 else rng.choice([1, 2])
        # from far below to well above what the site draws (x PUE 1.2)
        power = round(domains * acc_power_mw * 1.2 * rng.choice([0.3, 0.8, 1.0, 1.5, 3.0]), 4)
        campus = {"name": name, "power_budget_mw": max(power, 0.0001), "scale_up_domain": domain, "domains": domains}
        regions[r]["campuses"].append(campus)
        per_region[r].append(name)
    routes = []
    for r, names in enumerate(per_region):
        # a random spanning tree plus a few chords inside the region
        for k in range(1, len(names)):
            a, b = names[k], names[rng.randrange(k)]
            routes.append(_route(rng, a, b, rng.uniform(2, 80)))
        for _ in range(rng.randint(0, max(0, len(names) - 2))):
            a, b = rng.sample(names, 2)
            if not any({x["a"], x["b"]} == {a, b} for x in routes):
                routes.append(_route(rng, a, b, rng.uniform(2, 100)))
    # regions joined in a chain (sometimes a ring) of long-haul routes
    order = list(range(n_regions))
    rng.shuffle(order)
    links = list(zip(order, order[1:])) + ([(order[-1], order[0])] if n_regions > 2 and rng.random() < 0.5 else [])
    for x, y in links:
        a, b = rng.choice(per_region[x]), rng.choice(per_region[y])
        routes.append(_route(rng, a, b, rng.uniform(150, 1900)))
    intra = draw(st.sampled_from([0, 0.001, 0.01, 0.1, 1.0, 5.0]), label="intra_region_pbps")
    inter = draw(st.sampled_from([0, 0.001, 0.01, 0.1, 1.0]), label="inter_region_pbps") if n_regions > 1 else 0
    objective = draw(st.sampled_from(["max-throughput", "min-cost"]), label="objective")
    job = {"model": draw(_models, label="model"),
           "efficiency_loss_bound": {"campus": 0.05, "intra_region": 0.05, "inter_region": 0.10},
           "micro_batch_sizes": [1, 2], "interleave_options": [1], "recompute_modes": ["selective"],
           "max_candidate_splits": draw(st.integers(2, 6), label="max_candidate_splits")}
    total = sum(c["domains"] * size for reg in regions for c in reg["campuses"])
    if objective == "min-cost":
        job["min_accelerators"] = draw(st.sampled_from([1, size, max(1, total // 2), total, 2 * total]),
                                       label="min_accelerators")
    data = {"name": f"fuzz-{n}c-{n_regions}r", "objective": objective, "pue": 1.2, "regions": regions,
            "routes": routes, "job": job,
            "targets": {"intra_region_pbps": intra, "inter_region_pbps": inter},
            "network": {"k_paths": draw(st.integers(1, 3), label="k_paths"),
                        "allow_split_pipelines": draw(st.booleans(), label="split_pipelines")}}
    capex = draw(st.sampled_from([None, 1e4, 1e6, 1e8, 1e10]), label="capex_usd")
    if capex is not None:
        data["budgets"] = {"capex_usd": capex}
    return data


_REACH: dict[str, float] = {}


def _reach() -> dict[str, float]:
    if not _REACH:
        from optimizer.catalog import load_catalog
        _REACH.update({m: o.reach_km for m, o in load_catalog().dci_optics.items()})
    return _REACH


def _route(rng: random.Random, a: str, b: str, km: float) -> dict:
    route = {"a": a, "b": b, "distance_km": round(km, 1), "fiber_pairs_available": rng.choice([1, 2, 8, 48, 192])}
    modules = rng.choice(_MODULE_SETS)
    # only a module list that reaches: a route no allowed module reaches is a bad input
    if modules is not None and any(_reach()[m] >= km for m in modules):
        route["modules"] = modules
    if rng.random() < 0.2:
        route["fiber"] = "existing"
    if rng.random() < 0.2:
        route["band_plans"] = [rng.choice(["C", "C+L"])]
    return route
