"""One experiment as a LangGraph thread: propose -> code -> run -> critic (-> run more seeds) -> record.

The graph has no checkpointer: an experiment resumes from the store alone (`ExperimentFlow.resume`). Every
field of the state is already in the experiment's row or its runs, and a second copy in a checkpoint can
disagree with the store after a kill (it once left an experiment 'proposed' forever); a PostgreSQL campaign
then keeps all its state in the one database, with nothing on one host's disk. The price is that each node
writes its result to the store before the next one starts, and that running a node again after a kill is
safe: propose asks anew, code starts from the parent's commit, run skips finished seeds, the critic judges
the same runs again, and record finishes what it had begun.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph

from hive.agents.base import Coder, Outcome, Proposal, Proposer, Verdict, parent_problem
from hive.agents.combine import COMBINE_SOURCE, combination
from hive.agents.context import campaign_view
from hive.agents.critic import Critic, SeedResult, constraint_excess, lesson_for
from hive.agents.significance import POOL_MAX_DF, pool_noise
from hive.errors import BudgetExhausted, EditRejected, HiveError, ModelUnreachable
from hive.objective import metric_value
from hive.progress import read_curve, watch_for
from hive.prs import open_pull_request
from hive.repair import Crash, can_repair, crash_of, last_lines, repair_reason, retire_runs, seed_crash
from hive.scheduler import Lease
from hive.seeds import describe_outcome, record_seed, seed_stats
from hive.store import Attempt, Experiment, Lesson, Run, Store
from hive.store.models import now


RECHECK_SEEDS = 1_000_000  # fresh seeds of side-by-side rechecks start above any playbook's own
RECHECK_SPARES = 99  # an experiment's fresh seeds: recheck_seeds of them, the rest replace pairs a stop cut
POOL_EXPERIMENTS = 200  # recent finished experiments whose paired differences make the pooled seed noise
FINISHED_RUNS = ("ok", "failed", "timeout", "pruned", "tampered")  # a seed in any of these is not run again


class Stopped(HiveError):
    """The campaign is stopping; the experiment resumes from what the store holds next time."""


class ExperimentState(TypedDict, total=False):
    number: int
    proposal: dict[str, Any]
    parent_number: int | None
    parent_commit: str
    commit: str
    seeds: list[int]  # seeds this experiment has earned so far
    verdict: dict[str, Any] | None
    failure: dict[str, Any] | None  # a crash the coder is to repair next (repair.Crash)
    repaired: bool


@dataclass
class Roles:
    """The implementations a campaign runs with, passed in (see campaign.py)."""

    proposer: Proposer
    coder: Coder
    critic: Critic
    reviewer: Any = None  # LlmReviewer when a critic model is configured


# -- routing (pure) ------------------------------------------------------------
def resume_at(state: ExperimentState) -> Literal["propose", "code", "run", "record"]:
    """The first node for a state read from the store: a new experiment proposes, a judged one records."""
    if state.get("verdict"):
        return "record"
    if "proposal" not in state:
        return "propose"
    return "run" if state.get("commit") else "code"


def after_propose(state: ExperimentState) -> Literal["code", "record"]:
    return "record" if state.get("verdict") else "code"


def after_code(state: ExperimentState) -> Literal["run", "record"]:
    return "record" if state.get("verdict") else "run"


def after_run(state: ExperimentState) -> Literal["critic", "repair"]:
    return "repair" if state.get("failure") else "critic"


def after_repair(state: ExperimentState) -> Literal["run", "record"]:
    return "record" if state.get("verdict") else "run"


def after_critic(state: ExperimentState) -> Literal["run", "record"]:
    verdict = state.get("verdict") or {}
    return "run" if verdict.get("verdict") == "more_seeds" else "record"


class ExperimentFlow:
    """The nodes of an experiment; each reads and writes the store so the TUI and CLI see progress live."""

    def __init__(self, ctx, roles: Roles, scheduler):  # noqa: ANN001  (CampaignContext, Scheduler)
        self.ctx = ctx
        self.roles = roles
        self.scheduler = scheduler
        self.pb = ctx.playbook
        self._propose_lock = asyncio.Lock()
        self._keep_lock = asyncio.Lock()  # one keep at a time, each against the best as it is then
        self._reference_runs: dict[tuple[int, int], asyncio.Future] = {}  # (experiment, seed) -> its one run
        # Slurm places GPUs itself; simulated devices exist only for the scheduler, never for an executor
        slurm = self.pb.executor.kind == "slurm"
        self.lease_gpus = 0 if slurm else self.pb.run.resources.gpus
        self.lease_gpu_memory_mb = None if slurm else self.pb.run.resources.gpu_memory_mb
        self.real_devices = getattr(scheduler.inventory, "kind", "") != "simulated"

    def build(self) -> Any:
        g = StateGraph(ExperimentState)
        g.add_node("propose", self.propose)
        g.add_node("code", self.code)
        g.add_node("run", self.run)
        g.add_node("repair", self.repair)
        g.add_node("critic", self.judge)
        g.add_node("record", self.record)
        g.add_conditional_edges(START, resume_at)
        g.add_conditional_edges("propose", after_propose)
        g.add_conditional_edges("code", after_code)
        g.add_conditional_edges("run", after_run)
        g.add_conditional_edges("repair", after_repair)
        g.add_conditional_edges("critic", after_critic)
        g.add_edge("record", END)
        return g.compile()

    def resume(self, exp: Experiment) -> ExperimentState:
        """Where an unfinished experiment stands, read from its row and its runs (see the module docstring)."""
        state: ExperimentState = {"number": exp.number}
        runs = list(self.ctx.store.runs(exp.id))
        if exp.status in ("proposed", "coding"):
            if runs:  # starting over proposes a new change: runs of an old commit must not be judged as its
                self.ctx.store.delete_runs(exp.id)
            if exp.status == "proposed":
                return state
        parent = self.ctx.store.experiment(self.ctx.campaign.id, exp.parent_number) if exp.parent_number else None
        state.update(proposal=exp.proposal, parent_number=exp.parent_number, verdict=None,
                     parent_commit=exp.parent_commit or (parent.commit if parent else ""))
        if exp.status == "coding":
            return {**state, "seeds": self.pb.run.seeds[:1]}
        state["commit"] = exp.commit
        if exp.verdict == "keep":  # kept in the store, killed before the best branch and the record followed
            state["verdict"] = _v(Verdict("keep", exp.verdict_reason, exp.metric_mean, exp.metric_std, exp.p_value,
                                          reference=exp.number))
            return state
        rejected = self._check(state["parent_commit"], exp.commit, "resumed")
        if rejected is not None:
            return {**state, "verdict": _v(rejected)}
        # the seeds earned are a prefix of the playbook's: the first, and as far as any run got
        started = [self.pb.run.seeds.index(r.seed) for r in runs if r.seed in self.pb.run.seeds]
        return {**state, "seeds": self.pb.run.seeds[:max(started, default=0) + 1]}

    # -- helpers ---------------------------------------------------------------
    def _exp(self, number: int) -> Experiment:
        exp = self.ctx.store.experiment(self.ctx.campaign.id, number)
        assert exp is not None, f"experiment {number} vanished from the store"
        return exp

    def _update(self, number: int, **fields: Any) -> Experiment:
        return self.ctx.store.update_experiment(self.ctx.campaign.id, number, **fields)

    # -- nodes -----------------------------------------------------------------
    async def propose(self, state: ExperimentState) -> dict:
        number = state["number"]
        # a knob strategist reads experiments' knobs and verdicts only (`full_view = False`): a lighter view
        view = campaign_view(self.ctx.store, self.ctx.campaign.id, self.pb, self.ctx.workspace,
                             full=getattr(self.roles.proposer, "full_view", True))
        async with self._propose_lock:  # proposals see each other as in flight
            try:
                # two independent wins are tried together before anything new
                best = self.ctx.store.best(self.ctx.campaign.id)
                proposal = combination(self.ctx.store, self.ctx.campaign.id, best)
                if proposal is None:
                    proposal = await asyncio.to_thread(self.roles.proposer.propose, view, number)
            except (BudgetExhausted, ModelUnreachable):  # the campaign stops; this experiment is proposed anew
                raise
            except HiveError as exc:  # e.g. an LLM that gave no usable, new idea: an outcome, not a crash
                none = Proposal(hypothesis="(no proposal)", rationale=str(exc))
                self._update(number, hypothesis=none.hypothesis, proposal_json=json.dumps(none.to_dict()))
                return {"proposal": none.to_dict(), "seeds": [], "verdict": _v(Verdict("no_proposal", str(exc)))}
            parent = self.ctx.store.best(self.ctx.campaign.id)  # a keep may have moved it while the proposer thought
            if proposal.parent is not None:  # the parent named is built on, or the proposal refused: never swapped
                parent = self.ctx.store.experiment(self.ctx.campaign.id, proposal.parent)
                problem = (f"#{proposal.parent} does not exist" if parent is None else
                           parent_problem(parent.number, parent.status, parent.verdict))
                if problem:
                    why = f"refused: parent {problem}"
                    self._update(number, hypothesis=proposal.hypothesis, rationale=proposal.rationale,
                                 proposal_json=json.dumps(proposal.to_dict(), default=str))
                    return {"proposal": proposal.to_dict(), "seeds": [], "verdict": _v(Verdict("no_proposal", why))}
            self._update(number, hypothesis=proposal.hypothesis, rationale=proposal.rationale,
                         proposal_json=json.dumps(proposal.to_dict(), default=str), parent_number=parent.number,
                         status="coding")
        self.ctx.feed("propose", proposal.hypothesis, number)
        return {"proposal": proposal.to_dict(), "parent_number": parent.number,
                "parent_commit": parent.commit, "seeds": self.pb.run.seeds[:1], "verdict": None}

    async def code(self, state: ExperimentState) -> dict:
        number, ws = state["number"], self.ctx.workspace
        proposal = Proposal.from_dict(state["proposal"])
        base = state["parent_commit"]
        message = f"exp-{number}: {proposal.hypothesis[:72]}\n\n{proposal.rationale}"
        try:
            coded = await asyncio.to_thread(self._code_without_checkout, number, base, proposal, message)
            if coded is None:
                coded = await self._code_in_worktree(number, base, proposal, message)
        except EditRejected as exc:
            return {"verdict": _v(Verdict("edit_failed", str(exc)))}
        summary, commit, changed = coded
        diff = ws.diff(base, commit) if commit != base else ""
        exp = self._update(number, commit=commit, parent_commit=base, diff=diff, status="running", started_at=now())
        rejected = self._check(base, commit, summary, changed)
        if rejected is not None:
            return {"commit": commit, "verdict": _v(rejected)}
        self.ctx.store.start_attempt(exp.id, 1, commit, summary)
        self.ctx.feed("code", f"{summary} -> {commit[:10]}", number)
        return {"commit": commit}

    def _code_without_checkout(self, number: int, base: str, proposal: Proposal,
                               message: str) -> tuple[str, str, list[str]] | None:
        """(summary, commit, the paths it changed) from a coder that only rewrites files it names (the knob coder):
        no worktree, ~30 ms less per experiment. None when the coder cannot, or those files are not all plain text
        files at `base`."""
        edit, paths = getattr(self.roles.coder, "edit", None), getattr(self.roles.coder, "paths", None)
        if edit is None or paths is None:
            return None
        files = self.ctx.workspace.read_files(base, paths())
        if files is None:
            return None
        summary, writes = edit(proposal, files)
        changed = sorted(p for p, text in writes.items() if files.get(p) != text)
        return summary, self.ctx.workspace.commit_files(number, base, writes, message), changed

    async def _code_in_worktree(self, number: int, base: str, proposal: Proposal,
                                message: str) -> tuple[str, str, None]:
        """(summary, commit, None: git says what changed) from the coder editing a checkout of `base`; the checkout
        is removed after."""
        ws = self.ctx.workspace
        tree = ws.worktree(number, base)
        # the knob coder writes values and reads nothing of the campaign: no view to build (~20 ms of queries)
        view = (campaign_view(self.ctx.store, self.ctx.campaign.id, self.pb, ws)
                if getattr(self.roles.coder, "reads_view", True) else None)
        try:
            summary = await asyncio.to_thread(self.roles.coder.code, proposal, tree, view, number)
            return summary, ws.commit(tree, message), None
        finally:
            ws.remove_worktree(number)

    def _check(self, base: str, commit: str, summary: str, changed: list[str] | None = None) -> Verdict | None:
        """The verdict on a commit that may not run (it changes files it may not, or nothing), else None.

        `changed`: the paths the commit changes where they are known already (else git is asked)."""
        illegal = self.ctx.workspace.illegal_changes(base, commit, self.pb, changed)
        if illegal:
            return Verdict("rejected", f"changed files it may not: {', '.join(illegal)}")
        if commit == base:
            return Verdict("edit_failed", f"the change is empty ({summary})")
        return None

    async def run(self, state: ExperimentState) -> dict:
        number = state["number"]
        seeds = list(state["seeds"])
        verdict = state.get("verdict") or {}
        if verdict.get("verdict") == "more_seeds":
            have = len(seeds)
            seeds = self.pb.run.seeds[:have + verdict["seeds_wanted"]]
        exp = self._exp(number)
        if exp.status != "running" or exp.started_at is None:  # the coder set "running" without a start time
            exp = self._update(number, status="running", started_at=exp.started_at or now())
        runs = self.ctx.store.runs(exp.id)
        repairable = self._repairable(exp)
        if repairable and self.pb.run.smoke and not runs:  # a new attempt: the smoke run first, cheap
            crash = await self.run_smoke(exp, state["commit"])
            if crash is not None:
                return {"failure": crash.to_dict()}
        done = {r.seed for r in runs if r.status in FINISHED_RUNS}
        todo = [s for s in seeds if s not in done]
        # the best runs the same seeds alongside, so the critic can pair them
        best = self.ctx.store.best(self.ctx.campaign.id)
        await asyncio.gather(*(self.run_seed(exp, s, state["commit"], against=best) for s in todo),
                             self.reference_seeds(best, seeds))
        if self.ctx.stop.is_set():
            raise Stopped(f"exp-{number} stopped while running")
        crash = seed_crash(list(self.ctx.store.runs(exp.id)), seeds, self.pb.objective.metric) if repairable else None
        return {"seeds": seeds, "verdict": None, "failure": crash.to_dict() if crash else None}

    def _repairable(self, exp: Experiment) -> bool:
        """Whether a crash of this experiment's latest attempt goes back to the coder."""
        spec = self.pb.coder_spec
        if not hasattr(self.roles.coder, "repair") or not getattr(spec, "repair_attempts", 0):
            return False
        return can_repair(list(self.ctx.store.attempts(exp.id)), spec.repair_attempts)

    async def run_smoke(self, exp: Experiment, commit: str) -> Crash | None:
        """Run the playbook's smoke command (scored) on a new attempt; the crash it is, or None."""
        res = self.pb.run.resources
        async with self.scheduler.lease(f"exp-{exp.number}/smoke", gpus=self.lease_gpus,
                                        min_free_mb=res.min_free_memory_mb, cpu_threads=res.cpu_threads,
                                        gpu_memory_mb=self.lease_gpu_memory_mb) as lease:
            if self.ctx.stop.is_set():
                raise Stopped(f"exp-{exp.number} stopped before its smoke run")
            devices = lease.devices if self.real_devices else []
            outcome = await asyncio.to_thread(self.ctx.runner.run_seed, exp.number, self.pb.run.seeds[0], commit,
                                              devices, self.ctx.stop, None, "the best", True)
        if self.ctx.stop.is_set():
            raise Stopped(f"exp-{exp.number} stopped during its smoke run")
        crash = crash_of("smoke", outcome.status, outcome.metrics, outcome.error, str(outcome.log_path),
                         self.pb.objective.metric)
        self.ctx.feed("smoke", crash.line if crash else f"ok {describe_outcome(outcome, self.pb.objective.metric)}",
                      exp.number)
        return crash

    async def repair(self, state: ExperimentState) -> dict:
        """Give a crash back to the coder with its log tail and diff; its fix is the next attempt, run afresh."""
        number, ws, store = state["number"], self.ctx.workspace, self.ctx.store
        exp = self._exp(number)
        crash = Crash(**state["failure"])
        attempts = list(store.attempts(exp.id))
        current = attempts[-1]
        store.update(Attempt, current.id, status="crashed", failure=crash.line, tail=crash.tail)
        self.ctx.feed("crash", f"attempt {current.attempt}: {crash.line}; repairing", number)
        tree = ws.worktree(number, exp.commit)
        try:
            summary = await asyncio.to_thread(self.roles.coder.repair, tree, crash.line, crash.tail,
                                              ws.diff(state["parent_commit"], exp.commit), number, current.attempt)
        except EditRejected as exc:
            ws.remove_worktree(number)
            store.update(Attempt, current.id, status="unrepaired")
            self.ctx.feed("repair", f"attempt {current.attempt + 1} failed: {exc}", number)
            return {"failure": None, "repaired": False}
        commit = ws.commit(tree, f"exp-{number}: repair attempt {current.attempt}: {summary[:60]}\n\n{crash.line}")
        ws.remove_worktree(number)
        rejected = self._check(state["parent_commit"], commit, summary)
        if rejected is None and commit == exp.commit:
            rejected = Verdict("crash", f"{crash.line}; the repair changed nothing ({summary})")
        if rejected is not None:
            self._update(number, commit=commit, diff=ws.diff(state["parent_commit"], commit))
            return {"commit": commit, "failure": None, "verdict": _v(rejected)}
        retire_runs(store, exp, current.attempt)
        store.start_attempt(exp.id, current.attempt + 1, commit, summary)
        self._update(number, commit=commit, diff=ws.diff(state["parent_commit"], commit))
        self.ctx.feed("repair", f"attempt {current.attempt + 1}: {summary} -> {commit[:10]}", number)
        return {"commit": commit, "seeds": self.pb.run.seeds[:1], "failure": None, "repaired": True, "verdict": None}

    async def run_seed(self, exp: Experiment, seed: int, commit: str, against: Experiment | None = None,
                       lease: Lease | None = None) -> None:
        """Lease a slot (or take `lease`, granted already), run one seed of an experiment and record it (a
        cancelled run is left to re-run).

        With `against` (the best) and a playbook's `run.progress`, the run is pruned once it is clearly behind
        that experiment's curve on the same seed.
        """
        res = self.pb.run.resources
        held = self._granted(lease) if lease is not None else self.scheduler.lease(
            f"exp-{exp.number}/seed-{seed}", gpus=self.lease_gpus, min_free_mb=res.min_free_memory_mb,
            cpu_threads=res.cpu_threads, gpu_memory_mb=self.lease_gpu_memory_mb)
        async with held as lease:
            if self.ctx.stop.is_set():
                return
            run = self.ctx.store.ensure_run(exp.id, seed, status="running", started_at=now(),
                                            devices=",".join(map(str, lease.devices)))
            where = f" on gpu {','.join(map(str, lease.devices))}" if lease.devices else ""
            self.ctx.feed("run", f"seed {seed} started{where}", exp.number)
            devices = lease.devices if self.real_devices else []
            watch = self._watch(against, exp, seed)
            outcome = await asyncio.to_thread(self.ctx.runner.run_seed, exp.number, seed, commit, devices,
                                              self.ctx.stop, watch, f"exp-{against.number}" if against else "the best")
        if outcome.status == "pruned":
            self._saved(outcome, against, seed)
        if outcome.status == "cancelled":
            self.ctx.store.update(Run, run.id, status="queued")
            return
        record_seed(self.ctx.store, exp, seed, outcome, lease.devices)
        self.ctx.feed("seed", f"seed {seed}: {outcome.status} {describe_outcome(outcome, self.pb.objective.metric)}",
                      exp.number)

    @asynccontextmanager
    async def _granted(self, lease: Lease):  # noqa: ANN202  (AsyncIterator[Lease])
        """A lease granted already, released on exit like `scheduler.lease`."""
        try:
            yield lease
        finally:
            self.scheduler.release(lease)

    async def _together(self, holders: list[str]) -> list[Lease | None]:
        """Leases for runs that must start at one moment (a side-by-side pair); Nones, for leases of their own
        one by one, where the machine cannot hold them all at once."""
        res = self.pb.run.resources
        leases = await self.scheduler.acquire_together(holders, gpus=self.lease_gpus,
                                                       min_free_mb=res.min_free_memory_mb,
                                                       cpu_threads=res.cpu_threads,
                                                       gpu_memory_mb=self.lease_gpu_memory_mb)
        return list(leases) if leases is not None else [None] * len(holders)

    def _watch(self, against: Experiment | None, exp: Experiment, seed: int):  # noqa: ANN202  (ProgressWatch | None)
        """A progress watch against the reference's curves, when the playbook reads progress and there are some."""
        spec = self.pb.run.progress
        if spec is None or against is None or against.number == exp.number:
            return None
        curves = {r.seed: read_curve(r.log_path, spec.regex) for r in self.ctx.store.runs(against.id)
                  if r.status == "ok" and r.log_path}
        return watch_for(spec, curves, seed)

    def _saved(self, outcome, against: Experiment | None, seed: int) -> None:  # noqa: ANN001  (SeedOutcome)
        """Add to a pruned seed the run-seconds its stop saved: the reference's time on that seed, less its own."""
        walls = {r.seed: r.wall_seconds for r in self.ctx.store.runs(against.id) if r.status == "ok" and r.wall_seconds}
        full = walls.get(seed) or (sum(walls.values()) / len(walls) if walls else None)
        if full is None:
            return
        ran = outcome.result.wall_seconds
        saved = max(0.0, full - ran)
        outcome.metrics["saved_seconds"] = round(saved, 3)
        outcome.error += (f"; stopped after {ran:.1f} s where exp-{against.number} ran {full:.1f} s "
                          f"({saved:.1f} run-seconds saved)")

    async def judge(self, state: ExperimentState) -> dict:
        number = state["number"]
        exp = self._update(number, status="judging")
        runs = {r.seed: r for r in self.ctx.store.runs(exp.id)}
        seeds = [SeedResult(s, runs[s].status, runs[s].metrics, runs[s].error) for s in state["seeds"] if s in runs]
        best = self.ctx.store.best(self.ctx.campaign.id)
        await self.reference_seeds(best, state["seeds"])  # a best kept since the run started lacks them
        if self.ctx.stop.is_set():
            raise Stopped(f"exp-{number} stopped while its reference ran")
        verdict = self.roles.critic.judge(seeds, self._reference(best), best.number if best else None,
                                          self._pooled_noise(exp, seeds))
        verdict.reference = best.number if best else None
        if verdict.verdict == "discard" and best is not None and state.get("parent_number") not in (None, best.number):
            verdict = await self._against_parent(exp, state, seeds, verdict, best)
        if verdict.verdict == "keep" and self.pb.objective.recheck_seeds and best is not None:
            verdict = await self._side_by_side(exp, state, verdict, best, seeds)
        if verdict.verdict == "keep" and self.roles.reviewer is not None:
            ok, why = await asyncio.to_thread(self.roles.reviewer.review, exp.diff, self.pb.rules, number)
            if not ok:
                verdict = Verdict("rejected", f"review: {why}", verdict.mean, verdict.std, verdict.p_value)
        if verdict.verdict != "more_seeds":
            verdict.reason = repair_reason(list(self.ctx.store.attempts(exp.id)), verdict.verdict, verdict.reason)
        return {"verdict": _v(verdict)}

    async def _side_by_side(self, exp: Experiment, state: ExperimentState, verdict: Verdict, best: Experiment,
                            seeds: list[SeedResult]) -> Verdict:
        """Run a keep again beside the best on `objective.recheck_seeds` fresh seeds, each pair at the same time
        (both leases granted at one moment), and let the critic say whether it still wins there (Critic.recheck)."""
        fresh = self._pair_seeds(exp, best)
        self.ctx.feed("recheck", f"keep on seeds {','.join(str(s.seed) for s in seeds)}: running it again beside "
                               f"exp-{best.number} on fresh seeds {','.join(map(str, fresh))}", exp.number)
        for seed in fresh:
            run_mine, run_theirs = (self._run_status(e, seed) not in FINISHED_RUNS for e in (exp, best))
            # one request for both slots, so the pair starts together even while other candidates hold slots
            leases = [None, None]
            if run_mine and run_theirs:
                leases = await self._together([f"exp-{exp.number}/seed-{seed}", f"exp-{best.number}/seed-{seed}"])
                if leases[0] is None:
                    self.ctx.feed("recheck", f"this machine cannot hold both runs of fresh seed {seed} at once: "
                                             f"they run as slots free", exp.number)
            try:
                await asyncio.gather(
                    *([self.run_seed(exp, seed, state["commit"], lease=leases[0])] if run_mine else []),
                    # under either test: the recheck is paired
                    *([self.reference_seed(best, seed, lease=leases[1])] if run_theirs else []))
            finally:
                for lease in leases:  # a side cancelled before it started gives its lease back here
                    if lease is not None:
                        self.scheduler.release(lease)
            if self.ctx.stop.is_set():
                raise Stopped(f"exp-{exp.number} stopped while it ran beside exp-{best.number}")
        runs = {r.seed: r for r in self.ctx.store.runs(exp.id)}
        mine = [SeedResult(s, runs[s].status, runs[s].metrics, runs[s].error) for s in fresh if s in runs]
        return self.roles.critic.recheck(verdict, mine, self._reference(best), f"exp-{best.number}",
                                         self._pooled_noise(exp, seeds, side_by_side=True))

    def _pair_seeds(self, exp: Experiment, best: Experiment) -> list[int]:
        """The fresh seeds of a keep's side-by-side pairs. A pair a kill cut in half (one side finished, the other
        lost) is not completed alone on resume, where the machine may run at another pace: the next fresh seed
        takes its place, both sides at once."""
        count = self.pb.objective.recheck_seeds
        fresh, spare = [], iter(recheck_seeds(exp.number, RECHECK_SPARES)[count:])
        for seed in recheck_seeds(exp.number, count):
            while (self._run_status(exp, seed) in FINISHED_RUNS) != (self._run_status(best, seed) in FINISHED_RUNS):
                replacement = next(spare, None)
                if replacement is None:
                    break  # more pairs cut than spares: this one is completed alone
                self.ctx.feed("recheck", f"the pair on fresh seed {seed} was cut by a stop (one side ran alone): "
                                         f"fresh seed {replacement} takes its place", exp.number)
                seed = replacement
            fresh.append(seed)
        return fresh

    async def _against_parent(self, exp: Experiment, state: ExperimentState, seeds: list[SeedResult],
                              verdict: Verdict, best: Experiment) -> Verdict:
        """A discard against a best kept since the candidate started is judged against its parent too.

        A candidate still promising against its parent earns its next seed; one that beats it is a win on its own
        (combine.py proposes it with the best), recorded as a `combine` lesson.
        """
        parent = self.ctx.store.experiment(self.ctx.campaign.id, state["parent_number"])
        if parent is None or parent.verdict not in ("keep", "baseline"):
            return verdict
        await self.reference_seeds(parent, state["seeds"])
        if self.ctx.stop.is_set():
            raise Stopped(f"exp-{exp.number} stopped while its parent ran")
        again = self.roles.critic.judge(seeds, self._reference(parent), parent.number,
                                        self._pooled_noise(exp, seeds))
        if again.verdict == "more_seeds":
            return Verdict("more_seeds", f"behind exp-{best.number} ({verdict.reason}), but promising against its "
                                         f"parent exp-{parent.number}: {again.reason}", verdict.mean, verdict.std,
                           verdict.p_value, seeds_wanted=1, reference=best.number)
        if again.verdict == "keep":
            self._mark_win(exp, f"beat its parent exp-{parent.number}")
            verdict.reason = (f"{verdict.reason}; but it beats its parent exp-{parent.number} ({again.reason}): "
                              f"to be combined with exp-{best.number}")
        return verdict

    def _mark_win(self, exp: Experiment, what: str) -> None:
        """Record that an experiment beat its parent though it is not kept: combine.py proposes it with the best."""
        cid = self.ctx.campaign.id
        if not self.ctx.store.has_lesson(cid, exp.number, source=COMBINE_SOURCE):
            self.ctx.store.add(Lesson(campaign_id=cid, experiment_number=exp.number, source=COMBINE_SOURCE,
                                      text=f"exp-{exp.number} {what}: {exp.hypothesis[:120]}"))

    def _pooled_noise(self, exp: Experiment, seeds: list[SeedResult],
                      side_by_side: bool = False) -> tuple[float, int] | None:
        """The campaign's pooled seed noise for this experiment's paired test (`pooled_noise`); read only for a
        confirmation or a recheck (the one-seed screen uses none, and most candidates end there)."""
        if self.roles.critic.test != "paired" or len(seeds) < 2:
            return None
        return pooled_noise(self.ctx.store, self.ctx.campaign.id, self.pb.objective.metric, exp.number, side_by_side)

    # -- the reference's seeds (paired with every candidate's) --------------------
    def _reference(self, exp: Experiment | None) -> dict[int, float]:
        """The reference's metric on each seed that produced one."""
        if exp is None:
            return {}
        metric = self.pb.objective.metric
        return {r.seed: v for r in self.ctx.store.runs(exp.id)
                if r.status == "ok" and (v := metric_value(r.metrics, metric)) is not None}

    async def reference_seeds(self, exp: Experiment | None, seeds: list[int]) -> None:
        """Make sure the reference experiment has run these seeds (paired tests only); each runs once, shared."""
        if exp is None or self.roles.critic.test != "paired":
            return
        have = {r.seed for r in self.ctx.store.runs(exp.id) if r.status in FINISHED_RUNS}
        await asyncio.gather(*(self.reference_seed(exp, s) for s in seeds if s not in have))

    async def reference_seed(self, exp: Experiment, seed: int, lease: Lease | None = None) -> None:
        """Run one seed of a reference experiment, once however many experiments wait for it (on `lease`, granted
        already, when given; it is released if the seed runs elsewhere)."""
        key = (exp.number, seed)
        task = self._reference_runs.get(key)
        if task is None or (task.done() and self._run_status(exp, seed) not in FINISHED_RUNS):
            task = self._reference_runs[key] = asyncio.ensure_future(self._run_reference(exp, seed, lease))
        elif lease is not None:
            self.scheduler.release(lease)
        await asyncio.shield(task)

    async def _run_reference(self, exp: Experiment, seed: int, lease: Lease | None = None) -> None:
        await self.run_seed(exp, seed, exp.commit, lease=lease)
        runs = list(self.ctx.store.runs(exp.id))
        values, mean, std = seed_stats(runs, self.pb.objective.metric)
        wall = sum(r.wall_seconds or 0 for r in runs)
        res = self.pb.run.resources
        summary = {"metric_mean": mean, "metric_std": std, "n_seeds": len(values)} if values else {}
        self.ctx.store.update(Experiment, exp.id, cpu_seconds=wall * res.cpu_threads, gpu_seconds=wall * res.gpus,
                              **summary)

    async def drain(self) -> None:
        """Wait for the reference seeds still running (the baseline's, started before the campaign's first candidate)."""
        pending = [t for t in self._reference_runs.values() if not t.done()]
        if pending:
            await asyncio.wait(pending)

    def _run_status(self, exp: Experiment, seed: int) -> str | None:
        return next((r.status for r in self.ctx.store.runs(exp.id) if r.seed == seed), None)

    async def record(self, state: ExperimentState) -> dict:
        """Store the verdict, the lesson and the costs; on keep, advance the best branch and open a pull request."""
        number, store, cid = state["number"], self.ctx.store, self.ctx.campaign.id
        exp = self._exp(number)
        if exp.status == "done":
            return {}
        v = Verdict.from_dict(state["verdict"])
        proposal = Proposal.from_dict(state["proposal"])
        runs = list(store.runs(exp.id))
        metric = self.pb.objective.metric
        wall = sum(r.wall_seconds or 0 for r in runs)
        res = self.pb.run.resources
        excess = constraint_excess(self.pb.objective, runs[0].metrics) if runs else []
        # the proposer learns first: a kill after this line must not leave its trial open
        outcome = Outcome(number, v.verdict, v.mean, excess, v.gain, v.reference, sum(r.status == "ok" for r in runs))
        await asyncio.to_thread(self.roles.proposer.observe, proposal, outcome)
        finished = now()
        if v.verdict == "keep":
            async with self._keep_lock:
                v = self._recheck(exp, v)
                if v.verdict == "keep":
                    # the store says "keep" before git moves, so a crash in between is finished by a re-run
                    self._update(number, verdict="keep", verdict_reason=v.reason, metric_mean=v.mean,
                                 metric_std=v.std, p_value=v.p_value, finished_at=finished)
                    await self._keep(exp, v)
        if not store.has_lesson(cid, number):
            store.add(Lesson(campaign_id=cid, experiment_number=number, source="critic",
                             text=lesson_for(exp.hypothesis, v, metric) + self._crash_tail(exp, v)))
        self._update(number, status="done", verdict=v.verdict, verdict_reason=v.reason, metric_mean=v.mean,
                     metric_std=v.std, p_value=v.p_value, n_seeds=sum(r.status == "ok" for r in runs),
                     cpu_seconds=wall * res.cpu_threads, gpu_seconds=wall * res.gpus, finished_at=finished)
        self.ctx.feed("verdict", f"{v.verdict}: {v.reason}", number)
        return {}

    def _crash_tail(self, exp: Experiment, v: Verdict) -> str:
        """For a crash nobody repaired, the last lines of its log (the traceback's end), for lessons and the proposer."""
        if v.verdict not in ("crash", "timeout"):
            return ""
        attempts = list(self.ctx.store.attempts(exp.id))
        tail = attempts[-1].tail if attempts and attempts[-1].tail else ""
        if not tail:
            failed = [r for r in self.ctx.store.runs(exp.id) if r.status in ("failed", "timeout")]
            tail = last_lines(failed[0].log_path) if failed else ""
        lines = [line for line in tail.splitlines() if line.strip() and not line.startswith("[hive]")][-6:]
        return ("\ncrash tail:\n" + "\n".join(lines)) if lines else ""

    def _recheck(self, exp: Experiment, v: Verdict) -> Verdict:
        """A keep judged against a best that another keep has replaced since must beat the new best too."""
        best = self.ctx.store.best(self.ctx.campaign.id)
        if best is None or best.number == v.reference or best.number == exp.number:
            return v
        runs = {r.seed: r for r in self.ctx.store.runs(exp.id)}
        seeds = [SeedResult(s, r.status, r.metrics, r.error) for s, r in sorted(runs.items()) if r.status == "ok"]
        again = self.roles.critic.judge(seeds, self._reference(best), best.number, self._pooled_noise(exp, seeds))
        again.reference = best.number
        if again.verdict != "keep":
            again.verdict = "discard"
            again.reason = (f"beat exp-{v.reference}, but exp-{best.number} was kept meanwhile: {again.reason}; "
                            f"to be combined with exp-{best.number}")
            self._mark_win(exp, f"beat exp-{v.reference}")
        return again

    async def _keep(self, exp: Experiment, v: Verdict) -> None:
        ws = self.ctx.workspace
        # the store says which experiment is best; the branch only follows it (a re-run finds it moved already)
        if not ws.same_tree(ws.best_commit(), exp.commit):
            message = (f"hive: keep exp-{exp.number}: {exp.hypothesis[:60]}\n\n{v.reason}\n\n"
                       f"Hive-Experiment: {exp.number}\nHive-Commit: {exp.commit}\n")
            ws.advance_best(exp.commit, message)
        open_pull_request(self.ctx.store, self.ctx.campaign.id, exp, v, self.pb)


