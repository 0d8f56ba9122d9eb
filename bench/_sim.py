"""Hive's seed loop on simulated runs, for the benchmarks that need thousands of experiments.

The loop is the graph's (hive/graph.py: run -> critic -> run while the critic asks for more seeds): the first
seed, then one more at a time, the reference running any seed it lacks so a paired critic can pair it. The
decisions are the real Critic's. A `Drift` adds the slow phases of a shared machine (time-capped training runs
fewer steps in them) and `Moments` the noise of the machine's state when a run starts, both read on a `Clock` of
the campaign's wall time, where a side-by-side pair's two runs start at one moment.
"""

from __future__ import annotations

import bisect
import math
import random
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator

from hive.agents.base import Verdict
from hive.agents.critic import Critic, SeedResult
from hive.agents.significance import POOL_MAX_DF, pool_noise


@dataclass
class SeedNoise:
    """Noise of one seed's metric: a part shared by every configuration on that seed, and the run's own part."""

    shared_sd: float
    own_sd: float

    @property
    def total_sd(self) -> float:
        return math.hypot(self.shared_sd, self.own_sd)

    @classmethod
    def measured(cls, data: dict) -> "SeedNoise":
        """From bench/results/seed_noise.json."""
        return cls(shared_sd=data["sd_shared"], own_sd=data["sd_own"])


@dataclass
class Drift:
    """Slow phases of a shared machine: a time-capped run that starts in one scores `penalty` worse.

    Phases alternate, normal for an exponential time of mean `normal_s` and slow for one of mean `slow_s` (seconds
    of the campaign's wall time); a campaign starts slow with the slow phases' share of the time. Its own random
    stream, so a campaign with drift draws the same seed noise as one without.
    """

    penalty: float
    slow_s: float
    normal_s: float
    rng: random.Random
    edges: list[float] = field(default_factory=list)  # phase boundaries drawn so far, from 0
    starts_slow: bool = False

    def __post_init__(self) -> None:
        self.starts_slow = self.rng.random() < self.slow_s / (self.slow_s + self.normal_s)
        self.edges = [0.0]

    def _slow(self, phase: int) -> bool:
        return (phase % 2 == 0) == self.starts_slow

    def at(self, t: float) -> float:
        while self.edges[-1] <= t:
            mean = self.slow_s if self._slow(len(self.edges) - 1) else self.normal_s
            self.edges.append(self.edges[-1] + self.rng.expovariate(1.0 / mean))
        return self.penalty if self._slow(bisect.bisect_right(self.edges, t) - 1) else 0.0


class Clock:
    """A simulated campaign's wall time on `slots` slots: a run starts now and moves it on by its share of them;
    inside `pair()` both runs start at one moment (the graph grants a side-by-side pair's two leases at once)."""

    def __init__(self, run_seconds: float, slots: int = 2):
        self.now, self.step = 0.0, run_seconds / slots
        self._fixed: float | None = None

    def start(self) -> float:
        at = self.now if self._fixed is None else self._fixed
        self.now += self.step
        return at

    @contextmanager
    def pair(self) -> Iterator[None]:
        self._fixed = self.now
        try:
            yield
        finally:
            self._fixed = None


@dataclass
class Moments:
    """The machine's state when a run starts: a part of its noise shared only by runs started at that moment (a
    side-by-side pair), drawn once per moment with sd `sd`, from its own random stream."""

    sd: float
    rng: random.Random
    drawn: dict[float, float] = field(default_factory=dict)

    def at(self, t: float) -> float:
        if t not in self.drawn:
            self.drawn[t] = self.rng.gauss(0.0, self.sd)
        return self.drawn[t]


@dataclass
class SeedEffects:
    """One campaign's shared per-seed effects, drawn once (the same for every configuration), its drift and the
    noise of the moment each run starts (`Moments`)."""

    noise: SeedNoise
    rng: random.Random
    shared: dict[int, float] = field(default_factory=dict)
    drift: Drift | None = None
    moments: Moments | None = None

    def value(self, truth: float, seed: int, at: float | None = None) -> float:
        """One run's metric; `at` (the run's start on the campaign's clock) is where drift and moments read it."""
        if seed not in self.shared:
            self.shared[seed] = self.rng.gauss(0.0, self.noise.shared_sd)
        timed = 0.0
        if at is not None:
            timed += self.drift.at(at) if self.drift is not None else 0.0
            timed += self.moments.at(at) if self.moments is not None else 0.0
        return truth + self.shared[seed] + self.rng.gauss(0.0, self.noise.own_sd) + timed


@dataclass
class Judged:
    verdict: Verdict
    values: dict[int, float]
    reference_runs: int  # seeds the reference ran for this experiment
    recheck_runs: int = 0  # runs of the side-by-side recheck of a keep (both sides, fresh seeds)


def judge_sequentially(critic: Critic, seeds: list[int], draw: Callable[[int], float],
                       reference: dict[int, float], draw_reference: Callable[[int], float],
                       reference_number: int = 1, metric: str = "score",
                       pool: list[list[float]] | None = None, fresh: list[int] = (),
                       clock: Clock | None = None, side_pool: list[list[float]] | None = None,
                       beside: bool = False) -> Judged:
    """Run seeds one at a time while the critic asks for more; `reference` gains the seeds it had to run.

    With `pool` (the campaign's earlier paired differences, one list per experiment), the critic pools its seed
    noise as the graph does (significance.pool_noise), and this experiment's differences are added to it after.
    With `fresh` seeds (objective.recheck_seeds of them), a keep runs again beside the reference on them, as
    the graph's side-by-side recheck does (Critic.recheck), pooling only earlier rechecks' pairs (`side_pool`,
    which gains this recheck's; graph.pooled_noise keeps the two kinds apart); with a `clock`, each fresh seed's
    two runs start at one moment of it (the draws read the clock themselves). With `beside` (a design Hive does
    not have: search_power's `hive_beside`), every seed of the candidate runs as such a pair, the reference run
    anew beside it, and the critic compares each seed with its partner.
    """
    values: dict[int, float] = {}
    against = {} if beside else reference  # what each seed is compared with
    added = 0
    verdict = Verdict("discard", "no seed ran")
    for seed in seeds:
        if beside:
            with clock.pair() if clock is not None else nullcontext():
                values[seed] = draw(seed)
                against[seed] = draw_reference(seed)
            added += 1
        else:
            values[seed] = draw(seed)
            if critic.test == "paired" and seed not in reference:
                reference[seed] = draw_reference(seed)
                added += 1
        results = [SeedResult(s, "ok", {metric: v}) for s, v in values.items()]
        pooled = pool_noise(pool, POOL_MAX_DF) if pool else None
        verdict = critic.judge(results, against, reference_number, pooled if pooled and pooled[1] else None)
        if verdict.verdict != "more_seeds":
            break
    rechecked = 0
    if verdict.verdict == "keep" and fresh:
        pooled = pool_noise(side_pool, POOL_MAX_DF) if side_pool else None
        mine, theirs = [], {}
        for s in fresh:
            with clock.pair() if clock is not None else nullcontext():
                mine.append(SeedResult(s, "ok", {metric: draw(s)}))
                theirs[s] = draw_reference(s)
        verdict = critic.recheck(verdict, mine, theirs, f"exp-{reference_number}",
                                 pooled if pooled and pooled[1] else None)
        rechecked = 2 * len(fresh)
        if side_pool is not None:
            side_pool.append([m.metrics[metric] - theirs[m.seed] for m in mine])
    if pool is not None and len(values) >= 2:
        pool.append([values[s] - against[s] for s in values if s in against])
    return Judged(verdict, values, added, rechecked)
