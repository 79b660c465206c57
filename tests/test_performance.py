"""The performance model: parameter and FLOP formulas, memory, step time, split enumeration, `dcopt evaluate`."""
from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pytest
from conftest import DEFAULT_INSTANCE, INSTANCES

from optimizer import catalog as cat
from optimizer import performance as perf
from optimizer.instance import load_instance


@pytest.fixture(scope="module")
def catalog():
    return cat.load_catalog()


def workload(catalog, preset: str, domain: str, **kw) -> perf.Workload:
    pr = catalog.llm_presets[preset]
    dom = catalog.scale_up_domains[domain]
    args = dict(layers=pr.layers, hidden=pr.hidden, heads=pr.heads, kv_heads=pr.kv_heads or pr.heads,
                ffn_hidden=pr.ffn_hidden or 4 * pr.hidden, mlp=pr.mlp, seq_len=pr.seq_len, vocab=pr.vocab,
                global_batch_sequences=pr.global_batch_sequences, bytes_per_element=2,
                accelerator=catalog.accelerators[dom.accelerator], domain=dom, domain_name=domain)
    args.update(kw)
    return perf.Workload(**args)


# ---------------------------------------------------------------- parameters and FLOPs

def test_parameter_count_gpt_formula(catalog):
    """Narayanan et al. 2021: P = 12 L h^2 (1 + 13/(12h) + (V + s)/(12 L h))."""
    for name in ("GPT-1.7B", "GPT-3-175B", "GPT-1T", "Dense-10T"):
        pr = catalog.llm_presets[name]
        L, h, V, s = pr.layers, pr.hidden, pr.vocab, pr.seq_len
        assert perf.parameter_count(pr) == pytest.approx(12 * L * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * L * h)))


def test_parameter_count_gqa_swiglu_by_hand(catalog):
    pr = catalog.llm_presets["Llama-3-405B"]
    h, f, L, V = 16384, 53248, 126, 128256
    attention = h * h * 2 + 2 * h * (8 * 128)          # Q and output h^2; K and V with 8 KV heads of 128
    mlp = 3 * h * f                                     # gate, up, down
    expected = L * (attention + mlp + 2 * h) + V * h    # two RMSNorms per layer, tied embedding, RoPE
    assert perf.parameter_count(pr) == pytest.approx(expected)
    assert perf.parameter_count(pr) / 1e9 == pytest.approx(405, rel=0.03)
    gelu = pr.model_copy(update={"mlp": "gelu"})
    # GPT style: 2 MLP matrices, biases (QKV h + 2h/16, output h, MLP f + h) and two LayerNorms (4h),
    # learned positions s h
    biases_norms = h + 2 * h / 16 + h + f + h + 4 * h
    assert perf.parameter_count(gelu) == pytest.approx(L * (attention + 2 * h * f + biases_norms) + V * h + 8192 * h)


def test_flops_match_megatron_formulas(catalog):
    pr = catalog.llm_presets["GPT-3-175B"]
    B, s, L, h, V = pr.global_batch_sequences, pr.seq_len, pr.layers, pr.hidden, pr.vocab
    full = 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))
    none = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h))
    assert perf.model_flops_per_step(pr, "full") == pytest.approx(full, rel=1e-12)
    assert perf.model_flops_per_step(pr, "none") == pytest.approx(none, rel=1e-12)
    # selective recompute adds one forward of the attention scores: 4 B s^2 h L
    assert perf.model_flops_per_step(pr, "selective") == pytest.approx(none + 4 * B * s * s * h * L, rel=1e-12)
    # ~6 N B s without recompute (DOMAIN.md §2), ~8 N B s with full recompute
    n = perf.parameter_count(pr)
    assert none / (6 * n * B * s) == pytest.approx(1, abs=0.2)
    assert full / (8 * n * B * s) == pytest.approx(1, abs=0.2)


# ---------------------------------------------------------------- memory

