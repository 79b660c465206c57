"""The planning MILP: split, placement, DCI provisioning and cables, chosen together.

build_model() turns a validated instance into a LinearModel (pure, no solver);
lp.solve() solves it on any backend; plan.extract_plan() turns the solution into
a plan; verify.verify_plan() re-checks that plan without the model.

Formulation (units: Gb/s, USD, W, s):
- split: one candidate k of the performance model's Pareto front, z_k binary;
- placement: x[c,k] whole DP replicas (pipelines) at campus c; n[e,k] pipelines
  split by PP stages across the two campuses of an intra-region route e (half
  the stages each); sum_c x + sum_e n = d_k z_k; accelerators per campus capped;
- activity: y_c campus hosts work, v_r region hosts work; the number of active
  campuses of a region and of active regions is one-hot encoded (kappa, rho) so
  hierarchical all-reduce volumes 2(n-1)/n N beta are exact;
- rates: phi = sum_k z_k 3600 / T_k (steps per hour); the product phi * one-hot is linearised
  exactly (McCormick on a binary); pairwise DP demand between two active sites
  of a group of n is 2 N beta / n per step, to be moved within the phase's time
  budget (loss bound x single-site step time);
- routing: each pairwise demand and each inter-region target is carried on the
  k shortest fiber paths; job traffic on a route <= utilisation cap x capacity;
  PP traffic of split pipelines streams during compute, DP sync after it, so
  each must fit the headroom on its own;
- DCI per route: wavelengths per module mode, fiber pairs lit per (mode, band
  plan) with floor(usable GHz / channel GHz) channels per pair (grey optics: one
  per pair), modules at both ends, terminals per pair end, in-line amplifiers
  per span, fiber IRU per pair-km;
- cables: one type per campus and connection class among those whose reach
  covers the class length; count = links per accelerator x accelerators used;
- power per campus (IT power x PUE) <= budget; capex <= budget; targets.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from . import network as net
from . import performance as perf
from .errors import InputError, Problem
from .instance import LoadedInstance
from .lp import Expr, LinearModel, Var, lsum

GBPS_PER_PBPS = 1e6
MW = 1e6
SECONDS_PER_HOUR = 3600.0


@dataclass
class Candidate:
    index: int          # row in the split table
    tp: int
    pp: int
    dp: int
    micro_batch: int
    interleave: int
    recompute: str
    accelerators: int
    replica_accelerators: int
    step_time_s: float
    tokens_per_s: float
    mfu: float
    pp_gbps_per_split_pipeline: float   # one pipeline's PP boundary stream (each direction)


@dataclass
class PlanningModel:
    li: LoadedInstance
    lm: LinearModel
    candidates: list[Candidate]
    v: dict = field(default_factory=dict)       # handles to variables by family
    e: dict = field(default_factory=dict)       # handles to expressions
    facts: dict = field(default_factory=dict)   # coefficients the plan reports
    build_s: float = 0.0


# ---------------------------------------------------------------- candidates

def power_limited_accelerators(li: LoadedInstance) -> int:
    """Accelerators the campuses could power at most (an upper bound for the search)."""
    total = 0
    for c in li.campuses:
        dom = li.catalog.scale_up_domains[c.scale_up_domain]
        by_power = c.power_budget_mw * MW / (li.campus_pue(c) * dom.power_w_per_accelerator)
        total += min(li.accelerators_at(c), int(by_power))
    return total


def select_candidates(li: LoadedInstance, table=None) -> tuple[list[Candidate], int]:
    """Pareto front of (accelerators ↓ better fewer, tokens/s ↑, replica size ↓), thinned."""
    w = perf.workload_from_instance(li)
    job = li.instance.job
    max_acc = power_limited_accelerators(li)
    if job.max_accelerators:
        max_acc = min(max_acc, job.max_accelerators)
    if table is None:
        table = perf.enumerate_splits(w, max_accelerators=max(1, max_acc))
    n_all = len(table)
    if n_all == 0:
        return [], 0
    acc = np.asarray(table.accelerators, dtype=np.int64)
    tok = np.asarray(table.tokens_per_s, dtype=float)
    rep = np.asarray(table.replica_accelerators, dtype=np.int64)
    keep = np.ones(n_all, dtype=bool)
    if job.min_accelerators:
        keep &= acc >= job.min_accelerators
    if job.min_tokens_per_s:
        keep &= tok >= job.min_tokens_per_s
    idx = np.nonzero(keep)[0]
    # deterministic order: tokens/s descending, then fewer accelerators, smaller replicas
    order = idx[np.lexsort((rep[idx], acc[idx], -tok[idx]))]
    front: list[int] = []
    for i in order:
        dominated = False
        for j in front:
            if acc[j] <= acc[i] and tok[j] >= tok[i] and rep[j] <= rep[i]:
                dominated = True
                break
        if not dominated:
            front.append(int(i))
    limit = job.max_candidate_splits
    if len(front) > limit:
        # spread over the accelerator range (log scale) and keep the fastest
        front_sorted = sorted(front, key=lambda i: (acc[i], -tok[i], rep[i]))
        logs = np.log(acc[front_sorted].astype(float))
        targets = np.linspace(logs.min(), logs.max(), limit)
        chosen: list[int] = []
        for t in targets:
            pos = int(np.argmin(np.abs(logs - t)))
            # nearest not yet chosen
            for off in range(len(front_sorted)):
                for p in (pos + off, pos - off):
                    if 0 <= p < len(front_sorted) and front_sorted[p] not in chosen:
                        chosen.append(front_sorted[p])
                        break
                else:
                    continue
                break
        front = chosen
    cands = candidates_from_rows(w, table, sorted(front, key=lambda i: (-tok[i], acc[i], rep[i])))
    return cands, n_all


def candidates_from_rows(w, table, rows) -> list[Candidate]:
    """Candidate records for rows of the split table, in the order given."""
    dims = w.dims
    cands = []
    for i in rows:
        row = table.row(int(i))
        pp_bytes = perf.pp_bytes_per_pipeline_boundary(dims, int(row["dp"]), w.bytes_per_element)
        cands.append(Candidate(
            index=int(i), tp=int(row["tp"]), pp=int(row["pp"]), dp=int(row["dp"]),
            micro_batch=int(row["micro_batch"]), interleave=int(row["interleave"]),
            recompute=str(row["recompute"]), accelerators=int(row["accelerators"]),
            replica_accelerators=int(row["replica_accelerators"]), step_time_s=float(row["step_time_s"]),
            tokens_per_s=float(row["tokens_per_s"]), mfu=float(row["mfu"]),
            # forward activations one way, backward gradients the other: each direction of
            # the full-duplex DCI carries half the boundary's bytes
            pp_gbps_per_split_pipeline=perf.dci_required_gbps(pp_bytes / 2, float(row["step_time_s"]))))
    return cands


@dataclass
class RankedSplits:
    """Every split of the enumeration that may have a plan, fastest first (max-throughput)."""
    workload: object
    table: object
    rows: list[int]          # rows of the table, tokens/s descending (ties: fewer accelerators, smaller replicas)
    n_enumerated: int        # splits that fit memory (the table's size)
    n_dropped_by_packing: int
    dropped_tokens: object = None   # tokens/s of the splits dropped for want of room (power, packing)

    def candidates(self, start: int, stop: int) -> list[Candidate]:
        return candidates_from_rows(self.workload, self.table, self.rows[start:stop])

    def candidates_from(self, rows: list[int]) -> list[Candidate]:
        return candidates_from_rows(self.workload, self.table, rows)

    def tokens_at(self, pos: int) -> float:
        return float(self.table.tokens_per_s[self.rows[pos]])


def ranked_splits(li: LoadedInstance, table=None) -> RankedSplits:
    """All memory-feasible splits in descending tokens/s, for the exact max-throughput search.

    Unlike the Pareto front of select_candidates, nothing is pruned by dominance: a
    faster split needs more DCI bandwidth (DP sync in a share of a shorter step), so a
    split dominated in accelerators and speed may have a plan where every faster one
    has none (measured: the front thinned to 24 splits missed the default instance's
    optimum, 3,292,291 against 2,901,953 tokens/s). Dropped are only splits that
    cannot have a plan: more accelerators than the campuses' power feeds
    (power_limited_accelerators), below the job's minimums, or replicas that do not
    pack: sum over campuses of floor(cap / replica) < DP degree (with split
    pipelines allowed, in halves of a replica). Splits identical in every figure the
    MILP reads are one."""
    w = perf.workload_from_instance(li)
    job = li.instance.job
    max_acc = power_limited_accelerators(li)
    if job.max_accelerators:
        max_acc = min(max_acc, job.max_accelerators)
    if table is None:
        table = perf.enumerate_splits(w, max_accelerators=max(1, max_acc))
    n_all = len(table)
    if n_all == 0:
        return RankedSplits(w, table, [], 0, 0, np.zeros(0))
    acc = np.asarray(table.accelerators, dtype=np.int64)
    tok = np.asarray(table.tokens_per_s, dtype=float)
    rep = np.asarray(table.replica_accelerators, dtype=np.int64)
    dp = np.asarray(table.dp, dtype=np.int64)
    pp = np.asarray(table.pp, dtype=np.int64)
    keep = acc <= max_acc
    if job.min_accelerators:
        keep &= acc >= job.min_accelerators
    if job.min_tokens_per_s:
        keep &= tok >= job.min_tokens_per_s
    caps = np.array([campus_accelerator_cap(li, c) for c in li.campuses], dtype=np.int64)
    whole = (caps[None, :] // rep[:, None]).sum(axis=1) >= dp
    if li.instance.network.allow_split_pipelines:
        halves = (caps[None, :] // np.maximum(1, rep[:, None] // 2)).sum(axis=1) >= 2 * dp
        packs = np.where(pp % 2 == 0, whole | halves, whole)
    else:
        packs = whole
    no_room = (keep & ~packs) | (~(acc <= max_acc) & _meets_job(job, acc, tok))
    dropped = int((keep & ~packs).sum())
    keep &= packs
    idx = np.nonzero(keep)[0]
    order = idx[np.lexsort((idx, rep[idx], acc[idx], -tok[idx]))]
    step = np.asarray(table.step_time_s, dtype=float)
    seen, rows = set(), []
    for i in order:
        # what build_model reads of a split (micro-batch only through the step time)
        sig = (int(rep[i]), int(dp[i]), int(pp[i]), float(step[i]), float(tok[i]))
        if sig in seen:
            continue
        seen.add(sig)
        rows.append(int(i))
    return RankedSplits(w, table, rows, n_all, dropped, np.sort(tok[no_room])[::-1])


def _meets_job(job, acc, tok):
    ok = np.ones(len(acc), dtype=bool)
    if job.min_accelerators:
        ok &= acc >= job.min_accelerators
    if job.min_tokens_per_s:
        ok &= tok >= job.min_tokens_per_s
    return ok


def cable_types(li: LoadedInstance, campus, cls) -> list[str]:
    """Cable types whose port and lane rate match a connection class and whose reach covers
    the campus's length for it, in catalog-name order."""
    cat = li.catalog
    length = campus.fabric_lengths_m.get(cls.name, cls.default_length_m)
    return [t for t in sorted(cat.cables) if cat.cables[t].port_gbps == cls.port_gbps
            and cat.cables[t].lane_gbps == cls.lane_gbps and cat.cables[t].reach_m >= length]


