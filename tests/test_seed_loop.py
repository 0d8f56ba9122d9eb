"""The seed loop end to end on tiny fixtures: seeds up to objective.max_seeds, no idle slot while the baseline
runs, and hopeless runs pruned from their live progress (with the run-seconds that saved)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def test_candidates_earn_seeds_up_to_max_seeds_and_start_while_the_baseline_runs(hive, tmp_path):
    result = hive("start", str(FIXTURES / "seedloop.yaml"), "--headless", "-c", "run.env.PAUSE=2")
    assert result.returncode == 0, result.stderr[-3000:]
    db = tmp_path / "workspaces" / "seedloop" / "hive.db"
    exps = rows(db, "select number, verdict, n_seeds, verdict_reason from experiment where number > 1 order by number")
    assert len(exps) == 3
    for number, verdict, n_seeds, reason in exps:
        # every change passes the screen and is never decided: it gets exactly max_seeds (4), not run.seeds (6)
        assert (verdict, n_seeds) == ("discard", 4), (number, reason)
        assert "not significant after 4 seeds" in reason and "at each of 2 look(s)" in reason
    assert rows(db, "select max(seed) from run")[0][0] == 4, "no seed beyond max_seeds ran, the baseline's neither"
    # the baseline is the best as soon as its first seed is known: a candidate starts while its last seed runs
    last_baseline = rows(db, "select max(r.finished_at) from run r join experiment e on r.experiment_id = e.id "
                             "where e.number = 1 and r.seed <= 3")[0][0]
    first_candidate = rows(db, "select min(r.started_at) from run r join experiment e on r.experiment_id = e.id "
                               "where e.number > 1")[0][0]
    assert first_candidate < last_baseline, (first_candidate, last_baseline)


def test_max_seeds_beyond_the_seeds_is_one_clear_line(hive, tmp_path):
    result = hive("start", str(FIXTURES / "seedloop.yaml"), "--headless", "-c", "objective.max_seeds=7")
    assert result.returncode == 2
    assert "objective.max_seeds (7) must be between confirm_seeds (3) and the number of run.seeds (6)" in result.stderr
    assert "Traceback" not in result.stderr


def test_late_divergence_is_pruned_before_its_time_limit_and_the_saving_is_reported(hive, tmp_path):
    result = hive("start", str(FIXTURES / "diverge.yaml"), "--headless")
    assert result.returncode == 0, result.stderr[-3000:]
    db = tmp_path / "workspaces" / "diverge" / "hive.db"
    runs = rows(db, "select e.number, e.proposal_json, e.verdict, e.verdict_reason, r.status, r.wall_seconds, "
                    "r.metrics_json from run r join experiment e on r.experiment_id = e.id where e.number > 1")
    diverging = [r for r in runs if json.loads(r[1])["knobs"]["LR"] > 0.5]
    assert diverging, "the fixture's sampler proposes some learning rates above 0.5"
    full = max(w for *_, status, w, _ in runs if status == "ok")
    for number, _, verdict, reason, status, wall, metrics in diverging:
        assert (status, verdict) == ("pruned", "pruned"), (number, reason)
        assert wall < full and wall < 30, "stopped well before a full run, and before the time limit"
        assert "behind at step" in reason and "run-seconds saved" in reason
        assert json.loads(metrics)["saved_seconds"] > 0
    status = json.loads(hive("status", "diverge", "--json").stdout)
    pruned = status["pruned"]
    assert pruned["runs"] >= len(diverging) and pruned["run_seconds_saved"] > 0
    assert "run-seconds saved" in hive("status", "diverge").stdout
    print(f"pruned {pruned['runs']} run(s): {pruned['run_seconds']:.1f} run-seconds spent, "
          f"{pruned['run_seconds_saved']:.1f} saved")
