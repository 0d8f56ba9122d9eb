"""The proposer's prompt, rendered from real campaigns' stores: order, every metric, headroom, the best's diff, crashes."""

from __future__ import annotations

import asyncio
import json
import re
import shutil

import pytest

from hive.agents.base import Proposal
from hive.agents.context import campaign_view, headroom
from hive.agents.critic import Critic
from hive.agents.knob_coder import KnobCoder
from hive.campaign import open_campaign
from hive.graph import ExperimentFlow, Roles
from hive.llm import render_prompt
from hive.playbook import load_playbook
from hive.scheduler import make_scheduler
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
    assert re.search(r"Its constraints: model_bytes [\d.,]+ of 1,000", prompt)
    # in the recent list the best shows its own change, from its parent
    store, camp = find_campaign(fifteen, "quickstart")
    best = store.experiment(camp.id, view.best.number)
    store.engine.dispose()
    own = prompt.split(f"### #{best.number} keep")[1].split("### #")[0]
    assert ws.diff(best.parent_commit, best.commit).strip()[:1000] in own



def test_a_knob_strategist_gets_the_same_experiments_without_what_only_a_prompt_reads(fifteen):
    store, camp = find_campaign(fifteen, "quickstart")
    pb, ws = load_playbook(QUICK), Workspace(fifteen / "quickstart", "quickstart")
    full, light = (campaign_view(store, camp.id, pb, ws, full=flag) for flag in (True, False))
    store.engine.dispose()
    assert full.leaderboard and full.outline and full.lessons and full.recent[0].metrics
    assert light.leaderboard == [] and light.outline == [] and light.lessons == [] and light.recent[0].metrics == {}
    # what the knob search reads is the same
    assert [(b.number, b.verdict, b.metric_mean, b.knobs) for b in light.recent] == \
        [(b.number, b.verdict, b.metric_mean, b.knobs) for b in full.recent]
    assert (light.best.number, light.best.knobs, light.since_best) == (full.best.number, full.best.knobs,
                                                                       full.since_best)
    assert light.baseline.metric_mean == full.baseline.metric_mean

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
    # the one-prompt coder (coder: edits) writes the script's edit block; the agentic one would want commands
    result = hive("start", str(QUICK), "--headless", "--max-experiments", "2", "-c", "strategist=llm",
                  "-c", "coder=edits", env={"HIVE_MODEL": f"scripted:{script}"})
    assert result.returncode == 0, result.stderr[-3000:]
    prompt, view = prompt_of(tmp_path / "workspaces", "quickstart", ["strategist=llm", "coder=edits"])
    crashed = prompt.split("### #2 crash")[1]
    assert "How it crashed: seed 1 failed; the end of its log:\n```\nTraceback (most recent call last):" in crashed, \
        crashed[:1500]
    assert "STEPS = STEPS // 0" in crashed and "NameError: name 'STEPS' is not defined\n```" in crashed


# -- the parent a proposal names ------------------------------------------------------------------

class NamedParent:
    """A proposer that always builds on the experiment it was given (a knob change on top of it)."""

    name = "named"

    def __init__(self, parent: int):
        self.parent = parent

    def propose(self, view, number):  # noqa: ANN001, ANN201
        return Proposal(hypothesis=f"STEPS 33 on top of #{self.parent}", parent=self.parent, knobs={"STEPS": 33})

    def observe(self, proposal, outcome):  # noqa: ANN001, ANN201
        pass


def test_a_named_parent_is_built_on_or_refused_never_swapped_for_the_best(fifteen, tmp_path, monkeypatch):
    # a pending combination of two wins is proposed before the proposer is asked (tests/test_seed_loop.py); whether
    # the fifteen-experiment campaign left one depends on its timing, and this test is about the proposer's parent
    monkeypatch.setattr("hive.graph.combination", lambda *args: None)
    home = tmp_path / "workspaces"
    shutil.copytree(fifteen, home)
    pb = load_playbook(QUICK)
    ctx = open_campaign(pb, home)
    try:
        store, cid = ctx.store, ctx.campaign.id
        best = store.best(cid)
        # one that does not hold STEPS = 33 already (the proposer's change would then be empty)
        discard = next(e for e in store.experiments(cid) if e.verdict == "discard" and e.commit != best.commit
                       and not re.search(r"^STEPS = 33\b", ctx.workspace.file_at(e.commit, "train.py"), re.M))
        flow = ExperimentFlow(ctx, Roles(NamedParent(discard.number), KnobCoder(pb), Critic(pb.objective)),
                              make_scheduler(pb.scheduler, pb.run.resources))
        exp = store.new_experiment(cid, kind="candidate", status="proposed")
        state = {"number": exp.number, **asyncio.run(flow.propose({"number": exp.number}))}
        assert (state["parent_number"], state["parent_commit"]) == (discard.number, discard.commit)
        state.update(asyncio.run(flow.code(state)))
        coded = store.experiment(cid, exp.number)
        assert coded.parent_number == discard.number and coded.parent_commit == discard.commit
        assert ctx.workspace.changed_paths(discard.commit, coded.commit) == ["train.py"]
        assert "+STEPS = 33" in coded.diff
        for missing, why in ((999, "refused: parent #999 does not exist"),
                             (exp.number, f"refused: parent #{exp.number} has not finished")):
            flow.roles.proposer = NamedParent(missing)
            other = store.new_experiment(cid, kind="candidate", status="proposed")
            verdict = asyncio.run(flow.propose({"number": other.number}))["verdict"]
            assert (verdict["verdict"], verdict["reason"]) == ("no_proposal", why)
    finally:
        ctx.close()
