"""The local executor: a subprocess in its own process group, with a wall-clock limit and peak-memory accounting."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from hive.executors.base import RunRequest, RunResult

KILL_GRACE_SECONDS = 3.0
PRLIMIT = shutil.which("prlimit") or "/usr/bin/prlimit"
RUN_MARK = "HIVE_RUN"  # set in every run's environment, so leftovers can be recognised as ours


class LocalExecutor:
    """Runs each command as `sh -c` in a new session; on timeout or cancel, SIGTERM then SIGKILL the whole group."""

    name = "local"

    def __init__(self, kill_grace: float = KILL_GRACE_SECONDS):
        self.kill_grace = kill_grace

    def run(self, request: RunRequest, cancel: threading.Event | None = None) -> RunResult:
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(request.env)
        if request.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in request.devices)
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # NVML's numbering, which the scheduler leased by
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(request.threads))
        env[RUN_MARK] = request.label or str(request.log_path)
        pid_file = request.log_path.with_name(request.log_path.name + ".pid")
        started = time.monotonic()
        with open(request.log_path, "ab", buffering=0) as log:
            try:
                proc = subprocess.Popen(_argv(request), cwd=request.cwd, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                return RunResult(exit_code=None, wall_seconds=0.0, error=f"could not start: {exc}")
            # if Hive dies, the next start finds this file and kills what is left of the run
            pid_file.write_text(str(proc.pid))
            status, rusage, timed_out, cancelled = self._wait(proc, started + request.timeout, cancel)
        wall = time.monotonic() - started
        # leftovers the command started in the background die with it
        _kill_group(proc.pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        exit_code = os.waitstatus_to_exitcode(status)
        error = ""
        if timed_out:
            error = f"killed after the {request.timeout:g} s limit"
        elif cancelled:
            error = "cancelled"
        elif exit_code < 0:
            error = f"killed by signal {signal.Signals(-exit_code).name}"
        with open(request.log_path, "a", encoding="utf-8") as log:
            if error:
                log.write(f"\n[hive] {error}\n")
        return RunResult(exit_code=exit_code, wall_seconds=wall, peak_rss_mb=rusage.ru_maxrss / 1024,
                         timed_out=timed_out, cancelled=cancelled, error=error)

    def _wait(self, proc: subprocess.Popen, deadline: float, cancel: threading.Event | None):
        timed_out = cancelled = False
        term_sent_at: float | None = None
        pause = 0.002
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return status, rusage, timed_out, cancelled
            now = time.monotonic()
            if term_sent_at is None and (now >= deadline or (cancel is not None and cancel.is_set())):
                timed_out, cancelled = now >= deadline, not now >= deadline
                _kill_group(proc.pid, signal.SIGTERM)
                term_sent_at = now
            elif term_sent_at is not None and now - term_sent_at >= self.kill_grace:
                _kill_group(proc.pid, signal.SIGKILL)
            # short sleeps at first so a quick command costs little; longer ones for long runs
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)


def _argv(request: RunRequest) -> list[str]:
    argv = ["/bin/sh", "-c", request.command]
    if request.memory_mb:
        # an address-space rlimit set before the command starts, inherited by everything it runs
        argv = [PRLIMIT, f"--as={request.memory_mb * 2**20}", "--", *argv]
    return argv


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap_orphans(folder: Path) -> int:
    """Kill the process groups of runs a killed Hive left behind (found by their pid files); return how many.

    The group's leader may be gone while its workers (torchrun's children, say) live on, so any member of the
    group that carries the run mark identifies it as ours.
    """
    killed = 0
    for pid_file in folder.rglob("*.log.pid"):
        try:
            pgid = int(pid_file.read_text().strip())
        except (ValueError, OSError):
            pgid = 0
        if pgid > 0 and any(_is_ours(pid) for pid in _group_members(pgid)):
            _kill_group(pgid, signal.SIGKILL)
            killed += 1
        pid_file.unlink(missing_ok=True)
    return killed


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name may hold spaces and parentheses: fields after the last ')' are fixed
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _is_ours(pid: int) -> bool:
    try:
        return f"{RUN_MARK}=".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
