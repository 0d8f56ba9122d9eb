"""Playbook schema: shipped playbooks validate; every mistake is one line naming the field, exit 2."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from hive.agents.significance import keep_power, looks
from hive.errors import BadInput
from hive.knobs import top_level_assignments
from hive.playbook import load_playbook, matches_any
from hive.playbook.changes import playbook_changes
from tests.conftest import PLAYBOOKS, run_hive

GOOD = textwrap.dedent("""
    name: demo
    source: tpl
    editable: ["train.py"]
    protected: ["score.py"]
    run: {command: python train.py, timeout: 10}
    objective: {metric: loss, direction: minimize, constraints: ["bytes <= 100"]}
    knobs:
      - {name: LR, type: float, low: 0.001, high: 1, log: true, bind: {file: train.py, assign: LR}}
      - {name: STEPS, type: int, low: 1, high: 9, bind: {flag: --steps}}
      - {name: ACT, type: categorical, choices: [relu, gelu], bind: {env: ACT}}
    profiles:
      big: {run: {timeout: 99}}
""")


@pytest.fixture
def book(tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "train.py").write_text("import os\nLR = 0.1  # rate\nSTEPS: int = 3\n")

    def write(text: str = GOOD) -> Path:
        path = tmp_path / "book.yaml"
        path.write_text(text)
        return path
    return write


@pytest.mark.parametrize("path", sorted(PLAYBOOKS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_playbook_validates(hive, path):
    result = hive("playbook", "validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_good_playbook_loads_with_bindings(book):
    pb = load_playbook(book())
    assert [k.name for k in pb.knobs] == ["LR", "STEPS", "ACT"]
    assert pb.run.seeds == [1, 2, 3, 4, 5]
    assert pb.executor.kind == "local"


@pytest.mark.parametrize("mutate, field", [
    (lambda t: t.replace("timeout: 10", "timeout: soon"), "run.timeout"),
    (lambda t: t.replace("source: tpl\n", ""), "source"),
    (lambda t: t + "colour: blue\n", "colour"),
    (lambda t: t.replace("file: train.py, assign: LR", "file: nope.py, assign: LR"), "knobs.0.bind.file"),
    (lambda t: t.replace("assign: LR}", "assign: NOT_THERE}"), "knobs.0.bind.assign"),
    (lambda t: t.replace("direction: minimize", "direction: down"), "objective.direction"),
    (lambda t: t.replace('"bytes <= 100"', '"bytes about 100"'), "objective.constraints"),
    (lambda t: t.replace("low: 1, high: 9", "low: 9, high: 1"), "knobs.1"),
    (lambda t: t.replace("source: tpl", "source: missing_folder"), "source"),
    (lambda t: t.replace("name: demo", "name: 'bad name!'"), "name"),
])
def test_mistakes_exit_2_with_one_line_naming_the_field(hive, book, mutate, field):
    path = book(mutate(GOOD))
    result = hive("playbook", "validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert field in lines[0]
    assert "Traceback" not in result.stderr


def test_overrides_keep_types_and_reach_lists(book):
    pb = load_playbook(book(), ["run.timeout=42", "knobs.1.high=20", "run.seeds=[7, 8, 9]", "budget.max_experiments=3"])
    assert pb.run.timeout == 42 and pb.knobs[1].high == 20 and pb.run.seeds == [7, 8, 9]
    assert pb.budget.max_experiments == 3


def test_cross_field_mistakes_are_caught_before_a_campaign_starts(book):
    with pytest.raises(BadInput, match="confirm_seeds \\(3\\) needs at least that many run.seeds"):
        load_playbook(book(), ["run.seeds=[1]"])
    with pytest.raises(BadInput, match="'knobs' is empty"):
        load_playbook(book(), ["knobs=[]"])
    assert load_playbook(book(), ["knobs=[]", "strategist=llm"]).knobs == []
    with pytest.raises(BadInput, match="only for score.command"):
        load_playbook(book(), ["run.command=python {harness}/score.py"])


def test_bad_override_names_the_key(book):
    with pytest.raises(BadInput, match="knobs.9"):
        load_playbook(book(), ["knobs.9.low=1"])
    with pytest.raises(BadInput, match="run.timeout"):
        load_playbook(book(), ["run.timeout=-1"])
    with pytest.raises(BadInput, match="key.path=value"):
        load_playbook(book(), ["run.timeout"])


def test_profiles_apply_and_unknown_ones_are_named(book):
    assert load_playbook(book(), ["profile=big"]).run.timeout == 99
    with pytest.raises(BadInput, match="unknown profile 'huge' \\(valid: big\\)"):
        load_playbook(book(), ["profile=huge"])


def test_not_yaml_and_not_a_mapping(book):
    with pytest.raises(BadInput, match="not valid YAML"):
        load_playbook(book("name: [unclosed\n"))
    with pytest.raises(BadInput, match="YAML mapping"):
        load_playbook(book("- a\n- b\n"))


def test_missing_playbook_file_is_bad_input(hive, tmp_path):
    result = hive("playbook", "validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "not found" in result.stderr


def test_schema_is_json_schema(hive):
    import json
    schema = json.loads(hive("playbook", "schema").stdout)
    assert schema["title"] == "Playbook" and "objective" in schema["properties"]


def test_globs():
    assert matches_any("data/a/b.bin", ["data/**"])
    assert matches_any("data/x.bin", ["data"])
    assert matches_any("src/m.py", ["**/*.py"]) and matches_any("m.py", ["**/*.py"])
    assert not matches_any("train.py.bak", ["train.py"])
    assert not matches_any("other/train.py", ["train.py"])


def test_top_level_assignments_ignore_nested():
    names = top_level_assignments("A = 1\nB: int = 2\ndef f():\n    C = 3\nif True:\n    D = 4\nE, F = 1, 2\n")
    assert set(names) == {"A", "B"}


def test_playbook_changes_say_which_fields_change_what_runs_measure():
    old = {"description": "a", "budget": {"max_experiments": 5}, "run": {"command": "python t.py", "timeout": 60,
           "seeds": [1, 2]}, "knobs": [{"name": "LR"}], "objective": {"alpha": 0.01}, "rules": ""}
    new = {"description": "b", "budget": {"max_experiments": 9}, "run": {"command": "python t.py --x", "timeout": 90,
           "seeds": [1, 2, 3]}, "knobs": [{"name": "LR"}, {"name": "WD"}], "objective": {"alpha": 0.05}, "rules": "x"}
    changes = {c.path: c.affects_runs for c in playbook_changes(old, new)}
    assert changes == {"description": False, "budget.max_experiments": False, "run.command": True,
                       "run.timeout": False, "run.seeds": True, "knobs": True, "objective.alpha": True, "rules": False}
    assert playbook_changes(old, old) == []


def test_validate_warns_when_the_seeds_and_test_cannot_keep_a_clear_gain(tmp_path):
    """Two seeds at alpha 0.05 keep a gain of 2 seed-sd a third of the time: validate says so (still valid, exit 0);
    the shipped quickstart's seeds are enough and get no warning."""
    two = ["-c", "run.seeds=[1,2]", "-c", "objective.confirm_seeds=2", "-c", "objective.alpha=0.05"]
    fixture = str(Path(__file__).parent / "fixtures" / "charflags.yaml")
    proc = run_hive("playbook", "validate", fixture, *two, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    power, p = keep_power("paired", looks(2, 2), 0.05, 2.0)
    assert power < 0.5 and p > 0.05  # the typical p of a clear gain does not even reach alpha
    assert proc.stderr.startswith("warning: objective: underpowered: with at most 2 seed(s), the paired test at "
                                  f"alpha 0.05 keeps a gain of 2 seed standard deviations only {power:.0%}")
    data = json.loads(run_hive("playbook", "validate", fixture, *two, "--json", cwd=tmp_path).stdout)
    assert len(data["warnings"]) == 1 and "underpowered" in data["warnings"][0]
    enough = json.loads(run_hive("playbook", "validate", fixture, "--json", cwd=tmp_path).stdout)
    assert enough["warnings"] == []
    # the computation tracks what the critic does: more seeds or a larger alpha give more power
    assert keep_power("paired", looks(3, 5), 0.05, 2.0)[0] > keep_power("paired", looks(2, 2), 0.05, 2.0)[0]
    assert keep_power("welch", looks(2, 2), 0.01, 2.0)[0] < keep_power("welch", looks(2, 2), 0.05, 2.0)[0]
