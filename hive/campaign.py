"""A running campaign: its lock, a clean stop from another terminal, its event feed, its setup and its context."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hive.agents.command_coder import check_cli
from hive.agents.significance import keep_power, look_level, looks
from hive.errors import BadInput, HiveError
from hive.executors import make_executor, reap_leftovers
from hive.executors.local import reap_orphans
from hive.invocation import interpreter, missing_imports, path_first
from hive.playbook import Playbook
from hive.playbook.changes import playbook_changes
from hive.runner import Runner
from hive.scheduler import check_resources
from hive.store import Campaign, Experiment, Store
from hive.store.engine import make_engine
from hive.store.home import RESTART_HINT, find_campaign, lock_holder, open_store
from hive.store.models import now
from hive.workspace import Workspace, content_hash

def preflight(playbook: Playbook, here: bool = True) -> None:
    """Refuse, before anything is created, a playbook that cannot run here (BadInput naming the field).

    With `here` False (`hive playbook validate`), GPUs the machine lacks are no error; GPUs it has are checked.
    """
    if playbook.strategist == "llm":
        missing = [role for role in ("proposer", "coder") if playbook.model_for(role) is None]
        if missing:
            raise BadInput(f"strategist: 'llm' needs a model for {' and '.join(missing)}: set "
                           f"{', '.join('models.' + r for r in missing)} in the playbook, or HIVE_MODEL")
    if playbook.coder_spec.kind in ("agent", "edits") and playbook.model_for("coder") is None:
        raise BadInput(f"coder: {playbook.coder_spec.kind!r} needs a model: set models.coder in the playbook, "
                       f"or HIVE_MODEL")
    python = playbook.run.python
    if python and "{repo}" not in python:
        found = interpreter(playbook, Path("."))
        if not (os.path.isfile(found) and os.access(found, os.X_OK)):
            raise BadInput(f"run.python: {python!r} is not an executable interpreter (looked for {found})")
    if playbook.coder_spec.kind == "command":
        check_cli(playbook.coder_spec)  # the agent CLI must be there before anything is created
    if playbook.executor.kind != "slurm":  # Slurm places GPUs itself
        check_resources(playbook.scheduler, playbook.run.resources, here)


CLEAR_GAIN = 2.0  # a gain of twice the seed-to-seed noise: a change worth keeping that a campaign should find
MIN_POWER = 0.5


def validate_warnings(playbook: Playbook) -> list[str]:
    """What is legal but likely a mistake: seeds and a test too few to keep even a clear gain (one line each)."""
    warnings = []
    obj = playbook.objective
    at = looks(obj.confirm_seeds, playbook.max_seeds)
    if playbook.max_seeds >= 2:
        power, p = keep_power(obj.test, at, obj.alpha, CLEAR_GAIN)
        if power < MIN_POWER:
            warnings.append(
                f"objective: underpowered: with at most {at[-1]} seed(s), the {obj.test} test at alpha {obj.alpha:g} "
                f"keeps a gain of {CLEAR_GAIN:g} seed standard deviations only {power:.0%} of the time (its typical "
                f"p-value is {p:.3g}, the level {look_level(obj.alpha, at):.3g}); give more run.seeds "
                f"(objective.max_seeds) or a larger objective.alpha")
    python = interpreter(playbook, Path("{repo}"))
    if "{repo}" not in (playbook.run.python or ""):  # a {repo} interpreter exists only once the campaign does
        script, missing = missing_imports(playbook, python)
        if missing:
            warnings.append(f"run: {script} imports {', '.join(missing)}, which the runs' python ({python}) does not "
                            f"have: install {'it' if len(missing) == 1 else 'them'} there, or set run.python to the "
                            f"interpreter of the repository's environment")
    return warnings


SETUP_DONE = ".setup-done"  # written once the playbook's setup command has succeeded
RESTARTED = ".restarted"  # under the home: where `hive start --restart` moves a campaign's old folder


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
            name = self.path.parent.name
            raise HiveError(f"campaign {name} is already running (held by pid {holder}); attach with "
                            f"`hive tui --campaign {name}`") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()

    def holder(self) -> int | None:
        """The pid of the process driving the campaign, or None when nobody holds the lock."""
        return lock_holder(self.path)

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
                  echo: Callable[[str], None] | None = None, accept_changes: bool = False) -> CampaignContext:
    """Create or resume a campaign: lock, store row, repo with baseline commit, pristine harness.

    Resuming with a playbook that changed how runs measure is refused unless `accept_changes` (or nothing was
    measured yet); other changes pass with a line each.
    """
    name = name or playbook.name
    root = home / name
    lock = CampaignLock(root / "campaign.lock")
    lock.acquire()
    try:
        workspace = Workspace(root, name)
        store = open_checked_store(home, workspace, name)
        campaign, created = store.ensure_campaign(name, playbook_path=str(playbook.path or ""),
                                                  playbook_json=playbook.model_dump_json())
        # the playbook stored by the last start, before this one replaces it below
        stored = (campaign.direction, campaign.objective_metric)
        if not created and stored != (playbook.objective.direction, playbook.objective.metric):
            raise BadInput(f"campaign {name!r} {stored[0]}s {stored[1]}, but this playbook would "
                           f"{playbook.objective.direction} {playbook.objective.metric}: its results would be judged "
                           f"the wrong way; start another campaign with --campaign NEW")
        if not created:
            _check_knob_space(campaign, playbook)
            _check_changes(store, campaign, playbook, accept_changes, echo)
        retried = None if created else _retry_failed_baseline(store, campaign, playbook, root)
        baseline = workspace.create(playbook)
        if playbook.setup and not (root / SETUP_DONE).exists():
            _run_setup(playbook, workspace, echo)
            (root / SETUP_DONE).write_text(playbook.setup)
        orphans = reap_orphans(workspace.logs)
        # writes a killed run made into the checkout are undone before anything runs again
        workspace.restore_repo()
        orphans += reap_leftovers(playbook.executor, name, workspace.logs)
        moved, harness = _check_harness(campaign, workspace, playbook, baseline)
        campaign = store.update(Campaign, campaign.id, baseline_commit=campaign.baseline_commit or baseline,
                                harness_sha256=harness, status="running",
                                playbook_json=playbook.model_dump_json(), started_at=campaign.started_at or now(),
                                updated_at=now())
        feed = Feed(store, campaign.id, echo)
        runner = Runner(playbook, workspace, make_executor(playbook.executor, campaign=name,
                                                            gpus=playbook.run.resources.gpus),
                        harness_sha256=campaign.harness_sha256, baseline=campaign.baseline_commit)
        ctx = CampaignContext(playbook, home, name, store, campaign, workspace, runner, feed, lock, created=created)
        sandbox = getattr(runner.executor, "sandbox", None)  # the local executor's, resolved once
        if getattr(sandbox, "warning", None):
            feed("warning", sandbox.warning)
        if moved:
            feed("tampering", f"the baseline branch had been moved to {moved[:12]}; moved back to the recorded "
                              f"{campaign.baseline_commit[:12]}")
        if orphans:
            feed("campaign", f"killed {orphans} run(s) left running by a previous Hive process")
        if retried:
            feed("campaign", retried, 1)
        feed("campaign", f"{'created' if created else 'resumed'} {name} (objective: {playbook.objective.direction} "
                         f"{playbook.objective.metric}, workspace {root})")
        return ctx
    except BaseException:
        lock.release()
        raise


RETRY_FIELDS = ("run", "score", "setup")  # a failed baseline is run again when one of these changed


def _retry_failed_baseline(store: Store, campaign: Campaign, playbook: Playbook, root: Path) -> str | None:
    """Set a failed baseline to run again when the playbook's run, score or setup changed; say why, else None."""
    baseline = store.experiment(campaign.id, 1)
    if baseline is None or baseline.verdict != "crash":
        return None
    new = json.loads(playbook.model_dump_json())
    changed = [key for key in RETRY_FIELDS if campaign.playbook.get(key) != new.get(key)]
    if not changed:
        return None
    if "setup" in changed:
        (root / SETUP_DONE).unlink(missing_ok=True)
    store.delete_runs(baseline.id)
    store.update(Experiment, baseline.id, status="running", verdict=None, verdict_reason="", n_seeds=0,
                 metric_mean=None, metric_std=None, finished_at=None)
    return f"retrying the failed baseline: the playbook's {' and '.join(changed)} changed"


