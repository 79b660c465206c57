"""Solve an instance end to end: candidates, model, solver, tie-break, plan, verification.

A plan is emitted only if the independent verifier accepts it.

Termination is reported as the solver reports it (lp.py reads each backend's
own status, not PuLP's): `optimal` only with a proof; a run stopped by the
time limit is `feasible` (incumbent, bound, gap) or `no_solution`; a backend
that stops without a plan and without a time limit is a SolverError.

An infeasible instance is explained with an elastic copy of the model
(penalised slack on every campus power budget, the capex budget, every
route's fiber pairs, every target and, for min-cost, the job's minimum
throughput or size). Targets and the job are taken as stated: budgets and
fiber give way first, a target or job minimum only where no amount of fiber
or budget can meet it (two lexicographic solves: least shortfall of targets
and job minimums with budgets and fiber free, then least relative increase of
budgets and fiber; each slack is a fraction of its own limit; then, if some
limits moved by under 1 %, once more with those kept as they are). The changes are
listed with the field to edit, rounded so that applying them all makes the
instance feasible. A second elastic solve gives the alternative that keeps
budgets and fiber as they are and lowers the targets / job minimums instead.
Conflicts found before any model (no split fits the HBM, the job's minimum
throughput or size is beyond every split) are explained from the split table,
and the rest of the instance explained on top of that fix.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import performance as perf
from .errors import SolverError
from .instance import LoadedInstance
from .lp import SolveParameters, SolveResult, available_backends, lsum, rel_gap, solve
from .plan import bom_csv, extract_plan
from .planner import (GBPS_PER_PBPS, MW, build_model, cable_capex_floor_usd, campus_accelerator_cap,
                      campus_accelerator_power_w, ranked_splits, select_candidates)
from .verify import verify_plan

RESOURCE_KINDS = ("power", "capex", "fiber_pairs")
TARGET_KINDS = ("intra_region_target", "inter_region_target")
JOB_KINDS = ("job_min_tokens", "job_min_accelerators")      # min-cost: the throughput to reach
SHORTFALL_KINDS = TARGET_KINDS + JOB_KINDS
MIN_EXPLAIN_S = 1.0          # an explanation gets at least this much solver time
NEGLIGIBLE_CHANGE = 0.01     # changes under 1 % of a limit are avoided if a plan exists without them


class PlanRejected(Exception):
    """The verifier found violations: a bug, never shown as a plan."""


def solve_instance(li: LoadedInstance, params: SolveParameters = SolveParameters(),
                   objective: str | None = None, extra_rows=None) -> dict:
    """Return a plan dict (status optimal/feasible), a no_solution report (time limit
    before any plan) or an infeasibility report. Raises SolverError, PlanRejected.

    solver.wall_s is this call's own time: build_s + solve_s (candidate splits, model
    builds, solver calls) and what lies between and after them (plan extraction, the
    independent verification, the reports)."""
    started = time.perf_counter()
    result = _solve_instance(li, params, objective, extra_rows)
    if isinstance(result.get("solver"), dict):
        result["solver"]["wall_s"] = round(time.perf_counter() - started, 4)
    return result


def _solve_instance(li, params, objective, extra_rows) -> dict:
    if params.search not in ("split-order", "monolithic"):
        raise ValueError(f"SolveParameters.search must be 'split-order' or 'monolithic' (got {params.search!r})")
    objective = objective or li.instance.objective
    if objective != li.instance.objective:
        li = LoadedInstance(li.instance.model_copy(update={"objective": objective}), li.catalog, li.path, li.raw)
    t0 = time.perf_counter()
    if objective == "max-throughput" and params.search == "split-order":
        ranked = ranked_splits(li)
        return _solve_ranked(li, ranked, params, extra_rows, time.perf_counter() - t0)
    if objective == "min-cost" and params.search == "split-order":
        return _solve_min_cost(li, params, extra_rows, t0)
    candidates, n_splits = select_candidates(li)
    cand_s = time.perf_counter() - t0
    return _solve_with(li, candidates, n_splits, params, extra_rows, cand_s, fallback=True)


def _solve_min_cost(li, params, extra_rows, t0) -> dict:
    """Min-cost over every split that meets the job's target, exactly.

    The Pareto front of accelerators, speed and replica size (select_candidates) is
    not enough: a dominated split (slower, or more accelerators) can need less DCI
    and be cheaper. So: solve the front for an incumbent of capex C; every other
    split whose capex floor (_capex_floors: the network's least capex by LP plus the
    cheapest cables for its accelerators) is below C(1 - gap) may beat it, and the
    model is solved again over the front and those splits; a split whose floor is at
    least that cannot be cheaper beyond the gap. If the front has no plan, every
    split within the capex budget's floor is tried. A search stopped at a time limit
    reports as bound the least of the solver's bound and the floors of the splits
    it did not settle."""
    front, n_splits = select_candidates(li)
    ranked = ranked_splits(li)
    floors, spent = _capex_floors(li, ranked, params, extra_rows)
    cand_s = time.perf_counter() - t0 - spent
    front_plan, build_s = None, cand_s
    if front:
        try:
            front_plan = _solve_with(li, front, n_splits, params, extra_rows, cand_s, fallback=False,
                                     prior_solve_s=spent, explain=False)
        except _BatchInfeasible as none:
            build_s, spent = none.build_s, none.solve_s
    if front_plan is not None and front_plan["status"] not in ("optimal", "feasible"):
        return front_plan                       # no plan and no proof: a time limit
    if front_plan is not None:
        ceiling = front_plan["objective"]["value"] * (1 - (params.gap or 0.0))
        build_s, spent = front_plan["solver"]["build_s"], front_plan["solver"]["solve_s"]
    else:
        limits = [x for x in (li.instance.budgets.capex_usd, getattr(extra_rows, "capex_cap_usd", None))
                  if x is not None]
        ceiling = min(limits) * (1 + 1e-6) + 1.0 if limits else math.inf
    sig = lambda c: (c.replica_accelerators, c.dp, c.pp, c.step_time_s, c.tokens_per_s)   # noqa: E731
    on_front = {sig(c) for c in front}
    maybe = [(c, float(f)) for c, f in zip(ranked.candidates_from(
        [r for r, f in zip(ranked.rows, floors) if f < ceiling]), floors[floors < ceiling])
        if sig(c) not in on_front]
    others = [c for c, _ in maybe]
    open_floors = [f for _, f in maybe]
    if not others:
        if front_plan is None:
            return explain_infeasible(li, params, build_s, spent, n_splits, extra_rows=extra_rows)
        return _min_cost_record(front_plan, len(front), 0)
    left = None if params.time_limit_s is None else params.time_limit_s - spent
    if left is not None and left <= 0.05:
        if front_plan is None:
            return _no_plan_in_time(li, params, build_s, spent, n_splits, min(open_floors))
        return _min_cost_bound(front_plan, open_floors, params)
    union = front + others
    try:
        plan = _solve_with(li, union, n_splits, params, extra_rows, build_s, fallback=False,
                           prior_solve_s=spent, explain=False)
    except _BatchInfeasible as none:
        if front_plan is not None:              # cannot be: the front's plan is in the union
            raise SolverError(f"backend '{params.backend}' found a plan over {len(front)} splits and none over "
                              f"a superset of them; try --solver {_alternative(params.backend)}")
        return explain_infeasible(li, params, none.build_s, none.solve_s, n_splits, extra_rows=extra_rows)
    # a bound for all splits: the union's, and the floors of the splits left out of it
    outside = min([float(f) for r, f in zip(ranked.rows, floors) if f >= ceiling], default=math.inf)
    if plan["status"] not in ("optimal", "feasible"):
        return plan if front_plan is None else _min_cost_bound(front_plan, open_floors + [outside], params)
    # (capex is never negative: 0 bounds it when the solver gave no bound)
    bound = min(plan["objective"]["bound"] if plan["objective"]["bound"] is not None else 0.0, outside)
    if front_plan is not None and front_plan["objective"]["value"] < plan["objective"]["value"]:
        # the union's plan is within its gap but dearer: keep the cheaper, with the time spent
        for key in ("build_s", "solve_s", "variables", "integer_variables", "constraints"):
            front_plan["solver"][key] = plan["solver"][key]
        plan = front_plan
    plan["objective"]["bound"] = bound
    plan["objective"]["gap"] = rel_gap(plan["objective"]["value"], bound)
    if plan["status"] == "optimal" and plan["objective"]["gap"] > (params.gap or 0.0) * (1 + 1e-9):
        plan["status"] = "feasible"
        plan["termination"] = {"reason": "time_limit", "time_limit_s": params.time_limit_s,
                               "solver_message": "over all splits the proven gap is above the limit"}
    return _min_cost_record(plan, len(front), len(others))


def _no_plan_in_time(li, params, build_s, solve_s, n_splits, bound) -> dict:
    report = {"status": "no_solution",
              "message": f"the solver stopped at its time limit ({params.time_limit_s:g} s) before "
                         "finding any plan; feasibility is unknown: raise --time-limit",
              "termination": {"reason": "time_limit", "time_limit_s": params.time_limit_s, "solver_message": ""},
              "objective": {"name": "min-cost", "unit": _unit("min-cost"), "value": None, "bound": bound, "gap": None}}
    return _solver_block(li, report, params, None, build_s, solve_s, n_splits)


def _min_cost_record(plan: dict, n_front: int, n_more: int) -> dict:
    plan["parallelism"]["candidate_set"] = (
        "Pareto front of accelerators, speed and replica size"
        + (f", plus the {n_more:,} other splits whose capex floor is below the front's optimum" if n_more
           else "; no other split's capex floor is below its optimum"))
    plan["parallelism"]["candidates_considered"] = n_front + n_more
    return plan


def _min_cost_bound(plan: dict, floors: list[float], params) -> dict:
    """The front's plan when the splits outside it were not settled (a time limit):
    its bound can be no higher than their least floor, and it is not proven optimal."""
    bound = min([plan["objective"]["bound"] if plan["objective"]["bound"] is not None else math.inf] + floors)
    value = plan["objective"]["value"]
    plan["objective"]["bound"] = bound
    plan["objective"]["gap"] = rel_gap(value, bound)
    if plan["status"] == "optimal" and plan["objective"]["gap"] is not None and plan["objective"]["gap"] > (params.gap or 0.0):
        plan["status"] = "feasible"
        plan["termination"] = {"reason": "time_limit", "time_limit_s": params.time_limit_s,
                               "solver_message": "splits outside the Pareto front left unsettled at the time limit"}
    return plan


BATCH_SPLITS = 8     # splits per model of the max-throughput search (ties with the last added)


class _BatchInfeasible(Exception):
    """No split of a batch has a plan (proven): the search goes on with the next."""

    def __init__(self, build_s: float, solve_s: float):
        super().__init__("batch infeasible")
        self.build_s, self.solve_s = build_s, solve_s


def _solve_ranked(li, ranked, params, extra_rows, cand_s) -> dict:
    """Max-throughput over every split that may have a plan (planner.ranked_splits), exactly.

    The splits are taken fastest first, BATCH_SPLITS at a time (with every split tied
    with the batch's slowest): one model per batch, searched in split order
    (_solve_in_split_order). The first batch with a plan holds the optimum, since
    every faster split sits in an earlier batch, proven to have none; its model
    also holds every split tied at the optimum for the tie-break. Under a time
    limit each batch gets what is left; a batch stopped undecided reports the
    fastest split it left open as the bound."""
    if not ranked.rows:
        return explain_infeasible(li, params, cand_s, 0.0, ranked.n_enumerated, extra_rows=extra_rows)
    report_on = ranked                  # the plan counts every split; the search skips the screened
    ranked, solve_s = _capex_screen(li, ranked, params, extra_rows)
    n = len(ranked.rows)
    build_s, pos, size = cand_s, 0, BATCH_SPLITS
    while pos < n:
        stop = min(n, pos + size)
        while stop < n and ranked.tokens_at(stop) >= ranked.tokens_at(stop - 1) * (1 - 1e-12):
            stop += 1
        size *= 2          # a search that goes on is ruling splits out: larger batches, fewer models
        left = None if params.time_limit_s is None else params.time_limit_s - solve_s
        if left is not None and left <= 0.05:
            res = SolveResult("no_solution", None, None, ranked.tokens_at(pos), None, params.backend, solve_s,
                              f"time limit reached after {pos} of {n} splits ruled out fastest first")
            report = {"status": "no_solution",
                      "message": f"the solver stopped at its time limit ({params.time_limit_s:g} s) before "
                                 "finding any plan; feasibility is unknown: raise --time-limit",
                      "termination": _termination(res, params),
                      "objective": {"name": "max-throughput", "unit": _unit("max-throughput"), "value": None,
                                    "bound": ranked.tokens_at(pos), "gap": None}}
            return _solver_block(li, report, params, None, build_s, solve_s, ranked.n_enumerated)
        try:
            return _solve_with(li, ranked.candidates(pos, stop), ranked.n_enumerated, params, extra_rows,
                               build_s, fallback=True, ranked=(report_on, pos), prior_solve_s=solve_s,
                               whole_batch_first=pos > 0)
        except _BatchInfeasible as done:
            build_s, solve_s = done.build_s, done.solve_s
        if pos == 0:
            # the fastest splits have no plan: is there a network at all? Without the job
            # (no replica, no DP traffic, no cables) every constraint is looser, so if the
            # targets, budgets and fiber alone have no plan, no split has one
            verdict, spent = _network_alone(li, ranked.candidates(0, 1), params, extra_rows, solve_s)
            solve_s += spent
            if verdict == "infeasible":
                break
        pos = stop
    return explain_infeasible(li, params, build_s, solve_s, ranked.n_enumerated, extra_rows=extra_rows)


def _capex_floors(li, ranked, params, extra_rows):
    """Capex floor of every ranked split (USD, in ranked order) and the time it took: the
    network's least capex without the job (LP relaxation; the job only adds demand,
    power and cables) plus planner.cable_capex_floor_usd of its accelerators. Without
    an LP optimum (the network alone infeasible: the search explains that) the
    cable floor alone. The time counts the model's build with the LP."""
    if not ranked.rows:
        return np.zeros(0), 0.0
    started = time.perf_counter()
    pm = _network_alone_model(li, ranked.candidates(0, 1), extra_rows)
    lp = _relaxation(pm, params)
    network = lp.objective if lp.status == "optimal" and lp.objective is not None else 0.0
    acc = np.asarray(ranked.table.accelerators, dtype=float)[ranked.rows]
    return network + cable_capex_floor_usd(li, acc), time.perf_counter() - started


