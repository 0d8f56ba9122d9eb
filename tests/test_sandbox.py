"""The sandbox, attacked as a run would attack it: each test is the real attack, run through the local executor."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hive.executors import LocalExecutor, RunRequest, scrubbed_environment
from hive.sandbox import Policy, Sandbox, gpu_nodes, probe, resolve, wrap
from tests.conftest import HEARTBEAT, wait_still

needs_bwrap = pytest.mark.skipif(probe() is not None, reason=f"bwrap cannot run here: {probe()}")


def _campaign(tmp_path: Path) -> tuple[Path, Path]:
    """A campaign-like folder with a store and a run folder inside it."""
    root = tmp_path / "workspaces" / "c"
    run_dir = root / "runs" / "exp-2" / "seed-1"
    run_dir.mkdir(parents=True)
    (root / "hive.db").write_text("the store")
    (root / "logs").mkdir()
    return root, run_dir


def _run(tmp_path: Path, command: str, mode: str = "bwrap", timeout: float = 20, **fields) -> tuple[str, object]:
    root, run_dir = _campaign(tmp_path) if not (tmp_path / "workspaces").exists() else (
        tmp_path / "workspaces" / "c", tmp_path / "workspaces" / "c" / "runs" / "exp-2" / "seed-1")
    log = root / "logs" / "seed-1.log"
    request = RunRequest(command=command, cwd=run_dir, log_path=log, timeout=timeout, env=scrubbed_environment(),
                         hidden=[root], **fields)
    result = LocalExecutor(kill_grace=0.5, sandbox=mode).run(request)
    return log.read_text(), result


@needs_bwrap
def test_a_setsid_daemon_nohup_and_double_fork_all_die_with_the_run(tmp_path):
    _, run_dir = _campaign(tmp_path)
    (run_dir / "beat.py").write_text(HEARTBEAT)
    (run_dir / "attack.py").write_text(
        "import os, subprocess, sys\n"
        "subprocess.Popen([sys.executable, 'beat.py', 'setsid.beat'], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execv(sys.executable, [sys.executable, 'beat.py', 'double.beat'])\n"
        "    os._exit(0)\n")
    log, result = _run(tmp_path, f"{sys.executable} attack.py; nohup {sys.executable} beat.py nohup.beat & sleep 0.3")
    assert result.exit_code == 0, log
    for beat in ("setsid.beat", "double.beat", "nohup.beat"):
        assert (run_dir / beat).exists(), f"{beat} never started: {log}"
        assert wait_still(run_dir / beat, limit=2), f"the {beat.split('.')[0]} process outlived its run"


@needs_bwrap
def test_no_secret_of_the_starting_shell_is_readable(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE-KEY-9f3a")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-7c1e")
    monkeypatch.setenv("HIVE_SECRET", "hive-secret-44b2")
    # the parent's environment through /proc, every process's, and files under $HOME by path
    log, result = _run(tmp_path, f"cat /proc/$PPID/environ /proc/[0-9]*/environ 2>&1 | tr '\\0' '\\n'; "
                                 f"cat {home}/.ssh/id_rsa ~/.ssh/id_rsa 2>&1; ls /proc | grep -c '^[0-9]'; echo end")
    assert result.exit_code == 0 and "end" in log
    for secret in ("sk-test-7c1e", "hive-secret-44b2", "PRIVATE-KEY-9f3a"):
        assert secret not in log
    assert "No such file or directory" in log
    processes = int(log.strip().splitlines()[-2])
    assert processes <= 6, f"the run saw {processes} processes: it should see only its own"


@needs_bwrap
def test_the_users_home_slash_home_and_slash_root_are_empty_inside(tmp_path):
    """The real home folders, not a stand-in under /tmp: a file planted in each is not there for the run."""
    planted = []
    for folder in {Path.home(), Path("/root"), Path("/home")}:
        marker = folder / f".hive-sandbox-probe-{os.getpid()}"
        try:
            marker.write_text("PRIVATE-9d41")
        except OSError:
            continue  # not ours to write (a non-root runner and /root): nothing to plant there
        planted.append(marker)
    if not planted:
        pytest.skip("no home folder here is writable to plant a probe in")
    try:
        log, result = _run(tmp_path, "; ".join(f"cat {m} 2>&1; echo listing: $(ls -A {m.parent})" for m in planted)
                           + "; echo end")
    finally:
        for marker in planted:
            marker.unlink()
    assert result.exit_code == 0 and "end" in log
    assert "PRIVATE-9d41" not in log and log.count("No such file or directory") == len(planted), log
    # empty but for the way to the interpreter Hive runs (a pyenv under /root, say), which stays readable
    interpreter = Path(sys.base_prefix).resolve()
    listings = [line.split(":", 1)[1].split() for line in log.splitlines() if line.startswith("listing:")]
    for marker, seen in zip(planted, listings):
        way = ([interpreter.relative_to(marker.parent.resolve()).parts[0]]
               if interpreter.is_relative_to(marker.parent.resolve()) else [])
        assert seen == way, f"{marker.parent} is not empty inside: {seen}"


@needs_bwrap
def test_nothing_outside_the_run_folder_changes_and_the_campaign_folder_is_not_there(tmp_path):
    root, run_dir = _campaign(tmp_path)
    outside = tmp_path / "user-file.txt"
    outside.write_text("mine")
    other = root / "runs" / "exp-1" / "seed-1"  # another run's folder
    other.mkdir(parents=True)
    attack = (f"echo forged > {root}/hive.db; ls {root}/hive.db; rm -f {outside}; echo x > {outside}; "
              f"echo x > {other}/planted; "
              f"echo x > /etc/hive-was-here; mount -o remount,rw / ; echo x > {Path(sys.executable).parent}/evil; "
              "echo ok > own.txt; echo done")
    log, result = _run(tmp_path, attack)
    assert "done" in log
    assert (root / "hive.db").read_text() == "the store" and outside.read_text() == "mine"
    assert not (other / "planted").exists(), "a run wrote into another run's folder"
    assert not Path("/etc/hive-was-here").exists() and not (Path(sys.executable).parent / "evil").exists()
    assert f"ls: cannot access '{root}/hive.db'" in log, "the store must not even be visible"
    assert (run_dir / "own.txt").read_text() == "ok\n"


@needs_bwrap
def test_no_network_unless_the_playbook_allows_it(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    probe_cmd = (f"{sys.executable} -c \"import socket; s = socket.create_connection(('127.0.0.1', {port}), 2); "
                 f"print('connected')\"")
    try:
        log, _ = _run(tmp_path, probe_cmd)
        assert "connected" not in log and ("refused" in log or "unreachable" in log.lower())
        log, result = _run(tmp_path, probe_cmd, network=True)
        assert "connected" in log and result.exit_code == 0
    finally:
        server.close()


@needs_bwrap
def test_a_service_socket_under_tmp_is_out_of_reach(tmp_path):
    # a docker or database socket: reachable through the filesystem even with the network off, unless hidden
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    try:
        log, _ = _run(tmp_path, f"{sys.executable} -c \"import socket; s = socket.socket(socket.AF_UNIX); "
                                f"s.connect({str(path)!r}); print('connected')\"")
        assert "connected" not in log and "No such file or directory" in log
    finally:
        server.close()


@needs_bwrap
def test_only_the_leased_gpus_device_nodes_are_visible(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm"):
        (dev / name).write_text("")
    nodes, visible = gpu_nodes([1], dev=dev)
    assert {n.name for n in nodes} == {"nvidia1", "nvidiactl", "nvidia-uvm"}
    assert visible == "0", "without NVML's UUIDs the one visible GPU is CUDA's device 0"
    policy = Policy(writable=(tmp_path,), devices=nodes)
    proc = subprocess.run(wrap(["sh", "-c", "ls /dev"], policy, tmp_path), capture_output=True, text=True)
    seen = set(proc.stdout.split())
    assert {"nvidia1", "nvidiactl", "nvidia-uvm", "null"} <= seen and not {"nvidia0", "nvidia2"} & seen
    # a CPU run gets no GPU node at all
    proc = subprocess.run(wrap(["sh", "-c", "ls /dev"], Policy(writable=(tmp_path,)), tmp_path),
                          capture_output=True, text=True)
    assert not [n for n in proc.stdout.split() if n.startswith("nvidia")]


def test_a_leased_run_sees_only_its_gpus_in_cuda_visible_devices_in_either_mode(tmp_path, sandbox_mode):
    """Mode none's only GPU limit is CUDA_VISIBLE_DEVICES naming the leased GPUs (NVML's numbering, so the
    device order is set to the bus order NVML uses); under bwrap the variable is renumbered to what is visible."""
    log, result = _run(tmp_path, "echo visible=$CUDA_VISIBLE_DEVICES order=$CUDA_DEVICE_ORDER", mode=sandbox_mode,
                       devices=[1, 3])
    assert result.exit_code == 0, log
    if sandbox_mode == "none":
        assert "visible=1,3 order=PCI_BUS_ID" in log
    else:  # no NVML here: the two visible GPUs are CUDA's 0 and 1
        assert "visible=0,1 order=PCI_BUS_ID" in log
    log, result = _run(tmp_path, "echo visible=[$CUDA_VISIBLE_DEVICES]", mode=sandbox_mode)
    assert "visible=[]" in log, "a CPU run is named no GPU"


@needs_bwrap
def test_the_interpreter_and_a_read_only_folder_inside_a_hidden_one_stay_readable(tmp_path):
    root, run_dir = _campaign(tmp_path)
    shared = root / "repo" / "data"
    shared.mkdir(parents=True)
    (shared / "corpus.txt").write_text("shared data")
    log, result = _run(tmp_path, f"cat {shared}/corpus.txt; echo x >> {shared}/corpus.txt; "
                                 f"{sys.executable} -c 'import sys; print(sys.version_info[0])'",
                       read_only={"repo": root / "repo"})
    assert "shared data" in log and "Read-only file system" in log and "3" in log.split()
    assert (shared / "corpus.txt").read_text() == "shared data"


@needs_bwrap
def test_a_run_gets_a_private_writable_home_and_tmp(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    log, result = _run(tmp_path, "echo cache > ~/.cache-file && echo tmp > /tmp/t && ls -A ~ && echo $TMPDIR")
    assert result.exit_code == 0, log
    assert ".cache-file" in log and "/tmp" in log
    assert not (home / ".cache-file").exists(), "the run's home is its own, not the user's"


def test_none_mode_kills_what_keeps_the_run_mark_and_says_what_it_cannot_stop(tmp_path):
    """Without bwrap a setsid child is found by the run's mark; one that clears its environment escapes."""
    _, run_dir = _campaign(tmp_path)
    (run_dir / "beat.py").write_text(HEARTBEAT)
    (run_dir / "attack.py").write_text(
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, 'beat.py', 'marked.beat'], start_new_session=True)\n"
        "p = subprocess.Popen(['/usr/bin/env', '-i', sys.executable, 'beat.py', 'cleared.beat'], start_new_session=True)\n"
        "open('cleared.pid', 'w').write(str(p.pid))\n")
    log, result = _run(tmp_path, f"{sys.executable} attack.py; sleep 0.3", mode="none")
    assert result.exit_code == 0, log
    assert wait_still(run_dir / "marked.beat", limit=2), "a setsid child keeping the mark must die with its run"
    try:
        assert not wait_still(run_dir / "cleared.beat", quiet=0.5, limit=1.5), \
            "none mode cannot stop a detached process with a cleared environment: the README says so"
    finally:
        os.kill(int((run_dir / "cleared.pid").read_text()), 9)  # the one process this test let escape


def test_sandbox_modes_resolve_by_name():
    assert resolve("none") == "none"
    assert resolve("auto") in ("bwrap", "none")
    with pytest.raises(Exception, match="executor.sandbox"):
        resolve("docker")
    box = Sandbox("none")
    assert box.argv(["true"], Policy(), Path("/")) == ["true"] and not box.enforced
