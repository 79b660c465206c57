"""Human-readable report of a plan (text for the terminal, Markdown for --out)."""
from __future__ import annotations

import math


def _fmt_gbps(g: float) -> str:
    if g >= 1e6:
        return f"{g / 1e6:,.3f} Pb/s"
    if g >= 1e3:
        return f"{g / 1e3:,.1f} Tb/s"
    return f"{g:,.0f} Gb/s"


def _table(headers: list[str], rows: list[list], md: bool) -> list[str]:
    cells = [[str(c) for c in r] for r in rows]
    if md:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in cells]
        return out
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]


def _num(x: float, digits: int = 4) -> str:
    """x with at least `digits` significant digits and thousands separators (0.05 MW stays 0.05)."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, min(9, digits - 1 - math.floor(math.log10(abs(x)))))
    return f"{x:,.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{x:,.0f}"


def _limit_phrase(plan: dict) -> str:
    term = plan.get("termination") or {}
    if term.get("reason") == "time_limit":
        return f"the solver stopped at its time limit ({term['time_limit_s']:g} s)"
    msg = term.get("solver_message")
    return "the solver stopped before proving optimality" + (f" ({msg})" if msg else "")


def first_line(plan: dict) -> str:
    st = plan["status"]
    if st == "optimal":
        line = f"OPTIMAL plan for {plan['instance']} (proven within gap {plan['solver']['gap_limit']:.0e})"
        return line + _tie_break_note(plan)
    if st == "feasible":
        o = plan["objective"]
        unit = o.get("unit", "")
        gap = "unknown" if o["gap"] is None else f"{o['gap']:.2%}"
        bound = "unknown" if o["bound"] is None else f"{o['bound']:,.6g} {unit}"
        return (f"FEASIBLE plan for {plan['instance']}, NOT proven optimal: {_limit_phrase(plan)} "
                f"(incumbent {o['value']:,.6g} {unit}, bound {bound}, gap {gap})")
    if st == "no_solution":
        return f"NO PLAN for {plan['instance']}: {plan.get('message', 'no incumbent found')}"
    summary = (plan.get("infeasibility") or {}).get("summary")
    return f"INFEASIBLE: {plan['instance']} has no plan" + (f" (conflict: {summary})" if summary else "")


def render(plan: dict, md: bool = False) -> str:
    h = (lambda s: f"\n## {s}\n") if md else (lambda s: f"\n{s}\n" + "=" * len(s))
    out = [("# " if md else "") + first_line(plan)]
    if plan["status"] not in ("optimal", "feasible"):
        inf = plan.get("infeasibility", {})
        if inf:
            out.append(h("Why"))
            out += [f"- {line}" for line in inf.get("explanation", [])] or ["- (no explanation found)"]
            changes = inf.get("smallest_changes") or []
            if changes:
                title = "Smallest change that makes it feasible" if len(changes) == 1 else \
                    "Smallest set of changes that makes it feasible"
                if not inf.get("proven_minimal", True):
                    title += " (not proven the smallest)"
                out.append(h(title))
                out += [f"- {c['action']}" + (f"  [{c['field']}: {_num(c['limit'], 9)} -> {_num(c['needed'], 9)}]"
                                              if c.get("field") else "") for c in changes]
            alts = inf.get("alternatives") or []
            if alts:
                out.append(h("Or, keeping budgets and fiber as they are" +
                             ("" if inf.get("alternatives_proven", True) else " (enough, not proven the least)")))
                out += [f"- {c['action']}  [{c['field']}: {_num(c['limit'], 9)} -> {_num(c['needed'], 9)}]"
                        for c in alts]
        return "\n".join(out) + "\n"
    P, perf, T = plan["parallelism"], plan["performance"], plan["totals"]
    o = plan["objective"]
    out.append(f"objective {o['name']}: {o['value']:,.6g} {o['unit']}{_objective_note(o, perf)}")
    out.append(h("Parallelism split"))
    out.append(f"TP {P['tp']} x PP {P['pp']} x DP {P['dp']} = {P['accelerators']:,} accelerators; micro-batch "
               f"{P['micro_batch']}, {P['micro_batches_per_pipeline']} micro-batches per pipeline, interleave "
               f"{P['interleave']}, recompute {P['recompute']} (chosen among {P['candidates_considered']:,} "
               f"{P.get('candidate_set', 'Pareto-front splits')})")
    ex = perf["exposed_s"]
    out.append(f"step time {_dur(perf['step_time_s'])} = single-site {_dur(perf['step_time_single_site_s'])} + "
               f"intra-region sync {_dur(ex['intra_region'])} + inter-region sync {_dur(ex['inter_region'])} + "
               f"PP latency {_dur(ex['pp_latency'])}")
    terms = perf.get("step_time_terms_s")
    if terms:
        single = perf["step_time_single_site_s"]
        out.append(f"single-site step {_dur(single)}: " + ", ".join(
            f"{label} {_dur(terms[key])} ({terms[key] / single:.1%})" for key, label in _STEP_LABELS))
    by_scope = perf.get("efficiency_loss_by_scope")
    if by_scope:
        out.append("efficiency loss by distance class: " + ", ".join(
            f"{scope.replace('_', '-')} {by_scope[scope]:.2%}" for scope in ("campus", "intra_region", "inter_region")))
    if "faster_candidate_splits" in perf:
        out.append(_why_split(plan))
    b = perf["efficiency_loss_bound"]
    out.append(f"tokens/s {perf['tokens_per_s']:,.0f} (single-site {perf['tokens_per_s_single_site']:,.0f}); "
               f"MFU {perf['mfu']:.1%}; efficiency loss {perf['efficiency_loss']:.2%} "
               f"(bounds: campus {b['campus']:.0%}, intra-region {b['intra_region']:.0%}, inter-region {b['inter_region']:.0%})")
    mem = plan.get("memory", {})
    if mem:
        out.append("memory per accelerator: " + ", ".join(f"{k[:-3]} {v:,.1f} GB" for k, v in mem.items()))
    out.append(h("Placement"))
    rows = [[p["campus"], p["region"], p["replicas"], p["split_pipeline_halves"], f"{p['accelerators']:,}",
             f"{p['accelerators_available']:,}", p["domains_used"],
             f"{_num(T['power_w_by_campus'][p['campus']] / 1e6, 3)}/{_num(T['power_budget_w_by_campus'][p['campus']] / 1e6)}"]
            for p in plan["placement"]]
    out += _table(["campus", "region", "replicas", "split halves", "accelerators", "available", "domains", "power MW used/budget"], rows, md)
    for sp in plan["split_pipelines"]:
        out.append(f"  {sp['pipelines']} pipeline(s) split by PP stages across {sp['a']} - {sp['b']}")
    out.append(h("DCI links"))
    rows = []
    for l in plan["dci_links"]:
        bands = ",".join(sorted({d["band_plan"] or "grey" for d in l["detail"]})) or "-"
        rows.append([f"{l['a']}-{l['b']}", f"{l['distance_km']:,.0f}", l["scope"], l["module"] or "-", bands,
                     l["wavelengths"], l["modules"], f"{l['fiber_pairs']}/{l['fiber_pairs_available']}",
                     _fmt_gbps(l["capacity_gbps"]), _fmt_gbps(l["demand_gbps"]), f"{l['utilization']:.0%}",
                     f"${l['cost_usd'] / 1e6:,.2f}M", f"{l['power_w'] / 1e3:,.1f} kW"])
    out += _table(["route", "km", "scope", "module", "band", "waves", "modules", "pairs used/avail", "capacity",
                   "job demand", "util", "cost", "power"], rows, md)
    out.append(h("Cables"))
    rows = [[c["campus"], c["connection"], c["type"], f"{c['length_m']:g}", f"{c['count']:,}",
             f"${c['cost_usd'] / 1e6:,.2f}M", f"{c['power_w'] / 1e3:,.1f} kW"] for c in plan["cables"]]
    out += _table(["campus", "connection", "type", "length m", "count", "cost", "power"], rows, md)
    out.append(h("Budgets and targets"))
    cap = plan["budgets"]["capex_usd"]
    out.append(f"capex ${T['capex_usd']:,.0f}" + (f" of ${cap:,.0f} budget" if cap else " (no budget)") + ": " +
               ", ".join(f"{k} ${v / 1e6:,.1f}M" for k, v in T["capex_usd_by_category"].items()))
    tg = plan["targets"]
    for r, got in T["intra_region_capacity_gbps"].items():
        need = tg["intra_region_gbps"][r]
        out.append(f"intra-region {r}: {_fmt_gbps(got)} built, target {_fmt_gbps(need)} -> {'met' if got >= need * (1 - 1e-9) else 'NOT met'}")
    for pair, got in T["inter_region_capacity_gbps"].items():
        need = tg["inter_region_gbps"]
        out.append(f"inter-region {pair.replace('|', ' - ')}: {_fmt_gbps(got)} (max flow), target {_fmt_gbps(need)} -> {'met' if got >= need * (1 - 1e-9) else 'NOT met'}")
    S = plan["solver"]
    out.append(h("Solver"))
    out.append(f"{S['backend']}: status {plan['status']}, build {S['build_s']:.2f} s, solve {S['solve_s']:.2f} s"
               f"{_stage_split(S)}{_wall(S)}, "
               f"gap {o['gap'] if o['gap'] is None else format(o['gap'], '.2e')}, {S['variables']:,} variables "
               f"({S['integer_variables']:,} integer), {S['constraints']:,} constraints, {S['splits_enumerated']:,} splits enumerated; "
               f"tie-break {S['tie_break']}; verifier: {'passed' if plan['verification']['passed'] else 'FAILED'}")
    return "\n".join(out) + "\n"


_STEP_LABELS = (("compute", "compute"), ("tp", "TP collectives"), ("bubble", "pipeline bubble"),
                ("pp", "PP sends"), ("dp_exposed", "DP all-reduce exposed"), ("optimizer", "optimizer step"))


def _dur(x: float) -> str:
    """A duration in s, or in ms below 1 s (tiny models step in about 1 ms)."""
    if x >= 1:
        return f"{x:,.3f} s"
    ms = x * 1e3
    decimals = 0 if ms == 0 else max(0, 2 - math.floor(math.log10(abs(ms))))
    return f"{ms:.{decimals}f} ms"


def _why_split(plan: dict) -> str:
    """One line on why this split: how many candidate splits would have been faster
    at single-site speed, and what the objective and the solver's status say about them;
    plus the faster splits that were no candidates for want of room on the campuses."""
    line = _why_candidates(plan)
    m = plan["performance"].get("faster_splits_without_room", 0)
    if m:
        fastest = plan["performance"].get("fastest_candidate_tokens_per_s")
        line += (f"; {m:,} faster split{'s' if m > 1 else ''}"
                 + (f" (up to {fastest:,.0f} tokens/s single-site)" if fastest else "")
                 + f" {'need' if m > 1 else 'needs'} more accelerators than the campuses' power budgets feed "
                 "or do not pack onto them in whole replicas")
    return line


def _why_candidates(plan: dict) -> str:
    perf, P = plan["performance"], plan["parallelism"]
    n, total = perf["faster_candidate_splits"], P["candidates_considered"]
    proven = plan["status"] == "optimal"
    min_cost = plan["objective"]["name"] == "min-cost"
    lead = ""
    if min_cost:
        lead = "the cheapest plan meeting the job's target" if proven else "the cheapest plan found when the solver stopped"
    if n == 0:
        return f"why this split: {lead + ', and ' if lead else ''}the fastest of the {total:,} candidate splits " \
               "(none faster to rule out)"
    fastest = None if perf.get("faster_splits_without_room") else perf.get("fastest_candidate_tokens_per_s")
    them = (f"the {n:,} faster one{'s' if n > 1 else ''}"
            + (f" (up to {fastest:,.0f} tokens/s single-site)" if fastest else ""))
    if not proven:
        return (f"why this split: {lead or 'the best plan found when the solver stopped'}; of the {total:,} candidate "
                f"splits, {them} {'were not all' if n > 1 else 'was not'} ruled out (see the objective bound)")
    if min_cost:
        return (f"why this split: {lead}; of the {total:,} candidate splits, {them} "
                f"{'cost more or have' if n > 1 else 'costs more or has'} no feasible plan")
    return (f"why this split: the fastest of the {total:,} candidate splits with a feasible plan; "
            f"{them} {'have' if n > 1 else 'has'} none within the budgets, power, fiber and targets")


def _wall(S: dict) -> str:
    """', 2.34 s in all' (solver.wall_s: the whole solve, extraction and verification included)."""
    return f", {S['wall_s']:.2f} s in all" if S.get("wall_s") is not None else ""


def _stage_split(S: dict) -> str:
    """' (objective 1.20 s, tie-break 3.40 s)' when a tie-break solve ran."""
    if not S.get("tie_break_solve_s"):
        return ""
    return f" (objective {S['primary_solve_s']:.2f} s, tie-break {S['tie_break_solve_s']:.2f} s)"


def _tie_break_note(plan: dict) -> str:
    """Say so when the tie-break (cheapest plan at the optimal throughput, or the
    fastest at the optimal cost) stopped before proving its own optimum."""
    S = plan["solver"]
    if S.get("tie_break") in ("optimal", "not_run"):
        return ""
    second = "cheapest" if plan["objective"]["name"] == "max-throughput" else "fastest"
    gap = S.get("tie_break_gap")
    how = f"within {gap:.2%} of the {second}" if gap is not None else f"not proven the {second}"
    return f"; among plans with this optimum, this one is {how} (tie-break {S['tie_break']})"


def _objective_note(o: dict, perf: dict) -> str:
    """The max-throughput objective is the single-site rate of the chosen split;
    the plan keeps the DCI loss within its bounds, so it delivers less: say so."""
    if o["name"] != "max-throughput" or not perf.get("efficiency_loss"):
        return ""
    return (f" at single-site speed; with the DCI sync exposed ({perf['efficiency_loss']:.2%} loss, within "
            f"its bound) the plan delivers {perf['tokens_per_s']:,.0f} tokens/s")