def _capex_screen(li, ranked, params, extra_rows):
    """The splits that may fit the capex limit (the budget, or a Pareto point's cap), and
    the time it took. A split's capex is at least the network's own least capex (the
    LP relaxation of the instance without the job: the job only adds demand and power)
    plus the least cable capex of its accelerators (planner.cable_capex_floor_usd);
    a split whose floor is above the limit has no plan and is skipped without a MILP.
    Measured on the default instance at a $412 M cap: 4,088 of the 4,096 fastest splits
    went this way, each batch of them an LP and a model build before (640 s in all)."""
    limits = [x for x in (li.instance.budgets.capex_usd, getattr(extra_rows, "capex_cap_usd", None)) if x is not None]
    if not limits or not ranked.rows:
        return ranked, 0.0
    floor, spent = _capex_floors(li, ranked, params, extra_rows)
    # margin for the LP's own tolerances: a split is skipped only well above the limit
    keep = floor <= min(limits) * (1 + 1e-6) + 1.0
    if keep.all():
        return ranked, spent
    return replace(ranked, rows=[r for r, k in zip(ranked.rows, keep) if k]), spent


def _network_alone_model(li, one_candidate, extra_rows):
    """The instance's model with the job taken out: no split, no replica, no DP traffic."""
    pm = build_model(li, one_candidate)
    if extra_rows:
        extra_rows(pm)
    lm = pm.lm
    for z in pm.v["z"]:
        lm.ub[z.index] = 0.0
    # and the job's own rows: one split, and min-cost's throughput or accelerator floor
    lm.rows = [row for row in lm.rows if row[0] not in ("one_split", "min_tokens", "min_accelerators")]
    return pm


def _network_alone(li, one_candidate, params, extra_rows, prior_solve_s) -> tuple[str, float]:
    """Feasibility of the instance's network without the job: 'infeasible' (a proof
    that no split has a plan), or 'feasible' / 'unknown'; and the time it took (the
    model's build with the solve)."""
    started = time.perf_counter()
    pm = _network_alone_model(li, one_candidate, extra_rows)
    lm = pm.lm
    lm.set_objective(lsum([]), maximize=False)
    run = params if params.time_limit_s is None else replace(
        params, time_limit_s=params.time_limit_s - prior_solve_s - (time.perf_counter() - started))
    if run.time_limit_s is not None and run.time_limit_s <= 0.05:
        return "unknown", time.perf_counter() - started
    res = solve(lm, run)
    spent = time.perf_counter() - started
    if res.status == "infeasible":
        return "infeasible", spent
    return ("feasible" if res.values is not None else "unknown"), spent


