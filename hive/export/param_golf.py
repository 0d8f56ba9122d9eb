"""A pull request as a Parameter Golf records folder: submission.json, README, train_gpt.py, its logs."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import platform
import re
import shlex
import shutil
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hive.errors import BadInput, HiveError
from hive.export.common import Change, ExportResult, result
from hive.objective import Constraint, metric_value
from hive.playbook import Playbook
from hive.store import Campaign, Experiment, Run, Store
from hive.workspace import Workspace, run_git

ARTIFACT_KEYS = ("artifact_bytes", "bytes_total")  # the metric a playbook caps code + compressed model bytes with
DATA_LIMIT = 50_000_000  # copy the template's tracked data/ into a records folder only below this size


def _camel(text: str, limit: int = 40) -> str:
    out = ""
    for word in re.findall(r"[A-Za-z0-9]+", text):
        if not (word.isupper() and len(word) <= 4):  # acronyms (MLP, QK) stay, SHOUTED_NAMES soften
            word = word.capitalize() if word.isupper() or word.islower() else word[0].upper() + word[1:]
        if out and len(out) + len(word) > limit:
            break
        out += word
    return out[:limit] or "Submission"


def _metric(run: Run, *keys: str) -> float | None:
    metrics = run.metrics
    for key in keys:
        for candidate in (key, f"run.{key}"):
            value = metric_value(metrics, candidate)
            if value is not None:
                return value
    return None


def _seed_result(run: Run) -> dict[str, Any]:
    steps = _metric(run, "steps")
    step_avg = _metric(run, "step_avg_ms")
    train_s = _metric(run, "train_seconds", "train_time_s")
    if step_avg is None and train_s is not None and steps:
        step_avg = round(1000 * train_s / steps, 3)
    artifact = _metric(run, "artifact_bytes", "bytes_total")
    loss, bpb = _metric(run, "val_loss"), _metric(run, "val_bpb")
    return {"val_loss": round(loss, 8) if loss is not None else None, "val_bpb": round(bpb, 8) if bpb is not None else None,
            "artifact_bytes": int(artifact) if artifact is not None else None,
            "steps": int(steps) if steps is not None else None, "step_avg_ms": step_avg,
            "eval_time_s": _metric(run, "eval_time_s", "eval_seconds"), "train_seconds": train_s}


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def _git_config(key: str) -> str | None:
    return run_git(Path.cwd(), "config", "--get", key).stdout.strip() or None


def _hardware(playbook: Playbook) -> str:
    res = playbook.run.resources
    if res.gpus:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, check=False) if shutil.which("nvidia-smi") else None
        names = proc.stdout.strip().splitlines() if proc and proc.returncode == 0 else []
        return f"{res.gpus}x{names[0] if names else 'GPU'}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {cpu}, {res.cpu_threads} thread(s) per run"


def _support_files(workspace: Workspace, commit: str, entry: str = "train_gpt.py") -> list[str]:
    """Sibling modules the entry script imports (transitively), and the tracked data/ they read, if any."""
    tracked = set(workspace.tracked_files(commit))
    wanted, todo = [], [entry]
    while todo:
        path = todo.pop()
        try:
            tree = ast.parse(workspace.file_at(commit, path))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for mod in names:
                candidate = mod.split(".")[0] + ".py"
                if candidate in tracked and candidate != entry and candidate not in wanted:
                    wanted.append(candidate)
                    todo.append(candidate)
    data = sorted(p for p in tracked if p.startswith("data/"))
    if wanted and data:
        if workspace.tracked_bytes(commit, "data") <= DATA_LIMIT:
            wanted += data
    return wanted


def artifact_limit(playbook: Playbook) -> float | None:
    """The artifact cap the playbook's objective sets (`artifact_bytes <= N`), or None when it sets none."""
    for text in playbook.objective.constraints:
        c = Constraint.parse(text)
        if c.key in ARTIFACT_KEYS and c.op in ("<=", "<"):
            return c.limit
    return None


