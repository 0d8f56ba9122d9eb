"""The runner: one seed of one experiment, run by the executor, then scored from the pristine harness."""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from hive.errors import RunTimedOut
from hive.executors.base import Executor, RunRequest, RunResult, scrubbed_environment
from hive.invocation import Invocation, expand, invocation, path_first
from hive.logs import append_log, cap_log, log_tail, not_own_file, open_log, own_folder, write_log
from hive.objective import read_metrics
from hive.playbook import Playbook
from hive.progress import ProgressWatch
from hive.workspace import HarnessChanged, Workspace, content_hash

PARSE_TAIL_BYTES = 2 * 2**20  # metrics are read from the end of a log; a huge log is not read whole
FOLLOW_SECONDS = 0.25  # how often a followed log is read for new progress lines
OOM_SIGNS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "CUDA out of memory", "OutOfMemoryError")


@dataclass
class SeedOutcome:
    """What one seed produced: the metrics Hive trusts, and how the run went."""

    status: str  # ok | failed | timeout | pruned | cancelled | tampered
    metrics: dict
    result: RunResult
    log_path: Path
    error: str = ""
    invocation: Invocation | None = None


def _out_of_memory(result: RunResult, tail: str) -> bool:
    return any(sign in tail for sign in OOM_SIGNS) or (result.exit_code == -9 and not result.timed_out)


def _failure(result: RunResult, log_path: Path) -> str:
    """Why a run that ended by itself failed ("" if it exited 0); RunTimedOut if the executor killed it at its limit."""
    if result.timed_out:
        raise RunTimedOut(result.error or "killed at its time limit")
    if result.exit_code == 0:
        return ""
    why = result.error or f"exit code {result.exit_code}"
    return f"out of memory ({why})" if _out_of_memory(result, log_tail(log_path)) else why


