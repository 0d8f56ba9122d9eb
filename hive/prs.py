"""Pull-request records: one per kept experiment, with a title, an evidence body, the diff and its lineage."""

from __future__ import annotations

from hive.agents.base import Verdict
from hive.objective import metric_value
from hive.playbook import Playbook
from hive.store import Experiment, PullRequest, Store


def _seed_table(store: Store, exp: Experiment, playbook: Playbook) -> list[str]:
    obj = playbook.objective
    keys = [obj.metric] + [c.split()[0] for c in obj.constraints if c.split()[0] != obj.metric]
    rows = ["| seed | " + " | ".join(keys) + " | wall s |", "|---" * (len(keys) + 2) + "|"]
    for run in store.runs(exp.id):
        cells = []
        for key in keys:
            value = metric_value(run.metrics, key)
            cells.append(f"{value:.6g}" if value is not None else "-")
        rows.append(f"| {run.seed} | " + " | ".join(cells) + f" | {run.wall_seconds or 0:.1f} |")
    return rows


def render_body(store: Store, exp: Experiment, verdict: Verdict, playbook: Playbook,
                parent_pr: PullRequest | None) -> str:
    """Markdown: hypothesis, what changed, the evidence table, costs, lineage."""
    obj = playbook.objective
    baseline = store.experiment(exp.campaign_id, 1)
    parent = store.experiment(exp.campaign_id, exp.parent_number) if exp.parent_number else None
    lines = [f"## Hypothesis\n\n{exp.hypothesis}\n"]
    if exp.rationale:
        lines.append(f"{exp.rationale}\n")
    lines.append("## Evidence\n")
    lines.append(f"- {obj.metric} ({obj.direction}): **{verdict.mean:.6g} ± {verdict.std or 0:.2g}** over "
                 f"{exp.n_seeds or len(store.runs(exp.id))} seeds")
    for label, ref in (("parent", parent), ("baseline", baseline)):
        if ref is not None and ref.metric_mean is not None and verdict.mean is not None:
            lines.append(f"- vs {label} exp-{ref.number} ({ref.metric_mean:.6g}): {verdict.mean - ref.metric_mean:+.6g}")
    if verdict.p_value is not None:
        lines.append(f"- one-sided Welch t-test p = {verdict.p_value:.3g} (alpha {obj.alpha:g}, min_delta {obj.min_delta:g})")
    if obj.constraints:
        lines.append(f"- constraints: {', '.join(obj.constraints)} (all held on every seed)")
    lines.append("")
    lines += _seed_table(store, exp, playbook)
    llm = store.llm_totals(exp.campaign_id, exp.number)
    wall = sum(r.wall_seconds or 0 for r in store.runs(exp.id))
    lines.append(f"\n## Cost\n\n- run seconds: {wall:.1f} (GPU-seconds: {wall * playbook.run.resources.gpus:.1f})"
                 f"\n- LLM: {llm['prompt_tokens'] + llm['completion_tokens']} tokens, ${llm['dollars']:.4f}")
    lines.append(f"\n## Lineage\n\n- experiment exp-{exp.number}, commit `{exp.commit[:12]}`, parent exp-{exp.parent_number}")
    if parent_pr is not None:
        lines.append(f"- builds on PR #{parent_pr.number} (exp-{parent_pr.experiment_number}); merge that first")
    return "\n".join(lines) + "\n"


def open_pull_request(store: Store, campaign_id: int, exp: Experiment, verdict: Verdict,
                      playbook: Playbook) -> PullRequest:
    """The pull-request record of a kept experiment (idempotent: a second call returns the first record)."""
    existing = [pr for pr in store.pull_requests(campaign_id) if pr.experiment_number == exp.number]
    if existing:
        return existing[0]
    parent_pr = next((pr for pr in store.pull_requests(campaign_id) if pr.experiment_number == exp.parent_number), None)
    gain = ""
    if verdict.mean is not None:
        gain = f" ({playbook.objective.metric} {verdict.mean:.4g})"
    title = f"exp-{exp.number}: {exp.hypothesis[:70]}{gain}"
    body = render_body(store, exp, verdict, playbook, parent_pr)
    return store.new_pull_request(campaign_id, experiment_number=exp.number, title=title, body=body, diff=exp.diff,
                                  commit=exp.commit, parent_pr=parent_pr.number if parent_pr else None)