def test_memory_of_a_known_configuration(catalog):
    """GPT-3 175B, TP 8 x PP 8 x DP 4, micro-batch 1, sequence parallel, selective recompute, by hand.

    Stage: 12 layers of 12h^2 + 13h plus the embedding (V + s) h = 22,399,500,288 parameters, / 8 ranks.
    Activations (Korthikanti et al. 2022): 34 s b h / t per layer, 8 micro-batches in flight on the
    first stage (min(p, m), m = 1536 / 4 = 384) -> 34 s b h L / t for the whole first stage.
    """
    w = workload(catalog, "GPT-3-175B", "HGX-A100-8")
    ev = perf.evaluate_split(w, 8, 8, 4, micro_batch=1, interleave=1, recompute="selective")
    h = 12288
    stage_params = 12 * (12 * h * h + 13 * h) + (51200 + 2048) * h
    assert stage_params == 22_399_500_288
    per_rank = stage_params / 8
    assert ev["weights_gb"] == pytest.approx(per_rank * 2 / 1e9)            # 5.600 GB
    assert ev["grads_gb"] == pytest.approx(per_rank * 4 / 1e9)              # 11.200 GB
    assert ev["optimizer_gb"] == pytest.approx(per_rank * 12 / 1e9)         # 33.599 GB
    act = 34 * 2048 * 1 * h / 8 * 8 * 12                                    # 10.268 GB
    assert ev["activations_gb"] == pytest.approx(act / 1e9)
    assert ev["memory_gb"] == pytest.approx((per_rank * 18 + act) / 1e9)     # 60.667 GB
    assert ev["capacity_gb"] == 80 and ev["reserve_gb"] == pytest.approx(8.0)
    assert ev["feasible"] and ev["reason"] == ""
    # with the states sharded over DP 4: 6 + 12/4 bytes per parameter (Megatron distributed optimizer)
    ev_d = perf.evaluate_split(w.replace(distributed_optimizer=True), 8, 8, 4, recompute="selective")
    assert ev_d["weights_gb"] + ev_d["grads_gb"] + ev_d["optimizer_gb"] == pytest.approx(per_rank * (6 + 3) / 1e9)
    # no sequence parallelism: 10 s b h replicated + 24 s b h / t (Korthikanti eq. 2)
    ev_n = perf.evaluate_split(w.replace(sequence_parallel=False), 8, 8, 4, recompute="selective")
    assert ev_n["activations_gb"] == pytest.approx(2048 * h * (10 + 24 / 8) * 8 * 12 / 1e9)
    # full recompute: layer inputs 2 s b h / t, plus one layer's activations while it is recomputed
    ev_f = perf.evaluate_split(w, 8, 8, 4, recompute="full")
    one_layer = 2048 * h * (34 / 8 + 5 * 96 * 2048 / (h * 8))
    assert ev_f["activations_gb"] == pytest.approx((2 * 2048 * h / 8 * 8 * 12 + one_layer) / 1e9)


def test_memory_infeasible_says_which_term_and_by_how_much(catalog):
    w = workload(catalog, "GPT-3-175B", "HGX-A100-8")
    ev = perf.evaluate_split(w, 8, 8, 4, micro_batch=2, recompute="none")
    # no recompute, b = 2: s b h (34/t + 5 a s/(h t)) per layer, 96 layers' worth in flight: 68.9 GB
    act = 2048 * 2 * 12288 * (34 / 8 + 5 * 96 * 2048 / (12288 * 8)) * 96
    assert ev["activations_gb"] == pytest.approx(act / 1e9)
    assert not ev["feasible"]
    over = ev["memory_gb"] - 72.0
    assert "memory" in ev["reason"] and "activations" in ev["reason"]
    assert f"{over:.1f} GB over" in ev["reason"]


def test_interleaving_memory_factor(catalog):
    w = workload(catalog, "GPT-3-175B", "HGX-A100-8")
    a1 = perf.evaluate_split(w, 8, 8, 4, interleave=1, recompute="selective")["activations_gb"]
    a2 = perf.evaluate_split(w, 8, 8, 4, interleave=2, recompute="selective")["activations_gb"]
    assert a2 / a1 == pytest.approx(1 + 7 / (8 * 2))                          # 1 + (p-1)/(p v)


@pytest.mark.parametrize("args, fragment", [
    ((3, 8, 4), "does not divide the scale-up domain"),
    ((8, 8, 5), "not a multiple of DP x micro-batch"),
    ((8, 97, 1), "more than the 96 layers"),
    ((8, 1, 4, 1, 2), "needs pipeline parallelism"),
    ((8, 32, 4, 1, 2), "does not divide the 3 layers per stage"),
    ((8, 8, 128, 1, 2), "12 micro-batches per pipeline to be a multiple of PP 8"),
])
def test_rule_violations_are_explained(catalog, args, fragment):
    w = workload(catalog, "GPT-3-175B", "HGX-A100-8")
    ev = perf.evaluate_split(w, *args, recompute="full")
    assert not ev["feasible"]
    assert fragment in ev["reason"]


def test_heads_must_divide_tp(catalog):
    w = workload(catalog, "GPT-1.7B", "GB200-NVL72")      # 24 heads, 72-GPU domain
    assert perf.tp_options(w) == [1, 2, 3, 4, 6, 8, 12, 24]
    ev = perf.evaluate_split(w, 9, 1, 1, recompute="full")
    assert "does not divide the attention heads" in ev["reason"]


