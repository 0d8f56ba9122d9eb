"""The baseline: experiment 1, the unchanged source, run with `confirm_seeds` seeds as every keep's first reference."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from hive.seeds import seed_stats
from hive.store import Experiment
from hive.store.models import now


async def run_baseline(ctx, run_seed: Callable[[Experiment, int, str], Awaitable[None]],  # noqa: ANN001  (CampaignContext)
                       knobs: dict[str, Any]) -> Experiment:
    """Experiment 1: the unchanged source, run with `confirm_seeds` seeds so later keeps have a reference.

    `run_seed` leases a slot, runs one seed and records it (ExperimentFlow.run_seed); `knobs` are the values the
    source starts with.
    """
    pb, store, cid = ctx.playbook, ctx.store, ctx.campaign.id
    exp = store.experiment(cid, 1)
    if exp is None:
        exp = store.new_experiment(cid, kind="baseline", hypothesis="baseline: the source as given",
                                   proposal_json=json.dumps({"knobs": knobs, "strategist": "baseline"}),
                                   commit=ctx.campaign.baseline_commit, parent_commit=ctx.campaign.baseline_commit,
                                   status="running", started_at=now())
    if exp.status == "done":
        return exp
    seeds = pb.run.seeds[:pb.objective.confirm_seeds]
    done = {r.seed for r in store.runs(exp.id) if r.status == "ok"}
    todo = [s for s in seeds if s not in done]
    ctx.feed("run", f"baseline: {len(todo)} seed(s) to run ({', '.join(map(str, todo))})", exp.number)

    await asyncio.gather(*(run_seed(exp, seed, exp.commit) for seed in todo))
    runs = list(store.runs(exp.id))
    values, mean, std = seed_stats(runs, pb.objective.metric)
    if ctx.stop.is_set():
        return exp
    cpu = sum(r.wall_seconds or 0 for r in runs) * pb.run.resources.cpu_threads
    gpu = sum(r.wall_seconds or 0 for r in runs) * pb.run.resources.gpus
    if not values:
        reason = next((r.error.splitlines()[0] for r in runs if r.error), "no seed produced the metric")
        exp = store.update(Experiment, exp.id, status="done", verdict="crash", verdict_reason=f"baseline failed: {reason}",
                           n_seeds=0, cpu_seconds=cpu, gpu_seconds=gpu, finished_at=now())
        ctx.feed("verdict", f"baseline failed: {reason}", exp.number)
        return exp
    exp = store.update(Experiment, exp.id, status="done", verdict="baseline", metric_mean=mean, metric_std=std,
                       n_seeds=len(values), cpu_seconds=cpu, gpu_seconds=gpu, finished_at=now(),
                       verdict_reason=f"reference over {len(values)} seed(s)")
    spread = f" ± {std:.2g}" if std is not None else ""
    ctx.feed("verdict", f"baseline {pb.objective.metric} = {mean:.6g}{spread} over {len(values)} seed(s)", exp.number)
    return exp
