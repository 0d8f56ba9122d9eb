"""Repositories nobody wrote for Hive, run as campaigns as they are: flags only (charflags), a config file of
assignments and --key=value flags (tinygpt, in the shape of nanoGPT)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from hive.campaign import find_campaign
from tests.conftest import run_hive

FIXTURES = Path(__file__).parent / "fixtures"


def tree_hash(folder: Path) -> str:
    """A digest of every file under a folder (names and bytes), to prove a campaign changed none of them."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def start(root: Path, playbook: str, *args: str, timeout: float = 240):
    return run_hive("start", str(FIXTURES / playbook), "--headless", *args, cwd=root, timeout=timeout)


def hive(root: Path, *args: str):
    return run_hive(*args, cwd=root, timeout=60)


@pytest.fixture(scope="module")
def charflags(tmp_path_factory) -> Path:
    """A finished charflags campaign: its knobs are command-line flags, its seed a flag, its log its own format."""
    root = tmp_path_factory.mktemp("charflags")
    before = tree_hash(FIXTURES / "charflags")
    proc = start(root, "charflags.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tree_hash(FIXTURES / "charflags") == before, "the campaign changed the fixture repository"
    return root


def test_flags_only_repo_runs_and_every_run_records_its_command_line(charflags):
    store, camp = find_campaign(charflags / "workspaces", "charflags")
    baseline = store.experiment(camp.id, 1)
    assert baseline.verdict == "baseline" and baseline.n_seeds == 3
    shown = json.loads(hive(charflags, "show", "2", "--json").stdout)
    run = shown["runs"][0]
    # the knob values went in as flags, the seed through the {seed} placeholder; the store says exactly that
    knobs = store.experiment(camp.id, 2).proposal["knobs"]
    assert run["command"] == (f"python train.py --seed {run['seed']} --lr {knobs['lr']} "
                              f"--batch_size {knobs['batch_size']}")
    assert run["env"] == {}  # this playbook passes nothing through the environment (seed_env: null)
    text = hive(charflags, "show", "2").stdout
    assert f"    $ {run['command']}" in text
    # the log starts with the same line, so a log read on its own says how to reproduce it
    log = Path(run["log_path"]).read_text()
    assert log.splitlines()[0] == f"[hive] $ {run['command']}"
    assert re.search(r"final val loss [0-9.]+", log)


def test_leaderboard_never_ranks_a_discard_above_the_best_and_one_seed_shows_no_spread(tmp_path):
    """With one seed and a min_delta nothing can clear, every candidate is discarded though several have a lower
    mean than the baseline: the baseline (the best) still ranks first, and no '± 0' is shown for one seed."""
    proc = start(tmp_path, "charflags.yaml", "--max-experiments", "5", "-c", "objective.confirm_seeds=1",
                 "-c", "run.seeds=[1]", "-c", "objective.min_delta=10", "-c", "scheduler.slots=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    board = json.loads(hive(tmp_path, "leaderboard", "--json").stdout)
    rows = board["rows"]
    assert rows[0]["number"] == 1 and rows[0]["is_best"] and rows[0]["verdict"] == "baseline"
    assert any(r["metric_mean"] < rows[0]["metric_mean"] for r in rows[1:]), "no discard beat the baseline's mean"
    assert all(r["verdict"] == "discard" for r in rows[1:])
    text = hive(tmp_path, "leaderboard").stdout
    assert "1-seed rows" not in text and "discarded rows come after every kept one" in text
    first = text.splitlines()[1].split()
    assert first[:4] == ["1*", "1", "baseline", f"{rows[0]['metric_mean']:.6g}"] and first[4] == "-"
    status = hive(tmp_path, "status").stdout
    assert "± 0" not in status and "(1 seed(s))" in status
    assert "± " not in hive(tmp_path, "show", "1").stdout


def test_budget_reached_names_the_last_experiments_and_none_follows(charflags):
    store, camp = find_campaign(charflags / "workspaces", "charflags")
    assert store.count_experiments(camp.id) == 4
    events = list(store.events(camp.id, limit=1000))
    at = next(i for i, e in enumerate(events) if "max_experiments (4) reached: no new experiment" in e.message)
    named = {int(n) for n in re.findall(r"exp-(\d+)", events[at].message)}
    later = {e.experiment_number for e in events[at + 1:] if e.kind == "propose"}
    assert later <= named and max(named) == 4