def test_bad_arguments_raise(catalog):
    w = workload(catalog, "GPT-1.7B", "HGX-A100-8")
    with pytest.raises(ValueError):
        perf.evaluate_split(w, 0, 1, 1)
    with pytest.raises(ValueError):
        perf.evaluate_split(w, 1, 1, 1, recompute="some")


# ---------------------------------------------------------------- step time

def test_step_time_terms_add_up_and_follow_megatron(catalog):
    w = workload(catalog, "GPT-3-175B", "HGX-H100-8")
    for (t, p, d, b, v, r) in [(8, 8, 4, 1, 1, "selective"), (8, 12, 2, 2, 2, "full"), (4, 24, 8, 1, 1, "none")]:
        ev = perf.evaluate_split(w, t, p, d, micro_batch=b, interleave=v, recompute=r)
        parts = ("compute_s", "tp_comm_s", "bubble_s", "pp_comm_s", "dp_comm_s", "optimizer_s")
        assert ev["step_time_s"] == pytest.approx(sum(ev[k] for k in parts))
        assert ev["compute_s"] == pytest.approx(ev["gemm_s"] + ev["nongemm_s"])
        m = 1536 / (b * d)
        assert ev["micro_batches"] == m
        # bubble: (p - 1)/(v m) of the ideal (compute + TP) time, Narayanan et al. 2021
        assert ev["bubble_s"] / (ev["compute_s"] + ev["tp_comm_s"]) == pytest.approx((p - 1) / (v * m))
        assert ev["tokens_per_s"] == pytest.approx(1536 * 2048 / ev["step_time_s"])
        peak = w.accelerator.peak_dense_bf16_tflops * 1e12
        assert ev["mfu"] == pytest.approx(ev["model_flops_per_step"] / (t * p * d * peak * ev["step_time_s"]))
        assert 0 < ev["mfu"] < w.accelerator.achievable_gemm_fraction
        # TP time: the bytes a rank sends on the scale-up fabric at scale_up_gbps_per_accelerator
        assert ev["tp_comm_s"] == pytest.approx(ev["tp_bytes_per_step"] * 8 / (w.domain.scale_up_gbps_per_accelerator * 1e9))
        # in-site DP: the ring all-reduce on the NIC, partly hidden behind the last backward pass
        assert ev["dp_comm_total_s"] == pytest.approx(ev["dp_bytes_per_rank"] * 8 / (w.accelerator.scale_out_nic_gbps * 1e9))
        assert 0 <= ev["dp_comm_s"] <= ev["dp_comm_total_s"]
        # GEMM time: the stage's FLOPs at peak x achievable fraction
        assert ev["gemm_s"] > 0 and ev["nongemm_s"] < ev["gemm_s"]


def test_gemm_time_by_hand(catalog):
    """GPT-3 175B, t 8, p 8, d 4, b 1, full recompute: 12 layers x 4 passes x (24 b s h^2 + 4 b s^2 h)
    + logits 3 x 2 b s h V, over 8 ranks, at peak x fraction, times m = 384 micro-batches."""
    w = workload(catalog, "GPT-3-175B", "HGX-A100-8")
    ev = perf.evaluate_split(w, 8, 8, 4, recompute="full")
    h, s, V = 12288, 2048, 51200
    per_mb = (12 * 4 * (24 * s * h * h + 4 * s * s * h) + 3 * 2 * s * h * V) / 8
    rate = 312e12 * w.accelerator.achievable_gemm_fraction
    assert ev["gemm_s"] == pytest.approx(384 * per_mb / rate)
    # non-GEMM: 2 x Korthikanti bytes x 4 passes per layer + 3 passes over fp32 logits, on 2,039 GB/s
    act = s * h * (34 / 8 + 5 * 96 * s / (h * 8))
    ng = 2 * (12 * 4 * act + 3 * 4 * s * V / 8)
    assert ev["nongemm_s"] == pytest.approx(384 * ng / (16312e9 / 8))


def test_recompute_trades_memory_for_time(catalog):
    w = workload(catalog, "GPT-3-175B", "HGX-H100-8")
    evs = {r: perf.evaluate_split(w, 8, 8, 4, recompute=r) for r in perf.RECOMPUTE_MODES}
    assert evs["none"]["activations_gb"] > evs["selective"]["activations_gb"] > evs["full"]["activations_gb"]
    assert evs["none"]["step_time_s"] < evs["selective"]["step_time_s"] < evs["full"]["step_time_s"]
    assert evs["none"]["mfu"] > evs["full"]["mfu"]


