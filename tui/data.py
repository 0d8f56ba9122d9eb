"""Plain-data snapshots of a campaign for the dashboard: only what it shows, read in a few short queries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func
from sqlmodel import col, select

from hive.errors import BadInput
from hive.store import Campaign, Experiment, PullRequest, Run, Store
from hive.store.home import find_campaign
from hive.store.queries import IN_FLIGHT, RANKED_VERDICTS
from tui.plot import Plot, make_plot

LEADERBOARD_ROWS = 50
EVENT_ROWS = 100
# experiments finish out of order across processes: re-read this far back so a late commit is not missed
FINISH_WINDOW = timedelta(seconds=10)
PLOT_IDLE_REDRAW = timedelta(seconds=5)


def aware(ts: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were written in UTC."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)


def seconds_between(start: datetime | None, end: datetime) -> float | None:
    start = aware(start)
    return None if start is None else max(0.0, (end - start).total_seconds())


def clock_text(seconds: float | None) -> str:
    """Seconds as H:MM:SS (or M:SS under an hour)."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class Header:
    campaign: str
    status: str
    metric: str
    direction: str
    best_number: int | None
    best_value: float | None
    baseline_value: float | None
    experiments: int
    max_experiments: int | None
    verdicts: dict[str, int]
    elapsed: float | None
    max_hours: float | None
    dollars: float
    max_dollars: float | None
    open_prs: int

    @property
    def delta(self) -> float | None:
        if self.best_value is None or self.baseline_value is None:
            return None
        return self.best_value - self.baseline_value


@dataclass(frozen=True)
class LeaderRow:
    rank: int
    number: int
    verdict: str
    mean: float | None
    std: float | None
    n_seeds: int
    p_value: float | None
    hypothesis: str


@dataclass(frozen=True)
class InFlight:
    number: int
    status: str
    hypothesis: str
    seeds: str
    devices: str
    elapsed: float | None
    limit: float


@dataclass(frozen=True)
class Slot:
    name: str
    holder: str
    utilisation: int | None = None
    used_mb: int | None = None
    total_mb: int | None = None


@dataclass(frozen=True)
class EventLine:
    id: int
    ts: datetime
    kind: str
    number: int | None
    message: str


@dataclass
class Snapshot:
    """Everything the dashboard shows at one instant."""

    header: Header | None = None
    leaderboard: list[LeaderRow] = field(default_factory=list)
    in_flight: list[InFlight] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    events: list[EventLine] = field(default_factory=list)
    plot: Plot | None = None
    waiting: str | None = None