def campus_accelerator_power_w(li: LoadedInstance, campus) -> float:
    """IT power one accelerator draws at least: its share of the domain's power and the
    least-power qualifying cable of every connection class (W, before PUE)."""
    dom = li.catalog.scale_up_domains[campus.scale_up_domain]
    per_acc_w = dom.power_w_per_accelerator
    for cls in dom.connection_classes:
        types = cable_types(li, campus, cls)
        if types:
            per_acc_w += cls.links_per_accelerator * min(li.catalog.cables[t].power_w_per_link for t in types)
    return per_acc_w


def campus_cable_usd_per_accelerator(li: LoadedInstance, campus) -> float:
    """Cable capex one accelerator adds at least: the cheapest qualifying cable of every
    connection class, links per accelerator times its price (USD)."""
    dom = li.catalog.scale_up_domains[campus.scale_up_domain]
    usd = 0.0
    for cls in dom.connection_classes:
        types = cable_types(li, campus, cls)
        if types:
            usd += cls.links_per_accelerator * min(li.catalog.cables[t].price_usd_per_link for t in types)
    return usd


def cable_capex_floor_usd(li: LoadedInstance, accelerators) -> np.ndarray:
    """Least cable capex of placing N accelerators, for each N given: the campuses filled
    cheapest per accelerator first up to their power caps (a fractional knapsack, so a
    lower bound: whole domains, replicas and cable counts only add). Infinite where
    the campuses cannot hold N."""
    n = np.asarray(accelerators, dtype=float)
    per = sorted((campus_cable_usd_per_accelerator(li, c), campus_accelerator_cap(li, c)) for c in li.campuses)
    floor = np.zeros_like(n)
    left = n.copy()
    for usd, cap in per:
        take = np.minimum(left, cap)
        floor += take * usd
        left -= take
    floor[left > 0] = np.inf
    return floor


