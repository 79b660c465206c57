"""Training performance and traffic model: what a parallelism split costs in
time, memory and bytes per link class.

Used alone (`dcopt evaluate`, a planner checking a hand-made split) and as the
coefficient generator of the planning MILP (optimizer/planner.py).

Notation (DOMAIN.md §2): L layers, h hidden, a heads, a_kv KV heads, f FFN
width, s sequence, V vocabulary, B global batch (sequences), b micro-batch,
t = TP, p = PP, d = DP, v interleaved chunks per stage, G = t·p·d,
m = B/(b·d) micro-batches per pipeline, β bytes per element (2 for bf16/fp16).
Units: seconds, bytes, GB = 1e9 bytes, Gb/s = 1e9 bit/s; catalog bandwidths
are Gb/s and are turned into bytes/s with /8.

Sources
-------
[N21] Narayanan et al., "Efficient Large-Scale Language Model Training on GPU
      Clusters Using Megatron-LM", SC21 (FLOP formula §5.1 / App., 1F1B and
      interleaved schedules §2.2, bubble (p−1)/(v·m), scatter/gather PP sends
      §4.1, TP all-reduces 2 forward + 2 backward per layer §2.3, Table 1).
[S21] Megatron-LM examples/sc21/run_table_1.sh (commit of the paper): the
      micro-batch sizes and interleaving used for Table 1.
[K22] Korthikanti et al., "Reducing Activation Recomputation in Large
      Transformer Models", 2022: activation bytes per layer
      s·b·h·(34 + 5·a·s/h) (§4.1), 10 of the 34 replicated across TP ranks
      without sequence parallelism (eq. 2), selective recompute keeps 34·s·b·h/t
      (§5), full recompute keeps the layer input 2·s·b·h, interleaved 1F1B
      multiplies the first stage's in-flight activations by 1 + (p−1)/(p·v)
      (§4.2.3), fp32 logits 4·s·b·V/t.
[MDO] Megatron-LM distributed optimizer docs: bf16 parameters with fp32
      gradients take 18 bytes/parameter without sharding (2 + 4 + 12), and
      6 + 12/d with the optimizer states sharded over d.
[RS]  Ring all-reduce moves 2(n−1)/n of the buffer per rank (Patarasuk &
      Yuan 2009; NCCL docs "bus bandwidth").

Step-time model (one optimizer step, single site)
-------------------------------------------------
The slowest pipeline stage holds ceil(L/p) layers plus the output (logit)
layer (conservative when p does not divide L). Per micro-batch on that stage,
per accelerator:

* GEMM time: FLOPs / (peak · achievable_gemm_fraction). Forward FLOPs per
  layer and micro-batch: 2·P_mm·b·s (weight matmuls, P_mm = h²(2 + 2a_kv/a)
  + n_mat·h·f, n_mat = 2 gelu / 3 swiglu) plus 4·b·s²·h (scores and
  attention over values); the logit layer 2·b·s·h·V. Training runs each
  forward three times (forward + 2× backward), a fully recomputed layer four
  times; selective recompute runs the attention-score part a fourth time.
  For a GPT (P_mm = 12h²) this is exactly [N21]'s 96·B·s·L·h²(1 + s/(6h) +
  V/(16·L·h)) with full recompute and 72·…(1 + s/(6h) + V/(12·L·h)) without.
* Non-GEMM time (layernorm, softmax, GeLU/SwiGLU, dropout, residual adds,
  cross-entropy): memory-bound on HBM. Bytes = the accelerator's catalog
  nongemm_hbm_bytes_per_activation_byte (2: every activation byte is written
  by its producer kernel and read once by its consumer; its nongemm_source
  says why) × the per-layer activation bytes of [K22] × the number of
  passes (3, or 4 when recomputed), plus the fp32 logits 3× for the loss. This
  term is what makes small models (small h, large a·s/h) slower per FLOP; it
  is the size-dependent term of the calibration (see below).
* TP: ring all-reduces of b·s·h·β on the scale-up fabric
  (scale_up_gbps_per_accelerator), 2 forward + 2 backward per layer (+2 with
  full recompute), not overlapped with compute [N21]. With sequence
  parallelism the all-gather/reduce-scatter pairs move the same bytes.
* PP: each micro-batch sends its activations forward and receives its
  gradient backward across each stage boundary, b·s·h·β/t per accelerator
  (scatter/gather over the t ranks [N21 §4.1]) on the scale-out NIC, v times
  with interleaving; counted on the critical path.

step = m·(gemm + nongemm + tp) + (p−1)/v·(gemm + nongemm + tp)   [bubble]
       + pp + exposed in-site DP + optimizer.

* In-site DP: ring all-reduce of the stage's gradients (params/t · β per
  rank, factor 2(d−1)/d) on the scale-out NIC. Overlap (stated assumption):
  the bucketed all-reduce starts while the last micro-batch runs its backward
  pass (gradient accumulation defers it until then, as PyTorch DDP no_sync and
  Megatron's overlap_grad_reduce do); what exceeds that backward time is
  exposed.
* Optimizer: Adam is memory-bound: it reads the fp32 gradient and the 12 bytes
  of fp32 master weights and moments, writes those 12 bytes back and the β
  bytes of low-precision weights: 28 + β bytes per parameter on HBM.

MFU = model FLOPs (no recompute counted) / (G · peak · step);
tflops_per_accelerator counts recomputation too, as [N21] Table 1 does.

Memory model (worst stage, per accelerator; the first stage in 1F1B)
-------------------------------------------------------------------
weights β, gradients 4 (fp32) and Adam states 12 bytes per parameter of the
stage / t [MDO]; states divided by d with `distributed_optimizer` (ZeRO-1,
off by default: [N21] did not shard). Activations per [K22]: per layer and
micro-batch s·b·h·(10/t_sp + (4 + 4a_kv/a + k·f/h)/t + 5·a·s/(h·t)) with
t_sp = t under sequence parallelism, else 1, k = 4 gelu / 6 swiglu (= 34 and
24/t for a GPT); selective drops the 5·a·s/h term; full keeps 2·s·b·h/t_sp
per layer plus one layer's full activations while it is recomputed. The
first stage holds min(p, m) micro-batches of its layers (× (1 + (p−1)/(p·v))
interleaved); the last stage holds one plus the fp32 logits 4·s·b·V/t. The
split fits when the sum is within HBM × (1 − hbm_reserve_fraction).

Enumeration rules
-----------------
t divides the scale-up domain size and both a and a_kv; 1 ≤ p ≤ L (stages
balanced: the largest has ceil(L/p) layers); d·b divides B; v > 1 only if
p > 1, ceil(L/p) is a multiple of v and m is a multiple of p (Megatron's
interleaved schedule requires both).

Calibration
-----------
One constant per accelerator: achievable_gemm_fraction in the catalog. For
A100-80GB it is fitted to [N21] Table 1 with [S21]'s micro-batch sizes and
interleaving, no sequence parallelism (it came later, [K22]), full recompute;
tests/test_megatron_calibration.py recomputes every row from the catalog.
The non-GEMM factor (nongemm_hbm_bytes_per_activation_byte, 2) sits next to
it in the catalog entry but is not fitted: it is the write-once/read-once
count above, and the size-dependent term that lets one fraction fit all rows.

Traffic and linearity for the MILP (bytes per optimizer step)
-------------------------------------------------------------
* TP never leaves a scale-up domain: tp_bytes_per_step is a per-rank constant
  of the split.
* PP: pp_bytes_per_pipeline_boundary = 2·(B/d)·s·h·β (both directions) is a
  constant per split; a placement that cuts x pipelines at a DCI link carries
  x times that: linear in the count of split pipelines.
* Hierarchical DP across n active sites (reduce-scatter in site, all-reduce
  of the shards across sites, all-gather in site): each site sends and
  receives 2(n−1)/n·N·β per step, independent of how many accelerators or
  replicas it hosts, so per-site bytes depend only on whether the site is
  active. The only nonlinearity is the 2(n−1)/n factor, which the MILP makes
  exact with a one-hot variable on the number n of active sites (a constant
  per value of n).
* Turning bytes into bandwidth divides by a time budget: share·T for a DP
  phase, where the share of the single-site step T comes from
  planner.loss_budgets (each region's intra-region phases get the region's
  bound; the inter-region phase the inter_region bound less the largest
  intra share; share·T is a stricter, valid form of T·b/(1−b)), or the step
  itself for streamed PP traffic. T is a constant per candidate, so required
  Gb/s = bytes·8/(share·T) enters as a constant coefficient times the split's
  binary. placement_traffic() applies these formulas to one placement.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .catalog import Accelerator, ScaleUpDomain

# ---------------------------------------------------------------- constants (each with its source)

RECOMPUTE_MODES: tuple[str, ...] = ("none", "selective", "full")
RECOMPUTE_CODE = {name: i for i, name in enumerate(RECOMPUTE_MODES)}

GRAD_BYTES_PER_PARAM = 4            # fp32 main gradients [MDO]
ADAM_STATE_BYTES_PER_PARAM = 12     # fp32 master weights, first and second moments [MDO]
LOGIT_BYTES_PER_ELEMENT = 4         # fp32 logits for the loss [K22]
ACT_REPLICATED_COEF = 10            # [K22] eq. 2: LN inputs 4, QKV/MLP inputs 4, dropout masks 2 (per s·b·h)
ACT_SCORE_COEF = 5                  # [K22]: softmax output 2, dropout mask 1, dropout output 2 (per a·s²·b)
FULL_RECOMPUTE_STORED_COEF = 2      # [K22]: the layer input, 2·s·b·h bytes
TP_ALLREDUCES_PER_LAYER = 4         # [N21] §2.3: 2 forward (f, g) + 2 backward
TP_ALLREDUCES_RECOMPUTE = 2         # full recompute re-runs the forward pass
PP_TRANSFERS_PER_MICROBATCH = 2     # activation forward + gradient backward per boundary [N21]
ATTN_FLOPS_COEF = 4                 # QK^T and attention·V: 2·s·h each per token and layer [N21]


def _ceil_div(a, b):
    return -(-a // b)


# ---------------------------------------------------------------- workload

@dataclass(frozen=True)
class Workload:
    """A training job on one accelerator type: everything the model needs."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn_hidden: int
    mlp: str
    seq_len: int
    vocab: int
    global_batch_sequences: int
    bytes_per_element: int
    accelerator: Accelerator
    domain: ScaleUpDomain
    hbm_reserve_fraction: float = 0.10
    micro_batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    interleave_options: tuple[int, ...] = (1, 2)
    recompute_modes: tuple[str, ...] = RECOMPUTE_MODES
    sequence_parallel: bool = True          # Megatron-LM since [K22]; Table 1 ran without
    distributed_optimizer: bool = False     # ZeRO-1 over d; [N21] did not shard
    domain_name: str = ""                   # for messages

    @property
    def dims(self) -> "Workload":
        """The model dimensions (this object: it has layers, hidden, heads, ...)."""
        return self

    def replace(self, **changes) -> "Workload":
        from dataclasses import replace
        return replace(self, **changes)


