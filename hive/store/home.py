"""Where campaigns live: the home folder, each campaign's store, and finding a campaign by name."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.exc import DatabaseError

from hive.errors import BadInput
from hive.store.engine import database_url, make_engine
from hive.store.models import Campaign
from hive.store.queries import Store


def home_dir(workspaces: str | Path | None = None) -> Path:
    """Where campaigns live: --workspaces, else HIVE_HOME, else ./workspaces."""
    return Path(workspaces or os.environ.get("HIVE_HOME") or "workspaces").resolve()


SQLITE_HEADER = b"SQLite format 3\x00"
RESTART_HINT = "`hive start --restart` moves the campaign folder aside and starts over"


def open_store(home: Path, campaign: str) -> Store:
    """The store that holds a campaign (its SQLite file, or HIVE_DB_URL); BadInput when its file is unreadable."""
    db = home / campaign / "hive.db"
    if not os.environ.get("HIVE_DB_URL") and db.is_file() and db.stat().st_size > 0:
        with open(db, "rb") as fh:
            if fh.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise BadInput(f"{db}: not a SQLite database (the campaign's store is damaged); {RESTART_HINT}")
    try:
        return Store(make_engine(database_url(home / campaign)))
    except DatabaseError as exc:  # a damaged page past a good header
        raise BadInput(f"{db}: the campaign's store cannot be read ({str(exc.orig).splitlines()[0]}); "
                       f"{RESTART_HINT}") from None


def lock_holder(path: Path) -> int | None:
    """The pid holding a campaign's lock file (-1 when it names none), or None when no live process holds it.

    The lock is an flock, which the kernel drops when its holder dies: a killed driver never looks alive.
    """
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def find_campaign(home: Path, name: str | None) -> tuple[Store, Campaign]:
    """Look up a campaign by name (or the only one there is); BadInput naming the valid ones if absent."""
    if os.environ.get("HIVE_DB_URL"):
        store = Store(make_engine(os.environ["HIVE_DB_URL"]))
        names = [c.name for c in store.campaigns()]
    else:
        names = sorted(p.name for p in home.glob("*") if (p / "hive.db").is_file()) if home.is_dir() else []
        store = None
    valid = ", ".join(names) or "none yet; `hive start PLAYBOOK` creates one"
    if name is None:
        if len(names) != 1:
            raise BadInput(f"--campaign: name a campaign, e.g. --campaign {names[0] if names else 'NAME'} "
                           f"(known: {valid})")
        name = names[0]
    if name not in names:
        raise BadInput(f"--campaign: no campaign {name!r} under {home} (known: {valid})")
    store = store or open_store(home, name)
    campaign = store.campaign(name)
    if campaign is None:
        raise BadInput(f"--campaign: no campaign {name!r} in the store")
    return store, campaign
