"""Pull-request records: one per kept experiment, with its evidence body, diff and lineage; approve and reject."""

from __future__ import annotations

from typing import Any

from hive.agents.base import Verdict
from hive.errors import BadInput, HiveError
from hive.objective import Constraint, metric_value
from hive.playbook import FileBinding, Knob, Playbook
from hive.invocation import Invocation
from hive.views import llm_spent
from hive.store import Campaign, Experiment, Lesson, PullRequest, Store
from hive.store.models import now
from hive.store.queries import to_dict
from hive.workspace import Workspace

STATUSES = ("open", "approved", "rejected")


# -- lineage ---------------------------------------------------------------------
def ancestors(store: Store, campaign_id: int, exp: Experiment) -> list[Experiment]:
    """The experiments from the baseline down to `exp`'s parent, oldest first (parents of keeps are keeps)."""
    chain, seen = [], {exp.number}
    number = exp.parent_number
    while number is not None and number not in seen:
        parent = store.experiment(campaign_id, number)
        if parent is None:
            break
        chain.append(parent)
        seen.add(number)
        number = parent.parent_number
    return list(reversed(chain))


def lineage(store: Store, campaign_id: int, exp: Experiment) -> list[PullRequest]:
    """Every earlier pull request `exp` builds on, walking its parents up to the baseline, oldest first."""
    by_exp = {pr.experiment_number: pr for pr in store.pull_requests(campaign_id)}
    return [by_exp[e.number] for e in ancestors(store, campaign_id, exp) if e.number in by_exp]


# -- the body --------------------------------------------------------------------
def _constraint_keys(playbook: Playbook) -> list[str]:
    keys = []
    for text in playbook.objective.constraints:
        key = Constraint.parse(text).key
        if key != playbook.objective.metric and key not in keys:
            keys.append(key)
    return keys


def _fmt(value: float | None) -> str:
    return f"{value:.6g}" if value is not None else "-"


def _mean_sd(values: list[float]) -> str:
    """'mean ± sd' over seeds; a single seed has no spread, so none is shown."""
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return _fmt(mean)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.6g} ± {sd:.2g}"


def _by_seed(store: Store, exp: Experiment | None, key: str) -> dict[int, float]:
    if exp is None:
        return {}
    return {r.seed: v for r in store.runs(exp.id) if r.status == "ok" and (v := metric_value(r.metrics, key)) is not None}


def _evidence_table(store: Store, exp: Experiment, playbook: Playbook, columns: list[tuple[str, Experiment]]) -> list[str]:
    """One row per metric (objective first, then constrained keys): mean ± sd for this PR and each reference."""
    keys = [playbook.objective.metric] + _constraint_keys(playbook)
    head = "| metric | " + " | ".join(label for label, _ in columns) + " |"
    rows = [head, "|---" * (len(columns) + 1) + "|"]
    for key in keys:
        cells = [_mean_sd(list(_by_seed(store, e, key).values())) for _, e in columns]
        rows.append(f"| `{key}` | " + " | ".join(cells) + " |")
    rows.append("| seeds | " + " | ".join(str(len(_by_seed(store, e, keys[0]))) for _, e in columns) + " |")
    return rows


