"""Traffic formulas of the performance model, checked by hand (bytes per optimizer step)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from optimizer import performance as perf

# GPT-3 2.7B (Brown et al. 2020, Table 2.1: 32 layers, d_model 2560, 32 heads), the "GPT 3B" of the
# seed fact (DOMAIN.md §2), with Megatron's 51,200 vocabulary and s = 2048.
GPT3B = SimpleNamespace(layers=32, hidden=2560, heads=32, seq_len=2048, vocab=51200, global_batch_sequences=384)
BETA = 2
# 32 GPUs = TP 4 x PP 2 x DP 4, micro-batch 12 -> m = 384 / (12 * 4) = 8 micro-batches per pipeline
T, P, D, MB = 4, 2, 4, 12


def test_gpt3b_parameter_count_by_hand():
    # 12 L h^2 + 13 h L + (V + s) h
    n = 12 * 32 * 2560**2 + 13 * 2560 * 32 + (51200 + 2048) * 2560
    assert n == 2_653_962_240
    assert perf.parameter_count(GPT3B) == pytest.approx(n, rel=1e-12)


def test_tp_formulas_by_hand():
    buf = 12 * 2048 * 2560 * 2                      # b s h beta
    assert buf == 125_829_120                       # the seed's "125 MB" message
    assert perf.tp_allreduce_buffer_bytes(GPT3B, MB, BETA) == buf
    # 4 all-reduces per layer (2 fwd + 2 bwd) x 16 layers per stage x 8 micro-batches
    assert perf.tp_collectives_per_step(GPT3B, P, D, MB) == 512
    assert perf.tp_collectives_per_step(GPT3B, P, D, MB, recompute="full") == 6 * 16 * 8
    assert perf.tp_collectives_per_step(GPT3B, P, D, MB, recompute="selective") == 512
    assert perf.tp_volume_bytes_per_step(GPT3B, P, D, MB, BETA) == 512 * buf == 64_424_509_440
    # ring: each rank sends 2 (t-1)/t = 1.5 buffers per all-reduce
    assert perf.tp_bytes_per_step(GPT3B, T, P, D, MB, BETA) == pytest.approx(1.5 * 512 * buf)
    assert perf.tp_bytes_per_step(GPT3B, 1, P, D, MB, BETA) == 0.0
    # a stage of ceil(L/p) layers when p does not divide L: 32 layers over 3 stages -> 11
    assert perf.tp_collectives_per_step(GPT3B, 3, D, MB) == 4 * 11 * 8


def test_pp_formulas_by_hand():
    # whole pipeline set: 2 B s h beta per boundary and step, whatever m
    assert perf.pp_boundary_bytes_per_step(GPT3B, BETA) == 2 * 384 * 2048 * 2560 * 2 == 8_053_063_680
    # one pipeline: 2 (B/d) s h beta = 16 messages of b s h beta (8 forward, 8 backward)
    one = perf.pp_bytes_per_pipeline_boundary(GPT3B, D, BETA)
    assert one == 2 * 96 * 2048 * 2560 * 2 == 2_013_265_920
    assert one == 16 * perf.tp_allreduce_buffer_bytes(GPT3B, MB, BETA)
    assert D * one == perf.pp_boundary_bytes_per_step(GPT3B, BETA)


def test_dp_formula_by_hand():
    n = perf.parameter_count(GPT3B)
    # 2 (d-1)/d * N/(t p) * beta = 1.5 * 2,653,962,240 / 8 * 2
    assert perf.dp_allreduce_bytes_per_rank(n, T, P, D, BETA) == pytest.approx(995_235_840)
    assert perf.dp_allreduce_bytes_per_rank(n, T, P, 1, BETA) == 0.0
    assert perf.ring_allreduce_bytes_per_rank(1000.0, 2) == 1000.0
    assert perf.ring_allreduce_bytes_per_rank(1000.0, 8) == 1750.0


def test_seed_fact_tp_dwarfs_pp_and_dp():
    """DOMAIN.md §2 seed: GPT 3B on 32 GPUs, micro-batch 12: TP ~85 GB >> PP ~1 GB >~ DP ~0.74 GB.

    Reproduced with TP 4 x PP 2 x DP 4 (m = 8): TP 64.4 GB of all-reduce buffers per rank (96.6 GB sent on
    the ring), PP 2.01 GB per pipeline boundary (1.0 GB each way, 16 x 125.8 MB), DP 0.995 GB per rank.
    """
    tp_volume = perf.tp_volume_bytes_per_step(GPT3B, P, D, MB, BETA)
    tp_sent = perf.tp_bytes_per_step(GPT3B, T, P, D, MB, BETA)
    pp = perf.pp_bytes_per_pipeline_boundary(GPT3B, D, BETA)
    dp = perf.dp_allreduce_bytes_per_rank(perf.parameter_count(GPT3B), T, P, D, BETA)
    print(f"\nGPT-3B on 32 GPUs: TP {tp_volume / 1e9:.1f} GB volume ({tp_sent / 1e9:.1f} GB sent), "
          f"PP {pp / 1e9:.2f} GB per boundary, DP {dp / 1e9:.3f} GB per rank")
    # same order of magnitude as the seed's figures
    assert 30e9 < tp_volume < 200e9 and 30e9 < tp_sent < 200e9        # seed ~85 GB
    assert 0.5e9 < pp / 2 < 2e9                                        # seed ~1 GB each way
    assert 0.3e9 < dp < 2e9                                            # seed 0.74 GB
    # TP one to two orders of magnitude above PP and DP
    for other in (pp, dp):
        assert 10 <= tp_sent / other <= 1000
        assert 10 <= tp_volume / other <= 1000
    assert 0.5 <= pp / dp <= 5


@pytest.mark.parametrize("n_sites, expected", [(1, 0.0), (2, 2e9), (4, 3e9), (8, 3.5e9)])
def test_hierarchical_dp_by_hand(n_sites, expected):
    # 2 (n-1)/n N beta with N = 1e9, beta = 2
    assert perf.hierarchical_dp_bytes_per_site(1e9, 2, n_sites) == pytest.approx(expected)


@pytest.mark.parametrize("n_sites", [2, 4])
@pytest.mark.parametrize("gpus_per_site", [1, 8, 72, 4096])
def test_hierarchical_dp_does_not_depend_on_site_size(n_sites, gpus_per_site):
    """Reduce-scatter in site leaves each of k GPUs a shard N/k; the cross-site ring all-reduce of that shard
    sends 2 (n-1)/n N/k per GPU, so k GPUs send 2 (n-1)/n N per site whatever k is."""
    params, beta = 3e11, 2
    per_gpu = perf.ring_allreduce_bytes_per_rank(params / gpus_per_site * beta, n_sites)
    assert gpus_per_site * per_gpu == pytest.approx(perf.hierarchical_dp_bytes_per_site(params, beta, n_sites))


def test_bandwidth_time_and_efficiency():
    assert perf.dci_required_gbps(1.25e9, 1.0) == pytest.approx(10.0)
    assert perf.dci_required_gbps(2e12, 4.0) == pytest.approx(4000.0)
    assert perf.dci_required_gbps(0.0, 0.0) == 0.0
    assert math.isinf(perf.dci_required_gbps(1.0, 0.0))
    assert perf.transfer_time_s(1.25e9, 10.0) == pytest.approx(1.0)
    assert perf.step_time_with_dci(10.0, 0.5) == 10.5
    assert perf.efficiency(10.0, 0.5) == pytest.approx(10 / 10.5)
    assert perf.efficiency(10.0, 0.0) == 1.0
    # a phase given share x T loses share/(1 + share) of the throughput: within the bound `share`
    for share in (0.05, 0.10):
        assert 1 - perf.efficiency(20.0, share * 20.0) == pytest.approx(share / (1 + share))
        assert 1 - perf.efficiency(20.0, share * 20.0) < share


def test_dp_pair_formulas_by_hand():
    """N = 1e12 bf16 parameters, 20 s step, 5 % of it for the phase (1 s)."""
    # 2 sites: each sends the other 2 N beta / 2 = 2e12 B; in 1 s that is 16,000 Gb/s
    assert perf.dp_pair_bytes_per_step(1e12, 2, 2) == 2e12
    assert perf.dp_pair_gbps(1e12, 2, 2, 0.05, 20.0) == pytest.approx(2e12 * 8 / 1.0 / 1e9) == 16_000
    # 4 sites: 1e12 B to each of 3 peers = the site's 2 (4-1)/4 N beta = 3e12 B
    assert perf.dp_pair_bytes_per_step(1e12, 2, 4) == 1e12
    assert 3 * perf.dp_pair_bytes_per_step(1e12, 2, 4) == perf.hierarchical_dp_bytes_per_site(1e12, 2, 4) == 3e12
    assert perf.dp_pair_gbps(1e12, 2, 4, 0.05, 20.0) == pytest.approx(8_000)
    assert perf.dp_pair_bytes_per_step(1e12, 2, 1) == 0.0


def test_latency():
    assert perf.one_way_latency_s(1000, 4.9) == pytest.approx(4.9e-3)
    assert perf.one_way_latency_s(10, 4.9) == pytest.approx(49e-6)
    assert perf.pp_fill_drain_latency_s(100, 4.9) == pytest.approx(0.98e-3)


# ---------------------------------------------------------------- hierarchical DP, simulated

def _ring_allreduce(vectors):
    """Ring all-reduce (reduce-scatter then all-gather, n-1 steps each) of n equal-length vectors;
    returns every participant's result and the elements each one sent."""
    n = len(vectors)
    data = [v.copy() for v in vectors]
    chunks = np.array_split(np.arange(len(data[0])), n)
    sent = [0] * n
    for step in range(n - 1):               # i sends chunk i-step to i+1, which adds it
        msgs = [((i + 1) % n, chunks[(i - step) % n], data[i][chunks[(i - step) % n]].copy()) for i in range(n)]
        for i, (dst, c, payload) in enumerate(msgs):
            data[dst][c] += payload
            sent[i] += len(c)
    for step in range(n - 1):               # i holds the sum of chunk i+1; pass the sums on
        msgs = [((i + 1) % n, chunks[(i + 1 - step) % n], data[i][chunks[(i + 1 - step) % n]].copy())
                for i in range(n)]
        for i, (dst, c, payload) in enumerate(msgs):
            data[dst][c] = payload
            sent[i] += len(c)
    return data, sent


