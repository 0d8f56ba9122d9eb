"""Exporting a pull request: a branch in the user's repository, a patch file, or a Parameter Golf records folder."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hive.errors import BadInput, HiveError
from hive.objective import metric_value
from hive.playbook import Playbook
from hive.prs import get_pr, lineage
from hive.store import Campaign, Experiment, PullRequest, Run, Store
from hive.workspace import GIT_ENV, Workspace

FORMATS = ("branch", "patch", "param-golf")
HIVE_DIR = ".hive"  # Hive's own bookkeeping (knob values) travels in commits but never in an export
EXCLUDE = ["--", ".", f":(exclude){HIVE_DIR}"]
ARTIFACT_LIMIT = 16_000_000  # the challenge's cap on code + compressed model bytes
DATA_LIMIT = 50_000_000  # copy the template's tracked data/ into a records folder only below this size


@dataclass
class ExportResult:
    """What an export made, and what the user may run next."""

    number: int
    fmt: str
    paths: list[str] = field(default_factory=list)
    branch: str | None = None
    includes: list[int] = field(default_factory=list)  # earlier PRs squashed into this export
    depends_on: list[int] = field(default_factory=list)  # earlier PRs this export needs first (--only)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        where = f"branch {self.branch} in {self.paths[0]}" if self.branch else ", ".join(self.paths)
        lines = [f"PR #{self.number} exported as {self.fmt}: {where}"]
        if self.includes:
            lines.append("  includes the stack it builds on: " + ", ".join(f"PR #{n}" for n in self.includes))
        if self.depends_on:
            lines.append("  depends on " + ", ".join(f"PR #{n}" for n in self.depends_on) + ": apply or merge it first")
        lines += [f"  {note}" for note in self.notes]
        lines += [f"  $ {cmd}" for cmd in self.commands]
        return "\n".join(lines)


@dataclass
class _Change:
    """The commits an export spans and the PRs that come with it."""

    pr: PullRequest
    exp: Experiment
    base: str
    head: str
    includes: list[PullRequest]
    depends_on: list[PullRequest]

    def message(self) -> str:
        note = ""
        if self.includes:
            note = "\n\n## Included\n\n" + "\n".join(
                f"- PR #{p.number}: {p.title}" for p in self.includes) + f"\n- PR #{self.pr.number}: {self.pr.title}\n"
        elif self.depends_on:
            note = "\n\n## Depends on\n\n" + "\n".join(
                f"- PR #{p.number}: {p.title}" for p in self.depends_on) + "\n\nApply or merge those first.\n"
        return f"{self.pr.title}\n\n{self.pr.body.rstrip()}{note}\n"


def export(store: Store, campaign: Campaign, workspace: Workspace, number: int, fmt: str, to: Path | None = None,
           gh: bool = False, only: bool = False, author: str | None = None, github_id: str | None = None,
           track: str = "10min_16mb", name: str | None = None) -> ExportResult:
    """Export pull request `number` as a branch, a patch or a Parameter Golf records folder.

    By default the export carries the whole stack from the baseline (every PR it builds on, listed in the
    message); with `only` it carries just its own diff from its parent and names the PRs it depends on.
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
        change = _Change(pr, exp, exp.parent_commit or f"{pr.commit}^", pr.commit, [], stack[::-1])
    else:
        change = _Change(pr, exp, campaign.baseline_commit or workspace.baseline_commit(), pr.commit, stack, [])
    playbook = _playbook(campaign)
    if fmt == "branch":
        return _branch(workspace, campaign, change, playbook, to, gh)
    if gh:
        raise BadInput("--gh: only --format branch opens a GitHub pull request")
    if fmt == "patch":
        return _patch(workspace, change, to)
    return _param_golf(store, campaign, workspace, change, playbook, to, author, github_id, track, name)


def _playbook(campaign: Campaign) -> Playbook:
    pb = Playbook.model_validate_json(campaign.playbook_json)
    if campaign.playbook_path:
        pb.path = Path(campaign.playbook_path)
    return pb


def _result(change: _Change, fmt: str, **fields: Any) -> ExportResult:
    return ExportResult(number=change.pr.number, fmt=fmt, includes=[p.number for p in change.includes],
                        depends_on=[p.number for p in change.depends_on], **fields)


