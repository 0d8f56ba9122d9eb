"""The baseline: experiment 1, the unchanged source, the first reference every candidate is compared with."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hive.seeds import seed_stats
from hive.store import Experiment
from hive.store.models import now


async def run_baseline(ctx, flow, knobs: dict[str, Any]) -> Experiment:  # noqa: ANN001  (CampaignContext, ExperimentFlow)
    """Experiment 1: the unchanged source, started on its first `confirm_seeds` seeds; done once one seed is known.

    With the paired test a candidate needs only the best's value on its first seed to be screened, so the
    campaign goes on as soon as the baseline's first seed has a metric, while its other seeds still run (each
    is a shared reference run, `flow.reference_seed`: a candidate that needs it waits for the same run, and the
    driver waits for the rest at the end). No slot stands idle while the baseline's last seed runs. With Welch's
    test every seed is waited for. `knobs` are the values the source starts with.
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
    pending = {asyncio.ensure_future(flow.reference_seed(exp, seed)) for seed in todo}
    paired = flow.roles.critic.test == "paired"
    values = seed_stats(list(store.runs(exp.id)), pb.objective.metric)[0]
    while pending and not (paired and values) and not ctx.stop.is_set():
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        values = seed_stats(list(store.runs(exp.id)), pb.objective.metric)[0]
    if ctx.stop.is_set():
        await flow.drain()
        return exp
    if not values:
        runs = list(store.runs(exp.id))
        reason = next((r.error.splitlines()[0] for r in runs if r.error), "no seed produced the metric")
        wall = sum(r.wall_seconds or 0 for r in runs)
        exp = store.update(Experiment, exp.id, status="done", verdict="crash", verdict_reason=f"baseline failed: {reason}",
                           n_seeds=0, cpu_seconds=wall * pb.run.resources.cpu_threads,
                           gpu_seconds=wall * pb.run.resources.gpus, finished_at=now())
        ctx.feed("verdict", f"baseline failed: {reason}", exp.number)
        return exp
    # the seeds still running update the row's mean, spread and costs as each finishes (ExperimentFlow._run_reference)
    _, mean, std = seed_stats(list(store.runs(exp.id)), pb.objective.metric)
    exp = store.update(Experiment, exp.id, status="done", verdict="baseline", metric_mean=mean, metric_std=std,
                       n_seeds=len(values), finished_at=now(), verdict_reason=f"reference on seeds {', '.join(map(str, seeds))}")
    spread = f" ± {std:.2g}" if std is not None else ""
    more = f"; {len(pending)} more seed(s) running beside the candidates" if pending else ""
    ctx.feed("verdict", f"baseline {pb.objective.metric} = {mean:.6g}{spread} over {len(values)} seed(s){more}",
             exp.number)
    return exp
