"""Read-only views of a campaign as plain data (for --json and the TUI) and as text (for the terminal)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from hive.errors import BadInput
from hive.logs import log_tail, not_own_file
from hive.transcripts import read_transcript, render_entry
from hive.invocation import Invocation
from hive.scheduler import GpuAsk, make_inventory
from hive.store import Campaign, Store
from hive.store.home import find_campaign, lock_holder
from hive.store.models import now
from hive.store.queries import IN_FLIGHT, iso, to_dict
from hive.workspace import experiment_branch


def load(home: Path, name: str | None) -> tuple[Store, Campaign]:
    """The store and row of a campaign (a "running" one whose driver is gone shows as stopped); BadInput when absent."""
    store, camp = find_campaign(home, name)
    if camp.status == "running" and lock_holder(home / camp.name / "campaign.lock") is None:
        camp.status = "stopped"  # its driver was killed before it could say so; the next start resumes it
    return store, camp


def _elapsed(start: datetime | None, end: datetime | None = None) -> float | None:
    if start is None:
        return None
    return round(((end or now()) - start).total_seconds(), 1)


def status_data(store: Store, camp: Campaign) -> dict[str, Any]:
    """Best value, baseline, budget used, verdict counts and in-flight experiments."""
    # counts and the few rows shown, never every experiment: this stays fast with 100,000 in the store
    counts = store.verdict_counts(camp.id)
    first = store.experiment(camp.id, 1)
    baseline = first if first is not None and first.verdict == "baseline" else None
    best = store.best(camp.id)
    playbook = camp.playbook
    delta = None
    if best and baseline and best.metric_mean is not None and baseline.metric_mean is not None:
        delta = best.metric_mean - baseline.metric_mean
    return {
        "campaign": camp.name,
        "status": camp.status,
        "objective": {"metric": camp.objective_metric, "direction": camp.direction,
                      "constraints": playbook.get("objective", {}).get("constraints", [])},
        "baseline": _brief(baseline),
        "best": _brief(best),
        "best_delta_vs_baseline": delta,
        "experiments": sum(counts.values()),
        "verdicts": {verdict: n for verdict, n in counts.items() if verdict},
        "pruned": _pruned(store, camp.id),
        "in_flight": [_brief(e) for e in store.experiments(camp.id, statuses=IN_FLIGHT)],
        "budget": playbook.get("budget", {}),
        "llm": store.llm_totals(camp.id),
        "pull_requests": len(store.pull_requests(camp.id)),
        "elapsed_seconds": _elapsed(camp.started_at, camp.updated_at if camp.status != "running" else None),
        "created_at": iso(camp.created_at),
    }


def _pruned(store: Store, campaign_id: int) -> dict[str, Any]:
    """Runs stopped for being clearly behind the best, and the run-seconds that saved (the best's time, less theirs)."""
    runs = store.runs_with_status(campaign_id, "pruned")
    saved = sum(float(r.metrics.get("saved_seconds") or 0) for r in runs)
    return {"runs": len(runs), "run_seconds": round(sum(r.wall_seconds or 0 for r in runs), 3),
            "run_seconds_saved": round(saved, 3)}


def _brief(exp) -> dict[str, Any] | None:  # noqa: ANN001
    if exp is None:
        return None
    return {"number": exp.number, "kind": exp.kind, "status": exp.status, "verdict": exp.verdict,
            "hypothesis": exp.hypothesis, "metric_mean": exp.metric_mean, "metric_std": exp.metric_std,
            "n_seeds": exp.n_seeds, "p_value": exp.p_value, "commit": exp.commit}


def status_text(store: Store, camp: Campaign) -> str:
    data = status_data(store, camp)
    obj = data["objective"]
    lines = [f"campaign {data['campaign']} [{data['status']}]  objective: {obj['direction']} {obj['metric']}"]
    for label in ("baseline", "best"):
        row = data[label]
        if row and row["metric_mean"] is not None:
            lines.append(f"  {label:<9} exp-{row['number']:<4} {obj['metric']} = {row['metric_mean']:.6g}"
                         f"{_spread(row['metric_std'], row['n_seeds'])} ({row['n_seeds']} seed(s))")
    delta = data["best_delta_vs_baseline"]
    if delta:
        better = (delta < 0) == (obj["direction"] == "minimize")
        lines.append(f"  best vs baseline: {delta:+.6g} ({'better' if better else 'worse'})")
    verdicts = ", ".join(f"{k}: {v}" for k, v in sorted(data["verdicts"].items(), key=lambda kv: str(kv[0])))
    lines.append(f"  experiments: {data['experiments']} ({verdicts or 'none finished'}); "
                 f"pull requests: {data['pull_requests']}")
    if data["pruned"]["runs"]:
        pruned = data["pruned"]
        lines.append(f"  pruned: {pruned['runs']} run(s) stopped early, {pruned['run_seconds_saved']:.1f} run-seconds "
                     f"saved")
    llm = data["llm"]
    if llm["calls"]:
        lines.append(f"  llm: {llm['calls']} calls, {llm['prompt_tokens'] + llm['completion_tokens']} tokens, "
                     f"${llm['dollars']:.4f}")
    # a stopped campaign's unfinished experiments wait for the next `hive start`
    running = data["status"] == "running"
    label = "in flight" if running else "paused (resumes on `hive start`)"
    for row in data["in_flight"]:
        state = f"[{row['status']}]" if running else f"(stopped while {row['status']})"
        lines.append(f"  {label}: exp-{row['number']} {state} {_clip(row['hypothesis'], 60)}")
    return "\n".join(lines)


def _spread(std: float | None, n_seeds: int = 2) -> str:
    """' ± std', or nothing when there is no spread to speak of (one seed)."""
    return f" ± {std:.2g}" if std is not None and n_seeds > 1 else ""


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def leaderboard_data(store: Store, camp: Campaign, limit: int = 20) -> dict[str, Any]:
    """The best finished experiments by mean metric; `is_best` marks the one the best branch holds."""
    best = store.best(camp.id)
    rows = [{"rank": i + 1, "number": e.number, "verdict": e.verdict, "is_best": best is not None and
             e.number == best.number, "metric_mean": e.metric_mean, "metric_std": e.metric_std,
             "n_seeds": e.n_seeds, "p_value": e.p_value, "hypothesis": e.hypothesis, "commit": e.commit}
            for i, e in enumerate(store.leaderboard(camp.id, camp.direction, limit))]
    return {"campaign": camp.name, "metric": camp.objective_metric, "direction": camp.direction,
            "best": best.number if best else None, "rows": rows}


def leaderboard_text(camp: Campaign, board: dict[str, Any]) -> str:
    rows = board["rows"]
    if not rows:
        return f"campaign {camp.name}: no finished experiment with a metric yet"
    head = f"{'#':>3}  {'exp':>5}  {'verdict':<9} {camp.objective_metric:>14} {'std':>9} {'seeds':>5}  hypothesis"
    lines = [head]
    for r in rows:
        std = f"{r['metric_std']:.2g}" if r["metric_std"] is not None and r["n_seeds"] > 1 else "-"
        mark = "*" if r["is_best"] else " "
        lines.append(f"{r['rank']:>3}{mark} {r['number']:>5}  {r['verdict'] or '':<9} {r['metric_mean']:>14.6g} "
                     f"{std:>9} {r['n_seeds']:>5}  {_clip(r['hypothesis'], 50)}")
    legend = "* = the best branch"
    if any(r["verdict"] == "discard" for r in rows):
        legend += "; discarded rows come after every kept one: none was shown to beat the best"
    return "\n".join(lines + [legend])


def llm_spent(store: Store, campaign_id: int, number: int) -> dict[str, Any]:
    """An experiment's LLM tokens and dollars, summed from its calls."""
    llm = store.llm_totals(campaign_id, number)
    return {"tokens": int(llm["prompt_tokens"] + llm["completion_tokens"]), "dollars": llm["dollars"]}


def experiment_data(store: Store, camp: Campaign, number: int) -> dict[str, Any]:
    exp = store.experiment(camp.id, number)
    if exp is None:
        total = store.count_experiments(camp.id)
        raise BadInput(f"EXPERIMENT: no experiment {number} in campaign {camp.name} (valid: 1..{total})"
                       if total else f"EXPERIMENT: campaign {camp.name} has no experiments yet")
    data = to_dict(exp)
    data["branch"] = experiment_branch(camp.name, exp.number, exp.kind) if exp.commit else ""  # none before its commit
    data.update(llm_spent(store, camp.id, exp.number))
    data["runs"] = [{**to_dict(r), "shell_line": Invocation(r.command, r.env).shell_line() if r.command else ""}
                    for r in store.runs(exp.id)]
    data["transcripts"] = {t.role: t.path for t in store.transcripts(camp.id, exp.number)}
    data["attempts"] = [to_dict(a) for a in store.attempts(exp.id)]
    return data


def transcript_data(data: dict[str, Any], role: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The experiment's transcripts (one role's, with `role`) as lists of entries, for `hive show --transcript`."""
    paths = data.get("transcripts") or {}
    if role is not None and role not in paths:
        have = ", ".join(sorted(paths)) or "none"
        raise BadInput(f"--role: exp-{data['number']} has no {role!r} transcript (has: {have})")
    return {r: list(read_transcript(Path(p))) for r, p in sorted(paths.items()) if role in (None, r)}


def transcript_text(transcripts: dict[str, list[dict[str, Any]]]) -> str:
    """Transcripts as text: each role's messages, commands with their output, and costs, in order."""
    if not transcripts:
        return "(no transcript: this experiment had no model conversation)"
    out = []
    for role, entries in transcripts.items():
        out.append(f"===== {role} ({len(entries)} entries) =====")
        out += [render_entry(e) for e in entries]
    return "\n".join(out)


def experiment_text(data: dict[str, Any]) -> str:
    lines = [f"exp-{data['number']} [{data['status']}] verdict: {data['verdict'] or '-'}",
             f"  hypothesis: {data['hypothesis']}"]
    if data.get("rationale"):
        lines.append(f"  rationale: {data['rationale']}")
    if data.get("verdict_reason"):
        lines.append(f"  why: {data['verdict_reason']}")
    if data.get("metric_mean") is not None:
        p = f", p = {data['p_value']:.3g}" if data.get("p_value") is not None else ""
        lines.append(f"  metric: {data['metric_mean']:.6g}{_spread(data['metric_std'], data['n_seeds'])} over {data['n_seeds']} seed(s){p}")
    lines.append(f"  commit: {data['commit'][:12] or '-'} on {data['branch'] or '-'}")
    for att in data.get("attempts") or []:
        if len(data["attempts"]) > 1 or att["status"] != "running":
            what = f": {att['failure']}" if att["failure"] else ""
            lines.append(f"  attempt {att['attempt']}: {att['commit'][:12]} {att['status']}{what} ({att['summary'][:80]})")
    for run in data["runs"]:
        metrics = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in sorted(run["metrics"].items()) if not k.startswith("run."))
        wall = f"{run['wall_seconds']:.1f}s" if run["wall_seconds"] is not None else "-"
        lines.append(f"  seed {run['seed']}: {run['status']} exit={run['exit_code']} {wall} {metrics}")
        if run.get("command"):
            lines.append(f"    $ {run['shell_line']}")
        if run["status"] != "ok" and run["error"]:
            lines.append("    " + run["error"].splitlines()[0])
    return "\n".join(lines)


