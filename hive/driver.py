"""The driver: keeps every slot busy with experiments, resumes after a crash, stops on budget or Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Callable


from hive.agents.critic import Critic
from hive.agents.knob_coder import KnobCoder
from hive.agents.search import SearchProposer, baseline_values
from hive.baseline import run_baseline
from hive.campaign import CampaignContext, open_campaign, preflight
from hive.errors import BadInput, BudgetExhausted, HiveError, ModelUnreachable
from hive.graph import ExperimentFlow, Roles, Stopped
from hive.playbook import Playbook
from hive.sandbox import Sandbox
from hive.scheduler import make_scheduler
from hive.scripted import ensure_server
from hive.store import Campaign, Experiment
from hive.store.models import now
from hive.store.queries import IN_FLIGHT

INTERNAL_ERRORS = "three internal errors in a row (see the event feed)"
SLURM_JOBS_IN_FLIGHT = 4  # default cap on queued + running jobs when the cluster does the placing


def make_roles(ctx: CampaignContext) -> Roles:
    """The proposer, coder, critic and reviewer the playbook asks for."""
    pb = ctx.playbook
    llm = reviewer = None
    if pb.strategist == "llm" or pb.models.critic or pb.coder_spec.kind in MODEL_CODERS:
        from hive.llm import LLM  # litellm takes seconds to import: only campaigns with a model pay it

        llm = LLM(ctx.store, ctx.campaign.id, pb, logs=ctx.workspace.logs)
    if pb.strategist == "llm":
        from hive.agents.llm_proposer import LlmProposer  # imports litellm (seconds), as above

        proposer = LlmProposer(llm)
    else:
        proposer = SearchProposer(pb, ctx.workspace.root / "optuna.journal", ctx.name, pb.strategist,
                                  seed=pb.strategist_seed, baseline=baseline_values(pb, ctx.workspace.repo_dir),
                                  search=pb.search)
    coder = CODERS[pb.coder_spec.kind](ctx, llm)
    if pb.models.critic:
        from hive.agents.review import LlmReviewer  # imports litellm (seconds), as above

        reviewer = LlmReviewer(llm)
    return Roles(proposer=proposer, coder=coder, critic=Critic(pb.objective, max_seeds=pb.max_seeds),
                 reviewer=reviewer)


def _agent_coder(ctx: CampaignContext, llm):  # noqa: ANN001, ANN202
    from hive.agents.agent_coder import AgentCoder  # imports litellm (seconds), as above

    pb, ws = ctx.playbook, ctx.workspace
    mode = getattr(pb.executor, "sandbox", "auto")  # docker and slurm run the coder's commands here, locally
    return AgentCoder(llm, pb, ws.repo_dir, [ws.root], Sandbox(mode), pb.coder_spec)


def _edits_coder(ctx: CampaignContext, llm):  # noqa: ANN001, ANN202
    from hive.agents.llm_coder import LlmCoder  # imports litellm (seconds), as above

    return LlmCoder(llm, ctx.playbook.editable, ctx.playbook.protected)


def _command_coder(ctx: CampaignContext, llm):  # noqa: ANN001, ANN202
    from hive.agents.command_coder import CommandCoder

    pb, ws = ctx.playbook, ctx.workspace
    spec = pb.coder_spec

    def api() -> tuple[str, str | None]:  # the model the CLI is told; a scripted one is served on 127.0.0.1
        model = spec.model or pb.model_for("coder") or ""
        if model.startswith("scripted:"):
            return "openai/coder", ensure_server(model.removeprefix("scripted:")).api_base
        return model, pb.models.api_base

    mode = getattr(pb.executor, "sandbox", "auto")  # the CLI runs here, locally, as the agent coder's commands do
    return CommandCoder(spec, pb, ctx.store, ctx.campaign.id, ws.logs, [ws.root], Sandbox(mode), api)


# the coders by `coder.kind`; those that need a model are named in MODEL_CODERS
CODERS = {"agent": _agent_coder, "edits": _edits_coder, "knobs": lambda ctx, llm: KnobCoder(ctx.playbook),
          "command": _command_coder}
MODEL_CODERS = ("agent", "edits")


def budget_reason(ctx: CampaignContext, started: float) -> str | None:
    """Why no new experiment may start, or None while the budget lasts (wall time counts every start)."""
    budget = ctx.playbook.budget
    cid = ctx.campaign.id
    active = ctx.campaign.active_seconds + time.monotonic() - started
    ctx.store.update(Campaign, cid, active_seconds=active, updated_at=now())
    if budget.max_experiments is not None and ctx.store.count_experiments(cid) >= budget.max_experiments:
        return f"max_experiments ({budget.max_experiments}) reached"
    if budget.max_hours is not None and active >= budget.max_hours * 3600:
        return f"max_hours ({budget.max_hours:g}) reached"
    if budget.max_dollars is not None and ctx.store.llm_totals(cid)["dollars"] >= budget.max_dollars:
        return f"max_dollars (${budget.max_dollars:g}) spent"
    return None


async def drive(ctx: CampaignContext) -> str:
    """Keep every slot busy with experiments until the budget is spent or a stop is asked; return why it ended."""
    pb, store, cid = ctx.playbook, ctx.store, ctx.campaign.id
    scheduler = ctx.scheduler = _scheduler(pb)
    roles = make_roles(ctx)
    lookahead = pb.scheduler.lookahead
    res = pb.run.resources
    if pb.executor.kind == "slurm":
        width = scheduler.capacity(0, res.cpu_threads) + lookahead
    else:
        width = scheduler.capacity(res.gpus, res.cpu_threads, res.min_free_memory_mb, res.gpu_memory_mb) + lookahead
    started = time.monotonic()
    flow = ExperimentFlow(ctx, roles, scheduler)
    ctx.feed("campaign", f"{width - lookahead} slot(s) on {scheduler.inventory.kind}; strategist {pb.strategist}")
    knobs = baseline_values(pb, ctx.workspace.repo_dir) if pb.knobs else {}
    baseline = await run_baseline(ctx, flow, knobs)
    if ctx.stop.is_set():
        return "stopped"
    if baseline.verdict == "crash":
        raise HiveError(f"the baseline failed: {baseline.verdict_reason} (see `hive show 1 --log --campaign "
                        f"{ctx.name}`); `hive start` "
                        f"runs it again once the playbook's run, score or setup changes, or `hive start --restart` "
                        f"starts the campaign over")
    graph = flow.build()
    tasks: dict[asyncio.Task, int] = {}
    live = [e for e in store.experiments(cid, statuses=IN_FLIGHT) if e.kind != "baseline"]
    if hasattr(roles.proposer, "reconcile"):
        roles.proposer.reconcile({t for e in live if (t := e.proposal.get("trial")) is not None})
    for exp in live:
        ctx.feed("resume", f"resuming from its last checkpoint ({exp.status})", exp.number)
        tasks[asyncio.create_task(graph.ainvoke(flow.resume(exp)))] = exp.number
    reason = "stopped"
    internal_errors, budget_spent, unreachable = 0, False, None
    while True:
        reason = "stopped" if ctx.stop.is_set() else budget_reason(ctx, started)
        if reason:
            break
        if len(tasks) < width:
            exp = store.new_experiment(cid, kind="candidate", status="proposed")
            tasks[asyncio.create_task(graph.ainvoke({"number": exp.number}))] = exp.number
            continue
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            number = tasks.pop(task)
            error = _task_error(ctx, task, number)
            budget_spent = budget_spent or error == "budget"
            internal_errors = internal_errors + 1 if error == "internal" else 0
            if error == "unreachable":
                unreachable = unreachable or str(task.exception())
        if unreachable:
            ctx.stop.set()  # runs in flight stop too (they resume next start): every call would fail the same way
            reason = "stopped"
            break
        if budget_spent:
            reason = "budget spent"
            break
        if internal_errors >= 3:
            reason = INTERNAL_ERRORS
            break
    if tasks:
        # the last experiments may not have proposed yet: name them, so their proposals are expected
        last = ", ".join(f"exp-{n}" for n in sorted(tasks.values()))
        ctx.feed("campaign", f"{reason}: no new experiment; waiting for the {len(tasks)} in flight ({last})")
        await asyncio.wait(tasks)
        for task, number in tasks.items():
            _task_error(ctx, task, number)
    await flow.drain()  # the baseline's seeds that no candidate waited for
    if unreachable:
        raise ModelUnreachable(unreachable)
    return reason


def _scheduler(pb: Playbook):  # noqa: ANN202
    """The playbook's scheduler; on Slurm, where the cluster places GPUs, it only bounds the jobs in flight."""
    if pb.executor.kind != "slurm":
        return make_scheduler(pb.scheduler, pb.run.resources)
    jobs = pb.scheduler.slots or SLURM_JOBS_IN_FLIGHT
    config = pb.scheduler.model_copy(update={"inventory": "cpu", "slots": jobs})
    return make_scheduler(config, pb.run.resources.model_copy(update={"gpus": 0, "cpu_threads": 1}))