def _solve_with(li, candidates, n_splits, params, extra_rows, cand_s, fallback, ranked=None,
                prior_solve_s: float = 0.0, whole_batch_first: bool = False, explain: bool = True) -> dict:
    """Build, solve, tie-break, extract and verify. ranked=(RankedSplits, position of the
    first candidate): a batch of the max-throughput search, which raises _BatchInfeasible
    rather than explaining an infeasible batch; prior_solve_s is the search's time so far."""
    objective = li.instance.objective
    if not candidates:
        return explain_infeasible(li, params, cand_s, 0.0, n_splits, extra_rows=extra_rows, fallback=fallback)
    pm = build_model(li, candidates)
    if extra_rows:
        extra_rows(pm)
    # what this call may spend: the time limit less what the search spent before it
    # (params itself, with the user's limit, goes into the report)
    run = params if params.time_limit_s is None else replace(params, time_limit_s=params.time_limit_s - prior_solve_s)
    found = None
    if ranked is not None:
        # one LP over the whole batch (split free) first: infeasible rules out all of it
        lp_res = _relaxation(pm, run)
        if lp_res.status == "infeasible":
            raise _BatchInfeasible(cand_s + pm.build_s, prior_solve_s + lp_res.solve_s)
        prior_solve_s += lp_res.solve_s
        run = params if params.time_limit_s is None else replace(params, time_limit_s=params.time_limit_s - prior_solve_s)
        if whole_batch_first:
            # past the first batch the search is mostly ruling splits out: LPs and small
            # MILPs over windows of the batch, fastest first (_first_with_a_plan)
            found = _first_with_a_plan(pm, run)
            prior_solve_s += found.solve_s
            if found.status == "infeasible":
                raise _BatchInfeasible(cand_s + pm.build_s, prior_solve_s)
            run = params if params.time_limit_s is None else replace(
                params, time_limit_s=params.time_limit_s - prior_solve_s)
    if ranked is not None and whole_batch_first and found is not None and found.status == "optimal":
        res = replace(found, solve_s=0.0)          # its time is in prior_solve_s already
    elif objective == "max-throughput" and params.search == "split-order" and len(candidates) > 1:
        res = _solve_in_split_order(pm, run)
    else:
        res = solve(pm.lm, run)
    if (ranked is not None or not explain) and res.status == "infeasible":
        raise _BatchInfeasible(cand_s + pm.build_s, prior_solve_s + res.solve_s)
    solve_s = prior_solve_s + res.solve_s
    build_s = cand_s + pm.build_s
    if res.status == "unbounded":
        raise SolverError(f"backend '{params.backend}' reports the model unbounded: a modelling bug; "
                          f"try --solver {_alternative(params.backend)} to cross-check")
    if res.values is None:
        if res.status == "infeasible":
            return explain_infeasible(li, params, build_s, solve_s, n_splits, extra_rows=extra_rows,
                                      fallback=fallback)
        # no plan, no proof: honest only if a limit stopped the solver
        if not _stopped_at_time_limit(res, params):
            raise SolverError(f"backend '{params.backend}' stopped without a plan and without proving the "
                              f"instance infeasible ({res.message or 'no reason given'}); "
                              f"try --solver {_alternative(params.backend)}")
        report = {"status": "no_solution",
                  "message": f"the solver stopped at its time limit ({params.time_limit_s:g} s) before "
                             "finding any plan; feasibility is unknown: raise --time-limit",
                  "termination": _termination(res, params),
                  "objective": {"name": objective, "unit": _unit(objective), "value": None,
                                "bound": res.bound, "gap": None}}
        return _solver_block(li, report, params, pm, build_s, solve_s, n_splits)
    primary = res
    tie_status = "not_run"
    tie_s = 0.0
    tie_gap = None     # relative gap of the tie-break objective when it stopped early
    # deterministic tie-break: among optimal plans, the cheapest (max-throughput) or
    # the fastest (min-cost); it gets what the time limit leaves
    if res.status == "optimal":
        remaining = None if params.time_limit_s is None else params.time_limit_s - solve_s
        if remaining is not None and remaining <= 0.05:
            tie_status = "skipped (time limit used up)"
        else:
            lm = pm.lm
            if objective == "max-throughput":
                tol = 1e-9 * max(1.0, abs(res.objective))
                lm.add(pm.e["throughput"] >= res.objective - tol, "tie_break_keep_throughput")
                # the row rules out every slower split: say so in their bounds too, so
                # each backend's presolve drops their columns
                for cand, zk in zip(pm.candidates, pm.v["z"]):
                    if cand.tokens_per_s < res.objective - tol:
                        lm.ub[zk.index] = 0.0
                lm.set_objective(pm.e["capex"], maximize=False)
            else:
                tol = 1e-9 * max(1.0, abs(res.objective)) + 1e-6
                lm.add(pm.e["capex"] <= res.objective + tol, "tie_break_keep_cost")
                lm.set_objective(pm.e["throughput"], maximize=True)
            # the stage-1 plan is feasible here: a warm start (SCIP, CP-SAT, CBC). Measured
            # (docs/bench.md): 16 campuses 8.0 s with it, 11.0 s without; at 64 campuses
            # the 60 s plan $10.4 B with it, the stage-1 plan's $15.9 B without
            if objective == "max-throughput" and remaining is not None:
                res2 = _cheapest_in_time(pm, res.values, params, remaining)
            else:
                res2 = solve(lm, replace(params, time_limit_s=remaining), hint=res.values)
            solve_s += res2.solve_s
            tie_s = res2.solve_s
            if res2.values is not None:
                res = replace(res2, objective=primary.objective, bound=primary.bound, gap=primary.gap, status="optimal")
                tie_status = "optimal" if res2.status == "optimal" else "incomplete"
                tie_gap = res2.gap          # optimal: the gap proven, within the gap limit
            else:
                tie_status = "incomplete"
    plan = extract_plan(pm, res)
    if ranked is not None:
        _ranked_choice(plan, *ranked)
    plan["objective"]["value"] = primary.objective
    plan["objective"]["bound"] = primary.bound
    plan["objective"]["gap"] = primary.gap
    plan["status"] = primary.status
    if primary.status == "feasible":
        plan["termination"] = _termination(primary, params)
    plan["solver"] = _solver_info(params, pm, build_s, solve_s, n_splits, tie_status)
    plan["solver"]["primary_solve_s"] = round(solve_s - tie_s, 4)
    plan["solver"]["tie_break_solve_s"] = round(tie_s, 4)
    plan["solver"]["tie_break_gap"] = tie_gap
    violations = verify_plan(plan, li)
    plan["verification"] = {"passed": not violations, "violations": violations}
    if violations:
        raise PlanRejected("the independent verifier rejected the plan:\n  " + "\n  ".join(violations))
    return plan


def _ranked_choice(plan: dict, ranked, first: int) -> None:
    """The plan's record of the max-throughput search: every split that may have a plan
    was a candidate, and those faster than the chosen one were ruled out (the earlier
    batches proven infeasible, and the faster ones of this batch)."""
    chosen = plan["performance"]["tokens_per_s_single_site"]
    tokens = np.asarray(ranked.table.tokens_per_s, dtype=float)[ranked.rows]
    faster = int(np.count_nonzero(tokens > chosen * (1 + 1e-12)))
    dropped = np.asarray(ranked.dropped_tokens, dtype=float)
    no_room = [float(t) for t in dropped[dropped > chosen * (1 + 1e-12)]]
    plan["parallelism"]["candidates_considered"] = len(ranked.rows)
    plan["parallelism"]["candidate_set"] = "memory-feasible splits, fastest first"
    plan["performance"]["faster_candidate_splits"] = faster
    # faster splits that were no candidates: more accelerators than the campuses' power
    # feeds, or replicas that do not pack onto them
    plan["performance"]["faster_splits_without_room"] = len(no_room)
    plan["performance"]["fastest_candidate_tokens_per_s"] = max([ranked.tokens_at(0)] + no_room)


def _solve_in_split_order(pm, params: SolveParameters) -> SolveResult:
    """Stage 1 of max-throughput, exactly, by trying the splits fastest first.

    The objective is sum_k tokens_k z_k with exactly one z_k = 1, so the optimum
    is the fastest split that has a feasible plan: fix z_k = 1 (bounds of the
    one-hot columns), ask the solver for any feasible plan (zero objective),
    and stop at the first split that has one; every faster split has then been
    proven infeasible. Splits of equal speed are tried in candidate order; the
    tie-break stage that follows runs on the whole model and sees all of them.

    Why: the whole model's LP bound is usually the fastest split's rate already
    (measured on scripts/bench.py at 32 campuses: bound 5,413,161 tokens/s, the
    fastest split), but the solvers' heuristics find poor plans (HiGHS's best
    after 60 s: 4,062,237; SCIP's: 39,332). With the split fixed, a plan for
    the fastest split took HiGHS 10.9 s. docs/bench.md has the before/after.

    Under a time limit a try gets at most half of the time left; a try that
    ends undecided leaves its split open (its rate stays an upper bound) and the
    next split is tried. Once a split has a plan, the open faster splits are
    tried again, fastest first, with all the time left. The result is `optimal`
    if no faster split stays open, else `feasible` with the fastest open split's
    rate as bound; if time runs out before any plan, `no_solution` with that bound.
    Without a time limit every try runs to its verdict: the result is exact.
    """
    lm = pm.lm
    cands = pm.candidates
    zs = [v.index for v in pm.v["z"]]
    order = sorted(range(len(cands)), key=lambda k: (-cands[k].tokens_per_s, k))
    saved_bounds = [(lm.lb[i], lm.ub[i]) for i in zs]
    saved_objective, saved_sense = lm.objective, lm.maximize
    spent = 0.0
    tried = 0
    open_bound = None          # rate of the fastest split left undecided by its time cap
    open_splits: list[int] = []

    def fix(k):
        for j, i in enumerate(zs):
            lm.lb[i], lm.ub[i] = (1.0, 1.0) if j == k else (0.0, 0.0)

    def retry_open(k_found, res_found):
        """A plan exists for split k_found: give the faster open splits the time left."""
        nonlocal spent, tried
        best_k, best = k_found, res_found
        still_open = []
        for k in open_splits:                  # fastest first
            remaining = params.time_limit_s - spent
            if remaining <= 0.05:
                still_open.append(k)
                continue
            fix(k)
            res = solve(lm, replace(params, time_limit_s=remaining))
            spent += res.solve_s
            tried += 1
            if res.status == "infeasible":
                continue
            if res.values is None:
                still_open.append(k)
                continue
            best_k, best = k, res              # faster than k_found; stop here
            still_open += [j for j in open_splits if cands[j].tokens_per_s > cands[k].tokens_per_s
                           and j not in still_open and j != k]
            break
        rate = cands[best_k].tokens_per_s
        faster_open = [j for j in still_open if cands[j].tokens_per_s > rate]
        if not faster_open:
            return SolveResult("optimal", best.values, rate, rate, 0.0, params.backend, spent,
                               f"fastest feasible split: {tried} tries over {len(cands)} splits")
        bound = max(cands[j].tokens_per_s for j in faster_open)
        return SolveResult("feasible", best.values, rate, bound, rel_gap(rate, bound), params.backend, spent,
                           f"time limit: {len(faster_open)} faster split(s) left undecided "
                           f"({tried} tries over {len(cands)} splits)")
    try:
        lm.set_objective(lsum([]), maximize=False)
        for k in order:
            remaining = None if params.time_limit_s is None else params.time_limit_s - spent
            if remaining is not None and remaining <= 0.05:
                bound = cands[k].tokens_per_s if open_bound is None else open_bound
                return SolveResult("no_solution", None, None, bound, None, params.backend, spent,
                                   f"time limit reached after {tried} of {len(cands)} splits tried fastest first")
            fix(k)
            cap = None if remaining is None else max(remaining / 2, min(remaining, 1.0))
            quick = _quick_verdict(pm, k, replace(params, time_limit_s=cap))
            spent += quick.solve_s
            if quick.status == "infeasible":          # the LP relaxation: a proof
                tried += 1
                continue
            if quick.values is not None:              # a plan with the placement rounded
                tried += 1
                return retry_open(k, quick)
            if cap is not None:
                cap = max(0.05, min(cap, params.time_limit_s - spent))
            res = solve(lm, replace(params, time_limit_s=cap))
            spent += res.solve_s
            tried += 1
            if res.status == "infeasible":
                continue
            if res.values is None:                # undecided within its cap
                if cap is None:
                    return res                    # no limit and no verdict: the solver failed
                if open_bound is None:
                    open_bound = cands[k].tokens_per_s
                open_splits.append(k)
                continue
            return retry_open(k, res)
        if open_bound is not None:
            return SolveResult("no_solution", None, None, open_bound, None, params.backend, spent,
                               f"time limit: no split decided to have a plan ({tried} of {len(cands)} tried)")
        return SolveResult("infeasible", None, None, None, None, params.backend, spent,
                           f"none of the {len(cands)} splits has a plan")
    finally:
        for i, (lo, hi) in zip(zs, saved_bounds):
            lm.lb[i], lm.ub[i] = lo, hi
        lm.set_objective(saved_objective, saved_sense)


