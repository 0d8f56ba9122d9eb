"""Pull-request actions for the TUI: the library functions `hive pr approve|reject|export` call, nothing more."""

from __future__ import annotations

from pathlib import Path

from hive import prs
from hive.export import export as export_pr
from hive.store import Campaign, Store
from hive.workspace import Workspace


def _workspace(home: Path, campaign: Campaign) -> Workspace:
    return Workspace(home / campaign.name, campaign.name)


def approve(store: Store, campaign: Campaign, number: int, home: Path) -> str:
    """Merge the PR into the campaign's accepted branch; a line for the user."""
    prs.approve(store, campaign, _workspace(home, campaign), number)
    return f"PR #{number} approved: merged into {prs.accepted_branch(campaign)}"


def reject(store: Store, campaign: Campaign, number: int, reason: str) -> str:
    """Reject the PR; the reason becomes a lesson for the proposer."""
    prs.reject(store, campaign, number, reason)
    return f"PR #{number} rejected"


def export(store: Store, campaign: Campaign, number: int, home: Path, fmt: str, to: Path | None) -> str:
    """Export the PR as a patch, a branch or a Parameter Golf folder; what was made, for the user."""
    return export_pr(store, campaign, _workspace(home, campaign), number, fmt, to).text()