def workload_from_instance(li) -> Workload:
    """The Workload of a LoadedInstance (optimizer.instance.load_instance)."""
    dims = li.model_dims
    job = li.instance.job
    domain_name = li.campuses[0].scale_up_domain     # validation: one domain type per instance
    domain = li.catalog.scale_up_domains[domain_name]
    acc = li.catalog.accelerators[domain.accelerator]
    return Workload(
        layers=dims.layers, hidden=dims.hidden, heads=dims.heads,
        kv_heads=dims.kv_heads or dims.heads, ffn_hidden=dims.ffn_hidden or 4 * dims.hidden,
        mlp=dims.mlp, seq_len=dims.seq_len, vocab=dims.vocab,
        global_batch_sequences=dims.global_batch_sequences,
        bytes_per_element=li.bytes_per_element, accelerator=acc, domain=domain, domain_name=domain_name,
        hbm_reserve_fraction=job.hbm_reserve_fraction,
        micro_batch_sizes=tuple(sorted(set(job.micro_batch_sizes))),
        interleave_options=tuple(sorted(set(job.interleave_options))),
        recompute_modes=tuple(m for m in RECOMPUTE_MODES if m in job.recompute_modes),
        sequence_parallel=job.sequence_parallel,
        distributed_optimizer=job.distributed_optimizer,
    )


