"""Capex-throughput Pareto front of an instance (epsilon-constraint over the MILP).

Method (Haimes, Lasdon & Wismer 1971; Mavrotas 2009 for MILPs):
1. the max-throughput extreme: maximise throughput (the solver's tie-break then
   takes the cheapest plan of that throughput) -> (C_max, T_max);
2. the min-capex extreme: minimise capex with no throughput floor beyond the
   instance's own (tie-break: the fastest plan of that capex) -> (C_min, T_min);
3. N capex caps eps_i evenly between C_min and C_max: maximise throughput
   subject to capex <= eps_i (again cheapest among the fastest);
4. drop repeated and dominated points (lower capex and higher throughput win).

Throughput is the MILP's objective: the chosen split's tokens/s at one site
(`tokens_per_s_single_site` of the plan), the figure the efficiency-loss bound
protects; the plan's effective tokens/s (after the DCI loss) is reported too.
Every point is a full plan accepted by the independent verifier.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .instance import LoadedInstance
from .lp import SolveParameters

AXES = ("capex", "throughput")


@dataclass(frozen=True)
class CapexCap:
    """extra_rows hook: capex <= usd (picklable, so points can solve in worker processes)."""

    usd: float

    def __call__(self, pm) -> None:
        pm.lm.add(pm.e["capex"] <= self.usd, "pareto_capex_cap")

    @property
    def capex_cap_usd(self) -> float:
        """Read by the max-throughput search to rule out, before any MILP, the splits whose
        capex floor is above the cap (solving._capex_screen)."""
        return self.usd


@dataclass
class ParetoResult:
    instance: str
    status: str                                   # ok | infeasible
    front: list[dict] = field(default_factory=list)     # non-dominated, by capex
    points: list[dict] = field(default_factory=list)    # every solve, dominated ones marked
    reason: str = ""


def point_record(plan: dict, kind: str, cap: Optional[float]) -> dict:
    """One solve as a plain row."""
    rec = {"kind": kind, "capex_cap_usd": cap, "status": plan.get("status")}
    if plan.get("status") not in ("optimal", "feasible"):
        lines = plan.get("infeasibility", {}).get("explanation") or [plan.get("message", "")]
        rec["reason"] = "; ".join(x for x in lines if x)
        return rec
    par, perf, tot = plan["parallelism"], plan["performance"], plan["totals"]
    mix: dict[str, int] = {}
    for link in plan.get("dci_links", []):
        for d in link.get("detail", []):
            mix[d["module"]] = mix.get(d["module"], 0) + int(d.get("modules", 0))
    rec.update({
        "capex_usd": tot["capex_usd"],
        "throughput_tokens_per_s": perf["tokens_per_s_single_site"],
        "tokens_per_s": perf["tokens_per_s"], "mfu": perf["mfu"], "efficiency_loss": perf["efficiency_loss"],
        "tp": par["tp"], "pp": par["pp"], "dp": par["dp"], "accelerators": par["accelerators"],
        "module_mix": " ".join(f"{m}:{n}" for m, n in sorted(mix.items(), key=lambda x: -x[1]) if n),
        "gap": plan["objective"].get("gap"), "solve_s": plan["solver"].get("solve_s"),
    })
    return rec


def _solve_point(args) -> dict:
    li, params, kind, cap = args
    from .solving import solve_instance
    if kind == "min-capex":
        plan = solve_instance(li, params, objective="min-cost")
    else:
        plan = solve_instance(li, params, objective="max-throughput",
                              extra_rows=CapexCap(cap) if cap is not None else None)
    return point_record(plan, kind, cap)


def _map(fn, items: list, workers: int) -> list:
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .scenarios import _exit_with_parent    # workers end with this process, never orphaned
    with ProcessPoolExecutor(max_workers=min(workers, len(items)),
                             mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent) as pool:
        return list(pool.map(fn, items))


def dominates(p: dict, q: dict, rel: float = 1e-9) -> bool:
    """p is at least as cheap and as fast as q, and strictly better in one."""
    c_tol = rel * max(1.0, abs(q["capex_usd"]))
    t_tol = rel * max(1.0, abs(q["throughput_tokens_per_s"]))
    no_worse = p["capex_usd"] <= q["capex_usd"] + c_tol and \
        p["throughput_tokens_per_s"] >= q["throughput_tokens_per_s"] - t_tol
    better = p["capex_usd"] < q["capex_usd"] - c_tol or \
        p["throughput_tokens_per_s"] > q["throughput_tokens_per_s"] + t_tol
    return no_worse and better


def non_dominated(points: list[dict]) -> list[dict]:
    """The front: solved points no other point dominates, one per (capex, throughput), by capex."""
    solved = [p for p in points if "capex_usd" in p]
    front: list[dict] = []
    for p in sorted(solved, key=lambda r: (r["capex_usd"], -r["throughput_tokens_per_s"])):
        if any(dominates(q, p) for q in solved):
            continue
        if any(abs(q["capex_usd"] - p["capex_usd"]) <= 1e-6 * max(1.0, p["capex_usd"]) and
               abs(q["throughput_tokens_per_s"] - p["throughput_tokens_per_s"]) <= 1e-9 * max(1.0, p["throughput_tokens_per_s"])
               for q in front):
            continue     # the same point reached from another cap
        front.append(p)
    return front


def pareto_front(li: LoadedInstance, points: int = 8, params: SolveParameters = SolveParameters(),
                 workers: int = 1) -> ParetoResult:
    """Solve the two extremes and `points` capex caps between them; see the module doc."""
    if points < 0:
        raise ValueError("points must be >= 0")
    ends = _map(_solve_point, [(li, params, "max-throughput", None), (li, params, "min-capex", None)], workers)
    top, low = ends
    name = li.instance.name
    if "capex_usd" not in top or "capex_usd" not in low:
        bad = top if "capex_usd" not in top else low
        return ParetoResult(name, "infeasible", points=ends,
                            reason=bad.get("reason") or f"the {bad['kind']} solve found no plan")
    c_min, c_max = low["capex_usd"], top["capex_usd"]
    caps = []
    if c_max > c_min * (1 + 1e-9):
        caps = [c_min + (c_max - c_min) * i / (points + 1) for i in range(1, points + 1)]
    middle = _map(_solve_point, [(li, params, "epsilon", cap) for cap in caps], workers)
    everything = [low] + middle + [top]
    front = non_dominated(everything)
    on = {id(p) for p in front}
    for p in everything:
        p["on_front"] = id(p) in on
    return ParetoResult(name, "ok", front=front, points=everything)


# ---------------------------------------------------------------- output

COLUMNS = ["kind", "capex_cap_usd", "capex_usd", "throughput_tokens_per_s", "tokens_per_s", "mfu",
           "efficiency_loss", "tp", "pp", "dp", "accelerators", "module_mix", "status", "gap", "solve_s"]


def front_csv(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return buf.getvalue()


def front_text(result: ParetoResult) -> str:
    from .scenarios import format_table
    head = f"Pareto front of {result.instance}: capex vs throughput, {len(result.front)} non-dominated " \
           f"of {len(result.points)} solved points\n\n"
    cols = ["capex_usd", "throughput_tokens_per_s", "tokens_per_s", "mfu", "tp", "pp", "dp", "accelerators",
            "module_mix", "kind"]
    rows = [{**r, "tokens_per_s_1_site": r["throughput_tokens_per_s"]} for r in result.front]
    cols[1] = "tokens_per_s_1_site"
    return head + format_table(rows, cols, "text")


def plot_front(result: ParetoResult, path: str | Path, title: str | None = None) -> str:
    """PNG: the front as a staircase, every plan's effective tokens/s, dominated solves in grey."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    front = result.front
    others = [p for p in result.points if "capex_usd" in p and not p.get("on_front")]
    if others:
        ax.scatter([p["capex_usd"] / 1e6 for p in others], [p["throughput_tokens_per_s"] / 1e6 for p in others],
                   marker="x", color="0.6", label="dominated or repeated solve", zorder=2)
    xs = [p["capex_usd"] / 1e6 for p in front]
    ys = [p["throughput_tokens_per_s"] / 1e6 for p in front]
    ax.step(xs, ys, where="post", color="tab:blue", alpha=0.5, zorder=1)
    ax.scatter(xs, ys, color="tab:blue", s=36, label="Pareto front (single-site rate of the split)", zorder=3)
    ax.scatter(xs, [p["tokens_per_s"] / 1e6 for p in front], facecolors="none", edgecolors="tab:orange",
               s=36, label="same plans after the DCI efficiency loss", zorder=3)
    for p, x, y in zip(front, xs, ys):
        ax.annotate(f"TP{p['tp']}·PP{p['pp']}·DP{p['dp']}", (x, y), textcoords="offset points", xytext=(4, -11),
                    fontsize=7, color="0.25")
    ax.set_xlabel("capex: DCI + in-campus cables (million USD)")
    ax.set_ylabel("training throughput (million tokens/s)")
    ax.set_title(title or f"{result.instance}: capex vs throughput")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def write_outputs(result: ParetoResult, out_dir: str | Path) -> list[str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pareto.csv").write_text(front_csv(result.front), encoding="utf-8")
    (out / "pareto_points.csv").write_text(front_csv(result.points, COLUMNS + ["on_front", "reason"]), encoding="utf-8")
    written = [str(out / "pareto.csv"), str(out / "pareto_points.csv")]
    if result.front:
        written.append(plot_front(result, out / "pareto.png"))
    return written
