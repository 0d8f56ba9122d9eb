"""The command line end to end on the quickstart playbook: start, resume, views, and user mistakes."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import PLAYBOOKS, run_hive

QUICK = str(PLAYBOOKS / "quickstart.yaml")


@pytest.fixture(scope="module")
def baseline_only(tmp_path_factory):
    """A folder holding a quickstart campaign that has run its baseline and nothing else, made once for the module."""
    root = tmp_path_factory.mktemp("baseline_only")
    first = run_hive("start", QUICK, "--headless", "--max-experiments", "1", cwd=root)
    return root, first


def test_help_lists_commands(hive):
    out = hive("--help").stdout
    for command in ("start", "status", "leaderboard", "show", "playbook"):
        assert command in out


def test_start_records_baseline_and_resumes_without_duplicates(baseline_only):
    tmp_path, first = baseline_only

    def hive(*args: str):  # noqa: ANN202
        return run_hive(*args, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert "baseline val_loss" in first.stderr
    board = json.loads(hive("leaderboard", "quickstart", "--json").stdout)
    assert board["metric"] == "val_loss" and board["direction"] == "minimize" and board["best"] == 1
    rows = board["rows"]
    assert len(rows) == 1 and rows[0]["verdict"] == "baseline" and rows[0]["metric_mean"] > 0
    assert rows[0]["n_seeds"] == 3 and rows[0]["is_best"]

    second = hive("start", QUICK, "--headless", "--max-experiments", "1")
    assert second.returncode == 0, second.stderr
    assert "resumed quickstart" in second.stderr
    again = json.loads(hive("leaderboard", "quickstart", "--json").stdout)
    assert again == board

    status = json.loads(hive("status", "--json").stdout)
    assert status["campaign"] == "quickstart" and status["experiments"] == 1
    shown = json.loads(hive("show", "exp-1", "--json", "--log").stdout)
    assert shown["verdict"] == "baseline" and len(shown["runs"]) == 3
    assert all("val_loss" in r["metrics"] and "---" in r["log"] for r in shown["runs"])
    assert (tmp_path / "workspaces" / "quickstart" / "hive.db").is_file()


def test_resuming_with_another_objective_is_refused_and_changes_nothing(baseline_only):
    root, first = baseline_only
    assert first.returncode == 0
    result = run_hive("start", QUICK, "--headless", "--max-experiments", "1", "-c", "objective.direction=maximize",
                      cwd=root)
    assert result.returncode == 2 and "judged the wrong way" in result.stderr and "Traceback" not in result.stderr
    board = json.loads(run_hive("leaderboard", "quickstart", "--json", cwd=root).stdout)
    assert (board["metric"], board["direction"]) == ("val_loss", "minimize")


def test_user_mistakes_are_one_line_exit_2(hive):
    cases = [
        (("status", "nope"), "no campaign 'nope'"),
        (("leaderboard", "--json"), "name a campaign"),
        (("start", "missing.yaml", "--headless"), "not found"),
        (("start", QUICK, "--headless", "-c", "run.timeout=zero"), "run.timeout"),
        (("start", QUICK, "--headless", "--campaign", "bad/name"), "--campaign"),
    ]
    for args, needle in cases:
        result = hive(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr


def test_show_unknown_experiment_is_exit_2(baseline_only):
    root, first = baseline_only
    assert first.returncode == 0
    result = run_hive("show", "99", cwd=root)
    assert result.returncode == 2 and "no experiment 99" in result.stderr


def test_hive_stop_stops_a_running_campaign_from_another_process(hive, tmp_path):
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "HIVE_HOME": str(tmp_path / "workspaces")}
    env.pop("HIVE_DB_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "hive", "start", QUICK, "--headless", "--max-experiments", "200",
                             "-c", "run.command=sleep 1 && python train.py"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "workspaces" / "quickstart" / "hive.db").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    result = hive("stop", "quickstart", "--wait", "60")
    assert result.returncode == 0, result.stderr
    assert f"(pid {proc.pid})" in result.stderr
    assert proc.wait(timeout=10) == 0
    assert json.loads(hive("status", "--json").stdout)["status"] == "stopped"
    again = hive("stop", "quickstart")
    assert again.returncode == 0 and "not running" in again.stdout


def test_a_failed_setup_is_retried_and_its_outputs_are_not_taken_for_tampering(hive, tmp_path):
    failing = hive("start", QUICK, "--headless", "--max-experiments", "1", "-c", "setup=echo fetching; exit 3")
    assert failing.returncode == 1 and "setup command failed (exit 3" in failing.stderr and "fetching" in failing.stderr
    again = hive("start", QUICK, "--headless", "--max-experiments", "1", "-c", "setup=echo fetching; exit 3")
    assert again.returncode == 1 and "setup command failed" in again.stderr, "setup runs again until it succeeds"
    ok = hive("start", QUICK, "--headless", "--max-experiments", "2",
              "-c", "setup=mkdir -p cache && echo data > cache/shared.txt")
    assert ok.returncode == 0, ok.stderr[-2000:]
    shown = json.loads(hive("show", "1", "--json").stdout)
    assert {r["status"] for r in shown["runs"]} == {"ok"}
    assert (tmp_path / "workspaces" / "quickstart" / "repo" / "cache" / "shared.txt").read_text() == "data\n"


def test_resuming_with_a_changed_run_command_is_refused_unless_accepted_and_cosmetic_changes_pass(baseline_only):
    """A run-affecting change (the command) is refused, naming it, with nothing changed; a description or rules
    change passes with a line; --accept-changes goes on with the new command and says so."""
    root, first = baseline_only
    assert first.returncode == 0
    base = ["start", QUICK, "--headless", "--max-experiments", "1"]
    refused = run_hive(*base, "-c", "run.command=python train.py --fast", "-c", "rules=be brief", cwd=root)
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "run.command: 'python train.py' -> 'python train.py --fast'" in line and "--accept-changes" in line
    assert "rules" not in line  # only what changes the measurements is named
    stored = json.loads(run_hive("status", "--json", cwd=root).stdout)
    cosmetic = run_hive(*base, "-c", "rules=be brief", "-c", "description=another", cwd=root)
    assert cosmetic.returncode == 0, cosmetic.stderr
    assert "playbook changed: rules: 'Improve held-out loss." in cosmetic.stderr
    assert "-> 'be brief' (does not change what runs measure)" in cosmetic.stderr
    assert json.loads(run_hive("status", "--json", cwd=root).stdout)["experiments"] == stored["experiments"]
    accepted = run_hive(*base, "-c", "run.seeds=[6,5,4,3,2,1]", "--accept-changes", cwd=root)
    assert accepted.returncode == 0, accepted.stderr
    assert ("playbook changed: run.seeds: [1, 2, 3, 4, 5, 6] -> [6, 5, 4, 3, 2, 1] (accepted with --accept-changes)"
            in accepted.stderr)
    # the accepted playbook is the stored one from here on: the same start again changes nothing
    again = run_hive(*base, "-c", "run.seeds=[6,5,4,3,2,1]", cwd=root)
    assert again.returncode == 0 and "playbook changed" not in again.stderr, again.stderr


def test_every_command_takes_campaign_the_same_way(baseline_only, tmp_path):
    """With two campaigns in one place, each command takes --campaign NAME (and the name first where it did);
    without one it says how to name one; two different names are refused."""
    root, first = baseline_only
    assert first.returncode == 0
    shutil.copytree(root / "workspaces", tmp_path / "workspaces")
    other = run_hive("start", QUICK, "--headless", "--campaign", "other", "--max-experiments", "1",
                     "-c", "run.seeds=[1]", "-c", "objective.confirm_seeds=1", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    commands = [["status", "--json"], ["leaderboard", "--json"], ["pr", "list", "--json"], ["gpus", "--json"],
                ["show", "1", "--json"], ["export", "results", "--json"]]
    for command in commands:
        picked = run_hive(*command, "--campaign", "other", cwd=tmp_path)
        assert picked.returncode == 0, (command, picked.stderr)
        if command[0] not in ("status", "pr"):
            continue  # one message, from one place: two commands show it
        unnamed = run_hive(*command, cwd=tmp_path)
        assert unnamed.returncode == 2 and "--campaign: name a campaign, e.g. --campaign" in unnamed.stderr, command
    assert json.loads(run_hive("status", "--campaign", "other", "--json", cwd=tmp_path).stdout)["campaign"] == "other"
    both = run_hive("status", "quickstart", "--campaign", "other", cwd=tmp_path)
    assert both.returncode == 2 and "name two campaigns" in both.stderr
    same = run_hive("leaderboard", "other", "--campaign", "other", "--json", cwd=tmp_path)
    assert same.returncode == 0 and json.loads(same.stdout)["campaign"] == "other"