# ---------------------------------------------------------------- model shape

@dataclass(frozen=True)
class _Shape:
    L: int
    h: int
    a: int
    kv: int
    f: int
    gated: bool
    s: int
    V: int
    B: int


def _shape(dims) -> _Shape:
    """Resolve defaults (kv_heads = heads, ffn_hidden = 4h) of ModelDims, LlmPreset or Workload."""
    h = dims.hidden
    return _Shape(L=dims.layers, h=h, a=dims.heads, kv=getattr(dims, "kv_heads", None) or dims.heads,
                  f=getattr(dims, "ffn_hidden", None) or 4 * h, gated=getattr(dims, "mlp", "gelu") == "swiglu",
                  s=dims.seq_len, V=dims.vocab, B=dims.global_batch_sequences)


def _matmul_params_per_layer(sh: _Shape) -> float:
    """Weight-matrix parameters of one layer: Q and output h² each, K and V h²·a_kv/a each,
    MLP 2 (gelu) or 3 (swiglu) matrices of h·f."""
    return sh.h * sh.h * (2 + 2 * sh.kv / sh.a) + (3 if sh.gated else 2) * sh.h * sh.f


def _small_params_per_layer(sh: _Shape) -> float:
    """Biases and norms: GPT style (gelu) QKV, output and MLP biases plus two LayerNorms
    (13h for a GPT, [N21]'s 12Lh²(1 + 13/(12h) + …)); Llama style (swiglu): two RMSNorm
    weight vectors, no biases."""
    if sh.gated:
        return 2 * sh.h
    return sh.h * (1 + 2 * sh.kv / sh.a) + sh.h + sh.f + sh.h + 4 * sh.h


def _embedding_params(sh: _Shape) -> float:
    """Token embedding V·h (tied with the output layer, as Megatron GPT), plus learned
    positions s·h for GPT style (gelu); rotary positions (swiglu/Llama style) have none."""
    return sh.V * sh.h + (0 if sh.gated else sh.s * sh.h)


def parameter_count(dims) -> float:
    """Total parameters incl. embeddings. For a GPT: 12Lh²(1 + 13/(12h) + (V+s)/(12Lh)) [N21]."""
    sh = _shape(dims)
    return sh.L * (_matmul_params_per_layer(sh) + _small_params_per_layer(sh)) + _embedding_params(sh)


def _act_coefs(sh: _Shape) -> tuple[float, float]:
    """[K22] activation bytes per layer per s·b·h: (replicated part, TP-parallel part), scores apart.
    Parallel: Q 2, K and V 2·a_kv/a each, projection input 2, MLP activations 4f/h (gelu: input
    and output of GeLU) or 6f/h (swiglu: gate, up, product) = 24 for a GPT."""
    par = 2 + 4 * sh.kv / sh.a + 2 + (6 if sh.gated else 4) * sh.f / sh.h
    return float(ACT_REPLICATED_COEF), par


def model_flops_per_step(dims, recompute: str = "none") -> float:
    """FLOPs of one optimizer step for the whole job, counting recomputation as [N21] does.
    recompute='none' gives the model FLOPs used for MFU."""
    return _flops_per_step(_shape(dims), recompute)


def _flops_per_step(sh: _Shape, recompute: str) -> float:
    tokens = sh.B * sh.s
    mat = 2 * _matmul_params_per_layer(sh)
    att = ATTN_FLOPS_COEF * sh.s * sh.h
    logit = 2 * sh.h * sh.V
    mat_passes = 4 if recompute == "full" else 3
    att_passes = 3 if recompute == "none" else 4
    return tokens * (sh.L * (mat_passes * mat + att_passes * att) + 3 * logit)


# ---------------------------------------------------------------- traffic (pure functions)

def ring_allreduce_bytes_per_rank(buffer_bytes: float, n: int) -> float:
    """Bytes each rank sends in a ring all-reduce of a buffer over n ranks: 2(n−1)/n·buffer [RS]."""
    return 2.0 * (n - 1) / n * buffer_bytes if n > 1 else 0.0


def tp_allreduce_buffer_bytes(dims, micro_batch: int, bytes_per_element: int) -> float:
    """One TP all-reduce buffer: b·s·h·β (DOMAIN.md §2, [N21] §2.3)."""
    sh = _shape(dims)
    return float(micro_batch * sh.s * sh.h * bytes_per_element)


def tp_collectives_per_step(dims, pp: int, dp: int, micro_batch: int, recompute: str = "none") -> float:
    """All-reduces one TP rank joins per step: (2 fwd + 2 bwd, +2 with full recompute) per layer of its
    stage (ceil(L/p)) per micro-batch (m = B/(b·d)) [N21]."""
    sh = _shape(dims)
    per_layer = TP_ALLREDUCES_PER_LAYER + (TP_ALLREDUCES_RECOMPUTE if recompute == "full" else 0)
    return per_layer * _ceil_div(sh.L, pp) * sh.B / (micro_batch * dp)


def tp_volume_bytes_per_step(dims, pp: int, dp: int, micro_batch: int, bytes_per_element: int,
                             recompute: str = "none") -> float:
    """All-reduce buffer volume per TP rank and step (collectives × b·s·h·β), the seed's way of
    counting ("680 messages of 125 MB", DOMAIN.md §2)."""
    return tp_collectives_per_step(dims, pp, dp, micro_batch, recompute) * \
        tp_allreduce_buffer_bytes(dims, micro_batch, bytes_per_element)


def tp_bytes_per_step(dims, tp: int, pp: int, dp: int, micro_batch: int, bytes_per_element: int,
                      recompute: str = "none") -> float:
    """Bytes one TP rank sends on the scale-up fabric per step: collectives × 2(t−1)/t × b·s·h·β
    ([N21] §2.3 with ring all-reduce [RS]); 0 for t = 1."""
    return tp_collectives_per_step(dims, pp, dp, micro_batch, recompute) * \
        ring_allreduce_bytes_per_rank(tp_allreduce_buffer_bytes(dims, micro_batch, bytes_per_element), tp)