def test_interleaving_shrinks_the_bubble(catalog):
    w = workload(catalog, "GPT-3-175B", "HGX-H100-8")
    e1 = perf.evaluate_split(w, 8, 8, 4, interleave=1)
    e2 = perf.evaluate_split(w, 8, 8, 4, interleave=2)
    assert e2["bubble_s"] == pytest.approx(e1["bubble_s"] / 2)
    assert e2["pp_comm_s"] > e1["pp_comm_s"]


# ---------------------------------------------------------------- enumeration

def _fields(tab, i):
    r = tab.row(i)
    return (r["tp"], r["pp"], r["dp"], r["micro_batch"], r["interleave"], r["recompute"])


def test_enumeration_matches_brute_force(catalog):
    """Every split the vectorized enumeration keeps is feasible per evaluate_split with the same numbers,
    and every feasible split within the bounds is kept."""
    w = workload(catalog, "GPT-7.5B", "HGX-A100-8", micro_batch_sizes=(1, 16), interleave_options=(1, 3))
    max_acc = 64
    tab = perf.enumerate_splits(w, max_accelerators=max_acc, min_accelerators=2)
    kept = {_fields(tab, i): i for i in range(len(tab))}
    expected = set()
    for t, p, d, b, v, r in itertools.product([1, 2, 4, 8], range(1, w.layers + 1), range(1, max_acc + 1),
                                              (1, 16), (1, 3), perf.RECOMPUTE_MODES):
        if not 2 <= t * p * d <= max_acc:
            continue
        if w.global_batch_sequences % (b * d):
            continue
        ev = perf.evaluate_split(w, t, p, d, micro_batch=b, interleave=v, recompute=r)
        if ev["feasible"]:
            expected.add((t, p, d, b, v, r))
            row = tab.row(kept[(t, p, d, b, v, r)]) if (t, p, d, b, v, r) in kept else None
            assert row is not None, (t, p, d, b, v, r)
            for key in ("step_time_s", "memory_gb", "mfu", "tokens_per_s", "bubble_s", "dp_comm_s", "compute_s"):
                assert row[key] == pytest.approx(ev[key], rel=1e-9), key
    assert set(kept) == expected
    print(f"\n{len(tab)} feasible splits of GPT-7.5B on 2..64 A100s")
    assert len(tab) > 100 and np.any(tab.interleave == 3) and set(tab.recompute) == set(perf.RECOMPUTE_MODES)


def test_enumeration_rules_hold(catalog):
    w = workload(catalog, "Llama-3-405B", "GB200-NVL72")
    tab = perf.enumerate_splits(w, max_accelerators=200_000, min_accelerators=1000)
    assert len(tab) > 0
    assert np.all(72 % tab.tp == 0) and np.all(w.heads % tab.tp == 0) and np.all(w.kv_heads % tab.tp == 0)
    assert np.all(tab.pp <= w.layers)
    assert np.all(w.global_batch_sequences % (tab.dp * tab.micro_batch) == 0)
    assert np.all(tab.accelerators == tab.tp * tab.pp * tab.dp)
    assert np.all((tab.accelerators >= 1000) & (tab.accelerators <= 200_000))
    assert np.all(tab.replica_accelerators == tab.tp * tab.pp)
    assert np.all(tab.micro_batches * tab.micro_batch * tab.dp == w.global_batch_sequences)
    il = tab.interleave > 1
    assert np.all(tab.pp[il] > 1) and np.all(tab.layers_per_stage[il] % tab.interleave[il] == 0)
    assert np.all(tab.micro_batches[il] % tab.pp[il] == 0)
    assert np.all(tab.memory_gb <= 186 * 0.9 + 1e-9)
    assert set(tab.recompute) <= set(perf.RECOMPUTE_MODES)
    assert np.all(np.array(perf.RECOMPUTE_MODES)[tab.recompute_code] == tab.recompute)
    for name in ("step_time_s", "compute_s", "bubble_s", "tp_comm_s", "pp_comm_s", "dp_comm_s", "optimizer_s",
                 "tokens_per_s", "mfu"):
        arr = getattr(tab, name)
        assert arr.shape == (len(tab),) and np.all(np.isfinite(arr)) and np.all(arr >= 0)
    row = tab.row(0)
    assert isinstance(row["recompute"], str) and isinstance(row["tp"], int) and isinstance(row["mfu"], float)
    sub = tab.take(tab.recompute == "full")
    assert len(sub) == int(np.sum(tab.recompute == "full"))