def _run_git(cwd: Path, *args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **(env or {})}, input=stdin,
                          capture_output=True, text=True, check=False)


def _git_out(cwd: Path, *args: str, env: dict | None = None, stdin: str | None = None) -> str:
    proc = _run_git(cwd, *args, env=env, stdin=stdin)
    if proc.returncode != 0:
        raise HiveError(f"git {args[0]} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


def _diff(workspace: Workspace, change: _Change) -> str:
    return workspace._git("diff", "--binary", "--full-index", "--no-color", "--no-ext-diff", change.base, change.head,
                          *EXCLUDE)


# -- branch --------------------------------------------------------------------------
def _source_repo(to: Path | None, playbook: Playbook) -> Path:
    if to is None:
        src = playbook.source_dir()
        if src is None or not (src / ".git").exists():
            raise BadInput(f"--to: the playbook's source {playbook.source!r} is not a local git repository; "
                           f"pass --to PATH of a clone of it")
        return src.resolve()
    to = Path(to).expanduser().resolve()
    if not to.is_dir() or _run_git(to, "rev-parse", "--git-dir").returncode != 0:
        raise BadInput(f"--to: {to} is not a git repository")
    return Path(_git_out(to, "rev-parse", "--show-toplevel").strip())


def _has_commit(repo: Path, rev: str) -> bool:
    return _run_git(repo, "cat-file", "-e", f"{rev}^{{commit}}").returncode == 0


def _identity(repo: Path) -> dict[str, str]:
    """The repository owner's git identity when configured, else Hive's."""
    if _run_git(repo, "config", "user.name").stdout.strip() and _run_git(repo, "config", "user.email").stdout.strip():
        return {}
    return dict(GIT_ENV)


def _branch(workspace: Workspace, campaign: Campaign, change: _Change, playbook: Playbook, to: Path | None,
            gh: bool) -> ExportResult:
    src = _source_repo(to, playbook)
    branch = f"hive/{campaign.name}/pr-{change.pr.number}"
    dep_branch = f"hive/{campaign.name}/pr-{change.depends_on[0].number}" if change.depends_on else None
    if dep_branch and _has_commit(src, f"refs/heads/{dep_branch}"):
        base, base_name = _git_out(src, "rev-parse", dep_branch).strip(), dep_branch  # a stacked pull request
    elif _has_commit(src, change.base):
        base, base_name = change.base, change.base[:12]
    else:
        base, base_name = _git_out(src, "rev-parse", "HEAD").strip(), "HEAD"
    patch = _diff(workspace, change)
    if not patch.strip():
        raise HiveError(f"pull request #{change.pr.number} changes nothing outside {HIVE_DIR}/")
    with tempfile.TemporaryDirectory(prefix="hive-export-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **_identity(src)}
        _git_out(src, "read-tree", base, env=env)
        applied = _run_git(src, "apply", "--cached", "--whitespace=nowarn", env=env, stdin=patch)
        if applied.returncode != 0:
            why = applied.stderr.strip().splitlines()[0] if applied.stderr.strip() else "conflicts"
            if change.depends_on:
                raise BadInput(f"--only: PR #{change.pr.number}'s own diff does not apply to {base_name} of {src} ({why}); "
                               f"it depends on PR #{change.depends_on[0].number}: export that first, or drop --only")
            raise HiveError(f"PR #{change.pr.number} does not apply to {base_name} of {src} ({why}); nothing was changed")
        tree = _git_out(src, "write-tree", env=env).strip()
        commit = _git_out(src, "commit-tree", tree, "-p", base, "-F", "-", env=env, stdin=change.message()).strip()
    current = _run_git(src, "symbolic-ref", "-q", "HEAD").stdout.strip()
    if current == f"refs/heads/{branch}":
        raise BadInput(f"--to: branch {branch} is checked out in {src}; switch to another branch first")
    existed = _has_commit(src, f"refs/heads/{branch}")
    _git_out(src, "update-ref", f"refs/heads/{branch}", commit)
    body_file = workspace.root / "exports" / f"pr-{change.pr.number}.md"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_text(change.message().split("\n\n", 1)[1])
    gh_cmd = ["gh", "pr", "create", "--head", branch, "--title", change.pr.title, "--body-file", str(body_file)]
    if dep_branch and base_name == dep_branch:
        gh_cmd[3:3] = ["--base", dep_branch]
    push = ["git", "-C", str(src), "push", "-u", "origin", branch]
    result = _result(change, "branch", paths=[str(src)], branch=branch,
                     commands=[shlex.join(push), f"cd {shlex.quote(str(src))} && {shlex.join(gh_cmd)}"],
                     notes=[f"one commit {commit[:12]} on {base_name}" + (" (replaced the earlier export)" if existed else "")])
    if gh:
        if shutil.which("gh") is None:
            raise BadInput("--gh: the gh command is not installed; run the printed commands yourself")
        for cmd in (push, gh_cmd):
            proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise HiveError(f"{shlex.join(cmd[:3])} failed: {proc.stderr.strip()[-300:]}")
            result.notes.append(proc.stdout.strip())
    return result


# -- patch ---------------------------------------------------------------------------
def _patch(workspace: Workspace, change: _Change, to: Path | None) -> ExportResult:
    name = f"hive-pr-{change.pr.number}.patch"
    target = Path(to).expanduser() if to is not None else Path.cwd()
    path = target if target.suffix == ".patch" else target / name
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = workspace._git("rev-parse", f"{change.head}^{{tree}}").strip()
    # an unreferenced squashed commit in the campaign repo: format-patch writes it out, nothing points at it
    squashed = subprocess.run(["git", "commit-tree", tree, "-p", change.base, "-F", "-"], cwd=workspace.repo_dir,
                              env={**os.environ, **GIT_ENV}, input=change.message(), capture_output=True, text=True,
                              check=True).stdout.strip()
    text = workspace._git("format-patch", "--stdout", "--binary", "--full-index", "-1", squashed, *EXCLUDE)
    if "\ndiff --git " not in text:
        raise HiveError(f"pull request #{change.pr.number} changes nothing outside {HIVE_DIR}/")
    path.write_text(text)
    return _result(change, "patch", paths=[str(path)],
                   commands=[f"git am {shlex.quote(str(path))}   # in a clone of the source"])


# -- Parameter Golf records folder ---------------------------------------------------------
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
    proc = subprocess.run(["git", "config", "--get", key], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None


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
    tracked = set(workspace._git("ls-tree", "-r", "--name-only", commit).splitlines())
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
        sizes = workspace._git("ls-tree", "-r", "-l", commit, "data").splitlines()
        total = sum(int(line.split()[3]) for line in sizes if line.split()[3].isdigit())
        if total <= DATA_LIMIT:
            wanted += data
    return wanted


def _param_golf(store: Store, campaign: Campaign, workspace: Workspace, change: _Change, playbook: Playbook,
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
        "compliance": {"artifact_limit_bytes": ARTIFACT_LIMIT,
                       "artifact_within_limit": bool(sizes) and max(sizes) <= ARTIFACT_LIMIT,
                       "train_seconds_max": train_max, "scored_by_pristine_harness": True,
                       "p_value_vs_previous_best": exp.p_value, "seeds": len(runs)},
        "hive": {"campaign": campaign.name, "experiment": exp.number, "pull_request": pr.number,
                 "commit": change.head, "includes_prs": [p.number for p in change.includes]},
    }
    (folder / "submission.json").write_text(json.dumps(submission, indent=2) + "\n")
    (folder / "train_gpt.py").write_text(code)
    support = _support_files(workspace, change.head)
    if support:
        workspace._extract(change.head, folder, support)
    logs = []
    for run in runs:
        if run.log_path and Path(run.log_path).is_file():
            shutil.copyfile(run.log_path, folder / f"train_seed{run.seed}.log")
            logs.append(run.seed)
    (folder / "README.md").write_text(_readme(submission, exp, change, playbook, support, logs))
    notes = [f"seeds without a log: {', '.join(str(r.seed) for r in runs if r.seed not in logs)}"] \
        if len(logs) < len(runs) else []
    return _result(change, "param-golf", paths=[str(folder)], notes=notes,
                   commands=[f"cd {shlex.quote(str(folder))} && python train_gpt.py"])


def _f(value: Any, digits: int = 5) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _readme(sub: dict[str, Any], exp: Experiment, change: _Change, playbook: Playbook, support: list[str],
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
