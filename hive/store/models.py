"""The tables: campaigns, experiments, runs (one per seed), events, llm calls, transcripts, pull requests, lessons."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, Relationship, SQLModel


def now() -> datetime:
    return datetime.now(timezone.utc)


class Campaign(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    playbook_path: str = ""
    playbook_json: str = Field(default="{}", sa_column=Column(Text))
    status: str = "created"  # created | running | stopped | finished
    baseline_commit: str = ""
    harness_sha256: str = ""  # content hash of the harness snapshot taken at creation (checked at every scoring)
    created_at: datetime = Field(default_factory=now)
    started_at: Optional[datetime] = None
    updated_at: datetime = Field(default_factory=now)
    active_seconds: float = 0.0  # time spent running, summed over every `hive start` (budget.max_hours)

    @property
    def playbook(self) -> dict[str, Any]:
        """The playbook the campaign last ran with, as plain data ({} when unreadable)."""
        try:
            return json.loads(self.playbook_json or "{}")
        except ValueError:
            return {}

    @property
    def objective_metric(self) -> str:
        """The metric the campaign is judged by, from its playbook (a resume never changes it: open_campaign)."""
        return (self.playbook.get("objective") or {}).get("metric", "")

    @property
    def direction(self) -> str:
        """minimize or maximize, from its playbook."""
        return (self.playbook.get("objective") or {}).get("direction", "minimize")


class Experiment(SQLModel, table=True):
    # the views ask: best by metric, latest keep, in flight, recent finished; each has an index
    __table_args__ = (UniqueConstraint("campaign_id", "number"),
                      Index("ix_experiment_metric", "campaign_id", "metric_mean"),
                      Index("ix_experiment_verdict", "campaign_id", "verdict", "finished_at"),
                      Index("ix_experiment_status", "campaign_id", "status", "number"))

    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    number: int
    parent_number: Optional[int] = None
    kind: str = "candidate"  # baseline | candidate
    hypothesis: str = Field(default="", sa_column=Column(Text))
    rationale: str = Field(default="", sa_column=Column(Text))
    proposal_json: str = Field(default="{}", sa_column=Column(Text))
    diff: str = Field(default="", sa_column=Column(Text))
    commit: str = ""
    parent_commit: str = ""
    # proposed | coding | running | judging | done
    status: str = "proposed"
    # baseline | keep | discard | crash | timeout | invalid | edit_failed | rejected
    verdict: Optional[str] = None
    verdict_reason: str = Field(default="", sa_column=Column(Text))
    # Denormalised on purpose, written once when the experiment is judged: the numbers its verdict was made on (a
    # best that runs more seeds later, to pair them with candidates, keeps the verdict's mean), and what the views
    # sort by. Derived from the runs at 100,000 experiments (bench/store_scale.py, SQLite, load ~14) the leaderboard
    # took 3.2 s against 24 ms stored; the best's value and one experiment cost about the same either way, the
    # GPU/CPU-seconds totals 1.1 s against 0.6 s (bench/README.md).
    metric_mean: Optional[float] = None
    metric_std: Optional[float] = None
    p_value: Optional[float] = None
    n_seeds: int = 0
    gpu_seconds: float = 0.0  # wall seconds x the playbook's resources.gpus at the time, which a resume may change
    cpu_seconds: float = 0.0
    created_at: datetime = Field(default_factory=now)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None

    @property
    def proposal(self) -> dict[str, Any]:
        return json.loads(self.proposal_json or "{}")


class Run(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "seed"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    seed: int
    status: str = "queued"  # queued | running | ok | failed | timeout | cancelled
    metrics_json: str = Field(default="{}", sa_column=Column(Text))
    exit_code: Optional[int] = None
    wall_seconds: Optional[float] = None
    peak_rss_mb: Optional[float] = None
    devices: str = ""
    log_path: str = ""
    error: str = Field(default="", sa_column=Column(Text))
    # exactly what ran: the shell command line (knob flags included) and the variables Hive added
    command: str = Field(default="", sa_column=Column(Text))
    env_json: str = Field(default="{}", sa_column=Column(Text))
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics_json or "{}")

    @property
    def env(self) -> dict[str, str]:
        return json.loads(self.env_json or "{}")


class Event(SQLModel, table=True):
    __table_args__ = (Index("ix_event_feed", "campaign_id", "id"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    ts: datetime = Field(default_factory=now, index=True)
    experiment_number: Optional[int] = None
    kind: str = ""
    message: str = Field(default="", sa_column=Column(Text))


class LlmCall(SQLModel, table=True):
    # an experiment's tokens and dollars are summed from its calls where shown (Store.llm_totals)
    __table_args__ = (Index("ix_llmcall_experiment", "campaign_id", "experiment_number"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    experiment_number: Optional[int] = None
    role: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dollars: float = 0.0
    seconds: float = 0.0
    ok: bool = True
    error: str = Field(default="", sa_column=Column(Text))
    ts: datetime = Field(default_factory=now)


class Attempt(SQLModel, table=True):
    """One commit of an experiment: attempt 1 is the coder's change, each later one a repair after a crash.

    A crashed attempt keeps here what its failed run said (`failure`, and `tail`: the log's last lines with the
    traceback); its runs are not the experiment's any more, so they never count in its statistics."""

    __table_args__ = (UniqueConstraint("experiment_id", "attempt"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    attempt: int
    commit: str = ""
    status: str = "running"  # running | crashed (its run failed) | unrepaired (a repair of it was given up)
    summary: str = Field(default="", sa_column=Column(Text))  # what the coder said it did
    failure: str = Field(default="", sa_column=Column(Text))  # e.g. "seed 1: exit code 1", "smoke: timeout"
    tail: str = Field(default="", sa_column=Column(Text))  # the failed run's log tail (at least 60 lines)
    created_at: datetime = Field(default_factory=now)


class Transcript(SQLModel, table=True):
    """Where one role's conversation of one experiment is saved (a JSONL file; hive/transcripts.py reads it)."""

    __table_args__ = (UniqueConstraint("campaign_id", "experiment_number", "role"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    experiment_number: int
    role: str  # proposer | coder | critic | an external agent's name
    path: str = Field(default="", sa_column=Column(Text))
    created_at: datetime = Field(default_factory=now)


class PullRequest(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("campaign_id", "number"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    number: int
    experiment_number: int
    parent_pr: Optional[int] = None
    title: str = ""
    body: str = Field(default="", sa_column=Column(Text))
    status: str = "open"  # open | approved | rejected
    reason: str = Field(default="", sa_column=Column(Text))
    created_at: datetime = Field(default_factory=now)
    decided_at: Optional[datetime] = None
    # the kept experiment, read with the row (a join): its commit and diff are the pull request's
    experiment: Experiment = Relationship(sa_relationship_kwargs={
        "primaryjoin": "and_(PullRequest.campaign_id == foreign(Experiment.campaign_id), "
                       "PullRequest.experiment_number == foreign(Experiment.number))",
        "viewonly": True, "uselist": False, "lazy": "joined"})

    @property
    def commit(self) -> str:
        """The kept experiment's commit ("" if its row were gone)."""
        return self.experiment.commit if self.experiment is not None else ""

    @property
    def diff(self) -> str:
        """The kept experiment's diff from its parent, as stored (it needs no git objects)."""
        return self.experiment.diff if self.experiment is not None else ""


class Lesson(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    experiment_number: Optional[int] = None
    source: str = "critic"  # critic | human
    text: str = Field(default="", sa_column=Column(Text))
    ts: datetime = Field(default_factory=now)
