"""The `hive` command: parses arguments, calls the library, prints. Exit 0 ok, 1 runtime failure, 2 bad input."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import typer

from hive import __version__, prs, views
from hive.campaign import preflight, restart_campaign, stop_campaign, validate_warnings
from hive.errors import BadInput, HiveError
from hive.export import export, push
from hive.export.results import results
from hive.playbook import NAME_RE, json_schema, load_playbook
from hive.store.home import home_dir
from hive.workspace import Workspace

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hive: a self-improving experiment runner. Agents propose, code, run and score changes; "
                       "you review the wins as pull requests.")
playbook_app = typer.Typer(no_args_is_help=True, help="Check playbooks and print their schema.")
app.add_typer(playbook_app, name="playbook")
pr_app = typer.Typer(no_args_is_help=True, help="Review kept experiments as pull requests: list, show, approve, "
                                                "reject, export.")
app.add_typer(pr_app, name="pr")
export_app = typer.Typer(no_args_is_help=True, help="Export a campaign's results as a table.")
app.add_typer(export_app, name="export")

WorkspacesOpt = typer.Option(None, "--workspaces", help="where campaigns live (default: $HIVE_HOME or ./workspaces)")
JsonOpt = typer.Option(False, "--json", help="print JSON instead of a table")
OverrideOpt = typer.Option(None, "-c", "--config", help="override a playbook field: key.path=value (repeatable)")
CampaignOpt = typer.Option(None, "--campaign", help="campaign name (the same as giving it first)")


def _one_campaign(positional: Optional[str], option: Optional[str]) -> Optional[str]:
    """The campaign a command names, first or with --campaign (both: they must agree)."""
    if positional and option and positional != option:
        raise BadInput(f"--campaign: {option!r} and CAMPAIGN {positional!r} name two campaigns; give one")
    return positional or option


def _version(value: bool) -> None:
    if value:
        print(f"hive {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Hive: a self-improving experiment runner."""


