"""Hive's seed loop on simulated runs, for the benchmarks that need thousands of experiments.

The loop is the graph's (hive/graph.py: run -> critic -> run while the critic asks for more seeds): the first
seed, then one more at a time, the reference running any seed it lacks so a paired critic can pair it. The
decisions are the real Critic's.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

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
class SeedEffects:
    """One campaign's shared per-seed effects, drawn once (the same for every configuration)."""

    noise: SeedNoise
    rng: random.Random
    shared: dict[int, float] = field(default_factory=dict)

    def value(self, truth: float, seed: int) -> float:
        if seed not in self.shared:
            self.shared[seed] = self.rng.gauss(0.0, self.noise.shared_sd)
        return truth + self.shared[seed] + self.rng.gauss(0.0, self.noise.own_sd)


@dataclass
class Judged:
    verdict: Verdict
    values: dict[int, float]
    reference_runs: int  # seeds the reference ran for this experiment
    recheck_runs: int = 0  # runs of the side-by-side recheck of a keep (both sides, fresh seeds)


def judge_sequentially(critic: Critic, seeds: list[int], draw: Callable[[int], float],
                       reference: dict[int, float], draw_reference: Callable[[int], float],
                       reference_number: int = 1, metric: str = "score",
                       pool: list[list[float]] | None = None, fresh: list[int] = ()) -> Judged:
    """Run seeds one at a time while the critic asks for more; `reference` gains the seeds it had to run.

    With `pool` (the campaign's earlier paired differences, one list per experiment), the critic pools its seed
    noise as the graph does (significance.pool_noise), and this experiment's differences are added to it after.
    With `fresh` seeds (objective.recheck_seeds of them), a keep runs again beside the reference on them, as
    the graph's side-by-side recheck does (Critic.recheck).
    """
    values: dict[int, float] = {}
    added = 0
    verdict = Verdict("discard", "no seed ran")
    for seed in seeds:
        values[seed] = draw(seed)
        if critic.test == "paired" and seed not in reference:
            reference[seed] = draw_reference(seed)
            added += 1
        results = [SeedResult(s, "ok", {metric: v}) for s, v in values.items()]
        pooled = pool_noise(pool, POOL_MAX_DF) if pool else None
        verdict = critic.judge(results, reference, reference_number, pooled if pooled and pooled[1] else None)
        if verdict.verdict != "more_seeds":
            break
    rechecked = 0
    if verdict.verdict == "keep" and fresh:
        pooled = pool_noise(pool, POOL_MAX_DF) if pool else None
        mine = [SeedResult(s, "ok", {metric: draw(s)}) for s in fresh]
        theirs = {s: draw_reference(s) for s in fresh}
        verdict = critic.recheck(verdict, mine, theirs, f"exp-{reference_number}",
                                 pooled if pooled and pooled[1] else None)
        rechecked = 2 * len(fresh)
    if pool is not None and len(values) >= 2:
        pool.append([values[s] - reference[s] for s in values if s in reference])
    return Judged(verdict, values, added, rechecked)