def campus_accelerator_cap(li: LoadedInstance, campus) -> int:
    """Accelerators a campus can host within its power budget, each drawing at least
    campus_accelerator_power_w times PUE (DCI equipment only adds to that). A valid bound
    that tightens the placement columns and the activity rows of the MILP when campuses
    are power-bound."""
    by_power = campus.power_budget_mw * MW / (li.campus_pue(campus) * campus_accelerator_power_w(li, campus))
    return min(li.accelerators_at(campus), int(math.floor(by_power * (1 + 1e-12))))


# ---------------------------------------------------------------- loss budgets

def loss_budgets(li: LoadedInstance) -> tuple[dict[str, float], float]:
    """Share of the single-site step each DP phase may add.

    The intra-region phases (reduce-scatter + all-gather between campuses) get
    the region's bound (`campus` if all its routes are building links, else
    `intra_region`); the inter-region phase gets what is left of the
    `inter_region` bound, so a job spanning regions loses at most that bound.
    """
    b = li.instance.job.efficiency_loss_bound
    intra = {}
    for region in li.instance.regions:
        names = {c.name for c in region.campuses}
        scopes = {li.route_scope(r) for r in li.instance.routes if r.a in names and r.b in names}
        intra[region.name] = b.campus if scopes and scopes == {"campus"} else b.intra_region
    inter = b.inter_region - max(intra.values())
    if len(li.instance.regions) > 1 and inter <= 0:
        raise InputError([Problem(li.path, "job.efficiency_loss_bound.inter_region",
                                  f"must be larger than the intra-region bound ({max(intra.values()):g}): "
                                  "the inter-region all-reduce phase gets the difference")])
    return intra, inter