def _first_with_a_plan(pm, params: SolveParameters) -> SolveResult:
    """The fastest split of a batch with a plan, or a proof that none has one.

    Splits are ruled out in windows, fastest first; "does a split of window W have a
    plan" is one LP (its relaxation infeasible: none has) and, if the LP cannot say,
    one MILP with no objective (_any_plan, every split outside W fixed to 0):
    1. LP bisection: the longest prefix whose LP is infeasible is out;
    2. galloping: windows of 1, 2, 4, ... splits after it until one has a plan (a
       window with no plan is out; all out proves the batch infeasible);
    3. bisection between the first split left and the split the found plan runs.
    Small windows keep the MILPs small: on the default instance under a capex cap a
    MILP over a 512-split batch took 28 s to find any plan, windows of a few splits ~1 s.
    Returns `optimal` at the first split's rate with its plan, `infeasible` (the
    whole batch has none), or `no_solution` if a solve ended undecided (a time limit):
    the split-order search then takes over. solve_s is the time spent either way."""
    lm, cands = pm.lm, pm.candidates
    zs = [z.index for z in pm.v["z"]]
    saved = [(lm.lb[i], lm.ub[i]) for i in zs]
    n = len(cands)
    started = time.perf_counter()

    def left() -> float | None:
        return None if params.time_limit_s is None else params.time_limit_s - (time.perf_counter() - started)

    def window(a: int, b: int, milp: bool) -> SolveResult | None:
        """Splits a..b only: LP, then (milp) the MILP; None when out of time."""
        for j, i in enumerate(zs):
            lm.ub[i] = saved[j][1] if a <= j <= b else 0.0
        t = left()
        if t is not None and t <= 0.05:
            return None
        res = _relaxation(pm, replace(params, time_limit_s=t))
        if res.status == "infeasible" or not milp:
            return res
        t = left()
        if t is not None and t <= 0.05:
            return None
        return _any_plan(pm, replace(params, time_limit_s=t))

    def used(res: SolveResult, a: int, b: int) -> int:
        return max(range(a, b + 1), key=lambda j: res.values[zs[j]])

    def result(status: str, values=None, rate=None, note: str = "") -> SolveResult:
        return SolveResult(status, values, rate, rate, 0.0 if status == "optimal" else None, params.backend,
                           time.perf_counter() - started, note)

    try:
        # 1. LP bisection over prefixes: lo = the first split whose prefix LP may be feasible
        lo, top = 0, n - 1
        while lo < top:
            mid = (lo + top) // 2
            res = window(0, mid, milp=False)
            if res is None:
                return result("no_solution", note="time limit in the LP bisection")
            if res.status == "infeasible":
                lo = mid + 1
            else:
                top = mid
        # 2. galloping windows after lo until one has a plan
        step, plan, hi = 1, None, None
        while lo < n:
            b = min(n - 1, lo + step - 1)
            res = window(lo, b, milp=True)
            if res is None or (res.status != "infeasible" and res.values is None):
                return result("no_solution", note="a window ended undecided")
            if res.status == "infeasible":
                lo, step = b + 1, step * 2
                continue
            plan, hi = res, used(res, lo, b)
            break
        if plan is None:
            return result("infeasible", note=f"no split of the {n} has a plan")
        # 3. bisection in [lo, hi]: hi has a plan, every split before lo has none
        while lo < hi:
            mid = (lo + hi) // 2
            res = window(lo, mid, milp=True)
            if res is None or (res.status != "infeasible" and res.values is None):
                return result("no_solution", note="a window ended undecided")
            if res.status == "infeasible":
                lo = mid + 1
            else:
                plan, hi = res, used(res, lo, mid)
    finally:
        for j, i in enumerate(zs):
            lm.lb[i], lm.ub[i] = saved[j]
    rate = cands[lo].tokens_per_s
    return result("optimal", plan.values, rate, f"fastest split with a plan, by windows over {n} splits")


def _any_plan(pm, params: SolveParameters) -> SolveResult:
    """The MILP as its bounds stand with no objective: does any split of the model have a
    plan? Infeasible is a proof for all of them."""
    lm = pm.lm
    objective, sense = lm.objective, lm.maximize
    lm.set_objective(lsum([]), maximize=False)
    try:
        return solve(lm, params)
    finally:
        lm.set_objective(objective, sense)


def _relaxation(pm, params: SolveParameters) -> SolveResult:
    """The LP relaxation of the model as its bounds stand, at least cost (its placement
    leaves power for the DCI it needs). Status infeasible is a proof for the MILP;
    no_solution (a limit, or a solver error) decides nothing.

    The LP runs on HiGHS's simplex whatever the backend: SCIP's LP stopped on
    numerical trouble at 16 campuses and CP-SAT puts continuous columns on a grid."""
    lm = pm.lm
    started = time.perf_counter()
    integer = list(lm.integer)
    objective, sense = lm.objective, lm.maximize
    lm.integer = [False] * lm.n_vars
    lm.set_objective(pm.e["capex"], maximize=False)
    lp_backend = "highs" if "highs" in available_backends() else params.backend
    try:
        relaxed = solve(lm, replace(params, backend=lp_backend, threads=1))
    except SolverError:
        relaxed = SolveResult("no_solution", None, None, None, None, params.backend, 0.0, "LP failed")
    finally:
        lm.integer = integer
        lm.set_objective(objective, sense)
    if relaxed.status == "infeasible" and lp_backend == "cpsat":
        relaxed = replace(relaxed, status="no_solution")       # not trusted as a proof
    return replace(relaxed, solve_s=time.perf_counter() - started)


FIRST_TRY_SHARE = 0.5        # of a time-limited tie-break, for the plain search from the stage-1 plan
POLISH_GAP = 0.01            # the placement polish is a start, not a proof: 1 % is enough
POLISH_TIME_SHARE = 0.25     # of the time the tie-break has left, at most


