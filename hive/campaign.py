"""A campaign: its folder, store, repo and lock, its event feed, and its baseline experiment."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import statistics
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from hive.errors import BadInput, HiveError
from hive.executors import make_executor, reap_leftovers
from hive.executors.local import reap_orphans
from hive.objective import metric_value
from hive.playbook import Playbook
from hive.runner import Runner, SeedOutcome, log_tail
from hive.store import Campaign, Experiment, Run, Store, database_url, make_engine
from hive.store.models import now
from hive.workspace import Workspace



def home_dir(workspaces: str | Path | None = None) -> Path:
    """Where campaigns live: --workspaces, else HIVE_HOME, else ./workspaces."""
    return Path(workspaces or os.environ.get("HIVE_HOME") or "workspaces").resolve()


def open_store(home: Path, campaign: str) -> Store:
    """The store that holds a campaign (its SQLite file, or HIVE_DB_URL)."""
    return Store(make_engine(database_url(home / campaign)))


def find_campaign(home: Path, name: str | None) -> tuple[Store, Campaign]:
    """Look up a campaign by name (or the only one there is); BadInput naming the valid ones if absent."""
    if os.environ.get("HIVE_DB_URL"):
        store = Store(make_engine(os.environ["HIVE_DB_URL"]))
        names = [c.name for c in store.campaigns()]
    else:
        names = sorted(p.name for p in home.glob("*") if (p / "hive.db").is_file()) if home.is_dir() else []
        store = None
    valid = ", ".join(names) or "none yet; `hive start PLAYBOOK` creates one"
    if name is None:
        if len(names) != 1:
            raise BadInput(f"CAMPAIGN: name a campaign (known: {valid})")
        name = names[0]
    if name not in names:
        raise BadInput(f"CAMPAIGN: no campaign {name!r} under {home} (known: {valid})")
    store = store or open_store(home, name)
    campaign = store.campaign(name)
    if campaign is None:
        raise BadInput(f"CAMPAIGN: no campaign {name!r} in the store")
    return store, campaign


SETUP_DONE = ".setup-done"  # written once the playbook's setup command has succeeded


class CampaignLock:
    """An exclusive lock on a campaign folder, so two `hive start` never drive one campaign."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise HiveError(f"campaign is already running (held by pid {holder}); attach with `hive tui`") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()

    def holder(self) -> int | None:
        """The pid of the process driving the campaign, or None when nobody holds the lock."""
        if not self.path.exists():
            return None
        with open(self.path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                text = fh.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fh, fcntl.LOCK_UN)
        return None

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def stop_campaign(home: Path, name: str | None, wait: float = 60.0,
                  tick: Callable[[], None] | None = None) -> tuple[str, int | None]:
    """Ask the process running a campaign to stop cleanly (SIGTERM, as Ctrl-C); wait until it has.

    Returns the campaign name and the pid that was stopped (None when the campaign was not running).
    """
    import signal
    import time

    _, camp = find_campaign(home, name)
    lock = CampaignLock(home / camp.name / "campaign.lock")
    pid = lock.holder()
    if pid is None:
        return camp.name, None
    if pid <= 0:
        raise HiveError(f"campaign {camp.name} is locked but its lock file names no process")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while lock.holder() is not None:
        if time.monotonic() > deadline:
            raise HiveError(f"campaign {camp.name} (pid {pid}) did not stop within {wait:g} s")
        if tick:
            tick()
        time.sleep(0.5)
    return camp.name, pid


@dataclass
class Feed:
    """Writes events to the store and, when headless, prints each as one line."""

    store: Store
    campaign_id: int
    echo: Callable[[str], None] | None = None

    def __call__(self, kind: str, message: str, number: int | None = None) -> None:
        self.store.event(self.campaign_id, kind, message, number)
        if self.echo:
            where = f"exp-{number} " if number is not None else ""
            self.echo(f"[{now():%H:%M:%S}] {kind:<9} {where}{message}")


@dataclass
class CampaignContext:
    """Everything one running campaign needs, opened once by `hive start`."""

    playbook: Playbook
    home: Path
    name: str
    store: Store
    campaign: Campaign
    workspace: Workspace
    runner: Runner
    feed: Feed
    lock: CampaignLock
    stop: threading.Event = field(default_factory=threading.Event)
    created: bool = False
    scheduler: Any = None  # set by the driver; the TUI reads its snapshot

    def close(self) -> None:
        self.lock.release()
        self.store.engine.dispose()


