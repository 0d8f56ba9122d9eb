"""What changed between the playbook a campaign was started with and the one it is resumed with, and whether a
change would make its measurements incomparable (the command, knobs, objective, seeds, scorer) or not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# fields whose change alters what a run measures; everything else (description, rules, budget, models,
# scheduler, executor, a run's timeout or resources) changes only how the campaign goes on
RUN_AFFECTING = ("source", "ref", "editable", "protected", "setup", "run", "score", "objective", "knobs",
                 "knob_constraints")
HOW_IT_RUNS = ("run.timeout", "run.resources", "run.max_log_mb", "run.smoke")  # the smoke test only gates


@dataclass
class Change:
    """One field that differs: its dotted path, the value stored and the value given now."""

    path: str
    old: Any
    new: Any

    @property
    def affects_runs(self) -> bool:
        top = self.path.split(".")[0].split("[")[0]
        return top in RUN_AFFECTING and not any(self.path == p or self.path.startswith(p + ".") for p in HOW_IT_RUNS)

    def text(self) -> str:
        return f"{self.path}: {_short(self.old)} -> {_short(self.new)}"


def playbook_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every leaf that differs between two dumped playbooks (lists compared whole, as knobs and seeds are)."""
    changes: list[Change] = []
    _walk("", old, new, changes)
    return changes


def _walk(prefix: str, old: Any, new: Any, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            _walk(f"{prefix}.{key}" if prefix else str(key), old.get(key), new.get(key), out)
    elif old != new:
        out.append(Change(prefix, old, new))


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
