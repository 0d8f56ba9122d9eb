"""Resuming from the store alone: an experiment killed between the store's keep and git's best branch."""

from __future__ import annotations

import sqlite3
import subprocess

from tests.conftest import run_hive
from tests.test_migrations import QUICK, rows, unpack


def git(repo, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_a_keep_the_store_recorded_before_git_moved_is_finished_on_resume(tmp_path):
    root = unpack(tmp_path)
    db, repo = root / "hive.db", root / "repo"
    status = run_hive("status", "--json", cwd=tmp_path)  # migrates the old store
    assert status.returncode == 0, status.stderr
    # what a kill right after the store said "keep" leaves: exp-2 kept but judging, best branch and PR not yet made
    with sqlite3.connect(db) as conn:
        conn.execute("update experiment set status = 'judging' where number = 2")
        conn.execute("delete from pullrequest")
    git(repo, "update-ref", "refs/heads/hive/quickstart/best", git(repo, "rev-parse", "hive/quickstart/baseline"))
    result = run_hive("start", QUICK, "--headless", "--max-experiments", "5", "-c", "run.command=python train.py",
                      "--accept-changes", cwd=tmp_path)  # the fixture ran a slower command; same training
    assert result.returncode == 0, result.stderr[-3000:]
    assert rows(db, "select status, verdict from experiment where number = 2") == [("done", "keep")]
    assert rows(db, "select count(*) from pullrequest where experiment_number = 2") == [(1,)]
    history = git(repo, "log", "--format=%s", "hive/quickstart/best")
    assert history.count("hive: keep exp-2:") == 1
    # the best branch holds the store's best (exp-2, or a keep among the experiments resumed after it)
    best = rows(db, "select number, \"commit\" from experiment where verdict = 'keep' "
                    "order by finished_at desc, number desc limit 1")[0]
    assert git(repo, "rev-parse", "hive/quickstart/best^{tree}") == git(repo, "rev-parse", f"{best[1]}^{{tree}}")
