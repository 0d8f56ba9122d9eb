"""A pull request as one `git am`-able patch file, squashed from the baseline (or its parent, with --only)."""

from __future__ import annotations

import shlex
from pathlib import Path

from hive.errors import HiveError
from hive.export.common import Change, ExportResult, result
from hive.workspace import HIVE_DIR, Workspace


def export_patch(workspace: Workspace, change: Change, to: Path | None) -> ExportResult:
    name = f"hive-pr-{change.pr.number}.patch"
    target = Path(to).expanduser() if to is not None else Path.cwd()
    path = target if target.suffix == ".patch" else target / name
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    # an unreferenced squashed commit in the campaign repo: format-patch writes it out, nothing points at it
    squashed = workspace.commit_tree(change.head, [change.base], change.message())
    text = workspace.format_patch(squashed)
    if "\ndiff --git " not in text:
        raise HiveError(f"pull request #{change.pr.number} changes nothing outside {HIVE_DIR}/")
    path.write_text(text)
    return result(change, "patch", paths=[str(path)],
                   commands=[f"git am {shlex.quote(str(path))}   # in a clone of the source"])
