"""The real Parameter Golf playbook scores the logs it is meant to improve: the baseline's and the top records'."""

from __future__ import annotations

from pathlib import Path

import pytest

from hive.objective import check_constraints, read_metrics
from hive.playbook import load_playbook
from hive.playbook.constraints import check_configuration
from tests.conftest import PLAYBOOKS

LOGS = Path(__file__).parent / "fixtures" / "param_golf_logs"


@pytest.fixture(scope="module")
def playbook():
    return load_playbook(PLAYBOOKS / "param_golf_gpu.yaml")


def metrics(playbook, name: str, text: str | None = None) -> dict:
    log = text if text is not None else (LOGS / name).read_text()
    return read_metrics(log, None, playbook.objective.metrics_regex)


def test_the_baseline_log_is_scored_from_its_round_trip(playbook):
    m = metrics(playbook, "baseline.log")
    assert m["val_bpb"] == 1.2243657 and m["val_loss"] == 2.07269931
    assert m["artifact_bytes"] == 15863533
    assert m["train_ms"] == 600038  # the stopping line, not the first step's 0 nor a middle step
    assert m["steps"] == 13780
    assert check_constraints(playbook.objective, m) == []


def test_a_top_record_log_is_scored_from_its_final_line(playbook):
    m = metrics(playbook, "record.log")
    # the last val_bpb printed: after the pre-quantisation and quantised diagnostics
    assert m["val_bpb"] == 1.05803761 and m["val_loss"] == 2.31538446
    assert m["artifact_bytes"] == 15989499  # 'quantized+pergroup', not 'int8+zlib'
    assert m["train_ms"] == 596137  # 'train_time: 596137ms', with a space
    assert m["eval_ms"] == 591446 and m["steps"] == 4703
    assert check_constraints(playbook.objective, m) == []


def test_a_log_cut_before_the_round_trip_has_no_score(playbook):
    """A run that stops after training (or after the pre-quantisation diagnostic) must not be scored on a step
    line's val_bpb: the metric is missing, and the critic calls that invalid."""
    for name, cut in (("baseline.log", "Total submission size"), ("record.log", "Total submission size")):
        text = (LOGS / name).read_text()
        m = metrics(playbook, name, text[:text.index(cut)])
        assert "val_bpb" not in m and "val_loss" not in m, name
        assert m["train_ms"] > 0


def test_over_budget_logs_break_the_constraints(playbook):
    text = (LOGS / "record.log").read_text()
    slow = text.replace("train_time: 596137ms", "train_time: 612000ms").replace("15989499 bytes", "16000001 bytes")
    broken = check_constraints(playbook.objective, metrics(playbook, "record.log", slow))
    assert len(broken) == 2 and any("artifact_bytes" in b for b in broken) and any("train_ms" in b for b in broken)


def test_configurations_that_would_crash_train_gpt_are_refused_before_they_run(playbook):
    """NUM_KV_HEADS must divide NUM_HEADS, and MLP_MULT goes through int(): neither reaches a run."""
    good = {"NUM_HEADS": 8, "NUM_KV_HEADS": 4, "MODEL_DIM": 512, "MLP_MULT": 2.0}
    values, problems = check_configuration(playbook.knobs, playbook.knob_constraints, good)
    assert problems == [] and values["MLP_MULT"] == 2 and isinstance(values["MLP_MULT"], int)
    _, problems = check_configuration(playbook.knobs, playbook.knob_constraints, {**good, "NUM_HEADS": 4,
                                                                                  "NUM_KV_HEADS": 8})
    assert problems == ["knob constraint 'NUM_HEADS % NUM_KV_HEADS == 0' fails for NUM_HEADS=4, NUM_KV_HEADS=8"]
    _, problems = check_configuration(playbook.knobs, playbook.knob_constraints, {**good, "MLP_MULT": 2.5})
    assert problems == ["MLP_MULT=2.5 is not an integer (an int knob)"]
