"""The non-LLM roles: critic statistics, AST knob rewrites, the Optuna proposer's memory."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from hive.agents.base import CampaignView, ExperimentBrief, Outcome, Proposal
from hive.agents.critic import Critic, SeedResult
from hive.agents.significance import paired_p_value, shifted_gains, welch_p_value
from hive.agents.knob_coder import KnobCoder
from hive.agents.search import SearchProposer, trust_region
from hive.errors import BudgetExhausted, EditRejected
from hive.executors import LocalExecutor
from hive.knobs import read_value, rewrite_assignment, runtime_knobs
from hive.playbook import Objective, Playbook
from hive.runner import Runner
from hive.workspace import Workspace
from tests.conftest import ROOT


def ok(seed: int, value: float, **extra) -> SeedResult:
    return SeedResult(seed, "ok", {"loss": value, **extra})


@pytest.fixture
def critic():
    return Critic(Objective(metric="loss", direction="minimize", constraints=["bytes <= 100"], min_delta=0.01,
                            alpha=0.05, confirm_seeds=3))


def test_hard_checks_come_first(critic):
    best = {1: 1.0, 2: 1.1, 3: 0.9}
    assert critic.judge([SeedResult(1, "timeout", {}, "killed after 5 s")], best, 1).verdict == "timeout"
    assert critic.judge([SeedResult(1, "failed", {}, "exit code 1")], best, 1).verdict == "crash"
    assert critic.judge([SeedResult(1, "tampered", {}, "changed harness")], best, 1).verdict == "rejected"
    pruned = critic.judge([SeedResult(1, "pruned", {}, "pruned at step 40")], best, 1)
    assert pruned.verdict == "pruned" and "step 40" in pruned.reason
    nan = critic.judge([ok(1, float("nan"), bytes=5)], best, 1)
    assert nan.verdict == "invalid" and "finite" in nan.reason
    assert critic.judge([SeedResult(1, "ok", {"bytes": 5})], best, 1).verdict == "invalid"
    over = critic.judge([ok(1, 0.1, bytes=101)], best, 1)
    assert over.verdict == "invalid" and "bytes" in over.reason


def _seeds(*values: float) -> list[SeedResult]:
    return [ok(i, v, bytes=1) for i, v in enumerate(values, 1)]


def test_the_screen_compares_with_the_best_on_the_same_seed(critic):
    best = {1: 1.0, 2: 1.3, 3: 1.2}  # mean 1.17
    # 1.1 beats the best's mean but not its value on seed 1: a paired screen discards it
    screen = critic.judge(_seeds(1.1), best, 1)
    assert screen.verdict == "discard" and "exp-1 on seed 1" in screen.reason
    assert screen.gain == pytest.approx(-0.1)  # the gain on seed 1, what the local search's follow-ups read
    unpaired = Critic(critic.objective, test="welch").judge(_seeds(1.1), best, 1)
    assert unpaired.verdict == "more_seeds" and "mean" in unpaired.reason
    more = critic.judge(_seeds(0.9), best, 1)
    assert more.verdict == "more_seeds" and more.seeds_wanted == 1


def test_paired_confirmation_keeps_what_welch_cannot_see(critic):
    # the exp-36 against the baseline: large shared seed effects, small paired differences
    best = {1: 1.9809, 2: 1.9294, 3: 1.9525}
    objective = Objective(metric="loss", min_delta=0.0072, alpha=0.05, confirm_seeds=3)
    candidate = _seeds(1.9461, 1.9073, 1.9287)
    paired = Critic(objective).judge(candidate, best, 1)
    assert paired.verdict == "keep" and "paired t-test" in paired.reason
    assert paired.p_value == pytest.approx(0.019, abs=0.002)
    assert paired.gain == pytest.approx((0.0348 + 0.0221 + 0.0238) / 3)  # the mean paired difference
    welch = Critic(objective, test="welch").judge(candidate, best, 1)
    assert welch.verdict == "discard" and welch.p_value == pytest.approx(0.18, abs=0.02)


def test_sequential_confirmation_stops_early_both_ways(critic):
    seq = Critic(critic.objective, max_seeds=5)
    best = {1: 1.0, 2: 1.1, 3: 0.9, 4: 1.05, 5: 0.95}
    assert seq.looks == (3, 4, 5) and seq.level < critic.objective.alpha
    # before the first look only futility can stop it
    assert seq.judge(_seeds(0.5, 0.52), best, 1).verdict == "more_seeds"
    assert seq.judge(_seeds(0.9, 1.3), best, 1).verdict == "discard"
    keep = seq.judge(_seeds(0.5, 0.62, 0.38), best, 1)
    assert keep.verdict == "keep" and keep.p_value < seq.level, "a clear win is kept at the first look"
    unsure = seq.judge(_seeds(0.9, 1.06, 0.87), best, 1)
    assert unsure.verdict == "more_seeds", unsure.reason
    futile = seq.judge(_seeds(0.98, 1.1, 0.9), best, 1)
    assert futile.verdict == "discard" and "futility" in futile.reason
    last = seq.judge(_seeds(0.9, 1.06, 0.87, 1.08, 0.96), best, 1)
    assert last.verdict == "discard" and "after 5 seeds" in last.reason
    tiny = critic.judge(_seeds(0.995, 1.096, 0.894), best, 1)
    assert tiny.verdict == "discard" and "min_delta" in tiny.reason


def test_unpaired_seeds_fall_back_to_welch_and_say_why(critic):
    best = {1: 1.0, 2: 1.02}  # seed 3 of the best failed
    verdict = critic.judge(_seeds(0.5, 0.52, 0.48), best, 7)
    assert verdict.verdict == "keep" and "Welch" in verdict.reason and "exp-7 has no seed 3" in verdict.reason


def test_one_seed_decides_when_no_test_is_asked_for():
    greedy = Critic(Objective(metric="loss", min_delta=0.0, confirm_seeds=1))
    assert greedy.judge(_seeds(0.9), {1: 1.0}, 1).verdict == "keep"
    assert greedy.judge(_seeds(1.1), {1: 1.0}, 1).verdict == "discard"


def test_the_sequential_boundary_holds_alpha_on_noise():
    """Paired null confirmations (no real gain, shared seed effects): keeps stay at or below alpha."""
    import random

    rng = random.Random(5)
    objective = Objective(metric="loss", min_delta=0.0, alpha=0.05, confirm_seeds=3)
    seq = Critic(objective, max_seeds=5)
    keeps, trials = 0, 2000
    for _ in range(trials):
        shared = [rng.gauss(0, 3) for _ in range(5)]
        best = {s + 1: shared[s] + rng.gauss(0, 1) for s in range(5)}
        values = []
        for s in range(5):
            values.append(shared[s] + rng.gauss(0, 1))
            verdict = seq.judge(_seeds(*values), best, 1)
            if verdict.verdict != "more_seeds":
                break
        keeps += verdict.verdict == "keep"
    # alpha at every look would keep about 8 %; the futility stops take it further below the bound
    assert keeps / trials <= 0.05 + 0.01, keeps


def test_welch_direction_and_shift():
    assert welch_p_value("maximize", [2.0, 2.1, 1.9], [1.0, 1.1, 0.9], 0.0) < 0.01
    assert welch_p_value("maximize", [1.0, 1.1, 0.9], [2.0, 2.1, 1.9], 0.0) > 0.99
    assert welch_p_value("maximize", [2.0, 2.1, 1.9], [1.0, 1.1, 0.9], 1.5) > 0.5
    assert welch_p_value("maximize", [1.0], [1.0, 2.0], 0.0) is None
    # a best with one value (its other seeds failed): a one-sample test, not a keep on the mean alone
    assert welch_p_value("minimize", [0.5, 1.3, 0.9], [1.0], 0.0) > 0.3
    assert welch_p_value("minimize", [0.50, 0.51, 0.49], [1.0], 0.0) < 0.01


def test_paired_p_value_direction_and_shift():
    gains = shifted_gains("minimize", [0.9, 0.95, 0.85], [1.0, 1.04, 0.96], 0.0)
    assert paired_p_value(gains) < 0.01
    assert paired_p_value(shifted_gains("minimize", [0.9, 0.95, 0.85], [1.0, 1.04, 0.96], 0.2)) > 0.99
    assert paired_p_value(shifted_gains("maximize", [1.1, 1.05, 1.15], [1.0, 0.96, 1.04], 0.0)) < 0.01
    assert paired_p_value([0.1]) is None and paired_p_value([0.1, 0.1]) == 0.0


SOURCE = '''import os

# comment kept
LR = 0.01  # learning rate
DIM = int(os.environ.get("DIM", 256))  # width
ACT = os.environ.get("ACT", "relu")  # activation
WD = float(os.environ.get("WD", "0.1"))
NEG = -3

def f():
    LR = 5
'''


def test_rewrite_keeps_everything_else_byte_for_byte():
    out = rewrite_assignment(SOURCE, "LR", 0.1)
    assert out == SOURCE.replace("LR = 0.01  #", "LR = 0.1  #")
    out = rewrite_assignment(out, "DIM", 384)
    assert 'DIM = int(os.environ.get("DIM", 384))  # width' in out
    out = rewrite_assignment(out, "ACT", "gelu")
    assert "ACT = os.environ.get(\"ACT\", 'gelu')" in out
    out = rewrite_assignment(out, "WD", 0.05)
    assert "WD = float(os.environ.get(\"WD\", '0.05'))" in out
    out = rewrite_assignment(out, "NEG", -7)
    assert "NEG = -7" in out and "    LR = 5" in out
    assert read_value(out, "DIM") == 384 and read_value(out, "WD") == 0.05 and read_value(out, "LR") == 0.1
    assert rewrite_assignment("X = 1\n", "X", 2.0) == "X = 2.0\n"
    # characters str.splitlines breaks at but Python does not (form feed, line separator) shift nothing
    assert rewrite_assignment("# page\x0c\nLR = 0.1\nSTEPS = 40\n", "STEPS", 99).endswith("STEPS = 99\n")
    assert "LR = 0.5" in rewrite_assignment("# a \u2028 b\nLR = 0.1\n", "LR", 0.5)
    with pytest.raises(EditRejected):
        rewrite_assignment(SOURCE, "MISSING", 1)


def _playbook(tmp_path, knobs, command="python train.py") -> Playbook:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "train.py").write_text(
        "import os, sys\nLR = 0.01  # rate\nprint('---')\nprint('lr:', LR)\nprint('argv:', ' '.join(sys.argv[1:]))\n"
        "print('env:', os.environ.get('ACT', 'none'))\n")
    return Playbook.model_validate({
        "name": "k", "source": str(src), "editable": ["train.py"], "run": {"command": command},
        "objective": {"metric": "lr"}, "knobs": knobs})


def test_knob_coder_files_flags_and_env_reach_the_run(tmp_path):
    pb = _playbook(tmp_path, [
        {"name": "LR", "type": "float", "low": 0.001, "high": 1, "bind": {"file": "train.py", "assign": "LR"}},
        {"name": "STEPS", "type": "int", "low": 1, "high": 9, "bind": {"flag": "--steps"}},
        {"name": "ACT", "type": "categorical", "choices": ["relu", "gelu"], "bind": {"env": "ACT"}}])
    ws = Workspace(tmp_path / "ws", "k")
    base = ws.create(pb)
    tree = ws.worktree(2, base)
    summary = KnobCoder(pb).code(Proposal("h", knobs={"LR": 0.25, "STEPS": 7, "ACT": "gelu"}), tree)
    assert "LR=0.25" in summary and "STEPS=7" in summary
    commit = ws.commit(tree, "exp-2")
    assert ws.illegal_changes(base, commit, pb) == []
    assert runtime_knobs(tree) == {"ACT": "gelu", "STEPS": 7}
    outcome = Runner(pb, ws, LocalExecutor()).run_seed(2, 1, commit)
    assert outcome.status == "ok", outcome.error
    assert outcome.metrics["lr"] == 0.25 and outcome.metrics["argv"] == "--steps 7" and outcome.metrics["env"] == "gelu"
    with pytest.raises(EditRejected, match="unknown knob"):
        KnobCoder(pb).code(Proposal("h", knobs={"NOPE": 1}), tree)


def _view(best_knobs=None, since_best: int = 0) -> CampaignView:
    base = ExperimentBrief(number=1, hypothesis="baseline", verdict="baseline", metric_mean=1.0,
                           knobs=best_knobs or {})
    return CampaignView(name="s", metric="loss", direction="minimize", constraints=[], rules="", knobs=[],
                        editable=[], protected=[], baseline=base, best=base, leaderboard=[], recent=[], in_flight=[],
                        lessons=[], since_best=since_best)


def _search_playbook(tmp_path, choices):
    return _playbook(tmp_path, [{"name": "A", "type": "categorical", "choices": choices,
                                 "bind": {"file": "train.py", "assign": "LR"}}])


def test_search_never_repeats_and_says_when_the_space_is_exhausted(tmp_path):
    pb = _search_playbook(tmp_path, [0.1, 0.2, 0.3])
    storage = tmp_path / "optuna.journal"
    proposer = SearchProposer(pb, storage, "s", seed=0, baseline={"A": 0.1})
    seen = []
    for number in range(2, 4):
        proposal = proposer.propose(_view({"A": 0.1}), number)
        seen.append(proposal.knobs["A"])
        proposer.observe(proposal, Outcome(number, "discard", 1.0 + number))
    assert sorted(seen) == [0.2, 0.3], "the baseline's value and earlier proposals are not proposed again"
    with pytest.raises(BudgetExhausted, match="exhausted"):
        proposer.propose(_view({"A": 0.1}), 4)


def test_search_resumes_from_its_study_and_fails_orphan_trials(tmp_path):
    pb = _search_playbook(tmp_path, [0.1, 0.2, 0.3, 0.4, 0.5])
    storage = tmp_path / "optuna.journal"
    first = SearchProposer(pb, storage, "s", seed=1, baseline={"A": 0.1})
    done = first.propose(_view(), 2)
    first.observe(done, Outcome(2, "crash", None))
    orphan = first.propose(_view(), 3)  # asked, then the process "died"
    second = SearchProposer(pb, storage, "s", seed=2, baseline={"A": 0.1})
    assert second.reconcile(live_trials=set()) == 1
    states = {t.number: t.state for t in second.study.trials}
    assert states[done.trial] == optuna.trial.TrialState.FAIL and states[orphan.trial] == optuna.trial.TrialState.FAIL
    again = second.propose(_view(), 4)
    assert again.knobs["A"] not in (done.knobs["A"], orphan.knobs["A"])
    second.observe(again, Outcome(4, "discard", 0.5))
    second.observe(again, Outcome(4, "discard", 0.5))  # told twice after a crash: ignored
    assert second.study.trials[again.trial].value == 0.5


def test_the_study_journal_lock_excludes_another_process_and_loses_no_write(tmp_path):
    """The journal lock is an flock: while this process holds it, another process's write waits; writers in two
    processes at once lose nothing and tear no line."""
    import subprocess
    import sys
    import time

    from hive.agents.search import FlockLock, study_storage

    journal = tmp_path / "optuna.journal"
    optuna.create_study(study_name="s", storage=study_storage(journal))
    writer = (f"import sys, optuna; sys.path.insert(0, {str(ROOT)!r}); from hive.agents.search import study_storage\n"
              f"study = optuna.load_study(study_name='s', storage=study_storage({str(journal)!r}))\n"
              "for i in range(int(sys.argv[1])): study.add_trial(optuna.trial.create_trial(params={}, "
              "distributions={}, value=float(i)))\nprint('done', flush=True)\n")
    held = FlockLock(journal)
    held.acquire()
    blocked = subprocess.Popen([sys.executable, "-c", writer, "1"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)  # long enough for the child to start and reach its first write
    assert blocked.poll() is None, "a write went ahead while another process held the journal lock"
    held.release()
    assert blocked.communicate(timeout=60)[0].strip() == "done"
    both = [subprocess.Popen([sys.executable, "-c", writer, "150"]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in both] == [0, 0]
    study = optuna.load_study(study_name="s", storage=study_storage(journal))
    assert len(study.trials) == 301
    assert all(line.startswith(b"{") and line.endswith(b"}") for line in journal.read_bytes().splitlines())


def test_greedy_moves_one_knob_from_the_best(tmp_path):
    pb = _playbook(tmp_path, [
        {"name": "LR", "type": "float", "low": 0.001, "high": 1, "log": True, "bind": {"file": "train.py", "assign": "LR"}},
        {"name": "N", "type": "int", "low": 1, "high": 100, "bind": {"env": "N"}}])
    proposer = SearchProposer(pb, tmp_path / "o.journal", "g", strategy="greedy", seed=3,
                              baseline={"LR": 0.01, "N": 50})
    proposal = proposer.propose(_view({"LR": 0.01, "N": 50}), 2)
    moved = [k for k in ("LR", "N") if proposal.knobs[k] != {"LR": 0.01, "N": 50}[k]]
    assert len(moved) == 1, proposal.knobs


def test_greedy_moves_stay_on_the_knob_grid(tmp_path):
    # 15 % of this range is 21.6: off the grid of 16s unless snapped back onto it
    pb = _playbook(tmp_path, [{"name": "D", "type": "int", "low": 120, "high": 264, "step": 16, "bind": {"env": "D"}}])
    proposer = SearchProposer(pb, tmp_path / "o.journal", "g", strategy="greedy", seed=1, baseline={"D": 184})
    values = set()
    for number in range(2, 4):
        proposal = proposer.propose(_view({"D": 184}), number)
        proposer.observe(proposal, Outcome(number, "discard", 1.0))
        values.add(proposal.knobs["D"])
    assert values == {168, 200}


def _wide_playbook(tmp_path):
    knobs = [{"name": f"F{i}", "type": "float", "low": 0.0, "high": 10.0, "bind": {"env": f"F{i}"}} for i in range(4)]
    knobs += [{"name": "LR", "type": "float", "low": 0.001, "high": 1.0, "log": True, "bind": {"env": "LR"}},
              {"name": "N", "type": "int", "low": 0, "high": 100, "step": 10, "bind": {"env": "N"}},
              {"name": "B", "type": "categorical", "choices": [8, 16, 32, 64, 128], "bind": {"env": "B"}}]
    center = {"F0": 5.0, "F1": 5.0, "F2": 5.0, "F3": 5.0, "LR": 0.03, "N": 50, "B": 32}
    return _playbook(tmp_path, knobs), center


def test_local_search_moves_a_few_knobs_of_the_best_inside_a_widening_region(tmp_path):
    pb, center = _wide_playbook(tmp_path)
    proposer = SearchProposer(pb, tmp_path / "o.journal", "l", seed=4, baseline=center)
    # one knob while the region widens to 40 % of its range, then two knobs, then narrow again
    assert trust_region(0) == (1, 0.1) and trust_region(4) == (1, 0.2) and trust_region(8) == (1, 0.4)
    assert trust_region(12) == (2, 0.4) and trust_region(16) == (1, 0.1) and trust_region(40) == (1, 0.4)
    for number, since in enumerate((0, 0, 0, 4, 4, 8, 8, 8), 2):
        proposal = proposer.propose(_view(center, since), number)
        count, radius = trust_region(since)
        moved = {k: v for k, v in proposal.knobs.items() if v != center[k]}
        assert 1 <= len(moved) <= count, (since, moved)
        for name, value in moved.items():
            if name.startswith("F"):
                assert abs(value - 5.0) <= 10.0 * radius + 1e-9
            elif name == "LR":
                assert abs(math.log(value / 0.03)) <= math.log(1000) * radius + 1e-9
            elif name == "N":
                assert value % 10 == 0 and abs(value - 50) <= max(10, 100 * radius)
            else:
                assert abs([8, 16, 32, 64, 128].index(value) - 2) <= max(1, round(5 * radius))
        assert "local search around exp-1" in proposal.rationale
        proposer.observe(proposal, Outcome(number, "discard", 2.0))


def test_one_knob_changes_sweep_every_knob_before_moving_one_twice(tmp_path):
    pb, center = _wide_playbook(tmp_path)
    proposer = SearchProposer(pb, tmp_path / "o.journal", "sweep", seed=7, baseline=center)
    moved = []
    for number in range(2, 2 + 2 * len(center)):
        proposal = proposer.propose(_view(center, 0), number)
        changed = [k for k, v in proposal.knobs.items() if v != center[k]]
        assert len(changed) == 1, changed
        moved += changed
        proposer.observe(proposal, Outcome(number, "discard", 2.0))
    assert sorted(moved[:len(center)]) == sorted(center) and sorted(moved[len(center):]) == sorted(center)
    # around a new best the sweep starts again
    better = {**center, "F0": 6.0}
    first = proposer.propose(_view(better, 0), 30)
    assert sum(v != better[k] for k, v in first.knobs.items()) == 1


def test_a_value_that_broke_a_constraint_is_a_wall_the_local_search_stays_short_of(tmp_path):
    """Moving N alone up to a value broke a constraint (a bigger model over the artifact budget): around the same
    best N is never proposed at or beyond it again, while the other side and the other knobs stay open."""
    pb, center = _wide_playbook(tmp_path)
    proposer = SearchProposer(pb, tmp_path / "o.journal", "walls", seed=3, baseline=center)
    walls: dict[str, float] = {}
    seen: dict[str, list] = {"N": [], "B": []}
    for number in range(2, 60):
        proposal = proposer.propose(_view(center, 8), number)
        moved = {k: v for k, v in proposal.knobs.items() if v != center[k]}
        (name, value), = moved.items()
        broke = name in ("N", "B") and value > center[name]
        if name in walls:
            seen[name].append(value)
            assert value < walls[name], (name, value, walls)
        elif broke:
            walls[name] = value
        proposer.observe(proposal, Outcome(number, "invalid" if broke else "discard", None if broke else 2.0,
                                           [1.0] if broke else [-1.0]))
    assert set(walls) == {"N", "B"} and seen["N"] and seen["B"], (walls, seen)
    # a new best: the wall was found around the old one, so N may go up again
    better = {**center, "F0": 6.0}
    ups = []
    for number in range(60, 90):
        proposal = proposer.propose(_view(better, 8), number)
        ups += [v for k, v in proposal.knobs.items() if k == "N" and v > walls["N"]]
        proposer.observe(proposal, Outcome(number, "discard", 2.0))
    assert ups


def test_promising_discards_are_combined_and_followed_along_their_knob(tmp_path):
    """Moves whose paired gain is positive on three seeds but too small to keep: two of them are tried together,
    a knob is followed further the way it gained, and a parabola through its results sets it at its best (the
    truth here is exactly quadratic)."""
    pb, center = _wide_playbook(tmp_path)
    proposer = SearchProposer(pb, tmp_path / "o.journal", "follow", seed=5, baseline=center)
    top = {"F0": 7.0, "F1": 6.5}  # where two knobs are best; every other knob is best where it is

    def loss(knobs):
        return sum(0.001 * (knobs[k] - top.get(k, center[k])) ** 2 for k in ("F0", "F1", "F2", "F3"))

    rationales = []
    for number in range(2, 40):
        proposal = proposer.propose(_view(center, 0), number)
        knobs = proposal.knobs
        rationales.append((proposal.rationale, knobs))
        gain = loss(center) - loss(knobs)  # never enough to keep: the best stays where it is
        proposer.observe(proposal, Outcome(number, "discard", 1.0 - gain, gain=gain, reference=1, seeds=3))
    combined = [k for why, k in rationales if why.startswith("combines promising discards around exp-1")]
    assert combined and combined[0]["F0"] > 5 and combined[0]["F1"] > 5, rationales
    peaks = [k for why, k in rationales if "parabola" in why]
    assert any(abs(k["F0"] - 7.0) < 1e-6 for k in peaks), peaks
    assert any(abs(k["F0"] - 7.0) < 1e-6 and k["F1"] > 6 for k in combined), combined  # the peak, combined
    # a move judged against another best is no evidence around this one unless it moved a knob they share
    assert not proposer._knob_points(reference=99, center={**center, "F0": 9.0}).get("F0")


def test_global_search_samples_every_knob(tmp_path):
    pb, center = _wide_playbook(tmp_path)
    proposer = SearchProposer(pb, tmp_path / "o.journal", "g", strategy="random", seed=4, baseline=center,
                              search="global")
    moved = [sum(v != center[k] for k, v in proposer.propose(_view(center), n).knobs.items()) for n in range(2, 6)]
    assert min(moved) >= 5, moved


def test_local_search_never_proposes_the_best_or_a_twin_again(tmp_path):
    pb = _playbook(tmp_path, [{"name": "N", "type": "int", "low": 0, "high": 4, "bind": {"env": "N"}},
                              {"name": "LR", "type": "float", "low": 0.1, "high": 0.2, "step": 0.05,
                               "bind": {"env": "LR"}}])
    center = {"N": 2, "LR": 0.15}
    proposer = SearchProposer(pb, tmp_path / "o.journal", "t", seed=0, baseline=center)
    seen = {(2, 0.15)}
    for number in range(2, 10):  # 5 x 3 configurations; some are beyond the trust region for a while
        try:
            proposal = proposer.propose(_view(center, since_best=number * 4), number)
        except BudgetExhausted:
            break
        key = (proposal.knobs["N"], round(proposal.knobs["LR"], 6))
        assert key not in seen, key
        seen.add(key)
        proposer.observe(proposal, Outcome(number, "discard", 2.0))
    assert len(seen) >= 8


def test_a_keep_judged_against_a_replaced_best_must_beat_the_new_one(tmp_path):
    from types import SimpleNamespace

    from hive.agents.base import Verdict
    from hive.graph import ExperimentFlow
    from hive.store import Experiment, Run, Store, make_engine
    from hive.store.models import now

    store = Store(make_engine(f"sqlite:///{tmp_path / 'h.db'}"))
    camp, _ = store.ensure_campaign("c")

    def experiment(verdict, values):  # noqa: ANN001
        exp = store.new_experiment(camp.id, status="done" if verdict else "judging", verdict=verdict,
                                   finished_at=now() if verdict else None)
        for seed, value in enumerate(values, 1):
            store.add(Run(experiment_id=exp.id, seed=seed, status="ok", metrics_json=json.dumps({"loss": value})))
        return exp

    baseline = experiment("baseline", [1.0, 1.02, 0.98])
    kept_meanwhile = experiment("keep", [0.50, 0.51, 0.49])
    late = experiment(None, [0.70, 0.71, 0.69])  # beat the baseline when judged, not the keep that came first
    flow = ExperimentFlow.__new__(ExperimentFlow)
    flow.ctx = SimpleNamespace(store=store, campaign=camp)
    flow.pb = SimpleNamespace(objective=Objective(metric="loss", confirm_seeds=3, alpha=0.05))
    flow.roles = SimpleNamespace(critic=Critic(flow.pb.objective))
    stale = Verdict("keep", "beats the baseline", 0.7, 0.01, 0.001, reference=baseline.number)
    again = flow._recheck(store.experiment(camp.id, late.number), stale)
    assert again.verdict == "discard" and f"exp-{kept_meanwhile.number} was kept meanwhile" in again.reason
    fresh = Verdict("keep", "beats it", 0.7, 0.01, 0.001, reference=kept_meanwhile.number)
    assert flow._recheck(store.experiment(camp.id, late.number), fresh) is fresh
    assert isinstance(store.experiment(camp.id, late.number), Experiment)