def _hierarchical_dp_dci_elements(gpus_per_site, n_elements, seed=0):
    """Hierarchical DP: reduce-scatter in each site (GPU j of a site owns the j-th shard of the site's
    sum), a ring all-reduce across the sites of every byte range between the sites' shard boundaries
    (the owners of that range talk), all-gather in site. Returns the elements each site sent over the
    DCI and whether every GPU ends with the global sum."""
    rng = np.random.default_rng(seed)
    grads = [rng.integers(-1000, 1000, size=(k, n_elements)).astype(np.int64) for k in gpus_per_site]
    total = sum(g.sum(axis=0) for g in grads)
    site_sums = [g.sum(axis=0) for g in grads]                     # after the in-site reduce-scatter
    cuts = sorted({int(c) for k in gpus_per_site for c in np.linspace(0, n_elements, k + 1)})
    dci_sent = [0] * len(gpus_per_site)
    reduced = [np.zeros(n_elements, dtype=np.int64) for _ in gpus_per_site]
    for lo, hi in zip(cuts, cuts[1:]):
        results, sent = _ring_allreduce([s[lo:hi] for s in site_sums])
        for i, (res, n) in enumerate(zip(results, sent)):
            reduced[i][lo:hi] = res
            dci_sent[i] += n
    return dci_sent, all(np.array_equal(r, total) for r in reduced)