def export_param_golf(store: Store, campaign: Campaign, workspace: Workspace, change: Change, playbook: Playbook,
                to: Path | None, author: str | None, github_id: str | None, track: str,
                name: str | None) -> ExportResult:
    pr, exp = change.pr, change.exp
    try:
        code = workspace.file_at(change.head, "train_gpt.py")
    except Exception:  # noqa: BLE001  (git show fails when the file is absent)
        raise BadInput("--format: param-golf needs a train_gpt.py in the campaign repository; this one has none") from None
    if not re.fullmatch(r"[A-Za-z0-9_]+", track):
        raise BadInput(f"--track: {track!r} may hold only letters, digits and _")
    runs = [r for r in store.runs(exp.id) if r.status == "ok"]
    if not runs:
        raise HiveError(f"pull request #{pr.number} has no successful seed to report")
    folder_name = _camel(name or exp.hypothesis)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    folder = (Path(to).expanduser() if to else Path.cwd()).resolve() / "records" / f"track_{track}" / f"{day}_{folder_name}"
    folder.mkdir(parents=True, exist_ok=True)

    results = {str(r.seed): _seed_result(r) for r in runs}
    loss_mean, loss_std = _stats([s["val_loss"] for s in results.values()])
    bpb_mean, bpb_std = _stats([s["val_bpb"] for s in results.values()])
    sizes = [s["artifact_bytes"] for s in results.values() if s["artifact_bytes"] is not None]
    baseline = store.experiment(campaign.id, 1)
    base_runs = [r for r in store.runs(baseline.id) if r.status == "ok"] if baseline else []
    ref_bpb, _ = _stats([_metric(r, "val_bpb") for r in base_runs])
    ref_loss, _ = _stats([_metric(r, "val_loss") for r in base_runs])
    code_bytes = max([int(v) for r in runs if (v := _metric(r, "code_bytes")) is not None] or [len(code.encode())])
    train_max = max([s["train_seconds"] for s in results.values() if s["train_seconds"] is not None] or [0]) or None
    techniques = [p.title.split(": ", 1)[-1] for p in change.includes] + [exp.hypothesis]
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None

    limit = artifact_limit(playbook)

    def rnd(value: float | None, digits: int = 8) -> float | None:
        return round(value, digits) if value is not None else None

    delta_bpb = rnd(bpb_mean - ref_bpb, 6) if bpb_mean is not None and ref_bpb is not None else None
    delta_nats = rnd(loss_mean - ref_loss, 6) if loss_mean is not None and ref_loss is not None else None
    blurb = f"{exp.hypothesis.strip()}. {len(runs)}-seed mean val_bpb {_f(bpb_mean)}" + (
        f" ({delta_bpb:+.5f} bpb / {delta_nats:+.5f} nats vs the reference {ref_bpb:.5f})" if delta_bpb is not None and delta_nats is not None else "")
    submission = {
        "author": author or _git_config("user.name") or "unknown",
        "github_id": github_id or _git_config("github.user") or "unknown",
        "name": exp.hypothesis.splitlines()[0][:100] if exp.hypothesis else folder_name,
        "blurb": blurb + ".", "date": day, "track": track,
        "val_loss": rnd(loss_mean), "val_bpb": rnd(bpb_mean), "val_loss_std": rnd(loss_std, 6),
        "val_bpb_std": rnd(bpb_std, 6), "seeds": [r.seed for r in runs], "seed_results": results,
        "comparison_baseline_bpb": rnd(ref_bpb, 6), "delta_vs_leaderboard_bpb": delta_bpb,
        "delta_vs_leaderboard_nats": delta_nats,
        "artifact_bytes_mean": round(statistics.fmean(sizes)) if sizes else None,
        "artifact_bytes_max": max(sizes) if sizes else None,
        "bytes_total": max(sizes) if sizes else None, "bytes_code": code_bytes,
        "hardware": _hardware(playbook), "pytorch_version": torch_version,
        "technique_summary": " + ".join(techniques),
        "compliance": {"artifact_limit_bytes": int(limit) if limit is not None else None,
                       "artifact_within_limit": bool(sizes) and limit is not None and max(sizes) <= limit,
                       "train_seconds_max": train_max, "scored_by_pristine_harness": True,
                       "p_value_vs_previous_best": exp.p_value, "seeds": len(runs)},
        "hive": {"campaign": campaign.name, "experiment": exp.number, "pull_request": pr.number,
                 "commit": change.head, "includes_prs": [p.number for p in change.includes]},
    }
    (folder / "submission.json").write_text(json.dumps(submission, indent=2) + "\n")
    (folder / "train_gpt.py").write_text(code)
    support = _support_files(workspace, change.head)
    if support:
        workspace.extract(change.head, folder, support)
    logs = []
    for run in runs:
        if run.log_path and Path(run.log_path).is_file():
            shutil.copyfile(run.log_path, folder / f"train_seed{run.seed}.log")
            logs.append(run.seed)
    (folder / "README.md").write_text(_readme(submission, exp, change, playbook, support, logs))
    notes = [f"seeds without a log: {', '.join(str(r.seed) for r in runs if r.seed not in logs)}"] \
        if len(logs) < len(runs) else []
    return result(change, "param-golf", paths=[str(folder)], notes=notes,
                   commands=[f"cd {shlex.quote(str(folder))} && python train_gpt.py"])


