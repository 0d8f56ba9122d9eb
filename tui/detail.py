"""Plain data for the TUI's experiment and pull-request screens."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hive.logs import open_log
from hive.objective import metric_value
from hive.store import Store
from hive.transcripts import render_entry

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
        self.path = Path(path)
        self.width = width
        self.offset = 0

    def read_new(self) -> str:
        """The entries appended since the last call, as text ("" when none; a line still being written waits)."""
        try:
            with open_log(self.path, "rb") as fh:  # never through a link
                size = fh.seek(0, 2)
                if size < self.offset:  # replaced by a shorter file: start again
                    self.offset = 0
                fh.seek(self.offset)
                data = fh.read(size - self.offset)
        except OSError:
            return ""
        whole = data[:data.rfind(b"\n") + 1]
        self.offset += len(whole)
        shown = []
        for line in whole.decode("utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                shown.append(render_entry(entry, self.width))
        return "".join(f"{text}\n" for text in shown)


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
