"""The critic: hard checks first, then noise-aware statistics against the best (one-sided Welch t-test)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

from hive.agents.base import Verdict
from hive.objective import Constraint, check_constraints, improvement, metric_value
from hive.playbook import Objective


@dataclass
class SeedResult:
    """What the critic needs from one seed."""

    seed: int
    status: str  # ok | failed | timeout | tampered | cancelled
    metrics: dict
    error: str = ""


def welch_p_value(objective: Objective, candidate: list[float], best: list[float]) -> float | None:
    """P-value of 'candidate beats best by more than min_delta' (one-sided Welch).

    Against a best with a single value, a one-sample t-test of the candidate's seeds; None when the candidate
    has a single value (a playbook with confirm_seeds: 1 asked for no test).
    """
    if len(candidate) < 2 or not best:
        return None
    shift = objective.min_delta
    if objective.direction == "minimize":
        shifted, alternative = [v + shift for v in candidate], "less"
    else:
        shifted, alternative = [v - shift for v in candidate], "greater"
    if statistics.pvariance(shifted) == 0 and (len(best) < 2 or statistics.pvariance(best) == 0):
        better = improvement(objective, statistics.fmean(candidate), statistics.fmean(best)) > shift
        return 0.0 if better else 1.0
    if len(best) < 2:
        result = stats.ttest_1samp(shifted, best[0], alternative=alternative)
    else:
        result = stats.ttest_ind(shifted, best, equal_var=False, alternative=alternative)
    p = float(result.pvalue)
    return p if math.isfinite(p) else 1.0


def constraint_excess(objective: Objective, metrics: dict) -> list[float]:
    """How far each constraint is broken (0 where it holds), for a constraint-aware sampler."""
    out = []
    for text in objective.constraints:
        c = Constraint.parse(text)
        value = metric_value(metrics, c.key)
        if value is None:
            out.append(1.0)
        elif c.op in ("<=", "<"):
            out.append(max(0.0, value - c.limit))
        elif c.op in (">=", ">"):
            out.append(max(0.0, c.limit - value))
        else:
            out.append(abs(value - c.limit))
    return out


class Critic:
    """Judges an experiment from its seeds: hard checks, then screening, then confirmation."""

    def __init__(self, objective: Objective):
        self.objective = objective

    def judge(self, seeds: list[SeedResult], best_values: list[float], best_number: int | None) -> Verdict:
        """A verdict, or `more_seeds` with how many more the candidate has earned."""
        obj = self.objective
        hard = self._hard_checks(seeds)
        if hard is not None:
            return hard
        values = [metric_value(s.metrics, obj.metric) for s in seeds]
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else None
        if not best_values:
            return Verdict("discard", "no best to compare with", mean, std)
        best_mean = statistics.fmean(best_values)
        gain = improvement(obj, mean, best_mean)
        ref = f"exp-{best_number}" if best_number else "the best"
        if len(seeds) == 1 and obj.confirm_seeds > 1:
            if gain <= 0:
                return Verdict("discard", f"first seed {obj.metric}={mean:.6g} does not beat {ref} "
                                          f"({best_mean:.6g})", mean, std)
            return Verdict("more_seeds", f"first seed beats {ref} by {gain:.4g}; confirming",
                           mean, std, seeds_wanted=obj.confirm_seeds - 1)
        p = welch_p_value(obj, values, best_values)
        spread = f" ± {std:.2g}" if std is not None else ""
        evidence = (f"mean {mean:.6g}{spread} over {len(values)} seed(s) vs {ref} {best_mean:.6g} "
                    f"(gain {gain:+.4g}, min_delta {obj.min_delta:g}" + (f", p={p:.3g})" if p is not None else ")"))
        if gain <= 0:
            return Verdict("discard", f"no gain: {evidence}", mean, std, p)
        if gain <= obj.min_delta:
            return Verdict("discard", f"gain below min_delta: {evidence}", mean, std, p)
        if p is not None and p >= obj.alpha:
            return Verdict("discard", f"not significant at alpha {obj.alpha:g}: {evidence}", mean, std, p)
        return Verdict("keep", evidence, mean, std, p)

    def _hard_checks(self, seeds: list[SeedResult]) -> Verdict | None:
        obj = self.objective
        for s in seeds:
            if s.status == "tampered":
                return Verdict("rejected", f"seed {s.seed}: {s.error}")
            if s.status == "timeout":
                return Verdict("timeout", f"seed {s.seed}: {s.error}")
            if s.status != "ok":
                return Verdict("crash", f"seed {s.seed}: {s.error.splitlines()[0] if s.error else s.status}")
            if metric_value(s.metrics, obj.metric) is None:
                raw = s.metrics.get(obj.metric, "missing")
                return Verdict("invalid", f"seed {s.seed}: metric {obj.metric} is {raw} (must be a finite number)")
            broken = check_constraints(obj, s.metrics)
            if broken:
                return Verdict("invalid", f"seed {s.seed}: constraint broken: {'; '.join(broken)}")
        return None


def lesson_for(hypothesis: str, verdict: Verdict, metric: str) -> str:
    """One line a later proposer reads: what changed and what happened."""
    value = f" ({metric} {verdict.mean:.6g})" if verdict.mean is not None else ""
    reason = verdict.reason.split("\n")[0][:200]
    return f"{hypothesis[:160]} -> {verdict.verdict}{value}: {reason}"
