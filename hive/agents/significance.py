"""The critic's tests: one-sided paired and Welch t-tests shifted by min_delta, and the sequential boundary.

A candidate is confirmed seed by seed. At every *look* (each seed count from `confirm_seeds` to `max_seeds`) the
one-sided p-value is compared with one nominal level, the same at every look (Pocock's rule). The level is the
`alpha`-quantile of the smallest p-value over the looks when nothing differs, found by simulating paired
t-statistics: so the chance that *any* look keeps a change that is no better than the best by `min_delta` is
`alpha`. The first-seed screen and the futility stops only remove ways to reach a keep, so they keep it below.
"""

from __future__ import annotations

import math
import statistics
from functools import lru_cache

import numpy as np
from scipy import stats

CALIBRATION_RUNS = 100_000  # simulated null confirmations per boundary: the rate it gives is alpha within 3 %
CALIBRATION_SEED = 20261122
POOL_MAX_DF = 30  # at most this weight for the pool, so a campaign's old noise cannot swamp a candidate's own
HETEROGENEITY = 0.05  # a candidate whose differences vary more than the pool's at this level is tested on its own


def shifted_gains(direction: str, candidate: list[float], reference: list[float], min_delta: float) -> list[float]:
    """Per-seed gain of the candidate over the reference (positive = better), less `min_delta`."""
    sign = 1.0 if direction == "minimize" else -1.0
    return [sign * (r - c) - min_delta for c, r in zip(candidate, reference)]


def paired_p_value(shifted: list[float]) -> float | None:
    """P-value of 'the mean shifted gain is > 0' (one-sided paired t-test); None with fewer than two pairs."""
    if len(shifted) < 2:
        return None
    if statistics.pvariance(shifted) == 0:
        return 0.0 if statistics.fmean(shifted) > 0 else 1.0
    p = float(stats.ttest_1samp(shifted, 0.0, alternative="greater").pvalue)
    return p if math.isfinite(p) else 1.0


def moderated_p_value(shifted: list[float], pooled_variance: float, pooled_df: int) -> tuple[float | None, bool]:
    """One-sided paired p-value with the seed noise pooled from earlier experiments (a moderated t-test).

    The variance of the per-seed differences is the df-weighted mean of this candidate's own and the pool's
    (limma's moderated t, with the prior taken from the campaign's earlier paired confirmations), on the
    pooled degrees of freedom. Where this candidate's own differences vary more than the pool's would let them
    (an F test at HETEROGENEITY), its own variance alone is used: the plain paired test. Returns the p-value and
    whether the pool was used.
    """
    n = len(shifted)
    if n < 2 or pooled_df < 1 or pooled_variance <= 0:
        return paired_p_value(shifted), False
    own = statistics.variance(shifted)
    if own / pooled_variance > stats.f.ppf(1 - HETEROGENEITY, n - 1, pooled_df):
        return paired_p_value(shifted), False
    variance = (pooled_df * pooled_variance + (n - 1) * own) / (pooled_df + n - 1)
    t = statistics.fmean(shifted) / math.sqrt(variance / n)
    return float(stats.t.sf(t, pooled_df + n - 1)), True


def pool_noise(samples: list[list[float]], max_df: int) -> tuple[float, int]:
    """The pooled variance of paired differences over several experiments, with its degrees of freedom (capped)."""
    usable = [s for s in samples if len(s) >= 2]
    df = sum(len(s) - 1 for s in usable)
    if df == 0:
        return 0.0, 0
    variance = sum((len(s) - 1) * statistics.variance(s) for s in usable) / df
    return variance, min(df, max_df)


def welch_p_value(direction: str, candidate: list[float], reference: list[float], min_delta: float) -> float | None:
    """P-value of 'candidate beats reference by more than min_delta' (one-sided Welch, seeds not paired).

    Against a reference with a single value, a one-sample t-test of the candidate's seeds; None when the
    candidate has a single value.
    """
    if len(candidate) < 2 or not reference:
        return None
    if direction == "minimize":
        shifted, alternative = [v + min_delta for v in candidate], "less"
    else:
        shifted, alternative = [v - min_delta for v in candidate], "greater"
    if statistics.pvariance(shifted) == 0 and (len(reference) < 2 or statistics.pvariance(reference) == 0):
        gap = statistics.fmean(shifted) - statistics.fmean(reference)
        return 0.0 if (gap < 0 if direction == "minimize" else gap > 0) else 1.0
    if len(reference) < 2:
        result = stats.ttest_1samp(shifted, reference[0], alternative=alternative)
    else:
        result = stats.ttest_ind(shifted, reference, equal_var=False, alternative=alternative)
    p = float(result.pvalue)
    return p if math.isfinite(p) else 1.0


def looks(confirm_seeds: int, max_seeds: int) -> tuple[int, ...]:
    """The seed counts at which a keep may be decided: confirm_seeds (at least 2) up to max_seeds."""
    first = max(2, confirm_seeds)
    return tuple(range(first, max(first, max_seeds) + 1))


@lru_cache(maxsize=64)
def look_level(alpha: float, at: tuple[int, ...]) -> float:
    """The nominal one-sided level used at every look so that P(some look rejects | no real gain) = alpha."""
    if len(at) <= 1:
        return alpha
    rng = np.random.default_rng(CALIBRATION_SEED)
    gains = rng.standard_normal((CALIBRATION_RUNS, at[-1]))
    smallest = np.ones(CALIBRATION_RUNS)
    for n in at:
        sample = gains[:, :n]
        t = sample.mean(axis=1) / (sample.std(axis=1, ddof=1) / math.sqrt(n))
        smallest = np.minimum(smallest, stats.t.sf(t, n - 1))
    return float(np.quantile(smallest, alpha))


def keep_power(test: str, at: tuple[int, ...], alpha: float, effect: float) -> tuple[float, float]:
    """How often a candidate whose true gain is `effect` seed standard deviations is kept by the last look, and
    the p-value its typical seeds give there: (power, p). Non-central t at the last look, with the sequential
    level; for "welch" the seeds are unpaired n against n, for "paired" the sd is that of per-seed differences."""
    n = at[-1]
    level = look_level(alpha, at)
    if test == "welch":
        df, ncp = 2 * n - 2, effect * math.sqrt(n / 2)
    else:
        df, ncp = n - 1, effect * math.sqrt(n)
    critical = stats.t.isf(level, df)
    return float(stats.nct.sf(critical, df, ncp)), float(stats.t.sf(ncp, df))
