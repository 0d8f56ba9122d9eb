"""The campaign context proposers read, built from the store (and the best commit, where the workspace is given)."""

from __future__ import annotations

import ast
import functools
import statistics
from dataclasses import replace
from collections.abc import Sequence

from hive.agents.base import CampaignView, ExperimentBrief, FileOutline
from hive.logs import log_tail
from hive.objective import Constraint, metric_value
from hive.playbook import Playbook, matches_any
from hive.store import Experiment, Run, Store
from hive.store.queries import IN_FLIGHT
from hive.workspace import GitFailed, Workspace

DIFF_LIMIT = 3000
BEST_DIFF_LIMIT = 6000
CRASH_LINES = 20  # of an unrepaired crash's log: enough for the traceback and the error line
OUTLINE_NAMES = 60  # top-level names listed per editable file
FAILED_RUNS = {"failed": "failed", "timeout": "timed out", "tampered": "wrote where it may not"}


def brief(exp: Experiment, with_diff: bool = False, runs: Sequence[Run] = (), constraints: Sequence[str] = ()) -> ExperimentBrief:
    """One experiment as a proposer sees it: every metric its seeds produced, constraint headroom, a crash's tail."""
    proposal = exp.proposal
    diff = exp.diff if with_diff else ""
    if len(diff) > DIFF_LIMIT:
        diff = diff[:DIFF_LIMIT] + "\n... (diff truncated)"
    metrics = mean_metrics(runs)
    return ExperimentBrief(number=exp.number, hypothesis=exp.hypothesis, verdict=exp.verdict,
                           reason=exp.verdict_reason, metric_mean=exp.metric_mean, metric_std=exp.metric_std,
                           n_seeds=exp.n_seeds, knobs=proposal.get("knobs", {}), diff=diff,
                           parent=exp.parent_number, metrics=metrics, headroom=headroom(metrics, constraints),
                           crash_tail=crash_tail(runs) if exp.verdict in ("crash", "timeout") else "")


def campaign_view(store: Store, campaign_id: int, playbook: Playbook, workspace: Workspace | None = None,
                  recent: int = 12, full: bool = True) -> CampaignView:
    """Rules, leaderboard, the newest experiments (newest first) with their metrics, the best's change and an outline.

    With `full=False` (a knob strategist's view: experiments, their knobs and verdicts), no leaderboard, lessons,
    outline, per-seed metrics or crash tails are read.
    """
    obj = playbook.objective
    # only what the prompt shows is read, so this stays fast with 100,000 experiments in the store
    first = store.experiment(campaign_id, 1)
    baseline = first if first is not None and first.verdict == "baseline" else None
    best = store.best(campaign_id)
    finished = list(store.experiments(campaign_id, statuses=["done"], limit=recent, newest_first=True))
    in_flight = store.experiments(campaign_id, statuses=IN_FLIGHT)
    shown = {e.id: e for e in [*finished, *(x for x in (best, baseline) if x)]}
    runs = store.runs_for(list(shown)) if full else {}
    briefs = {e.id: brief(e, True, runs.get(e.id, ()), obj.constraints) for e in shown.values()}
    best_brief = briefs[best.id] if best else None
    if full and best_brief is not None and workspace is not None and baseline is not None and best.commit:
        # a copy: the best in the recent list keeps its own diff (from its parent)
        best_brief = replace(best_brief, diff=_best_diff(workspace, baseline.commit, best.commit))
    return CampaignView(
        name=playbook.name, metric=obj.metric, direction=obj.direction, constraints=list(obj.constraints),
        rules=playbook.rules, knobs=[k.model_dump(mode="json") for k in playbook.knobs],
        editable=list(playbook.editable), protected=list(playbook.protected),
        baseline=briefs[baseline.id] if baseline else None, best=best_brief,
        leaderboard=[brief(e) for e in store.leaderboard(campaign_id, obj.direction, 10)] if full else [],
        recent=[briefs[e.id] for e in finished],
        in_flight=[brief(e) for e in in_flight if e.kind != "baseline"],
        lessons=_lessons(store, campaign_id) if full else [],
        since_best=store.count_finished_since(campaign_id, best.finished_at if best else None),
        outline=(list(_outline_at(workspace, best.commit, tuple(playbook.editable), tuple(playbook.protected)))
                 if full and workspace is not None and best and best.commit else []),
    )