class DashboardSource:
    """Builds dashboard snapshots of one campaign; remembers what it read so each refresh reads only what is new."""

    def __init__(self, home: Path, campaign: str | None, clock: Callable[[], datetime],
                 scheduler_snapshot: Callable[[], dict | None] | None = None):
        self.home = home
        self.name = campaign
        self.clock = clock
        self.scheduler_snapshot = scheduler_snapshot
        self.store: Store | None = None
        self.campaign_id: int | None = None
        self._last_event = 0
        self._finished: dict[int, tuple[datetime, float, str]] = {}
        self._finished_since: datetime | None = None
        self._plot_cache: Plot | None = None
        self._plot_at = datetime.min.replace(tzinfo=UTC)

    def open(self) -> Store | None:
        """The store, once the campaign exists (a starting engine creates it a moment after the TUI opens)."""
        if self.store is None:
            try:
                store, camp = find_campaign(self.home, self.name)
            except BadInput:
                return None
            self.store, self.name, self.campaign_id = store, camp.name, camp.id
        return self.store

    def campaign(self) -> Campaign | None:
        store = self.open()
        return store.campaign(self.name) if store is not None and self.name else None

    def build(self) -> Snapshot:
        """One snapshot: header, top of the leaderboard, what is in flight, slots, new events and the plot."""
        camp = self.campaign()
        if camp is None:
            return Snapshot(waiting=f"waiting for campaign {self.name or ''} to start…")
        store, now = self.store, self.clock()
        assert store is not None
        playbook = camp.playbook
        events = list(store.events(camp.id, after_id=self._last_event, limit=EVENT_ROWS))
        if events:
            self._last_event = events[-1].id
        return Snapshot(
            header=self._header(store, camp, playbook, now),
            leaderboard=[LeaderRow(i + 1, e.number, e.verdict or "", e.metric_mean, e.metric_std, e.n_seeds,
                                   e.p_value, e.hypothesis)
                         for i, e in enumerate(store.leaderboard(camp.id, camp.direction, LEADERBOARD_ROWS))],
            in_flight=(flight := self._in_flight(store, camp, playbook, now))[0],
            slots=self._slots(flight[1]),
            events=[EventLine(e.id, aware(e.ts), e.kind, e.experiment_number, e.message) for e in events],
            plot=self._plot(store, camp, now))

    def _header(self, store: Store, camp: Campaign, playbook: dict, now: datetime) -> Header:
        with store.session() as s:
            open_prs = s.exec(select(func.count()).select_from(PullRequest)
                              .where(PullRequest.campaign_id == camp.id, PullRequest.status == "open")).one()
        counts = store.verdict_counts(camp.id)
        baseline = store.experiment(camp.id, 1)
        best = store.best(camp.id)
        budget = playbook.get("budget") or {}
        end = aware(camp.updated_at) if camp.status != "running" else now
        return Header(
            campaign=camp.name, status=camp.status, metric=camp.objective_metric, direction=camp.direction,
            best_number=best.number if best else None, best_value=best.metric_mean if best else None,
            baseline_value=baseline.metric_mean if baseline and baseline.verdict == "baseline" else None,
            experiments=sum(counts.values()), max_experiments=budget.get("max_experiments"),
            verdicts={v: n for v, n in counts.items() if v}, elapsed=seconds_between(camp.started_at, end),
            max_hours=budget.get("max_hours"), dollars=store.llm_totals(camp.id)["dollars"],
            max_dollars=budget.get("max_dollars"), open_prs=open_prs)

    def _in_flight(self, store: Store, camp: Campaign, playbook: dict,
                   now: datetime) -> tuple[list[InFlight], list[tuple[int, Run]]]:
        limit = float((playbook.get("run") or {}).get("timeout") or 600)
        exps = store.experiments(camp.id, statuses=IN_FLIGHT)
        runs = store.runs_for([e.id for e in exps])
        rows, running = [], []
        for exp in exps:
            live = [r for r in runs[exp.id] if r.status == "running"]
            running += [(exp.number, r) for r in live]
            oldest = min((aware(r.started_at) for r in live if r.started_at), default=None)
            rows.append(InFlight(exp.number, exp.status, exp.hypothesis or "(proposing)",
                                 ",".join(str(r.seed) for r in live), ";".join(r.devices for r in live if r.devices),
                                 seconds_between(oldest, now) if oldest else None, limit))
        return rows, running

    def _slots(self, running: list[tuple[int, Run]]) -> list[Slot]:
        holders: dict[str, str] = {}
        cpu = []
        for number, run in running:
            if run.devices:
                for device in run.devices.split(","):
                    # packed runs share a device: show them all
                    holders[device] = ", ".join(filter(None, (holders.get(device), f"exp-{number} seed {run.seed}")))
            else:
                cpu.append(f"exp-{number}/{run.seed}")
        snapshot = self.scheduler_snapshot() if self.scheduler_snapshot else None
        slots = []
        if snapshot and snapshot.get("devices"):
            for d in snapshot["devices"]:
                holder = holders.get(str(d["index"])) or (d.get("holder") or "")
                slots.append(Slot(f"gpu {d['index']}", holder, d.get("utilisation"),
                                  d["total_mb"] - d["free_mb"], d["total_mb"]))
        else:
            slots += [Slot(f"gpu {device}", holder) for device, holder in sorted(holders.items())]
        if cpu or not slots:
            used = f"{len(cpu)} run(s)"
            if snapshot and snapshot.get("cpu"):
                used = f"{snapshot['cpu']['used']}/{snapshot['cpu']['slots']} slot(s)"
            slots.append(Slot("cpu", f"{used} {' '.join(cpu)}".strip()))
        return slots

    def _plot(self, store: Store, camp: Campaign, now: datetime) -> Plot:
        with store.session() as s:
            q = (select(Experiment.number, Experiment.finished_at, Experiment.metric_mean, Experiment.verdict)
                 .where(Experiment.campaign_id == camp.id, Experiment.status == "done",
                        col(Experiment.metric_mean).is_not(None), col(Experiment.finished_at).is_not(None),
                        col(Experiment.verdict).in_(RANKED_VERDICTS)))
            if self._finished_since is not None:
                q = q.where(col(Experiment.finished_at) >= self._finished_since - FINISH_WINDOW)
            fresh = 0
            for number, finished, value, verdict in s.exec(q):
                finished = aware(finished)
                fresh += self._finished.get(number) != (finished, value, verdict)
                self._finished[number] = (finished, value, verdict)
                if self._finished_since is None or finished > self._finished_since:
                    self._finished_since = finished
        # with nothing new, only the time axis moves: redraw it every few seconds, not on every refresh
        if fresh or self._plot_cache is None or now - self._plot_at >= PLOT_IDLE_REDRAW:
            self._plot_cache = make_plot(sorted(self._finished.values()), aware(camp.started_at), now, camp.direction)
            self._plot_at = now
        return self._plot_cache
