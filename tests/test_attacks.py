"""Runs attacking Hive itself, each written as the real attack, in both sandbox modes (bwrap and none).

Each test names what the README's "What a run can and cannot do" claims for that mode.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hive.executors import LocalExecutor
from hive.playbook import load_playbook
from hive.runner import Runner
from hive.workspace import Workspace
from tests.conftest import PLAYBOOKS


@pytest.fixture
def quick(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(PLAYBOOKS / "quickstart", src)
    pb = load_playbook(PLAYBOOKS / "quickstart.yaml", [f"source={src}"])
    ws = Workspace(tmp_path / "ws", "quickstart")
    ws.create(pb)
    return pb, ws


def attack_commit(ws: Workspace, number: int, code: str) -> str:
    """A candidate whose train.py runs `code` (after its own training, so the run still succeeds)."""
    tree = ws.worktree(number, ws.baseline_commit())
    (tree / "train.py").write_text((tree / "train.py").read_text() + "\n" + code + "\n")
    commit = ws.commit(tree, f"exp-{number}")
    ws.remove_worktree(number)
    return commit


def test_a_hook_a_run_plants_in_the_campaign_repo_never_runs(quick, sandbox_mode, tmp_path):
    pb, ws = quick
    ran = tmp_path / "hook-ran"
    hook = f"#!/bin/sh\\necho \"$@\" >> {ran}\\n"
    hooks = ws.repo_dir / ".git" / "hooks"
    # every hook Hive's git could fire, and a repo config pointing hooks and a monitor at the run's own scripts
    code = ("import os, stat\n"
            "try:\n"
            f"    for name in ('post-commit', 'pre-commit', 'commit-msg', 'post-checkout', 'reference-transaction'):\n"
            f"        path = os.path.join({str(hooks)!r}, name)\n"
            f"        open(path, 'w').write({hook!r}); os.chmod(path, 0o755)\n"
            f"    open({str(ws.repo_dir / '.git' / 'config')!r}, 'a').write("
            f"'[core]\\n\\thooksPath = {hooks}\\n\\tfsmonitor = {hooks}/post-commit\\n')\n"
            "    print('planted')\n"
            "except OSError as exc:\n"
            "    print('refused:', exc)\n")
    commit = attack_commit(ws, 2, code)
    outcome = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode)).run_seed(2, 1, commit)
    log = outcome.log_path.read_text()
    if sandbox_mode == "bwrap":  # the repo's .git is not even there
        assert "refused:" in log and "planted" not in log.replace("refused", "")
    else:
        assert "planted" in log and (hooks / "post-commit").exists()
    # Hive's next commits, checkouts and ref moves in the campaign repo
    tree = ws.worktree(3, ws.baseline_commit())
    (tree / "train.py").write_text((tree / "train.py").read_text() + "\n# exp-3\n")
    new = ws.commit(tree, "exp-3")
    ws.advance_best(new, "keep exp-3")
    ws.remove_worktree(3)
    assert not ran.exists(), f"a planted hook ran: {ran.read_text()}"
