"""Proposers without an LLM: Optuna TPE or random sampling over the knobs, and one-knob-at-a-time greedy climbing.

By default (`search: local`) a proposal changes one or two knobs of the current best, inside a trust region
that starts small after each keep, widens as experiments since then fail, and narrows again after a cycle
(`TRUST_CYCLE`); the sampler (TPE or random) chooses the values there. The knobs moved least around this best
go first, so a sweep of one-knob changes covers every knob before any is tried twice; only the widest step moves
two at once (from a tuned best every extra knob moved costs more than it can win). A value that broke a
constraint when its knob alone moved there is a wall the search stays short of. Discards that moved one knob
and gained a little, too little to keep, are followed up first (`SearchProposer._follow_up`): two or three of
them together, else a step along that knob to where a parabola through its results peaks. `search: global`
samples every knob over its whole range.
"""

from __future__ import annotations

import fcntl
import itertools
import math
import os
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from hive.agents.base import CampaignView, Outcome, Proposal
from hive.errors import BudgetExhausted
from hive.agents.knob_coder import current_values
from hive.knobs import format_value
from hive.playbook import Knob, Playbook

optuna.logging.set_verbosity(optuna.logging.WARNING)
FAILED_VERDICTS = ("crash", "timeout", "edit_failed", "rejected", "no_proposal")
MAX_DUPLICATE_ASKS = 30
# the trust region: after a keep, one knob within +-10 % of its range; every WIDEN_EVERY experiments without a
# keep, the next step of TRUST_CYCLE (wider, then two knobs), then narrow again. bench/search_power.py measured
# it (8-16 simulated campaigns each, true gain of the final best): widening on to three knobs over the whole
# range, as before, found 0.014; this cycle 0.023 (0.025 over 16 campaigns), one knob only 0.025, one to three
# knobs 0.023; with the follow-ups of promising discards 0.038 (20 campaigns: results/search_power.json)
TRUST_CYCLE = ((1, 0.1), (1, 0.2), (1, 0.4), (2, 0.4))
WIDEN_EVERY = 4
LINE_SPACING = 0.05  # a follow-up along one knob keeps this far (a fraction of its range) from every value tried


def distribution(knob: Knob):
    if knob.type == "categorical":
        return CategoricalDistribution(knob.choices)
    if knob.type == "int":
        step = int(knob.step or 1)
        return IntDistribution(int(knob.low), int(knob.high), log=knob.log, step=1 if knob.log else step)
    return FloatDistribution(knob.low, knob.high, log=knob.log, step=None if knob.log else knob.step)


def baseline_values(playbook: Playbook, source: Path) -> dict[str, Any]:
    """The knob values the source starts with, where they are literals inside the search space."""
    current = current_values(playbook, source)
    return {k.name: current[k.name] for k in playbook.knobs
            if k.name in current and _contains(distribution(k), current[k.name])}


def _contains(dist, value: Any) -> bool:  # noqa: ANN001
    try:
        return dist._contains(dist.to_internal_repr(value))
    except (ValueError, TypeError):
        return False