def _emit(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


@playbook_app.command("validate")
def playbook_validate(file: Path = typer.Argument(..., help="playbook YAML"),
                      config: Optional[list[str]] = OverrideOpt, as_json: bool = JsonOpt) -> None:
    """Check a playbook: schema, overrides, its source folder, knob bindings, the models and GPUs it needs."""
    try:
        pb = load_playbook(file, config or [])
        preflight(pb, here=False)  # a playbook may be meant for GPUs this machine does not have
    except BadInput as exc:
        if as_json:
            print(json.dumps({"file": str(file), "ok": False, "error": str(exc)}, indent=2))
        raise
    warnings = validate_warnings(pb)
    summary = {"file": str(file), "name": pb.name, "ok": True, "strategist": pb.strategist, "knobs": len(pb.knobs),
               "executor": pb.executor.kind, "metric": pb.objective.metric, "direction": pb.objective.direction,
               "warnings": warnings}
    for warning in warnings if not as_json else []:
        print(f"warning: {warning}", file=sys.stderr)
    _emit(summary, as_json, f"{file}: ok ({pb.name}: {pb.objective.direction} {pb.objective.metric}, "
                            f"{len(pb.knobs)} knob(s), strategist {pb.strategist}, executor {pb.executor.kind})")


@playbook_app.command("schema")
def playbook_schema() -> None:
    """Print the JSON Schema of a playbook (point your editor's YAML plugin at it)."""
    print(json.dumps(json_schema(), indent=2))


@app.command()
def start(playbook: Path = typer.Argument(..., help="playbook YAML, e.g. playbooks/param_golf.yaml"),
          campaign: Optional[str] = typer.Option(None, "--campaign", help="campaign name (default: the playbook's name)"),
          max_experiments: Optional[int] = typer.Option(None, "--max-experiments", min=1,
                                                        help="stop after this many experiments (baseline included)"),
          headless: bool = typer.Option(False, "--headless", help="print one line per event instead of the TUI"),
          simulate_gpus: Optional[int] = typer.Option(None, "--simulate-gpus", min=1,
                                                      help="schedule on N simulated GPUs (tests, demos, benchmarks)"),
          restart: bool = typer.Option(False, "--restart", help="start the campaign over: its old folder is moved to "
                                       "<workspaces>/.restarted/<name>-<time>/ (nothing is deleted)"),
          accept_changes: bool = typer.Option(False, "--accept-changes",
                                              help="resume even though the playbook changed what runs measure"),
          config: Optional[list[str]] = OverrideOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Run a campaign (creates it, or resumes it where it stopped)."""
    overrides = list(config or [])
    if max_experiments is not None:
        overrides.append(f"budget.max_experiments={max_experiments}")
    if simulate_gpus is not None:
        overrides += ["scheduler.inventory=simulated", f"scheduler.simulate_gpus={simulate_gpus}"]
    pb = load_playbook(playbook, overrides)
    home = home_dir(workspaces)
    if campaign is not None and not _valid_name(campaign):
        raise BadInput(f"--campaign: {campaign!r} is not a valid name (letters, digits, . _ -)")
    if restart:
        moved = restart_campaign(home, campaign or pb.name)
        print(f"restart: {moved}" if moved else f"restart: no campaign {campaign or pb.name!r} to move aside",
              file=sys.stderr)
    if headless or not sys.stdout.isatty():
        from hive.driver import start as start_campaign  # seconds to import (langgraph, optuna, scipy)

        name = start_campaign(pb, home, campaign, echo=_echo_stderr, accept_changes=accept_changes).name
    else:
        from tui.app import run_campaign  # textual costs a second: only the commands that draw pay it

        name = run_campaign(pb, home, campaign, accept_changes)
    print(views.status_text(*views.load(home, name)))


def _echo_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _valid_name(name: str) -> bool:
    return re.match(NAME_RE, name) is not None


@app.command()
def status(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
           as_json: bool = JsonOpt, campaign_opt: Optional[str] = CampaignOpt,
           workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Show a campaign's state: best, budget used, experiments by verdict, what is in flight."""
    campaign = _one_campaign(campaign, campaign_opt)
    store, camp = views.load(home_dir(workspaces), campaign)
    _emit(views.status_data(store, camp), as_json, views.status_text(store, camp))


@app.command()
def leaderboard(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
                limit: int = typer.Option(20, "--limit", min=1), as_json: bool = JsonOpt,
                campaign_opt: Optional[str] = CampaignOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """The best experiments by the objective's metric (mean over seeds)."""
    campaign = _one_campaign(campaign, campaign_opt)
    store, camp = views.load(home_dir(workspaces), campaign)
    board = views.leaderboard_data(store, camp, limit)
    _emit(board, as_json, views.leaderboard_text(camp, board))


@app.command()
def show(experiment: str = typer.Argument(..., help="experiment number (7 or exp-7)"),
         campaign: Optional[str] = typer.Option(None, "--campaign", help="campaign name (default: the only one)"),
         diff: bool = typer.Option(False, "--diff", help="print the diff from its parent"),
         log: bool = typer.Option(False, "--log", help="print the log of each seed"),
         transcript: bool = typer.Option(False, "--transcript", help="print what the agents said and ran"),
         role: Optional[str] = typer.Option(None, "--role", help="with --transcript: only this role's (e.g. coder)"),
         as_json: bool = JsonOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """One experiment: hypothesis, verdict and why, per-seed metrics, and optionally its diff, logs and transcripts."""
    number = experiment.removeprefix("exp-")
    if not number.isdigit():
        raise BadInput(f"EXPERIMENT: {experiment!r} is not an experiment number (e.g. 7 or exp-7)")
    store, camp = views.load(home_dir(workspaces), campaign)
    data = views.experiment_data(store, camp, int(number))
    if role is not None and not transcript:
        raise BadInput("--role: only with --transcript")
    shown = views.transcript_data(data, role) if transcript else None
    if as_json:
        if shown is not None:
            data["transcript"] = shown
        if log:
            for run in data["runs"]:
                run["log"] = views.read_log(run["log_path"])
        _emit(data, True, "")
        return
    print(views.experiment_text(data))
    if diff:
        print(data["diff"] or "(no diff)")
    if log:
        for run in data["runs"]:
            print(f"==> seed {run['seed']}: {run['log_path']} <==")
            print(views.read_log(run["log_path"]))
    if shown is not None:
        print(views.transcript_text(shown))


@app.command()
def stop(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
         wait: float = typer.Option(120.0, "--wait", min=0, help="seconds to wait for it to finish stopping"),
         campaign_opt: Optional[str] = CampaignOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Stop a running campaign cleanly from another terminal (like Ctrl-C: runs cancelled, records kept)."""
    campaign = _one_campaign(campaign, campaign_opt)
    def tick() -> None:
        print(".", end="", file=sys.stderr, flush=True)

    name, pid = stop_campaign(home_dir(workspaces), campaign, wait, tick)
    if pid is None:
        print(f"campaign {name} is not running")
    else:
        print(f"\nstopped campaign {name} (pid {pid}); `hive start` resumes it", file=sys.stderr)


@app.command("tui")
def tui_command(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
                campaign_opt: Optional[str] = CampaignOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Watch a running or finished campaign live, open its experiments, review its pull requests."""
    campaign = _one_campaign(campaign, campaign_opt)
    from tui.app import HiveApp  # textual costs a second: only the commands that draw pay it

    home = home_dir(workspaces)
    _, camp = views.load(home, campaign)
    HiveApp(home, camp.name).run()


@app.command()
def gpus(campaign: Optional[str] = typer.Argument(None, help="campaign whose running seeds hold devices (default: the only one)"),
         simulate_gpus: Optional[int] = typer.Option(None, "--simulate-gpus", min=1, help="show N simulated GPUs"),
         as_json: bool = JsonOpt, campaign_opt: Optional[str] = CampaignOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """The machine's GPUs (or CPU slots): memory, utilisation, and which runs of a campaign hold them."""
    campaign = _one_campaign(campaign, campaign_opt)
    data = views.gpus_data(home_dir(workspaces), campaign, simulate_gpus)
    lines = []
    if data["devices"]:
        lines.append(f"{'GPU':<4} {'NAME':<24} {'FREE/TOTAL MB':>15} {'UTIL':>5}  HELD BY")
        for d in data["devices"]:
            held = ", ".join(d["held_by"]) or "-"
            if d["shared"]:
                held += f" (sharing it, {d['reserved_mb']} MB reserved)"
            lines.append(f"{d['index']:<4} {d['name'][:24]:<24} {d['free_mb']:>7}/{d['total_mb']:<7} "
                         f"{d['utilisation']:>4}%  {held}")
    else:
        lines.append(f"no GPU: {data['cpu_slots']} CPU slots")
        lines += [f"  {r['campaign']} exp-{r['experiment']}/seed-{r['seed']} running" for r in data["running"]]
    if data["note"]:
        lines.append(data["note"])
    _emit(data, as_json, "\n".join(lines))


PrCampaignOpt = typer.Option(None, "--campaign", help="campaign name (default: the only one)")


def _pr_campaign(workspaces: Optional[Path], campaign: Optional[str]):  # noqa: ANN202
    home = home_dir(workspaces)
    store, camp = views.load(home, campaign)
    return store, camp, Workspace(home / camp.name, camp.name)


@pr_app.command("list")
def pr_list(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
            status: Optional[str] = typer.Option(None, "--status", help="only open, approved or rejected ones"),
            as_json: bool = JsonOpt, campaign_opt: Optional[str] = CampaignOpt,
           workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """The campaign's pull requests, one per kept experiment."""
    campaign = _one_campaign(campaign, campaign_opt)
    store, camp, _ = _pr_campaign(workspaces, campaign)
    rows = prs.list_prs(store, camp.id, status)
    text = "\n".join([f"{'#':>3}  {'status':<9} {'exp':>5} {'on':>4}  title"] +
                     [f"{p.number:>3}  {p.status:<9} {p.experiment_number:>5} {p.parent_pr or '-':>4}  {p.title}"
                      for p in rows]) if rows else f"campaign {camp.name}: no pull requests" + (f" {status}" if status else "")
    _emit([{k: v for k, v in prs.pr_row(p).items() if k not in ("body", "diff")} for p in rows], as_json, text)


@pr_app.command("show")
def pr_show(number: int = typer.Argument(..., help="pull request number"), campaign: Optional[str] = PrCampaignOpt,
            diff: bool = typer.Option(False, "--diff", help="print the diff from its parent"),
            as_json: bool = JsonOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """One pull request: title, status, evidence body, lineage, and optionally its diff."""
    store, camp, _ = _pr_campaign(workspaces, campaign)
    pr = prs.get_pr(store, camp.id, number)
    data = prs.pr_data(store, camp.id, pr)
    if not diff:
        data.pop("diff", None)
    decided = f" ({pr.reason})" if pr.reason else ""
    text = f"PR #{pr.number} [{pr.status}{decided}] {pr.title}\n\n{pr.body}"
    _emit(data, as_json, text + (f"\n{pr.diff or '(no diff)'}" if diff else ""))


@pr_app.command("approve")
def pr_approve(number: int = typer.Argument(..., help="pull request number"), campaign: Optional[str] = PrCampaignOpt,
               workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Merge the pull request into the campaign's accepted branch (hive/<campaign>/accepted)."""
    store, camp, ws = _pr_campaign(workspaces, campaign)
    before = {p.number for p in prs.list_prs(store, camp.id, "open")}
    prs.approve(store, camp, ws, number)
    print(f"PR #{number} approved: merged into {prs.accepted_branch(camp)} of {ws.repo_dir}")
    brought = sorted(before - {p.number for p in prs.list_prs(store, camp.id, "open")} - {number})
    if brought:
        print("  it builds on " + ", ".join(f"PR #{n}" for n in brought) + ", approved along with it")


@pr_app.command("reject")
def pr_reject(number: int = typer.Argument(..., help="pull request number"),
              reason: Optional[str] = typer.Option(None, "--reason", help="why; the proposer reads it as a lesson"),
              campaign: Optional[str] = PrCampaignOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Reject the pull request; the reason becomes a lesson for the proposer (the best branch stays)."""
    store, camp, _ = _pr_campaign(workspaces, campaign)
    prs.reject(store, camp, number, reason)
    print(f"PR #{number} rejected; the proposer will see: {reason}")


@pr_app.command("export")
def pr_export(number: int = typer.Argument(..., help="pull request number"),
              fmt: Optional[str] = typer.Option(None, "--format", help="branch, patch or param-golf"),
              to: Optional[Path] = typer.Option(None, "--to", help="branch: your repository (default: the playbook's "
                                                "source); patch: a folder or .patch file; param-golf: where records/ goes"),
              only: bool = typer.Option(False, "--only", help="just this PR's own diff from its parent, not its stack"),
              gh: bool = typer.Option(False, "--gh", help="branch: push and run `gh pr create`"),
              knobs_to: Optional[str] = typer.Option(None, "--knobs-to", help="branch, patch: write the flag and "
                                                     "environment knob values into this script of the change"),
              author: Optional[str] = typer.Option(None, "--author", help="param-golf: author (default: git user.name)"),
              github_id: Optional[str] = typer.Option(None, "--github-id", help="param-golf: GitHub id"),
              track: str = typer.Option("10min_16mb", "--track", help="param-golf: records/track_<TRACK>/"),
              name: Optional[str] = typer.Option(None, "--name", help="param-golf: folder name (default: from the hypothesis)"),
              campaign: Optional[str] = PrCampaignOpt, as_json: bool = JsonOpt,
              workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Export a pull request as a branch in your repository, a patch file, or a Parameter Golf records folder."""
    store, camp, ws = _pr_campaign(workspaces, campaign)
    result = export(store, camp, ws, number, fmt, to, gh, only=only, author=author, github_id=github_id,
                    track=track, name=name, knobs_to=knobs_to)
    _emit(result.to_dict(), as_json, result.text())


@pr_app.command("push")
def pr_push(number: int = typer.Argument(..., help="pull request number"),
            remote: Optional[str] = typer.Option(None, "--remote", help="a remote of your repository, or a URL "
                                                 "(default: origin)"),
            branch: Optional[str] = typer.Option(None, "--branch", help="the branch name on the remote "
                                                 "(default: hive/<campaign>/pr-N)"),
            open_pr: bool = typer.Option(False, "--open", help="open the GitHub pull request with gh (else print "
                                         "the gh pr create command)"),
            to: Optional[Path] = typer.Option(None, "--to", help="your repository (default: the playbook's source)"),
            only: bool = typer.Option(False, "--only", help="just this PR's own diff from its parent, not its stack"),
            knobs_to: Optional[str] = typer.Option(None, "--knobs-to", help="write the flag and environment knob "
                                                   "values into this script of the change"),
            campaign: Optional[str] = PrCampaignOpt, as_json: bool = JsonOpt,
            workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Push a pull request as one commit (the evidence its message) on a branch of a git remote; --open opens it."""
    store, camp, ws = _pr_campaign(workspaces, campaign)
    result = push(store, camp, ws, number, to, remote, branch, open_pr, only=only, knobs_to=knobs_to)
    _emit(result.to_dict(), as_json, result.text())


@export_app.command("results")
def export_results(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
                   fmt: str = typer.Option("tsv", "--format", help="tsv (autoresearch's results.tsv: commit, metric, "
                                           "memory_gb, status, description), csv (one row per seed, every metric) "
                                           "or json"),
                   to: Optional[Path] = typer.Option(None, "--to", help="file to write (default: standard output)"),
                   as_json: bool = typer.Option(False, "--json", help="the same as --format json"),
                   campaign_opt: Optional[str] = CampaignOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """The campaign's finished experiments as a table autoresearch users already analyse, or CSV / JSON."""
    store, camp = views.load(home_dir(workspaces), _one_campaign(campaign, campaign_opt))
    text = results(store, camp, "json" if as_json else fmt)
    if to is None:
        sys.stdout.write(text)
        return
    to = to.expanduser()
    if to.is_dir():
        raise BadInput(f"--to: {to} is a folder; name a file, e.g. {to / 'results.tsv'}")
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_text(text)
    print(f"wrote the results of campaign {camp.name} to {to}", file=sys.stderr)


@app.command()
def report(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
           to: Path = typer.Option(Path("report"), "--to", help="folder to write index.html into"),
           campaign_opt: Optional[str] = CampaignOpt, as_json: bool = JsonOpt,
           workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """A self-contained HTML page: the metric over time, the best's seeds against the baseline's, verdicts, kept diffs."""
    from hive.export.report import write_report  # matplotlib.pyplot took 3.9 s to import (-X importtime, loaded machine): only hive report pays it

    store, camp = views.load(home_dir(workspaces), _one_campaign(campaign, campaign_opt))
    to = to.expanduser()
    if to.exists() and not to.is_dir():
        raise BadInput(f"--to: {to} is a file; name a folder (index.html is written inside it)")
    print(f"drawing the report of {camp.name}...", file=sys.stderr, flush=True)
    data = write_report(store, camp, to)
    _emit(data, as_json, f"wrote {data['path']} ({data['experiments']} experiments, {len(data['kept'])} kept, "
                         f"{data['bytes'] // 1024} KiB, self-contained)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map errors to exit codes (no traceback for a user mistake)."""
    try:
        app(args=argv, standalone_mode=False)
        return 0
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # typer's own click: usage errors (exit 2) and the like
        exc.show()
        return getattr(exc, "exit_code", 2)
    except HiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001  (a bug of Hive's: the user gets one line, the traceback a file)
        path = Path(tempfile.gettempdir()) / f"hive-error-{os.getpid()}.log"
        path.write_text("".join(traceback.format_exception(exc)))
        print(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(traceback in {path}; please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
