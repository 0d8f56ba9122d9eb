"""The docker executor against a real daemon: logs, exit codes, timeouts, no network, read-only harness, reaping."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from hive.errors import HiveError
from hive.executors import RunRequest, make_executor, scrubbed_environment
from hive.playbook import DockerExecutor as DockerConfig
from tests.conftest import PLAYBOOKS

PYTHON_IMAGE = "hive-test/python:3.11"
BUSYBOX_IMAGE = "hive-test/busybox:latest"


def _daemon_problem() -> str | None:
    if not os.environ.get("DOCKER_HOST"):
        return "docker not available: set DOCKER_HOST (eval \"$(scripts/services.sh env)\" after scripts/services.sh docker)"
    try:
        from hive.executors.docker import connect

        client = connect(timeout=10)
        client.images.get(PYTHON_IMAGE)
    except HiveError as exc:
        return f"docker daemon does not answer: {exc}"
    except Exception as exc:  # noqa: BLE001
        return f"image {PYTHON_IMAGE} missing (scripts/services.sh docker builds it): {exc}"
    return None


PROBLEM = _daemon_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")


@pytest.fixture(scope="module")
def campaign() -> str:
    return f"test-docker-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def executor(campaign):
    return make_executor(DockerConfig(kind="docker", image=PYTHON_IMAGE), campaign=campaign)


def _leftovers(executor, campaign: str) -> list:
    return executor.client.containers.list(all=True, filters={"label": f"hive.campaign={campaign}"})


def _request(tmp_path: Path, command: str, timeout: float = 30, env: dict | None = None) -> RunRequest:
    harness = tmp_path / "harness"
    harness.mkdir(exist_ok=True)
    (harness / "score.py").write_text("import os; print('---'); print('score: 1.5'); print(os.getcwd())\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return RunRequest(command=command, cwd=run_dir, log_path=tmp_path / "logs" / "seed-1.log", timeout=timeout,
                      env=scrubbed_environment({"HIVE_HARNESS": str(harness), **(env or {})}),
                      label="test/exp-1/seed-1", read_only={"harness": harness})


def test_output_reaches_the_log_and_exit_code_is_reported(tmp_path, executor, campaign):
    cmd = "python3 -c \"print('---'); print('loss: 0.25')\"; echo done > out.txt; echo \"home=$HOME path=$PATH\"; exit 3"
    result = executor.run(_request(tmp_path, cmd, env={"SECRET_TOKEN": "kept only if set explicitly"}))
    assert result.exit_code == 3 and not result.timed_out and not result.ok
    text = (tmp_path / "logs" / "seed-1.log").read_text()
    assert "loss: 0.25" in text
    assert "home=/tmp path=/usr/local/sbin:" in text  # the host venv's PATH means nothing inside
    assert (tmp_path / "run" / "out.txt").read_text() == "done\n"  # the run folder is mounted read-write
    assert _leftovers(executor, campaign) == []


def test_scorer_runs_from_the_read_only_harness(tmp_path, executor):
    request = _request(tmp_path, "")
    harness = request.read_only["harness"]
    # the scorer's command names the host path; inside it is the read-only mount
    request.command = (f"python3 {harness}/score.py && echo \"harness=$HIVE_HARNESS\" && "
                       f"(echo tampered > {harness}/score.py && echo WROTE || echo write-refused)")
    result = executor.run(request)
    assert result.ok, result
    text = request.log_path.read_text()
    assert "score: 1.5" in text and "/workspace" in text and "harness=/hive/harness" in text
    assert "write-refused" in text and "Read-only file system" in text and "WROTE" not in text
    assert "tampered" not in (harness / "score.py").read_text()


def test_no_network_inside(tmp_path, executor):
    # a server on the host's loopback: unreachable from a container without a network
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    probe = ("import socket\n"
             "print('interfaces:', sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n"
             "try:\n"
             f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')\n"
             "except OSError as e:\n"
             "    print('refused:', e)\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "probe.py").write_text(probe)
    try:
        result = executor.run(_request(tmp_path, "python3 probe.py"))
    finally:
        server.close()
    text = (tmp_path / "logs" / "seed-1.log").read_text()
    assert result.ok, text
    assert "interfaces: ['lo']" in text and "refused:" in text and "CONNECTED" not in text


def test_timeout_kills_and_removes_the_container(tmp_path, executor, campaign):
    started = time.monotonic()
    result = executor.run(_request(tmp_path, "echo begun; sleep 60", timeout=1.5))
    assert result.timed_out and not result.ok and "limit" in result.error
    assert time.monotonic() - started < 10
    text = (tmp_path / "logs" / "seed-1.log").read_text()
    assert "begun" in text and "[hive] killed after" in text
    assert _leftovers(executor, campaign) == []


def test_cancel_stops_the_run(tmp_path, executor, campaign):
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    result = executor.run(_request(tmp_path, "sleep 60"), cancel)
    assert result.cancelled and not result.timed_out and time.monotonic() - started < 10
    assert _leftovers(executor, campaign) == []


def test_memory_limit_is_the_containers(tmp_path, executor):
    request = _request(tmp_path, "python3 -c \"b = bytearray(300 * 2**20); print('alive')\"")
    request.memory_mb = 64
    result = executor.run(request)
    assert not result.ok and "out of memory" in result.error
    assert "alive" not in request.log_path.read_text()


def test_container_environment_drops_host_only_values_and_rewrites_paths():
    from hive.executors.docker import container_environment

    host = {"PATH": "/venv/bin:/usr/bin", "VIRTUAL_ENV": "/venv", "HOME": "/root", "PYTHONPATH": "/host/lib"}
    env = {**host, "PYTHONPATH": "/data/harness/lib", "HIVE_HARNESS": "/data/harness", "SEED": "3"}
    inside = container_environment(env, {"/data/harness": "/hive/harness"}, host=host)
    assert inside == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp",
                      "PYTHONPATH": "/hive/harness/lib", "HIVE_HARNESS": "/hive/harness", "SEED": "3"}


def test_reap_containers_removes_leftovers_of_this_campaign_only(tmp_path, executor, campaign):
    from hive.executors.docker import reap_containers

    logs = tmp_path / "logs"
    labels = {"hive.campaign": campaign, "hive.run": f"{campaign}/exp-9/seed-1", "hive.log": str(logs / "a.log")}
    mine = executor.client.containers.run(BUSYBOX_IMAGE, ["sleep", "60"], detach=True, network_mode="none",
                                          labels=labels)
    elsewhere = executor.client.containers.run(BUSYBOX_IMAGE, ["sleep", "60"], detach=True, network_mode="none",
                                               labels={**labels, "hive.log": "/elsewhere/logs/a.log"})
    try:
        assert reap_containers(campaign, logs) == 1
        assert [c.id for c in _leftovers(executor, campaign)] == [elsewhere.id]
        assert reap_containers(campaign) == 1
        assert _leftovers(executor, campaign) == []
    finally:
        for container in (mine, elsewhere):
            with contextlib.suppress(Exception):
                container.remove(force=True)


def test_missing_image_and_unreachable_daemon_are_one_line_errors(monkeypatch):
    with pytest.raises(HiveError, match=r"executor.image: image 'hive-test/none:0' is not on the docker daemon"):
        make_executor(DockerConfig(kind="docker", image="hive-test/none:0"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(HiveError, match="unreachable") as info:
        make_executor(DockerConfig(kind="docker", image=PYTHON_IMAGE))
    assert "\n" not in str(info.value)


def test_quickstart_campaign_completes_in_docker(hive, tmp_path, executor):
    # on simulated GPUs: the scheduler leases devices, but no device request reaches docker
    proc = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "4",
                "--simulate-gpus", "2", "-c", "run.resources.gpus=1",
                "-c", "executor.kind=docker", "-c", f"executor.image={PYTHON_IMAGE}", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished: max_experiments (4) reached" in proc.stderr
    assert "baseline val_loss" in proc.stderr
    from hive.store.home import open_store

    store = open_store(tmp_path / "workspaces", "quickstart")
    camp = store.campaign("quickstart")
    exps = store.experiments(camp.id)
    runs = [r for rs in store.runs_for([e.id for e in exps]).values() for r in rs]
    assert len(exps) == 4 and runs and all(r.status == "ok" for r in runs), [(r.status, r.error[:200]) for r in runs]
    assert {r.devices for r in runs} <= {"0", "1"}
    leftovers = executor.client.containers.list(all=True, filters={"label": "hive.campaign=quickstart"})
    logs = tmp_path / "workspaces" / "quickstart" / "logs"
    assert not [c for c in leftovers if c.labels.get("hive.log", "").startswith(str(logs))]


def test_containers_of_a_killed_hive_are_reaped_on_the_next_start(tmp_path, executor):
    import signal
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HIVE_DB_URL"}
    env["HIVE_HOME"] = str(tmp_path / "workspaces")
    args = [sys.executable, "-m", "hive", "start", str(PLAYBOOKS / "quickstart.yaml"), "--headless",
            "--campaign", "crashy", "-c", "executor.kind=docker", "-c", f"executor.image={PYTHON_IMAGE}"]
    hive = subprocess.Popen([*args, "-c", "run.command=sleep 60"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _leftovers(executor, "crashy") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _leftovers(executor, "crashy"), "no run container appeared"
    finally:
        hive.send_signal(signal.SIGKILL)
        hive.wait()
    assert _leftovers(executor, "crashy")  # a killed Hive cannot clean up after itself
    again = subprocess.run([*args, "--max-experiments", "1", "-c", "objective.confirm_seeds=1"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "left running by a previous Hive process" in again.stderr
    assert _leftovers(executor, "crashy") == []
