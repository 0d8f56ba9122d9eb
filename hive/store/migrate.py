"""Schema migrations: every open of the store runs `alembic upgrade head`, under a lock, for SQLite and PostgreSQL.

How to change the schema (add a column, an index, a table; drop or rename one):

1. Change the table in `hive/store/models.py`.
2. Add `hive/store/migrations/versions/NNNN_what_it_does.py`: the next number after the newest file, with
   `revision = "NNNN"` and `down_revision` = the newest file's revision (rebase first: two files with the same
   `down_revision` make two heads, and tests/test_migrations.py fails). `python -m hive.store revision
   -m "what it does"` writes the file with the operations Alembic sees (check them: it cannot tell a rename
   from a drop and an add).
3. Write `upgrade()` with `op.batch_alter_table(...)` for changes to existing tables (SQLite rewrites the
   table; PostgreSQL alters it in place), give new NOT NULL columns a `server_default` so old rows get a
   value, and keep the data: a derived column that is dropped is computed by a query from then on.
   Never edit a migration that has landed; stores in the field have already run it.
4. tests/test_migrations.py checks that head matches models.py on SQLite and PostgreSQL, that the pre-Alembic
   fixture store upgrades and resumes, and that concurrent openers agree.

A store made before Alembic has no alembic_version table: the baseline (0001) recognises its tables and only
adds what that store lacks, so its rows are kept, never recreated.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError

from hive.errors import HiveError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SCHEMA_LOCK_ID = 7_242_001  # a PostgreSQL advisory lock key of Hive's own


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head() -> str:
    """The newest migration's revision."""
    return ScriptDirectory.from_config(_config()).get_current_head()  # type: ignore[return-value]


@functools.cache
def known() -> frozenset[str]:
    """Every revision this Hive has a migration for."""
    return frozenset(s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions())


def current(connection: Connection) -> str | None:
    """The revision the database is at; None for an empty database or one made before Alembic."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema; safe when several processes (a TUI, the driver) open it at once."""
    if _at_head(engine):
        return
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # table rebuilds (batch operations) must not cascade; the pragma is a no-op inside a transaction
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            # the write lock comes first, so a second opener waits here and then finds the work done
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_ID})"))
        try:
            at = current(conn)
            if at is not None and at not in known():
                raise HiveError(f"the store {engine.url.render_as_string()!r} is at schema revision {at}, made by a "
                                f"newer Hive (this one knows up to {head()}): upgrade Hive to open it")
            if at != head():
                command.upgrade(_config(conn), "head")
            conn.commit()
        finally:
            if engine.dialect.name == "sqlite":
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def _at_head(engine: Engine) -> bool:
    """Whether the database already is at the newest schema (the usual case: one cheap read, no lock)."""
    try:
        with engine.connect() as conn:
            return current(conn) == head()
    except DatabaseError:  # a database file that is not one, say: let the upgrade say what is wrong
        return False


def main(argv: list[str]) -> None:
    """`python -m hive.store revision -m MESSAGE`: draft the next migration from what models.py changed."""
    import argparse
    import tempfile

    from sqlmodel import SQLModel, create_engine

    from hive.store import models  # noqa: F401  (registers the tables)

    parser = argparse.ArgumentParser(prog="python -m hive.store", description=main.__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    rev = sub.add_parser("revision", help="write versions/NNNN_<message>.py with what models.py changed")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    number = f"{int(head()) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/draft.db")
        upgrade(engine)
        with engine.connect() as conn:
            config = _config(conn)
            config.attributes["target_metadata"] = SQLModel.metadata
            slug = "_".join(args.message.lower().split())[:40]
            command.revision(config, message=args.message, autogenerate=True, rev_id=number,
                             version_path=str(MIGRATIONS / "versions"))
            made = next((MIGRATIONS / "versions").glob(f"{number}_*.py"))
            made.rename(made.with_name(f"{number}_{slug}.py"))
        engine.dispose()
    print(f"wrote {made.with_name(f'{number}_{slug}.py')}: read it, then run tests/test_migrations.py")
