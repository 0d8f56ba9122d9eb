"""Metrics from a run's output, constraints, and which of two values is better."""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path

from hive.logs import open_log
from hive.playbook import CONSTRAINT_RE, Objective

KEY_VALUE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-/]*)\s*:\s*(.*?)\s*$")
OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


def _number(text: str) -> float | str:
    try:
        return float(text.replace("_", "")) if text else text
    except ValueError:
        return text


def parse_output(text: str) -> dict[str, float | str]:
    """Parse the run contract: the `key: value` lines after the last line that is exactly `---`."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not starts:
        return {}
    metrics: dict[str, float | str] = {}
    for line in lines[starts[-1] + 1:]:
        match = KEY_VALUE_RE.match(line)
        if match:
            metrics[match.group(1)] = _number(match.group(2))
    return metrics


def parse_regexes(text: str, regexes: dict[str, str]) -> dict[str, float | str]:
    """Metrics from regular expressions over the log; the last match of each wins."""
    metrics: dict[str, float | str] = {}
    for key, pattern in regexes.items():
        matches = re.findall(pattern, text, flags=re.MULTILINE)
        if matches:
            last = matches[-1]
            metrics[key] = _number(last[0] if isinstance(last, tuple) else last)
    return metrics


def read_metrics(log_text: str, workdir: Path | None = None, regexes: dict[str, str] | None = None) -> dict[str, float | str]:
    """All metrics a run produced: `metrics.json` in its folder, then `---` lines, then regexes (later wins)."""
    metrics: dict[str, float | str] = {}
    if workdir is not None:
        path = workdir / "metrics.json"
        if path.is_file():
            try:  # never through a link: it could name any file Hive can read
                with open_log(path, "rb") as fh:
                    data = json.loads(fh.read().decode("utf-8"))
            except (OSError, ValueError, UnicodeDecodeError):
                data = None
            if isinstance(data, dict):
                metrics.update({str(k): v for k, v in data.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)})
    metrics.update(parse_output(log_text))
    if regexes:
        metrics.update(parse_regexes(log_text, regexes))
    return metrics


@dataclass(frozen=True)
class Constraint:
    key: str
    op: str
    limit: float

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        match = CONSTRAINT_RE.match(text)
        if not match:
            raise ValueError(f"constraint {text!r} is not 'key op number'")
        return cls(match.group(1), match.group(2), float(match.group(3).replace("_", "")))

    def violation(self, metrics: dict) -> str | None:
        """None when the metrics satisfy this constraint, else why not, in a few words."""
        value = metrics.get(self.key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{self.key} missing"
        if not OPS[self.op](value, self.limit):
            return f"{self.key} = {value:g} breaks {self.op} {self.limit:g}"
        return None

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.limit:g}"


def metric_value(metrics: dict, key: str) -> float | None:
    """The metric as a finite float, or None when missing, non-numeric, NaN or infinite."""
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def check_constraints(objective: Objective, metrics: dict) -> list[str]:
    """Every constraint the metrics break (empty when all hold)."""
    return [v for c in objective.constraints if (v := Constraint.parse(c).violation(metrics))]


def improvement(objective: Objective, candidate: float, best: float) -> float:
    """How much better the candidate is than the best, positive when better, in the metric's units."""
    return best - candidate if objective.direction == "minimize" else candidate - best