def open_checked_store(home: Path, workspace: Workspace, name: str) -> Store:
    """The campaign's store, refused when it and the repo disagree (one deleted, emptied or replaced).

    Never starts a campaign over silently: BadInput naming what is wrong and the way out.
    """
    db = workspace.root / "hive.db"
    has_repo = workspace.exists()
    if not os.environ.get("HIVE_DB_URL") and not db.exists() and has_repo:
        raise BadInput(f"{db}: the campaign's store is missing, but {workspace.repo_dir} holds its branches; "
                       f"restore it, or {RESTART_HINT}")
    store = open_store(home, name)
    try:
        _check_state(store, workspace, name, has_repo)
    except BadInput:
        store.engine.dispose()
        raise
    return store


def _check_state(store: Store, workspace: Workspace, name: str, has_repo: bool) -> None:
    camp = store.campaign(name)
    experiments = store.count_experiments(camp.id) if camp is not None else 0
    if camp is None and has_repo:
        where = "the store (HIVE_DB_URL)" if os.environ.get("HIVE_DB_URL") else str(workspace.root / "hive.db")
        raise BadInput(f"{where}: holds no campaign {name!r}, but {workspace.repo_dir} holds its branches (the store "
                       f"was deleted, emptied or replaced); restore it, or {RESTART_HINT}")
    if experiments and not has_repo:
        raise BadInput(f"{workspace.repo_dir}: the campaign repo is missing (or lost its baseline branch), but the "
                       f"store holds {experiments} experiment(s) of {name!r}; restore it, or {RESTART_HINT}")


