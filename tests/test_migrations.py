"""Schema migrations: head matches models.py, a store made before Alembic upgrades and its campaign resumes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from hive.errors import HiveError
from hive.store import Store, make_engine
from hive.store.migrate import MIGRATIONS, _config, head
from hive.views import experiment_data
from tests.conftest import PLAYBOOKS, ROOT, run_hive

FIXTURE = ROOT / "tests" / "fixtures" / "pre_alembic"
# the fixture campaign was killed with experiments 1-3 finished and 4-5 in flight (see its README)
FINISHED_BEFORE = {1: "baseline", 2: "keep", 3: "discard"}
QUICK = str(PLAYBOOKS / "quickstart.yaml")


def unpack(tmp_path: Path) -> Path:
    """The pre-Alembic campaign folder, unpacked under tmp_path/workspaces."""
    with tarfile.open(FIXTURE / "quickstart.tar.gz") as tar:
        tar.extractall(tmp_path / "workspaces", filter="data")
    return tmp_path / "workspaces" / "quickstart"


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def table(db: Path, name: str) -> list[dict]:
    """Every row of a table as a dict, by id."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f'select * from "{name}" order by id')]


def test_one_head_and_it_matches_the_models(db_url):
    assert len(ScriptDirectory.from_config(_config()).get_heads()) == 1, "two migrations share a down_revision"
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head()
        # a column added to models.py without a migration shows up here
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    engine.dispose()


def test_a_pre_alembic_store_upgrades_to_exactly_the_models(db_url, tmp_path):
    root = unpack(tmp_path)
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{root / 'hive.db'}"
    else:
        _load_pre_alembic_postgresql(db_url, root / "hive.db")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head()
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        assert conn.exec_driver_sql("select count(*) from experiment").scalar() == 5
    engine.dispose()


def unpack_with_llm_calls(tmp_path: Path) -> Path:
    """The pre-Alembic store, as if exp-2 had made two LLM calls (its tokens and dollars as that release summed them)."""
    db = unpack(tmp_path) / "hive.db"
    with sqlite3.connect(db) as conn:
        for role, tokens_in, tokens_out, dollars in (("proposer", 200, 100, 0.0004), ("coder", 50, 25, 0.0001)):
            conn.execute("insert into llmcall (campaign_id, experiment_number, role, model, prompt_tokens, "
                         "completion_tokens, dollars, seconds, ok, error, ts) values (1, 2, ?, 'scripted', ?, ?, ?, "
                         "0.1, 1, '', '2026-01-01')", (role, tokens_in, tokens_out, dollars))
        conn.execute("update experiment set tokens = 375, dollars = 0.0005 where number = 2")
    return db


def _open_pre_alembic(db_url: str, tmp_path: Path) -> tuple[Store, Path]:
    """The pre-Alembic fixture store (with exp-2's LLM calls) upgraded to head, in SQLite or PostgreSQL."""
    root = unpack_with_llm_calls(tmp_path).parent
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{root / 'hive.db'}"
    else:
        _load_pre_alembic_postgresql(db_url, root / "hive.db")
    return Store(make_engine(db_url)), root / "hive.db"


def test_values_a_pre_alembic_store_kept_in_columns_are_derived_the_same(db_url, tmp_path):
    old_db = unpack_with_llm_calls(tmp_path / "old")
    store, _ = _open_pre_alembic(db_url, tmp_path)
    camp = store.campaign("quickstart")
    assert rows(old_db, "select objective_metric, direction from campaign") == [(camp.objective_metric, camp.direction)]
    old = {e["number"]: e for e in table(old_db, "experiment")}
    shown = {n: experiment_data(store, camp, n) for n in old}
    assert {n: e["branch"] for n, e in old.items()} == {n: d["branch"] for n, d in shown.items()}
    assert {n: (e["tokens"], e["dollars"]) for n, e in old.items() if e["status"] == "done"} == \
        {n: (d["tokens"], pytest.approx(d["dollars"])) for n, d in shown.items() if d["status"] == "done"}
    assert shown[2]["tokens"] == 375
    old_prs = [(p["number"], p["commit"], p["diff"]) for p in table(old_db, "pullrequest")]
    assert old_prs == [(p.number, p.commit, p.diff) for p in store.pull_requests(camp.id)] and old_prs[0][2]
    store.engine.dispose()


