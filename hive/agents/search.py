"""Proposers without an LLM: Optuna TPE over the knobs, random search, and one-knob-at-a-time greedy hill climbing."""

from __future__ import annotations

import math
import random
import threading
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
from hive.agents.knob_coder import format_value, read_value, runtime_knobs
from hive.errors import BudgetExhausted
from hive.playbook import FileBinding, Knob, Playbook

optuna.logging.set_verbosity(optuna.logging.WARNING)
FAILED_VERDICTS = ("crash", "timeout", "edit_failed", "rejected", "no_proposal")
MAX_DUPLICATE_ASKS = 30


def distribution(knob: Knob):
    if knob.type == "categorical":
        return CategoricalDistribution(knob.choices)
    if knob.type == "int":
        step = int(knob.step or 1)
        return IntDistribution(int(knob.low), int(knob.high), log=knob.log, step=1 if knob.log else step)
    return FloatDistribution(knob.low, knob.high, log=knob.log, step=None if knob.log else knob.step)


def baseline_values(playbook: Playbook, source: Path) -> dict[str, Any]:
    """The knob values the source starts with, where they are literals inside the search space."""
    values: dict[str, Any] = {}
    runtime = runtime_knobs(source)
    for knob in playbook.knobs:
        if isinstance(knob.bind, FileBinding):
            path = source / knob.bind.file
            value = read_value(path.read_text(encoding="utf-8"), knob.bind.assign) if path.is_file() else None
        else:
            value = runtime.get(knob.name)
        if value is not None and _contains(distribution(knob), value):
            values[knob.name] = value
    return values


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
    return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items()))


class SearchProposer:
    """Asks an Optuna study for knob values; the study lives in a journal file beside the campaign, so it resumes.

    strategy: "optuna" (TPE, constant liar for parallel trials, constraint-aware), "random", or "greedy"
    (perturb one knob of the best configuration, autoresearch's one-change-at-a-time climb).
    """

    def __init__(self, playbook: Playbook, journal: Path, study_name: str, strategy: str = "optuna",
                 seed: int | None = None, baseline: dict[str, Any] | None = None):
        if not playbook.knobs:
            raise BudgetExhausted(f"strategist {strategy!r} needs 'knobs' in the playbook")
        self.name = strategy
        self.playbook = playbook
        self.knobs = {k.name: k for k in playbook.knobs}
        self.dists = {k.name: distribution(k) for k in playbook.knobs}
        self.baseline = baseline or {}
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
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
            seen = {_key(t.params): t for t in self.study.get_trials(deepcopy=False)
                    if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING)}
            for _ in range(MAX_DUPLICATE_ASKS):
                if self.name == "greedy":
                    self.study.enqueue_trial(self._neighbour(view), skip_if_exists=False)
                trial = self.study.ask(self.dists)
                twin = seen.get(_key(trial.params))
                if twin is None or twin.number == trial.number:
                    break
                # already tried: tell the study what that gave, and ask again
                if twin.state == TrialState.COMPLETE:
                    self.study.tell(trial, twin.value)
                else:
                    self.study.tell(trial, state=TrialState.FAIL)
            else:
                raise BudgetExhausted("the knob search space is exhausted: every proposal was tried before")
        params = trial.params
        best = view.best.knobs if view.best and view.best.knobs else self.baseline
        changes = [f"{k} {format_value(best[k])} -> {format_value(v)}" if k in best else f"{k}={format_value(v)}"
                   for k, v in params.items() if best.get(k) != v]
        hypothesis = "set " + (", ".join(changes) if changes else "the best's values again")
        return Proposal(hypothesis=hypothesis, rationale=f"{self.name} trial {trial.number}", parent=None,
                        knobs=params, trial=trial.number, strategist=self.name)

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
            return self.rng.randint(int(knob.low), int(knob.high))
        if knob.log:
            return math.exp(self.rng.uniform(math.log(knob.low), math.log(knob.high)))
        return self.rng.uniform(knob.low, knob.high)

