"""Plain data for the TUI's experiment and pull-request screens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hive.logs import LogTail
from hive.objective import metric_value
from hive.store import Store
from hive.transcripts import parse_entries, render_entry

TRANSCRIPT_ENTRY_CHARS = 4000  # a longer message or command output is clipped on screen (`hive show` has it all)


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
    transcripts: tuple[tuple[str, str], ...] = ()  # (role, path) of every conversation, in role order


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
                            exp.n_seeds, exp.parent_number, exp.commit, exp.diff, seeds,
                            tuple(sorted((t.role, t.path) for t in store.transcripts(camp.id, exp.number))))


class TranscriptTail:
    """One role's transcript read as it grows: each call renders the whole entries written since the last one."""

    def __init__(self, path: str | Path, width: int = TRANSCRIPT_ENTRY_CHARS):
        self.tail = LogTail(path, None, whole_lines=True)  # never through a link, like a run's log
        self.width = width

    def read_new(self) -> str:
        """The entries appended since the last call, as text ("" when none; a line still being written waits)."""
        return "".join(f"{render_entry(e, self.width)}\n" for e in parse_entries(self.tail.read_new()))


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
