"""Live progress of a run: its curve read from the log, and whether it is clearly behind the best's.

A playbook's `run.progress` gives a regex with two groups, the step and a value (a loss: lower is better unless
`direction` says otherwise). While a run runs, each new progress line is compared with the best experiment's
curve on the *same seed* at the same step (linearly interpolated). The gap is measured in the best's own seed
noise at that step: the standard deviation of its curves over its seeds there. A run whose gap exceeds `margin`
such standard deviations at PATIENCE progress lines in a row, from `min_step` on, is pruned.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PATIENCE = 2  # consecutive progress lines past the margin before a run is pruned (one noisy batch is not enough)

Curve = list[tuple[float, float]]  # (step, value), in the order the run printed them


class ProgressSpec(Protocol):
    regex: str
    min_step: int
    margin: float
    direction: str


def parse_curve(text: str, regex: str) -> Curve:
    """Every (step, value) the regex finds in a log, in order (lines whose numbers do not parse are skipped)."""
    curve: Curve = []
    for match in re.finditer(regex, text, flags=re.MULTILINE):
        try:
            step, value = float(match.group(1)), float(match.group(2))
        except (IndexError, ValueError):
            continue
        if math.isfinite(step):
            curve.append((step, value))
    return curve


def read_curve(path: str | Path, regex: str) -> Curve:
    """The progress curve of a finished run's log ([] when the log is gone)."""
    try:
        return parse_curve(Path(path).read_text(encoding="utf-8", errors="replace"), regex)
    except OSError:
        return []


def value_at(curve: Curve, step: float) -> float | None:
    """The curve's value at `step`, interpolated between its neighbours; None outside the curve."""
    for (s0, v0), (s1, v1) in zip(curve, curve[1:]):
        if s0 <= step <= s1:
            return v0 if s1 == s0 else v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    if curve and curve[-1][0] == step:
        return curve[-1][1]
    return None


@dataclass
class Prune:
    step: float
    value: float
    reference_value: float
    gap: float  # how much worse, in the metric's units
    noise: float  # the reference's seed sd at that step

    def reason(self, reference: str) -> str:
        sds = self.gap / self.noise if self.noise > 0 else math.inf
        return (f"behind at step {self.step:g}: progress {self.value:.6g} vs {reference}'s {self.reference_value:.6g} "
                f"on the same seed (gap {self.gap:.4g} = {sds:.1f} seed sd of {reference} there)")


class ProgressWatch:
    """Follows one run's progress lines and says when it is clearly behind the reference on the same seed."""

    def __init__(self, spec: ProgressSpec, same_seed: Curve, all_seeds: list[Curve]):
        self.spec = spec
        self.same_seed = same_seed
        self.all_seeds = [c for c in all_seeds if c]
        self.curve: Curve = []
        self.behind = 0
        self.pruned: Prune | None = None
        self._partial = ""

    def feed(self, text: str) -> Prune | None:
        """Read more of the log (any chunk, split anywhere); the Prune once the run should stop."""
        if self.pruned is not None:
            return self.pruned
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for point in parse_curve("\n".join(lines), self.spec.regex):
            self.curve.append(point)
            self.pruned = self._check(*point)
            if self.pruned is not None:
                break
        return self.pruned

    def _check(self, step: float, value: float) -> Prune | None:
        if step < self.spec.min_step:
            return None
        reference = value_at(self.same_seed, step)
        others = [v for c in self.all_seeds if (v := value_at(c, step)) is not None]
        if reference is None or len(others) < 2:
            return None
        noise = statistics.stdev(others)
        sign = 1.0 if self.spec.direction == "minimize" else -1.0
        gap = sign * (value - reference) if math.isfinite(value) else math.inf
        if gap > self.spec.margin * noise:
            self.behind += 1
        else:
            self.behind = 0
        if self.behind >= PATIENCE:
            return Prune(step, value, reference, gap, noise)
        return None


def watch_for(spec: ProgressSpec | None, curves: dict[int, Curve], seed: int) -> ProgressWatch | None:
    """A watch against the reference's curves, or None when there is nothing to compare with on this seed."""
    if spec is None or not curves.get(seed) or sum(bool(c) for c in curves.values()) < 2:
        return None
    return ProgressWatch(spec, curves[seed], list(curves.values()))