@pytest.mark.parametrize("gpus_per_site", [(1, 1), (8, 72), (1, 2, 3, 4), (72, 72, 8, 1)])
def test_hierarchical_dp_dci_bytes_by_simulation(gpus_per_site):
    """Every site sends 2(D-1)/D N beta over the DCI, whatever its size (sizes differ here)."""
    n_elements = 480                    # shard boundaries of 1..4 and 8, 72 GPUs give ranges divisible by D
    if 72 in gpus_per_site:
        n_elements = 72 * 8 * 4
    sites = len(gpus_per_site)
    sent, correct = _hierarchical_dp_dci_elements(gpus_per_site, n_elements)
    assert correct
    expected = perf.hierarchical_dp_bytes_per_site(n_elements, BETA, sites)
    assert expected == 2 * (sites - 1) / sites * n_elements * BETA
    assert [s * BETA for s in sent] == [pytest.approx(expected)] * sites


# ---------------------------------------------------------------- traffic of a placement

N12 = 1e12          # parameters
STEP = 20.0         # single-site step, s


def _two_regions():
    region_of = {"a1": "r1", "a2": "r1", "b1": "r2", "b2": "r2"}
    return dict(region_of=region_of, region_scope={"r1": "intra_region", "r2": "campus"},
                intra_share={"r1": 0.05, "r2": 0.05}, inter_share=0.05)


