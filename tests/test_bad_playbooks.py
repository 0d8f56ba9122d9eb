"""Malformed playbooks are refused by `hive playbook validate` and `hive start` alike: one line, exit 2, nothing made.

Each file in tests/fixtures/bad_playbooks/ says what is wrong with it (line 1) and what the error names (line 2);
every one of them passed validation once and then crashed a campaign at run time.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from hive.cli import main
from hive.errors import BadInput
from hive.playbook import load_playbook

from tests.conftest import ROOT

BAD = ROOT / "tests" / "fixtures" / "bad_playbooks"
CASES = sorted(BAD.glob("*.yaml"))


def expected(path: Path) -> str:
    return path.read_text().splitlines()[1].removeprefix("# expect: ")


def one_line_refusal(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0], err
    return lines[0]


def test_there_are_fifteen_or_more():
    assert len(CASES) >= 15


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_validate_and_start_refuse_it_with_one_line(path, tmp_path, capsys):
    line = one_line_refusal(["playbook", "validate", str(path)], capsys)
    assert expected(path) in line and str(path) in line, line
    home = tmp_path / "workspaces"
    assert one_line_refusal(["start", str(path), "--headless", "--workspaces", str(home)], capsys) == line
    assert not home.exists() or not any(home.iterdir()), "a refused playbook makes no campaign"


def test_the_alias_bomb_is_refused_before_it_expands():
    path = BAD / "alias_bomb.yaml"
    assert path.stat().st_size < 2048
    tracemalloc.start()
    began = time.perf_counter()
    with pytest.raises(BadInput, match="alias bomb"):
        load_playbook(path)
    seconds = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 2**20 and seconds < 2, (peak, seconds)  # 9**12 values, were they built


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_a_git_source_is_checked_against_what_the_clone_will_hold(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(BAD / "src" / "train.py", repo / "train.py")
    (repo / "README").write_text("a repository whose train.py was never committed\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "readme only")
    playbook = (BAD / "step_zero.yaml").read_text().replace("source: src", f"source: {repo}")
    playbook = playbook.replace(", step: 0", "")
    (tmp_path / "pb.yaml").write_text(playbook)
    argv = ["playbook", "validate", str(tmp_path / "pb.yaml")]
    line = one_line_refusal(argv, capsys)
    assert "train.py not committed at HEAD" in line and "commit them" in line, line
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "train")
    assert main(argv) == 0
    (repo / "train.py").write_text((repo / "train.py").read_text().replace("X = 0.5", "X = 0.7"))
    line = one_line_refusal(argv, capsys)
    assert "train.py" in line and "changes not committed" in line, line
    line = one_line_refusal(argv + ["-c", "ref=nope"], capsys)
    assert "ref: 'nope' is not a commit" in line
