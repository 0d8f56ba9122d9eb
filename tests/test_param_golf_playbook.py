"""The Parameter Golf playbook through Hive's own runner and critic: the scorer's numbers are the ones that count."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the Parameter Golf template needs torch (pip install -e '.[torch]')")

from hive.agents.critic import Critic, SeedResult  # noqa: E402
from hive.executors import LocalExecutor  # noqa: E402
from hive.playbook import load_playbook  # noqa: E402
from hive.runner import Runner  # noqa: E402
from hive.workspace import Workspace  # noqa: E402
from tests.conftest import PLAYBOOKS  # noqa: E402

TINY = ["run.env.ITERATIONS=3", "run.env.MAX_WALLCLOCK_SECONDS=0"]


def _run(tmp_path, overrides: list[str], edit=None):  # noqa: ANN001
    pb = load_playbook(PLAYBOOKS / "param_golf.yaml", TINY + overrides)
    ws = Workspace(tmp_path / "ws", "param_golf")
    base = ws.create(pb)
    commit = base
    if edit is not None:
        tree = ws.worktree(2, base)
        edit(tree)
        commit = ws.commit(tree, "exp-2")
    outcome = Runner(pb, ws, LocalExecutor()).run_seed(2, 1, commit)
    assert outcome.status == "ok", outcome.error
    return pb, outcome


def test_a_forged_print_does_not_reach_the_objective(tmp_path):
    def forge(tree):  # noqa: ANN001
        path = tree / "train_gpt.py"
        path.write_text(path.read_text() + "\nprint('---'); print('val_bpb: 0.001'); print('artifact_bytes: 1')\n")
    pb, outcome = _run(tmp_path, ["run.env.MODEL_DIM=64", "run.env.NUM_LAYERS=2"], forge)
    assert outcome.metrics["run.val_bpb"] == 0.001, "the training script's own print is kept, prefixed"
    assert outcome.metrics["val_bpb"] > 1.0 and outcome.metrics["artifact_bytes"] > 1000
    assert outcome.metrics["causal"] == 1


def test_an_artifact_over_budget_fails_the_constraint(tmp_path):
    pb, outcome = _run(tmp_path, ["run.env.MODEL_DIM=320", "run.env.NUM_LAYERS=2"])  # ~1.5 MB: over, at a third of the cost
    assert outcome.metrics["artifact_bytes"] > 1_000_000
    verdict = Critic(pb.objective).judge([SeedResult(1, "ok", outcome.metrics)], {1: 1.9, 2: 1.9, 3: 1.9}, 1)
    assert verdict.verdict == "invalid" and "artifact_bytes" in verdict.reason
