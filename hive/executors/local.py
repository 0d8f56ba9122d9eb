"""The local executor: a subprocess in the sandbox, in its own process group, with a wall-clock limit and peak memory.

With the sandbox (bwrap) every process of a run lives in the run's own PID namespace and dies with it. Without it
(`executor.sandbox: none`, or `auto` where bwrap cannot run), the run's process group is killed and so is every
process that still carries the run's mark in its environment (a `setsid` or `nohup` child keeps it); a process
that clears its own environment and detaches is out of reach there.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from hive.executors.base import RunRequest, RunResult, stop_reason
from hive.logs import LinkedLog, append_log, open_log, write_log
from hive.sandbox import Policy, Sandbox, gpu_nodes

KILL_GRACE_SECONDS = 3.0
PRLIMIT = shutil.which("prlimit") or "/usr/bin/prlimit"
RUN_MARK = "HIVE_RUN"  # set in every run's environment, so leftovers can be recognised as ours
PR_SET_DUMPABLE = 4


class LocalExecutor:
    """Runs each command as `sh -c` in the sandbox and a new session; on timeout or cancel, SIGTERM then SIGKILL.

    `sandbox` is a mode (auto | bwrap | none) or a resolved Sandbox; every process of a run is gone when `run`
    returns.
    """

    name = "local"

    def __init__(self, kill_grace: float = KILL_GRACE_SECONDS, sandbox: str | Sandbox = "auto"):
        self.kill_grace = kill_grace
        self.sandbox = sandbox if isinstance(sandbox, Sandbox) else Sandbox(sandbox)
        hide_own_environment()

    @property
    def confines(self) -> bool:
        return self.sandbox.enforced

    def run(self, request: RunRequest, cancel: threading.Event | None = None) -> RunResult:
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(request.env)
        nodes: tuple[Path, ...] = ()
        if request.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in request.devices)
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # NVML's numbering, which the scheduler leased by
            if self.sandbox.enforced:
                nodes, env["CUDA_VISIBLE_DEVICES"] = gpu_nodes(request.devices)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(request.threads))
        # unique to this run: what is still running with it after the run is this run's
        mark = env[RUN_MARK] = str(request.log_path)
        pid_file = request.log_path.with_name(request.log_path.name + ".pid")
        argv, info_read, info_write = _argv(request), None, None
        if self.sandbox.enforced:
            info_read, info_write = os.pipe()
            writable = (request.cwd,) if request.writable is None else tuple(request.writable)
            policy = Policy(writable=writable,
                            read_only=tuple(request.read_only.values()), hidden=tuple(request.hidden),
                            network=request.network, devices=nodes)
            try:
                argv = self.sandbox.argv(argv, policy, request.cwd, info_fd=info_write)
            except FileNotFoundError as exc:
                os.close(info_read)
                os.close(info_write)
                return RunResult(exit_code=None, wall_seconds=0.0, error=f"could not start: {exc}")
        started = time.monotonic()
        try:
            log = open_log(request.log_path, "ab")  # never through a link a run planted
        except OSError as exc:
            for fd in (info_read, info_write):
                if fd is not None:
                    os.close(fd)
            return RunResult(exit_code=None, wall_seconds=0.0, error=f"could not start: {exc}")
        with log:
            try:
                proc = subprocess.Popen(argv, cwd=request.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        pass_fds=(info_write,) if info_write is not None else ())
            except OSError as exc:
                if info_read is not None:
                    os.close(info_read)
                return RunResult(exit_code=None, wall_seconds=0.0, error=f"could not start: {exc}")
            finally:
                if info_write is not None:
                    os.close(info_write)
            # if Hive dies, the next start finds this file and kills what is left of the run
            try:
                write_log(pid_file, str(proc.pid))
            except LinkedLog:
                pass  # a link put there is the run's doing: its mark still finds what is left of it
            status, rusage, timed_out, cancelled = self._wait(proc, started + request.timeout, cancel)
        wall = time.monotonic() - started
        # leftovers the command started in the background die with it
        _kill_group(proc.pid, signal.SIGKILL)
        if info_read is not None:
            _await_gone(_sandbox_init(info_read))
        else:
            kill_marked(mark)
        pid_file.unlink(missing_ok=True)
        exit_code = os.waitstatus_to_exitcode(status)
        error = stop_reason(request.timeout, timed_out, cancelled)
        if not error and exit_code < 0:
            error = f"killed by signal {signal.Signals(-exit_code).name}"
        if error:
            append_log(request.log_path, f"\n[hive] {error}\n")
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


def hide_own_environment() -> bool:
    """Make this process non-dumpable: another process of the same user (a run outside the sandbox) can then not
    read its /proc environ (the keys Hive was started with) or its memory. Root can still; True when it took.
    """
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def _sandbox_init(info_read: int) -> int | None:
    """The host pid of the sandbox's init process, from the JSON bwrap wrote to its info pipe (then closed)."""
    with os.fdopen(info_read, "rb") as pipe:
        data = pipe.read()
    try:
        return int(json.loads(data or b"{}").get("child-pid") or 0) or None
    except ValueError:
        return None


def _await_gone(pid: int | None, limit: float = 30.0) -> None:
    """Wait until the sandbox's init, and so every process of its namespace, has exited."""
    if pid is None:
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            name, rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
            state = rest.split()[0]
        except (OSError, IndexError, ValueError):
            return
        # a pid the system gave to someone else after the sandbox ended is not ours to kill
        if state in ("Z", "X") or not name.endswith("(bwrap"):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.005)


def kill_marked(mark: str, prefix: bool = False) -> int:
    """SIGKILL every process whose environment carries the run mark `mark` (or one under it); return how many.

    Scanned until none is left, so a process forking while it is being killed is caught the next round.
    """
    killed = 0
    for _ in range(50):
        found = [pid for pid in _pids() if pid != os.getpid() and _mark_of(pid, mark, prefix)]
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return killed


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _mark_of(pid: int, mark: str, prefix: bool) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    needle = f"{RUN_MARK}={mark}".encode()
    return any(entry == needle or (prefix and entry.startswith(needle)) for entry in environ.split(b"\0"))


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
    # a setsid or nohup child of a run keeps the run's mark (its log's path) but not its group
    if kill_marked(f"{folder}/", prefix=True):
        killed += 1
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
