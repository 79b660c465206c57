"""Solve an instance end to end: candidates, model, solver, tie-break, plan, verification.

A plan is emitted only if the independent verifier accepts it. An infeasible
instance is explained with an elastic copy of the model (penalised slack on
every budget and target, minimal total relative violation).
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

from . import performance as perf
from .errors import SolverError
from .instance import LoadedInstance
from .lp import SolveParameters, solve
from .plan import bom_csv, extract_plan
from .planner import GBPS_PER_PBPS, MW, build_model, select_candidates
from .verify import verify_plan


class PlanRejected(Exception):
    """The verifier found violations: a bug, never shown as a plan."""


def solve_instance(li: LoadedInstance, params: SolveParameters = SolveParameters(),
                   objective: str | None = None, extra_rows=None) -> dict:
    """Return a plan dict (status optimal/feasible) or an infeasibility report."""
    objective = objective or li.instance.objective
    if objective != li.instance.objective:
        li = LoadedInstance(li.instance.model_copy(update={"objective": objective}), li.catalog, li.path, li.raw)
    t0 = time.perf_counter()
    candidates, n_splits = select_candidates(li)
    cand_s = time.perf_counter() - t0
    if not candidates:
        return _no_split_report(li, n_splits, cand_s)
    pm = build_model(li, candidates)
    if extra_rows:
        extra_rows(pm)
    res = solve(pm.lm, params)
    solve_s = res.solve_s
    build_s = cand_s + pm.build_s
    if res.status in ("infeasible", "no_solution") and res.values is None:
        if res.status == "infeasible":
            return explain_infeasible(li, candidates, params, build_s, solve_s, n_splits)
        return _solver_block(li, {"status": "no_solution", "message": "stopped by the time limit before any plan was found; "
                                  "raise --time-limit or loosen --gap"}, params, pm, build_s, solve_s, n_splits)
    if res.status == "unbounded":
        raise SolverError(f"backend '{params.backend}' reports the model unbounded: a modelling bug")
    primary = res
    tie_status = "not_run"
    # deterministic tie-break: among optimal plans, the cheapest (max-throughput) or
    # the fastest (min-cost)
    remaining = None if params.time_limit_s is None else max(1.0, params.time_limit_s - solve_s)
    if res.status == "optimal":
        from .lp import lsum
        lm = pm.lm
        if objective == "max-throughput":
            tol = 1e-9 * max(1.0, abs(res.objective))
            lm.add(pm.e["throughput"] >= res.objective - tol, "tie_break_keep_throughput")
            lm.set_objective(pm.e["capex"], maximize=False)
        else:
            tol = 1e-9 * max(1.0, abs(res.objective)) + 1e-6
            lm.add(pm.e["capex"] <= res.objective + tol, "tie_break_keep_cost")
            lm.set_objective(pm.e["throughput"], maximize=True)
        res2 = solve(lm, replace(params, time_limit_s=remaining))
        solve_s += res2.solve_s
        if res2.values is not None:
            res = replace(res2, objective=primary.objective, bound=primary.bound, gap=primary.gap, status="optimal")
            tie_status = "optimal" if res2.status == "optimal" else "incomplete"
        else:
            tie_status = "incomplete"
    plan = extract_plan(pm, res)
    plan["objective"]["value"] = primary.objective
    plan["objective"]["bound"] = primary.bound
    plan["objective"]["gap"] = primary.gap
    plan["status"] = primary.status
    plan["solver"] = _solver_info(params, pm, build_s, solve_s, n_splits, tie_status)
    violations = verify_plan(plan, li)
    plan["verification"] = {"passed": not violations, "violations": violations}
    if violations:
        raise PlanRejected("the independent verifier rejected the plan:\n  " + "\n  ".join(violations))
    return plan


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


def _no_split_report(li, n_splits, cand_s) -> dict:
    w = perf.workload_from_instance(li)
    job = li.instance.job
    reasons = []
    if n_splits == 0:
        # the smallest memory need over the largest practical split
        best = None
        dom = w.domain
        for tp in sorted({t for t in range(1, dom.accelerators_per_domain + 1)
                          if dom.accelerators_per_domain % t == 0 and w.dims.heads % t == 0}, reverse=True)[:1]:
            ev = perf.evaluate_split(w, tp, w.dims.layers, 1, micro_batch=1, interleave=1, recompute="full")
            best = ev
        if best is not None:
            reasons.append(f"memory: no split fits {w.accelerator.hbm_gb:g} GB of HBM; even TP {best['tp']} x PP {best['pp']} "
                           f"with full recompute needs: {best.get('reason') or 'see evaluate'}")
        else:
            reasons.append("memory: no split fits the accelerator's HBM")
    else:
        reasons.append(f"throughput: none of the {n_splits} memory-feasible splits reaches the job's minimum "
                       f"(min_tokens_per_s={job.min_tokens_per_s}, min_accelerators={job.min_accelerators}) "
                       "with the accelerators the campuses can power")
    return {"schema_version": "1.0", "instance": li.instance.name, "status": "infeasible",
            "infeasibility": {"violations": [], "explanation": reasons},
            "solver": {"build_s": round(cand_s, 4), "splits_enumerated": n_splits}}


def explain_infeasible(li, candidates, params, build_s, solve_s, n_splits) -> dict:
    """Elastic model: which budgets/targets conflict and by how much (planner units)."""
    pm = build_model(li, candidates, elastic=True)
    res = solve(pm.lm, replace(params, time_limit_s=params.time_limit_s))
    solve_s += res.solve_s
    violations = []
    lines = []
    if res.values is None:
        lines.append("the instance stays infeasible even with every budget and target relaxed: "
                     "fiber pairs, reach or accelerator counts cannot host any split")
    else:
        for name, (var, scale) in sorted(pm.v["slack"].items()):
            amount = res.value(var)
            if amount <= 1e-6 * max(1.0, scale):
                continue
            kind, _, who = name.partition("[")
            who = who.rstrip("]")
            if kind == "power":
                camp = next(c for c in li.campuses if c.name == who)
                need = camp.power_budget_mw + amount / MW
                lines.append(f"campus {who} needs {need:,.1f} MW for the cheapest feasible plan; budget is {camp.power_budget_mw:,.1f} MW")
                violations.append({"kind": "power", "where": who, "limit": camp.power_budget_mw, "needed": need, "unit": "MW"})
            elif kind == "capex":
                cap = li.instance.budgets.capex_usd
                lines.append(f"capex needs ${cap + amount:,.0f} at least; budget is ${cap:,.0f}")
                violations.append({"kind": "capex", "where": "budgets.capex_usd", "limit": cap, "needed": cap + amount, "unit": "USD"})
            elif kind == "intra_region_target":
                region = next(r for r in li.instance.regions if r.name == who)
                target = li.intra_target_pbps(region)
                have = target - amount / GBPS_PER_PBPS
                lines.append(f"region {who}: intra-region target {target:g} Pbit/s, at most {have:,.3f} Pbit/s can be built "
                             f"within the fiber pairs, reach and budgets")
                violations.append({"kind": "intra_region_target", "where": who, "limit": target, "achievable": have, "unit": "Pbit/s"})
            elif kind == "inter_region_target":
                target = li.instance.targets.inter_region_pbps
                have = target - amount / GBPS_PER_PBPS
                detail = _inter_route_hint(li, who, pm, res)
                lines.append(f"regions {who.replace(',', '-')}: inter-region target {target:g} Pbit/s, at most {have:,.3f} Pbit/s "
                             f"can be built{detail}")
                violations.append({"kind": "inter_region_target", "where": who, "limit": target, "achievable": have, "unit": "Pbit/s"})
    return {"schema_version": "1.0", "instance": li.instance.name, "status": "infeasible",
            "infeasibility": {"violations": violations, "explanation": lines,
                              "smallest_changes": [v for v in violations]},
            "solver": _solver_info(params, pm, build_s, solve_s, n_splits)}


def _inter_route_hint(li, who, pm, res) -> str:
    ra, rb = who.split(",")
    parts = []
    for i, r in enumerate(li.instance.routes):
        if {li.region_of[r.a], li.region_of[r.b]} != {ra, rb}:
            continue
        opts = pm.e["options"][i]
        if not opts:
            continue
        best = max(opts, key=lambda o: o.rate_gbps * o.channels_per_pair)
        per_pair = best.rate_gbps * best.channels_per_pair
        need_pairs = math.ceil(li.instance.targets.inter_region_pbps * GBPS_PER_PBPS / per_pair)
        parts.append(f"{r.a}-{r.b} ({r.distance_km:,.0f} km): {best.module} on {best.band} carries "
                     f"{per_pair / 1000:,.1f} Tb/s per pair, the target alone needs {need_pairs} pairs; route has {r.fiber_pairs_available}")
    return (": " + "; ".join(parts)) if parts else ""


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