def restart_campaign(home: Path, name: str) -> str | None:
    """Move a campaign's folder aside (and rename its rows in a shared store) so it starts over; say what moved where.

    Nothing is deleted: the old folder goes to `<home>/.restarted/<name>-<UTC time>/`, a HIVE_DB_URL store's
    campaign is renamed `<name>.restarted-<UTC time>`. Returns None when there was nothing to move.
    """
    root = home / name
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    said = []
    if root.exists():
        lock = CampaignLock(root / "campaign.lock")
        lock.acquire()  # refuses while the campaign is running
        try:
            if (root / "logs").is_dir():
                reap_orphans(root / "logs")
            aside = home / RESTARTED / f"{name}-{stamp}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            root.rename(aside)
        finally:
            lock.release()
        said.append(f"moved {root} to {aside}")
    if os.environ.get("HIVE_DB_URL"):
        store = Store(make_engine(os.environ["HIVE_DB_URL"]))
        try:
            camp = store.campaign(name)
            if camp is not None:
                store.update(Campaign, camp.id, name=f"{name}.restarted-{stamp}")
                said.append(f"renamed campaign {name!r} in the store to {name}.restarted-{stamp!s}")
        finally:
            store.engine.dispose()
    return "; ".join(said) or None


def _check_harness(campaign: Campaign, workspace: Workspace, playbook: Playbook, baseline: str) -> tuple[str | None, str]:
    """Put the baseline branch back where the store recorded it; the harness snapshot's hash, checked or first taken.

    A campaign made before snapshots existed gets one now, from its stored baseline commit (named by its hash).
    """
    recorded = campaign.baseline_commit or baseline
    moved = workspace.baseline_moved(recorded)
    if campaign.harness_sha256 and workspace.harness_dir.is_dir():
        if content_hash(workspace.harness_dir) == campaign.harness_sha256:
            return moved, campaign.harness_sha256
    digest = workspace.snapshot_harness(playbook, recorded)
    if campaign.harness_sha256 and digest != campaign.harness_sha256:
        raise HiveError(f"the harness of campaign {campaign.name} (the protected files at the baseline commit "
                        f"{recorded[:12]}) no longer matches the hash recorded at its creation: its repo was changed; "
                        f"start a new campaign with --campaign NEW")
    return moved, digest