def _task_error(ctx: CampaignContext, task: asyncio.Task, number: int) -> str | None:
    """Record how an experiment task ended; 'budget', 'stopped', 'internal' or None when it finished."""
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, Stopped):
        return "stopped"
    if isinstance(exc, (BudgetExhausted, ModelUnreachable)):
        exp = ctx.store.experiment(ctx.campaign.id, number)
        if exp is not None and exp.status == "proposed":
            ctx.store.delete_experiment(exp.id)
        unreachable = isinstance(exc, ModelUnreachable)
        ctx.feed("error" if unreachable else "budget",
                 "the model cannot be reached: stopping the campaign" if unreachable else str(exc))
        return "unreachable" if unreachable else "budget"
    # a bug of Hive's: one line in the feed, the traceback in the campaign's error log
    log = ctx.workspace.logs / "internal-errors.log"
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"--- exp-{number} {now():%Y-%m-%d %H:%M:%S}\n{''.join(traceback.format_exception(exc))}")
    ctx.feed("error", f"internal error, experiment abandoned: {exc!r} (traceback in {log})", number)
    exp = ctx.store.experiment(ctx.campaign.id, number)
    if exp is not None and exp.status != "done":
        ctx.store.update(Experiment, exp.id, status="done", verdict="crash", verdict_reason=f"hive error: {exc!r}",
                         finished_at=now())
    return "internal"


