"""Output parsing (the run contract) and constraints."""

import json

from hive.objective import Constraint, check_constraints, parse_output, parse_regexes, read_metrics
from hive.playbook import Objective


def test_key_values_after_the_last_separator():
    text = "noise: 1\n---\nval_bpb: 9\n---\nval_bpb: 1.25\nsteps: 10\nname: tiny\nnot a pair\n"
    assert parse_output(text) == {"val_bpb": 1.25, "steps": 10.0, "name": "tiny"}


def test_no_separator_means_no_metrics():
    assert parse_output("val_bpb: 1.0\n") == {}


def test_nan_and_inf_parse_as_floats_not_crash():
    metrics = parse_output("---\nloss: nan\nbig: inf\n")
    assert metrics["loss"] != metrics["loss"] and metrics["big"] == float("inf")


def test_regex_last_match_wins():
    log = "step 1 val_loss:3.5\nstep 2 val_loss:2.25\nfinal_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.2244\n"
    got = parse_regexes(log, {"val_loss": r"val_loss:([0-9.]+)", "val_bpb": r"val_bpb:([0-9.]+)", "x": r"x=(\d+)"})
    assert got == {"val_loss": 2.0, "val_bpb": 1.2244}


def test_metrics_json_then_lines_then_regex(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"a": 1, "b": 2, "flag": True, "nested": {"x": 1}}))
    got = read_metrics("---\nb: 3\n", tmp_path, {"c": r"c=(\d+)"})
    assert got == {"a": 1, "b": 3.0}
    (tmp_path / "metrics.json").write_text("{broken")
    assert read_metrics("---\nb: 3\n", tmp_path) == {"b": 3.0}


def test_constraints():
    obj = Objective(metric="val_bpb", constraints=["artifact_bytes <= 16_000_000", "train_seconds < 600"])
    assert check_constraints(obj, {"artifact_bytes": 15_999_999, "train_seconds": 10}) == []
    broken = check_constraints(obj, {"artifact_bytes": 16_000_001, "train_seconds": float("nan")})
    assert broken == ["artifact_bytes = 1.6e+07 breaks <= 1.6e+07", "train_seconds missing"]
    assert str(Constraint.parse("x>=2")) == "x >= 2"
