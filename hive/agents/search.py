"""Proposers without an LLM: Optuna TPE or random sampling over the knobs, and one-knob-at-a-time greedy climbing.

By default (`search: local`) a proposal changes one or two knobs of the current best, inside a trust region
that starts small after each keep, widens as experiments since then fail, and narrows again after a cycle
(`TRUST_CYCLE`); the sampler (TPE or random) chooses the values there. The knobs moved least around this best
go first, so a sweep of one-knob changes covers every knob before any is tried twice; only the widest step moves
two at once (from a tuned best every extra knob moved costs more than it can win). A value that broke a
constraint when its knob alone moved there is a wall the search stays short of. `search: global` samples every
knob over its whole range.
"""

from __future__ import annotations

import math
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
from optuna.storages.journal import JournalFileBackend
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
# range, as before, found 0.014; this cycle 0.023 (0.025 over 16 campaigns: results/search_power.json), one
# knob only 0.025, one to three knobs 0.023
TRUST_CYCLE = ((1, 0.1), (1, 0.2), (1, 0.4), (2, 0.4))
WIDEN_EVERY = 4


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


def study_storage(journal: Path) -> JournalStorage:
    """An Optuna journal file beside the campaign (fast appends; a torn last line from a kill is cut off)."""
    journal = Path(journal)
    if journal.exists() and journal.stat().st_size:
        with open(journal, "rb+") as fh:
            data = fh.read()
            if not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
    return JournalStorage(JournalFileBackend(str(journal)))


def _key(params: dict[str, Any]) -> tuple:
    """Configurations that the knob coder would write identically are the same configuration."""
    return tuple(sorted((k, format_value(v) if isinstance(v, float) else v) for k, v in params.items()))


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
            for attempt in range(MAX_DUPLICATE_ASKS):
                dists = self.dists
                if self.name == "greedy":
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
            trial = self.study.trials[proposal.trial] if proposal.trial < len(self.study.trials) else None
            if trial is None or trial.state != TrialState.RUNNING:
                return  # told already (resumed after a crash)
            # a Trial handle for a trial asked by an earlier process (the study is in SQLite); TPE prefers
            # configurations whose constraint values are all <= 0
            handle = optuna.Trial(self.study, trial._trial_id)
            for i, excess in enumerate(outcome.constraint_excess):
                handle.set_constraint(f"constraint_{i}", excess)
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
        elif knob.log:
            factor = math.exp(self.rng.choice((-1, 1)) * 0.5)
            best[name] = min(knob.high, max(knob.low, current * factor))
        else:
            step = (knob.high - knob.low) * 0.15 * self.rng.choice((-1, 1))
            best[name] = min(knob.high, max(knob.low, current + step))
        if knob.type == "int":
            best[name] = int(round(best[name]))
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