def _seed_table(store: Store, exp: Experiment, playbook: Playbook, refs: list[tuple[str, Experiment]]) -> list[str]:
    """Per seed: status, the objective for this PR and for each reference on the same seed, constrained keys, time."""
    metric = playbook.objective.metric
    others = _constraint_keys(playbook)
    ref_values = [(label, _by_seed(store, e, metric)) for label, e in refs]
    head = ["seed", "status", metric] + [f"{metric} ({label})" for label, _ in ref_values] + others + ["wall s"]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for run in store.runs(exp.id):
        cells = [str(run.seed), run.status, _fmt(metric_value(run.metrics, metric))]
        cells += [_fmt(values.get(run.seed)) for _, values in ref_values]
        cells += [_fmt(metric_value(run.metrics, key)) for key in others]
        cells.append(f"{run.wall_seconds or 0:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _constraint_lines(store: Store, exp: Experiment, playbook: Playbook) -> list[str]:
    runs = [r for r in store.runs(exp.id) if r.status == "ok"]
    lines = []
    for text in playbook.objective.constraints:
        c = Constraint.parse(text)
        values = [v for r in runs if (v := metric_value(r.metrics, c.key)) is not None]
        if values:
            held = all(c.violation(r.metrics) is None for r in runs)
            lines.append(f"- constraint `{c}`: {min(values):.6g} .. {max(values):.6g} over {len(values)} seed(s)"
                         f" ({'held on every seed' if held else 'BROKEN on some seed'})")
    return lines


def _delta(mean: float | None, ref: Experiment | None, label: str) -> str | None:
    if ref is None or ref.metric_mean is None or mean is None:
        return None
    delta = mean - ref.metric_mean
    rel = f", {100 * delta / abs(ref.metric_mean):+.2f}%" if ref.metric_mean else ""
    return f"- vs {label} exp-{ref.number} ({ref.metric_mean:.6g}): {delta:+.6g}{rel}"


def diff_stat(diff: str) -> list[tuple[str, int, int]]:
    """(path, lines added, lines removed) for each file of a unified git diff, Hive's own `.hive/` left out."""
    stats: list[tuple[str, int, int]] = []
    path, added, removed = None, 0, 0
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            if path is not None:
                stats.append((path, added, removed))
            path, added, removed = line.split(" b/", 1)[-1], 0, 0
        elif path is not None and line.startswith("+") and not line.startswith("+++ "):
            added += 1
        elif path is not None and line.startswith("-") and not line.startswith("--- "):
            removed += 1
    if path is not None:
        stats.append((path, added, removed))
    return [s for s in stats if not s[0].startswith(".hive/")]


def _how_it_ran(store: Store, exp: Experiment, playbook: Playbook) -> list[str]:
    """The exact command line of every seed, and the knob values that reach the run outside the diff."""
    runs = [r for r in store.runs(exp.id) if r.command]
    if not runs:
        return []
    lines = ["\n## How it ran\n", "Each seed ran this in a fresh folder holding the commit's files:\n", "```sh"]
    lines += [Invocation(r.command, r.env).shell_line() for r in runs]
    lines.append("```")
    knobs = {k.name: k for k in playbook.knobs}
    runtime = {name: value for name, value in (exp.proposal.get("knobs") or {}).items()
               if name in knobs and not isinstance(knobs[name].bind, FileBinding)}
    if runtime:
        where = ", ".join(f"`{_binding(knobs[n])}={v}`" for n, v in sorted(runtime.items()))
        lines.append(f"\nSet on the command line or in the environment, not in the diff: {where}. "
                     f"`hive pr export N --knobs-to FILE` writes them into a script of the repository.")
    return lines


def _binding(knob: Knob) -> str:
    bind = knob.bind
    return getattr(bind, "flag", None) or getattr(bind, "env", None) or knob.name


def render_body(store: Store, exp: Experiment, verdict: Verdict, playbook: Playbook,
                parent_pr: PullRequest | None = None) -> str:
    """GitHub markdown: hypothesis, evidence (table, deltas, p-value, constraints, per-seed values), the exact
    command line, the diff stat, cost and lineage."""
    obj = playbook.objective
    cid = exp.campaign_id
    runs = list(store.runs(exp.id))
    parent = store.experiment(cid, exp.parent_number) if exp.parent_number else None
    baseline = store.experiment(cid, 1)
    best = store.experiment(cid, verdict.reference) if verdict.reference else parent
    lines = [f"## Hypothesis\n\n{exp.hypothesis}\n"]
    if exp.rationale:
        lines.append(f"{exp.rationale}\n")
    n_ok = sum(r.status == "ok" for r in runs)
    spread = f" ± {verdict.std:.2g}" if verdict.std is not None and n_ok > 1 else ""
    lines.append("## Evidence\n")
    lines.append(f"- {obj.metric} ({obj.direction}): **{_fmt(verdict.mean)}{spread}** over {n_ok} seed(s)")
    lines += [d for d in (_delta(verdict.mean, parent, "parent"), _delta(verdict.mean, baseline, "baseline")) if d]
    if verdict.p_value is not None:
        test = "paired t-test on the same seeds" if "paired t-test" in verdict.reason else "Welch t-test"
        lines.append(f"- one-sided {test} vs the best at the time"
                     f"{f' (exp-{best.number})' if best else ''}: p = {verdict.p_value:.3g} "
                     f"(alpha {obj.alpha:g}, min_delta {obj.min_delta:g})")
        lines.append(f"- the critic: {verdict.reason}")
    lines += _constraint_lines(store, exp, playbook)
    columns = [(f"this PR (exp-{exp.number})", exp)]
    refs = []
    if best is not None and best.number != exp.number:
        refs.append((f"best exp-{best.number}", best))
    if baseline is not None and all(e.number != baseline.number for _, e in refs):
        refs.append((f"baseline exp-{baseline.number}", baseline))
    lines += [""] + _evidence_table(store, exp, playbook, columns + refs)
    lines += ["", "Per seed:", ""] + _seed_table(store, exp, playbook, refs)
    lines += _how_it_ran(store, exp, playbook)
    stat = diff_stat(exp.diff or "")
    if stat:
        lines += ["\n## Changes\n", "| file | + | - |", "|---|---|---|"]
        lines += [f"| `{path}` | {added} | {removed} |" for path, added, removed in stat]
        lines.append(f"\n{len(stat)} file(s), +{sum(s[1] for s in stat)} -{sum(s[2] for s in stat)} lines")
    wall = sum(r.wall_seconds or 0 for r in runs)
    res = playbook.run.resources
    llm = store.llm_totals(cid, exp.number)
    lines.append(f"\n## Cost\n\n- run wall-clock: {wall:.1f} s over {len(runs)} run(s)"
                 f"\n- GPU-seconds: {wall * res.gpus:.1f}; CPU-seconds: {wall * res.cpu_threads:.1f}"
                 f"\n- LLM: {int(llm['prompt_tokens'] + llm['completion_tokens'])} tokens in {int(llm['calls'])} call(s),"
                 f" ${llm['dollars']:.4f}")
    lines.append(f"\n## Lineage\n\n- experiment exp-{exp.number}, commit `{exp.commit[:12]}`, "
                 f"parent exp-{exp.parent_number} (`{exp.parent_commit[:12]}`)")
    stack = lineage(store, cid, exp)
    for pr in stack:
        lines.append(f"- builds on PR #{pr.number} (exp-{pr.experiment_number}): {pr.title}")
    if not stack:
        lines.append("- builds directly on the baseline; no earlier pull request needed")
    return "\n".join(lines) + "\n"


def _shorten(text: str, limit: int) -> str:
    """The first line of text, cut at a word boundary to at most `limit` characters."""
    line = (text.strip().splitlines() or ["change"])[0]
    if len(line) <= limit:
        return line
    return line[:limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:-") + "…"


def open_pull_request(store: Store, campaign_id: int, exp: Experiment, verdict: Verdict,
                      playbook: Playbook) -> PullRequest:
    """The pull-request record of a kept experiment (idempotent: a second call returns the first record)."""
    existing = [pr for pr in store.pull_requests(campaign_id) if pr.experiment_number == exp.number]
    if existing:
        return existing[0]
    stack = lineage(store, campaign_id, exp)
    parent_pr = stack[-1] if stack else None
    gain = f" ({playbook.objective.metric} {verdict.mean:.4g})" if verdict.mean is not None else ""
    title = f"exp-{exp.number}: {_shorten(exp.hypothesis, 70)}{gain}"
    body = render_body(store, exp, verdict, playbook, parent_pr)
    return store.new_pull_request(campaign_id, experiment_number=exp.number, title=title, body=body,
                                  parent_pr=parent_pr.number if parent_pr else None)


# -- reading -------------------------------------------------------------------
def list_prs(store: Store, campaign_id: int, status: str | None = None) -> list[PullRequest]:
    """The campaign's pull requests, oldest first, optionally only those with one status."""
    if status is not None and status not in STATUSES:
        raise BadInput(f"--status: {status!r} is not one of {', '.join(STATUSES)}")
    return list(store.pull_requests(campaign_id, status))


def get_pr(store: Store, campaign_id: int, number: int) -> PullRequest:
    """One pull request by number; BadInput naming the valid numbers when it does not exist."""
    prs = store.pull_requests(campaign_id)
    for pr in prs:
        if pr.number == number:
            return pr
    valid = ", ".join(str(p.number) for p in prs) or "none yet"
    raise BadInput(f"N: no pull request #{number} (valid: {valid})")


def pr_row(pr: PullRequest) -> dict[str, Any]:
    """The pull request's row as JSON-ready data, with the commit and diff of the experiment it keeps."""
    return {**to_dict(pr), "commit": pr.commit, "diff": pr.diff}


def pr_data(store: Store, campaign_id: int, pr: PullRequest) -> dict[str, Any]:
    """A pull request as JSON-ready data, with its experiment's numbers and the PRs it builds on."""
    data = pr_row(pr)
    exp = store.experiment(campaign_id, pr.experiment_number)
    if exp is not None:
        runs = store.runs(exp.id)
        data["experiment"] = {"number": exp.number, "parent_number": exp.parent_number, "hypothesis": exp.hypothesis,
                              "metric_mean": exp.metric_mean, "metric_std": exp.metric_std, "p_value": exp.p_value,
                              "n_seeds": exp.n_seeds, "gpu_seconds": exp.gpu_seconds, "cpu_seconds": exp.cpu_seconds,
                              **llm_spent(store, campaign_id, exp.number),
                              "seeds": {str(r.seed): r.metrics for r in runs}}
        data["builds_on"] = [p.number for p in lineage(store, campaign_id, exp)]
    return data


# -- deciding --------------------------------------------------------------------
def _must_be_open(pr: PullRequest) -> None:
    if pr.status != "open":
        why = f" ({pr.reason})" if pr.reason else ""
        raise BadInput(f"N: pull request #{pr.number} is already {pr.status}{why}")


def accepted_branch(campaign: Campaign) -> str:
    return f"hive/{campaign.name}/accepted"


def approve(store: Store, campaign: Campaign, workspace: Workspace, number: int) -> PullRequest:
    """Merge the PR's commit into the campaign's accepted branch (made from the baseline) and mark it approved.

    A fast-forward when possible, else a merge commit, but only of code measured together: a merge whose files no
    experiment of the campaign ran is refused with the reason (the accepted branch never holds a combination
    nobody measured). A conflict, or a refusal, raises HiveError and changes nothing.
    """
    pr = get_pr(store, campaign.id, number)
    _must_be_open(pr)
    branch = accepted_branch(campaign)
    ref = f"refs/heads/{branch}"
    if workspace.has_branch(branch):
        head = workspace.rev_parse(ref)
    else:  # first approval: the accepted branch starts at the baseline
        head = workspace.baseline_commit()
        workspace.update_ref(branch, head, "")
    if workspace.is_ancestor(pr.commit, head):
        pass  # already in (an approved PR stacked on it brought it along)
    elif workspace.is_ancestor(head, pr.commit):
        workspace.update_ref(branch, pr.commit, head)
    else:
        code, out = workspace.merge_tree(head, pr.commit)
        if code != 0:
            conflicts = sorted({line.strip() for line in out.splitlines()[1:] if line.strip()})
            raise HiveError(f"pull request #{number} conflicts with {branch} in {', '.join(conflicts) or 'its files'}; "
                            f"nothing was changed")
        tree = out.splitlines()[0].strip()
        _measured_together(store, campaign, workspace, number, branch, tree)
        message = f"hive: accept PR #{number}: {pr.title}\n\nHive-PR: {number}\nHive-Commit: {pr.commit}\n"
        merged = workspace.commit_tree(tree, [head, pr.commit], message)
        workspace.update_ref(branch, merged, head)
    approved = store.update(PullRequest, pr.id, status="approved", decided_at=now())
    # the open PRs it builds on are in the accepted branch now too: say so, rather than leave them open
    accepted = workspace.rev_parse(ref)
    for other in store.pull_requests(campaign.id, status="open"):
        if workspace.is_ancestor(other.commit, accepted):
            store.update(PullRequest, other.id, status="approved", decided_at=now(),
                         reason=f"approved with PR #{number}, which builds on it")
    return approved


MEASURED_LOOKBACK = 5000  # finished experiments searched for one that ran a merge's exact files


def _measured_together(store: Store, campaign: Campaign, workspace: Workspace, number: int, branch: str,
                       tree: str) -> None:
    """Refuse a merge into `branch` whose files (`tree`) no kept experiment ran, naming what would be needed."""
    done = [e for e in store.experiments(campaign.id, statuses=["done"], limit=MEASURED_LOOKBACK, newest_first=True)
            if e.commit and e.n_seeds]
    ran = next((e for e, t in zip(done, workspace.tree_ids([e.commit for e in done])) if t == tree), None)
    if ran is not None and ran.verdict in ("keep", "baseline"):
        return
    found = (f"exp-{ran.number} ran exactly this combination and was not kept ({ran.verdict})" if ran is not None
             else "no experiment ran them together")
    raise HiveError(f"pull request #{number} does not build on {branch} and {found}: merging would put unmeasured "
                    f"code in {branch}; nothing was changed (approve the pull request of an experiment that holds "
                    f"both, or reject one)")


def reject(store: Store, campaign: Campaign, number: int, reason: str) -> PullRequest:
    """Mark the PR rejected with the reason, and leave a lesson the proposer reads (the best branch stays)."""
    reason = (reason or "").strip()
    if not reason:
        raise BadInput("--reason: say why the pull request is rejected (the proposer learns from it)")
    pr = get_pr(store, campaign.id, number)
    _must_be_open(pr)
    exp = store.experiment(campaign.id, pr.experiment_number)
    hypothesis = exp.hypothesis if exp is not None else pr.title
    text = f"PR #{number} (exp-{pr.experiment_number}: {hypothesis}) rejected by a human: {reason}"
    store.add(Lesson(campaign_id=campaign.id, experiment_number=pr.experiment_number, source="human", text=text))
    return store.update(PullRequest, pr.id, status="rejected", reason=reason, decided_at=now())

