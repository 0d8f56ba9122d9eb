"""The LLM proposer, coder and reviewer against the scripted model server, through the real litellm client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from hive.agents.base import CampaignView, ExperimentBrief, Proposal
from hive.agents.agent_coder import AgentCoder
from hive.agents.llm_coder import LlmCoder
from hive.agents.llm_proposer import LlmProposer, ProposalFailed
from hive.agents.review import LlmReviewer
from hive.errors import EditRejected
from hive.llm import LLM
from hive.playbook import load_playbook
from hive.sandbox import Sandbox
from hive.scripted import ensure_server
from hive.store import Store, make_engine
from hive.workspace import Workspace
from tests.conftest import PLAYBOOKS

RULES = "Improve held-out loss. Never touch score.py."
GOOD = {"hypothesis": "Raise LEARNING_RATE to 0.1", "rationale": "underfits", "parent": None,
        "plan": "In train.py change LEARNING_RATE from 0.01 to 0.1."}
LR_LINE = "LEARNING_RATE = 0.01  # step size of gradient descent; too small underfits in STEPS steps"


def make(tmp_path, script: dict | str):
    """An LLM whose every role uses the given script (a dict written to a file, or a shipped script's name)."""
    spec = script if isinstance(script, str) else str(tmp_path / "script.json")
    if isinstance(script, dict):
        (tmp_path / "script.json").write_text(json.dumps(script))
    playbook = load_playbook(PLAYBOOKS / "quickstart.yaml", [f"models.{r}=scripted:{spec}" for r in ("proposer", "coder", "critic")])
    store = Store(make_engine(f"sqlite:///{tmp_path}/h.db"))
    camp, _ = store.ensure_campaign("quickstart")
    return LLM(store, camp.id, playbook, backoff=0.01), ensure_server(spec)


def view(**extra) -> CampaignView:
    base = ExperimentBrief(1, "baseline", "baseline", metric_mean=1.26, metric_std=0.14, n_seeds=3)
    tried = ExperimentBrief(2, "Add momentum 0.5", "discard", "mean 1.31 is not better than 1.26 (p=0.8)",
                            metric_mean=1.31, n_seeds=1, diff="-MOMENTUM = 0.0\n+MOMENTUM = 0.5", parent=1)
    fields = dict(name="quickstart", metric="val_loss", direction="minimize", constraints=["model_bytes <= 1000"],
                  rules=RULES, knobs=[], editable=["train.py"], protected=["score.py"], baseline=base, best=base,
                  leaderboard=[base, tried], recent=[tried, base],
                  in_flight=[ExperimentBrief(3, "Train for 150 steps instead of 40", None)],
                  lessons=["momentum 0.5 at lr 0.01 hurt: the rate is the bottleneck"])
    return CampaignView(**{**fields, **extra})


def tree_copy(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(PLAYBOOKS / "quickstart", tree)
    return tree


# -- proposer -------------------------------------------------------------------------------------

def test_proposal_from_clean_json_and_its_prompt(tmp_path):
    llm, server = make(tmp_path, {"proposer": [json.dumps(GOOD)]})
    proposal = LlmProposer(llm).propose(view(), 4)
    assert (proposal.hypothesis, proposal.parent, proposal.strategist) == (GOOD["hypothesis"], None, "llm")
    assert proposal.plan == GOOD["plan"]
    prompt = server.requests[-1]["text"]
    for expected in [RULES, "| 2 | 1.31 |", "Add momentum 0.5", "mean 1.31 is not better", "+MOMENTUM = 0.5",
                     "#3: Train for 150 steps instead of 40", "momentum 0.5 at lr 0.01 hurt", "model_bytes <= 1000",
                     "minimize `val_loss`", "experiment #4"]:
        assert expected in prompt, expected
    assert llm.store.llm_totals(llm.campaign_id)["calls"] == 1


def test_proposal_from_fenced_json_amid_prose(tmp_path):
    reply = f"Given the leaderboard, I suggest:\n```json\n{json.dumps({**GOOD, 'parent': 2}, indent=2)}\n```\nGood luck!"
    llm, _ = make(tmp_path, {"proposer": [reply]})
    assert LlmProposer(llm).propose(view(), 4).parent == 2


def test_proposer_retries_past_truncated_json_and_wrong_schema(tmp_path):
    llm, server = make(tmp_path, {"proposer": ['{"hypothesis": "Raise the rate", "pl', json.dumps({"idea": "x"}),
                                               json.dumps(GOOD)]})
    assert LlmProposer(llm).propose(view(), 4).hypothesis == GOOD["hypothesis"]
    feedback = [r["messages"][-1]["content"] for r in server.requests[1:]]
    assert "no complete JSON object" in feedback[0]
    assert "hypothesis: Field required" in feedback[1] and "plan: Field required" in feedback[1]
    assert len(server.requests[2]["messages"]) == 5  # prompt, reply, feedback, reply, feedback


def test_proposer_rejects_duplicates_and_unknown_parents(tmp_path):
    in_flight = {**GOOD, "hypothesis": "train for 150 steps instead of 40!"}
    llm, server = make(tmp_path, {"proposer": [json.dumps(in_flight), json.dumps({**GOOD, "parent": 9}), json.dumps(GOOD)]})
    assert LlmProposer(llm).propose(view(), 4).hypothesis == GOOD["hypothesis"]
    assert "repeats experiment #3, which is in flight" in server.requests[1]["messages"][-1]["content"]
    assert "parent #9 is not among the experiments shown" in server.requests[2]["messages"][-1]["content"]


def test_proposer_gives_up_after_max_tries(tmp_path):
    llm, server = make(tmp_path, {"proposer": ["I am not sure what to try next."]})
    with pytest.raises(ProposalFailed, match="after 2 tries"):
        LlmProposer(llm, max_tries=2).propose(view(), 4)
    assert len(server.requests) == 2


# -- coder ----------------------------------------------------------------------------------------

def edit(search: str, replace: str, path: str = "train.py") -> str:
    return f"Here is the change.\n\n{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_coder_applies_a_good_edit(tmp_path):
    tree = tree_copy(tmp_path)
    llm, server = make(tmp_path, {"coder": [edit(LR_LINE, LR_LINE.replace("0.01", "0.1"))]})
    summary = LlmCoder(llm, ["train.py"], ["score.py"]).code(Proposal(**GOOD), tree, view(), 4)
    assert summary == "edited train.py (+1 -1)"
    assert "LEARNING_RATE = 0.1  #" in (tree / "train.py").read_text()
    prompt = server.requests[0]["text"]
    assert GOOD["plan"] in prompt and LR_LINE in prompt and RULES in prompt and "<<<<<<< SEARCH" in prompt
    assert "score = " not in prompt  # protected files are not shown


def test_coder_retries_past_unapplicable_and_protected_edits(tmp_path):
    tree = tree_copy(tmp_path)
    replies = [edit("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.1"), edit('print("---")', 'print("val_loss: 0")', "score.py"),
               edit(LR_LINE, LR_LINE.replace("0.01", "0.1"))]
    llm, server = make(tmp_path, {"coder": replies})
    LlmCoder(llm, ["train.py"], ["score.py"]).code(Proposal(**GOOD), tree, view(), 4)
    assert "LEARNING_RATE = 0.1  #" in (tree / "train.py").read_text()
    assert "SEARCH text not found" in server.requests[1]["messages"][-1]["content"]
    assert "score.py: protected" in server.requests[2]["messages"][-1]["content"]


def test_coder_gives_up_without_touching_files(tmp_path):
    tree = tree_copy(tmp_path)
    before = {p.name: p.read_text() for p in tree.iterdir()}
    llm, server = make(tmp_path, {"coder": [edit("STEPS = 41", "STEPS = 42")]})
    with pytest.raises(EditRejected, match="gave up after 3 tries.*STEPS = 41"):
        LlmCoder(llm, ["train.py"], ["score.py"]).code(Proposal(**GOOD), tree, view(), 4)
    assert {p.name: p.read_text() for p in tree.iterdir()} == before and len(server.requests) == 3


# -- reviewer -------------------------------------------------------------------------------------

def test_reviewer_reads_verdicts_and_asks_again_once_for_an_unreadable_reply(tmp_path):
    llm, server = make(tmp_path, {"critic": ['{"ok": false, "reason": "prints val_loss itself"}', "Looks fine to me!",
                                             '```json\n{"ok": true, "reason": "fine"}\n```']})
    reviewer = LlmReviewer(llm)
    assert reviewer.review("+print('val_loss: 0')", RULES, 5) == (False, "prints val_loss itself")
    assert RULES in server.requests[0]["text"] and "+print('val_loss: 0')" in server.requests[0]["text"]
    assert reviewer.review("+x = 1", RULES, 6) == (True, "fine")  # asked again, with what was wrong
    assert "'ok' is not true or false" not in server.requests[1]["text"]
    assert "no complete JSON object" in server.requests[2]["messages"][-1]["content"]
    assert [e.kind for e in llm.store.events(llm.campaign_id)] == ["review_unreadable"]


def test_reviewer_fails_closed_after_two_unreadable_replies(tmp_path):
    llm, server = make(tmp_path, {"critic": ["Looks fine to me!", '{"ok": "yes"}', '{"ok": true, "reason": "fine"}']})
    ok, reason = LlmReviewer(llm).review("+x = 1", RULES, 6)
    assert not ok and "unreadable 2 times" in reason and "'ok' is not true or false" in reason
    assert len(server.requests) == 2  # asked once again, not more
    assert [e.kind for e in llm.store.events(llm.campaign_id)] == ["review_unreadable", "review_unreadable"]


# -- the shipped quickstart script ----------------------------------------------------------------

def val_loss(tree) -> float:
    subprocess.run([sys.executable, "train.py"], cwd=tree, check=True, capture_output=True, timeout=30)
    out = subprocess.run([sys.executable, "score.py", "."], cwd=tree, check=True, capture_output=True, text=True, timeout=30)
    (tree / "model.json").unlink()
    return float(out.stdout.split("val_loss:")[1].split()[0])


def test_shipped_quickstart_script_drives_proposals_and_the_agentic_coder(tmp_path):
    llm, server = make(tmp_path, "quickstart")
    ws = Workspace(tmp_path / "ws", "quickstart")
    base = ws.create(llm.playbook)
    llm.logs = ws.logs
    proposer = LlmProposer(llm)
    coder = AgentCoder(llm, llm.playbook, ws.repo_dir, [ws.root], Sandbox("auto"))
    tree, recent, outcomes = ws.worktree(2, base), [], []
    baseline = val_loss(tree)
    for number in range(2, 8):
        proposal = proposer.propose(view(recent=list(recent), in_flight=[], leaderboard=[]), number)
        try:
            outcomes.append(coder.code(proposal, tree, view(), number))
        except EditRejected as exc:
            outcomes.append(f"edit_failed: {exc}")
        ws.commit(tree, f"exp-{number}")
        recent.insert(0, ExperimentBrief(number, proposal.hypothesis, "keep"))
    text = (tree / "train.py").read_text()
    assert "LEARNING_RATE = 0.1  #" in text and "STEPS = 150" in text and "    lr = LEARNING_RATE * (1 - step" in text
    assert outcomes[:3] == ["LEARNING_RATE 0.01 -> 0.1", "STEPS 40 -> 150",
                            "decay the learning rate linearly to zero inside the training loop"], outcomes
    assert not any(o.startswith("edit_failed") for o in outcomes), outcomes
    assert val_loss(tree) < baseline / 2
    roles = [r["role"] for r in server.requests]
    assert roles.count("proposer") == 8  # one malformed and one wrong-schema reply
    assert roles.count("coder") == 4 + 4 + 6 + 4 + 4 + 4  # read, edit, smoke, done; the decay also fails and is fixed