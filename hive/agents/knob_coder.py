"""The knob coder: rewrites declared assignments in place (AST-located), and records flag/env knobs in a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hive.agents.base import CampaignView, Proposal
from hive.errors import EditRejected
from hive.knobs import KNOBS_FILE, format_value, read_value, rewrite_assignment, runtime_knobs
from hive.playbook import FileBinding, Playbook
from hive.playbook.constraints import check_configuration


class KnobCoder:
    """Applies a proposal's knob values to the files, flags and environment variables they are bound to."""

    name = "knobs"
    reads_view = False  # it needs no campaign view: the graph builds none for it

    def __init__(self, playbook: Playbook):
        self.playbook = playbook

    def code(self, proposal: Proposal, tree: Path, view: CampaignView | None = None, number: int = 0) -> str:
        knobs = {k.name: k for k in self.playbook.knobs}
        unknown = sorted(set(proposal.knobs) - set(knobs))
        if unknown:
            raise EditRejected(f"unknown knob(s): {', '.join(unknown)}")
        # the whole configuration (the parent's values, the proposal's over them) must be valid before anything runs
        values, problems = check_configuration(self.playbook.knobs, self.playbook.knob_constraints,
                                               {**current_values(self.playbook, tree), **proposal.knobs},
                                               set(proposal.knobs))
        if problems:
            raise EditRejected("refused before running: " + "; ".join(problems))
        runtime = {k: v for k, v in runtime_knobs(tree).items() if k in knobs}
        changed = []
        for name in proposal.knobs:
            value = values[name]
            bind = knobs[name].bind
            if isinstance(bind, FileBinding):
                path = tree / bind.file
                before = path.read_text(encoding="utf-8")
                after = rewrite_assignment(before, bind.assign, value)
                if after != before:
                    path.write_text(after, encoding="utf-8")
                    changed.append(f"{name}={format_value(value)}")
            else:
                runtime[name] = value
        knob_file = tree / KNOBS_FILE
        if runtime:
            knob_file.parent.mkdir(exist_ok=True)
            knob_file.write_text(json.dumps(runtime, indent=1, sort_keys=True) + "\n")
            changed += [f"{k}={format_value(v)}" for k, v in sorted(runtime.items()) if k in proposal.knobs]
        return ", ".join(changed) or "no change"


def current_values(playbook: Playbook, tree: Path) -> dict[str, Any]:
    """The knob values a tree holds: literals of file-bound knobs, and the flag/env knobs its knob file records."""
    values: dict[str, Any] = {}
    runtime = runtime_knobs(tree)
    for knob in playbook.knobs:
        if isinstance(knob.bind, FileBinding):
            path = tree / knob.bind.file
            value = read_value(path.read_text(encoding="utf-8"), knob.bind.assign) if path.is_file() else None
        else:
            value = runtime.get(knob.name)
        if value is not None:
            values[knob.name] = value
    return values