def follow(executor: Executor, request: RunRequest, cancel: threading.Event | None,
           watch: ProgressWatch | None) -> RunResult:
    """Run a request; with a watch, read its log as it grows and stop the run once the watch prunes it."""
    if watch is None:
        return executor.run(request, cancel)
    halt, done = threading.Event(), threading.Event()

    def read() -> None:
        offset = 0
        while not done.is_set():
            if cancel is not None and cancel.is_set():
                halt.set()
            try:
                with open_log(request.log_path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                chunk = b""
            offset += len(chunk)
            if chunk and watch.feed(chunk.decode("utf-8", "replace")) is not None:
                halt.set()
            done.wait(FOLLOW_SECONDS)

    reader = threading.Thread(target=read, name=f"follow {request.label}", daemon=True)
    reader.start()
    try:
        return executor.run(request, halt)
    finally:
        done.set()
        reader.join()


class Runner:
    """Runs seeds for a campaign through one executor."""

    def __init__(self, playbook: Playbook, workspace: Workspace, executor: Executor, harness_sha256: str = "",
                 baseline: str = ""):
        """`harness_sha256` and `baseline` are what the store recorded at creation (default: what is there now)."""
        self.playbook = playbook
        self.workspace = workspace
        self.executor = executor
        self.baseline = baseline or workspace.baseline_commit()
        self.harness_sha256 = harness_sha256 or content_hash(workspace.harness_dir)
        # which runs are executing, and whether each overlapped another: a write into the campaign repo
        # can be blamed on a run only when it ran alone
        self._active: dict[int, bool] = {}
        self._active_lock = threading.Lock()
        self._next_id = 0

    def _enter(self) -> int:
        with self._active_lock:
            self._next_id += 1
            crowded = bool(self._active)
            for key in self._active:
                self._active[key] = True
            self._active[self._next_id] = crowded
            return self._next_id

    def _leave(self, key: int) -> bool:
        """End a run's watch; True when it ran alone the whole time."""
        with self._active_lock:
            return not self._active.pop(key)

    def _foreign_writes(self, alone: bool, log_path: Path) -> str | None:
        """Undo writes into the campaign repo; a reason to reject the run when it alone can have made them.

        Under an executor that confines its runs the repo is out of every run's reach, and there is nothing to check.
        """
        if getattr(self.executor, "confines", False):
            return None
        foreign = self.workspace.repo_changes()
        moved = self.workspace.baseline_moved(self.baseline)
        if moved:  # moved back at once; the scorer never reads it (fresh_harness), and new experiments must not either
            foreign.insert(0, f"the baseline branch (moved to {moved[:12]})")
        if not foreign:
            return None
        self.workspace.restore_repo()
        if alone:
            return f"the run wrote into the campaign repo: {', '.join(foreign[:3])}"
        append_log(log_path, f"\n[hive] the campaign repo was written to ({', '.join(foreign[:3])}) while other runs "
                             f"were in flight; restored, the writer is unknown\n")
        return None

    def run_seed(self, number: int, seed: int, commit: str, devices: list[int] | None = None,
                 cancel: threading.Event | None = None, watch: ProgressWatch | None = None,
                 reference: str = "the best", smoke: bool = False) -> SeedOutcome:
        """Run the playbook's command for one seed on `commit`, then its scorer; never raises for a bad run.

        With a `watch`, the log is followed while the run runs and a run clearly behind `reference` is stopped.
        With `smoke`, the playbook's smoke command runs instead, in `smoke/` with its log `smoke.log`.
        """
        pb = self.playbook
        name = "smoke" if smoke else f"seed-{seed}"
        run_dir = self.workspace.run_dir(number, seed, commit, name)
        log_path = self.workspace.logs / f"exp-{number}" / f"{name}.log"
        own_folder(log_path.parent, self.workspace.root)  # a link a run left there is removed, not followed
        run = invocation(pb, self.workspace.repo_dir, run_dir, seed, smoke)
        # the log says first what ran, so a reader of the log alone can reproduce it
        write_log(log_path, f"[hive] $ {run.shell_line()}\n")
        command = run.command
        env = {**run.env, "HIVE_SEED": str(seed)}
        request = RunRequest(command=command, cwd=run_dir, log_path=log_path, timeout=pb.run.timeout,
                             env=scrubbed_environment(env, pb.run.pass_env,
                                                      path_first=path_first(pb, self.workspace.repo_dir)),
                             devices=devices or [],
                             threads=pb.run.resources.cpu_threads, memory_mb=pb.run.resources.memory_mb,
                             label=f"{self.workspace.campaign}/exp-{number}/{name}", network=pb.run.network,
                             **self._sandbox_view(pb.run.command, *pb.run.env.values()))
        key = self._enter()
        try:
            result = follow(self.executor, request, cancel, watch)
        finally:
            alone = self._leave(key)
        # a link (or a hard link) put where the log is: never followed; the log is started again and says why
        linked = not_own_file(log_path)
        if linked:
            own_folder(log_path.parent, self.workspace.root)
            write_log(log_path, f"[hive] {linked}: the run's log was replaced (not followed, not kept)\n")
        cap_log(log_path, pb.run.max_log_mb)
        # a run must only write inside its own folder: writes into the campaign repo are caught here
        tampered = self._foreign_writes(alone, log_path) or (f"the run replaced its log: {linked}" if linked else None)
        if watch is not None and watch.pruned is not None and result.cancelled and not (cancel and cancel.is_set()):
            prune = watch.pruned
            metrics = {"pruned_step": prune.step, "pruned_gap": prune.gap, "wall_seconds": round(result.wall_seconds, 3)}
            return SeedOutcome("pruned", metrics, result, log_path, prune.reason(reference), run)
        if result.cancelled:
            return SeedOutcome("cancelled", {}, result, log_path, "cancelled", run)
        if tampered:
            return SeedOutcome("tampered", {}, result, log_path, tampered, run)
        try:
            why = _failure(result, log_path)
        except RunTimedOut as exc:  # recorded as the seed's outcome, like every meaning-carrying stop
            return SeedOutcome("timeout", {}, result, log_path, str(exc), run)
        if why:
            return SeedOutcome("failed", {}, result, log_path, why, run)
        log_text = log_tail(log_path, PARSE_TAIL_BYTES)
        metrics = read_metrics(log_text, run_dir, pb.objective.metrics_regex)
        metrics.setdefault("wall_seconds", round(result.wall_seconds, 3))
        if pb.score is None:
            return SeedOutcome("ok", metrics, result, log_path, invocation=run)
        outcome = self._score(number, seed, run_dir, log_path, metrics, result, cancel)
        outcome.invocation = run
        return outcome

    def _sandbox_view(self, *texts: str) -> dict:
        """What a sandboxed command sees of the campaign: nothing, or the repo's files (not its .git) for {repo}."""
        view: dict = {"hidden": [self.workspace.root], "read_only": {}}
        if any("{repo}" in text for text in texts):
            view["read_only"]["repo"] = self.workspace.repo_dir
            view["hidden"].append(self.workspace.repo_dir / ".git")
        # the playbook's interpreter (its whole environment) and PATH folders stay readable wherever they live
        if self.playbook.run.python or self.playbook.run.path:
            folders = [Path(p) for p in path_first(self.playbook, self.workspace.repo_dir)]
            folders[-1] = folders[-1].parent  # run.python's bin/ folder: its environment is the one above
            for i, folder in enumerate(f for f in folders if f.is_dir() and not f.is_relative_to(self.workspace.root)):
                view["read_only"][f"path-{i}"] = folder
        return view

    def _score(self, number: int, seed: int, run_dir: Path, log_path: Path, run_metrics: dict, result: RunResult,
               cancel: threading.Event | None) -> SeedOutcome:
        pb = self.playbook
        score_log = log_path.with_name(log_path.stem + ".score.log")
        write_log(score_log, "")
        # the scorer runs from a copy of the harness snapshot made now, after the run has ended, checked against
        # the hash recorded at creation (at a path no run can know in advance)
        harness = Path(tempfile.mkdtemp(prefix=f"seed-{seed}.harness-", dir=run_dir.parent))
        try:
            self.workspace.fresh_harness(harness, self.harness_sha256)
        except HarnessChanged as exc:
            # made again from the baseline commit (named by its hash); it is checked again before the next scoring
            self.workspace.snapshot_harness(pb, self.baseline)
            append_log(log_path, f"\n[hive] {exc}; not scored, snapshot made again from the baseline commit\n")
            return SeedOutcome("tampered", {}, result, log_path, str(exc))
        repo = self.workspace.repo_dir
        command = expand(pb.score.command, repo, seed, harness=harness)
        # the scorer reads the run's output files but must not be fooled by a metrics.json the run wrote
        (run_dir / "metrics.json").unlink(missing_ok=True)
        env = {k: expand(v, repo, seed, quote=False, harness=harness) for k, v in pb.run.env.items()}
        view = self._sandbox_view(pb.score.command, *pb.run.env.values())
        # the scorer reads the run's folder; it writes only in its own fresh harness copy (a scorer may build its
        # data there, as Parameter Golf's builds its validation shard), which no run can reach and which goes after
        view["read_only"] = {**view.get("read_only", {}), "harness": harness, "run": run_dir}
        request = RunRequest(command=command, cwd=run_dir, log_path=score_log, timeout=pb.score.timeout,
                             env=scrubbed_environment({**env, "HIVE_HARNESS": str(harness)}, pb.run.pass_env,
                                                      path_first=path_first(pb, repo)),
                             threads=pb.run.resources.cpu_threads, label=f"score exp-{number}/seed-{seed}",
                             writable=[harness], **view)
        try:
            scored = self.executor.run(request, cancel)
        finally:
            shutil.rmtree(harness, ignore_errors=True)
        linked = not_own_file(score_log)
        if linked:  # only something outliving its run can have done this: nothing of it is read
            append_log(log_path, f"\n[hive] {linked}: the scorer's log was replaced; not scored\n")
            return SeedOutcome("tampered", {}, result, log_path, f"the scorer's log was replaced: {linked}")
        cap_log(score_log, pb.run.max_log_mb)
        text = log_tail(score_log, PARSE_TAIL_BYTES)
        append_log(log_path, f"\n[hive] scorer: {command}\n{text}")
        if not scored.ok:
            why = "scorer timed out" if scored.timed_out else f"scorer failed (exit {scored.exit_code})"
            return SeedOutcome("cancelled" if scored.cancelled else "failed", {}, result, log_path, why)
        # the scorer's numbers win over anything the run printed itself
        score_metrics = read_metrics(text, None, pb.objective.metrics_regex)
        metrics = {**{f"run.{k}": v for k, v in run_metrics.items()}, **score_metrics}
        metrics["wall_seconds"] = round(result.wall_seconds, 3)
        metrics["score_seconds"] = round(scored.wall_seconds, 3)
        return SeedOutcome("ok", metrics, result, log_path)
