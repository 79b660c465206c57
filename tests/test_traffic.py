"""Traffic formulas of the performance model, checked by hand (bytes per optimizer step)."""
from __future__ import annotations

import math
from types import SimpleNamespace

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
    for bound in (0.05, 0.10):
        e = perf.exposed_budget_s(20.0, bound)
        assert perf.efficiency(20.0, e) == pytest.approx(1 - bound)
    # bandwidth for a 5 % bound on a 20 s step, 2 sites, N = 1e12 bf16: 2e12 B in 20*0.05/0.95 s
    need = perf.dci_required_gbps(perf.hierarchical_dp_bytes_per_site(1e12, 2, 2), perf.exposed_budget_s(20.0, 0.05))
    assert need == pytest.approx(2e12 * 8 / (20 * 0.05 / 0.95) / 1e9)


def test_latency():
    assert perf.one_way_latency_s(1000, 4.9) == pytest.approx(4.9e-3)
    assert perf.one_way_latency_s(10, 4.9) == pytest.approx(49e-6)
    assert perf.pp_fill_drain_latency_s(100, 4.9) == pytest.approx(0.98e-3)


def test_traffic_is_linear_in_placement_counts():
    """x pipelines cut by a link carry x times one pipeline's PP bytes; a site's DP bytes only depend on
    the number of active sites (the one-hot the MILP uses), so each n gives a constant."""
    one = perf.pp_bytes_per_pipeline_boundary(GPT3B, D, BETA)
    for x in range(5):
        assert x * one == pytest.approx(sum(one for _ in range(x)))
    n = perf.parameter_count(GPT3B)
    table = {k: perf.hierarchical_dp_bytes_per_site(n, BETA, k) for k in range(1, 9)}
    assert table[1] == 0 and all(table[k] < table[k + 1] for k in range(1, 8))
    assert all(table[k] < 2 * n * BETA for k in table)