# a commit's diff and outline never change: read once per best (git costs ~10 ms a call, and every experiment's
# proposer and coder build this view; bench/orchestration_overhead.py measured 70 ms per experiment before)
@functools.lru_cache(maxsize=32)
def _best_diff(workspace: Workspace, base: str, head: str) -> str:
    return _clip(_git_or_empty(lambda: workspace.diff(base, head)), BEST_DIFF_LIMIT)


@functools.lru_cache(maxsize=32)
def _outline_at(workspace: Workspace, commit: str, editable: tuple[str, ...],
                protected: tuple[str, ...]) -> tuple[FileOutline, ...]:
    return tuple(outline(workspace, commit, editable, protected))


def mean_metrics(runs: Sequence[Run]) -> dict[str, float]:
    """The mean over successful seeds of every numeric metric the scorer produced (a run's own prints too)."""
    values: dict[str, list[float]] = {}
    for run in runs:
        if run.status == "ok":
            for key in run.metrics:
                if (value := metric_value(run.metrics, key)) is not None:
                    values.setdefault(key, []).append(value)
    return {key: statistics.fmean(v) for key, v in values.items()}


def headroom(metrics: dict[str, float], constraints: Sequence[str]) -> list[str]:
    """Each constraint as 'artifact_bytes 959,123 of 1,000,000' ('... over' when broken, 'missing' without a value)."""
    out = []
    for text in constraints:
        c = Constraint.parse(text)
        value = metrics.get(c.key)
        if value is None:
            out.append(f"{c.key} missing (limit {c.op} {_number(c.limit)})")
            continue
        broken = c.violation({c.key: value}) is not None
        out.append(f"{c.key} {_number(value)} of {_number(c.limit)}" + (f" (breaks {c.op})" if broken else ""))
    return out


def crash_tail(runs: Sequence[Run], lines: int = CRASH_LINES) -> str:
    """The last lines of the first failed seed's log, from its traceback on where there is one."""
    failed = next((r for r in runs if r.status in FAILED_RUNS), None)
    if failed is None:
        return ""
    text = log_tail(failed.log_path, missing="") or failed.error
    tail = text.rstrip().splitlines()
    start = max((i for i, line in enumerate(tail) if line.startswith("Traceback (most recent call last)")), default=None)
    if start is not None and len(tail) - start <= lines * 3:
        tail = tail[start:]
    return f"seed {failed.seed} {FAILED_RUNS[failed.status]}\n" + "\n".join(tail[-lines:])


def outline(workspace: Workspace, commit: str, editable: Sequence[str], protected: Sequence[str]) -> list[FileOutline]:
    """Every editable file at the best commit: its path, size and top-level names (Python files)."""
    out = []
    for path in _git_or_empty(lambda: workspace.tracked_files(commit)) or []:
        if not matches_any(path, editable) or matches_any(path, protected):
            continue
        text = _git_or_empty(lambda: workspace.file_at(commit, path))
        names = top_level_names(text) if path.endswith(".py") else []
        out.append(FileOutline(path, len(text.encode()), len(text.splitlines()), names[:OUTLINE_NAMES],
                               max(0, len(names) - OUTLINE_NAMES)))
    return out


def top_level_names(source: str) -> list[str]:
    """A Python module's top-level functions, classes and assigned names, in order (for outlines of code)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ["(does not parse)"]
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(f"def {node.name}")
        elif isinstance(node, ast.ClassDef):
            names.append(f"class {node.name}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.6g}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n... (diff truncated)"


def _git_or_empty(read):  # noqa: ANN001, ANN202  (a commit pruned from the repo leaves the view without that part)
    try:
        return read()
    except GitFailed:
        return ""


def _lessons(store: Store, campaign_id: int, recent: int = 30) -> list[str]:
    """Every lesson a human gave (a rejected pull request), then the critic's most recent ones."""
    human = [lesson.text for lesson in store.lessons(campaign_id, 200, source="human")]
    latest = [lesson.text for lesson in store.lessons(campaign_id, recent) if lesson.text not in human]
    return human + latest