def pooled_noise(store: Store, campaign_id: int, metric: str, excluding: int,
                 side_by_side: bool = False) -> tuple[float, int] | None:
    """The variance of paired per-seed differences pooled over recent finished experiments (but `excluding`), with
    its degrees of freedom; None where there are none.

    Two kinds of pair are never pooled together. A confirmation's pairs are a candidate's seeds against its
    parent's, run minutes apart; a side-by-side recheck's are one fresh seed's two runs started at one moment, and
    far quieter (in the 2026-12-07 main job a recheck's three pairs differed by 0.0039 sd, the confirmations' pool
    by 0.034: borrowed, that pool hid a consistent gain, p 0.34 against 0.04 on the pairs alone). So the
    confirmation pools the playbook's seeds only, each candidate against its parent, and a recheck
    (`side_by_side`) only earlier rechecks' pairs: each fresh seed's two runs, the keep's against its partner's.
    """
    done = [e for e in store.experiments(campaign_id, statuses=["done"], limit=POOL_EXPERIMENTS, newest_first=True)
            if e.number != excluding and e.n_seeds >= 2 and e.parent_number]
    parents = {n: p for n in {e.parent_number for e in done} if (p := store.experiment(campaign_id, n)) is not None}
    every = {e.id: e for e in (*done, *parents.values())}
    runs = store.runs_for(list(every))
    values = {eid: {r.seed: v for r in runs.get(eid, []) if r.status == "ok"
                    and (v := metric_value(r.metrics, metric)) is not None} for eid in every}
    samples: list[list[float]] = []
    if side_by_side:
        owners = {e.number for e in done}
        by_seed: dict[int, dict[int, float]] = {}  # fresh seed -> {experiment number: value}
        for eid, seen in values.items():
            for seed, value in seen.items():
                if seed > RECHECK_SEEDS:
                    by_seed.setdefault(seed, {})[every[eid].number] = value
        pairs: dict[int, list[float]] = {}
        for seed, sides in by_seed.items():
            owner = (seed - RECHECK_SEEDS) // 100  # recheck_seeds(): the keep whose recheck ran it
            partner = [v for n, v in sides.items() if n != owner]
            if owner in owners and owner in sides and len(partner) == 1:
                pairs.setdefault(owner, []).append(sides[owner] - partner[0])
        samples = list(pairs.values())
    else:
        for e in done:
            if e.parent_number in parents:
                mine, ref = values[e.id], values[parents[e.parent_number].id]
                samples.append([mine[s] - ref[s] for s in mine if s in ref and s < RECHECK_SEEDS])
    variance, df = pool_noise(samples, POOL_MAX_DF)
    return (variance, df) if df else None


def recheck_seeds(number: int, count: int) -> list[int]:
    """The fresh seeds experiment `number`'s keep is run again on: its own, so the best runs each pair anew."""
    return [RECHECK_SEEDS + number * 100 + i for i in range(1, count + 1)]


def _v(verdict: Verdict) -> dict[str, Any]:
    return dict(verdict.__dict__)


__all__ = ["ExperimentFlow", "ExperimentState", "Roles", "Stopped", "after_code", "after_critic", "after_propose",
           "resume_at"]
