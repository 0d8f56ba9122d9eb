"""Knob values that live outside the diff (flags, environment variables), made a reviewable file of the change:
a script that runs the command the way the kept experiment ran, or a refusal that names them."""

from __future__ import annotations

import json
import shlex
from pathlib import PurePosixPath
from typing import Any

from hive.errors import BadInput
from hive.export.common import Change
from hive.invocation import knob_arguments
from hive.knobs import KNOBS_FILE
from hive.playbook import Playbook
from hive.workspace import HIVE_DIR, GitFailed, Workspace


def runtime_values(workspace: Workspace, commit: str | None) -> dict[str, Any]:
    """The flag/env knob values a commit carries in its knob file (empty when it has none)."""
    if not commit:
        return {}
    try:
        data = json.loads(workspace.file_at(commit, KNOBS_FILE))
    except (GitFailed, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def outside_the_diff(workspace: Workspace, change: Change) -> dict[str, Any]:
    """The flag/env knob values the export would lose: all of the head's, or (with --only) those its parent lacks."""
    head = runtime_values(workspace, change.head)
    base = runtime_values(workspace, change.base)
    return {k: v for k, v in sorted(head.items()) if base.get(k) != v}


def script_text(change: Change, playbook: Playbook, values: dict[str, Any]) -> str:
    """A POSIX shell script that runs the playbook's command with the knob values the kept experiment used."""
    flags, env = knob_arguments(playbook, values)
    run = playbook.run
    seed = '"${SEED:-%d}"' % run.seeds[0]
    command = run.command.replace("{seed}", seed).replace("{repo}", ".")
    if run.seed_flag:
        flags.append(f"{run.seed_flag}={seed}" if run.flag_style == "equals" else f"{run.seed_flag} {seed}")
    lines = ["#!/bin/sh",
             f"# Written by Hive for pull request #{change.pr.number} (exp-{change.exp.number}): the knob values it "
             f"was kept with",
             "# that are command-line flags or environment variables, passed as Hive passed them to each run.",
             "# Run it from the repository's root; SEED picks the seed, more arguments are appended.",
             "set -e"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in {**run.env, **env}.items()]
    if run.seed_env:
        lines.append(f'export {run.seed_env}="${{SEED:-{run.seeds[0]}}}"')
    lines.append(" ".join(["exec", command, *flags, '"$@"']))
    return "\n".join(lines) + "\n"


def check_path(path: str) -> str:
    """A path inside the repository for the script (BadInput naming --knobs-to otherwise)."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or pure.parts[0] == HIVE_DIR:
        raise BadInput(f"--knobs-to: {path!r} must be a relative path inside the repository (not under {HIVE_DIR}/), "
                       f"e.g. run_hive.sh")
    return pure.as_posix()


def with_knob_script(workspace: Workspace, change: Change, playbook: Playbook, knobs_to: str | None) -> Change:
    """The change with the knob script added at `knobs_to`; refused, naming the values, when they would be lost."""
    values = outside_the_diff(workspace, change)
    if not values:
        if knobs_to:
            raise BadInput(f"--knobs-to: pull request #{change.pr.number} sets no flag or environment knob; "
                           f"its whole change is in the diff")
        return change
    if not knobs_to:
        flags, env = knob_arguments(playbook, values)
        named = ", ".join([*flags, *(f"{k}={v}" for k, v in env.items())])
        raise BadInput(f"pull request #{change.pr.number} was kept with knob values that are in no file: {named}; "
                       f"pass --knobs-to FILE (e.g. run_hive.sh) to write them into a script of the exported change")
    path = check_path(knobs_to)
    if workspace.has_file(change.head, path):
        raise BadInput(f"--knobs-to: {path} exists in the change already; name a new file")
    text = script_text(change, playbook, values)
    head = workspace.commit_with_file(change.head, [change.head], path, text, f"hive: {path} for PR #{change.pr.number}")
    return Change(change.pr, change.exp, change.base, head, change.includes, change.depends_on, knob_script=path)
