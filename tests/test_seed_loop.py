"""The seed loop end to end on tiny fixtures: seeds up to objective.max_seeds, no idle slot while the baseline
runs, hopeless runs pruned from their live progress (with the run-seconds that saved), and independent wins
combined."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hive.agents.base import Verdict
from hive.agents.combine import COMBINE_SOURCE, combination
from hive.agents.critic import Critic, SeedResult
from hive.agents.significance import POOL_MAX_DF, moderated_p_value, pool_noise
from hive.graph import pooled_noise, recheck_seeds
from hive.playbook import Objective
from hive.store import Lesson, Run, Store, make_engine
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


def test_pooled_seed_noise_decides_at_three_seeds_where_the_plain_paired_test_cannot():
    objective = Objective(metric="loss", direction="minimize", min_delta=0.0072, alpha=0.05, confirm_seeds=3)
    critic = Critic(objective, max_seeds=5)
    best = {1: 1.9809, 2: 1.9294, 3: 1.9525}
    gains = {1: 0.020, 2: 0.012, 3: 0.016}  # a real gain, 0.016 against min_delta 0.0072
    candidate = [SeedResult(s, "ok", {"loss": best[s] - g}) for s, g in gains.items()]
    alone = critic.judge(candidate, best, 1)  # its own 2 df of noise do not reach the level (p 0.03 > 0.0245)
    earlier = [[0.004, -0.006, 0.003], [-0.008, 0.002, 0.005, -0.001], [0.006, -0.004, 0.0]]  # differences seen
    pooled = critic.judge(candidate, best, 1, pool_noise(earlier, 30))
    assert alone.verdict == "more_seeds" and pooled.verdict == "keep", (alone.reason, pooled.reason)
    assert "pooled over 7 df" in pooled.reason and pooled.p_value < alone.p_value
    # a candidate whose own differences swing far more than the pool's is tested on its own noise
    wild = [SeedResult(s, "ok", {"loss": v}) for s, v in zip((1, 2, 3), (1.90, 1.93, 1.86))]
    assert "pooled" not in critic.judge(wild, best, 1, pool_noise(earlier, 30)).reason


def test_pooling_keeps_the_false_keep_rate_at_alpha():
    rng = random.Random(7)
    keeps, trials = 0, 2000
    for _ in range(trials):
        pool = [[rng.gauss(0, 1) for _ in range(3)] for _ in range(5)]
        shifted = [rng.gauss(0, 1) for _ in range(3)]
        p, _ = moderated_p_value(shifted, *pool_noise(pool, 30))
        keeps += p < 0.05
    assert keeps / trials < 0.05 + 3 * (0.05 * 0.95 / trials) ** 0.5, keeps / trials


def test_a_recheck_pools_only_earlier_rechecks_pairs_and_a_confirmation_never_them(tmp_path):
    """Pairs run minutes apart and pairs run at one moment are two noises: each test borrows only its own kind. The
    numbers are the 2026-12-07 main job's: exp-12's three side-by-side pairs gained 0.0085, 0.0105 and 0.0030;
    the confirmations' pool there had 0.034 sd over 17 df, and borrowed by the recheck it hid that gain."""
    store = Store(make_engine(f"sqlite:///{tmp_path / 'hive.db'}"))
    cid = store.ensure_campaign("c")[0].id

    def exp(verdict: str, parent: int | None, values: dict[int, float]) -> int:
        e = store.new_experiment(cid, verdict=verdict, status="done", parent_number=parent, n_seeds=3,
                                 finished_at=now())
        for seed, value in values.items():
            store.add(Run(experiment_id=e.id, seed=seed, status="ok", metrics_json=json.dumps({"loss": value})))
        return e.number

    fresh = recheck_seeds(3, 3)
    base = {1: 2.016, 2: 1.956, 3: 1.967}
    side = {fresh[0]: 1.9436, fresh[1]: 1.90718, fresh[2]: 1.91846}  # the best, beside exp-3's recheck
    exp("baseline", None, {**base, **side})
    noisy = [0.05, -0.04, 0.03]  # a candidate against it, minutes apart
    exp("discard", 1, {s: base[s] - d for s, d in zip(base, noisy)})
    kept = {1: 1.95, 2: 1.93, 3: 1.92, fresh[0]: 1.93513, fresh[1]: 1.89669, fresh[2]: 1.91545}
    exp("discard", 1, kept)  # kept on seeds 1-3, discarded side by side
    confirm = pooled_noise(store, cid, "loss", excluding=4)
    expected = pool_noise([[-d for d in noisy], [kept[s] - base[s] for s in base]], POOL_MAX_DF)
    assert confirm is not None and confirm[1] == 4 and abs(confirm[0] - expected[0]) < 1e-12, (confirm, expected)
    recheck = pooled_noise(store, cid, "loss", excluding=4, side_by_side=True)
    pairs = [kept[s] - side[s] for s in fresh]
    assert recheck is not None and recheck[1] == 2 and abs(recheck[0] - statistics.variance(pairs)) < 1e-12
    assert pooled_noise(store, cid, "loss", excluding=3, side_by_side=True) is None, "exp-3 borrows not from itself"
    # the measured case: the recheck on its own pairs keeps the gain the confirmations' noise would hide
    objective = Objective(metric="loss", direction="minimize", min_delta=0.0072, alpha=0.05, confirm_seeds=3)
    critic = Critic(objective, max_seeds=5)
    keep = Verdict("keep", "paired t-test on seeds 1,2,3")
    mine = [SeedResult(s, "ok", {"loss": kept[s]}) for s in fresh]
    alone = critic.recheck(keep, mine, side, "exp-1")
    hidden = critic.recheck(keep, mine, side, "exp-1", (0.034 ** 2, 17))
    assert alone.verdict == "keep" and hidden.verdict == "discard", (alone.reason, hidden.reason)


