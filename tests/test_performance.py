"""The performance model: parameter and FLOP formulas, memory, step time, split enumeration, `dcopt evaluate`."""
from __future__ import annotations

import itertools
import json
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
    li = load_instance(path)
    w = perf.workload_from_instance(li)
    tab = perf.enumerate_splits(w, max_accelerators=sum(li.accelerators_at(c) for c in li.campuses))
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
    for word in ("weights", "activations", "pipeline bubble", "MFU", "tokens/s", "TP, scale-up",
                 "DP across 2 sites", "intra-region", "inter-region"):
        assert word in out
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