def test_enumeration_of_a_100t_model_on_a_million_accelerators_is_fast(catalog):
    """Prints the time (not asserted). The last case gives the accelerator a huge HBM so that every
    candidate survives the memory filter: the worst case of the vectorized model."""
    huge = catalog.accelerators["GB200"].model_copy(update={"hbm_gb": 1e8})
    for domain, dist, acc in (("GB200-NVL72", False, None), ("GB300-NVL72", True, None), ("GB200-NVL72", False, huge)):
        w = workload(catalog, "Dense-100T", domain, distributed_optimizer=dist)
        if acc is not None:
            w = w.replace(accelerator=acc)
        start = time.perf_counter()
        tab = perf.enumerate_splits(w, max_accelerators=1_000_000)
        elapsed = time.perf_counter() - start
        print(f"\nDense-100T on {domain} (HBM {w.accelerator.hbm_gb:g} GB, distributed optimizer {dist}): "
              f"{tab.candidates_considered:,} candidate splits, {len(tab):,} fit memory, {elapsed * 1e3:.1f} ms")
        assert tab.candidates_considered > 100_000
        assert np.all(tab.accelerators <= 1_000_000)
    assert len(tab) == tab.candidates_considered


def test_workload_from_every_instance(instances):
    for path in instances:
        li = load_instance(path)
        w = perf.workload_from_instance(li)
        dims = li.model_dims
        assert (w.layers, w.hidden, w.seq_len, w.global_batch_sequences) == \
            (dims.layers, dims.hidden, dims.seq_len, dims.global_batch_sequences)
        assert w.domain is li.catalog.scale_up_domains[li.campuses[0].scale_up_domain]
        assert w.accelerator.hbm_gb > 0 and w.hbm_reserve_fraction == li.instance.job.hbm_reserve_fraction
        assert perf.parameter_count(w.dims) > 1e9


# ---------------------------------------------------------------- dcopt evaluate

def _best_split(path):
    from optimizer.planner import power_limited_accelerators
    li = load_instance(path)
    w = perf.workload_from_instance(li)
    tab = perf.enumerate_splits(w, max_accelerators=min(power_limited_accelerators(li),
                                                        li.instance.job.max_accelerators or math.inf))
    assert len(tab) > 0, f"no feasible split for {path.name}"
    return tab.row(int(np.argmax(tab.tokens_per_s)))


@pytest.mark.parametrize("path", INSTANCES, ids=[p.stem for p in INSTANCES])
def test_evaluate_works_on_every_instance(run_cli, path):
    r = _best_split(path)
    args = ["evaluate", path, "--tp", r["tp"], "--pp", r["pp"], "--dp", r["dp"], "--micro-batch", r["micro_batch"],
            "--interleave", r["interleave"], "--recompute", r["recompute"]]
    code, out, err = run_cli(args)
    assert code == 0, out + err
    assert "status: feasible" in out
    for word in ("weights", "activations", "pipeline bubble", "MFU", "tokens/s", "TP, scale-up", "DP across 2 sites"):
        assert word in out
    li = load_instance(path)
    for region in li.instance.regions:      # one DP phase per region with campuses to connect, as the planner
        if len(region.campuses) > 1:
            assert f" phase, {region.name}: " in out
    assert ("inter-region phase" in out) == (len(li.instance.regions) > 1)
    assert ("inter-region: none (one region)" in out) == (len(li.instance.regions) == 1)
    code, out, err = run_cli(args + ["--format", "json"])
    assert code == 0
    rep = json.loads(out)
    assert rep["evaluation"]["feasible"] is True
    assert rep["evaluation"]["step_time_s"] == pytest.approx(r["step_time_s"])


def test_evaluate_default_instance_text(run_cli):
    # unsharded Adam states do not fit at TP 8 with one layer per stage (Dense-10T, 160 layers) ...
    args = ["evaluate", DEFAULT_INSTANCE, "--tp", "8", "--pp", "160", "--dp", "32", "--recompute", "full"]
    code, out, err = run_cli(args)
    assert code == 4
    assert "largest term optimizer states" in out
    # ... and do once the distributed optimizer shards them over the 32 replicas
    code, out, err = run_cli(args + ["--distributed-optimizer"])
    assert code == 0, err
    assert "TP 8 x PP 160 x DP 32 = 40,960 accelerators" in out
    assert "status: feasible" in out


def test_evaluate_infeasible_exits_4_with_the_reason(run_cli):
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "8", "--pp", "100", "--dp", "32",
                              "--recompute", "selective"])
    assert code == 4
    assert "INFEASIBLE" in out and "GB over" in out and "largest term activations" in out
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "8", "--pp", "160", "--dp", "40",
                              "--recompute", "full"])
    assert code == 4
    assert "not a multiple of DP x micro-batch" in out


