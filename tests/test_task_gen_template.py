"""The task-generation template (playbooks/task_gen): generate.py writes tasks, the protected score.py rates them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1] / "playbooks" / "task_gen"


def parse(text: str) -> dict[str, str]:
    """The run contract: `key: value` lines after the last `---` line."""
    lines = text.splitlines()
    assert "---" in [l.strip() for l in lines], text
    start = max(i for i, l in enumerate(lines) if l.strip() == "---")
    out = {}
    for line in lines[start + 1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("__pycache__", "tasks.jsonl"))
    return dest


def generate(repo: Path, **env: object) -> dict[str, str]:
    full = {**os.environ, "SEED": "1", **{k: str(v) for k, v in env.items()}}
    proc = subprocess.run([sys.executable, "generate.py"], cwd=repo, env=full, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return parse(proc.stdout)


def score(repo: Path) -> dict[str, int]:
    proc = subprocess.run([sys.executable, str(repo / "score.py"), "--run-dir", str(repo)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    metrics = parse(proc.stdout)
    return {k: (int(v) if k != "score_seconds" else float(v)) for k, v in metrics.items()}


def check_consistent(m: dict) -> None:
    reasons = {k: v for k, v in m.items() if k.startswith("rejected_") and k != "rejected_total"}
    assert all(v >= 0 for v in reasons.values())
    assert sum(reasons.values()) == m["rejected_total"]
    assert m["yield"] + m["rejected_total"] == m["lines_total"]
    assert m["valid"] - m["yield"] == m["rejected_duplicate"]
    assert 0 <= m["yield"] <= m["valid"] <= m["considered"] <= m["lines_total"]


def task(tid, statement, solution, tests, entry):
    return json.dumps({"id": tid, "statement": statement, "solution": solution, "tests": tests, "entry_point": entry})


GOOD = task(1, "Return x plus one.", "def inc(x):\n    return x + 1\n", "assert inc(1) == 2\nassert inc(5) == 6\n", "inc")


def write(repo: Path, lines: list[str]) -> None:
    (repo / "tasks.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_generate_then_score_parses(repo: Path):
    gen = generate(repo)
    assert int(gen["tasks_written"]) > 0
    assert float(gen["gen_seconds"]) >= 0
    m = score(repo)
    assert isinstance(m["yield"], int) and m["yield"] >= 0
    assert m["lines_total"] == int(gen["tasks_written"])
    check_consistent(m)
    assert 0 < m["yield"] < m["lines_total"]  # a mediocre baseline: some tasks kept, some rejected
    assert m["score_seconds"] < 30


def test_each_rejection_reason(repo: Path):
    lines = [
        GOOD,
        # the same task again, reformatted and with other tests: duplicate (same canonical solution)
        task(2, "Add one to x.", "def inc(x):\n    'docstring'\n    return (x +\n 1)  # comment\n", "assert inc(7) == 8\nassert inc(0) == 1\n", "inc"),
        # same statement modulo case and whitespace: duplicate
        task(3, "  return X   plus one. ", "def inc2(y):\n    return 1 + y\n", "assert inc2(1) == 2\nassert inc2(2) == 3\n", "inc2"),
        # reference solution fails its tests
        task(4, "Return x plus two.", "def inc(x):\n    return x + 1\n", "assert inc(1) == 3\nassert inc(2) == 4\n", "inc"),
        # a trivial solution (returning 0) passes
        task(5, "Return zero.", "def zero(x):\n    return x * 0\n", "assert zero(3) == 0\nassert zero(4) == 0\n", "zero"),
        # identity passes
        task(6, "Return x.", "def ident(x):\n    return x + 0\n", "assert ident(3) == 3\nassert ident(4) == 4\n", "ident"),
        # only one call to the function
        task(7, "Return x times three.", "def tri(x):\n    return 3 * x\n", "assert tri(3) == 9\n", "tri"),
        # hangs (interruptible)
        task(8, "Hang.", "def hang(x):\n    while True:\n        pass\n", "assert hang(1) == 1\nassert hang(2) == 2\n", "hang"),
        # hangs and swallows the timeout: the worker must be killed
        task(9, "Hang harder.", "def hang2(x):\n    while True:\n        try:\n            while True:\n                pass\n"
             "        except BaseException:\n            pass\n", "assert hang2(1) == 1\nassert hang2(2) == 2\n", "hang2"),
        # kills its own process
        task(10, "Exit.", "import os\ndef boom(x):\n    os._exit(3)\n", "assert boom(1) == 1\nassert boom(2) == 2\n", "boom"),
        # malformed: not JSON, not an object, missing field, empty statement, bad syntax, entry point not defined
        "this is not json",
        "[1, 2, 3]",
        json.dumps({"id": 11, "statement": "x", "solution": "def f(): pass", "entry_point": "f"}),
        task(12, "   ", "def f(x):\n    return x + 1\n", "assert f(1) == 2\nassert f(2) == 3\n", "f"),
        task(13, "Broken syntax.", "def f(x) return x\n", "assert f(1) == 1\n", "f"),
        task(14, "Wrong name.", "def g(x):\n    return x + 1\n", "assert g(1) == 2\nassert g(2) == 3\n", "f"),
        # a second good task after all that: still counted
        task(15, "Return x squared plus one.", "def sq1(x):\n    return x * x + 1\n", "assert sq1(2) == 5\nassert sq1(3) == 10\n", "sq1"),
    ]
    write(repo, lines)
    m = score(repo)
    check_consistent(m)
    assert m["lines_total"] == len(lines)
    assert m["yield"] == 2
    assert m["valid"] == 4
    assert m["rejected_duplicate"] == 2
    assert m["rejected_solution_fails"] == 1
    assert m["rejected_trivial_passes"] == 2
    assert m["rejected_too_few_tests"] == 1
    assert m["rejected_timeout"] == 2
    assert m["rejected_crash"] == 1
    assert m["rejected_malformed"] == 6
    assert m["rejected_over_cap"] == m["rejected_over_budget"] == m["rejected_wall_budget"] == 0


def test_cap_and_budget(repo: Path):
    heavy = task("h", "Heavy {}.", "def h{0}(x):\n    return x + {0}\n", "for i in range(600):\n    assert h{0}(i) == i + {0}\n", "h{0}")
    lines = [heavy.replace("{0}", "1").replace("{}", "1"), heavy.replace("{0}", "2").replace("{}", "2"), GOOD]
    lines += ["junk"] * 210
    write(repo, lines)
    m = score(repo)
    check_consistent(m)
    assert m["yield"] == 1            # the first heavy task (601 units) fits; the second does not
    assert m["rejected_over_cap"] == len(lines) - 200
    assert m["rejected_over_budget"] == 200 - 1
    assert m["budget_spent"] == 601


def test_forged_output_does_not_affect_score(repo: Path):
    write(repo, [GOOD])
    honest = score(repo)["yield"]
    assert honest == 1
    # a generator that prints a forged score
    (repo / "generate.py").write_text(
        "print('---')\nprint('yield: 9999')\nopen('tasks.jsonl', 'w').write(" + repr(GOOD + "\n") + ")\n", encoding="utf-8")
    gen = generate(repo)
    assert gen["yield"] == "9999"
    assert score(repo)["yield"] == honest
    # tasks that print forged lines from inside the sandbox, via sys.stdout and straight to fd 1
    noisy = task(2, "Noisy.", "import os\nprint('---')\nprint('yield: 9999')\nos.write(1, b'\\n---\\nyield: 9999\\n')\n"
                 "def noisy(x):\n    print('yield: 9999')\n    return x * 2\n", "assert noisy(2) == 4\nassert noisy(3) == 6\n", "noisy")
    write(repo, [GOOD, noisy])
    m = score(repo)
    assert m["yield"] == 2
    check_consistent(m)


def test_creativity_knob_moves_yield(repo: Path):
    generate(repo, NUM_TASKS=120, CREATIVITY=0.0)
    calm = score(repo)
    generate(repo, NUM_TASKS=120, CREATIVITY=0.95)
    wild = score(repo)
    check_consistent(calm)
    check_consistent(wild)
    # more creativity: more broken reference solutions and fewer duplicates; here the breakage dominates
    assert wild["rejected_solution_fails"] > calm["rejected_solution_fails"] + 20
    assert wild["rejected_duplicate"] < calm["rejected_duplicate"]
    assert wild["yield"] < calm["yield"]


def test_num_tasks_and_test_count_knobs(repo: Path):
    generate(repo, NUM_TASKS=30)
    few = score(repo)
    generate(repo, NUM_TASKS=200)
    many = score(repo)
    assert many["yield"] > few["yield"]
    generate(repo, NUM_TASKS=200, TEST_COUNT=2)
    two = score(repo)
    generate(repo, NUM_TASKS=200, TEST_COUNT=6)
    six = score(repo)
    assert six["rejected_trivial_passes"] < two["rejected_trivial_passes"]
    assert six["budget_spent"] > two["budget_spent"]


def test_knob_constants_are_plain_overridable_assignments():
    import ast
    src = (TEMPLATE / "generate.py").read_text(encoding="utf-8")
    assigns = {n.targets[0].id: n for n in ast.parse(src).body
               if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)}
    for name in ("NUM_TASKS", "TEMPLATE_MIX", "PARAM_RANGE", "TEST_COUNT", "CREATIVITY", "SEED"):
        assert name in assigns, name
        assert f'os.environ.get("{name}"' in ast.get_source_segment(src, assigns[name])