def test_placement_traffic_two_sites_by_hand():
    """Two campuses of one region, 5 % of a 20 s step: 2 N beta / 2 = 2e12 B each way in 1 s."""
    tr = perf.placement_traffic(N12, BETA, STEP, 5e9, {"a1": 3, "a2": 1}, region_of={"a1": "r1", "a2": "r1"},
                                region_scope={"r1": "intra_region"}, intra_share={"r1": 0.05}, inter_share=0.05)
    assert tr["active_campuses"] == {"r1": ["a1", "a2"]}
    (ph,) = tr["dp_phases"]
    assert (ph["link_class"], ph["sites"], ph["time_budget_s"]) == ("intra_region", ["a1", "a2"], pytest.approx(1.0))
    assert ph["bytes_per_pair"] == 2e12 and ph["bytes_per_site"] == 2e12
    assert ph["gbps_per_pair"] == pytest.approx(16_000) and ph["gbps_per_site"] == pytest.approx(16_000)
    c = tr["link_classes"]
    assert c["intra_region"]["pairs"] == 1 and c["intra_region"]["dp_gbps"] == pytest.approx(16_000)
    assert c["campus"]["dp_gbps"] == c["inter_region"]["dp_gbps"] == 0.0
    assert tr["pp_links"] == [] and c["intra_region"]["pp_gbps"] == 0.0
    # 3 replicas against 1 do not change it: the bytes do not depend on site size
    tr_even = perf.placement_traffic(N12, BETA, STEP, 5e9, {"a1": 2, "a2": 2}, region_of={"a1": "r1", "a2": "r1"},
                                     region_scope={"r1": "intra_region"}, intra_share={"r1": 0.05}, inter_share=0.05)
    assert tr_even["link_classes"] == tr["link_classes"]
    # one active site: no DCI traffic
    tr_one = perf.placement_traffic(N12, BETA, STEP, 5e9, {"a1": 4, "a2": 0}, region_of={"a1": "r1", "a2": "r1"},
                                    region_scope={"r1": "intra_region"}, intra_share={"r1": 0.05}, inter_share=0.05)
    assert tr_one["dp_phases"] == [] and all(v["dp_bytes_per_step"] == 0 for v in tr_one["link_classes"].values())


def test_placement_traffic_four_sites_one_region_by_hand():
    """Four campuses: 2 N beta / 4 = 1e12 B to each peer; 6 pairs; 1 s budget -> 8,000 Gb/s per pair."""
    region_of = {f"c{i}": "r" for i in range(4)}
    tr = perf.placement_traffic(N12, BETA, STEP, 5e9, {f"c{i}": 1 for i in range(4)}, region_of=region_of,
                                region_scope={"r": "campus"}, intra_share={"r": 0.05}, inter_share=0.05)
    (ph,) = tr["dp_phases"]
    assert ph["bytes_per_pair"] == 1e12 and ph["bytes_per_site"] == 3e12
    assert ph["gbps_per_pair"] == pytest.approx(8_000) and ph["gbps_per_site"] == pytest.approx(24_000)
    c = tr["link_classes"]["campus"]
    assert c["pairs"] == 6
    assert c["dp_bytes_per_step"] == pytest.approx(6e12) and c["dp_gbps"] == pytest.approx(48_000)


