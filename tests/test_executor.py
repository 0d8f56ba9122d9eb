"""The local executor: timeouts kill the whole tree, the environment is scrubbed, the log is streamed."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from hive.executors import LocalExecutor, RunRequest, scrubbed_environment
from tests.conftest import HEARTBEAT, wait_still


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def request(tmp_path: Path, command: str, timeout: float = 10, env: dict | None = None) -> RunRequest:
    return RunRequest(command=command, cwd=tmp_path, log_path=tmp_path / "logs" / "run.log", timeout=timeout,
                      env=scrubbed_environment(env or {}))


def test_exit_code_log_and_peak_memory(tmp_path, sandbox_mode):
    cmd = f"{sys.executable} -c \"b = bytearray(80 * 2**20); print('---'); print('x: 1')\"; echo done; exit 3"
    result = LocalExecutor(sandbox=sandbox_mode).run(request(tmp_path, cmd))
    assert result.exit_code == 3 and not result.timed_out
    assert result.peak_rss_mb >= 80
    text = (tmp_path / "logs" / "run.log").read_text()
    assert "x: 1" in text and "done" in text


def test_timeout_kills_the_whole_process_tree(tmp_path, sandbox_mode):
    # the shell starts a child that starts a grandchild; both keep writing a heartbeat until killed
    (tmp_path / "beat.py").write_text(HEARTBEAT)
    (tmp_path / "tree.py").write_text(
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, 'beat.py', 'child.beat'])\n"
        "exec(open('beat.py').read().replace('sys.argv[1]', \"'parent.beat'\"))\n")
    started = time.monotonic()
    result = LocalExecutor(kill_grace=1, sandbox=sandbox_mode).run(
        request(tmp_path, f"{sys.executable} tree.py & wait", timeout=1.5))
    assert result.timed_out and "limit" in result.error
    assert time.monotonic() - started < 10
    for beat in ("parent.beat", "child.beat"):
        assert (tmp_path / beat).exists() and wait_still(tmp_path / beat, limit=2), f"{beat}: survived the timeout"
    assert "[hive] killed after" in (tmp_path / "logs" / "run.log").read_text()


def test_sigterm_ignored_gets_sigkill(tmp_path, sandbox_mode):
    cmd = f"{sys.executable} -c \"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)\""
    started = time.monotonic()
    result = LocalExecutor(kill_grace=0.5, sandbox=sandbox_mode).run(request(tmp_path, cmd, timeout=0.5))
    assert result.timed_out and time.monotonic() - started < 5


def test_background_leftovers_die_with_the_run(tmp_path, sandbox_mode):
    (tmp_path / "beat.py").write_text(HEARTBEAT)
    cmd = f"({sys.executable} beat.py bg.beat &); sleep 0.3; exit 0"
    result = LocalExecutor(sandbox=sandbox_mode).run(request(tmp_path, cmd))
    assert result.exit_code == 0
    assert (tmp_path / "bg.beat").exists() and wait_still(tmp_path / "bg.beat", limit=2)


def test_cancel_stops_a_run(tmp_path, sandbox_mode):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    result = LocalExecutor(kill_grace=0.5, sandbox=sandbox_mode).run(request(tmp_path, "sleep 30"), cancel)
    assert result.cancelled and not result.timed_out and result.wall_seconds < 5


def test_environment_is_scrubbed(tmp_path, monkeypatch, sandbox_mode):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("HIVE_DB_URL", "postgresql://u:pw@h/db")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp")
    monkeypatch.setenv("MY_SERVICE_PASSWORD", "pw")
    monkeypatch.setenv("RANDOM_HOST_VAR", "x")
    env = scrubbed_environment({"SEED": "3"}, pass_env=["RANDOM_HOST_VAR", "GITHUB_TOKEN"])
    LocalExecutor(sandbox=sandbox_mode).run(RunRequest(command="env", cwd=tmp_path, log_path=tmp_path / "env.log",
                                                       timeout=10, env=env))
    seen = (tmp_path / "env.log").read_text()
    for secret in ("sk-secret", "sk-ant", "postgresql://", "ghp", "MY_SERVICE_PASSWORD"):
        assert secret not in seen
    assert "SEED=3" in seen and "RANDOM_HOST_VAR=x" in seen and "OMP_NUM_THREADS=1" in seen
    assert str(Path(sys.executable).parent) in seen


def test_missing_cwd_is_a_failed_start_not_a_crash(tmp_path, sandbox_mode):
    result = LocalExecutor(sandbox=sandbox_mode).run(RunRequest(command="true", cwd=tmp_path / "nope", log_path=tmp_path / "l.log",
                                            timeout=5, env=scrubbed_environment()))
    assert result.exit_code is None and "could not start" in result.error


def test_reap_orphans_kills_workers_whose_leader_is_gone(tmp_path):
    import signal
    import subprocess

    from hive.executors.local import reap_orphans

    env = scrubbed_environment({"HIVE_RUN": "c/exp-1/seed-1"})
    # a leader that starts a worker in its own group, then dies: like a killed torchrun
    leader = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
                               "open('worker.pid', 'w').write(str(w.pid)); time.sleep(120)"],
                              cwd=tmp_path, env=env, start_new_session=True)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "seed-1.log.pid").write_text(str(leader.pid))
    deadline = time.monotonic() + 10
    while not (tmp_path / "worker.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int((tmp_path / "worker.pid").read_text())
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait()
    assert _alive(worker)
    assert reap_orphans(tmp_path / "logs") == 1
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker) and not (tmp_path / "logs" / "seed-1.log.pid").exists()