def _f(value: Any, digits: int = 5) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _readme(sub: dict[str, Any], exp: Experiment, change: Change, playbook: Playbook, support: list[str],
            logs: list[int]) -> str:
    lines = [f"# {sub['name']}\n", (f"**val_bpb {_f(sub['val_bpb'])}** (± {_f(sub['val_bpb_std'])}, "
                                     f"{len(sub['seeds'])} seeds); artifact at most {sub['artifact_bytes_max']} bytes.\n"),
             "## What and why\n", exp.hypothesis.strip() + "\n"]
    if exp.rationale:
        lines.append(exp.rationale.strip() + "\n")
    if change.includes:
        lines.append("This record stacks the earlier wins it builds on:\n")
        lines += [f"- PR #{p.number}: {p.title}" for p in change.includes] + [""]
    lines += ["## Results\n", "| seed | val_loss | val_bpb | artifact bytes | steps | step avg ms | eval s |",
              "|---|---|---|---|---|---|---|"]
    for seed, r in sub["seed_results"].items():
        lines.append(f"| {seed} | {_f(r['val_loss'])} | {_f(r['val_bpb'])} | {_f(r['artifact_bytes'])} | "
                     f"{_f(r['steps'])} | {_f(r['step_avg_ms'], 1)} | {_f(r['eval_time_s'], 1)} |")
    lines.append(f"| mean | {_f(sub['val_loss'])} | {_f(sub['val_bpb'])} | {_f(sub['artifact_bytes_mean'])} | | | |\n")
    if sub["delta_vs_leaderboard_bpb"] is not None:
        lines.append(f"Against the reference run ({_f(sub['comparison_baseline_bpb'])} bpb): "
                     f"{sub['delta_vs_leaderboard_bpb']:+.5f} bpb, {_f(sub['delta_vs_leaderboard_nats'])} nats. "
                     f"One-sided Welch test against the previous best: p = {_f(exp.p_value, 4)}.\n")
    lines += ["## Run it\n", "From inside this folder:\n", "```", f"SEED={sub['seeds'][0]} {playbook.run.command}", "```\n"]
    if support:
        lines.append(f"`{'`, `'.join(s for s in support if not s.startswith('data/'))}` and `data/` are the task's "
                     f"unchanged data preparation, copied so that `train_gpt.py` runs from this folder.\n")
    lines.append(f"Training logs: {', '.join(f'`train_seed{s}.log`' for s in logs) or 'none recorded'}. "
                 f"Hardware: {sub['hardware']}.\n")
    lines.append(f"Found by Hive (campaign `{sub['hive']['campaign']}`, experiment {exp.number}, "
                 f"pull request #{change.pr.number}, commit `{change.head[:12]}`).\n")
    return "\n".join(lines)