def open_campaign(playbook: Playbook, home: Path, name: str | None = None,
                  echo: Callable[[str], None] | None = None) -> CampaignContext:
    """Create or resume a campaign: lock, store row, repo with baseline commit, pristine harness."""
    name = name or playbook.name
    root = home / name
    lock = CampaignLock(root / "campaign.lock")
    lock.acquire()
    try:
        store = open_store(home, name)
        campaign, created = store.ensure_campaign(
            name, playbook_path=str(playbook.path or ""), playbook_json=playbook.model_dump_json(),
            objective_metric=playbook.objective.metric, direction=playbook.objective.direction)
        stored = (campaign.direction, campaign.objective_metric)
        if not created and stored != (playbook.objective.direction, playbook.objective.metric):
            raise BadInput(f"campaign {name!r} {stored[0]}s {stored[1]}, but this playbook would "
                           f"{playbook.objective.direction} {playbook.objective.metric}: its results would be judged "
                           f"the wrong way; start another campaign with --campaign NEW")
        workspace = Workspace(root, name)
        baseline = workspace.create(playbook)
        if playbook.setup and not (root / SETUP_DONE).exists():
            _run_setup(playbook, workspace, echo)
            (root / SETUP_DONE).write_text(playbook.setup)
        orphans = reap_orphans(workspace.logs)
        # writes a killed run made into the checkout are undone before anything runs again
        workspace.restore_repo()
        orphans += reap_leftovers(playbook.executor, name, workspace.logs)
        campaign = store.update(Campaign, campaign.id, baseline_commit=baseline, status="running",
                                playbook_json=playbook.model_dump_json(), started_at=campaign.started_at or now(),
                                updated_at=now())
        feed = Feed(store, campaign.id, echo)
        runner = Runner(playbook, workspace, make_executor(playbook.executor, campaign=name,
                                                            gpus=playbook.run.resources.gpus))
        ctx = CampaignContext(playbook, home, name, store, campaign, workspace, runner, feed, lock, created=created)
        if orphans:
            feed("campaign", f"killed {orphans} run(s) left running by a previous Hive process")
        feed("campaign", f"{'created' if created else 'resumed'} {name} (objective: {playbook.objective.direction} "
                         f"{playbook.objective.metric}, workspace {root})")
        return ctx
    except BaseException:
        lock.release()
        raise


def _run_setup(playbook: Playbook, workspace: Workspace, echo: Callable[[str], None] | None) -> None:
    """Run the playbook's setup once in the campaign repo; what it leaves there is excluded from git."""
    import subprocess

    if echo:
        echo(f"setup: {playbook.setup}")
    log = workspace.root / "setup.log"
    with open(log, "w") as out:
        proc = subprocess.run(playbook.setup, shell=True, cwd=workspace.repo_dir, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise HiveError(f"setup command failed (exit {proc.returncode}; {log}): {tail[-300:]}")
    # data a setup downloads is not an agent's change and must survive the repo's clean-ups
    created = workspace.repo_changes()
    if created:
        with open(workspace.repo_dir / ".git" / "info" / "exclude", "a") as fh:
            fh.write("".join(f"/{path}\n" for path in created))


def record_seed(ctx: CampaignContext, exp: Experiment, seed: int, outcome: SeedOutcome, devices: list[int]) -> Run:
    """Store one seed's outcome as its Run row."""
    run = ctx.store.ensure_run(exp.id, seed)
    error = outcome.error
    if outcome.status != "ok":
        error = f"{outcome.error}\n--- log tail ---\n{log_tail(outcome.log_path)}"
    return ctx.store.update(
        Run, run.id, status=outcome.status, metrics_json=json.dumps(outcome.metrics, default=str),
        exit_code=outcome.result.exit_code, wall_seconds=round(outcome.result.wall_seconds, 3),
        peak_rss_mb=outcome.result.peak_rss_mb, devices=",".join(map(str, devices)), log_path=str(outcome.log_path),
        error=error, finished_at=now())


def seed_stats(runs: list[Run], metric: str) -> tuple[list[float], float | None, float | None]:
    """The metric of every successful seed, with its mean and sample standard deviation."""
    values = [v for r in runs if r.status == "ok" and (v := metric_value(r.metrics, metric)) is not None]
    mean = statistics.fmean(values) if values else None
    std = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
    return values, mean, std


async def run_baseline(ctx: CampaignContext, run_seed: Callable[[Experiment, int, str], Awaitable[None]]) -> Experiment:
    """Experiment 1: the unchanged source, run with `confirm_seeds` seeds so later keeps have a reference.

    `run_seed` leases a slot, runs one seed and records it (ExperimentFlow.run_seed).
    """
    pb, store, cid = ctx.playbook, ctx.store, ctx.campaign.id
    exp = store.experiment(cid, 1)
    if exp is None:
        from hive.agents.search import baseline_values

        knobs = baseline_values(pb, ctx.workspace.repo_dir) if pb.knobs else {}
        exp = store.new_experiment(cid, kind="baseline", hypothesis="baseline: the source as given",
                                   proposal_json=json.dumps({"knobs": knobs, "strategist": "baseline"}),
                                   commit=ctx.campaign.baseline_commit, parent_commit=ctx.campaign.baseline_commit,
                                   branch=ctx.workspace.baseline_branch, status="running", started_at=now())
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
    ctx.feed("verdict", f"baseline {pb.objective.metric} = {mean:.6g} ± {std:.2g} over {len(values)} seed(s)", exp.number)
    return exp


def describe_outcome(outcome: SeedOutcome, metric: str) -> str:
    """A few words on how a seed went, for the feed."""
    if outcome.status == "ok":
        value = metric_value(outcome.metrics, metric)
        shown = f"{metric}={value:.6g}" if value is not None else f"{metric} missing"
        return f"{shown} in {outcome.result.wall_seconds:.1f}s"
    return outcome.error.splitlines()[0] if outcome.error else outcome.status


def echo_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
