"""Reads and writes of the store, each in its own short transaction (safe with other processes on the file)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence, TypeVar

from sqlalchemy import func, insert, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select

from hive.store.models import Attempt, Campaign, Event, Experiment, Lesson, LlmCall, PullRequest, Run, Transcript, now

T = TypeVar("T", bound=SQLModel)
FINISHED = "done"
IN_FLIGHT = ("proposed", "coding", "running", "judging")  # experiment statuses before "done"
RANKED_VERDICTS = ("baseline", "keep", "discard")


class Store:
    """The campaign database behind one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- generic -----------------------------------------------------------
    def add(self, obj: T) -> T:
        with self.session() as s:
            return _saved(s, obj, {})

    def update(self, model: type[T], row_id: int, **fields: Any) -> T:
        _columns_only(model, fields)
        with self.session() as s:
            obj = s.get(model, row_id)
            if obj is None:
                raise KeyError(f"{model.__name__} {row_id} not found")
            return _saved(s, obj, fields)

    # -- campaigns ---------------------------------------------------------
    def campaign(self, name: str) -> Campaign | None:
        with self.session() as s:
            return s.exec(select(Campaign).where(Campaign.name == name)).first()

    def campaigns(self) -> Sequence[Campaign]:
        with self.session() as s:
            return s.exec(select(Campaign).order_by(Campaign.id)).all()

    def ensure_campaign(self, name: str, **fields: Any) -> tuple[Campaign, bool]:
        """The campaign with this name, created if new; the flag says whether it was created."""
        _columns_only(Campaign, fields)
        existing = self.campaign(name)
        if existing is not None:
            return existing, False
        try:
            return self.add(Campaign(name=name, **fields)), True
        except IntegrityError:  # another process created it first
            return self.campaign(name), False  # type: ignore[return-value]

    # -- experiments -------------------------------------------------------
    def new_experiment(self, campaign_id: int, **fields: Any) -> Experiment:
        """Insert an experiment under the next free number (unique even with concurrent writers)."""
        return self._insert_numbered(Experiment, campaign_id, fields)

    def _insert_numbered(self, model: type[T], campaign_id: int, fields: dict[str, Any]) -> T:
        """Insert a row numbered max + 1 within its campaign; a concurrent writer's number collision retries."""
        _columns_only(model, fields)
        for _ in range(20):
            with self.session() as s:
                top = s.exec(select(func.max(model.number)).where(model.campaign_id == campaign_id)).one()
                row = model(campaign_id=campaign_id, number=(top or 0) + 1, **fields)
                s.add(row)
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
                    continue
                _as_stored(row)
                return row
        raise RuntimeError(f"could not allocate a {model.__name__} number after 20 tries")

    def experiment(self, campaign_id: int, number: int) -> Experiment | None:
        with self.session() as s:
            return s.exec(select(Experiment).where(Experiment.campaign_id == campaign_id, Experiment.number == number)).first()

    def experiments(self, campaign_id: int, statuses: Iterable[str] | None = None, limit: int | None = None,
                    newest_first: bool = False) -> Sequence[Experiment]:
        with self.session() as s:
            q = select(Experiment).where(Experiment.campaign_id == campaign_id)
            if statuses is not None:
                q = q.where(col(Experiment.status).in_(list(statuses)))
            q = q.order_by(col(Experiment.number).desc() if newest_first else col(Experiment.number))
            if limit:
                q = q.limit(limit)
            return s.exec(q).all()

    def update_experiment(self, campaign_id: int, number: int, **fields: Any) -> Experiment:
        """Set fields of experiment `number` in one transaction (`update` needs its id first: one query more)."""
        _columns_only(Experiment, fields)
        with self.session() as s:
            obj = s.exec(select(Experiment).where(Experiment.campaign_id == campaign_id,
                                                  Experiment.number == number)).first()
            if obj is None:
                raise KeyError(f"experiment {number} of campaign {campaign_id} not found")
            return _saved(s, obj, fields)

    def delete_experiment(self, experiment_id: int) -> None:
        """Remove an experiment that never ran (its number may be given out again)."""
        with self.session() as s:
            for run in s.exec(select(Run).where(Run.experiment_id == experiment_id)):
                s.delete(run)
            exp = s.get(Experiment, experiment_id)
            if exp is not None:
                s.delete(exp)
            s.commit()

    def wins(self, campaign_id: int, marked: Iterable[int], within: int) -> Sequence[Experiment]:
        """Kept experiments and those numbered in `marked`, among the newest `within` numbers, newest first."""
        with self.session() as s:
            top = s.exec(select(func.max(Experiment.number)).where(Experiment.campaign_id == campaign_id)).one() or 0
            q = (select(Experiment).where(Experiment.campaign_id == campaign_id, Experiment.number > top - within,
                                          (Experiment.verdict == "keep") | col(Experiment.number).in_(list(marked)))
                 .order_by(col(Experiment.number).desc()))
            return s.exec(q).all()

    def count_experiments(self, campaign_id: int, kind: str | None = None) -> int:
        with self.session() as s:
            q = select(func.count()).select_from(Experiment).where(Experiment.campaign_id == campaign_id)
            if kind:
                q = q.where(Experiment.kind == kind)
            return s.exec(q).one()

    def count_runs(self, campaign_id: int, status: str) -> int:
        """How many runs of the campaign's experiments have this status."""
        with self.session() as s:
            q = (select(func.count()).select_from(Run).join(Experiment, col(Run.experiment_id) == Experiment.id)
                 .where(Experiment.campaign_id == campaign_id, Run.status == status))
            return s.exec(q).one()

    def count_finished_since(self, campaign_id: int, when: datetime | None) -> int:
        """How many candidate experiments finished after `when` (all of them when None)."""
        with self.session() as s:
            q = select(func.count()).select_from(Experiment).where(
                Experiment.campaign_id == campaign_id, Experiment.status == FINISHED, Experiment.kind != "baseline")
            if when is not None:
                q = q.where(col(Experiment.finished_at) > when)
            return s.exec(q).one()

    def verdict_counts(self, campaign_id: int) -> dict[str | None, int]:
        """How many experiments have each verdict (None: not finished yet), counted in the database."""
        with self.session() as s:
            rows = s.exec(select(Experiment.verdict, func.count()).where(Experiment.campaign_id == campaign_id)
                          .group_by(Experiment.verdict)).all()
        return {verdict: n for verdict, n in rows}

    def leaderboard(self, campaign_id: int, direction: str, limit: int = 20) -> Sequence[Experiment]:
        """Finished experiments with a metric: the best first, then the other kept ones (and the baseline) by
        metric, then the discarded ones by metric; a discarded one was never shown to beat the best, so it
        never ranks above it, whatever its mean."""
        best = self.best(campaign_id)
        order = col(Experiment.metric_mean).asc() if direction == "minimize" else col(Experiment.metric_mean).desc()
        shown = (Experiment.campaign_id == campaign_id, Experiment.status == FINISHED,
                 col(Experiment.metric_mean).is_not(None))
        shown_best = best is not None and best.status == FINISHED and best.metric_mean is not None
        rows = [best] if shown_best else []
        # one indexed query per tier, not one sort of every row by tier (no index holds that order: 1.5 s at
        # 100,000 experiments, bench/store_scale.py)
        with self.session() as s:
            for verdicts in (("keep", "baseline"), ("discard",)):
                if len(rows) >= limit:
                    break
                others = Experiment.number != (best.number if best else -1)
                q = (select(Experiment).where(*shown, col(Experiment.verdict).in_(verdicts), others)
                     .order_by(order, col(Experiment.number)).limit(limit - len(rows)))
                rows += s.exec(q).all()
        return rows[:limit]

    def best(self, campaign_id: int) -> Experiment | None:
        """The experiment the best branch points at: the latest keep, else the baseline (one query)."""
        with self.session() as s:
            q = (select(Experiment).where(Experiment.campaign_id == campaign_id,
                                          col(Experiment.verdict).in_(("keep", "baseline")))
                 .order_by((Experiment.verdict == "keep").desc(), col(Experiment.finished_at).desc(),
                           col(Experiment.number).desc()).limit(1))
            return s.exec(q).first()

    def lineage(self, campaign_id: int, number: int) -> set[int]:
        """The experiment's number and its parents', up to the baseline, in one recursive query."""
        walk = text("""
            WITH RECURSIVE up(n) AS (
                SELECT CAST(:number AS INTEGER)
                UNION
                SELECT e.parent_number FROM experiment e JOIN up ON e.number = up.n
                WHERE e.campaign_id = :campaign AND e.parent_number IS NOT NULL)
            SELECT n FROM up""")
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(walk, {"number": number, "campaign": campaign_id})}

    # -- runs --------------------------------------------------------------
    def ensure_run(self, experiment_id: int, seed: int, **fields: Any) -> Run:
        """The run of this seed, made if new, with `fields` set (one transaction)."""
        _columns_only(Run, fields)
        with self.session() as s:
            run = s.exec(select(Run).where(Run.experiment_id == experiment_id, Run.seed == seed)).first()
            if run is not None and not fields:
                return run
            return _saved(s, run or Run(experiment_id=experiment_id, seed=seed), fields)

    def runs(self, experiment_id: int) -> Sequence[Run]:
        with self.session() as s:
            return s.exec(select(Run).where(Run.experiment_id == experiment_id).order_by(col(Run.id))).all()

    def runs_with_status(self, campaign_id: int, status: str) -> Sequence[Run]:
        """Every run of a campaign in one status (e.g. the pruned ones)."""
        with self.session() as s:
            q = (select(Run).join(Experiment, col(Run.experiment_id) == col(Experiment.id))
                 .where(Experiment.campaign_id == campaign_id, Run.status == status).order_by(col(Run.id)))
            return s.exec(q).all()

    def runs_for(self, experiment_ids: list[int]) -> dict[int, list[Run]]:
        out: dict[int, list[Run]] = {i: [] for i in experiment_ids}
        if not experiment_ids:
            return out
        with self.session() as s:
            for run in s.exec(select(Run).where(col(Run.experiment_id).in_(experiment_ids)).order_by(col(Run.id))):
                out[run.experiment_id].append(run)
        return out

    # -- events, lessons, llm calls, pull requests -------------------------
    def event(self, campaign_id: int, kind: str, message: str, experiment_number: int | None = None) -> Event:
        """Append a feed line (a plain INSERT: the feed writes several per experiment, and none is read back)."""
        row = Event(campaign_id=campaign_id, kind=kind, message=message, experiment_number=experiment_number)
        with self.engine.begin() as conn:
            result = conn.execute(insert(Event).values(row.model_dump(exclude={"id"})))
        row.id = result.inserted_primary_key[0]
        return _as_stored(row)

    def events(self, campaign_id: int, after_id: int = 0, limit: int = 200) -> Sequence[Event]:
        with self.session() as s:
            q = (select(Event).where(Event.campaign_id == campaign_id, Event.id > after_id)
                 .order_by(col(Event.id).desc()).limit(limit))
            return list(reversed(s.exec(q).all()))

    def lessons(self, campaign_id: int, limit: int = 50, source: str | None = None) -> Sequence[Lesson]:
        """The latest lessons, oldest first (only those from `source` when given)."""
        with self.session() as s:
            q = select(Lesson).where(Lesson.campaign_id == campaign_id)
            if source is not None:
                q = q.where(Lesson.source == source)
            q = q.order_by(col(Lesson.id).desc()).limit(limit)
            return list(reversed(s.exec(q).all()))

    def has_lesson(self, campaign_id: int, experiment_number: int, source: str = "critic") -> bool:
        with self.session() as s:
            q = select(Lesson.id).where(Lesson.campaign_id == campaign_id, Lesson.source == source,
                                        Lesson.experiment_number == experiment_number)
            return s.exec(q).first() is not None

    def delete_runs(self, experiment_id: int) -> None:
        """Forget an experiment's runs (it is starting over on a new commit)."""
        with self.session() as s:
            for run in s.exec(select(Run).where(Run.experiment_id == experiment_id)):
                s.delete(run)
            s.commit()

    def llm_totals(self, campaign_id: int, experiment_number: int | None = None) -> dict[str, float]:
        """Calls, tokens and dollars spent on LLMs by a campaign (or one of its experiments)."""
        with self.session() as s:
            q = (select(func.count(), func.coalesce(func.sum(LlmCall.prompt_tokens), 0),
                        func.coalesce(func.sum(LlmCall.completion_tokens), 0),
                        func.coalesce(func.sum(LlmCall.dollars), 0.0))
                 .where(LlmCall.campaign_id == campaign_id))
            if experiment_number is not None:
                q = q.where(LlmCall.experiment_number == experiment_number)
            row = s.exec(q).one()
        return {"calls": row[0], "prompt_tokens": row[1], "completion_tokens": row[2], "dollars": float(row[3])}

    def attempts(self, experiment_id: int) -> Sequence[Attempt]:
        """An experiment's attempts (its commits: the coder's, then each repair's), first first."""
        with self.session() as s:
            return s.exec(select(Attempt).where(Attempt.experiment_id == experiment_id)
                          .order_by(col(Attempt.attempt))).all()

    def start_attempt(self, experiment_id: int, attempt: int, commit: str, summary: str = "") -> Attempt:
        """Record an experiment's attempt `attempt` (forgetting any from it on: a re-coded experiment starts over)."""
        with self.session() as s:
            for row in s.exec(select(Attempt).where(Attempt.experiment_id == experiment_id,
                                                    Attempt.attempt >= attempt)):
                s.delete(row)
            s.flush()  # the old rows go first: (experiment, attempt) is unique
            return _saved(s, Attempt(experiment_id=experiment_id, attempt=attempt, commit=commit,
                                     summary=summary[:2000]), {})

    def ensure_transcript(self, campaign_id: int, experiment_number: int, role: str, path: str) -> Transcript:
        """The row saying where a role's transcript of an experiment is (made on first use)."""
        with self.session() as s:
            row = s.exec(select(Transcript).where(Transcript.campaign_id == campaign_id, Transcript.role == role,
                                                  Transcript.experiment_number == experiment_number)).first()
        if row is not None:
            return row
        try:
            return self.add(Transcript(campaign_id=campaign_id, experiment_number=experiment_number, role=role,
                                       path=path))
        except IntegrityError:  # another thread made it first
            with self.session() as s:
                return s.exec(select(Transcript).where(Transcript.campaign_id == campaign_id, Transcript.role == role,
                                                       Transcript.experiment_number == experiment_number)).one()

    def transcripts(self, campaign_id: int, experiment_number: int) -> Sequence[Transcript]:
        """Every role's transcript of an experiment, by role."""
        with self.session() as s:
            return s.exec(select(Transcript).where(Transcript.campaign_id == campaign_id,
                                                   Transcript.experiment_number == experiment_number)
                          .order_by(col(Transcript.role))).all()

    def pull_requests(self, campaign_id: int, status: str | None = None) -> Sequence[PullRequest]:
        with self.session() as s:
            q = select(PullRequest).where(PullRequest.campaign_id == campaign_id)
            if status:
                q = q.where(PullRequest.status == status)
            return s.exec(q.order_by(col(PullRequest.number))).all()

    def new_pull_request(self, campaign_id: int, **fields: Any) -> PullRequest:
        """Insert a pull-request record under the campaign's next number."""
        return self._insert_numbered(PullRequest, campaign_id, fields)