def pp_boundary_bytes_per_step(dims, bytes_per_element: int) -> float:
    """Bytes across one pipeline stage boundary per step, all d pipelines together, both directions:
    2·B·s·h·β, whatever m or b (DOMAIN.md §2, [N21])."""
    sh = _shape(dims)
    return 2.0 * sh.B * sh.s * sh.h * bytes_per_element


def pp_bytes_per_pipeline_boundary(dims, dp: int, bytes_per_element: int) -> float:
    """Bytes across one stage boundary of ONE pipeline per step, both directions (activations forward,
    gradients backward; half each way): 2·(B/d)·s·h·β. A constant per split: x pipelines cut by a DCI
    link put x times this on it."""
    sh = _shape(dims)
    return 2.0 * sh.B / dp * sh.s * sh.h * bytes_per_element


def dp_allreduce_bytes_per_rank(params: float, tp: int, pp: int, dp: int, bytes_per_element: int) -> float:
    """Bytes each rank sends in the in-site DP gradient all-reduce: 2(d−1)/d · N/(t·p) · β
    (DOMAIN.md §2, ring [RS]; the model split evenly over t·p ranks)."""
    return ring_allreduce_bytes_per_rank(params / (tp * pp) * bytes_per_element, dp)


def hierarchical_dp_bytes_per_site(params: float, bytes_per_element: int, n_sites: int) -> float:
    """Bytes each site sends (and receives) over the DCI per step with hierarchical DP across n sites
    (reduce-scatter in site, all-reduce of the shards across sites, all-gather in site):
    2(n−1)/n · N · β, independent of the site's size; 0 for one site (DOMAIN.md §2)."""
    if n_sites <= 1:
        return 0.0
    return 2.0 * (n_sites - 1) / n_sites * params * bytes_per_element


def dci_required_gbps(bytes_per_step: float, time_budget_s: float) -> float:
    """Gb/s to move bytes within a time budget: bytes·8 / time / 1e9."""
    if time_budget_s <= 0:
        return math.inf if bytes_per_step > 0 else 0.0
    return bytes_per_step * 8.0 / time_budget_s / 1e9


def transfer_time_s(bytes_per_step: float, gbps: float) -> float:
    """Seconds to move bytes at a rate in Gb/s (inverse of dci_required_gbps)."""
    if bytes_per_step <= 0:
        return 0.0
    return math.inf if gbps <= 0 else bytes_per_step * 8.0 / (gbps * 1e9)


def step_time_with_dci(step_time_single_s: float, exposed_dci_s: float) -> float:
    """Step time with the exposed (not overlapped) cross-site time added: T + exposed."""
    return step_time_single_s + exposed_dci_s


def efficiency(step_time_single_s: float, exposed_dci_s: float) -> float:
    """Share of single-site throughput kept: T / (T + exposed)."""
    return step_time_single_s / (step_time_single_s + exposed_dci_s)


def dp_pair_bytes_per_step(params: float, bytes_per_element: int, n_sites: int) -> float:
    """Bytes one active site sends each other active site per step in the cross-site phase of
    hierarchical DP over n sites: 2·N·β/n (the site's 2(n−1)/n·N·β spread evenly over its n−1
    peers); 0 for one site. Links are full duplex: the peer sends as much back."""
    if n_sites <= 1:
        return 0.0
    return 2.0 * params * bytes_per_element / n_sites


def dp_pair_gbps(params: float, bytes_per_element: int, n_sites: int, share: float,
                 step_time_single_s: float) -> float:
    """Gb/s each way between two of n active sites so that their DP phase takes at most share·T of
    the single-site step T: 2·N·β·8/(n·share·T)/1e9. This is the planner's pairwise demand
    (k/n)·φ with k = 16·N·β/(share·1e9·3600) and φ = 3600/T steps per hour (planner.build_model);
    share comes from planner.loss_budgets."""
    return dci_required_gbps(dp_pair_bytes_per_step(params, bytes_per_element, n_sites), share * step_time_single_s)


def one_way_latency_s(distance_km: float, us_per_km: float) -> float:
    """Light in fiber: distance × µs/km (≈ 4.9 µs/km, DOMAIN.md §2)."""
    return distance_km * us_per_km * 1e-6


def pp_fill_drain_latency_s(distance_km: float, us_per_km: float) -> float:
    """A PP boundary across a DCI link adds one one-way latency to the pipeline fill (forward) and one
    to the drain (backward); in steady state it is hidden (DOMAIN.md §2)."""
    return 2.0 * one_way_latency_s(distance_km, us_per_km)


# ---------------------------------------------------------------- traffic of a placement

LINK_CLASSES: tuple[str, ...] = ("campus", "intra_region", "inter_region")