def _cheapest_in_time(pm, start: list[float], params: SolveParameters, remaining: float) -> SolveResult:
    """The max-throughput tie-break (the model's objective is capex) under a time limit.

    First the plain search from the stage-1 plan, for FIRST_TRY_SHARE of the time:
    most instances end here (16 campuses: SCIP proves it in ~7 s, CBC in 25-35 s,
    which a quarter of a 60 s limit cut short). If it is not proven, its
    best plan's placement is polished (_polish_placement) and the search starts again
    from the cheaper plan for the time left. The bound is the better of the two
    searches' (both bound the same model); the plan the cheapest found. Measured on
    scripts/bench.py at 64 campuses, 60 s (docs/bench.md). Without a time limit the
    plain search runs to its proof and none of this is needed.

    The polish is not run first: a cheaper start made SCIP's proof slower on the
    16-campus benchmark (15-17 s instead of 7-8 s, in two runs each)."""
    lm = pm.lm
    started = time.perf_counter()
    left = lambda: remaining - (time.perf_counter() - started)   # noqa: E731
    first = solve(lm, replace(params, time_limit_s=remaining * FIRST_TRY_SHARE), hint=start)
    if first.status == "optimal" or left() <= 0.05:
        return replace(first, solve_s=time.perf_counter() - started)
    best = first if first.values is not None else SolveResult(
        "feasible", start, pm.e["capex"].at(start), None, None, params.backend, 0.0, "the stage-1 plan")
    polished = _polish_placement(pm, best.values, params, left())
    if polished.values is not None and polished.objective < best.objective:
        best = polished
    third = solve(lm, replace(params, time_limit_s=left()), hint=best.values) if left() > 0.05 else None
    if third is not None and third.values is not None and third.objective <= best.objective:
        best = third
    bounds = [r.bound for r in (first, third) if r is not None and r.bound is not None]
    bound = max(bounds) if bounds else None
    gap = rel_gap(best.objective, bound) if bound is not None else None
    status = "optimal" if gap is not None and gap <= (params.gap or 0.0) * (1 + 1e-9) else "feasible"
    return replace(best, status=status, bound=bound, gap=gap, solve_s=time.perf_counter() - started,
                   message=(third or first).message)


def _polish_placement(pm, values: list[float], params: SolveParameters, remaining: float | None) -> SolveResult:
    """The cheapest plan (to POLISH_GAP) that keeps the placement of `values` (replicas
    and split pipelines per campus, hence the active campuses and regions and the DP
    demand): a network and cable design, a start for the full tie-break. Under a
    time limit it gets at most POLISH_TIME_SHARE of what is left. The model's
    objective (capex) is set; the bounds are restored.

    Measured on scripts/bench.py (SCIP, 1 thread): at 64 campuses the stage-1 plan
    costs $15.19 B and the full tie-break started from it still had $10.4 B after
    60 s (gap 20 %, and 17 % after 300 s); the polish gives $8.46-8.47 B in 3.5-4 s,
    and with it (_cheapest_in_time) the 60 s plan is $8.39 B (gap 0.87 %). At 16
    campuses it takes 0.4 s."""
    lm = pm.lm
    started = time.perf_counter()
    fix = [v.index for v in pm.v["x"].values()] + [v.index for v in pm.v["n"].values()]
    limit = None if remaining is None else remaining * POLISH_TIME_SHARE
    nothing = SolveResult("no_solution", None, None, None, None, params.backend, 0.0, "")
    if not fix or (limit is not None and limit <= 0.05):
        return nothing
    saved = {i: (lm.lb[i], lm.ub[i]) for i in fix}
    try:
        for i in fix:
            lm.lb[i] = lm.ub[i] = float(round(values[i]))
        res = solve(lm, replace(params, time_limit_s=limit, gap=max(params.gap or 0.0, POLISH_GAP)), hint=values)
    except SolverError:
        res = nothing
    finally:
        for i, (lo, hi) in saved.items():
            lm.lb[i], lm.ub[i] = lo, hi
    return replace(res if res.values is not None else nothing, solve_s=time.perf_counter() - started)


def _quick_verdict(pm, k: int, params: SolveParameters) -> SolveResult:
    """A fast answer for split k (its z already fixed to 1), before the full MILP:

    - the LP relaxation is infeasible: so is the MILP (status infeasible, a proof);
    - else the LP placement rounded to whole replicas (down, then the missing
      replicas to the campuses with the largest fractional parts and room left),
      fixed, and the rest of the plan (DCI, cables, activity) solved as a MILP: a
      plan if that has one (status feasible, values set);
    - else status no_solution: nothing decided, the caller solves the full MILP.

    Measured on scripts/bench.py (docs/bench.md): the full MILP took SCIP 30 s to
    find any plan for the fastest split at 64 campuses, while the fixed-placement
    MILP is a network design without the activity combinatorics."""
    lm = pm.lm
    started = time.perf_counter()
    nothing = SolveResult("no_solution", None, None, None, None, params.backend, 0.0, "")
    relaxed = _relaxation(pm, params)
    if relaxed.status == "infeasible":
        return replace(relaxed, solve_s=time.perf_counter() - started)
    if relaxed.values is None or relaxed.status != "optimal":
        return replace(nothing, solve_s=time.perf_counter() - started)
    li = pm.li
    cand = pm.candidates[k]
    routes = li.instance.routes
    half = cand.replica_accelerators // 2
    # each column of split k: (variable, {campus: accelerators one unit takes there})
    units = [(var, {c: cand.replica_accelerators}) for (c, kk), var in pm.v["x"].items() if kk == k] + \
            [(var, {routes[i].a: half, routes[i].b: half}) for (i, kk), var in pm.v["n"].items() if kk == k]
    whole = {var.index: math.floor(relaxed.values[var.index] + 1e-6) for var, _ in units}
    missing = cand.dp - sum(whole.values())
    # accelerators each campus may still take: its power less what the LP plan's DCI draws
    # there (each accelerator with its least-power cables, PUE), and its own cap
    room = {}
    for c in li.campuses:
        per_acc = li.campus_pue(c) * campus_accelerator_power_w(li, c)
        dci_w = max(0.0, relaxed.value(pm.e["power_at"][c.name]) - relaxed.value(pm.e["used"][c.name]) * per_acc)
        room[c.name] = min((c.power_budget_mw * MW - dci_w) / per_acc, campus_accelerator_cap(li, c))
    for var, takes in units:
        for c, acc in takes.items():
            room[c] -= acc * whole[var.index]
    # the missing pipelines: the columns the LP used most fractionally first (then column
    # order), one unit where every campus it touches has room; repeated until none fits
    order = sorted(units, key=lambda u: (-(relaxed.values[u[0].index] - whole[u[0].index]), u[0].index))
    progress = True
    while missing > 0 and progress:
        progress = False
        for var, takes in order:
            if missing == 0:
                break
            if whole[var.index] + 1 <= lm.ub[var.index] and all(room[c] + 1e-6 >= acc for c, acc in takes.items()):
                whole[var.index] += 1
                for c, acc in takes.items():
                    room[c] -= acc
                missing -= 1
                progress = True
    if missing != 0:
        return replace(nothing, solve_s=time.perf_counter() - started)
    saved = {i: (lm.lb[i], lm.ub[i]) for i in whole}
    try:
        for i, v in whole.items():
            lm.lb[i] = lm.ub[i] = float(v)
        left = None if params.time_limit_s is None else params.time_limit_s - (time.perf_counter() - started)
        if left is not None and left <= 0.01:
            return replace(nothing, solve_s=time.perf_counter() - started)
        # any plan (the model's objective is zero here): asking for the cheapest one to 5 %
        # gave the 64-campus tie-break a better start ($8.39 B at 60 s instead of $10.4 B)
        # but cost CP-SAT 121 s instead of 5.6 s and CBC 46 s instead of 7 s on the
        # backend tests, and the 16-campus benchmark 14 s instead of 8 s
        fixed = solve(lm, replace(params, time_limit_s=left))
    finally:
        for i, (lo, hi) in saved.items():
            lm.lb[i], lm.ub[i] = lo, hi
    out = fixed if fixed.values is not None else nothing
    return replace(out, status="feasible" if fixed.values is not None else "no_solution",
                   solve_s=time.perf_counter() - started)


def _unit(objective: str) -> str:
    return "tokens/s" if objective == "max-throughput" else "USD"


def _alternative(backend: str) -> str:
    from .lp import available_backends
    others = [b for b in available_backends() if b != backend]
    return others[0] if others else "another backend"


def _stopped_at_time_limit(res: SolveResult, params: SolveParameters) -> bool:
    if params.time_limit_s is None:
        return False
    # HiGHS and CBC say so; OR-Tools gives no reason, its elapsed time does
    return "time" in (res.message or "").lower() or res.solve_s >= 0.9 * params.time_limit_s


def _termination(res: SolveResult, params: SolveParameters) -> dict:
    at_limit = _stopped_at_time_limit(res, params)
    return {"reason": "time_limit" if at_limit else "solver_stopped",
            "time_limit_s": params.time_limit_s, "solver_message": res.message or ""}


def _solver_info(params, pm, build_s, solve_s, n_splits, tie_status="not_run") -> dict:
    import ortools
    import pulp
    return {"backend": params.backend, "build_s": round(build_s, 4), "solve_s": round(solve_s, 4),
            "variables": pm.lm.n_vars if pm else 0, "integer_variables": pm.lm.n_integer if pm else 0,
            "constraints": pm.lm.n_rows if pm else 0, "time_limit_s": params.time_limit_s,
            "gap_limit": params.gap, "threads": params.threads, "seed": params.seed,
            "splits_enumerated": n_splits, "tie_break": tie_status,
            "versions": {"python": platform.python_version(), "pulp": pulp.__version__,
                         "ortools": ortools.__version__}}


def _solver_block(li, report, params, pm, build_s, solve_s, n_splits):
    report.update({"schema_version": "1.0", "instance": li.instance.name,
                   "solver": _solver_info(params, pm, build_s, solve_s, n_splits)})
    return report


# ------------------------------------------------------------------ numbers in the planner's units