@pytest.mark.parametrize("args", [
    ["--tp", "0", "--pp", "1", "--dp", "1"],
    ["--tp", "8", "--pp", "-2", "--dp", "1"],
    ["--tp", "eight", "--pp", "1", "--dp", "1"],
    ["--tp", "8", "--pp", "1", "--dp", "1", "--recompute", "partial"],
    ["--tp", "8", "--pp", "1"],
])
def test_evaluate_bad_input_exits_2(run_cli, args):
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE] + args)
    assert code == 2
    assert "Traceback" not in err


def test_evaluate_missing_file_exits_2(run_cli, tmp_path):
    code, out, err = run_cli(["evaluate", tmp_path / "nope.yaml", "--tp", "1", "--pp", "1", "--dp", "1"])
    assert code == 2


# ---------------------------------------------------------------- evaluate: capacity, DCI as the planner, placement

GB200_W_PER_ACCELERATOR = 132_000 / 72      # GB200-NVL72 rack power / GPUs (models/scale_up_domains.yaml)
DEFAULT_ACCELERATORS = (1100 + 600 + 600 + 500 + 1000 + 600 + 600) * 72     # domains x 72 in us-two-regions


def test_evaluate_more_accelerators_than_the_instance_has_is_infeasible(run_cli):
    """TP 72 x PP 27 x DP 1024 = 1,990,656 GPUs; us-two-regions has 5,000 NVL72 racks = 360,000 and every
    campus budget feeds more than it has (council-bluffs: 300 MW / (1.2 x 1,833 W) = 136,363 > 79,200)."""
    assert 72 * 27 * 1024 == 1_990_656 and DEFAULT_ACCELERATORS == 360_000
    assert int(300e6 / (1.2 * GB200_W_PER_ACCELERATOR)) == 136_363
    args = ["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "27", "--dp", "1024"]
    code, out, err = run_cli(args)
    assert code == 4, out + err
    assert "status: INFEASIBLE" in out
    assert ("why: capacity: the split needs 1,990,656 accelerators but the instance has 360,000 and its campus "
            "power budgets let it use at most 360,000 (1,630,656 short)") in out
    code, out, err = run_cli(args + ["--format", "json"])
    assert code == 4
    rep = json.loads(out)
    assert rep["evaluation"]["feasible"] is False
    assert rep["capacity"] == {"accelerators_needed": 1_990_656, "accelerators_available": 360_000,
                               "accelerators_power_limited": 360_000, "job_max_accelerators": None}


def test_evaluate_power_limited_split_is_infeasible(run_cli, tmp_path):
    """council-bluffs and new-albany cut to 10 MW: each feeds 10 MW / (1.2 x 1,833.3 W) = 4,545 GPUs, so the
    instance can use 360,000 - 79,200 - 72,000 + 2 x 4,545 = 217,890 < 248,832 = 72 x 27 x 128."""
    import yaml
    raw = yaml.safe_load(DEFAULT_INSTANCE.read_text())
    for region in raw["regions"]:
        for c in region["campuses"]:
            if c["name"] in ("council-bluffs", "new-albany"):
                c["power_budget_mw"] = 10
    path = tmp_path / "low-power.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert int(10e6 / (1.2 * GB200_W_PER_ACCELERATOR)) == 4545
    limited = 360_000 - 79_200 - 72_000 + 2 * 4545
    assert limited == 217_890
    code, out, err = run_cli(["evaluate", path, "--tp", "72", "--pp", "27", "--dp", "128"])
    assert code == 4, out + err
    assert ("the split needs 248,832 accelerators but the instance has 360,000 and its campus power budgets "
            "let it use at most 217,890 (30,942 short)") in out
    # the same split on the full budgets is feasible
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "27", "--dp", "128"])
    assert code == 0 and "status: feasible" in out


def test_campus_power_limits_sum_to_the_planners_bound(instances):
    from optimizer.evaluate_cli import campus_power_limit
    from optimizer.planner import power_limited_accelerators
    for path in instances:
        li = load_instance(path)
        assert sum(campus_power_limit(li, c) for c in li.campuses) == power_limited_accelerators(li)


