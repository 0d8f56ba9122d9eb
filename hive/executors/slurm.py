"""The slurm executor: each run is one `sbatch` job; polled with squeue, cancelled with scancel, logs on the shared disk.

Slurm places GPUs itself (`--gres=gpu:N`), so with this executor Hive's scheduler leases no local GPUs; it only
bounds how many jobs a campaign keeps in the queue (`scheduler.slots`).

The command runs in the same bubblewrap sandbox as a local run wherever the compute node can run bwrap
(`executor.sandbox`, checked by the batch script on the node: auto falls back to no sandbox there with a line in
the run's log, bwrap fails the job): its own folder writable, the campaign folder hidden, a private PID
namespace, /proc, HOME and /tmp. The node's GPU device nodes are shown to it; Slurm's own device constraint
(cgroups) decides which of them the job may open.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

from hive.errors import HiveError
from hive.executors.base import RunRequest, RunResult
from hive.logs import append_log
from hive.sandbox import Policy, wrap

COMMAND_TIMEOUT = 60  # seconds an sbatch/squeue/scancel call may take before the controller counts as down
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING",
          "STAGE_OUT", "STOPPED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
JOB_FILE = ".slurm"  # beside the log: the job id, so a restarted Hive can cancel what a crashed one left queued
STATUS_FILE = ".status"  # beside the log: written by the batch script when the command starts and when it exits
# Slurm's own variables (and the GPUs it picked) survive; everything else is replaced by the run's environment
KEEP = ("SLURM_*", "SLURMD_*", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")
# what the submitting process passes to sbatch itself (where the controller is), not to the job
CLIENT_ENV = ("SLURM_CONF", "SBATCH_", "SLURM_CLUSTERS")

BATCH_SCRIPT = """#!/bin/sh
# written by Hive for {label}
for name in $(env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'); do
    case "$name" in {keep}) ;; *) unset "$name" 2>/dev/null ;; esac
