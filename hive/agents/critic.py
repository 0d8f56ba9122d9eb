"""The critic: hard checks first, then paired, sequential statistics against the best (see significance.py)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from hive.agents.base import Verdict
from hive.agents.significance import (
    look_level,
    looks,
    moderated_p_value,
    paired_p_value,
    shifted_gains,
    welch_p_value,
)
from hive.objective import Constraint, check_constraints, improvement, metric_value
from hive.playbook import Objective


@dataclass
class SeedResult:
    """What the critic needs from one seed."""

    seed: int
    status: str  # ok | failed | timeout | pruned | tampered | cancelled
    metrics: dict
    error: str = ""


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
    """Judges an experiment from its seeds: hard checks, the first-seed screen, then sequential confirmation.

    `test` is "paired" (the candidate's seeds against the reference's values on the same seeds, Hive's default)
    or "welch" (seeds not paired); `max_seeds` is the most seeds a candidate is given (default confirm_seeds).
    """

    def __init__(self, objective: Objective, test: str | None = None, max_seeds: int | None = None):
        self.objective = objective
        self.test = test or getattr(objective, "test", "paired")
        self.max_seeds = max(max_seeds or getattr(objective, "max_seeds", None) or objective.confirm_seeds,
                             objective.confirm_seeds)
        self.looks = looks(objective.confirm_seeds, self.max_seeds)

    @property
    def level(self) -> float:
        """The nominal level at each look (alpha itself when there is one look)."""
        return look_level(self.objective.alpha, self.looks)

    def judge(self, seeds: list[SeedResult], reference: dict[int, float], reference_number: int | None,
              pooled: tuple[float, int] | None = None) -> Verdict:
        """A verdict, or `more_seeds` when the candidate has earned its next seed.

        `pooled` is the variance of paired per-seed differences pooled over the campaign's earlier experiments,
        with its degrees of freedom (significance.pool_noise); the paired test then borrows its strength.
        """
        hard = self._hard_checks(seeds)
        if hard is not None:
            return hard
        values = {s.seed: metric_value(s.metrics, self.objective.metric) for s in seeds}
        mean = statistics.fmean(values.values())
        std = statistics.stdev(values.values()) if len(values) > 1 else None
        if not reference:
            return Verdict("discard", "no best to compare with", mean, std)
        ref = f"exp-{reference_number}" if reference_number else "the best"
        if len(values) == 1:
            return self._screen(values, reference, ref, mean)
        return self._confirm(values, reference, ref, mean, std, pooled)

    def _screen(self, values: dict[int, float], reference: dict[int, float], ref: str, mean: float) -> Verdict:
        """One seed: against the reference's value on the same seed (or its mean, unpaired)."""
        obj = self.objective
        seed, value = next(iter(values.items()))
        if self.test == "paired" and seed in reference:
            against, label = reference[seed], f"{ref} on seed {seed}"
        else:
            missing = f"; {ref} has no seed {seed}" if self.test == "paired" else ""
            against, label = statistics.fmean(reference.values()), f"{ref}'s mean{missing}"
        gain = improvement(obj, value, against)
        shown = f"seed {seed} {obj.metric}={value:.6g} vs {label} {against:.6g} (gain {gain:+.4g})"
        paired_gain = gain if self.test == "paired" and seed in reference else None
        verdict = self._screen_verdict(gain, shown, mean)
        verdict.gain = paired_gain
        return verdict

    def _screen_verdict(self, gain: float, shown: str, mean: float) -> Verdict:
        obj = self.objective
        if self.max_seeds == 1:  # one seed decides (no test was asked for)
            if gain > obj.min_delta:
                return Verdict("keep", f"{shown}, min_delta {obj.min_delta:g}; one seed, no test", mean)
            return Verdict("discard", f"{shown} is not above min_delta {obj.min_delta:g}", mean)
        if gain <= 0:
            return Verdict("discard", f"first {shown} does not beat it", mean)
        return Verdict("more_seeds", f"first {shown}; confirming", mean, seeds_wanted=1)

    def _confirm(self, values: dict[int, float], reference: dict[int, float], ref: str, mean: float,
                 std: float | None, pooled: tuple[float, int] | None = None) -> Verdict:
        obj = self.objective
        n = len(values)
        missing = [s for s in values if s not in reference]
        if self.test == "paired" and not missing:
            shifted = shifted_gains(obj.direction, list(values.values()), [reference[s] for s in values],
                                    obj.min_delta)
            gain = statistics.fmean(shifted) + obj.min_delta
            spread = statistics.stdev(shifted)
            method = f"paired t-test on seeds {','.join(map(str, values))}: gain {gain:+.4g} ± {spread:.2g}"
            p, used = moderated_p_value(shifted, *pooled) if pooled else (paired_p_value(shifted), False)
            if used:
                method += f" (seed noise {pooled[0] ** 0.5:.2g} pooled over {pooled[1]} df of earlier experiments)"
        else:
            why = f" ({ref} has no seed {', '.join(map(str, missing))})" if self.test == "paired" else ""
            best = list(reference.values())
            gain = improvement(obj, mean, statistics.fmean(best))
            p = welch_p_value(obj.direction, list(values.values()), best, obj.min_delta)
            method = (f"Welch t-test{why}: mean {mean:.6g} over {n} seeds vs {ref} {statistics.fmean(best):.6g} "
                      f"over {len(best)}, gain {gain:+.4g}")
        verdict = self._decide(n, gain, p, method, ref, mean, std)
        verdict.gain = gain
        return verdict

    def _decide(self, n: int, gain: float, p: float | None, method: str, ref: str, mean: float,
                std: float | None) -> Verdict:
        obj = self.objective
        look = n in self.looks
        level = self.level
        p_text = f", p={p:.3g}" if p is not None else ""
        evidence = (f"{method} vs {ref} (min_delta {obj.min_delta:g}{p_text}, level {level:.3g} at each of "
                    f"{len(self.looks)} look(s) for alpha {obj.alpha:g})")
        if look and gain > obj.min_delta and p is not None and p < level:
            return Verdict("keep", evidence, mean, std, p)
        if n >= self.looks[-1]:
            if gain <= 0:
                return Verdict("discard", f"no gain: {evidence}", mean, std, p)
            if gain <= obj.min_delta:
                return Verdict("discard", f"gain below min_delta: {evidence}", mean, std, p)
            return Verdict("discard", f"not significant after {n} seeds: {evidence}", mean, std, p)
        # futility: no better than the reference so far, or (at a look) not even min_delta better
        if gain <= 0 or (look and gain <= obj.min_delta):
            return Verdict("discard", f"stopped for futility after {n} seeds: {evidence}", mean, std, p)
        return Verdict("more_seeds", f"promising after {n} seeds: {evidence}", mean, std, p, seeds_wanted=1)

    def recheck(self, verdict: Verdict, mine: list[SeedResult], theirs: dict[int, float], ref: str,
                pooled: tuple[float, int] | None = None) -> Verdict:
        """A keep, run again beside `ref` on fresh seeds (each pair at the same time): it stands when it still
        beats `ref` there, one-sided paired test of gain > 0 at alpha (moderated by the pooled noise when given);
        otherwise a discard that says so. Only this test's pairs share the machine's state: drift between the
        best's runs and the candidate's, and the luck of the seeds that earned the keep, cannot carry it."""
        obj = self.objective
        failed = self._hard_checks(mine)
        values = {s.seed: metric_value(s.metrics, obj.metric) for s in mine}
        pairs = [s for s in values if s in theirs]
        if failed is not None or len(pairs) < 2:
            why = failed.reason if failed is not None else f"{ref} has too few of the fresh seeds"
            return Verdict("discard", f"{verdict.reason}; side by side on fresh seeds: {why}", verdict.mean,
                           verdict.std, verdict.p_value, reference=verdict.reference, gain=verdict.gain)
        gains = shifted_gains(obj.direction, [values[s] for s in pairs], [theirs[s] for s in pairs], 0.0)
        p, _ = moderated_p_value(gains, *pooled) if pooled else (paired_p_value(gains), False)
        gain = statistics.fmean(gains)
        shown = (f"side by side with {ref} on fresh seeds {','.join(map(str, pairs))}, each pair run at the same "
                 f"time: gain {gain:+.4g} ± {statistics.stdev(gains):.2g}, p={p:.3g} (alpha {obj.alpha:g})")
        if gain > 0 and p is not None and p < obj.alpha:
            return Verdict("keep", f"{verdict.reason}; holds {shown}", verdict.mean, verdict.std, verdict.p_value,
                           reference=verdict.reference, gain=verdict.gain)
        return Verdict("discard", f"{verdict.reason}; but does not hold {shown}", verdict.mean, verdict.std,
                       verdict.p_value, reference=verdict.reference, gain=verdict.gain)

    def _hard_checks(self, seeds: list[SeedResult]) -> Verdict | None:
        obj = self.objective
        for s in seeds:
            if s.status == "tampered":
                return Verdict("rejected", f"seed {s.seed}: {s.error}")
            if s.status == "timeout":
                return Verdict("timeout", f"seed {s.seed}: {s.error}")
            if s.status == "pruned":
                return Verdict("pruned", f"seed {s.seed}: {s.error.splitlines()[0] if s.error else 'pruned'}")
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