def _decimals(x: float, digits: int = 4) -> int:
    """Decimals that show `digits` significant digits of x (at least 0, at most 9)."""
    if x == 0 or not math.isfinite(x):
        return 0
    return max(0, min(9, digits - 1 - math.floor(math.log10(abs(x)))))


def _snap(x: float) -> float:
    """x to 9 significant digits: drops the solver's feasibility-tolerance noise
    (0.10240000003 -> 0.1024) before rounding to what is shown."""
    return float(f"{x:.9g}")


def _round_up(x: float, decimals: int) -> float:
    f = 10 ** decimals
    return math.ceil(x * f - 1e-9) / f


def _round_down(x: float, decimals: int) -> float:
    f = 10 ** decimals
    return math.floor(x * f + 1e-9) / f


def _fmt(x: float, decimals: int) -> str:
    text = f"{x:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


def _need_and_limit(limit: float, need: float) -> tuple[float, int]:
    """The need rounded up to enough decimals that it prints above the limit."""
    d = max(_decimals(limit), _decimals(need), _decimals(need - limit, 2))
    need_r = _round_up(need, d)
    while d < 9 and _fmt(need_r, d) == _fmt(limit, d):
        d += 1
        need_r = _round_up(need, d)
    return need_r, d


def _achievable(limit: float, have: float) -> tuple[float, int]:
    """What can be reached, rounded down, with enough decimals to differ from the limit."""
    d = max(_decimals(limit), _decimals(have) if have > 0 else 0, _decimals(limit - have, 2))
    have_r = max(0.0, _round_down(have, d))
    while d < 9 and _fmt(have_r, d) == _fmt(limit, d):
        d += 1
        have_r = max(0.0, _round_down(have, d))
    return have_r, d


# ------------------------------------------------------------------ infeasibility

def _without_power_limits(li: LoadedInstance) -> LoadedInstance:
    """The instance with unlimited campus power: splits are then limited by the
    accelerators on site only, so the elastic model can say how much power they need."""
    regions = [r.model_copy(update={"campuses": [c.model_copy(update={"power_budget_mw": 1e12}) for c in r.campuses]})
               for r in li.instance.regions]
    return LoadedInstance(li.instance.model_copy(update={"regions": regions}), li.catalog, li.path, li.raw)


def _field_of_campus(li: LoadedInstance, name: str) -> str:
    for ri, region in enumerate(li.instance.regions):
        for ci, c in enumerate(region.campuses):
            if c.name == name:
                return f"regions[{ri}].campuses[{ci}]"
    raise KeyError(name)


def _infeasible_report(li, lines, changes, params, pm, build_s, solve_s, n_splits, *, alternatives=(),
                       violations=None, kind_summary="", proven_minimal=True) -> dict:
    return _solver_block(li, {
        "status": "infeasible",
        "infeasibility": {"summary": kind_summary, "explanation": lines,
                          "violations": violations if violations is not None else list(changes),
                          "smallest_changes": list(changes), "alternatives": list(alternatives),
                          "proven_minimal": proven_minimal}}, params, pm, build_s, solve_s, n_splits)


def explain_infeasible(li: LoadedInstance, params: SolveParameters, build_s: float, solve_s: float,
                       n_splits: int, extra_rows=None, fallback: bool = True, _prior=None) -> dict:
    """Which budgets, fiber pairs or targets conflict, by how much, and what to change.

    Conflicts of the job with the hardware (memory, job minimums) are found first
    from the split table; when the fix is a field of the job, it is applied and the
    rest of the instance explained on top of it, so the changes listed together
    make the instance feasible."""
    prior_lines, prior_changes = _prior or ([], [])
    t0 = time.perf_counter()
    free = _without_power_limits(li)
    candidates, n_free = select_candidates(free)
    if n_free == 0:
        build_s += time.perf_counter() - t0
        lines, changes = _memory_conflict(li)
        lines, changes = prior_lines + lines, prior_changes + changes
        if changes and all(c["field"] for c in changes) and not _prior:
            # job.max_accelerators was the limit: explain the rest on top of raising it
            fixed = _with_job(li, {c["field"]: c["needed"] for c in changes})
            return explain_infeasible(fixed, params, build_s, solve_s, n_splits, extra_rows, fallback,
                                      _prior=(lines, changes))
        return _infeasible_report(li, lines, changes, params, None, build_s, solve_s, n_free, kind_summary="memory")
    job = li.instance.job
    if job.min_accelerators or job.min_tokens_per_s:
        # the elastic model may lower the job's minimums: offer it the splits below them too
        unbound, _ = select_candidates(_with_job(free, {"job.min_accelerators": None, "job.min_tokens_per_s": None}))
        seen = {c.index for c in candidates}
        candidates = candidates + [c for c in unbound if c.index not in seen]
    build_s += time.perf_counter() - t0
    pm = build_model(li, candidates, elastic=True)
    build_s += pm.build_s
    left = None if params.time_limit_s is None else max(MIN_EXPLAIN_S, params.time_limit_s - solve_s)
    res, phase_s = _elastic_solve(pm, replace(params, time_limit_s=left))
    solve_s += phase_s
    if res.values is None:
        if res.status == "infeasible":
            lines = prior_lines + _placement_diagnosis(li, candidates)
            return _infeasible_report(li, lines, prior_changes, params, pm, build_s, solve_s, n_splits,
                                      kind_summary="placement")
        lines = prior_lines + ["proven infeasible, but the explanation did not finish within the time limit: "
                               "raise --time-limit to see which budgets or targets conflict"]
        return _infeasible_report(li, lines, prior_changes, params, pm, build_s, solve_s, n_splits,
                                  kind_summary="unexplained", proven_minimal=False)
    changes, lines = _changes_from_slack(li, pm, res)
    if not changes and prior_changes:       # the job's own change was enough
        summary = ", ".join(sorted({c["kind"].replace("_", " ") for c in prior_changes}))
        return _infeasible_report(li, prior_lines, prior_changes, params, pm, build_s, solve_s, n_splits,
                                  kind_summary=summary)
    if not changes:
        if extra_rows:
            lines = ["the instance has plans, but none meets the extra constraints the caller added "
                     "(e.g. a capex cap below the cheapest plan)"]
            return _infeasible_report(li, lines, [], params, pm, build_s, solve_s, n_splits,
                                      kind_summary="extra constraints")
        # the elastic model found a plan with no violation among splits the power-limited
        # candidate front left out: solve again with the splits it used
        if fallback:
            plan = _solve_with(li, candidates, n_free, params, None, build_s, fallback=False)
            if plan["status"] in ("optimal", "feasible"):
                plan["solver"]["candidates_note"] = ("the power-limited candidate splits had no plan; "
                                                     "solved again with the splits the accelerators on site allow")
            return plan
        raise SolverError(f"backend '{params.backend}' found the model infeasible but its elastic copy "
                          "feasible without any violation (numerical trouble); "
                          f"try --solver {_alternative(params.backend)}")
    alternatives, alternatives_proven = [], False
    has_shortfall = any(name.partition("[")[0] in SHORTFALL_KINDS for name in pm.v["slack"])
    if has_shortfall and any(c["kind"] in RESOURCE_KINDS for c in changes):
        # a side answer: a short run (proving the most a target can keep can take long)
        alt_left = max(2 * MIN_EXPLAIN_S, 2 * phase_s)
        alt = _targets_only(li, pm, params, alt_left if left is None else min(left, alt_left))
        if alt is not None:
            res_b, solve_b = alt
            solve_s += solve_b
            alternatives_proven = res_b.status == "optimal"
            alt_changes, _ = _changes_from_slack(li, pm, res_b, resources_fixed=True)
            alternatives = [c for c in alt_changes if c["kind"] in SHORTFALL_KINDS]
            if alternatives:
                alternatives = prior_changes + alternatives
    lines, changes = prior_lines + lines, prior_changes + changes
    summary = ", ".join(sorted({c["kind"].replace("_", " ") for c in changes}))
    report = _infeasible_report(li, lines, changes, params, pm, build_s, solve_s, n_splits,
                                alternatives=alternatives, kind_summary=summary,
                                proven_minimal=res.status == "optimal")
    report["infeasibility"]["alternatives_proven"] = alternatives_proven
    return report


def _slack_sum(pm, kinds):
    return lsum(s for name, (s, _) in pm.v["slack"].items() if name.partition("[")[0] in kinds)


