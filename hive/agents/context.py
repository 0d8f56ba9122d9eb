"""The campaign context proposers read, built from the store."""

from __future__ import annotations

from hive.agents.base import CampaignView, ExperimentBrief
from hive.playbook import Playbook
from hive.store import Experiment, Store
from hive.store.queries import IN_FLIGHT

DIFF_LIMIT = 3000


def brief(exp: Experiment, with_diff: bool = False) -> ExperimentBrief:
    proposal = exp.proposal
    diff = exp.diff if with_diff else ""
    if len(diff) > DIFF_LIMIT:
        diff = diff[:DIFF_LIMIT] + "\n... (diff truncated)"
    return ExperimentBrief(number=exp.number, hypothesis=exp.hypothesis, verdict=exp.verdict,
                           reason=exp.verdict_reason, metric_mean=exp.metric_mean, metric_std=exp.metric_std,
                           n_seeds=exp.n_seeds, knobs=proposal.get("knobs", {}), diff=diff,
                           parent=exp.parent_number)


def campaign_view(store: Store, campaign_id: int, playbook: Playbook, recent: int = 12) -> CampaignView:
    """Rules, leaderboard, recent experiments with diffs, in-flight ones and lessons."""
    obj = playbook.objective
    # only what the prompt shows is read, so this stays fast with 100,000 experiments in the store
    first = store.experiment(campaign_id, 1)
    baseline = first if first is not None and first.verdict == "baseline" else None
    best = store.best(campaign_id)
    finished = list(reversed(store.experiments(campaign_id, statuses=["done"], limit=recent, newest_first=True)))
    in_flight = store.experiments(campaign_id, statuses=IN_FLIGHT)
    return CampaignView(
        name=playbook.name, metric=obj.metric, direction=obj.direction, constraints=list(obj.constraints),
        rules=playbook.rules, knobs=[k.model_dump(mode="json") for k in playbook.knobs],
        editable=list(playbook.editable), protected=list(playbook.protected),
        baseline=brief(baseline) if baseline else None, best=brief(best, with_diff=True) if best else None,
        leaderboard=[brief(e) for e in store.leaderboard(campaign_id, obj.direction, 10)],
        recent=[brief(e, with_diff=True) for e in finished],
        in_flight=[brief(e) for e in in_flight if e.kind != "baseline"],
        lessons=_lessons(store, campaign_id),
        since_best=store.count_finished_since(campaign_id, best.finished_at if best else None),
    )


def _lessons(store: Store, campaign_id: int, recent: int = 30) -> list[str]:
    """Every lesson a human gave (a rejected pull request), then the critic's most recent ones."""
    human = [lesson.text for lesson in store.lessons(campaign_id, 200, source="human")]
    latest = [lesson.text for lesson in store.lessons(campaign_id, recent) if lesson.text not in human]
    return human + latest