def start(playbook: Playbook, home: Path, name: str | None = None,
          echo: Callable[[str], None] | None = print, stop: threading.Event | None = None,
          on_open: Callable[[CampaignContext], None] | None = None, accept_changes: bool = False) -> CampaignContext:
    """Run a campaign to its budget: the baseline first, then experiments in every free slot; resumable anywhere.

    `stop` lets a caller in another thread (the TUI) ask for the same clean stop as Ctrl-C; `on_open` hands
    it the open campaign (for the scheduler's live snapshot).
    """
    preflight(playbook)
    ctx = open_campaign(playbook, home, name, echo, accept_changes)
    if stop is not None:
        ctx.stop = stop
    if on_open is not None:
        on_open(ctx)
    previous = _install_stop_handlers(ctx)
    try:
        reason = asyncio.run(drive(ctx))
        stopped = ctx.stop.is_set() or reason == INTERNAL_ERRORS
        ctx.store.update(Campaign, ctx.campaign.id, status="stopped" if stopped else "finished", updated_at=now())
        ctx.feed("campaign", "stopped; `hive start` again resumes" if stopped else f"finished: {reason}")
        if reason == INTERNAL_ERRORS:
            raise HiveError(f"campaign stopped after {reason}")
        return ctx
    except BaseException:
        # whatever ended it, the campaign is not running any more
        try:
            ctx.store.update(Campaign, ctx.campaign.id, status="stopped", updated_at=now())
        except Exception:  # noqa: BLE001  (the store itself may be what failed; the original error matters)
            pass
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ctx.close()


def _install_stop_handlers(ctx: CampaignContext) -> dict:
    """First Ctrl-C (or SIGTERM) stops cleanly: runs are cancelled, records kept; a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, _frame):  # noqa: ANN001
        if ctx.stop.is_set():
            raise KeyboardInterrupt
        ctx.stop.set()
        # no store write here: the interrupted code may be inside a transaction on this very thread
        message = f"{signal.Signals(signum).name}: stopping (press Ctrl-C again to abort)\n"
        os.write(2, message.encode())

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