class FlockLock(JournalFileOpenLock):
    """Optuna's journal lock as an flock on the journal itself: as exclusive between processes as the default
    lock, which makes and removes a link file for every write (~0.5 ms each, 5 writes or more an experiment);
    a thread lock beside it, since an flock does not exclude threads that share its file."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path
        self._thread = threading.Lock()
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._thread.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise
        return True

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def study_storage(journal: Path) -> JournalStorage:
    """An Optuna journal file beside the campaign (fast appends; a torn last line from a kill is cut off)."""
    journal = Path(journal)
    if journal.exists() and journal.stat().st_size:
        with open(journal, "rb+") as fh:
            data = fh.read()
            if not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
    return JournalStorage(JournalFileBackend(str(journal), lock_obj=FlockLock(journal)))


def outcome_of(trial) -> dict[str, Any]:  # noqa: ANN001
    """What `observe` recorded of a trial's experiment: gain, reference, seeds, experiment (one attribute, one
    journal write; studies written before kept them as four)."""
    attrs = trial.user_attrs
    return {**{k: attrs[k] for k in ("gain", "reference", "seeds", "experiment") if k in attrs},
            **attrs.get("outcome", {})}


def _key(params: dict[str, Any]) -> tuple:
    """Configurations that the knob coder would write identically are the same configuration."""
    return tuple(sorted((k, format_value(v) if isinstance(v, float) else v) for k, v in params.items()))


def _offset(knob: Knob, center: Any, value: Any) -> float:
    """How far `value` lies from `center`, as a signed fraction of the knob's range (of its log-range if log; of
    its choices for a categorical knob)."""
    if knob.type == "categorical":
        if value not in knob.choices or center not in knob.choices:
            return 0.0
        return (knob.choices.index(value) - knob.choices.index(center)) / max(1, len(knob.choices) - 1)
    if knob.log:
        return (math.log(value) - math.log(center)) / (math.log(knob.high) - math.log(knob.low))
    return (value - center) / (knob.high - knob.low)


def _from_offset(knob: Knob, center: Any, offset: float) -> Any:
    """The value `offset` (a fraction of the range, as `_offset` measures) away from `center`, on the knob's grid
    and inside its range."""
    if knob.log:
        raw = center * math.exp(offset * (math.log(knob.high) - math.log(knob.low)))
    else:
        raw = center + offset * (knob.high - knob.low)
    raw = min(knob.high, max(knob.low, raw))
    step = None if knob.log else knob.step
    if step:
        raw = knob.low + round((raw - knob.low) / step) * step
    return int(round(raw)) if knob.type == "int" else raw


def trust_region(failures: int) -> tuple[int, float]:
    """How many knobs a local proposal changes and how far (a fraction of each range), after `failures`."""
    return TRUST_CYCLE[(failures // WIDEN_EVERY) % len(TRUST_CYCLE)]


def local_distribution(knob: Knob, center: Any, radius: float, walls: tuple = ()):
    """The knob's distribution cut to `radius` (a fraction of its range, of its log-range if log) around `center`,
    and short of every wall: a value that broke a constraint when this knob alone moved there from `center`."""
    full = distribution(knob)
    if knob.type == "categorical" or not _contains(full, center) or (radius >= 1.0 and not walls):
        return full
    if knob.log:
        span = (math.log(knob.high) - math.log(knob.low)) * radius
        low, high = center * math.exp(-span), center * math.exp(span)
    else:
        span = (knob.high - knob.low) * radius
        low, high = center - span, center + span
    low, high = max(knob.low, low), min(knob.high, high)
    # a constraint broken at a wall is broken beyond it too (a bigger model is bigger): stop short of it
    short = (knob.step or 1) if knob.type == "int" else (knob.step or (knob.high - knob.low) * 1e-6)
    for wall in walls:
        if wall > center:
            high = min(high, max(center, wall - short))
        elif wall < center:
            low = max(low, min(center, wall + short))
    step = knob.step if not knob.log else None
    if knob.type == "int":
        step = int(step or 1)
        # stay on the knob's grid, and at least one step away on some side
        low = int(knob.low) + math.floor((low - knob.low) / step) * step
        high = int(knob.low) + math.ceil((high - knob.low) / step) * step
        low, high = min(low, int(center) - step), max(high, int(center) + step)
        low, high = max(int(knob.low), low), min(int(knob.high), high)
        for wall in walls:  # the one-step reach above must not step onto a wall either
            high = min(high, max(int(center), wall - step)) if wall > center else high
            low = max(low, min(int(center), wall + step)) if wall < center else low
        return IntDistribution(low, high, log=knob.log, step=1 if knob.log else step)
    if step:
        low = knob.low + math.floor((low - knob.low) / step) * step
        high = knob.low + math.ceil((high - knob.low) / step) * step
        high = min(knob.high, high)
    return FloatDistribution(low, high, log=knob.log, step=step)


class SearchProposer:
    """Asks an Optuna study for knob values; the study lives in a journal file beside the campaign, so it resumes.

    strategy: "optuna" (TPE, constant liar for parallel trials, constraint-aware), "random", or "greedy"
    (perturb one knob of the best configuration, autoresearch's one-change-at-a-time climb).
    """

    full_view = False  # it reads experiments' knobs, verdicts and means: no leaderboard, lessons or outline

    def __init__(self, playbook: Playbook, journal: Path, study_name: str, strategy: str = "optuna",
                 seed: int | None = None, baseline: dict[str, Any] | None = None, search: str = "local"):
        self.name = strategy
        self.search = search
        self.playbook = playbook
        self.knobs = {k.name: k for k in playbook.knobs}
        self.dists = {k.name: distribution(k) for k in playbook.knobs}
        self.baseline = baseline or {}
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._moved: dict[tuple, Counter] = {}  # per best (its knob values): how often each knob was moved from it
        if strategy == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=5)
        direction = "minimize" if playbook.objective.direction == "minimize" else "maximize"
        self.study = optuna.create_study(study_name=study_name, storage=study_storage(journal), direction=direction,
                                         sampler=sampler, load_if_exists=True)

    # -- the protocol -------------------------------------------------------
    def propose(self, view: CampaignView, number: int) -> Proposal:
        with self._lock:
            self._seed_baseline(view)
            seen = {_key(t.params): t.value for t in self.study.get_trials(deepcopy=False)
                    if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING)}
            for other in (*view.in_flight, *view.recent):  # a combination is no trial of the study's
                if other.knobs and set(other.knobs) == set(self.dists):
                    seen.setdefault(_key(other.knobs), other.metric_mean)
            center = self._center(view)
            local = self.search == "local" and self.name != "greedy"
            if local and view.best is not None:
                seen.setdefault(_key(center), view.best.metric_mean)  # the best itself, e.g. a combination
            rationale = f"{self.name} trial"
            walls = self._walls(center) if local else {}  # twins told below set no constraint: fixed for the loop
            follow_up = self._follow_up(view, center, walls, seen) if local and view.best is not None else None
            for attempt in range(MAX_DUPLICATE_ASKS):
                dists = self.dists
                if follow_up is not None and attempt == 0:
                    self.study.enqueue_trial(follow_up[0], skip_if_exists=False)
                    rationale = follow_up[1]
                elif self.name == "greedy":
                    self.study.enqueue_trial(self._neighbour(view), skip_if_exists=False)
                elif local:
                    # a twin: the next knob in the same region; a region whose every knob gave only twins widens
                    # (twice the radius each time, up to the whole range) until something new is in it
                    dists, rationale = self._local_ask(view, center, walls, view.since_best,
                                                       attempt // len(self.dists))
                trial = self.study.ask(dists)
                key = _key(trial.params)
                if key not in seen:
                    break
                # already tried (or in flight): tell the study what that gave, and ask again
                if seen[key] is not None:
                    self.study.tell(trial, seen[key])
                else:
                    self.study.tell(trial, state=TrialState.FAIL)
            else:
                raise BudgetExhausted("the knob search space is exhausted: every proposal was tried before")
        params = trial.params
        best = center if local else (view.best.knobs if view.best and view.best.knobs else self.baseline)
        changes = [f"{k} {format_value(best[k])} -> {format_value(v)}" if k in best else f"{k}={format_value(v)}"
                   for k, v in params.items() if best.get(k) != v]
        hypothesis = "set " + (", ".join(changes) if changes else "the best's values again")
        return Proposal(hypothesis=hypothesis, rationale=f"{rationale} {trial.number}", parent=None,
                        knobs=params, trial=trial.number, strategist=self.name)

    def _center(self, view: CampaignView) -> dict[str, Any]:
        """The best's knob values (the baseline's where the best does not say; a random value where neither does)."""
        center = dict(self.baseline)
        if view.best and view.best.knobs:
            center.update({k: v for k, v in view.best.knobs.items() if k in self.dists})
        for name in self.dists:
            if name not in center or not _contains(self.dists[name], center[name]):
                center[name] = self._random_value(self.knobs[name])
        return center

    def _local_ask(self, view: CampaignView, center: dict[str, Any], walls: dict[str, tuple], failures: int,
                   widenings: int = 0) -> tuple[dict, str]:
        """Fix all but a few knobs at the best's values; the sampler picks the others inside the trust region."""
        count, radius = trust_region(failures)
        radius = min(1.0, radius * 2 ** widenings)
        tried = self._moved.setdefault(_key(center), Counter())
        moved = sorted(self.dists, key=lambda name: (tried[name], self.rng.random()))[:count]
        tried.update(moved)
        fixed = {k: v for k, v in center.items() if k not in moved}
        dists = dict(self.dists)
        for name in moved:
            knob = self.knobs[name]
            if knob.type == "categorical":
                fixed[name] = self._nearby_choice(knob, center[name], radius, walls.get(name, ()))
            else:
                dists[name] = local_distribution(knob, center[name], radius, walls.get(name, ()))
        self.study.enqueue_trial(fixed, skip_if_exists=False)
        ref = f"exp-{view.best.number}" if view.best else "the baseline"
        why = (f"local search around {ref}: {', '.join(moved)} within {radius:.0%} of the range "
               f"({view.since_best} experiment(s) since the last keep); {self.name}")
        return dists, why

    def _follow_up(self, view: CampaignView, center: dict[str, Any], walls: dict[str, tuple],
                   seen: dict) -> tuple[dict[str, Any], str] | None:
        """A configuration built from promising discards around this best, if one is untried: two or three of them
        together, else the best value a parabola through that knob's results predicts.

        A discard is promising when it moved one knob and the critic's paired estimate of its gain, from two seeds
        or more, is positive: real, perhaps, but too small to keep. Gains too small to keep one by one add up in
        one experiment, judged like any other; a step too short to keep points the way along its knob.
        """
        points = self._knob_points(view.best.number, center)
        promising = {}
        for name, rows in points.items():
            confirmed = [r for r in rows if r[2] >= 2 and r[1] > 0]
            if confirmed:
                promising[name] = max(confirmed, key=lambda r: r[1])
        ranked = sorted(promising, key=lambda k: -promising[k][1])[:3]
        combos = [c for size in (2, 3) for c in itertools.combinations(ranked, size)]
        for combo in sorted(combos, key=lambda c: -sum(promising[k][1] for k in c)):
            config = {**center, **{k: promising[k][3] for k in combo}}
            if _key(config) not in seen:
                parts = ", ".join(f"exp-{promising[k][4]}: {k} gain {promising[k][1]:+.3g}" for k in combo)
                return config, (f"combines promising discards around exp-{view.best.number} ({parts}), each too "
                                f"small a gain to keep")
        for name in ranked:
            value, how = self._line_step(self.knobs[name], center[name], points[name], promising[name],
                                         walls.get(name, ()))
            config = {**center, name: value}
            if value is not None and _key(config) not in seen:
                return config, (f"{how} ({len(points[name])} result(s) on {name} around exp-{view.best.number}; "
                                f"exp-{promising[name][4]} gained {promising[name][1]:+.3g}, too little to keep)")
        return None

    def _knob_points(self, reference: int, center: dict[str, Any]) -> dict[str, list[tuple]]:
        """Per knob: (offset from the center in unit range, gain, seeds, value, experiment) of every trial that moved
        only that knob from the best it was judged against, where that best and `center` agree on the knob (a
        move measured around an earlier best still counts here: knobs mostly act apart)."""
        trials = [(t, outcome_of(t)) for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        centers = {o["experiment"]: t.params for t, o in trials if "experiment" in o}
        centers[reference] = center
        points: dict[str, list[tuple]] = {}
        for t, o in trials:
            gain, around = o.get("gain"), centers.get(o.get("reference"))
            if gain is None or around is None or set(t.params) != set(self.dists):
                continue
            moved = [k for k in self.dists if t.params[k] != around.get(k)]
            if len(moved) != 1 or around.get(moved[0]) != center.get(moved[0]):
                continue
            if x := _offset(self.knobs[moved[0]], center[moved[0]], t.params[moved[0]]):
                points.setdefault(moved[0], []).append(
                    (x, gain, o.get("seeds", 1), t.params[moved[0]], o.get("experiment")))
        return points

    def _line_step(self, knob: Knob, center: Any, rows: list[tuple], best: tuple,
                   walls: tuple = ()) -> tuple[Any, str]:
        """Where to try this knob next: the top of a parabola through the center (gain 0) and its results, weighted
        by seeds, when it bends down there (never past twice the farthest result); else, or where that was tried
        already, twice the promising step."""
        targets = []
        if len({round(r[0], 9) for r in rows}) >= 2:
            # least squares of gain = a x + b x^2, each result weighted by its seeds
            sxx, sx3, sx4 = (sum(r[2] * r[0] ** k for r in rows) for k in (2, 3, 4))
            sxg, sx2g = (sum(r[2] * r[0] ** k * r[1] for r in rows) for k in (1, 2))
            det = sxx * sx4 - sx3 ** 2
            if det > 0 and (b := (sxx * sx2g - sx3 * sxg) / det) < 0:
                a, reach = (sxg * sx4 - sx2g * sx3) / det, 2 * max(abs(r[0]) for r in rows)
                targets.append((max(-reach, min(reach, -a / (2 * b))),
                                f"sets {knob.name} where a parabola through its results peaks"))
        targets.append((2 * best[0], f"moves {knob.name} twice as far as exp-{best[4]}"))
        if knob.type == "categorical":
            return self._further(knob, center, best[3], walls), targets[-1][1]
        for target, how in targets:
            value = _from_offset(knob, center, target)
            x = _offset(knob, center, value)
            # closer than LINE_SPACING to a value tried already it would measure noise, not the knob
            if not _contains(self.dists[knob.name], value) or min(abs(x - r[0]) for r in [(0.0,), *rows]) < LINE_SPACING:
                continue
            if not any(isinstance(w, (int, float)) and (center < w <= value or value <= w < center) for w in walls):
                return value, how
        return None, targets[-1][1]

    def _further(self, knob: Knob, center: Any, value: Any, walls: tuple = ()) -> Any:
        """For a categorical knob of ordered choices: the choice as far again beyond `value` as it is from
        `center`; None where that is nowhere new or past a wall."""
        if value not in knob.choices or center not in knob.choices:
            return None
        i, j = knob.choices.index(center), knob.choices.index(value)
        further = knob.choices[min(len(knob.choices) - 1, max(0, 2 * j - i))]
        if further == value:
            return None
        if any(isinstance(w, (int, float)) and (value < w <= further or further <= w < value) for w in walls):
            return None
        return further

    def _nearby_choice(self, knob: Knob, current: Any, radius: float, walls: tuple = ()) -> Any:
        """Another choice of a categorical knob; for numbers, one of the nearest in order (more as radius grows),
        none at or beyond a wall (a choice that broke a constraint)."""
        choices = list(knob.choices)
        others = [c for c in choices if c != current] or choices
        if current in choices and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
            ordered = sorted(choices)
            i = ordered.index(current)
            reach = max(1, round(radius * len(ordered)))
            others = [c for j, c in enumerate(ordered) if c != current and abs(j - i) <= reach
                      and not any(c >= w > current or c <= w < current for w in walls)] or [current]
        return self.rng.choice(others)

    def _walls(self, center: dict[str, Any]) -> dict[str, tuple]:
        """Per knob, the values that broke a constraint in a trial that moved only that knob from `center`."""
        walls: dict[str, list] = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.COMPLETE)):
            if not any(":constraint_" in key and value > 0 for key, value in t.system_attrs.items()):
                continue
            moved = [k for k in self.dists if k in t.params and t.params[k] != center.get(k)]
            if len(moved) == 1 and set(t.params) == set(self.dists):
                value = t.params[moved[0]]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    walls.setdefault(moved[0], []).append(value)
        return {k: tuple(v) for k, v in walls.items()}

    def observe(self, proposal: Proposal, outcome: Outcome) -> None:
        if proposal.trial is None:
            return
        with self._lock:
            trials = self.study.get_trials(deepcopy=False)  # read only: no copy of every trial
            trial = trials[proposal.trial] if proposal.trial < len(trials) else None
            if trial is None or trial.state != TrialState.RUNNING:
                return  # told already (resumed after a crash)
            # a Trial handle for a trial asked by an earlier process (the study is in SQLite); TPE prefers
            # configurations whose constraint values are all <= 0
            handle = optuna.Trial(self.study, trial._trial_id)
            for i, excess in enumerate(outcome.constraint_excess):
                handle.set_constraint(f"constraint_{i}", excess)
            if outcome.gain is not None:  # what the follow-ups read (around the best it was compared with)
                handle.set_user_attr("outcome", {"gain": outcome.gain, "reference": outcome.reference,
                                                 "seeds": outcome.seeds, "experiment": outcome.number})
            if outcome.verdict in FAILED_VERDICTS or outcome.metric_mean is None:
                self.study.tell(proposal.trial, state=TrialState.FAIL)
            else:
                self.study.tell(proposal.trial, outcome.metric_mean)

    # -- helpers ------------------------------------------------------------
    def reconcile(self, live_trials: set[int]) -> int:
        """Fail trials that were asked but belong to no live experiment (a crash between ask and record)."""
        failed = 0
        with self._lock:
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number not in live_trials:
                    self.study.tell(t.number, state=TrialState.FAIL)
                    failed += 1
        return failed

    def _seed_baseline(self, view: CampaignView) -> None:
        """Teach the study the baseline's value once, so TPE starts from what is known."""
        if self.study.user_attrs.get("baseline_added") or not view.baseline or view.baseline.metric_mean is None:
            return
        if set(self.baseline) == set(self.dists):
            self.study.add_trial(optuna.trial.create_trial(
                params=self.baseline, distributions=self.dists, value=view.baseline.metric_mean,
                user_attrs={"experiment": view.baseline.number}))
        self.study.set_user_attr("baseline_added", True)

    def _neighbour(self, view: CampaignView) -> dict[str, Any]:
        """The best configuration with one knob moved one step."""
        best = dict(self.baseline)
        if view.best and view.best.knobs:
            best.update(view.best.knobs)
        for name, dist in self.dists.items():
            if name not in best:
                best[name] = self._random_value(self.knobs[name])
        name = self.rng.choice(sorted(self.dists))
        knob = self.knobs[name]
        current = best[name]
        if knob.type == "categorical":
            others = [c for c in knob.choices if c != current] or knob.choices
            best[name] = self.rng.choice(others)
        else:  # a factor e^0.5 of a log knob, 15% of the range otherwise, on the knob's grid
            sign = self.rng.choice((-1, 1))
            span = math.log(knob.high) - math.log(knob.low) if knob.log else 1.0
            best[name] = _from_offset(knob, current, sign * (0.5 / span if knob.log else 0.15))
        return best

    def _random_value(self, knob: Knob) -> Any:
        if knob.type == "categorical":
            return self.rng.choice(knob.choices)
        if knob.type == "int":
            step = 1 if knob.log else int(knob.step or 1)  # on the knob's grid, as its distribution is
            return int(knob.low) + step * self.rng.randint(0, (int(knob.high) - int(knob.low)) // step)
        if knob.log:
            return math.exp(self.rng.uniform(math.log(knob.low), math.log(knob.high)))
        return self.rng.uniform(knob.low, knob.high)