def _columns_only(model: type[SQLModel], fields: dict[str, Any]) -> None:
    """Refuse a write to a field the table does not have (a derived value, say), which SQLModel would drop silently."""
    unknown = sorted(set(fields) - set(model.model_fields))
    if unknown:
        raise TypeError(f"{model.__name__} has no column {', '.join(unknown)} (derived values are computed where read)")


def iso(value: datetime) -> str:
    """ISO 8601 in UTC (SQLite hands back naive datetimes that were stored as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_dict(obj: SQLModel) -> dict[str, Any]:
    """A row as JSON-ready data (datetimes as ISO strings, JSON columns decoded)."""
    out: dict[str, Any] = {}
    for key, value in obj.model_dump().items():
        if isinstance(value, datetime):
            value = iso(value)
        if key.endswith("_json"):
            key, value = key[:-5], json.loads(value or "{}")
        out[key] = value
    return out


def _saved(s: Session, obj: T, fields: dict[str, Any]) -> T:
    """`obj` with `fields` set, committed in session `s`, as a read would give it back (no second query: every
    default is computed in Python, and the id is known once the row is written)."""
    for key, value in fields.items():
        setattr(obj, key, value)
    s.add(obj)
    s.commit()
    return _as_stored(obj)


def _as_stored(obj: T) -> T:
    """Datetimes as the store hands them back (UTCDateTime columns: aware, in UTC), so a row just written and one
    read later compare alike."""
    for key in type(obj).model_fields:
        value = getattr(obj, key, None)
        if isinstance(value, datetime) and value.tzinfo is not None and value.tzinfo is not timezone.utc:
            set_committed_value(obj, key, value.astimezone(timezone.utc))
    return obj


__all__ = ["IN_FLIGHT", "Store", "iso", "to_dict", "now"]