def test_downgrading_to_the_baseline_gives_back_the_columns_as_they_were(tmp_path):
    db = unpack_with_llm_calls(tmp_path)
    before = {name: table(db, name) for name in ("campaign", "experiment", "run", "pullrequest", "llmcall")}
    make_engine(f"sqlite:///{db}").dispose()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        command.downgrade(_config(conn), "0001")
        conn.commit()
    engine.dispose()
    for name, old in before.items():  # the columns the fixture had (the baseline adds two to run)
        assert _rounded([{k: row[k] for k in old[0]} for row in table(db, name)]) == _rounded(old), name


def _rounded(rows_: list[dict]) -> list[dict]:
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in row.items()} for row in rows_]


def test_a_pull_requests_own_commit_and_diff_are_kept_where_its_experiment_lacks_or_differs(tmp_path):
    db = unpack(tmp_path) / "hive.db"
    (number, diff), = rows(db, "select experiment_number, diff from pullrequest")
    with sqlite3.connect(db) as conn:
        conn.execute("update experiment set diff = '' where number = ?", (number,))
        conn.execute("insert into pullrequest (campaign_id, number, experiment_number, title, body, diff, \"commit\", "
                     "status, reason, created_at) values (1, 2, 3, 't', 'evidence', '', 'feedbeef', 'open', '', "
                     "'2026-01-01')")
    store = Store(make_engine(f"sqlite:///{db}"))
    first, second = store.pull_requests(1)
    assert first.diff == diff == store.experiment(1, number).diff
    assert second.commit == store.experiment(1, 3).commit != "feedbeef"
    assert second.body.startswith("evidence") and "commit:\nfeedbeef" in second.body
    store.engine.dispose()


def test_the_objective_moves_into_a_playbook_that_lacks_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'hive.db'}"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        command.upgrade(_config(conn), "0001")
        for name, playbook in (("full", '{"objective": {"metric": "loss", "direction": "maximize"}}'),
                               ("bare", '{"name": "bare"}'), ("broken", "{not json")):
            conn.execute(sa.text("insert into campaign (name, playbook_path, playbook_json, objective_metric, "
                                 "direction, status, baseline_commit, created_at, updated_at, active_seconds) "
                                 "values (:n, '', :p, 'acc', 'maximize', 'stopped', '', '2026-01-01', '2026-01-01', 0)"),
                         {"n": name, "p": playbook})
        conn.commit()
    engine.dispose()
    store = Store(make_engine(url))
    got = {c.name: (c.objective_metric, c.direction) for c in store.campaigns()}
    assert got == {"full": ("loss", "maximize"), "bare": ("acc", "maximize"), "broken": ("acc", "maximize")}
    assert store.campaign("bare").playbook["name"] == "bare"
    assert store.campaign("broken").playbook["unreadable_playbook_json"] == "{not json"
    store.engine.dispose()


def test_the_baseline_creates_the_tables_the_last_release_before_migrations_did(tmp_path):
    old = dict(rows(unpack(tmp_path) / "hive.db", "select name, sql from sqlite_master"))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'baseline.db'}")
    with engine.connect() as conn:
        command.upgrade(_config(conn), "0001")
        conn.commit()
    engine.dispose()
    new = {n: s for n, s in rows(tmp_path / "baseline.db", "select name, sql from sqlite_master") if "alembic" not in n}
    assert new.keys() == old.keys()
    # the fixture predates Run.command and Run.env_json, which that release added with ALTER TABLE
    assert {n: s for n, s in new.items() if n != "run"} == {n: s for n, s in old.items() if n != "run"}
    assert new["run"] == old["run"].replace("\terror TEXT, \n", "\terror TEXT, \n\tcommand TEXT, \n\tenv_json TEXT, \n")


