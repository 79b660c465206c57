"""The Python API for embedding dcopt: plain data in, plain data out.

    from optimizer import load_instance, solve, evaluate
    li = load_instance("instances/us-two-regions.yaml")
    plan = solve(li, time_limit_s=60)                 # backend="scip" (default), "highs", "cbc", "cpsat"
    print(plan["status"], plan["parallelism"], plan["totals"]["capex_usd"])

The CLI is a thin layer over these functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from .instance import LoadedInstance, load_instance
from .lp import DEFAULT_BACKEND, DEFAULT_GAP, SolveParameters


def _as_loaded(instance) -> LoadedInstance:
    return instance if isinstance(instance, LoadedInstance) else load_instance(Path(instance))


def solve(instance, *, backend: str = DEFAULT_BACKEND, time_limit_s: Optional[float] = None, gap: float = DEFAULT_GAP,
          threads: int = 1, seed: int = 0, objective: Optional[str] = None,
          extra_rows: Optional[Callable] = None, search: str = "split-order") -> dict:
    """Solve an instance (path or LoadedInstance); returns the plan dict (see `dcopt schema --plan`).

    search: "split-order" (default) or "monolithic", as `dcopt solve --search`.

    extra_rows(pm) may add constraints to the planning model before it is solved
    (e.g. an epsilon-constraint on pm.e["capex"] or pm.e["throughput"]).
    """
    from .solving import solve_instance
    params = SolveParameters(backend=backend, time_limit_s=time_limit_s, gap=gap, threads=threads, seed=seed,
                             search=search)
    return solve_instance(_as_loaded(instance), params, objective=objective, extra_rows=extra_rows)


def evaluate(instance, tp: int, pp: int, dp: int, micro_batch: int = 1, interleave: int = 1,
             recompute: str = "selective") -> dict:
    """Memory, step-time terms, MFU and tokens/s of one split on the instance's workload, as
    `dcopt evaluate`: "feasible" is False, with the reasons, when a memory term does not fit
    or t·p·d exceeds the accelerators the instance has or its power budgets feed."""
    from . import performance as perf
    from .evaluate_cli import build_report
    li = _as_loaded(instance)
    w = perf.workload_from_instance(li)
    ev = perf.evaluate_split(w, tp, pp, dp, micro_batch=micro_batch, interleave=interleave, recompute=recompute)
    return build_report(li, w, ev)["evaluation"]


def sweep(spec_path, out_dir, workers: int = 2, dask_scheduler=None, *, progress: str = "off",
          force: bool = False) -> list[dict]:
    """Solve every scenario of a sweep spec into out_dir (resumable: finished
    scenarios are reused); returns one plain row per scenario, in spec order
    (axes, status, capex, power per region, split, tokens/s, MFU, DCI capacity,
    module mix): pandas.DataFrame(rows) gives the comparison table.

    dask_scheduler: 'tcp://host:8786', 'local', or a distributed.Client.
    """
    from .scenarios import load_spec, run_sweep
    return run_sweep(load_spec(spec_path), out_dir, workers=workers, dask_scheduler=dask_scheduler,
                     progress=progress, force=force).rows


def pareto(instance, points: int = 8, *, backend: str = DEFAULT_BACKEND, time_limit_s: Optional[float] = None,
           gap: float = DEFAULT_GAP, workers: int = 1) -> list[dict]:
    """Capex-throughput Pareto front (epsilon-constraint): the non-dominated
    plans sorted by capex, one dict each (capex_usd, throughput_tokens_per_s,
    tokens_per_s, mfu, tp/pp/dp, module_mix, ...). Empty if the instance is infeasible."""
    from .pareto_front import pareto_front
    params = SolveParameters(backend=backend, time_limit_s=time_limit_s, gap=gap)
    return pareto_front(_as_loaded(instance), points=points, params=params, workers=workers).front
