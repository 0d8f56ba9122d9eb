"""The seed loop end to end on tiny fixtures: seeds up to objective.max_seeds, no idle slot while the baseline
runs, hopeless runs pruned from their live progress (with the run-seconds that saved), and independent wins
combined."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from hive.agents.combine import COMBINE_SOURCE, combination
from hive.store import Lesson, Store, make_engine
from hive.store.models import now

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


def test_two_independent_gains_found_in_parallel_end_in_a_best_with_both(hive, tmp_path):
    result = hive("start", str(FIXTURES / "combine.yaml"), "--headless")
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "workspaces" / "combine"
    db = root / "hive.db"
    best = json.loads(hive("status", "combine", "--json").stdout)["best"]
    # exp-2 and exp-3 changed A and B from the baseline in parallel; the one kept second-best was a win all the same
    first = {n: json.loads(p)["knobs"] for n, p in rows(db, "select number, proposal_json from experiment "
                                                            "where number in (2, 3)")}
    assert sorted(tuple(sorted(k.items())) for k in first.values()) == [(("A", 0), ("B", 1)), (("A", 1), ("B", 0))]
    reasons = [r for (r,) in rows(db, "select verdict_reason from experiment where number in (2, 3) "
                                      "and verdict = 'discard'")]
    assert len(reasons) == 1 and "to be combined with exp-" in reasons[0], reasons
    proposal = json.loads(rows(db, f"select proposal_json from experiment where number = {best['number']}")[0][0])
    assert (proposal["knobs"]["A"], proposal["knobs"]["B"]) == (1, 1) and best["metric_mean"] < 0.6, best
    # the best branch holds both changes, as the code that ran; no configuration ran twice
    source = subprocess.run(["git", "show", "hive/combine/best:run.py"], cwd=root / "repo", check=True,
                            capture_output=True, text=True).stdout
    assert "\nA = 1" in source and "\nB = 1" in source
    configs = [json.loads(p)["knobs"] for (p,) in rows(db, "select proposal_json from experiment where number > 1")]
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs), configs


def test_a_win_over_its_parent_on_other_knobs_is_proposed_with_the_best_once(tmp_path):
    store = Store(make_engine(f"sqlite:///{tmp_path / 'hive.db'}"))
    cid = store.ensure_campaign("c")[0].id

    def exp(verdict: str, parent: int | None, **knobs: int) -> int:
        proposal = json.dumps({"knobs": {"A": 0, "B": 0, **knobs}})
        return store.new_experiment(cid, verdict=verdict, status="done", parent_number=parent,
                                    proposal_json=proposal, finished_at=now()).number

    exp("baseline", None)
    best = store.experiment(cid, exp("keep", 1, A=1))
    win = exp("discard", 1, B=1)
    exp("discard", 1, A=1, B=0)  # a loser: never combined
    assert combination(store, cid, best) is None, "a discard is no win until the critic says it beat its parent"
    store.add(Lesson(campaign_id=cid, experiment_number=win, source=COMBINE_SOURCE, text="beat exp-1"))
    proposal = combination(store, cid, best)
    assert proposal is not None and proposal.knobs == {"A": 1, "B": 1} and proposal.combines == [best.number, win]
    assert proposal.parent == best.number and proposal.strategist == "combine"
    store.new_experiment(cid, status="running", proposal_json=json.dumps(proposal.to_dict()))
    assert combination(store, cid, best) is None, "each pair is tried once"
    # a win that moved the same knob as the best is not independent of it
    other = store.experiment(cid, exp("keep", 1, A=1, B=1))
    clash = exp("discard", 1, A=0, B=1)
    store.add(Lesson(campaign_id=cid, experiment_number=clash, source=COMBINE_SOURCE, text="beat exp-1"))
    assert combination(store, cid, other) is None
