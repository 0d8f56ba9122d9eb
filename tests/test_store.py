"""The store on real SQLite, and on real PostgreSQL when a server is available."""

from __future__ import annotations

import threading

from hive.store import Experiment, Run, Store, make_engine


def test_campaign_experiments_runs_events(db_url):
    store = Store(make_engine(db_url))
    camp, created = store.ensure_campaign("c1", playbook_json='{"objective": {"metric": "loss", "direction": "minimize"}}')
    assert created
    again, created_again = store.ensure_campaign("c1")
    assert again.id == camp.id and not created_again

    base = store.new_experiment(camp.id, kind="baseline", hypothesis="base")
    a = store.new_experiment(camp.id, hypothesis="a")
    b = store.new_experiment(camp.id, hypothesis="b")
    assert [base.number, a.number, b.number] == [1, 2, 3]
    store.update(Experiment, base.id, status="done", verdict="baseline", metric_mean=2.0)
    store.update(Experiment, a.id, status="done", verdict="keep", metric_mean=1.5)
    store.update(Experiment, b.id, status="done", verdict="discard", metric_mean=1.0)
    # the best first, then the other kept ones and the baseline, then discards (never above a keep)
    assert [e.number for e in store.leaderboard(camp.id, "minimize")] == [2, 1, 3]
    assert [e.number for e in store.leaderboard(camp.id, "maximize")] == [2, 1, 3]
    assert store.best(camp.id).number == 2

    run = store.ensure_run(a.id, 7)
    assert store.ensure_run(a.id, 7).id == run.id
    store.update(Run, run.id, status="ok", metrics_json='{"loss": 1.5}', peak_rss_mb=12.5)
    assert store.runs(a.id)[0].metrics == {"loss": 1.5}
    assert store.runs_for([a.id, b.id]) == {a.id: [store.runs(a.id)[0]], b.id: []}

    for i in range(5):
        store.event(camp.id, "note", f"m{i}", a.number)
    events = store.events(camp.id)
    assert [e.message for e in events] == [f"m{i}" for i in range(5)]
    assert [e.message for e in store.events(camp.id, after_id=events[2].id)] == ["m3", "m4"]

    other, _ = store.ensure_campaign("c2")
    assert store.new_experiment(other.id).number == 1
    pr = store.new_pull_request(camp.id, experiment_number=2, title="t")
    assert pr.number == 1 and store.pull_requests(camp.id)[0].title == "t"
    store.engine.dispose()


def test_a_row_just_written_equals_the_row_read_back_and_lineage_walks_the_parents(db_url):
    """Writes hand back their row without reading it again: it must be the row a later read gives (the id, UTC
    datetimes), or a caller mixing the two would compare unlike times."""
    from datetime import timedelta

    from hive.store.models import now

    store = Store(make_engine(db_url))
    camp, _ = store.ensure_campaign("rows")
    base = store.new_experiment(camp.id, kind="baseline", hypothesis="base")
    assert store.best(camp.id) is None
    written = store.update_experiment(camp.id, base.number, status="done", verdict="baseline", finished_at=now())
    assert written == store.experiment(camp.id, base.number)
    assert written.finished_at.utcoffset() == written.created_at.utcoffset() == timedelta(0)
    assert store.best(camp.id).number == 1  # no keep yet: the baseline
    a = store.new_experiment(camp.id, parent_number=1)
    b = store.new_experiment(camp.id, parent_number=a.number)
    c = store.new_experiment(camp.id, parent_number=1)
    for exp in (a, b):
        store.update(Experiment, exp.id, status="done", verdict="keep", finished_at=now())
    assert store.best(camp.id).number == b.number  # the latest keep
    assert store.lineage(camp.id, b.number) == {1, a.number, b.number}
    assert store.lineage(camp.id, c.number) == {1, c.number}
    event = store.event(camp.id, "note", "hello", b.number)
    (read,) = store.events(camp.id)
    assert event == read and event.ts.utcoffset() == timedelta(0)
    attempt = store.start_attempt(b.id, 1, "abc", "first")
    again = store.start_attempt(b.id, 1, "def", "recoded")  # the same attempt number: the old row goes
    assert [x.commit for x in store.attempts(b.id)] == ["def"] and again == store.attempts(b.id)[0]
    assert attempt.id is not None
    store.engine.dispose()


def test_concurrent_numbering_never_duplicates(db_url):
    engine = make_engine(db_url)
    store = Store(engine)
    camp, _ = store.ensure_campaign("busy")
    numbers: list[int] = []
    lock = threading.Lock()

    def worker():
        own = Store(make_engine(db_url))  # a separate engine, like a second process
        for _ in range(10):
            exp = own.new_experiment(camp.id)
            with lock:
                numbers.append(exp.number)
        own.engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(1, 41))
    engine.dispose()


def test_sqlite_uses_wal(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_a_store_made_by_an_older_hive_gains_the_new_columns(tmp_path):
    import sqlite3

    from alembic import command
    from sqlalchemy import create_engine

    from hive.store.migrate import _config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # the schema as it stood before migrations (the baseline), not today's
        command.upgrade(_config(conn), "0001")
    engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("INSERT INTO campaign (name, playbook_path, objective_metric, direction, status, baseline_commit,"
                     " created_at, updated_at, active_seconds) VALUES ('old', '', 'val_loss', 'minimize', 'created',"
                     " '', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0)")
        conn.execute("DROP TABLE alembic_version")  # an older Hive had no migrations
        conn.execute("ALTER TABLE campaign DROP COLUMN active_seconds")
        conn.execute("DROP INDEX ix_experiment_metric")
    again = Store(make_engine(url))
    camp = again.campaign("old")
    assert camp is not None and camp.active_seconds == 0.0
    with again.engine.connect() as conn:
        names = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list(experiment)")}
    assert "ix_experiment_metric" in names


def test_many_openers_at_once_do_not_trip_over_schema_creation(tmp_path):
    import threading

    url = f"sqlite:///{tmp_path / 'race.db'}"
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            make_engine(url).dispose()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_leaderboard_tiers_match_one_sort_of_every_row_on_a_random_campaign(db_url):
    """The tiered queries give what sorting every shown row by (tier, metric, number) gives, ties and limits too."""
    import random
    from datetime import datetime, timedelta, timezone

    rng = random.Random(4)
    store = Store(make_engine(db_url))
    camp, _ = store.ensure_campaign("tiers")
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(120):
        exp = store.new_experiment(camp.id)
        verdict = "baseline" if i == 0 else rng.choice(["keep", "discard", "discard", "discard", "crash", None])
        store.update(Experiment, exp.id, status="done" if verdict else rng.choice(["running", "done"]),
                     verdict=verdict, finished_at=t0 + timedelta(minutes=i),
                     metric_mean=None if verdict in ("crash", None) or rng.random() < 0.05
                     else rng.choice([1.0, 1.5, 2.0]) + rng.randint(0, 20) / 10)  # ties on purpose
    rows = [e for e in store.experiments(camp.id)
            if e.status == "done" and e.metric_mean is not None and e.verdict in ("baseline", "keep", "discard")]
    best = store.best(camp.id)
    for direction in ("minimize", "maximize"):
        sign = 1 if direction == "minimize" else -1
        expected = sorted(rows, key=lambda e: (0 if e.number == best.number else 1 if e.verdict != "discard" else 2,
                                               sign * e.metric_mean, e.number))
        for limit in (1, 5, 20, 200):
            got = [e.number for e in store.leaderboard(camp.id, direction, limit)]
            assert got == [e.number for e in expected[:limit]], (direction, limit)