def test_placement_traffic_two_regions_and_split_pipelines_by_hand():
    """a1, a2 (r1, intra-region) and b1, b2 (r2, building links), plus 3 pipelines split over a1-a2.

    Each region's phase has 2 sites: 2e12 B each way in 5 % of 20 s = 16,000 Gb/s; the inter-region phase
    has 2 regions and the 5 % left of the 10 % bound: 16,000 Gb/s. Split pipelines: 3 x 5e9 B (both
    directions) over the 20 s step = 3 x 2 Gb/s.
    """
    tr = perf.placement_traffic(N12, BETA, STEP, 5e9, {"a1": 1, "a2": 0, "b1": 2, "b2": 1},
                                split_pipelines={("a1", "a2"): 3}, split_scope={("a1", "a2"): "intra_region"},
                                **_two_regions())
    assert tr["active_campuses"] == {"r1": ["a1", "a2"], "r2": ["b1", "b2"]}    # a2 holds split halves only
    assert [(p["link_class"], p["group"]) for p in tr["dp_phases"]] == [
        ("intra_region", "r1"), ("campus", "r2"), ("inter_region", "regions")]
    assert all(p["gbps_per_pair"] == pytest.approx(16_000) for p in tr["dp_phases"])
    (pp,) = tr["pp_links"]
    # 15 GB per step over both directions: 7.5 GB each way over 20 s
    assert pp["bytes_per_step"] == 15e9 and pp["gbps"] == pytest.approx(3 * 5e9 / 2 * 8 / 20 / 1e9) == 3.0
    c = tr["link_classes"]
    assert {k: (v["pairs"], v["split_pipelines"]) for k, v in c.items()} == {
        "campus": (1, 0), "intra_region": (1, 3), "inter_region": (1, 0)}
    assert c["intra_region"]["pp_gbps"] == pytest.approx(3.0) and c["campus"]["pp_gbps"] == 0.0
    # the inter-region phase of 2 regions moves what a 2-campus phase moves
    assert c["inter_region"]["dp_bytes_per_step"] == c["campus"]["dp_bytes_per_step"] == 2e12


def test_placement_traffic_four_regions_by_hand():
    """Four regions of one campus each: no intra-region phase; 1e12 B each way per region pair."""
    region_of = {f"c{i}": f"r{i}" for i in range(4)}
    tr = perf.placement_traffic(N12, BETA, STEP, 5e9, {f"c{i}": 2 for i in range(4)}, region_of=region_of,
                                region_scope={f"r{i}": "intra_region" for i in range(4)},
                                intra_share={f"r{i}": 0.05 for i in range(4)}, inter_share=0.05)
    (ph,) = tr["dp_phases"]
    assert ph["link_class"] == "inter_region" and ph["sites"] == ["r0", "r1", "r2", "r3"]
    assert tr["link_classes"]["inter_region"]["pairs"] == 6
    assert tr["link_classes"]["inter_region"]["dp_gbps"] == pytest.approx(6 * 8_000)


# ---------------------------------------------------------------- the planner's coefficients

H100_CAMPUS = {"power_budget_mw": 2, "scale_up_domain": "HGX-H100-8", "domains": 16}
TWO_REGION_TINY = {
    "name": "tiny-two-regions", "objective": "max-throughput", "pue": 1.2,
    "regions": [
        {"name": "r1", "campuses": [{"name": "a", **H100_CAMPUS},
                                    {"name": "b", **H100_CAMPUS}]},
        {"name": "r2", "campuses": [{"name": "c", **H100_CAMPUS},
                                    {"name": "d", **H100_CAMPUS}]}],
    "routes": [{"a": "a", "b": "b", "distance_km": 40, "fiber_pairs_available": 16},
               {"a": "c", "b": "d", "distance_km": 5, "fiber_pairs_available": 16},
               {"a": "a", "b": "c", "distance_km": 500, "fiber_pairs_available": 16}],
    "job": {"model": {"layers": 4, "hidden": 1024, "heads": 8, "seq_len": 1024, "vocab": 32000,
                      "global_batch_sequences": 8},
            "efficiency_loss_bound": {"campus": 0.04, "intra_region": 0.05, "inter_region": 0.12}},
    "targets": {"intra_region_pbps": 0, "inter_region_pbps": 0},
}