def pp_latency_room(li: LoadedInstance, intra: dict[str, float], inter: float) -> float:
    """Share of the single-site step a split pipeline's fill/drain latency may add: what
    the widest loss bound (as verify.py applies it) leaves once the DP phases use their
    whole budgets. Tiny models with ~1 ms steps found it missing: a 61 km split added
    0.6 ms of latency, a 45 % loss."""
    b = li.instance.job.efficiency_loss_bound
    widest = max(b.intra_region, b.campus)
    room = widest / (1 - widest) - max(intra.values())
    if len(li.instance.regions) > 1:
        room = min(room, b.inter_region / (1 - b.inter_region) - (max(intra.values()) + inter))
    return max(0.0, room * (1 - 1e-6))


# ---------------------------------------------------------------- build

def build_model(li: LoadedInstance, candidates: list[Candidate] | None = None,
                objective: str | None = None, elastic: bool = False) -> PlanningModel:
    start = time.perf_counter()
    if candidates is None:
        candidates, _ = select_candidates(li)
    inst = li.instance
    cat = li.catalog
    lm = LinearModel(inst.name)
    pm = PlanningModel(li, lm, candidates)
    V, E, F = pm.v, pm.e, pm.facts
    objective = objective or inst.objective
    campuses = li.campuses
    region_of = li.region_of
    routes = inst.routes
    u_max = inst.network.link_utilization_max
    w = perf.workload_from_instance(li)
    params = perf.parameter_count(w.dims)
    beta = w.bytes_per_element
    intra_budget, inter_budget = loss_budgets(li)
    F.update(params=params, bytes_per_element=beta, intra_budget=intra_budget, inter_budget=inter_budget)

    # elastic slack: penalised violation of budgets, fiber pairs and targets (infeasibility
    # explanation). Each slack is a fraction of its own limit (violation = value x unit_scale),
    # so penalties are O(1): cost coefficients like 1/(50 Pbit/s in Gb/s) = 2e-8 made HiGHS
    # 1.13's MIP presolve return wrong optima.
    slacks: dict[str, tuple[Var, float]] = {}

    def slack(name: str, unit_scale: float) -> Expr:
        if not elastic:
            return Expr()
        s = lm.var(f"slack[{name}]")
        slacks[name] = (s, unit_scale)
        return Expr({s.index: unit_scale})
    V["slack"] = slacks

    K = range(len(candidates))
    z = [lm.binary(f"split[{k}]") for k in K]
    V["z"] = z
    if candidates:
        lm.add(lsum(z) == 1, "one_split")
    elif not elastic:
        lm.add(Expr({}, 1.0) <= 0, "no_split")  # pragma: no cover - caught before build
    # phi: steps per hour of the chosen split (per hour, not per second, keeps the
    # McCormick rows well scaled for every backend, CP-SAT's scaling included)
    phi_max = max((SECONDS_PER_HOUR / c.step_time_s for c in candidates), default=0.0)
    phi = lsum((SECONDS_PER_HOUR / candidates[k].step_time_s) * z[k] for k in K)

    # ---- placement
    # accelerators a campus can hold: what it has, and (unless the elastic model may
    # exceed the budget) what its power budget feeds
    cap_at = {c.name: li.accelerators_at(c) if elastic else campus_accelerator_cap(li, c) for c in campuses}
    x: dict[tuple[str, int], Var] = {}
    for c in campuses:
        avail = cap_at[c.name]
        for k in K:
            cap = min(candidates[k].dp, avail // candidates[k].replica_accelerators)
            if cap > 0:
                x[c.name, k] = lm.var(f"replicas[{c.name},{k}]", 0, cap, True)
    intra_routes = [i for i, r in enumerate(routes) if region_of[r.a] == region_of[r.b]]
    n: dict[tuple[int, int], Var] = {}
    if inst.network.allow_split_pipelines:
        pp_room = pp_latency_room(li, intra_budget, inter_budget)
        for i in intra_routes:
            r = routes[i]
            fill_drain_s = 2 * perf.one_way_latency_s(r.distance_km, inst.network.latency_us_per_km)
            a_av, b_av = cap_at[r.a], cap_at[r.b]
            for k in K:
                cand = candidates[k]
                if cand.pp % 2 or cand.pp < 2 or fill_drain_s > pp_room * cand.step_time_s:
                    continue
                half = cand.replica_accelerators // 2
                cap = min(cand.dp, a_av // half, b_av // half)
                if cap > 0:
                    n[i, k] = lm.var(f"split_pipelines[{i},{k}]", 0, cap, True)
    V["x"], V["n"] = x, n
    for k in K:
        lm.add(lsum([x[c.name, k] for c in campuses if (c.name, k) in x] +
                    [n[i, k] for i in intra_routes if (i, k) in n])
               == candidates[k].dp * z[k], f"replicas_sum[{k}]")
        for c in campuses:
            if (c.name, k) in x:
                lm.add(x[c.name, k] <= lm.ub[x[c.name, k].index] * z[k], f"replicas_link[{c.name},{k}]")
        for i in intra_routes:
            if (i, k) in n:
                lm.add(n[i, k] <= lm.ub[n[i, k].index] * z[k], f"split_link[{i},{k}]")

    used: dict[str, Expr] = {}
    y: dict[str, Var] = {}
    for c in campuses:
        expr = lsum(candidates[k].replica_accelerators * x[c.name, k] for k in K if (c.name, k) in x)
        for (i, k), var in n.items():
            if c.name in (routes[i].a, routes[i].b):
                expr = expr + (candidates[k].replica_accelerators // 2) * var
        used[c.name] = expr
        y[c.name] = lm.binary(f"active[{c.name}]")
        lm.add(expr <= cap_at[c.name] * y[c.name], f"accelerators[{c.name}]")
        lm.add(expr >= y[c.name], f"active_means_used[{c.name}]")
    # per split, a campus holds at most floor(capacity / replica) whole replicas, and none if
    # idle: tighter than the accelerator row above in the LP relaxation (the rounding down)
    for (cn, k), var in x.items():
        lm.add(var <= lm.ub[var.index] * y[cn], f"replicas_active[{cn},{k}]")
    for (i, k), var in n.items():
        for end in (routes[i].a, routes[i].b):
            lm.add(var <= lm.ub[var.index] * y[end], f"split_active[{i},{k},{end}]")
    E["used"], V["y"] = used, y
    if inst.job.max_accelerators:
        lm.add(lsum(used.values()) <= inst.job.max_accelerators, "max_accelerators")

    # ---- activity counts (one-hot) and phi products
    regions = inst.regions
    vr = {r.name: lm.binary(f"region_active[{r.name}]") for r in regions}
    V["v"] = vr
    omega: dict[tuple[str, int], Var] = {}
    kappa: dict[str, dict[int, Var]] = {}
    for r in regions:
        names = [c.name for c in r.campuses]
        for cn in names:
            lm.add(vr[r.name] >= y[cn], f"region_if_campus[{cn}]")
        lm.add(vr[r.name] <= lsum(y[cn] for cn in names), f"region_needs_campus[{r.name}]")
        if len(names) >= 2:
            kap = {j: lm.binary(f"campus_count[{r.name},{j}]") for j in range(1, len(names) + 1)}
            kappa[r.name] = kap
            lm.add(lsum(j * kap[j] for j in kap) == lsum(y[cn] for cn in names), f"campus_count_def[{r.name}]")
            lm.add(lsum(kap.values()) == vr[r.name], f"campus_count_onehot[{r.name}]")
            # j active campuses hold at most the j largest capacities (valid; raises the LP
            # bound, which otherwise mixes "one campus active" into a fractional count)
            largest = np.cumsum(sorted((cap_at[cn] for cn in names), reverse=True))
            lm.add(lsum(used[cn] for cn in names) <= lsum(float(largest[j - 1]) * kap[j] for j in kap),
                   f"campus_count_capacity[{r.name}]")
            for j in range(2, len(names) + 1):
                om = lm.var(f"phi_x_count[{r.name},{j}]", 0, phi_max)
                _mccormick(lm, om, phi, kap[j], phi_max, f"{r.name},{j}")
                omega[r.name, j] = om
    xi: dict[int, Var] = {}
    if len(regions) >= 2:
        rho = {j: lm.binary(f"region_count[{j}]") for j in range(1, len(regions) + 1)}
        lm.add(lsum(j * rho[j] for j in rho) == lsum(vr.values()), "region_count_def")
        lm.add(lsum(rho.values()) <= 1, "region_count_onehot")
        for j in range(2, len(regions) + 1):
            xi[j] = lm.var(f"phi_x_regions[{j}]", 0, phi_max)
            _mccormick(lm, xi[j], phi, rho[j], phi_max, f"regions,{j}")

    # ---- DP demand between site pairs and its routing
    # Gb/s of one site pair per unit of phi: 2 N beta bytes x 8 bits / (budget x T)
    k_intra = {r: 16.0 * params * beta / (intra_budget[r] * 1e9 * SECONDS_PER_HOUR) for r in intra_budget}
    k_inter = 16.0 * params * beta / (inter_budget * 1e9 * SECONDS_PER_HOUR) if len(regions) > 1 else 0.0
    F.update(k_intra_gbps_s=k_intra, k_inter_gbps_s=k_inter)
    g = net.fiber_graph(li)
    load: dict[int, Expr] = {i: Expr() for i in range(len(routes))}
    flows: dict[tuple, Var] = {}
    demand: dict[tuple, Var] = {}
    ipaths = net.intra_region_paths(li)
    for (a, b), paths in ipaths.items():
        rname = region_of[a]
        if not paths:
            lm.add(y[a] + y[b] <= 1, f"no_path[{a},{b}]")
            continue
        big_m = k_intra[rname] * phi_max
        # finite bounds (valid: no optimum needs more) keep HiGHS's MIP presolve sound;
        # with unbounded columns next to these big-M rows 1.13 declared feasible models infeasible
        dem = lm.var(f"dp_demand[{a},{b}]", 0, big_m)
        demand[("intra", a, b)] = dem
        _pair_demand_rows(lm, dem, phi, phi_max, k_intra[rname], y[a], y[b], kappa[rname], f"{a},{b}")
        fl = [lm.var(f"dp_flow[{a},{b},{p}]", 0, big_m) for p in range(len(paths))]
        lm.add(lsum(fl) >= dem, f"dp_route[{a},{b}]")
        for p, path in enumerate(paths):
            flows[("intra", a, b, p)] = fl[p]
            for ri in net.path_routes(g, path):
                load[ri].iadd(fl[p])
    rpaths = net.inter_region_paths(li)
    target_flow: dict[int, Expr] = {i: Expr() for i in range(len(routes))}
    inter_target = inst.targets.inter_region_pbps * GBPS_PER_PBPS
    for (ra, rb), paths in rpaths.items():
        if not paths:
            lm.add(vr[ra] + vr[rb] <= 1, f"no_path[{ra},{rb}]")
            continue
        big_m = k_inter * phi_max
        dem = lm.var(f"dp_demand[{ra},{rb}]", 0, big_m)
        demand[("inter", ra, rb)] = dem
        _pair_demand_rows(lm, dem, phi, phi_max, k_inter, vr[ra], vr[rb], rho, f"{ra},{rb}")
        fl = [lm.var(f"dp_flow[{ra},{rb},{p}]", 0, big_m) for p in range(len(paths))]
        lm.add(lsum(fl) >= dem, f"dp_route[{ra},{rb}]")
        tg = [lm.var(f"target_flow[{ra},{rb},{p}]", 0, inter_target) for p in range(len(paths))] if inter_target > 0 else []
        if tg:
            lm.add(lsum(tg) + slack(f"inter_region_target[{ra},{rb}]", inter_target) >= inter_target,
                   f"inter_target[{ra},{rb}]")
        for p, path in enumerate(paths):
            flows[("inter", ra, rb, p)] = fl[p]
            if tg:
                flows[("target", ra, rb, p)] = tg[p]
            for ri in net.path_routes(g, path):
                load[ri].iadd(fl[p])
                if tg:
                    target_flow[ri].iadd(tg[p])
    # valid inequalities on the DP demand (see _demand_cuts)
    for r in regions:
        if len(r.campuses) >= 2:
            _demand_cuts(lm, demand, "intra", r.name, [c.name for c in r.campuses], y,
                         {j: omega[r.name, j] for j in range(2, len(r.campuses) + 1)}, k_intra[r.name], phi_max)
    if len(regions) >= 2:
        _demand_cuts(lm, demand, "inter", "regions", [r.name for r in regions], vr, xi, k_inter, phi_max)
    V["flow"], V["demand"] = flows, demand
    E["paths"] = {**{("intra",) + k: v for k, v in ipaths.items()}, **{("inter",) + k: v for k, v in rpaths.items()}}

    # ---- DCI provisioning per route
    wl: dict[tuple[int, int], Var] = {}
    pairs: dict[tuple[int, int], Var] = {}
    opts_by_route: dict[int, list[net.RouteOption]] = {}
    capacity: dict[int, Expr] = {}
    dci_cost = Expr()
    dci_cost_parts = {"dci_modules": Expr(), "line_terminals_amplifiers": Expr(), "fiber": Expr()}
    dci_power_at: dict[str, Expr] = {c.name: Expr() for c in campuses}
    for i, r in enumerate(routes):
        opts = net.undominated_options(net.route_options(r, cat))
        opts_by_route[i] = opts
        cap = Expr()
        lit = Expr()
        pair_cap = r.fiber_pairs_available
        if elastic and opts:
            # the elastic model may light more pairs than the route has (penalised slack):
            # enough of its best option for everything the route could ever carry, no more
            # (looser bounds made the elastic MILP several times slower)
            most = lambda e: sum(c * lm.ub[k] for k, c in e.terms.items())  # noqa: E731 - non-negative terms
            carry = most(target_flow[i]) + most(load[i]) / u_max + sum(
                candidates[k].pp_gbps_per_split_pipeline * lm.ub[var.index] for (ri, k), var in n.items() if ri == i) / u_max
            if region_of[r.a] == region_of[r.b]:
                carry += li.intra_target_pbps(next(x for x in regions if x.name == region_of[r.a])) * GBPS_PER_PBPS
            best = max(o.rate_gbps * o.channels_per_pair for o in opts)
            pair_cap += math.ceil(carry / best)
        for o, opt in enumerate(opts):
            max_wl = pair_cap * opt.channels_per_pair
            wv = lm.var(f"wavelengths[{i},{opt.module},{opt.band}]", 0, max_wl, True)
            wl[i, o] = wv
            cap.iadd(wv, opt.rate_gbps)
            if opt.band is None:
                lit.iadd(wv)
                pair_count = Expr.of(wv)
            else:
                pv = lm.var(f"fiber_pairs[{i},{opt.module},{opt.band}]", 0, pair_cap, True)
                pairs[i, o] = pv
                lm.add(wv <= opt.channels_per_pair * pv, f"spectrum[{i},{o}]")
                lit.iadd(pv)
                pair_count = Expr.of(pv)
            dci_cost_parts["dci_modules"].iadd(wv, 2 * opt.module_price_usd)
            line = cat.line_systems[opt.band] if opt.band else None
            fiber_usd = net.fiber_cost_usd_per_pair(r, line, cat)
            dci_cost_parts["fiber"].iadd(pair_count, fiber_usd)
            dci_cost_parts["line_terminals_amplifiers"].iadd(pair_count, opt.pair_cost_usd - fiber_usd)
            for end in (r.a, r.b):
                dci_power_at[end].iadd(wv, opt.module_power_w)
                dci_power_at[end].iadd(pair_count, opt.pair_power_w_per_end)
        lm.add(lit <= r.fiber_pairs_available + slack(f"fiber_pairs[{i}]", r.fiber_pairs_available),
               f"fiber_pairs[{i}]")
        capacity[i] = cap
        lm.add(load[i] <= u_max * cap, f"dp_load[{i}]")
        if target_flow[i].terms:
            lm.add(target_flow[i] <= cap, f"target_load[{i}]")
        pp_load = lsum(candidates[k].pp_gbps_per_split_pipeline * var for (ri, k), var in n.items() if ri == i)
        if pp_load.terms:
            lm.add(pp_load <= u_max * cap, f"pp_load[{i}]")
    for part in dci_cost_parts.values():
        dci_cost.iadd(part)
    V["wavelengths"], V["pairs"] = wl, pairs
    E["capacity"], E["options"], E["dp_load"] = capacity, opts_by_route, load
    E["target_load"] = target_flow

    for region in regions:
        names = {c.name for c in region.campuses}
        target = li.intra_target_pbps(region) * GBPS_PER_PBPS
        if target <= 0 or len(names) < 2:
            continue
        lm.add(lsum(capacity[i] for i, r in enumerate(routes) if r.a in names and r.b in names)
               + slack(f"intra_region_target[{region.name}]", target) >= target,
               f"intra_target[{region.name}]")

    # ---- cables per campus and connection class
    cable_n: dict[tuple[str, str, str], Var] = {}
    cable_cost = Expr()
    cable_power_at: dict[str, Expr] = {c.name: Expr() for c in campuses}
    for c in campuses:
        dom = cat.scale_up_domains[c.scale_up_domain]
        for cls in dom.connection_classes:
            types = cable_types(li, c, cls)
            max_links = math.ceil(cls.links_per_accelerator * cap_at[c.name])
            total = Expr()
            choose = []
            for t in types:
                nv = lm.var(f"cables[{c.name},{cls.name},{t}]", 0, max_links, True)
                cable_n[c.name, cls.name, t] = nv
                total.iadd(nv)
                cable_cost.iadd(nv, cat.cables[t].price_usd_per_link)
                cable_power_at[c.name].iadd(nv, cat.cables[t].power_w_per_link)
                if len(types) > 1:
                    ub = lm.binary(f"cable_type[{c.name},{cls.name},{t}]")
                    choose.append(ub)
                    lm.add(nv <= max_links * ub, f"cable_type_link[{c.name},{cls.name},{t}]")
            if choose:
                lm.add(lsum(choose) <= 1, f"one_cable_type[{c.name},{cls.name}]")
            need = cls.links_per_accelerator * used[c.name]
            lm.add(total >= need, f"cable_count[{c.name},{cls.name}]")
            # and no more than the whole number just above the need: a $0, 0 W type (PCB
            # traces) is otherwise free at any count and the BOM listed 19,200 at a campus
            # without chips. links/accelerator = p/q leaves a need whose fraction is a
            # multiple of 1/q, so ceil(need) <= need + (q-1)/q.
            q = Fraction(cls.links_per_accelerator).limit_denominator(10**6).denominator
            lm.add(total <= need + (q - 1) / q, f"cable_count_max[{c.name},{cls.name}]")
    V["cables"] = cable_n

    # ---- power per campus
    power_at: dict[str, Expr] = {}
    for c in campuses:
        dom = cat.scale_up_domains[c.scale_up_domain]
        it = used[c.name] * dom.power_w_per_accelerator + cable_power_at[c.name] + dci_power_at[c.name]
        total = it * li.campus_pue(c)
        power_at[c.name] = total
        lm.add(total <= c.power_budget_mw * MW + slack(f"power[{c.name}]", c.power_budget_mw * MW), f"power[{c.name}]")
    E["power_at"] = power_at

    capex = dci_cost + cable_cost
    E["capex"], E["capex_parts"] = capex, {**dci_cost_parts, "cables": cable_cost}
    if inst.budgets.capex_usd is not None:
        lm.add(capex <= inst.budgets.capex_usd + slack("capex", inst.budgets.capex_usd), "capex")

    throughput = lsum(candidates[k].tokens_per_s * z[k] for k in K)
    E["throughput"] = throughput
    if elastic:
        if inst.objective == "min-cost":
            if inst.job.min_tokens_per_s:
                lm.add(throughput + slack("job_min_tokens", inst.job.min_tokens_per_s) >= inst.job.min_tokens_per_s,
                       "min_tokens")
            if inst.job.min_accelerators:
                lm.add(lsum(used.values()) + slack("job_min_accelerators", inst.job.min_accelerators)
                       >= inst.job.min_accelerators, "min_accelerators")
        # minimal total violation, each slack relative to its own limit
        lm.set_objective(lsum(s for s, _ in slacks.values()), maximize=False)
    elif objective == "max-throughput":
        lm.set_objective(throughput, maximize=True)
    else:
        if inst.job.min_tokens_per_s:
            lm.add(throughput >= inst.job.min_tokens_per_s, "min_tokens")
        if inst.job.min_accelerators:
            lm.add(lsum(used.values()) >= inst.job.min_accelerators, "min_accelerators")
        lm.set_objective(capex, maximize=False)
    pm.build_s = time.perf_counter() - start
    return pm


def _pair_demand_rows(lm: LinearModel, dem: Var, phi: Expr, phi_max: float, k: float, active_a: Var,
                      active_b: Var, count: dict[int, Var], tag: str) -> None:
    """dem >= k phi / j when sites a and b are both active and j sites of their group are.

    One row per possible count j' >= 2:
        dem >= (k / j') (phi - phi_max (2 - y_a - y_b) - phi_max sum_{i > j'} count_i).
    With j active, the row j' = j gives exactly k phi / j; rows j' < j, and every row
    when a or b is idle, have a right-hand side <= (k / j')(phi - phi_max - 1) < 0.
    Each big-M is (k / j')(phi_max + 1): one step per hour more than the row can ask,
    so that an idle pair's row stays clearly slack after CP-SAT scales it to integers
    (with phi_max exactly, CP-SAT read phi - phi_max as a hair above 0 and bought DCI
    for an idle pair: $102,660 instead of $28,940 on a brute-force case); the single row
    dem >= sum_j (k / j) phi count_j - k phi_max (2 - y_a - y_b) this replaces needed
    k phi_max, so fractional activity of 0.9 on both sites already cancelled all of a
    group of 8's demand k phi / 8 in the LP relaxation (docs/bench.md: LP bound of the
    32-campus benchmark)."""
    sizes = sorted(j for j in count if j >= 2)
    for jp in sizes:
        beyond = lsum(count[i] for i in count if i > jp)
        idle = (2 - active_a - active_b) + beyond
        lm.add(dem >= (phi - idle * (phi_max + 1)) * (k / jp), f"dp_demand_def[{tag},{jp}]")


def _demand_cuts(lm: LinearModel, demand: dict, kind: str, label: str, sites: list[str], active: dict,
                 phi_x_count: dict, k: float, phi_max: float) -> None:
    """Valid inequalities on the pairwise DP demand of one group of sites (the
    campuses of a region, or the regions).

    With j of the n sites active, each of the C(j,2) active pairs needs k phi / j
    (phi_x_count[j] = phi when j are active): together (j-1)/2 k phi, and the j-1
    pairs of an active site (j-1)/j k phi. The big-M rows dp_demand_def give this
    only when the activity binaries are integral; with fractional activity (the
    LP relaxation) they allow zero demand. Both rows hold in every integral plan
    (two sites without a path cannot both be active, so every active pair has a
    demand column) and raise the LP bound (docs/bench.md has the measured gain).
    The big-M of the site row is k (phi_max + 1) (n-1)/n, not k phi_max (n-1)/n: CP-SAT
    rounds the bound of phi_x_count up to its 1/256 grid, and a big-M cut to the exact
    value would demand a sliver of traffic from an inactive site there."""
    n = len(sites)
    dems = {(a, b): demand[(kind, a, b)] for i, a in enumerate(sites) for b in sites[i + 1:]
            if (kind, a, b) in demand}
    if not dems:
        return
    lm.add(lsum(dems.values()) >= lsum((k * (j - 1) / 2) * om for j, om in phi_x_count.items()),
           f"dp_demand_group[{label}]")
    for a in sites:
        incident = [v for (p, q), v in dems.items() if a in (p, q)]
        lm.add(lsum(incident) >= lsum((k * (j - 1) / j) * om for j, om in phi_x_count.items())
               - k * (phi_max + 1) * (n - 1) / n * (1 - active[a]), f"dp_demand_site[{a}]")


def _mccormick(lm: LinearModel, prod: Var, cont: Expr, binary: Var, upper: float, tag: str) -> None:
    """prod >= cont * binary for binary `binary` and 0 <= cont <= upper.

    Only the lower McCormick envelope is needed: prod only raises traffic demand,
    so no optimum gains from prod above cont * binary, and every optimum has an
    equal-objective twin with prod = cont * binary exactly. One-sided rows also
    keep CP-SAT (which discretises continuous variables) exact in direction.
    """
    lm.add(prod >= cont - upper * (1 - binary), f"mc[{tag}]")
