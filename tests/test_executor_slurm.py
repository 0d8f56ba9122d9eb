"""The slurm executor against a real single-node cluster: logs, exit codes, timeouts cancel the job, reaping."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hive.executors import RunRequest, make_executor, scrubbed_environment
from hive.playbook import SlurmExecutor as SlurmConfig
from tests.conftest import PLAYBOOKS, wait_still


def _cluster_problem() -> str | None:
    if not os.environ.get("SLURM_CONF"):
        return "slurm not available: set SLURM_CONF (eval \"$(scripts/services.sh env)\" after scripts/services.sh slurm)"
    from hive.executors.slurm import slurm_available

    return slurm_available()


PROBLEM = _cluster_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")


@pytest.fixture(scope="module")
def executor():
    return make_executor(SlurmConfig(kind="slurm", poll_seconds=0.2), campaign="test-slurm")


def _queued(name_prefix: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.split(" ", 1)[-1].startswith(name_prefix)]


def _request(tmp_path: Path, command: str, timeout: float = 30, label: str = "test-slurm/exp-1/seed-1",
             env: dict | None = None) -> RunRequest:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return RunRequest(command=command, cwd=run_dir, log_path=tmp_path / "logs" / "seed-1.log", timeout=timeout,
                      env=scrubbed_environment(env or {}, host={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-x"}),
                      label=label)


def test_output_reaches_the_log_and_exit_code_is_reported(tmp_path, executor):
    cmd = ("python3 -c \"print('---'); print('loss: 0.25')\"; echo \"quoted=$QUOTED\"; pwd > where.txt; "
           "env > env.txt; exit 3")
    result = executor.run(_request(tmp_path, cmd, env={"QUOTED": "it's $HOME \"x\""}))
    assert result.exit_code == 3 and not result.timed_out and not result.ok
    text = (tmp_path / "logs" / "seed-1.log").read_text()
    assert "loss: 0.25" in text and "quoted=it's $HOME \"x\"" in text
    assert (tmp_path / "run" / "where.txt").read_text().strip() == str(tmp_path / "run")
    env = (tmp_path / "run" / "env.txt").read_text()
    assert "OPENAI_API_KEY" not in env and "SLURM_JOB_ID=" in env and "OMP_NUM_THREADS=1" in env
    # the job-id and status files are gone once the run is recorded
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["seed-1.log"]
    ok = executor.run(_request(tmp_path, "true"))
    assert ok.ok and ok.exit_code == 0


def test_timeout_cancels_the_job(tmp_path, executor):
    label = f"test-slurm/timeout-{os.getpid()}"
    started = time.monotonic()
    result = executor.run(_request(tmp_path, "echo begun; sleep 60", timeout=1.5, label=label))
    assert result.timed_out and not result.ok and "limit" in result.error
    assert time.monotonic() - started < 20
    assert "begun" in (tmp_path / "logs" / "seed-1.log").read_text()
    assert _queued(f"hive-{label}") == []


def test_cancel_stops_the_job(tmp_path, executor):
    label = f"test-slurm/cancel-{os.getpid()}"
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    result = executor.run(_request(tmp_path, "sleep 60", label=label), cancel)
    assert result.cancelled and not result.timed_out
    assert _queued(f"hive-{label}") == []


def test_reap_slurm_jobs_cancels_leftovers(tmp_path):
    from hive.executors.slurm import job_state, reap_slurm_jobs

    name = f"hive-test-reap-{os.getpid()}"
    job = subprocess.run(["sbatch", "--parsable", f"--job-name={name}", "--output=/dev/null", "--time=1",
                          "--wrap", "sleep 60"], capture_output=True, text=True, check=True).stdout.strip()
    # what a killed Hive leaves beside a run's log
    (tmp_path / "logs" / "exp-3").mkdir(parents=True)
    (tmp_path / "logs" / "exp-3" / "seed-1.log.slurm").write_text(job)
    assert job_state(job) in ("PENDING", "RUNNING", "CONFIGURING")
    assert reap_slurm_jobs(tmp_path / "logs") == 1
    assert _queued(name) == []
    assert not (tmp_path / "logs" / "exp-3" / "seed-1.log.slurm").exists()


@pytest.mark.parametrize("mode", ["auto", "none"])
def test_a_job_runs_in_the_sandbox_where_the_node_has_bwrap(tmp_path, mode):
    """The attack a local run is refused, made as a Slurm job: read the campaign's store, write a user's file, leave
    a setsid daemon behind. Under the sandbox (auto, on this node) each fails; with none each succeeds (the
    control that shows the test can fail)."""
    from hive.sandbox import probe

    if mode == "auto" and probe() is not None:
        pytest.skip(f"bwrap cannot run on this node: {probe()}")
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    (campaign / "hive.db").write_text("the store")
    victim = tmp_path / "user-file.txt"
    victim.write_text("mine")
    beat = tmp_path / "run" / "beat"
    attack = (f"cat {campaign}/hive.db; echo x > {victim}; "
              f"setsid sh -c 'while true; do echo . >> {beat}; sleep 0.1; done' > /dev/null 2>&1 & "
              "sleep 0.5; ls /proc | grep -c '^[0-9]'; echo done")
    request = _request(tmp_path, attack, label=f"test-slurm/sandbox-{mode}-{os.getpid()}")
    request.hidden = [campaign]
    executor = make_executor(SlurmConfig(kind="slurm", poll_seconds=0.2, sandbox=mode), campaign="test-slurm")
    result = executor.run(request)
    log = (tmp_path / "logs" / "seed-1.log").read_text()
    assert result.exit_code == 0 and "done" in log, log
    assert beat.exists(), f"the daemon never started: {log}"
    if mode == "auto":
        assert "NOT sandboxed" not in log and "the store" not in log and victim.read_text() == "mine"
        assert wait_still(beat), "the setsid daemon outlived its job"
        assert int(log.strip().splitlines()[-2]) <= 6, "the job saw processes other than its own"
    else:
        assert "the store" in log and victim.read_text() == "x\n"
        assert not wait_still(beat, limit=1.5), "the control's daemon should still be beating"
        subprocess.run(["pkill", "-f", f"echo . >> {beat}"], check=False)


def test_sbatch_arguments(tmp_path):
    from hive.executors.slurm import SlurmExecutor

    config = SlurmConfig(kind="slurm", partition="debug", cpus_per_task=2, extra_args=["--nice=10"])
    args = SlurmExecutor(config, campaign="c", gpus=2)._arguments(_request(tmp_path, "true", timeout=61))
    assert "--partition=debug" in args and "--cpus-per-task=2" in args and "--time=2" in args
    assert "--gres=gpu:2" in args and args[-1] == "--nice=10"
    assert f"--output={tmp_path / 'logs' / 'seed-1.log'}" in args
    assert "--job-name=hive-test-slurm/exp-1/seed-1" in args


def test_quickstart_campaign_completes_on_slurm(hive, tmp_path):
    proc = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "3",
                "-c", "executor.kind=slurm", "-c", "executor.poll_seconds=0.2", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished: max_experiments (3) reached" in proc.stderr
    from hive.store.home import open_store

    store = open_store(tmp_path / "workspaces", "quickstart")
    camp = store.campaign("quickstart")
    exps = store.experiments(camp.id)
    runs = [r for rs in store.runs_for([e.id for e in exps]).values() for r in rs]
    assert len(exps) == 3 and runs and all(r.status == "ok" for r in runs), [(r.status, r.error[:200]) for r in runs]
    assert not list((tmp_path / "workspaces" / "quickstart" / "logs").rglob("*.log.slurm"))