def test_planner_dp_coefficients_match_perf(tmp_path):
    """planner.build_model's k (Gb/s per pair per step-per-hour with 1 active site, divided by the
    count j) times phi = 3600/T is perf.dp_pair_gbps with the shares of planner.loss_budgets:
    r1 (a 40 km route) 5 %, r2 (a 5 km building link) 4 %, inter-region 12 % - 5 % = 7 %."""
    import yaml

    from optimizer import planner
    from optimizer.instance import load_instance

    path = tmp_path / "tiny-two-regions.yaml"
    path.write_text(yaml.safe_dump(TWO_REGION_TINY))
    li = load_instance(path)
    intra, inter = planner.loss_budgets(li)
    assert intra == {"r1": 0.05, "r2": 0.04} and inter == pytest.approx(0.07)
    cands, _ = planner.select_candidates(li)
    pm = planner.build_model(li, candidates=cands[:1])
    n = perf.parameter_count(perf.workload_from_instance(li))
    assert n == 4 * (12 * 1024**2 + 13 * 1024) + (32000 + 1024) * 1024
    k_intra, k_inter = pm.facts["k_intra_gbps_s"], pm.facts["k_inter_gbps_s"]
    assert k_intra["r1"] == pytest.approx(16 * n * 2 / (0.05 * 1e9 * 3600))
    assert k_intra["r2"] == pytest.approx(16 * n * 2 / (0.04 * 1e9 * 3600))
    assert k_inter == pytest.approx(16 * n * 2 / (0.07 * 1e9 * 3600))
    T = cands[0].step_time_s
    phi = 3600 / T
    for j in (2, 4):
        assert k_intra["r1"] / j * phi == pytest.approx(perf.dp_pair_gbps(n, 2, j, 0.05, T))
        assert k_intra["r2"] / j * phi == pytest.approx(perf.dp_pair_gbps(n, 2, j, 0.04, T))
        assert k_inter / j * phi == pytest.approx(perf.dp_pair_gbps(n, 2, j, 0.07, T))
        # 2 N beta 8 / (j share T) bits/s
        assert perf.dp_pair_gbps(n, 2, j, 0.07, T) == pytest.approx(2 * n * 2 * 8 / (j * 0.07 * T) / 1e9)


def test_solved_plan_routes_the_perf_dp_demand(tmp_path):
    """The tiny two-campus case forced onto both campuses (256 accelerators, min cost): the DP flow the
    solved plan routes between them is perf.dp_pair_gbps for 2 sites at 5 % of the plan's single-site step."""
    import yaml
    from conftest import TINY_INSTANCE

    from optimizer import solve
    from optimizer.instance import load_instance

    raw = yaml.safe_load(TINY_INSTANCE.read_text())
    raw["objective"] = "min-cost"
    raw["job"]["min_accelerators"] = 256
    path = tmp_path / "tiny-both-campuses.yaml"
    path.write_text(yaml.safe_dump(raw))
    li = load_instance(path)
    plan = solve(li)
    assert plan["status"] == "optimal"
    assert {p["campus"]: p["accelerators"] for p in plan["placement"]} == {"a": 128, "b": 128}
    (flow,) = [f for f in plan["flows"] if f["kind"] == "dp_intra_region"]
    n = perf.parameter_count(perf.workload_from_instance(li))
    T = plan["performance"]["step_time_single_site_s"]
    # 2 N beta / 2 bytes each way in 5 % of T
    assert flow["gbps"] == pytest.approx(n * 2 * 8 / (0.05 * T) / 1e9, rel=1e-6)
    assert flow["gbps"] == pytest.approx(perf.dp_pair_gbps(n, 2, 2, 0.05, T), rel=1e-6)
