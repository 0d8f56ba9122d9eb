"""The knob coder: rewrites declared assignments in place (AST-located), and records flag/env knobs in a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hive.agents.base import CampaignView, Proposal
from hive.errors import EditRejected
from hive.knobs import KNOBS_FILE, format_value, rewrite_assignment
from hive.playbook import FileBinding, Playbook


class KnobCoder:
    """Applies a proposal's knob values to the files, flags and environment variables they are bound to."""

    name = "knobs"

    def __init__(self, playbook: Playbook):
        self.playbook = playbook

    def code(self, proposal: Proposal, tree: Path, view: CampaignView | None = None, number: int = 0) -> str:
        knobs = {k.name: k for k in self.playbook.knobs}
        unknown = sorted(set(proposal.knobs) - set(knobs))
        if unknown:
            raise EditRejected(f"unknown knob(s): {', '.join(unknown)}")
        runtime: dict[str, Any] = {}
        changed = []
        for name, value in proposal.knobs.items():
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
            changed += [f"{k}={format_value(v)}" for k, v in sorted(runtime.items())]
        return ", ".join(changed) or "no change"