def _elastic_solve(pm, params) -> tuple[SolveResult, float]:
    """Lexicographic: first the least relative target shortfall with budgets and fiber
    free (zero unless no amount of fiber can carry a target), then, keeping it, the
    least relative increase of budgets and fiber."""
    lm = pm.lm
    spent = 0.0
    if any(name.partition("[")[0] in SHORTFALL_KINDS for name in pm.v["slack"]):
        lm.set_objective(_slack_sum(pm, SHORTFALL_KINDS), maximize=False)
        first = solve(lm, params)
        spent += first.solve_s
        if first.values is None:
            return first, spent
        shortfall = max(0.0, first.objective)
        lm.add(_slack_sum(pm, SHORTFALL_KINDS) <= shortfall * (1 + 1e-6) + 1e-9, "elastic_keep_target_shortfall")
        if params.time_limit_s is not None:
            params = replace(params, time_limit_s=max(MIN_EXPLAIN_S, params.time_limit_s - spent))
    lm.set_objective(_slack_sum(pm, RESOURCE_KINDS), maximize=False)
    res = solve(lm, params)
    spent += res.solve_s
    if res.values is None:
        return res, spent
    # a least-total plan may also nudge limits that are nearly binding (+4 W on a
    # campus); keep those as they are if a plan exists without touching them
    tiny = [s for name, (s, _) in pm.v["slack"].items()
            if name.partition("[")[0] in RESOURCE_KINDS and 0 < res.value(s) < NEGLIGIBLE_CHANGE]
    if tiny:
        saved = [(s.index, lm.ub[s.index]) for s in tiny]
        for s in tiny:
            lm.ub[s.index] = 0.0
        # proving this one optimal can take minutes (seen: 469 s after 2.4 s for the
        # least total): a short run, its incumbent taken if it is about as small
        cap = max(MIN_EXPLAIN_S, 2 * res.solve_s)
        if params.time_limit_s is not None:
            cap = min(cap, max(MIN_EXPLAIN_S, params.time_limit_s - spent))
        pruned = solve(lm, replace(params, time_limit_s=cap))
        spent += pruned.solve_s
        for index, ub in saved:
            lm.ub[index] = ub
        if pruned.values is not None and pruned.objective <= res.objective * 1.1 + NEGLIGIBLE_CHANGE:
            res = pruned
    return res, spent


def _targets_only(li, pm, params, left):
    """Re-solve the elastic model with budgets and fiber fixed: how far must targets drop?"""
    lm = pm.lm
    saved = {}
    rows = lm.rows
    lm.rows = [row for row in rows if row[0] != "elastic_keep_target_shortfall"]
    for name, (s, scale) in pm.v["slack"].items():
        if name.partition("[")[0] in RESOURCE_KINDS:
            saved[s.index] = lm.ub[s.index]
            lm.ub[s.index] = 0.0
    objective, maximize = lm.objective, lm.maximize
    lm.set_objective(_slack_sum(pm, SHORTFALL_KINDS), maximize=False)
    try:
        res = solve(lm, replace(params, time_limit_s=left))
    finally:
        lm.rows = rows
        for i, ub in saved.items():
            lm.ub[i] = ub
        lm.objective, lm.maximize = objective, maximize
    if res.values is None:
        return None
    return res, res.solve_s


def _route_use(li, pm, res, i) -> tuple[str, str]:
    """What a route's capacity carries in the elastic solution, and how it is lit."""
    r = li.instance.routes[i]
    same_region = li.region_of[r.a] == li.region_of[r.b]
    uses = []
    if same_region:
        region = next(x for x in li.instance.regions if x.name == li.region_of[r.a])
        tgt = li.intra_target_pbps(region)
        if tgt > 0 and len(region.campuses) > 1:
            uses.append(f"the intra-region target of region {region.name} ({tgt:g} Pbit/s)")
    tflow = res.value(pm.e["target_load"][i]) if pm.e["target_load"][i].terms else 0.0
    if tflow > 1e-6:
        uses.append(f"the inter-region target ({li.instance.targets.inter_region_pbps:g} Pbit/s; "
                    f"{tflow / 1e3:,.1f} Tb/s of it on this route)")
    dp = res.value(pm.e["dp_load"][i]) if pm.e["dp_load"][i].terms else 0.0
    if dp > 1e-6:
        uses.append(f"the job's data-parallel sync ({dp / 1e3:,.1f} Tb/s at <= "
                    f"{li.instance.network.link_utilization_max:.0%} utilisation)")
    pp = sum(pm.candidates[k].pp_gbps_per_split_pipeline * res.value(var)
             for (ri, k), var in pm.v["n"].items() if ri == i)
    if pp > 1e-6:
        uses.append(f"split pipelines ({pp / 1e3:,.1f} Tb/s)")
    lit = []
    for o, opt in enumerate(pm.e["options"][i]):
        waves = round(res.value(pm.v["wavelengths"][i, o]))
        if waves <= 0:
            continue
        per_pair = opt.rate_gbps * opt.channels_per_pair
        lit.append(f"{opt.module}{' on ' + opt.band if opt.band else ''} "
                   f"({per_pair / 1e3:,.1f} Tb/s per pair)")
    return " and ".join(uses) or "the plan", ", ".join(lit)


def _changes_from_slack(li, pm, res, resources_fixed: bool = False) -> tuple[list[dict], list[str]]:
    changes, lines = [], []
    inst = li.instance
    for name, (var, scale) in sorted(pm.v["slack"].items()):
        # slacks are fractions of their limit (planner.build_model)
        amount = res.value(var) * scale
        kind, _, who = name.partition("[")
        who = who.rstrip("]")
        if amount <= 1e-6 * max(1.0, scale) + 1e-9:
            continue
        if kind == "power":
            camp = next(c for c in li.campuses if c.name == who)
            budget = camp.power_budget_mw
            # a hair above what the solver found: its feasibility tolerance is relative
            need = _snap(budget + amount / MW)
            need_r, d = _need_and_limit(budget, need)
            dom = li.catalog.scale_up_domains[camp.scale_up_domain]
            acc = round(res.value(pm.e["used"][who]))
            acc_mw = acc * dom.power_w_per_accelerator * li.campus_pue(camp) / MW
            rest_mw = res.value(pm.e["power_at"][who]) / MW - acc_mw
            parts = []
            if acc:
                parts.append(f"{acc:,} accelerator{'s' if acc != 1 else ''} {_fmt(acc_mw, d)} MW")
            if rest_mw > 10 ** -d:
                parts.append(f"cables and DCI optics {_fmt(rest_mw, d)} MW")
            detail = " + ".join(parts) + f" (PUE {li.campus_pue(camp):g} included)"
            lines.append(f"power: campus {who} needs {_fmt(need_r, d)} MW in the closest feasible plan; budget is "
                         f"{_fmt(budget, d)} MW (+{_fmt(need_r - budget, d)} MW): {detail}")
            changes.append({"kind": "power", "where": who, "field": f"{_field_of_campus(li, who)}.power_budget_mw",
                            "limit": budget, "needed": need_r, "unit": "MW",
                            "action": f"raise the power budget of campus {who} from {_fmt(budget, d)} to {_fmt(need_r, d)} MW"})
        elif kind == "capex":
            cap = inst.budgets.capex_usd
            need_r = float(math.ceil(_snap(cap + amount) - 1e-9))
            parts = ", ".join(f"{k.replace('_', ' ')} ${res.value(e):,.0f}" for k, e in pm.e["capex_parts"].items()
                              if res.value(e) > 0.5)
            lines.append(f"capex: the closest feasible plan costs ${need_r:,.0f}; budget is ${cap:,.0f} "
                         f"(+${need_r - cap:,.0f}): {parts}")
            changes.append({"kind": "capex", "where": "budgets.capex_usd", "field": "budgets.capex_usd",
                            "limit": cap, "needed": need_r, "unit": "USD",
                            "action": f"raise budgets.capex_usd from ${cap:,.0f} to ${need_r:,.0f}"})
        elif kind == "fiber_pairs":
            i = int(who)
            r = inst.routes[i]
            need = r.fiber_pairs_available + math.ceil(amount - 1e-6)
            use, lit = _route_use(li, pm, res, i)
            lines.append(f"fiber: route {r.a}-{r.b} ({r.distance_km:,.0f} km) needs {need:,} fiber pairs for {use}"
                         f"{'; lit with ' + lit if lit else ''}; it has {r.fiber_pairs_available:,} "
                         f"(+{need - r.fiber_pairs_available:,})")
            changes.append({"kind": "fiber_pairs", "where": f"{r.a}-{r.b}", "field": f"routes[{i}].fiber_pairs_available",
                            "limit": r.fiber_pairs_available, "needed": need, "unit": "pairs",
                            "action": f"light {need:,} fiber pairs on route {r.a}-{r.b} (has {r.fiber_pairs_available:,})"})
        elif kind == "intra_region_target":
            ri, region = next((j, x) for j, x in enumerate(inst.regions) if x.name == who)
            target = li.intra_target_pbps(region)
            have = _snap(max(0.0, target - amount / GBPS_PER_PBPS))
            have_r, d = _achievable(target, have)
            lines.append(f"target: region {who} intra-region target {_fmt(target, d)} Pbit/s; at most "
                         f"{_fmt(have_r, d)} Pbit/s can be built with the fiber and budgets given")
            changes.append({"kind": kind, "where": who, "field": f"regions[{ri}].intra_region_target_pbps",
                            "limit": target, "needed": have_r, "unit": "Pbit/s",
                            "action": f"lower the intra-region target of region {who} from {_fmt(target, d)} "
                                      f"to {_fmt(have_r, d)} Pbit/s"})
        elif kind == "inter_region_target":
            target = inst.targets.inter_region_pbps
            have = _snap(max(0.0, target - amount / GBPS_PER_PBPS))
            have_r, d = _achievable(target, have)
            pair = who.replace(",", "-")
            lines.append(f"target: inter-region target {_fmt(target, d)} Pbit/s between regions {pair}; at most "
                         f"{_fmt(have_r, d)} Pbit/s can be built with the fiber and budgets given"
                         f"{_inter_route_hint(li, who, pm)}")
            changes.append({"kind": kind, "where": pair, "field": "targets.inter_region_pbps",
                            "limit": target, "needed": have_r, "unit": "Pbit/s",
                            "action": f"lower targets.inter_region_pbps from {_fmt(target, d)} to {_fmt(have_r, d)} "
                                      f"(regions {pair})"})
        elif kind == "job_min_accelerators":
            limit = inst.job.min_accelerators
            have = max(1, math.floor(limit - amount + 1e-6))
            why = "within the budgets and fiber given" if resources_fixed else \
                "in whole pipelines of the candidate splits, whatever the budgets"
            lines.append(f"job: job.min_accelerators is {limit:,}; at most {have:,} can be placed {why}"
                         f"{_split_of(pm, res)}")
            changes.append({"kind": kind, "where": "job.min_accelerators", "field": "job.min_accelerators",
                            "limit": limit, "needed": have, "unit": "accelerators",
                            "action": f"lower job.min_accelerators from {limit:,} to {have:,}"})
        elif kind == "job_min_tokens":
            limit = inst.job.min_tokens_per_s
            have = float(max(1, math.floor(_snap(limit - amount))))
            why = "within the budgets and fiber given" if resources_fixed else "with the splits the campuses can host"
            lines.append(f"job: job.min_tokens_per_s is {limit:,.0f}; at most {have:,.0f} tokens/s {why}"
                         f"{_split_of(pm, res)}")
            changes.append({"kind": kind, "where": "job.min_tokens_per_s", "field": "job.min_tokens_per_s",
                            "limit": limit, "needed": have, "unit": "tokens/s",
                            "action": f"lower job.min_tokens_per_s from {limit:,.0f} to {have:,.0f}"})
    # one global inter-region target: the lowest achievable over region pairs applies
    inter = [c for c in changes if c["kind"] == "inter_region_target"]
    if len(inter) > 1:
        low = min(inter, key=lambda c: c["needed"])
        changes = [c for c in changes if c["kind"] != "inter_region_target" or c is low]
    return changes, lines


