"""Wins combine: a change that beat its parent, and a best that grew from that parent along other knobs, are
proposed together, so the best accumulates independent gains instead of the later keep replacing the earlier.

A *win* is an experiment that beat the experiment it was made from: a keep, or a candidate the critic found
better than its parent but not better than a best kept meanwhile (graph.py records those as `combine` lessons).
For the knob strategists a combination is the best's configuration with the win's changed knobs set as well
(what a merge commit of the two knob rewrites holds); it is judged like any candidate against the best.
"""

from __future__ import annotations

from typing import Any

from hive.agents.base import Proposal
from hive.knobs import format_value
from hive.store import Experiment, Store

RECENT = 200  # experiments looked at for wins and for combinations already tried
COMBINE_SOURCE = "combine"  # the lesson source that marks a win over its parent


def changes(knobs: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """The knobs a configuration sets differently from its parent's."""
    return {k: v for k, v in knobs.items() if parent.get(k) != v}


def combination(store: Store, campaign_id: int, best: Experiment | None) -> Proposal | None:
    """A proposal combining the best with a win on other knobs it lacks, or None (nothing new to combine)."""
    if best is None or not best.proposal.get("knobs"):
        return None
    marked = {lesson.experiment_number for lesson in store.lessons(campaign_id, RECENT, source=COMBINE_SOURCE)}
    wins = [w for w in store.wins(campaign_id, marked, RECENT) if w.number != best.number]
    if not wins:  # the common case: nothing to combine, and the newest experiments need not be read
        return None
    lineage = store.lineage(campaign_id, best.number)
    tried: set[tuple] | None = None  # read once a win passes the cheaper tests
    configurations: list = []
    for win in wins:
        if win.number in lineage:
            continue  # an earlier keep the best grew from: the best holds its change already
        parent = store.experiment(campaign_id, win.parent_number) if win.parent_number else None
        if parent is None or parent.number not in lineage:
            continue
        ours = changes(win.proposal.get("knobs", {}), parent.proposal.get("knobs", {}))
        theirs = changes(best.proposal.get("knobs", {}), parent.proposal.get("knobs", {}))
        if not ours or set(ours) & set(theirs) or not changes(ours, best.proposal.get("knobs", {})):
            continue  # nothing to add, or both moved the same knob: not independent
        if tried is None:
            recent = store.experiments(campaign_id, limit=RECENT, newest_first=True)
            tried = {tuple(e.proposal.get("combines") or ()) for e in recent}
            configurations = [e.proposal.get("knobs") for e in recent if e.number != 1]
        if (best.number, win.number) in tried or {**best.proposal["knobs"], **ours} in configurations:
            continue  # tried, or already run (or in flight) as an experiment of its own
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in ours.items())
        return Proposal(hypothesis=f"combine exp-{best.number} with exp-{win.number} ({shown})",
                        rationale=f"exp-{win.number} beat its parent exp-{parent.number} by changing {shown}; "
                                  f"the best exp-{best.number} changed other knobs since: both together",
                        parent=best.number, knobs={**best.proposal["knobs"], **ours}, strategist="combine",
                        combines=[best.number, win.number])
    return None