def test_a_keep_that_drift_made_does_not_hold_side_by_side_on_fresh_seeds(hive, tmp_path):
    """The baseline's seeds were measured slow (tests/fixtures/drift): on them a change that does nothing looks
    0.2 better and is kept. With objective.recheck_seeds it runs again beside the baseline on fresh seeds, each
    pair at the same time, and is discarded; the control, with the recheck off, keeps it."""
    control = hive("start", str(FIXTURES / "drift.yaml"), "--headless", "-c", "objective.recheck_seeds=0",
                   "-c", "name=drift_control")
    assert control.returncode == 0, control.stderr[-3000:]
    db = tmp_path / "workspaces" / "drift_control" / "hive.db"
    assert rows(db, "select verdict from experiment where number = 2") == [("keep",)], "the control keeps it"
    result = hive("start", str(FIXTURES / "drift.yaml"), "--headless")
    assert result.returncode == 0, result.stderr[-3000:]
    db = tmp_path / "workspaces" / "drift" / "hive.db"
    (verdict, reason), = rows(db, "select verdict, verdict_reason from experiment where number = 2")
    assert verdict == "discard", reason
    assert "paired t-test on seeds" in reason and "but does not hold side by side with exp-1 on fresh seeds" in reason
    pairs = rows(db, "select r.seed, e.number, r.started_at, r.finished_at, r.status from run r join experiment e "
                     "on r.experiment_id = e.id where r.seed > 1000000 order by r.seed, e.number")
    assert [(seed, number) for seed, number, *_ in pairs] == [(s, n) for s in (1000201, 1000202, 1000203)
                                                               for n in (1, 2)]
    for (seed, _, start_1, end_1, ok_1), (_, _, start_2, end_2, ok_2) in zip(pairs[::2], pairs[1::2]):
        assert ok_1 == ok_2 == "ok" and start_1 < end_2 and start_2 < end_1, f"seed {seed}'s pair did not overlap"
    status = json.loads(hive("status", "drift", "--json").stdout)
    assert status["best"]["number"] == 1 and not rows(db, "select * from pullrequest")


def test_a_recheck_pair_a_kill_cut_in_half_is_replaced_by_the_next_fresh_seed(tmp_path):
    """Hive is killed (SIGKILL) after the keep's side of the first side-by-side pair finished and while the
    baseline's side still ran. On resume that pair is not completed alone (the machine may run at another pace
    by then): fresh seed 1000204 takes its place, both sides at once, and the recheck decides on 202-204."""
    slow = 'if [ "$SEED" = 1000201 ] && grep -q "^X = 0" run.py; then sleep 30; fi; python run.py'
    cmd = [sys.executable, "-m", "hive", "start", str(FIXTURES / "drift.yaml"), "--headless", "-c",
           f"run.command={slow}"]
    env = {k: v for k, v in os.environ.items() if k != "HIVE_DB_URL"} | {"HIVE_HOME": str(tmp_path / "workspaces")}
    db = tmp_path / "workspaces" / "drift" / "hive.db"
    query = ("select e.number, r.status from run r join experiment e on r.experiment_id = e.id "
             "where r.seed = 1000201")
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)

    def cut() -> bool:  # the keep's side done, the baseline's still running
        try:
            return set(rows(db, query)) == {(1, "running"), (2, "ok")}
        except sqlite3.OperationalError:  # the file is there before its tables
            return False

    try:
        deadline = time.monotonic() + 120
        while not (db.exists() and cut()):
            assert time.monotonic() < deadline and driver.poll() is None, driver.stderr.read() if driver.poll() else ""
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        for pid_file in (tmp_path / "workspaces").rglob("*.log.pid"):  # a run without a sandbox lives on
            with contextlib.suppress(ValueError, OSError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    resumed = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "the pair on fresh seed 1000201 was cut by a stop (one side ran alone): fresh seed 1000204 takes its " \
           "place" in resumed.stderr, resumed.stderr[-3000:]
    (reason,), = rows(db, "select verdict_reason from experiment where number = 2")
    assert "side by side with exp-1 on fresh seeds 1000204,1000202,1000203" in reason, reason
    finished = rows(db, "select r.seed, e.number, r.started_at, r.finished_at from run r join experiment e "
                        "on r.experiment_id = e.id where r.seed > 1000000 and r.status = 'ok' "
                        "order by r.seed, e.number")
    assert [(seed, number) for seed, number, *_ in finished] == [(1000201, 2)] + [
        (s, n) for s in (1000202, 1000203, 1000204) for n in (1, 2)], "the baseline never ran 1000201 alone"
    for (seed, _, start_1, end_1), (_, _, start_2, end_2) in zip(finished[1::2], finished[2::2]):
        assert start_1 < end_2 and start_2 < end_1, f"seed {seed}'s pair did not overlap"