def _split_of(pm, res) -> str:
    k = max(range(len(pm.candidates)), key=lambda i: res.value(pm.v["z"][i]))
    c = pm.candidates[k]
    return (f" (split TP {c.tp} x PP {c.pp} x DP {c.dp} = {c.accelerators:,} accelerators, "
            f"{c.tokens_per_s:,.0f} tokens/s single-site)")


def _inter_route_hint(li, who, pm) -> str:
    ra, rb = who.split(",")
    parts = []
    for i, r in enumerate(li.instance.routes):
        if {li.region_of[r.a], li.region_of[r.b]} != {ra, rb}:
            continue
        opts = pm.e["options"][i]
        if not opts:
            parts.append(f"{r.a}-{r.b} ({r.distance_km:,.0f} km): no module allowed on it reaches")
            continue
        best = max(opts, key=lambda o: o.rate_gbps * o.channels_per_pair)
        per_pair = best.rate_gbps * best.channels_per_pair
        need_pairs = math.ceil(li.instance.targets.inter_region_pbps * GBPS_PER_PBPS / per_pair)
        parts.append(f"{r.a}-{r.b} ({r.distance_km:,.0f} km): {best.module}"
                     f"{' on ' + best.band if best.band else ''} carries {per_pair / 1000:,.1f} Tb/s per pair, "
                     f"the target alone needs {need_pairs:,} pairs; route has {r.fiber_pairs_available:,}")
    return (": " + "; ".join(parts)) if parts else ""


def _placement_diagnosis(li, candidates) -> list[str]:
    """The elastic model is infeasible: budgets, fiber and targets are not the problem."""
    job = li.instance.job
    on_site = {c.name: li.accelerators_at(c) for c in li.campuses}
    smallest = min(candidates, key=lambda c: c.replica_accelerators)
    lines = ["no placement of the job fits the campuses, whatever the budgets, fiber pairs and targets:"]
    biggest = max(on_site.values())
    if smallest.replica_accelerators > biggest:
        half = smallest.replica_accelerators // 2
        split = li.instance.network.allow_split_pipelines and smallest.pp % 2 == 0
        lines.append(f"the smallest pipeline the memory allows needs {smallest.replica_accelerators:,} accelerators "
                     f"(TP {smallest.tp} x PP {smallest.pp}) and the largest campus has {biggest:,}"
                     + (f"; a pipeline split across two campuses needs {half:,} at each end of an intra-region route"
                        if split else ""))
    if job.min_accelerators:
        lines.append(f"job.min_accelerators is {job.min_accelerators:,}; {sum(on_site.values()):,} accelerators are on site")
    if job.min_tokens_per_s:
        lines.append(f"job.min_tokens_per_s is {job.min_tokens_per_s:,.0f}")
    if len(lines) == 1:
        lines.append("campuses that must both be active have no fiber path between them, or the job's "
                     "data-parallel traffic cannot be routed (see network.k_paths)")
    return lines


def _with_job(li: LoadedInstance, updates: dict) -> LoadedInstance:
    """The instance with job fields replaced ({"job.min_accelerators": 32, ...})."""
    job = li.instance.job.model_copy(update={k.split(".", 1)[1]: v for k, v in updates.items()})
    return LoadedInstance(li.instance.model_copy(update={"job": job}), li.catalog, li.path, li.raw)


def _memory_conflict(li) -> tuple[list[str], list[dict]]:
    """No split fits the HBM on the accelerators the campuses have."""
    w = perf.workload_from_instance(li)
    job = li.instance.job
    name = job.model if isinstance(job.model, str) else "the model"
    on_site = sum(li.accelerators_at(c) for c in li.campuses)
    limit = min(on_site, job.max_accelerators) if job.max_accelerators else on_site
    usable = w.accelerator.hbm_gb * (1 - w.hbm_reserve_fraction)
    hbm = (f"{w.accelerator.hbm_gb:g} GB of HBM per {li.catalog.scale_up_domains[li.campuses[0].scale_up_domain].accelerator} "
           f"({usable:,.1f} GB usable after the {w.hbm_reserve_fraction:.0%} reserve)")
    table = perf.enumerate_splits(w, max_accelerators=10 ** 15)
    changes = []
    if len(table):
        i = min(range(len(table)), key=lambda j: (int(table.accelerators[j]), float(table.memory_gb[j])))
        row = table.row(i)
        need = int(row["accelerators"])
        where = (f"job.max_accelerators allows {limit:,}" if job.max_accelerators and job.max_accelerators < on_site
                 else f"the campuses have {on_site:,}")
        lines = [f"memory: {name} needs at least {need:,} accelerators to fit {hbm}; {where}. The smallest split "
                 f"that fits is TP {row['tp']} x PP {row['pp']} x DP {row['dp']} (micro-batch {row['micro_batch']}, "
                 f"recompute {row['recompute']}) at {row['memory_gb']:,.1f} GB per accelerator"]
        if job.max_accelerators and job.max_accelerators < on_site and need <= on_site:
            changes.append({"kind": "memory", "where": "job.max_accelerators", "field": "job.max_accelerators",
                            "limit": job.max_accelerators, "needed": need, "unit": "accelerators",
                            "action": f"raise job.max_accelerators from {job.max_accelerators:,} to {need:,}"})
        else:
            changes.append({"kind": "memory", "where": "accelerators on site", "field": None,
                            "limit": on_site, "needed": need, "unit": "accelerators",
                            "action": f"add at least {need - on_site:,} accelerators across the campuses "
                                      f"(and the power for them), or train a smaller model"})
    else:
        tp = max(perf.tp_options(w))
        mb = min(w.micro_batch_sizes)
        rc = "full" if "full" in w.recompute_modes else w.recompute_modes[-1]
        dp = w.global_batch_sequences // mb if w.distributed_optimizer else 1
        ev = perf.evaluate_split(w, tp, w.layers, dp, micro_batch=mb, interleave=1, recompute=rc)
        parts = ", ".join(f"{lab} {ev[key]:,.1f}" for key, lab in perf._MEMORY_TERMS)
        lines = [f"memory: no split of {name} fits {hbm} at any number of accelerators: even the leanest, "
                 f"TP {tp} (the largest the {w.domain.accelerators_per_domain}-accelerator scale-up domain and the "
                 f"{w.heads} heads allow) x PP {w.layers} (one layer per stage), micro-batch {mb}, recompute {rc}, "
                 f"needs {ev['memory_gb']:,.1f} GB per accelerator ({parts} GB)"]
        changes.append({"kind": "memory", "where": "job.model", "field": None, "limit": round(usable, 3),
                        "needed": round(ev["memory_gb"], 3), "unit": "GB",
                        "action": "train a smaller model, or use an accelerator with more HBM "
                                  "or a larger scale-up domain"})
    return lines, changes


def write_outputs(plan: dict, li: LoadedInstance, out_dir: str | Path, report_md: str) -> list[str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    (out / "plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(str(out / "plan.json"))
    if plan.get("status") in ("optimal", "feasible"):
        (out / "bom.csv").write_text(bom_csv(plan, li), encoding="utf-8")
        written.append(str(out / "bom.csv"))
    (out / "report.md").write_text(report_md, encoding="utf-8")
    written.append(str(out / "report.md"))
    import yaml
    (out / "instance.resolved.yaml").write_text(
        yaml.safe_dump(li.resolved(), sort_keys=False), encoding="utf-8")
    written.append(str(out / "instance.resolved.yaml"))
    return written