def read_log(path: str) -> str:
    """A seed's whole log, for `hive show --log`."""
    linked = not_own_file(path)
    return f"(log not shown: {linked}; links are never followed)" if linked else \
        log_tail(path, None, missing=f"(log {path} not found)")


def gpus_data(home: Path, name: str | None, simulate_gpus: int | None) -> dict[str, Any]:
    """Devices from the inventory (the campaign's, when named) and the campaign's running seeds that hold them."""
    running, note, scheduler, resources = [], "", {}, {}
    try:
        store, camp = find_campaign(home, name)
    except BadInput as exc:
        if name is not None:
            raise
        store = camp = None
        if "none yet" not in str(exc):  # several campaigns: say how to pick one
            note = "name a campaign to see which of its runs hold the devices"
    if camp is not None:
        playbook = camp.playbook
        scheduler = playbook.get("scheduler") or {}
        resources = (playbook.get("run") or {}).get("resources") or {}
        exps = {e.id: e.number for e in store.experiments(camp.id, statuses=IN_FLIGHT)}
        for exp_id, runs in store.runs_for(list(exps)).items():
            running += [{"campaign": camp.name, "experiment": exps[exp_id], "seed": r.seed,
                         "started_at": iso(r.started_at) if r.started_at else None,
                         "devices": [int(d) for d in r.devices.split(",") if d.strip()]}
                        for r in runs if r.status == "running"]
    if simulate_gpus:
        inventory = make_inventory("simulated", simulate_gpus)
    else:
        inventory = make_inventory(scheduler.get("inventory", "auto"), scheduler.get("simulate_gpus", 0),
                                   scheduler.get("simulated_memory_mb", 81920),
                                   cpu_threads=resources.get("cpu_threads", 1))
    # a run with a share of a GPU reserves memory on it beside others; a whole-GPU run holds it alone
    ask = GpuAsk.of(resources.get("gpus", 0), resources.get("gpu_memory_mb"))
    devices = []
    for d in inventory.devices():
        reserve = ask.reserve_mb(d.total_mb) if ask.shared else None
        leases = [{"run": f"{r['campaign']} exp-{r['experiment']}/seed-{r['seed']}", "gpu_memory_mb": reserve}
                  for r in running if d.index in r["devices"]]
        devices.append({**asdict(d), "held_by": [lease["run"] for lease in leases], "leases": leases,
                        "shared": ask.shared and bool(leases),
                        "reserved_mb": sum(lease["gpu_memory_mb"] or 0 for lease in leases)})
    if hasattr(inventory, "close"):
        inventory.close()
    return {"inventory": inventory.kind, "devices": devices, "cpu_slots": getattr(inventory, "slots", None),
            "campaign": camp.name if camp else None, "running": running, "note": note}
