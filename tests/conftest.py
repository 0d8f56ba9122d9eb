"""Shared fixtures: a `hive` CLI runner in a temp home, store backends, the repo root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"


def run_hive(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `hive` command line in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if k != "HIVE_DB_URL"}
    full_env.update({"HIVE_HOME": str(cwd / "workspaces"), **(env or {})})
    return subprocess.run([sys.executable, "-m", "hive", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(params=["bwrap", "none"])
def sandbox_mode(request):
    """Each sandbox mode a local run can have; bwrap skips where it cannot run on this machine."""
    from hive.sandbox import probe

    if request.param == "bwrap" and probe() is not None:
        pytest.skip(f"bwrap cannot run here: {probe()}")
    return request.param


def wait_still(path: Path, quiet: float = 0.4, limit: float = 10.0) -> bool:
    """True once a heartbeat file stops growing for `quiet` seconds (its writer is gone), False after `limit`."""
    import time

    deadline = time.monotonic() + limit
    size = path.stat().st_size if path.exists() else -1
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now_size = path.stat().st_size if path.exists() else -1
        if now_size != size:
            size, still_since = now_size, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return True
    return False


# a process that appends a byte to the file named by argv[1] every 20 ms until killed
HEARTBEAT = "import sys, time\nwhile True:\n    open(sys.argv[1], 'a').write('.')\n    time.sleep(0.02)\n"


@pytest.fixture
def quick(tmp_path):
    """The quickstart playbook on a copy of its source, and its created campaign workspace (no store)."""
    from hive.playbook import load_playbook
    from hive.workspace import Workspace

    src = tmp_path / "src"
    shutil.copytree(PLAYBOOKS / "quickstart", src)
    pb = load_playbook(PLAYBOOKS / "quickstart.yaml", [f"source={src}"])
    ws = Workspace(tmp_path / "ws", "quickstart")
    ws.create(pb)
    return pb, ws


@pytest.fixture
def hive(tmp_path):
    def _run(*args: str, env: dict | None = None, timeout: float = 300):
        return run_hive(*args, cwd=tmp_path, env=env, timeout=timeout)
    return _run


def pg_url() -> str | None:
    return os.environ.get("HIVE_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh database URL: a SQLite file, and PostgreSQL when HIVE_TEST_PG_URL names a server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hive.db'}"
        return
    url = pg_url()
    if not url:
        pytest.skip("PostgreSQL not available: set HIVE_TEST_PG_URL (scripts/services.sh postgres starts one)")
    import sqlalchemy as sa

    schema = f"t{os.getpid()}_{abs(hash(request.node.name)) % 10**8}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
