"""One seed's outcome as its Run row, the statistics of an experiment's seeds, and a few words on how a seed went."""

from __future__ import annotations

import json
import statistics

from hive.logs import log_tail
from hive.objective import metric_value
from hive.runner import SeedOutcome
from hive.store import Experiment, Run, Store
from hive.store.models import now


def record_seed(store: Store, exp: Experiment, seed: int, outcome: SeedOutcome, devices: list[int]) -> Run:
    """Store one seed's outcome as its Run row."""
    run = store.ensure_run(exp.id, seed)
    error = outcome.error
    if outcome.status != "ok":
        error = f"{outcome.error}\n--- log tail ---\n{log_tail(outcome.log_path)}"
    ran = outcome.invocation
    return store.update(
        Run, run.id, status=outcome.status, metrics_json=json.dumps(outcome.metrics, default=str),
        exit_code=outcome.result.exit_code, wall_seconds=round(outcome.result.wall_seconds, 3),
        peak_rss_mb=outcome.result.peak_rss_mb, devices=",".join(map(str, devices)), log_path=str(outcome.log_path),
        error=error, command=ran.command if ran else "", env_json=json.dumps(ran.env if ran else {}),
        finished_at=now())


def seed_stats(runs: list[Run], metric: str) -> tuple[list[float], float | None, float | None]:
    """The metric of every successful seed, with its mean and sample standard deviation."""
    values = [v for r in runs if r.status == "ok" and (v := metric_value(r.metrics, metric)) is not None]
    mean = statistics.fmean(values) if values else None
    std = statistics.stdev(values) if len(values) > 1 else None  # one seed has no spread, not a spread of 0
    return values, mean, std


def describe_outcome(outcome: SeedOutcome, metric: str) -> str:
    """A few words on how a seed went, for the feed."""
    if outcome.status == "ok":
        value = metric_value(outcome.metrics, metric)
        shown = f"{metric}={value:.6g}" if value is not None else f"{metric} missing"
        return f"{shown} in {outcome.result.wall_seconds:.1f}s"
    return outcome.error.splitlines()[0] if outcome.error else outcome.status
