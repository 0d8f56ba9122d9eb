"""Search/replace edit blocks: parsing, applying, and every way a block is rejected without touching a file."""

from __future__ import annotations

import pytest

from hive.agents.edits import apply_edits, parse_edits
from hive.errors import EditRejected

TRAIN = "LR = 0.01  # step size\nSTEPS = 40\n\nfor step in range(STEPS):\n    pass\n"
EDITABLE, PROTECTED = ["*.py", "pkg/**"], ["score.py", "data/**"]


def block(path: str, search: str, replace: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "score.py").write_text("print('score')\n")
    (tmp_path / "README.md").write_text("readme\n")
    return tmp_path


def apply(tree, text):
    return apply_edits(tree, text, EDITABLE, PROTECTED)


def snapshot(tree):
    return {p.name: p.read_text() for p in tree.rglob("*") if p.is_file()}


def test_applies_a_block_amid_prose_and_fences(tree):
    text = "Raise the rate.\n\ntrain.py\n```python\n<<<<<<< SEARCH\nLR = 0.01  # step size\n=======\nLR = 0.1  # step size\n>>>>>>> REPLACE\n```\nDone."
    assert apply(tree, text) == ["train.py"]
    assert (tree / "train.py").read_text() == TRAIN.replace("0.01", "0.1")


def test_several_blocks_and_a_new_file(tree):
    text = (block("train.py", "STEPS = 40\n", "STEPS = 150\n") + block("train.py", "    pass\n", "    print(step)\n")
            + block("pkg/util.py", "", "X = 1\n"))
    assert apply(tree, text) == ["train.py", "pkg/util.py"]
    assert "STEPS = 150" in (tree / "train.py").read_text() and "print(step)" in (tree / "train.py").read_text()
    assert (tree / "pkg/util.py").read_text() == "X = 1\n"


def test_block_without_repeated_path_reuses_the_previous_one(tree):
    text = block("train.py", "STEPS = 40\n", "STEPS = 41\n") + "<<<<<<< SEARCH\n    pass\n=======\n    step += 0\n>>>>>>> REPLACE\n"
    assert [b.path for b in parse_edits(text)] == ["train.py", "train.py"]
    apply(tree, text)
    assert "step += 0" in (tree / "train.py").read_text()


def test_trailing_whitespace_differences_still_match(tree):
    apply(tree, block("train.py", "STEPS = 40   \n", "STEPS = 50\n"))
    assert "STEPS = 50\n" in (tree / "train.py").read_text()


@pytest.mark.parametrize("text, message", [
    ("I think we should raise the rate.", "no edit blocks"),
    (block("train.py", "LR = 0.01\n", "LR = 0.1\n"), "SEARCH text not found; the line 'LR = 0.01' is not in the file (closest: 'LR = 0.01  # step size')"),
    (block("train.py", "STEPS = 40\n    pass\n", "x\n"), "not consecutively"),
    (block("../train.py", "STEPS = 40\n", "STEPS = 1\n"), "outside the repository"),
    (block("/etc/passwd", "", "x\n"), "outside the repository"),
    (block("score.py", "print('score')\n", "print(0)\n"), "score.py: protected"),
    (block("data/x.py", "", "x = 1\n"), "data/x.py: protected"),
    (block("README.md", "readme\n", "hacked\n"), "README.md: not editable (editable: *.py, pkg/**)"),
    (block("train.py", "STEPS = 40\n", "STEPS = = 40\n"), "train.py does not compile after the edits: invalid syntax at line 2"),
    (block("train.py", "STEPS = 40\n", "STEPS = 40\n"), "change nothing"),
    (block("missing.py", "x = 1\n", "x = 2\n"), "file does not exist"),
    ("train.py\n<<<<<<< SEARCH\nSTEPS = 40\n=======\nSTEPS = 1\n", "not closed"),
])
def test_rejections_name_the_problem_and_touch_nothing(tree, text, message):
    before = snapshot(tree)
    with pytest.raises(EditRejected) as err:
        apply(tree, text)
    assert message in str(err.value)
    assert snapshot(tree) == before


def test_ambiguous_search_says_where(tree):
    (tree / "twice.py").write_text("x = 1\ny = 2\nx = 1\n")
    with pytest.raises(EditRejected, match=r"matches 2 places \(lines 1, 3\)"):
        apply(tree, block("twice.py", "x = 1\n", "x = 3\n"))


def test_atomic_when_a_later_block_fails(tree):
    before = snapshot(tree)
    text = block("train.py", "STEPS = 40\n", "STEPS = 99\n") + block("pkg/new.py", "", "y = 2\n") + block("train.py", "nope\n", "x\n")
    with pytest.raises(EditRejected, match="edit block 3 \\(train.py\\): SEARCH text not found"):
        apply(tree, text)
    assert snapshot(tree) == before and not (tree / "pkg").exists()


def test_file_without_final_newline(tree):
    (tree / "tail.py").write_text("a = 1\nb = 2")
    apply(tree, block("tail.py", "b = 2\n", "b = 3\n"))
    assert (tree / "tail.py").read_text() == "a = 1\nb = 3"
