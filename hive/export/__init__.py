"""Exporting a pull request, one module per format: a branch in the user's repository, a patch file, or a Parameter
Golf records folder."""

from __future__ import annotations

from pathlib import Path

from hive.errors import BadInput, HiveError
from hive.export.branch import export_branch, push_branch
from hive.export.common import Change, ExportResult
from hive.export.knob_script import with_knob_script
from hive.export.param_golf import export_param_golf
from hive.export.patch import export_patch
from hive.playbook import Playbook
from hive.prs import get_pr, lineage
from hive.store import Campaign, Store
from hive.workspace import Workspace

FORMATS = ("branch", "patch", "param-golf")


def export(store: Store, campaign: Campaign, workspace: Workspace, number: int, fmt: str, to: Path | None = None,
           gh: bool = False, only: bool = False, author: str | None = None, github_id: str | None = None,
           track: str = "10min_16mb", name: str | None = None, knobs_to: str | None = None) -> ExportResult:
    """Export pull request `number` as a branch, a patch or a Parameter Golf records folder.

    By default the export carries the whole stack from the baseline (every PR it builds on, listed in the
    message); with `only` it carries just its own diff from its parent and names the PRs it depends on. Knob
    values set by flags or environment variables go into a script at `knobs_to`; without it, such a PR is refused.
    """
    if fmt not in FORMATS:
        given = f"{fmt!r} is not" if fmt else "give"
        raise BadInput(f"--format: {given} one of {', '.join(FORMATS)}")
    pr = get_pr(store, campaign.id, number)
    exp = store.experiment(campaign.id, pr.experiment_number)
    if exp is None or not pr.commit:
        raise HiveError(f"pull request #{number} has no experiment commit to export")
    stack = lineage(store, campaign.id, exp)
    if only:
        change = Change(pr, exp, exp.parent_commit or f"{pr.commit}^", pr.commit, [], stack[::-1])
    else:
        change = Change(pr, exp, campaign.baseline_commit or workspace.baseline_commit(), pr.commit, stack, [])
    playbook = _playbook(campaign)
    if fmt in ("branch", "patch"):
        change = with_knob_script(workspace, change, playbook, knobs_to)
    elif knobs_to:
        raise BadInput("--knobs-to: only --format branch and patch carry a script of knob values")
    if fmt == "branch":
        return _noted(export_branch(workspace, campaign, change, playbook, to, gh), change)
    if gh:
        raise BadInput("--gh: only --format branch opens a GitHub pull request")
    if fmt == "patch":
        return _noted(export_patch(workspace, change, to), change)
    return export_param_golf(store, campaign, workspace, change, playbook, to, author, github_id, track, name)


def push(store: Store, campaign: Campaign, workspace: Workspace, number: int, to: Path | None = None,
         remote: str | None = None, branch: str | None = None, open_pr: bool = False, only: bool = False,
         knobs_to: str | None = None) -> ExportResult:
    """Export pull request `number` as a branch of the user's repository and push it to `remote` (default origin)."""
    result = export(store, campaign, workspace, number, "branch", to, only=only, knobs_to=knobs_to)
    pr = get_pr(store, campaign.id, number)
    return push_branch(result, pr.title, workspace.root / "exports" / f"pr-{number}.md", remote, branch, open_pr)


def _noted(result: ExportResult, change: Change) -> ExportResult:
    if change.knob_script:
        result.notes.append(f"the flag and environment knob values are in {change.knob_script} (run it from the "
                            f"repository's root)")
    return result


def _playbook(campaign: Campaign) -> Playbook:
    pb = Playbook.model_validate_json(campaign.playbook_json)
    if campaign.playbook_path:
        pb.path = Path(campaign.playbook_path)
    return pb


__all__ = ["FORMATS", "ExportResult", "export", "push"]
