"""Plain data for the TUI's experiment and pull-request screens."""

from __future__ import annotations

from dataclasses import dataclass

from hive.objective import metric_value
from hive.store import Store


@dataclass(frozen=True)
class SeedRow:
    seed: int
    status: str
    value: float | None
    wall_seconds: float | None
    devices: str
    log_path: str
    error: str


@dataclass(frozen=True)
class ExperimentDetail:
    number: int
    kind: str
    status: str
    verdict: str
    reason: str
    hypothesis: str
    rationale: str
    metric: str
    mean: float | None
    std: float | None
    p_value: float | None
    n_seeds: int
    parent: int | None
    commit: str
    diff: str
    seeds: list[SeedRow]


def experiment_detail(store: Store, campaign: str, number: int) -> ExperimentDetail | None:
    """One experiment with its seeds, or None when there is no such experiment."""
    camp = store.campaign(campaign)
    exp = store.experiment(camp.id, number) if camp else None
    if exp is None:
        return None
    seeds = [SeedRow(r.seed, r.status, metric_value(r.metrics, camp.objective_metric), r.wall_seconds, r.devices,
                     r.log_path, r.error) for r in store.runs(exp.id)]
    return ExperimentDetail(exp.number, exp.kind, exp.status, exp.verdict or "", exp.verdict_reason, exp.hypothesis,
                            exp.rationale, camp.objective_metric, exp.metric_mean, exp.metric_std, exp.p_value,
                            exp.n_seeds, exp.parent_number, exp.commit, exp.diff, seeds)


# ---- pull requests ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullRequestRow:
    number: int
    status: str
    experiment: int
    title: str
    body: str
    diff: str
    reason: str


def pull_requests(store: Store, campaign: str) -> list[PullRequestRow]:
    camp = store.campaign(campaign)
    if camp is None:
        return []
    return [PullRequestRow(p.number, p.status, p.experiment_number, p.title, p.body, p.diff, p.reason)
            for p in store.pull_requests(camp.id)]
