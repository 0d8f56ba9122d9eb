"""The roles' protocols and the data they exchange: Proposal, CampaignView, Verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

VerdictName = Literal["baseline", "keep", "discard", "crash", "timeout", "pruned", "invalid", "edit_failed",
                      "rejected", "no_proposal"]


PARENT_VERDICTS = ("keep", "baseline", "discard", "pruned", "invalid", "crash", "timeout")  # their commits ran


def parent_problem(number: int, status: str | None, verdict: str | None) -> str | None:
    """Why an experiment cannot be a proposal's parent (its commit never ran, or broke the rules), else None."""
    if status not in (None, "done") or verdict is None:
        return f"#{number} has not finished"
    if verdict not in PARENT_VERDICTS:
        return f"#{number} is '{verdict}', so there is no commit of it to build on"
    return None


@dataclass
class Proposal:
    """What to try next: a hypothesis, and either knob values (Optuna) or a free-form plan (LLM)."""

    hypothesis: str
    rationale: str = ""
    parent: int | None = None  # experiment number to start from; None means the current best
    knobs: dict[str, Any] = field(default_factory=dict)
    plan: str = ""
    trial: int | None = None  # the Optuna trial this proposal came from
    strategist: str = ""
    combines: list[int] = field(default_factory=list)  # the two experiments a combination joins (best, win)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Proposal":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class ExperimentBrief:
    """One experiment as the proposer sees it."""

    number: int
    hypothesis: str
    verdict: str | None
    reason: str = ""
    metric_mean: float | None = None
    metric_std: float | None = None
    n_seeds: int = 0
    knobs: dict[str, Any] = field(default_factory=dict)
    diff: str = ""
    parent: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # mean over its successful seeds, every key scored
    headroom: list[str] = field(default_factory=list)  # each constraint: "artifact_bytes 959,123 of 1,000,000"
    crash_tail: str = ""  # the last lines of a failed seed's log (traceback), for a crash nobody repaired


@dataclass
class FileOutline:
    """An editable file as the proposer sees it without reading it: size and top-level names."""

    path: str
    bytes: int
    lines: int
    names: list[str]
    more_names: int = 0


@dataclass
class CampaignView:
    """The campaign context a proposer reads: rules, leaderboard, recent experiments, in flight, lessons."""

    name: str
    metric: str
    direction: str
    constraints: list[str]
    rules: str
    knobs: list[dict[str, Any]]
    editable: list[str]
    protected: list[str]
    baseline: ExperimentBrief | None
    best: ExperimentBrief | None
    leaderboard: list[ExperimentBrief]
    recent: list[ExperimentBrief]
    in_flight: list[ExperimentBrief]
    lessons: list[str]
    since_best: int = 0  # experiments finished since the best was kept (the local search widens with it)
    outline: list[FileOutline] = field(default_factory=list)  # the editable files at the best commit


@dataclass
class Outcome:
    """How a finished experiment went, as the proposer learns from it."""

    number: int
    verdict: str
    metric_mean: float | None
    constraint_excess: list[float] = field(default_factory=list)  # > 0 where a constraint was broken
    gain: float | None = None  # the critic's estimate of its gain over `reference`, paired seed by seed
    reference: int | None = None  # the best it was compared with
    seeds: int = 0  # how many seeds the estimate rests on


class Proposer(Protocol):
    """Chooses the next experiment."""

    name: str

    def propose(self, view: CampaignView, number: int) -> Proposal: ...

    def observe(self, proposal: Proposal, outcome: Outcome) -> None: ...


class Coder(Protocol):
    """Turns a proposal into file edits in a worktree (the graph commits and checks paths)."""

    name: str
    # a coder may say `reads_view = False` (the knob coder): it is then given None, and no view is built for it.
    # A coder that only rewrites files it can name may also offer `paths() -> list[str]` and
    # `edit(proposal, files) -> (summary, writes)` (files: each path's text at the parent, None where absent;
    # writes: path -> new text): the graph then commits its writes without checking out a worktree.

    def code(self, proposal: Proposal, tree: Path, view: CampaignView | None, number: int) -> str: ...


@dataclass
class Verdict:
    """The critic's decision on an experiment, with its evidence."""

    verdict: VerdictName | Literal["more_seeds"]
    reason: str
    mean: float | None = None
    std: float | None = None
    p_value: float | None = None
    seeds_wanted: int = 0
    reference: int | None = None  # the best experiment it was compared with
    gain: float | None = None  # estimated gain over the reference, positive = better (paired on its seeds)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        """A verdict from a checkpoint; keys a newer or older Hive wrote there that this one lacks are dropped."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