done
{exports}
printf 'started %s\\n' "$(date +%s.%N)" > {status}
cd {cwd} || {{ printf 'exited 1 %s\\n' "$(date +%s.%N)" >> {status}; exit 1; }}
{run}
code=$?
printf 'exited %s %s\\n' "$code" "$(date +%s.%N)" >> {status}
exit $code
"""


# the command in the sandbox, on a node that can run bwrap (tried there: nodes differ); {bwrap_head} ends at the
# flags after which device nodes are bound, {bwrap_tail} holds the mounts and the command
SANDBOXED_RUN = """hive_bwrap=$(command -v bwrap 2>/dev/null)
if [ -n "$hive_bwrap" ] && "$hive_bwrap" --unshare-pid --ro-bind / / --dev /dev --proc /proc /bin/true 2>/dev/null; then
    set --
    for node in /dev/nvidia* /dev/nvidia-caps/*; do
        if [ -c "$node" ]; then set -- "$@" --dev-bind "$node" "$node"; fi
    done
    "$hive_bwrap" {bwrap_head} "$@" {bwrap_tail} < /dev/null
else
{fallback}
fi"""
FALLBACK = {
    "auto": """    echo "[hive] runs are NOT sandboxed on node $(hostname): bwrap cannot run there (executor.sandbox: auto)"
    /bin/sh -c {command} < /dev/null""",
    "bwrap": """    echo "[hive] executor.sandbox: bwrap cannot run on node $(hostname) (use sandbox: auto or none)"
    false""",
}


def slurm_available() -> str | None:
    """Why Slurm cannot be used here (no sbatch, controller not answering), or None when it can."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH (install Slurm's client tools)"
    proc = _slurm("sinfo", "-h", "-o", "%P")
    if proc.returncode != 0:
        return f"the Slurm controller does not answer: {_first_line(proc.stderr or proc.stdout)}"
    return None


class SlurmExecutor:
    """Submits each command as a batch job that cds to the run folder; timeout or cancel → scancel, wait until gone.

    The run's limit counts from when the job starts, not from when it was queued. Exit codes come from a status
    file the batch script writes (no accounting database needed), else from `scontrol show job`.
    """

    name = "slurm"
    confines = False  # a node without bwrap runs the job unsandboxed (auto), so the repo is still checked after it

    def __init__(self, config, campaign: str = "", gpus: float = 0):  # noqa: ANN001  (playbook.SlurmExecutor)
        problem = slurm_available()
        if problem:
            raise HiveError(f"executor.kind: slurm: {problem}")
        self.config = config
        self.campaign = campaign
        # a share of a GPU asks Slurm for a whole one: sharing a node's GPUs is Slurm's own business (--gres=shard)
        self.gpus = config.gpus if config.gpus is not None else math.ceil(gpus)

    def run(self, request: RunRequest, cancel: threading.Event | None = None) -> RunResult:
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        base = str(request.log_path)
        script, status, job_file = Path(base + ".sbatch"), Path(base + STATUS_FILE), Path(base + JOB_FILE)
        status.unlink(missing_ok=True)
        script.write_text(self._script(request, status))
        submitted = time.monotonic()
        proc = _slurm("sbatch", "--parsable", *self._arguments(request), str(script),
                      env=_client_environment(request.env))
        if proc.returncode != 0:
            error = f"sbatch failed: {_first_line(proc.stderr or proc.stdout)}"
            append_log(request.log_path, f"\n[hive] {error}\n")
            script.unlink(missing_ok=True)
            return RunResult(exit_code=None, wall_seconds=0.0, error=error)
        job = proc.stdout.strip().split(";")[0]
        job_file.write_text(job)
        try:
            return self._wait(job, request, status, submitted, cancel)
        finally:
            for path in (script, status, job_file):
                path.unlink(missing_ok=True)

    def _arguments(self, request: RunRequest) -> list[str]:
        cfg = self.config
        minutes = cfg.time_minutes or max(1, math.ceil(request.timeout / 60))
        args = [f"--job-name=hive-{_job_name(request.label or request.log_path.stem)}",
                f"--output={request.log_path}", "--open-mode=append", f"--chdir={request.cwd}",
                f"--time={minutes}", f"--cpus-per-task={cfg.cpus_per_task or request.threads}", "--export=ALL",
                f"--comment=hive.campaign={self.campaign}"]
        if cfg.partition:
            args.append(f"--partition={cfg.partition}")
        if request.memory_mb:
            args.append(f"--mem={request.memory_mb}M")
        gpus = len(request.devices) or self.gpus
        if gpus:
            args.append(f"--gres=gpu:{gpus}")
        return args + list(cfg.extra_args)

    def _script(self, request: RunRequest, status: Path) -> str:
        env = dict(request.env)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(request.threads))
        exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())
                            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k))
        return BATCH_SCRIPT.format(label=request.label.replace("\n", " "), keep="|".join(KEEP), exports=exports,
                                   status=shlex.quote(str(status)), cwd=shlex.quote(str(request.cwd)),
                                   run=self._run_line(request))

    def _run_line(self, request: RunRequest) -> str:
        """The batch script's line that runs the command: in the sandbox where the node has bwrap (see above)."""
        command = shlex.quote(request.command)
        mode = self.config.sandbox
        if mode == "none":
            return f"/bin/sh -c {command} < /dev/null"
        writable = (request.cwd,) if request.writable is None else tuple(request.writable)
        policy = Policy(writable=writable, read_only=tuple(request.read_only.values()),
                        hidden=tuple(request.hidden), network=request.network)
        argv = wrap(["/bin/sh", "-c", request.command], policy, request.cwd)[1:]
        cut = argv.index("/proc", argv.index("--proc")) + 1  # device nodes are bound right after /dev and /proc
        return SANDBOXED_RUN.format(bwrap_head=shlex.join(argv[:cut]), bwrap_tail=shlex.join(argv[cut:]),
                                    fallback=FALLBACK[mode].format(command=command))

    def _wait(self, job: str, request: RunRequest, status: Path, submitted: float,
              cancel: threading.Event | None) -> RunResult:
        """Follow the job until it ends; the status file says at once, squeue every `poll_seconds` otherwise."""
        poll = self.config.poll_seconds
        started: float | None = None
        next_poll = time.monotonic() + min(poll, 0.5)
        pause = 0.02
        timed_out = cancelled = False
        while True:
            now = time.monotonic()
            marks = _read_status(status)
            if started is None and "started" in marks:
                started = now
            if "exited" in marks:
                break
            if now >= next_poll:
                next_poll = now + poll
                state = job_state(job)
                if state is None or state not in ACTIVE | {"UNKNOWN"}:
                    break
                if started is None and state == "RUNNING":
                    started = now
            if cancel is not None and cancel.is_set():
                cancelled = True
            elif started is not None and now - started >= request.timeout:
                timed_out = True
            if timed_out or cancelled:
                cancel_job(job)
                break
            time.sleep(pause)
            pause = min(pause * 1.5, 0.25, poll)
        marks = _read_status(status)
        exit_code, slurm_state = None, ""
        if "exited" in marks:
            exit_code = int(marks["exited"][0])
        else:
            slurm_state, exit_code = _final_state(job)
        wall = _elapsed(marks) or (time.monotonic() - (started or submitted))
        error = ""
        if slurm_state == "TIMEOUT" and not (timed_out or cancelled):
            timed_out, error = True, "Slurm ended the job at its --time limit"
        elif slurm_state == "OUT_OF_MEMORY":
            error = f"out of memory: Slurm killed job {job} at its --mem limit"
        elif timed_out:
            error = f"cancelled after the {request.timeout:g} s limit"
        elif cancelled:
            error = "cancelled"
        elif exit_code is None or slurm_state not in ("", "COMPLETED", "FAILED"):
            error = f"job {job} ended {slurm_state or 'without an exit code'}"
        if error:
            append_log(request.log_path, f"\n[hive] {error} (slurm job {job})\n")
        return RunResult(exit_code=exit_code, wall_seconds=wall, timed_out=timed_out, cancelled=cancelled, error=error)


def job_state(job: str) -> str | None:
    """The job's state as squeue shows it (RUNNING, PENDING, ...), or None once it has left the queue."""
    proc = _slurm("squeue", "-h", "-j", job, "-o", "%T")
    if proc.returncode != 0:
        # a slow or restarting controller is not an ended job: ask again later
        return None if "Invalid job id" in proc.stderr else "UNKNOWN"
    return proc.stdout.strip().split("\n")[0].strip() or None


def cancel_job(job: str, wait: float = 60) -> bool:
    """scancel the job and wait until squeue no longer lists it; True if it is gone."""
    _slurm("scancel", job)
    deadline = time.monotonic() + wait
    pause = 0.05
    while time.monotonic() < deadline:
        state = job_state(job)
        if state is None or state not in ACTIVE | {"UNKNOWN"}:
            return True
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)
    return False


def reap_slurm_jobs(folder: Path) -> int:
    """scancel the jobs a crashed Hive left queued or running (found by their job-id files); return how many."""
    cancelled = 0
    for job_file in folder.rglob(f"*.log{JOB_FILE}"):
        job = job_file.read_text().strip()
        state = job_state(job) if job.isdigit() else None
        if state == "UNKNOWN":
            continue  # the controller does not answer: keep the file for the next start
        if state in ACTIVE:
            cancel_job(job)
            cancelled += 1
        job_file.unlink(missing_ok=True)
    return cancelled


def _final_state(job: str) -> tuple[str, int | None]:
    """JobState and exit code (negative for a signal) from `scontrol show job`, while Slurm still remembers it."""
    proc = _slurm("scontrol", "-o", "show", "job", job)
    state = re.search(r"\bJobState=(\S+)", proc.stdout)
    code = re.search(r"\bExitCode=(\d+):(\d+)", proc.stdout)
    exit_code = None
    if code:
        exit_code = -int(code.group(2)) if int(code.group(2)) else int(code.group(1))
    return (state.group(1) if state else "GONE"), exit_code


def _slurm(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a Slurm client command; a hang or a missing binary comes back as a failed call, not an exception."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, -1, "", f"{argv[0]}: {exc}")


def _read_status(path: Path) -> dict[str, list[str]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {parts[0]: parts[1:] for line in lines if (parts := line.split())}


def _elapsed(marks: dict[str, list[str]]) -> float | None:
    """Seconds between the script's start and exit stamps (both from the compute node's clock)."""
    try:
        return max(0.0, float(marks["exited"][1]) - float(marks["started"][0]))
    except (KeyError, IndexError, ValueError):
        return None


def _client_environment(run_env: dict[str, str]) -> dict[str, str]:
    """sbatch's own environment: the run's (exported to the job) plus what sbatch needs to find the cluster."""
    env = dict(run_env)
    env.update({k: v for k, v in os.environ.items() if k.startswith(CLIENT_ENV)})
    env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    return env


def _job_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:/-]+", "_", label)[:120]


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else "no output"
