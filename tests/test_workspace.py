"""Worktrees on real git repos, including re-runs after a simulated crash."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hive.playbook import load_playbook
from hive.workspace import HarnessChanged, Workspace, content_hash
from tests.conftest import PLAYBOOKS


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def quick():
    return load_playbook(PLAYBOOKS / "quickstart.yaml")


@pytest.fixture
def ws(tmp_path, quick):
    w = Workspace(tmp_path / "c", "c")
    w.create(quick)
    return w


def test_create_from_template_is_idempotent(ws, quick):
    base = ws.baseline_commit()
    assert ws.create(quick) == base
    assert ws.best_commit() == base
    assert (ws.repo_dir / "train.py").is_file()
    assert git("status", "--porcelain", cwd=ws.repo_dir) == ""


def test_create_from_a_git_repo_at_a_ref(tmp_path, quick):
    src = tmp_path / "src"
    shutil.copytree(PLAYBOOKS / "quickstart", src)
    git("init", "-q", "-b", "main", cwd=src)
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=src)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=src)
    first = git("rev-parse", "HEAD", cwd=src).strip()
    (src / "extra.txt").write_text("later\n")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=src)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two", cwd=src)
    pb = quick.model_copy(update={"source": str(src), "ref": first})
    w = Workspace(tmp_path / "g", "g")
    w.create(pb)
    assert not (w.repo_dir / "extra.txt").exists()
    assert (w.repo_dir / "train.py").is_file()


def test_half_made_repo_is_rebuilt(tmp_path, quick):
    w = Workspace(tmp_path / "c", "c")
    (w.root / "repo" / ".git").mkdir(parents=True)  # a crash after mkdir, before the baseline branch
    (w.root / "repo.partial").mkdir()
    w.create(quick)
    assert w.exists() and not (w.root / "repo.partial").exists()


def test_worktree_commit_diff_and_illegal_paths(ws, quick):
    base = ws.baseline_commit()
    tree = ws.worktree(2, base)
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=tree).strip() == "hive/c/exp-2"
    (tree / "train.py").write_text((tree / "train.py").read_text().replace("STEPS = 40", "STEPS = 80"))
    commit = ws.commit(tree, "exp-2: more steps")
    assert ws.changed_paths(base, commit) == ["train.py"]
    assert "+STEPS = 80" in ws.diff(base, commit)
    assert ws.illegal_changes(base, commit, quick) == []
    (tree / "score.py").write_text("print('---'); print('val_loss: 0')\n")
    (tree / "notes.txt").write_text("hi\n")
    bad = ws.commit(tree, "cheat")
    assert sorted(ws.illegal_changes(commit, bad, quick)) == ["notes.txt", "score.py"]


def test_worktree_again_after_a_crash(ws):
    base = ws.baseline_commit()
    tree = ws.worktree(3, base)
    (tree / "train.py").write_text("# half-written edit\n")
    (tree / "stray.tmp").write_text("x")
    (ws.repo_dir / ".git" / "index.lock").write_text("")
    lock = next((ws.repo_dir / ".git" / "worktrees").glob("*")) / "index.lock"
    lock.write_text("")
    again = ws.worktree(3, base)
    assert again == tree
    assert git("status", "--porcelain", cwd=tree) == ""
    assert "LEARNING_RATE" in (tree / "train.py").read_text()
    assert not lock.exists() and not (ws.repo_dir / ".git" / "index.lock").exists()
    # the folder vanished but git still lists it
    shutil.rmtree(tree)
    assert ws.worktree(3, base).joinpath("train.py").is_file()
    # registered folder gone from git's list but still on disk
    git("worktree", "remove", "--force", str(tree), cwd=ws.repo_dir)
    tree.mkdir()
    (tree / "junk").write_text("x")
    assert ws.worktree(3, base).joinpath("train.py").is_file()


def test_worktree_keeps_committed_work_made_from_it(ws):
    base = ws.baseline_commit()
    tree = ws.worktree(4, base)
    (tree / "train.py").write_text((tree / "train.py").read_text() + "\n# kept\n")
    commit = ws.commit(tree, "exp-4")
    (tree / "train.py").write_text("uncommitted")
    again = ws.worktree(4, commit)
    assert git("rev-parse", "HEAD", cwd=again).strip() == commit
    assert (again / "train.py").read_text().endswith("# kept\n")
    ws.remove_worktree(4)
    assert not tree.exists()
    assert git("rev-parse", "hive/c/exp-4", cwd=ws.repo_dir).strip() == commit


def test_best_branch_only_moves_forward_and_carries_evidence(ws):
    base = ws.baseline_commit()
    tree = ws.worktree(2, base)
    (tree / "train.py").write_text((tree / "train.py").read_text().replace("STEPS = 40", "STEPS = 90"))
    kept = ws.commit(tree, "exp-2")
    best = ws.advance_best(kept, "hive: keep exp-2\n\nval_loss 1.0 -> 0.5 (p=0.01)")
    assert ws.best_commit() == best
    assert ws.is_ancestor(base, best)
    assert ws.diff(base, best) == ws.diff(base, kept)
    assert "p=0.01" in git("log", "-1", "--format=%B", "hive/c/best", cwd=ws.repo_dir)


def test_run_dir_has_exactly_the_commit(ws):
    base = ws.baseline_commit()
    d = ws.run_dir(1, 1, base)
    (d / "junk").write_text("x")
    d = ws.run_dir(1, 1, base)
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "score.py", "train.py"]


def test_fresh_harness_holds_only_the_pristine_protected_files(ws, quick):
    tree = ws.worktree(2, ws.baseline_commit())
    (tree / "train.py").write_text("print('changed')\n")
    ws.commit(tree, "exp-2")
    recorded = content_hash(ws.harness_dir)
    harness = ws.fresh_harness(ws.runs / "h", recorded)
    (harness / "score.py").write_text("tampered")
    (harness / "extra").write_text("x")
    again = ws.fresh_harness(ws.runs / "h", recorded)
    assert sorted(p.name for p in again.iterdir()) == ["score.py"]
    assert "held-out" in (again / "score.py").read_text()
    # the snapshot itself changed (or a link put in it): no copy is made from it
    (ws.harness_dir / "score.py").write_text("print('---'); print('val_loss: 0')")
    with pytest.raises(HarnessChanged, match="does not match the hash recorded"):
        ws.fresh_harness(ws.runs / "h", recorded)
    assert not (ws.runs / "h").exists()
    assert ws.snapshot_harness(quick, ws.baseline_commit()) == recorded


def test_files_committed_without_a_checkout_make_the_tree_a_worktree_commit_makes(ws):
    base = ws.baseline_commit()
    text = ws.read_files(base, ["train.py", ".hive/knobs.json"])
    assert text is not None and text[".hive/knobs.json"] is None and "STEPS = 40" in text["train.py"]
    writes = {"train.py": text["train.py"].replace("STEPS = 40", "STEPS = 80"), ".hive/knobs.json": '{"X": 1}\n'}
    fast = ws.commit_files(2, base, writes, "exp-2: more steps\n\nwhy")
    tree = ws.worktree(3, base)
    for path, body in writes.items():
        (tree / path).parent.mkdir(exist_ok=True)
        (tree / path).write_text(body)
    slow = ws.commit(tree, "exp-3")
    ws.remove_worktree(3)
    assert ws.same_tree(fast, slow)
    assert git("rev-parse", "hive/c/exp-2", cwd=ws.repo_dir).strip() == fast
    assert git("rev-parse", f"{fast}^", cwd=ws.repo_dir).strip() == base
    assert git("log", "-1", "--format=%an <%ae>%n%B", fast, cwd=ws.repo_dir).startswith("Hive <hive@localhost>\n"
                                                                                         "exp-2: more steps\n\nwhy")
    assert ws.read_files(fast, ["train.py"]) == {"train.py": writes["train.py"]}
    # nothing changed: the branch is the base, as a worktree with nothing to commit gives
    assert ws.commit_files(4, base, {"train.py": text["train.py"]}, "exp-4") == base
    assert git("rev-parse", "hive/c/exp-4", cwd=ws.repo_dir).strip() == base
    # the branch of a crashed attempt is simply moved
    assert ws.commit_files(2, base, {"train.py": "# again\n"}, "exp-2") != fast
    assert git("fsck", "--no-progress", cwd=ws.repo_dir) == ""


def test_an_executable_keeps_its_mode_and_a_link_is_edited_in_a_worktree(ws):
    base = ws.baseline_commit()
    tree = ws.worktree(2, base)
    (tree / "run.sh").write_text("#!/bin/sh\necho A=1\n")
    (tree / "run.sh").chmod(0o755)
    (tree / "link.py").symlink_to("train.py")
    commit = ws.commit(tree, "exp-2")
    ws.remove_worktree(2)
    after = ws.commit_files(3, commit, {"run.sh": "#!/bin/sh\necho A=2\n"}, "exp-3")
    assert git("ls-tree", after, "run.sh", cwd=ws.repo_dir).startswith("100755 ")
    assert ws.read_files(commit, ["train.py", "link.py"]) is None  # a link: not read as a file
    assert ws.read_files(commit, ["train.py"]) is not None
    assert ws.read_files(commit, ['"quoted.py']) is None  # fast-import would need the path quoted: a worktree edits it


def test_small_packs_are_merged_and_every_commit_stays(ws, monkeypatch):
    import hive.workspace as workspace

    monkeypatch.setattr(workspace, "MAX_PACKS", 4)
    base = ws.baseline_commit()
    commits = [ws.commit_files(n, base, {"train.py": f"# {n}\n"}, f"exp-{n}") for n in range(2, 14)]
    packs = list((ws.repo_dir / ".git" / "objects" / "pack").glob("*.pack"))
    assert 1 <= len(packs) <= 5
    assert [ws.read_files(c, ["train.py"]) for c in commits] == [{"train.py": f"# {n}\n"} for n in range(2, 14)]
    assert git("fsck", "--no-progress", cwd=ws.repo_dir) == ""
