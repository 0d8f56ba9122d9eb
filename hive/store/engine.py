"""Database engines: SQLite with WAL and a busy timeout by default, any SQLAlchemy URL via HIVE_DB_URL."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import create_engine

from hive.errors import BadInput
from hive.store.migrate import upgrade

BUSY_TIMEOUT_MS = 30_000


def database_url(campaign_dir: Path) -> str:
    """HIVE_DB_URL when set, else the campaign's own SQLite file."""
    return os.environ.get("HIVE_DB_URL") or f"sqlite:///{campaign_dir / 'hive.db'}"


def make_engine(url: str) -> Engine:
    """An engine for the URL with its schema at the newest migration; SQLite gets WAL, a busy timeout, foreign keys."""
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
    upgrade(engine)
    return engine
