"""Database engines: SQLite with WAL and a busy timeout by default, any SQLAlchemy URL via HIVE_DB_URL."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import SQLModel, create_engine

from hive.errors import BadInput
from hive.store import models  # noqa: F401  (registers the tables)

BUSY_TIMEOUT_MS = 30_000
SCHEMA_LOCK_ID = 7_242_001  # a PostgreSQL advisory lock key of Hive's own


def database_url(campaign_dir: Path) -> str:
    """HIVE_DB_URL when set, else the campaign's own SQLite file."""
    return os.environ.get("HIVE_DB_URL") or f"sqlite:///{campaign_dir / 'hive.db'}"


def make_engine(url: str) -> Engine:
    """An engine for the URL with the tables created; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    else:
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # noqa: BLE001  (bad URL or missing driver is a user mistake)
            raise BadInput(f"HIVE_DB_URL: cannot use {url.split('@')[-1]!r}: {exc}") from None
    _create_tables(engine)
    return engine


def _create_tables(engine: Engine) -> None:
    """Create missing tables, columns and indexes; safe when several processes (or a TUI) open the store at once."""
    for attempt in range(5):
        try:
            return _create_tables_once(engine)
        except (OperationalError, ProgrammingError) as exc:
            # SQLite has no lock to take first: another opener created the same thing between check and create
            if "already exists" not in str(exc) or attempt == 4:
                raise


def _create_tables_once(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_ID})"))
        SQLModel.metadata.create_all(conn)
        _add_missing_columns(conn)
        # stores made by an older Hive get the indexes added since
        for table in SQLModel.metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def _add_missing_columns(conn) -> None:  # noqa: ANN001
    """Stores made by an older Hive get the columns added since (additive changes only)."""
    existing = inspect(conn)
    for table in SQLModel.metadata.sorted_tables:
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            default = column.default.arg if column.default is not None and not callable(column.default.arg) else None
            clause = ""
            if isinstance(default, (bool, int, float)):
                clause = f" DEFAULT {int(default) if isinstance(default, bool) else default}"
            elif isinstance(default, str):
                clause = " DEFAULT '" + default.replace("'", "''") + "'"
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{clause}'))