def test_evaluate_dci_figures_are_the_planners(run_cli):
    """TP 72 x PP 27 x DP 128 on us-two-regions. planner.loss_budgets: every route inside a region is
    > 10 km, so both regions' intra phases get 5 % of T and the inter-region phase 10 % - 5 % = 5 %. The
    planner's inter-region demand per region pair is k_inter / 2 x 3600 / T with
    k_inter = 16 N beta / (0.05 x 1e9 x 3600), i.e. 2 N beta 8 / (2 x 0.05 x T) bits/s."""
    from optimizer import planner
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "27", "--dp", "128",
                              "--format", "json"])
    assert code == 0, err
    rep = json.loads(out)
    ev = rep["evaluation"]
    N, T = ev["params"], ev["step_time_s"]
    (inter,) = [p for p in rep["cross_site"]["dp_phases"] if p["link_class"] == "inter_region"]
    assert inter["share"] == pytest.approx(0.05) and inter["time_budget_s"] == pytest.approx(0.05 * T)
    by_hand = 2 * N * 2 * 8 / (2 * 0.05 * T) / 1e9
    assert inter["by_active_sites"]["2"]["gbps_per_site"] == pytest.approx(by_hand)
    # the coefficient the MILP uses for this very split
    li = load_instance(DEFAULT_INSTANCE)
    cand = planner.Candidate(index=0, tp=72, pp=27, dp=128, micro_batch=1, interleave=1, recompute="selective",
                             accelerators=ev["accelerators"], replica_accelerators=ev["replica_accelerators"],
                             step_time_s=T, tokens_per_s=ev["tokens_per_s"], mfu=ev["mfu"],
                             pp_gbps_per_split_pipeline=rep["cross_site"]["pp_gbps_per_split_pipeline"])
    pm = planner.build_model(li, candidates=[cand])
    assert pm.facts["k_inter_gbps_s"] == pytest.approx(16 * N * 2 / (0.05 * 1e9 * 3600))
    assert inter["by_active_sites"]["2"]["gbps_per_pair"] == pytest.approx(pm.facts["k_inter_gbps_s"] / 2 * 3600 / T)
    # intra-region, 4 campuses of iowa-nebraska: k_intra / 4 x 3600 / T per pair, 3 pairs per site
    (iowa,) = [p for p in rep["cross_site"]["dp_phases"] if p["group"] == "iowa-nebraska"]
    k_intra = pm.facts["k_intra_gbps_s"]["iowa-nebraska"]
    assert iowa["link_class"] == "intra_region" and iowa["share"] == 0.05
    assert iowa["by_active_sites"]["4"]["gbps_per_pair"] == pytest.approx(k_intra / 4 * 3600 / T)
    assert iowa["by_active_sites"]["4"]["gbps_per_site"] == pytest.approx(3 * k_intra / 4 * 3600 / T)
    # a split pipeline's stream as the planner sizes it: 2 (B/d) s h beta per step, half of it
    # each way (activations forward, gradients back) over T
    pp_bytes = 2 * 8192 / 128 * 4096 * 73728 * 2
    assert rep["cross_site"]["pp_gbps_per_split_pipeline"] == pytest.approx(pp_bytes / 2 * 8 / T / 1e9)
    print(f"\nTP72 PP27 DP128: inter-region {by_hand / 1e3:,.1f} Tb/s per region pair (T = {T:.3f} s)")
    code, text, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "27", "--dp", "128"])
    assert f"inter-region phase (10% bound less the largest intra share): 5.0% of T = {0.05 * T:.3f} s" in text
    assert f"DP across 2 regions: 20.89 TB per region, {by_hand / 1e3:,.1f} Tb/s per region pair" in text


PLACED = "council-bluffs=40,omaha=22,new-albany=37,columbus=22,lancaster=7"


def test_evaluate_placement_by_hand(run_cli):
    """40 + 22 replicas in iowa-nebraska (2 campuses active), 37 + 22 + 7 in ohio (3 active), 2 regions:
    iowa's pair exchanges 2 N beta / 2 each way, ohio's 3 pairs 2 N beta / 3, the region pair 2 N beta / 2,
    all in 5 % of T."""
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "27", "--dp", "128",
                              "--placement", PLACED, "--format", "json"])
    assert code == 0, out + err
    rep = json.loads(out)
    N, T = rep["evaluation"]["params"], rep["evaluation"]["step_time_s"]
    pl = rep["placement"]
    assert pl["campuses"]["council-bluffs"]["accelerators_used"] == 40 * 72 * 27 == 77_760
    assert pl["campuses"]["lincoln"]["accelerators_used"] == 0
    tr = pl["traffic"]
    assert tr["active_campuses"] == {"iowa-nebraska": ["council-bluffs", "omaha"],
                                     "ohio": ["new-albany", "columbus", "lancaster"]}
    c = tr["link_classes"]
    pair = {j: 2 * N * 2 / j * 8 / (0.05 * T) / 1e9 for j in (2, 3)}
    assert c["intra_region"]["pairs"] == 1 + 3
    assert c["intra_region"]["dp_bytes_per_step"] == pytest.approx(2 * N * 2 / 2 + 3 * 2 * N * 2 / 3)
    assert c["intra_region"]["dp_gbps"] == pytest.approx(pair[2] + 3 * pair[3])
    assert c["inter_region"]["pairs"] == 1 and c["inter_region"]["dp_gbps"] == pytest.approx(pair[2])
    assert c["campus"]["pairs"] == 0 and c["campus"]["dp_gbps"] == 0.0
    code, text, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "27", "--dp", "128",
                               "--placement", PLACED])
    assert code == 0 and "placement: council-bluffs=40, omaha=22, new-albany=37, columbus=22, lancaster=7" in text


