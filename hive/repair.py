"""Repair of crashed runs: what counts as a crash, the log tail the coder is shown, and retiring a failed attempt.

A smoke run or a seed that exits non-zero, times out, or ends without a finite objective metric is a crash. The
coder gets the log's last lines (the traceback) and its diff, and its fix is the experiment's next attempt: a new
commit on its branch, an Attempt row. The runs of the crashed attempt are deleted from the experiment (their logs
are kept, renamed `attempt-K.seed-N.log`), so they never count in its statistics; the Attempt row keeps what
they said.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from hive.logs import log_tail
from hive.objective import metric_value
from hive.store import Attempt, Experiment, Run, Store

TAIL_LINES = 80  # at least the 60 the coder must see, so the traceback's top is there
TAIL_CHARS = 12_000


@dataclass
class Crash:
    """Why an attempt's run failed, and the end of its log."""

    line: str  # e.g. "seed 1: exit code 1", "smoke: val_bpb missing"
    tail: str

    def to_dict(self) -> dict:
        return {"line": self.line, "tail": self.tail}


def crash_of(label: str, status: str, metrics: dict, error: str, log_path: str, metric: str) -> Crash | None:
    """The crash a finished run is, or None when it produced a finite objective metric (or was pruned)."""
    if status in ("failed", "timeout"):
        why = (error or status).splitlines()[0]
    elif status == "ok":
        value = metric_value(metrics, metric)
        if value is not None and math.isfinite(value):
            return None
        why = f"{metric} missing" if value is None else f"{metric} is {value}"
    else:
        return None
    return Crash(f"{label}: {why}", last_lines(log_path))


def last_lines(path: str, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of a log (at most TAIL_CHARS characters)."""
    text = log_tail(path, TAIL_CHARS * 4, missing=f"(log {path} not found)") if path else ""
    return "\n".join(text.splitlines()[-lines:])[-TAIL_CHARS:]


def seed_crash(runs: list[Run], seeds: list[int], metric: str) -> Crash | None:
    """The first crash among the runs of these seeds."""
    for run in sorted(runs, key=lambda r: seeds.index(r.seed) if r.seed in seeds else len(seeds)):
        if run.seed in seeds:
            crash = crash_of(f"seed {run.seed}", run.status, run.metrics, run.error, run.log_path, metric)
            if crash is not None:
                return crash
    return None


def can_repair(attempts: list[Attempt], repair_attempts: int) -> bool:
    """Whether the latest attempt may still be repaired (it is running, and repairs are left)."""
    return bool(attempts) and attempts[-1].status == "running" and len(attempts) <= repair_attempts


def retire_runs(store: Store, exp: Experiment, attempt: int) -> None:
    """Take a crashed attempt's runs out of the experiment, keeping their logs as attempt-K.seed-N.log."""
    for run in store.runs(exp.id):
        for path in (run.log_path, run.log_path.replace(".log", ".score.log") if run.log_path else ""):
            if path and os.path.exists(path):
                head, name = os.path.split(path)
                os.replace(path, os.path.join(head, f"attempt-{attempt}.{name}"))
    store.delete_runs(exp.id)


def repair_reason(attempts: list[Attempt], verdict: str, reason: str) -> str:
    """The verdict's reason, saying what repair did: 'crash, repaired on attempt 2, then discard: ...'."""
    tried = len(attempts) > 1 or (attempts and attempts[-1].status == "unrepaired")
    if not tried:
        return reason
    if verdict in ("crash", "timeout") or attempts[-1].status != "running":
        return f"{reason} (not repaired in {len(attempts)} attempt(s))"
    return f"crash, repaired on attempt {attempts[-1].attempt}, then {verdict}: {reason}"