def placement_traffic(params: float, bytes_per_element: int, step_time_single_s: float,
                      pp_bytes_per_pipeline: float, replicas: dict[str, int], region_of: dict[str, str],
                      region_scope: dict[str, str], intra_share: dict[str, float], inter_share: float,
                      split_pipelines: dict[tuple[str, str], int] | None = None,
                      split_scope: dict[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """DCI bytes per step and Gb/s per link class of one placement, by the planner's formulas.

    replicas: whole DP replicas (pipelines) per campus; split_pipelines: pipelines whose PP stages
    are split half and half across a campus pair (a, b), split_scope their link class. region_of maps
    every campus to its region (order: the instance's), region_scope each region to the link class
    of its intra-region DP phase ("campus" when all its routes are building links, else
    "intra_region"), intra_share / inter_share the share of the single-site step T each phase may
    take (planner.loss_budgets).

    A campus is active when it hosts any replica or half of a split pipeline, a region when one of
    its campuses is. Hierarchical DP runs one phase across the j active campuses of each region and
    one across the j active regions: every pair of active sites of a phase exchanges 2·N·β/j bytes
    each way per step (dp_pair_bytes_per_step), sized to take share·T (dp_pair_gbps). Each split
    pipeline puts pp_bytes_per_pipeline (both directions) on its pair's link, streamed over the
    step: half of it each way, (pp_bytes/2)·8/T per direction of the full-duplex link, as the
    planner sizes it (Candidate.pp_gbps_per_split_pipeline).

    Linear for the MILP: DP bytes depend on the placement only through the counts j of active sites
    (one-hot in the MILP), PP bytes are the split-pipeline counts times a constant.
    Link-class totals sum the pairs: DP bytes and Gb/s each way per pair, PP both directions.
    """
    split_pipelines = {k: v for k, v in (split_pipelines or {}).items() if v > 0}
    split_scope = split_scope or {}
    T = step_time_single_s
    active_set = {c for c, x in replicas.items() if x > 0} | {c for pair in split_pipelines for c in pair}
    regions = list(dict.fromkeys(region_of.values()))
    active = {r: [c for c in region_of if region_of[c] == r and c in active_set] for r in regions}
    active_regions = [r for r in regions if active[r]]
    classes = {k: {"pairs": 0, "dp_bytes_per_step": 0.0, "dp_gbps": 0.0, "split_pipelines": 0,
                   "pp_bytes_per_step": 0.0, "pp_gbps": 0.0} for k in LINK_CLASSES}

    def phase(scope: str, group: str, sites: list[str], share: float) -> dict[str, Any]:
        j = len(sites)
        pairs = j * (j - 1) // 2
        pair_bytes = dp_pair_bytes_per_step(params, bytes_per_element, j)
        pair_gbps = dp_pair_gbps(params, bytes_per_element, j, share, T) if j > 1 else 0.0
        classes[scope]["pairs"] += pairs
        classes[scope]["dp_bytes_per_step"] += pairs * pair_bytes
        classes[scope]["dp_gbps"] += pairs * pair_gbps
        return {"link_class": scope, "group": group, "sites": list(sites), "share": share,
                "time_budget_s": share * T,
                "bytes_per_site": hierarchical_dp_bytes_per_site(params, bytes_per_element, j),
                "bytes_per_pair": pair_bytes, "gbps_per_pair": pair_gbps, "gbps_per_site": (j - 1) * pair_gbps}

    phases = [phase(region_scope[r], r, active[r], intra_share[r]) for r in regions if len(active[r]) > 1]
    if len(active_regions) > 1:
        phases.append(phase("inter_region", "regions", active_regions, inter_share))
    pp_links = []
    pp_gbps_one = dci_required_gbps(pp_bytes_per_pipeline / 2, T)      # each way
    for (a, b), count in split_pipelines.items():
        scope = split_scope.get((a, b), "intra_region" if region_of[a] == region_of[b] else "inter_region")
        link = {"a": a, "b": b, "link_class": scope, "pipelines": count,
                "bytes_per_step": count * pp_bytes_per_pipeline, "gbps": count * pp_gbps_one}
        pp_links.append(link)
        classes[scope]["split_pipelines"] += count
        classes[scope]["pp_bytes_per_step"] += link["bytes_per_step"]
        classes[scope]["pp_gbps"] += link["gbps"]
    return {"active_campuses": {r: active[r] for r in active_regions}, "dp_phases": phases,
            "pp_links": pp_links, "link_classes": classes}


# ---------------------------------------------------------------- the vectorized model

def _divisors(n: int) -> list[int]:
    small = [i for i in range(1, int(math.isqrt(n)) + 1) if n % i == 0]
    return sorted(set(small + [n // i for i in small]))


def tp_options(w: Workload) -> list[int]:
    """TP degrees: divisors of the scale-up domain size that also divide heads and KV heads."""
    return [t for t in _divisors(w.domain.accelerators_per_domain) if w.heads % t == 0 and w.kv_heads % t == 0]


def _stage_params(w: Workload, n_l):
    """Parameters of the largest stage: its layers plus the embedding (the first stage holds the input
    embedding, the last the tied output copy; with p = 1 one stage holds both, counted once)."""
    sh = _shape(w)
    return n_l * (_matmul_params_per_layer(sh) + _small_params_per_layer(sh)) + _embedding_params(sh)


def _static_memory_bytes(w: Workload, t, n_l, d):
    """Weights β + fp32 gradients 4 + Adam states 12 (/d if sharded) bytes per parameter of the stage / t."""
    params_rank = _stage_params(w, n_l) / t
    shard = d if w.distributed_optimizer else 1.0
    return params_rank * (w.bytes_per_element + GRAD_BYTES_PER_PARAM), params_rank * ADAM_STATE_BYTES_PER_PARAM / shard


def _usable_bytes(w: Workload) -> float:
    return w.accelerator.hbm_gb * 1e9 * (1.0 - w.hbm_reserve_fraction)


class _Arrays:
    """Common per-row quantities of the model (numpy arrays, broadcastable)."""

    def __init__(self, w: Workload, t, p, d, b, v, rc):
        sh = self.sh = _shape(w)
        self.t = np.asarray(t, dtype=np.float64)
        self.p_i = np.asarray(p, dtype=np.int64)
        self.p = self.p_i.astype(np.float64)
        self.d = np.asarray(d, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.v = np.asarray(v, dtype=np.float64)
        rc = np.asarray(rc)
        self.none, self.sel, self.full = rc == 0, rc == 1, rc == 2
        self.n_l = ((sh.L + self.p_i - 1) // self.p_i).astype(np.float64)   # layers on the largest stage
        self.m = sh.B / (self.b * self.d)                                     # micro-batches per pipeline
        # [K22] activation bytes per layer and micro-batch per accelerator
        rep, par = _act_coefs(sh)
        s, h = float(sh.s), float(sh.h)
        self.t_sp = self.t if w.sequence_parallel else 1.0
        self.act_main = s * self.b * h * (rep / self.t_sp + par / self.t)
        self.act_score = ACT_SCORE_COEF * sh.a * s * s * self.b / self.t
        self.logits = LOGIT_BYTES_PER_ELEMENT * s * self.b * sh.V / self.t


def _memory(w: Workload, x: _Arrays) -> dict[str, np.ndarray]:
    """Worst-stage memory per accelerator, bytes."""
    sh = x.sh
    weights_grads, states = _static_memory_bytes(w, x.t, x.n_l, x.d)
    params_rank = _stage_params(w, x.n_l) / x.t
    stored = np.where(x.none, x.act_main + x.act_score,
                      np.where(x.sel, x.act_main, FULL_RECOMPUTE_STORED_COEF * sh.s * x.b * sh.h / x.t_sp))
    working = np.where(x.full, x.act_main + x.act_score, 0.0)    # the layer being recomputed
    inflight = np.minimum(x.p, x.m)
    inflight = np.where(x.v > 1, inflight * (1 + (x.p - 1) / (x.p * x.v)), inflight)
    act_first = inflight * x.n_l * stored + working + np.where(x.p_i == 1, x.logits, 0.0)
    act_last = x.n_l * stored + working + x.logits
    activations = np.maximum(act_first, act_last)
    weights = params_rank * w.bytes_per_element
    return {"weights": weights, "grads": weights_grads - weights, "states": states,
            "activations": activations, "need": weights_grads + states + activations}


def _model(w: Workload, t, p, d, b, v, rc, mem: dict | None = None) -> dict[str, np.ndarray]:
    """All terms for arrays (broadcastable) of t, p, d, b, v and recompute codes rc."""
    x = _Arrays(w, t, p, d, b, v, rc)
    sh = x.sh
    acc, dom = w.accelerator, w.domain
    t, p, d, b, v, m, n_l = x.t, x.p, x.d, x.b, x.v, x.m, x.n_l
    none, sel, full = x.none, x.sel, x.full
    beta = float(w.bytes_per_element)
    s, h, V = float(sh.s), float(sh.h), float(sh.V)
    peak = acc.peak_dense_bf16_tflops * 1e12
    gemm_rate = peak * acc.achievable_gemm_fraction
    hbm = acc.hbm_bandwidth_gbps * 1e9 / 8
    nvl = dom.scale_up_gbps_per_accelerator * 1e9 / 8
    nic = acc.scale_out_nic_gbps * 1e9 / 8

    # --- GEMM FLOPs per micro-batch on the slowest stage, per accelerator
    f_mat = 2 * _matmul_params_per_layer(sh) * b * s          # forward, one layer, whole TP group
    f_att = ATTN_FLOPS_COEF * s * s * h * b
    f_log = 2 * h * V * b * s
    mat_passes = np.where(full, 4.0, 3.0)
    att_passes = np.where(none, 3.0, 4.0)
    gemm_mb = (n_l * (mat_passes * f_mat + att_passes * f_att) + 3 * f_log) / t / gemm_rate
    gemm_fwd_mb = (n_l * (f_mat + f_att) + f_log) / t / gemm_rate

    # --- non-GEMM (memory-bound) time per micro-batch
    main_passes = np.where(full, 4.0, 3.0)
    score_passes = np.where(none, 3.0, 4.0)
    ng_factor = acc.nongemm_hbm_bytes_per_activation_byte    # catalog, with its source
    ng_mb = ng_factor * (n_l * (main_passes * x.act_main + score_passes * x.act_score)
                                      + 3 * x.logits) / hbm
    ng_fwd_mb = ng_factor * (n_l * (x.act_main + x.act_score) + x.logits) / hbm

    # --- TP, PP per micro-batch
    tp_buf = b * s * h * beta
    n_coll = n_l * (TP_ALLREDUCES_PER_LAYER + np.where(full, TP_ALLREDUCES_RECOMPUTE, 0))
    tp_mb = n_coll * np.where(t > 1, 2 * (t - 1) / t, 0.0) * tp_buf / nvl
    pp_mb = np.where(p > 1, PP_TRANSFERS_PER_MICROBATCH * v * tp_buf / t / nic, 0.0)

    work_mb = gemm_mb + ng_mb
    gemm_s = m * gemm_mb
    nongemm_s = m * ng_mb
    compute_s = gemm_s + nongemm_s
    tp_comm_s = m * tp_mb
    bubble_s = (p - 1) / v * (work_mb + tp_mb)
    pp_comm_s = (m + (p - 1) / v) * pp_mb

    # --- in-site DP, overlapped with the last micro-batch's backward pass
    params_rank = _stage_params(w, n_l) / t
    dp_total = np.where(d > 1, 2 * (d - 1) / np.maximum(d, 1) * params_rank * beta / nic, 0.0)
    bwd_window = (gemm_mb - gemm_fwd_mb) + (ng_mb - ng_fwd_mb)
    dp_comm_s = np.maximum(0.0, dp_total - bwd_window)

    # --- optimizer step, memory-bound
    shard = d if w.distributed_optimizer else 1.0
    optimizer_s = params_rank * (GRAD_BYTES_PER_PARAM + 2 * ADAM_STATE_BYTES_PER_PARAM + beta) / shard / hbm

    step = compute_s + tp_comm_s + bubble_s + pp_comm_s + dp_comm_s + optimizer_s
    G = t * p * d
    hw_flops = np.where(full, _flops_per_step(sh, "full"),
                        np.where(sel, _flops_per_step(sh, "selective"), _flops_per_step(sh, "none")))
    mf = _flops_per_step(sh, "none")

    if mem is None:
        mem = _memory(w, x)
    capacity = acc.hbm_gb * 1e9
    reserve = capacity * w.hbm_reserve_fraction
    need = mem["need"]
    return {
        "layers_per_stage": n_l, "micro_batches": m,
        "gemm_s": gemm_s, "nongemm_s": nongemm_s, "compute_s": compute_s, "bubble_s": bubble_s,
        "tp_comm_s": tp_comm_s, "pp_comm_s": pp_comm_s, "dp_comm_s": dp_comm_s, "dp_comm_total_s": dp_total,
        "optimizer_s": optimizer_s, "step_time_s": step,
        "tokens_per_s": sh.B * sh.s / step, "mfu": mf / (G * peak * step),
        "tflops_per_accelerator": hw_flops / (G * step) / 1e12,
        "params_per_accelerator": params_rank,
        "weights_gb": mem["weights"] / 1e9, "grads_gb": mem["grads"] / 1e9, "optimizer_gb": mem["states"] / 1e9,
        "activations_gb": mem["activations"] / 1e9, "memory_gb": need / 1e9,
        "reserve_gb": np.full_like(need, reserve / 1e9), "capacity_gb": np.full_like(need, capacity / 1e9),
        "fits": need <= _usable_bytes(w),
    }


# ---------------------------------------------------------------- split table

@dataclass
class SplitTable:
    """Memory-feasible splits, one row per index; every field an equal-length numpy array.

    recompute holds the mode names (str array); recompute_code the codes into RECOMPUTE_MODES.
    Times in s, memory in GB per accelerator (worst stage), dp_comm_s is the exposed in-site part.
    """

    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    micro_batch: np.ndarray
    interleave: np.ndarray
    recompute_code: np.ndarray
    recompute: np.ndarray
    accelerators: np.ndarray
    replica_accelerators: np.ndarray
    micro_batches: np.ndarray
    layers_per_stage: np.ndarray
    memory_gb: np.ndarray
    weights_gb: np.ndarray
    grads_gb: np.ndarray
    optimizer_gb: np.ndarray
    activations_gb: np.ndarray
    step_time_s: np.ndarray
    compute_s: np.ndarray
    gemm_s: np.ndarray
    nongemm_s: np.ndarray
    bubble_s: np.ndarray
    tp_comm_s: np.ndarray
    pp_comm_s: np.ndarray
    dp_comm_s: np.ndarray
    optimizer_s: np.ndarray
    tokens_per_s: np.ndarray
    mfu: np.ndarray
    tflops_per_accelerator: np.ndarray
    recompute_names: tuple[str, ...] = RECOMPUTE_MODES
    candidates_considered: int = 0      # rows before the memory filter
    enumerate_s: float = 0.0

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    def _array_fields(self) -> list[str]:
        return [f.name for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)]

    def row(self, i: int) -> dict[str, Any]:
        """One split as plain Python values (recompute as its name)."""
        out = {}
        for name in self._array_fields():
            x = getattr(self, name)[i]
            out[name] = str(x) if name == "recompute" else x.item()
        return out

    def take(self, index) -> "SplitTable":
        """A table of the given rows (indices or boolean mask)."""
        kw = {name: getattr(self, name)[index] for name in self._array_fields()}
        return SplitTable(**kw, recompute_names=self.recompute_names,
                          candidates_considered=self.candidates_considered, enumerate_s=self.enumerate_s)


_TABLE_TERMS = ("micro_batches", "layers_per_stage", "memory_gb", "weights_gb", "grads_gb", "optimizer_gb",
                "activations_gb", "step_time_s", "compute_s", "gemm_s", "nongemm_s", "bubble_s", "tp_comm_s",
                "pp_comm_s", "dp_comm_s", "optimizer_s", "tokens_per_s", "mfu", "tflops_per_accelerator")


def enumerate_splits(w: Workload, max_accelerators: int, min_accelerators: int = 1) -> SplitTable:
    """Every memory-feasible (t, p, d, b, v, recompute) with min ≤ t·p·d ≤ max accelerators, vectorized.
    Rules: see the module docstring (Enumeration rules)."""
    start = time.perf_counter()
    B, L = w.global_batch_sequences, w.layers
    t_opt = np.array(tp_options(w), dtype=np.int64)
    p_opt = np.arange(1, L + 1, dtype=np.int64)
    db = [(d, b) for b in sorted(set(w.micro_batch_sizes)) if B % b == 0 for d in _divisors(B // b)]
    d_opt = np.array([x[0] for x in db], dtype=np.int64).reshape(-1)
    b_opt = np.array([x[1] for x in db], dtype=np.int64).reshape(-1)
    v_opt = np.array(sorted(set(w.interleave_options)), dtype=np.int64)
    r_opt = np.array([RECOMPUTE_CODE[r] for r in RECOMPUTE_MODES if r in w.recompute_modes], dtype=np.int8)
    if min(len(t_opt), len(d_opt), len(v_opt), len(r_opt)) == 0:
        return _empty_table(start)

    # validity on the (t, p, db, v) grid; recompute does not change it
    T = t_opt[:, None, None, None]
    P = p_opt[None, :, None, None]
    D = d_opt[None, None, :, None]
    Bm = b_opt[None, None, :, None]
    Vv = v_opt[None, None, None, :]
    G = T * P * D
    ok = (G >= min_accelerators) & (G <= max_accelerators)
    n_l = (L + P - 1) // P
    m = B // (Bm * D)
    ok = ok & ((Vv == 1) | ((P > 1) & (n_l % Vv == 0) & (m % P == 0)))
    nr = len(r_opt)
    considered = int(ok.sum()) * nr
    # weights, gradients and optimizer states alone must fit (cheap, on the grid)
    wg, st = _static_memory_bytes(w, T.astype(np.float64), n_l.astype(np.float64), D.astype(np.float64))
    ok = ok & (wg + st <= _usable_bytes(w))
    it, ip, idb, iv = np.nonzero(ok)
    it, ip, idb, iv = (np.repeat(x, nr) for x in (it, ip, idb, iv))
    ir = np.tile(np.arange(nr), len(it) // nr)
    t, p, d, b, v, rc = t_opt[it], p_opt[ip], d_opt[idb], b_opt[idb], v_opt[iv], r_opt[ir]
    mem = _memory(w, _Arrays(w, t, p, d, b, v, rc))
    keep = mem["need"] <= _usable_bytes(w)
    t, p, d, b, v, rc = t[keep], p[keep], d[keep], b[keep], v[keep], rc[keep]
    terms = _model(w, t, p, d, b, v, rc, mem={k: a[keep] for k, a in mem.items()})
    names = np.array(RECOMPUTE_MODES)
    table = SplitTable(
        tp=t, pp=p, dp=d, micro_batch=b, interleave=v, recompute_code=rc, recompute=names[rc],
        accelerators=t * p * d, replica_accelerators=t * p,
        **{k: np.asarray(terms[k]) for k in _TABLE_TERMS},
        candidates_considered=considered)
    table.micro_batches = table.micro_batches.astype(np.int64)
    table.layers_per_stage = table.layers_per_stage.astype(np.int64)
    table.enumerate_s = time.perf_counter() - start
    return table


def _empty_table(start: float) -> SplitTable:
    z = {f.name: np.zeros(0) for f in fields(SplitTable)
         if f.name not in ("recompute_names", "candidates_considered", "enumerate_s")}
    z["recompute"] = np.zeros(0, dtype="<U9")
    for k in ("tp", "pp", "dp", "micro_batch", "interleave", "accelerators", "replica_accelerators",
              "micro_batches", "layers_per_stage"):
        z[k] = np.zeros(0, dtype=np.int64)
    z["recompute_code"] = np.zeros(0, dtype=np.int8)
    return SplitTable(**z, enumerate_s=time.perf_counter() - start)


# ---------------------------------------------------------------- one split

_MEMORY_TERMS = (("weights_gb", "weights"), ("grads_gb", "gradients"), ("optimizer_gb", "optimizer states"),
                 ("activations_gb", "activations"))


def split_rule_violations(w: Workload, tp: int, pp: int, dp: int, micro_batch: int = 1,
                          interleave: int = 1) -> list[str]:
    """The enumeration rules a split breaks, each as a sentence (empty list: none)."""
    bad = []
    n = w.domain.accelerators_per_domain
    if n % tp:
        bad.append(f"TP {tp} does not divide the scale-up domain size ({w.domain_name or 'domain'}: {n} accelerators); "
                   "TP must stay inside one domain")
    if w.heads % tp or w.kv_heads % tp:
        bad.append(f"TP {tp} does not divide the attention heads ({w.heads}, KV heads {w.kv_heads})")
    if pp > w.layers:
        bad.append(f"PP {pp} is more than the {w.layers} layers")
    B = w.global_batch_sequences
    if B % (dp * micro_batch):
        bad.append(f"global batch {B} is not a multiple of DP x micro-batch = {dp} x {micro_batch} = {dp * micro_batch}")
    if interleave > 1:
        n_l = _ceil_div(w.layers, pp)
        if pp == 1:
            bad.append(f"interleave {interleave} needs pipeline parallelism (PP > 1)")
        elif n_l % interleave:
            bad.append(f"interleave {interleave} does not divide the {n_l} layers per stage")
        elif B % (dp * micro_batch) == 0 and (B // (dp * micro_batch)) % pp:
            bad.append(f"interleaved schedule needs the {B // (dp * micro_batch)} micro-batches per pipeline "
                       f"to be a multiple of PP {pp}")
    return bad


def evaluate_split(w: Workload, tp: int, pp: int, dp: int, micro_batch: int = 1, interleave: int = 1,
                   recompute: str = "selective") -> dict[str, Any]:
    """All time, memory and traffic terms of one split, with feasible and, if not, the reason
    (which rule fails, or which memory term is largest and by how much the stage is over)."""
    for name, val in (("tp", tp), ("pp", pp), ("dp", dp), ("micro_batch", micro_batch), ("interleave", interleave)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{name} must be a whole number >= 1 (got {val!r})")
    if recompute not in RECOMPUTE_CODE:
        raise ValueError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)} (got {recompute!r})")
    tp, pp, dp, micro_batch, interleave = int(tp), int(pp), int(dp), int(micro_batch), int(interleave)
    terms = _model(w, tp, min(pp, w.layers), dp, micro_batch, interleave, RECOMPUTE_CODE[recompute])
    out: dict[str, Any] = {"tp": tp, "pp": pp, "dp": dp, "micro_batch": micro_batch, "interleave": interleave,
                           "recompute": recompute, "accelerators": tp * pp * dp, "replica_accelerators": tp * pp}
    for k, val in terms.items():
        out[k] = val.item() if isinstance(val, np.ndarray) else val
    fits = bool(out.pop("fits"))
    out["layers_per_stage"] = int(out["layers_per_stage"])
    usable = out["capacity_gb"] - out["reserve_gb"]
    out["usable_gb"] = usable
    params = parameter_count(w)
    beta = w.bytes_per_element
    out["params"] = params
    out["model_flops_per_step"] = model_flops_per_step(w, "none")
    out["hardware_flops_per_step"] = model_flops_per_step(w, recompute)
    out["tp_collectives_per_step"] = tp_collectives_per_step(w, pp, dp, micro_batch, recompute)
    out["tp_buffer_bytes"] = tp_allreduce_buffer_bytes(w, micro_batch, beta)
    out["tp_bytes_per_step"] = tp_bytes_per_step(w, tp, pp, dp, micro_batch, beta, recompute)
    out["pp_bytes_per_boundary"] = pp_boundary_bytes_per_step(w, beta) if pp > 1 else 0.0
    out["pp_bytes_per_pipeline_boundary"] = pp_bytes_per_pipeline_boundary(w, dp, beta) if pp > 1 else 0.0
    out["dp_bytes_per_rank"] = ring_allreduce_bytes_per_rank(out["params_per_accelerator"] * beta, dp)
    reasons = split_rule_violations(w, tp, pp, dp, micro_batch, interleave)
    if not fits:
        over = out["memory_gb"] - usable
        name, label = max(_MEMORY_TERMS, key=lambda kv: out[kv[0]])
        parts = ", ".join(f"{lab} {out[key]:.1f}" for key, lab in _MEMORY_TERMS)
        reasons.append(
            f"memory: the worst pipeline stage needs {out['memory_gb']:.1f} GB per accelerator ({parts}) but "
            f"{out['capacity_gb']:g} GB of HBM less the {w.hbm_reserve_fraction:.0%} reserve leaves {usable:.1f} GB: "
            f"{over:.1f} GB over, largest term {label} ({out[name]:.1f} GB)")
    out["feasible"] = not reasons
    out["reasons"] = reasons
    out["reason"] = "; ".join(reasons)
    return out