def _check_knob_space(campaign: Campaign, playbook: Playbook) -> None:
    """Refuse a knob whose kind (int, float, categorical) or choices changed: the campaign's search cannot go on."""
    before = {k.get("name"): k for k in campaign.playbook.get("knobs") or [] if isinstance(k, dict)}
    for i, knob in enumerate(playbook.knobs):
        old = before.get(knob.name)
        if old is None:
            continue
        was = f"{old.get('type')}" + (f" with choices {old.get('choices')}" if old.get("type") == "categorical" else "")
        now_is = knob.type + (f" with choices {knob.choices}" if knob.type == "categorical" else "")
        if was != now_is:
            raise BadInput(f"knobs.{i}: campaign {campaign.name!r} searched knob {knob.name!r} as {was}, this playbook "
                           f"makes it {now_is}: its search cannot go on with that (not even with --accept-changes); "
                           f"give the knob a new name, or start over with --restart or --campaign NEW")


def _check_changes(store: Store, campaign: Campaign, playbook: Playbook, accept: bool,
                   echo: Callable[[str], None] | None) -> None:
    """Say what changed since the campaign's last start; refuse a change to what runs measure, unless accepted."""
    try:
        stored = Playbook.model_validate_json(campaign.playbook_json).model_dump(mode="json")
    except ValueError:
        stored = None  # a playbook stored by an older Hive that this schema no longer reads: nothing to compare
    if stored is None:
        return
    changes = playbook_changes(stored, playbook.model_dump(mode="json"))
    affecting = [c for c in changes if c.affects_runs]
    measured = store.count_runs(campaign.id, status="ok")
    if affecting and measured and not accept:
        raise BadInput(f"campaign {campaign.name!r} was measured with another playbook ({measured} run(s)); this one "
                       f"changes what runs measure: {'; '.join(c.text() for c in affecting)}. Pass --accept-changes "
                       f"to go on with it anyway, or start another campaign with --campaign NEW")
    for change in changes:
        if not change.affects_runs:
            why = "does not change what runs measure"
        else:
            why = "accepted with --accept-changes" if measured else "accepted: nothing was measured yet"
        line = f"playbook changed: {change.text()} ({why})"
        store.event(campaign.id, "campaign", line)
        if echo:
            echo(line)


def _run_setup(playbook: Playbook, workspace: Workspace, echo: Callable[[str], None] | None) -> None:
    """Run the playbook's setup once in the campaign repo; what it leaves there is excluded from git."""
    if echo:
        echo(f"setup: {playbook.setup}")
    log = workspace.root / "setup.log"
    with open(log, "w") as out:
        # the same `python` and PATH as the runs get (run.python, run.path), in the rest of the host's environment
        path = os.pathsep.join([*path_first(playbook, workspace.repo_dir), os.environ.get("PATH", "/usr/bin:/bin")])
        proc = subprocess.run(playbook.setup, shell=True, cwd=workspace.repo_dir, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PATH": path})
    if proc.returncode != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise HiveError(f"setup command failed (exit {proc.returncode}; {log}): {tail[-300:]}")
    # data a setup downloads is not an agent's change and must survive the repo's clean-ups
    created = workspace.repo_changes()
    if created:
        with open(workspace.repo_dir / ".git" / "info" / "exclude", "a") as fh:
            fh.write("".join(f"/{path}\n" for path in created))
