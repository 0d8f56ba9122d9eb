"""A campaign's state never resets silently (a lost store or repo is refused; --restart moves it aside), nor sticks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hive.cli import main
from tests.conftest import run_hive

TRAIN = "import os\nX = 0.5\nprint('---')\nprint(f\"val_loss: {(X - 0.3) ** 2 + int(os.environ['SEED']) * 1e-3}\")\n"
PLAYBOOK = """\
name: tiny
source: src
editable: [train.py]
run: {command: python train.py, timeout: 30, seeds: [1, 2]}
objective: {metric: val_loss, confirm_seeds: 1, alpha: 0.5}
knobs: [{name: X, type: float, low: 0, high: 1, bind: {file: train.py, assign: X}}]
budget: {max_experiments: 2}
"""


def write_tiny(folder: Path, playbook: str = PLAYBOOK, train: str = TRAIN) -> Path:
    """A seconds-long campaign: a source folder and its playbook (tiny.yaml)."""
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "train.py").write_text(train)
    (folder / "tiny.yaml").write_text(playbook)
    return folder / "tiny.yaml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A folder with the tiny playbook and its finished two-experiment campaign (copied by each test)."""
    folder = tmp_path_factory.mktemp("tiny")
    write_tiny(folder)
    result = run_hive("start", "tiny.yaml", "--headless", cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


@pytest.fixture
def campaign(finished, tmp_path) -> Path:
    """A private copy of the finished campaign; returns the campaign folder (workspaces/tiny)."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True, symlinks=True)
    return tmp_path / "workspaces" / "tiny"


def branches(repo: Path) -> str:
    return subprocess.run(["git", "for-each-ref", "--format=%(refname) %(objectname)"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def start(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_hive("start", "tiny.yaml", "--headless", *args, cwd=folder, env=env)


def start_here(folder: Path, capsys, *args: str) -> subprocess.CompletedProcess:
    """`hive start` in this process (the real CLI's main, without paying its imports again): exit code and output."""
    capsys.readouterr()
    code = main(["start", str(folder / "tiny.yaml"), "--headless", "--workspaces", str(folder / "workspaces"), *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess([], code, out.out, out.err)


def refused(result: subprocess.CompletedProcess, *names: str) -> str:
    """Assert a one-line refusal with exit 2 that names each of `names` and the way out."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "internal error" not in lines[0] and "created" not in result.stderr
    for name in names + ("--restart",):
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_a_lost_store_is_refused_and_the_branches_stay(campaign, damage, capsys):
    repo, db = campaign / "repo", campaign / "hive.db"
    before = branches(repo)
    assert "exp-2" in before
    for extra in campaign.glob("hive.db-*"):
        extra.unlink()
    if damage == "truncate":
        db.write_bytes(b"")
    elif damage == "garbage":
        db.write_bytes(b"not a database at all\n" * 100)
    else:
        db.unlink()
    refused(start_here(campaign.parents[1], capsys), str(db))
    refused(start_here(campaign.parents[1], capsys), str(db))  # a second try is refused just the same
    assert branches(repo) == before
    assert not (campaign / "logs" / "exp-3").exists()
    if damage == "delete":
        assert not db.exists()  # the refusal made no new store
    if damage == "garbage":
        assert main(["status", "tiny", "--workspaces", str(campaign.parent)]) == 2
        assert str(db) in capsys.readouterr().err


def test_a_lost_repo_is_refused_not_rebuilt(campaign, capsys):
    shutil.rmtree(campaign / "repo")
    refused(start_here(campaign.parents[1], capsys), str(campaign / "repo"), "2 experiment(s)")
    assert not (campaign / "repo").exists()


def test_restart_moves_the_old_campaign_aside_and_starts_over(campaign):
    folder = campaign.parents[1]
    campaign.joinpath("hive.db").write_bytes(b"")
    old_branches = branches(campaign / "repo")
    result = start(folder, "--restart", "--max-experiments", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    [aside] = (folder / "workspaces" / ".restarted").iterdir()
    assert aside.name.startswith("tiny-")
    assert f"restart: moved {campaign} to {aside}" in result.stderr
    assert branches(aside / "repo") == old_branches  # the old campaign is kept whole
    assert "created tiny" in result.stderr and "experiments: 1 " in result.stdout
    assert "exp-2" not in branches(campaign / "repo")
    # the moved-aside folder is not a campaign of its own
    assert run_hive("status", "--json", cwd=folder).returncode == 0


def test_restart_renames_the_campaign_in_a_shared_store(finished, tmp_path, capsys, monkeypatch):
    shutil.copy(finished / "tiny.yaml", tmp_path)
    shutil.copytree(finished / "src", tmp_path / "src")
    monkeypatch.setenv("HIVE_DB_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    assert start_here(tmp_path, capsys, "--max-experiments", "1").returncode == 0
    shutil.rmtree(tmp_path / "workspaces" / "tiny" / "repo")
    refused(start_here(tmp_path, capsys), "repo", "1 experiment(s)")
    result = start_here(tmp_path, capsys, "--restart", "--max-experiments", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "renamed campaign 'tiny' in the store to tiny.restarted-" in result.stderr
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        names = [r[0] for r in conn.execute("select name from campaign order by id")]
    assert names[0].startswith("tiny.restarted-") and names[1] == "tiny"


def test_a_failed_baseline_runs_again_once_the_run_command_is_fixed(tmp_path, capsys):
    write_tiny(tmp_path, PLAYBOOK.replace("python train.py", "python trian.py"))
    first = start_here(tmp_path, capsys)
    assert first.returncode == 1 and "the baseline failed" in first.stderr, first.stderr[-2000:]
    again = start_here(tmp_path, capsys)  # nothing changed: the same failure, and how to retry
    assert again.returncode == 1
    assert "runs it again once the playbook's run, score or setup changes" in again.stderr.strip().splitlines()[-1]
    assert "retrying" not in again.stderr
    write_tiny(tmp_path)
    fixed = start_here(tmp_path, capsys, "--max-experiments", "1")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert "retrying the failed baseline: the playbook's run changed" in fixed.stderr
    with sqlite3.connect(tmp_path / "workspaces" / "tiny" / "hive.db") as conn:
        verdict, seeds = conn.execute("select verdict, n_seeds from experiment where number = 1").fetchone()
        statuses = [r[0] for r in conn.execute("select status from run")]
    assert (verdict, seeds, statuses) == ("baseline", 1, ["ok"])


def test_status_of_a_killed_driver_is_not_running(tmp_path, capsys):
    write_tiny(tmp_path, train="import time\nX = 0.5\ntime.sleep(60)\n")
    env = {**os.environ, "HIVE_HOME": str(tmp_path / "workspaces")}
    env.pop("HIVE_DB_URL", None)
    driver = subprocess.Popen([sys.executable, "-m", "hive", "start", "tiny.yaml", "--headless"], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def status() -> tuple[int, str]:
        return main(["status", "tiny", "--json", "--workspaces", str(tmp_path / "workspaces")]), capsys.readouterr().out

    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "workspaces" / "tiny" / "hive.db").exists() or \
                json.loads(status()[1] or "{}").get("in_flight") in (None, []):
            assert time.monotonic() < deadline and driver.poll() is None, driver.stderr.read() if driver.poll() else ""
            time.sleep(0.3)
        assert json.loads(status()[1])["status"] == "running"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver, as a crash or `kill -9` would end it
        driver.wait()
        for pid_file in (tmp_path / "workspaces").rglob("*.log.pid"):  # its run, without a sandbox, lives on
            with contextlib.suppress(ValueError, OSError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    code, out = status()
    assert code == 0 and json.loads(out)["status"] == "stopped"
    assert main(["status", "tiny", "--workspaces", str(tmp_path / "workspaces")]) == 0
    text = capsys.readouterr().out
    assert "[running]" not in text and text.startswith("campaign tiny [stopped]")
    assert "paused (resumes on `hive start`): exp-1 (stopped while running)" in text


def test_a_knob_that_changes_kind_on_resume_is_refused(campaign, capsys, tmp_path):
    folder = campaign.parents[1]
    for change in (["-c", "knobs.0.type=int"], ["-c", "knobs.0.type=int", "--accept-changes"],
                   ["-c", "knobs.0.type=categorical", "-c", "knobs.0.choices=[0.1,0.5]"]):
        line = refused(start_here(folder, capsys, *change), "knobs.0", "'X'", "as float")
        assert "--accept-changes" in line
    assert not (campaign / "logs" / "exp-3").exists()
    # a categorical knob's choices are its kind too: the sampler cannot change them mid-search
    write_tiny(tmp_path / "cat", PLAYBOOK.replace("type: float, low: 0, high: 1", "type: categorical, choices: [0.1, 0.5]"))
    assert start_here(tmp_path / "cat", capsys, "--max-experiments", "1").returncode == 0
    refused(start_here(tmp_path / "cat", capsys, "-c", "knobs.0.choices=[0.1,0.2]"), "with choices [0.1, 0.5]")


DAEMON_TRAIN = '''import os, subprocess, sys, time
X = 0.5
FLAG, BEAT = {flag!r}, {beat!r}
if os.path.exists(FLAG):  # the first start: leave a daemon that keeps the run's mark, then hang
    subprocess.Popen([sys.executable, "-c", "import time\\nwhile True:\\n    open(%r, 'a').write('.')\\n"
                      "    time.sleep(0.1)" % BEAT], start_new_session=True, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    time.sleep(60)
print('---')
print(f"val_loss: {{(X - 0.3) ** 2 + int(os.environ['SEED']) * 1e-3}}")
'''


def test_a_daemon_a_killed_hive_left_behind_is_reaped_at_the_next_start(tmp_path):
    """Mode none, for real: a run leaves a `start_new_session` daemon (it keeps the run's HIVE_RUN mark) and hangs;
    Hive is killed with SIGKILL; the daemon lives on; the next `hive start` kills it before it resumes."""
    from tests.conftest import wait_still

    flag, beat = tmp_path / "hang", tmp_path / "beat"
    flag.write_text("")
    write_tiny(tmp_path, PLAYBOOK + "executor: {kind: local, sandbox: none}\n",
               DAEMON_TRAIN.format(flag=str(flag), beat=str(beat)))
    env = {**os.environ, "HIVE_HOME": str(tmp_path / "workspaces")}
    env.pop("HIVE_DB_URL", None)
    driver = subprocess.Popen([sys.executable, "-m", "hive", "start", "tiny.yaml", "--headless"], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not beat.exists():
            assert time.monotonic() < deadline and driver.poll() is None, driver.stderr.read() if driver.poll() else ""
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGKILL)  # Hive, as a crash or `kill -9` ends it; its run is a group apart
        driver.wait()
        assert not wait_still(beat, limit=1.5), "the daemon should outlive the killed Hive"
        flag.unlink()  # the resumed runs finish at once
        again = run_hive("start", "tiny.yaml", "--headless", cwd=tmp_path, timeout=120)
        assert again.returncode == 0, again.stderr[-2000:]
        assert wait_still(beat), "the daemon the killed Hive left is still running after the next start"
        # killed by the start itself, before anything ran again (the run of its seed would also have killed it)
        assert "run(s) left running by a previous Hive process" in again.stderr, again.stderr[-2000:]
        assert "finished" in again.stderr
    finally:
        subprocess.run(["pkill", "-f", f"open({str(beat)!r}"], check=False)
        for pid_file in (tmp_path / "workspaces").rglob("*.log.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
