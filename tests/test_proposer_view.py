"""The proposer's prompt, rendered from real campaigns' stores: order, every metric, headroom, the best's diff, crashes."""

from __future__ import annotations

import json
import re

import pytest

from hive.agents.context import campaign_view, headroom
from hive.llm import render_prompt
from hive.playbook import load_playbook
from hive.store.home import find_campaign
from hive.workspace import Workspace
from tests.conftest import PLAYBOOKS, run_hive

QUICK = PLAYBOOKS / "quickstart.yaml"


def prompt_of(home, name: str, overrides: list[str] | None = None, number: int = 99) -> tuple[str, object]:
    store, camp = find_campaign(home, name)
    view = campaign_view(store, camp.id, load_playbook(QUICK, overrides or []), Workspace(home / name, name))
    store.engine.dispose()
    return render_prompt("proposer", view=view, number=number), view


@pytest.fixture(scope="module")
def fifteen(tmp_path_factory):
    """A real campaign of 15 experiments (the knob search: seconds, no model)."""
    cwd = tmp_path_factory.mktemp("fifteen")
    result = run_hive("start", str(QUICK), "--headless", "--max-experiments", "15", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "workspaces"


def test_recent_experiments_are_newest_first_with_every_metric_and_headroom(fifteen):
    prompt, view = prompt_of(fifteen, "quickstart")
    recent = prompt.split("## Recent experiments (newest first)")[1].split("## In flight now")[0]
    shown = [int(n) for n in re.findall(r"^### #(\d+) ", recent, re.M)]
    assert shown == list(range(15, 3, -1)), shown  # the newest twelve, the newest first, none cut
    first = recent.split("### #14 ")[0]
    assert re.search(r"Metrics: model_bytes [\d.]+, run.steps \d+, run.train_loss [\d.]+,", first), first
    assert re.search(r"Constraints: model_bytes [\d.,]+ of 1,000\n", first), first
    assert "score_seconds" in first and "val_loss" in first  # every key the scorer produced, not the objective only


def test_the_best_change_from_the_baseline_and_an_outline_of_the_code(fifteen):
    prompt, view = prompt_of(fifteen, "quickstart")
    ws = Workspace(fifteen / "quickstart", "quickstart")
    assert view.best.number != 1, "the knob search kept nothing in 15 experiments"
    best_commit = ws.rev_parse("hive/quickstart/best")
    diff = ws.diff(ws.baseline_commit(), best_commit)
    assert diff.strip() and f"Its change from the baseline:\n```diff\n{diff.strip()}" in prompt
    assert re.search(r"^- train\.py: \d+ bytes, 49 lines; top level: LEARNING_RATE, STEPS, BATCH_SIZE, MOMENTUM,",
                     prompt, re.M), prompt.split("## The editable code")[1][:400]
    assert re.search(rf"Its constraints: model_bytes [\d.,]+ of 1,000", prompt)


def test_headroom_is_a_reading_of_the_value_against_its_limit():
    constraints = ["artifact_bytes <= 1000000", "val_bpb < 2", "tokens >= 10"]
    assert headroom({"artifact_bytes": 959123.0, "val_bpb": 2.5}, constraints) == [
        "artifact_bytes 959,123 of 1,000,000", "val_bpb 2.5 of 2 (breaks <)", "tokens missing (limit >= 10)"]


def test_an_unrepaired_crash_shows_its_traceback_to_the_proposer(hive, tmp_path):
    line = "LEARNING_RATE = 0.01  # step size of gradient descent; too small underfits in STEPS steps"
    crash = f"train.py\n<<<<<<< SEARCH\n{line}\n=======\n{line}\nSTEPS = STEPS // 0\n>>>>>>> REPLACE\n"
    script = tmp_path / "crash.json"
    script.write_text(json.dumps({
        "proposer": [json.dumps({"hypothesis": f"divide the steps {i}", "rationale": "r", "parent": None,
                                 "plan": "STEPS // 0"}) for i in range(5)],
        "coder": [crash]}))
    result = hive("start", str(QUICK), "--headless", "--max-experiments", "2", "-c", "strategist=llm",
                  env={"HIVE_MODEL": f"scripted:{script}"})
    assert result.returncode == 0, result.stderr[-3000:]
    prompt, view = prompt_of(tmp_path / "workspaces", "quickstart", ["strategist=llm"])
    crashed = prompt.split("### #2 crash")[1]
    assert "How it crashed: seed 1 failed; the end of its log:\n```\nTraceback (most recent call last):" in crashed, \
        crashed[:1500]
    assert "STEPS = STEPS // 0" in crashed and "NameError: name 'STEPS' is not defined\n```" in crashed