def test_a_pre_alembic_store_upgrades_and_its_campaign_resumes(tmp_path):
    root = unpack(tmp_path)
    db = root / "hive.db"
    assert not rows(db, "select name from sqlite_master where name = 'alembic_version'")
    result = run_hive("start", QUICK, "--headless", "--max-experiments", "8", "-c", "run.command=python train.py",
                      "--accept-changes", cwd=tmp_path)  # the fixture ran a slower command; same training
    assert result.returncode == 0, result.stderr[-3000:]
    assert rows(db, "select version_num from alembic_version") == [(head(),)]
    after = dict(rows(db, "select number, verdict from experiment order by number"))
    assert sorted(after) == list(range(1, 9)), "numbering continues where the old campaign stopped"
    assert {n: after[n] for n in FINISHED_BEFORE} == FINISHED_BEFORE
    assert {s for (s,) in rows(db, "select status from experiment")} == {"done"}
    assert rows(db, "select experiment_id, seed from run group by experiment_id, seed having count(*) > 1") == []
    assert "resuming" in result.stderr


def _load_pre_alembic_postgresql(url: str, sqlite_db: Path) -> None:
    """Make the PostgreSQL store that release would have made: its DDL, then the SQLite fixture's rows."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql((FIXTURE / "postgresql.sql").read_text())
        meta = sa.MetaData()
        meta.reflect(conn)
        with sqlite3.connect(sqlite_db) as src:
            src.row_factory = sqlite3.Row
            for table in meta.sorted_tables:
                data = [dict(r) for r in src.execute(f'select * from "{table.name}"')]
                for row in data:
                    for column in table.columns:
                        if isinstance(column.type, sa.Boolean) and row.get(column.name) is not None:
                            row[column.name] = bool(row[column.name])
                if data:
                    conn.execute(table.insert(), data)
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                     f"coalesce((SELECT max(id) FROM \"{table.name}\"), 0) + 1, false)")
    engine.dispose()


def test_a_pre_alembic_postgresql_store_upgrades_and_its_campaign_resumes(db_url, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("the SQLite case is test_a_pre_alembic_store_upgrades_and_its_campaign_resumes")
    root = unpack(tmp_path)
    _load_pre_alembic_postgresql(db_url, root / "hive.db")
    (root / "hive.db").unlink()  # the campaign's store is the PostgreSQL one now
    result = run_hive("start", QUICK, "--headless", "--max-experiments", "7", "-c", "run.command=python train.py",
                      "--accept-changes", cwd=tmp_path, env={"HIVE_DB_URL": db_url})  # a slower command; same training
    assert result.returncode == 0, result.stderr[-3000:]
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select version_num from alembic_version").all() == [(head(),)]
        after = dict(conn.exec_driver_sql("select number, verdict from experiment").all())
        statuses = {s for (s,) in conn.exec_driver_sql("select status from experiment")}
    engine.dispose()
    assert sorted(after) == list(range(1, 8)) and {n: after[n] for n in FINISHED_BEFORE} == FINISHED_BEFORE
    assert statuses == {"done"}


OPENER = """
import sys
from hive.store import Store, make_engine
store = Store(make_engine(sys.argv[1]))
print(len(store.campaigns()))
"""


def _open_at_once(url: str, n: int) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(n)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]


def test_processes_opening_a_new_store_at_once_all_succeed(db_url):
    results = _open_at_once(db_url, 4)
    assert [r.returncode for r in results] == [0] * 4, [r.stderr[-800:] for r in results]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select version_num from alembic_version").all() == [(head(),)]
    engine.dispose()


def test_processes_opening_a_pre_alembic_store_at_once_keep_its_rows(tmp_path):
    db = unpack(tmp_path) / "hive.db"
    experiments = table(db, "experiment")
    results = _open_at_once(f"sqlite:///{db}", 4)
    assert [r.returncode for r in results] == [0] * 4, [r.stderr[-800:] for r in results]
    assert {r.stdout.strip() for r in results} == {"1"}
    after = table(db, "experiment")
    # every column that is still stored keeps its values (derived ones were dropped)
    assert [{k: row[k] for k in after[0]} for row in experiments] == after
    assert rows(db, "select version_num from alembic_version") == [(head(),)]


def test_a_store_from_a_newer_hive_is_refused_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'future.db'}"
    Store(make_engine(url)).engine.dispose()
    with sqlite3.connect(tmp_path / "future.db") as conn:
        conn.execute("update alembic_version set version_num = '9999'")
    with pytest.raises(HiveError, match="newer Hive"):
        make_engine(url)