def test_evaluate_placement_with_split_pipelines(run_cli):
    """PP 28 (even): 20 pipelines split over omaha-papillion (20 km, intra-region) put 2 (B/d) s h beta
    each on that link, over T; each of those campuses holds 20 halves of 72 x 28 / 2 GPUs."""
    placement = "council-bluffs=39,omaha+papillion=20,new-albany=35,columbus=21,lancaster=13"
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "28", "--dp", "128",
                              "--placement", placement, "--format", "json"])
    assert code == 0, out + err
    rep = json.loads(out)
    T = rep["evaluation"]["step_time_s"]
    pl = rep["placement"]
    assert pl["campuses"]["omaha"]["accelerators_used"] == 20 * 72 * 14 == 20_160
    (link,) = pl["traffic"]["pp_links"]
    pp_bytes = 2 * 8192 / 128 * 4096 * 73728 * 2
    assert (link["a"], link["b"], link["link_class"], link["pipelines"]) == ("omaha", "papillion", "intra_region", 20)
    assert link["bytes_per_step"] == pytest.approx(20 * pp_bytes)
    assert link["gbps"] == pytest.approx(20 * pp_bytes / 2 * 8 / T / 1e9)      # each way
    assert pl["pp_fill_drain_latency_s"]["omaha+papillion"] == pytest.approx(2 * 20 * 4.9e-6)
    assert pl["traffic"]["active_campuses"]["iowa-nebraska"] == ["council-bluffs", "omaha", "papillion"]


def test_evaluate_placement_over_a_campus_is_infeasible(run_cli):
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "27", "--dp", "128",
                              "--placement", "council-bluffs=41,omaha=22,new-albany=37,columbus=22,lancaster=6"])
    assert code == 4
    # 41 x 1,944 = 79,704 > 1,100 racks x 72 = 79,200
    assert "why: placement: council-bluffs would hold 79,704 accelerators but has 79,200" in out


def test_evaluate_split_pipeline_latency_beyond_the_room_is_infeasible(run_cli):
    """Tiny instance, ~1 ms step: a 40 km split adds 2 x 40 x 4.9 us = 0.392 ms of fill/drain, far more than
    the (0.05/0.95 - 0.05) x T the loss bounds leave after the DP phase."""
    from conftest import TINY_INSTANCE
    code, out, err = run_cli(["evaluate", TINY_INSTANCE, "--tp", "8", "--pp", "2", "--dp", "8",
                              "--recompute", "none", "--placement", "a+b=8"])
    assert code == 4, out + err
    assert "pipelines split over a-b (40 km) add 0.392 ms of fill/drain latency" in out


@pytest.mark.parametrize("placement, fragment", [
    ("council-bluff=128", "unknown name 'council-bluff' (did you mean 'council-bluffs'?)"),
    ("omaha=x", "'omaha=x': the count must be a whole number >= 0"),
    ("omaha=-3", "the count must be a whole number >= 0"),
    ("omaha", "'omaha': expected CAMPUS=COUNT or CAMPUS+CAMPUS=COUNT"),
    ("omaha=64,omaha=64", "campus omaha is given twice"),
    ("omaha=100", "the counts sum to 100 pipelines but --dp is 128"),
    ("omaha=100,columbus=100", "the counts sum to 200 pipelines but --dp is 128"),
    ("omaha+new-albany=128", "are in different regions"),
    ("council-bluffs+lincoln=128", "no route joins council-bluffs and lincoln"),
    ("omaha+omaha=128", "needs two different campuses"),
    ("council-bluffs+omaha=128", "PP must be even (got 27)"),
])
def test_evaluate_bad_placement_exits_2(run_cli, placement, fragment):
    code, out, err = run_cli(["evaluate", DEFAULT_INSTANCE, "--tp", "72", "--pp", "27", "--dp", "128",
                              "--placement", placement])
    assert code == 2, out + err
    assert "error: command line: --placement: " in err and fragment in err
    assert "Traceback" not in err
