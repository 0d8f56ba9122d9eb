"""The knob coder: rewrites declared assignments in place (AST-located), and records flag/env knobs in a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hive.agents.base import CampaignView, Proposal
from hive.errors import EditRejected
from hive.knobs import KNOBS_FILE, format_value, parse_runtime_knobs, read_value, rewrite_assignment
from hive.playbook import FileBinding, Playbook
from hive.playbook.constraints import check_configuration


class KnobCoder:
    """Applies a proposal's knob values to the files, flags and environment variables they are bound to."""

    name = "knobs"
    reads_view = False  # it needs no campaign view: the graph builds none for it

    def __init__(self, playbook: Playbook):
        self.playbook = playbook

    def paths(self) -> list[str]:
        """The files it reads and may write: those its file knobs are bound to, and the knob file."""
        return knob_paths(self.playbook)

    def edit(self, proposal: Proposal, files: dict[str, str | None]) -> tuple[str, dict[str, str]]:
        """The proposal applied to `files` (each of `paths()` -> its text, None where absent).

        Returns the summary and the files to write (path -> new text); nothing is written here, so the graph can
        commit them without a checkout.
        """
        knobs = {k.name: k for k in self.playbook.knobs}
        unknown = sorted(set(proposal.knobs) - set(knobs))
        if unknown:
            raise EditRejected(f"unknown knob(s): {', '.join(unknown)}")
        # the whole configuration (the parent's values, the proposal's over them) must be valid before anything runs
        values, problems = check_configuration(self.playbook.knobs, self.playbook.knob_constraints,
                                               {**knob_values(self.playbook, files), **proposal.knobs},
                                               set(proposal.knobs))
        if problems:
            raise EditRejected("refused before running: " + "; ".join(problems))
        runtime = {k: v for k, v in parse_runtime_knobs(files.get(KNOBS_FILE)).items() if k in knobs}
        texts = dict(files)
        writes: dict[str, str] = {}
        changed = []
        for name in proposal.knobs:
            value = values[name]
            bind = knobs[name].bind
            if isinstance(bind, FileBinding):
                before = texts.get(bind.file)
                if before is None:
                    raise EditRejected(f"knob {name}: its file {bind.file} is not in the parent commit")
                after = rewrite_assignment(before, bind.assign, value)
                if after != before:
                    texts[bind.file] = writes[bind.file] = after
                    changed.append(f"{name}={format_value(value)}")
            else:
                runtime[name] = value
        if runtime:
            writes[KNOBS_FILE] = json.dumps(runtime, indent=1, sort_keys=True) + "\n"
            changed += [f"{k}={format_value(v)}" for k, v in sorted(runtime.items()) if k in proposal.knobs]
        return ", ".join(changed) or "no change", writes

    def code(self, proposal: Proposal, tree: Path, view: CampaignView | None = None, number: int = 0) -> str:
        summary, writes = self.edit(proposal, tree_files(tree, self.paths()))
        for path, text in writes.items():
            target = tree / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return summary


def tree_files(tree: Path, paths: list[str]) -> dict[str, str | None]:
    """The text of each of `paths` in a checked-out tree (None where there is no such file)."""
    return {p: (tree / p).read_text(encoding="utf-8") if (tree / p).is_file() else None for p in paths}


def current_values(playbook: Playbook, tree: Path) -> dict[str, Any]:
    """The knob values a tree holds: literals of file-bound knobs, and the flag/env knobs its knob file records."""
    return knob_values(playbook, tree_files(tree, knob_paths(playbook)))


def knob_paths(playbook: Playbook) -> list[str]:
    """The files that hold a playbook's knob values: those its file knobs are bound to, and the knob file."""
    return sorted({k.bind.file for k in playbook.knobs if isinstance(k.bind, FileBinding)} | {KNOBS_FILE})


def knob_values(playbook: Playbook, files: dict[str, str | None]) -> dict[str, Any]:
    """The knob values in `files` (path -> text, None where absent), as `current_values` reads them from a tree."""
    values: dict[str, Any] = {}
    runtime = parse_runtime_knobs(files.get(KNOBS_FILE))
    for knob in playbook.knobs:
        if isinstance(knob.bind, FileBinding):
            text = files.get(knob.bind.file)
            value = read_value(text, knob.bind.assign) if text is not None else None
        else:
            value = runtime.get(knob.name)
        if value is not None:
            values[knob.name] = value
    return values
