"""The `hive` command: parses arguments, calls the library, prints. Exit 0 ok, 1 runtime failure, 2 bad input."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import click
import typer

from hive import views
from hive.errors import BadInput, HiveError
from hive.playbook import json_schema, load_playbook

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hive: a self-improving experiment runner. Agents propose, code, run and score changes; "
                       "you review the wins as pull requests.")
playbook_app = typer.Typer(no_args_is_help=True, help="Check playbooks and print their schema.")
app.add_typer(playbook_app, name="playbook")

WorkspacesOpt = typer.Option(None, "--workspaces", help="where campaigns live (default: $HIVE_HOME or ./workspaces)")
JsonOpt = typer.Option(False, "--json", help="print JSON instead of a table")
OverrideOpt = typer.Option(None, "-c", "--config", help="override a playbook field: key.path=value (repeatable)")


def _version(value: bool) -> None:
    if value:
        from hive import __version__
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
    """Check a playbook: schema, overrides, its source folder and knob bindings."""
    pb = load_playbook(file, config or [])
    summary = {"file": str(file), "name": pb.name, "ok": True, "strategist": pb.strategist, "knobs": len(pb.knobs),
               "executor": pb.executor.kind, "metric": pb.objective.metric, "direction": pb.objective.direction}
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
          config: Optional[list[str]] = OverrideOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Run a campaign (creates it, or resumes it where it stopped)."""
    from hive import campaign as campaign_mod

    overrides = list(config or [])
    if max_experiments is not None:
        overrides.append(f"budget.max_experiments={max_experiments}")
    pb = load_playbook(playbook, overrides)
    home = campaign_mod.home_dir(workspaces)
    if campaign is not None and not _valid_name(campaign):
        raise BadInput(f"--campaign: {campaign!r} is not a valid name (letters, digits, . _ -)")
    from hive.driver import start as start_campaign

    ctx = start_campaign(pb, home, campaign, echo=campaign_mod.echo_stderr)
    print(views.status_text(*views.load(home, ctx.name)))


def _valid_name(name: str) -> bool:
    import re

    from hive.playbook import NAME_RE
    return re.match(NAME_RE, name) is not None


@app.command()
def status(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
           as_json: bool = JsonOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """Show a campaign's state: best, budget used, experiments by verdict, what is in flight."""
    from hive.campaign import home_dir

    store, camp = views.load(home_dir(workspaces), campaign)
    _emit(views.status_data(store, camp), as_json, views.status_text(store, camp))


@app.command()
def leaderboard(campaign: Optional[str] = typer.Argument(None, help="campaign name (default: the only one)"),
                limit: int = typer.Option(20, "--limit", min=1), as_json: bool = JsonOpt,
                workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """The best experiments by the objective's metric (mean over seeds)."""
    from hive.campaign import home_dir

    store, camp = views.load(home_dir(workspaces), campaign)
    rows = views.leaderboard_data(store, camp, limit)
    _emit(rows, as_json, views.leaderboard_text(camp, rows))


@app.command()
def show(experiment: int = typer.Argument(..., help="experiment number"),
         campaign: Optional[str] = typer.Option(None, "--campaign", help="campaign name (default: the only one)"),
         diff: bool = typer.Option(False, "--diff", help="print the diff from its parent"),
         log: bool = typer.Option(False, "--log", help="print the log of each seed"),
         as_json: bool = JsonOpt, workspaces: Optional[Path] = WorkspacesOpt) -> None:
    """One experiment: hypothesis, verdict and why, per-seed metrics, and optionally its diff and logs."""
    from hive.campaign import home_dir

    store, camp = views.load(home_dir(workspaces), campaign)
    data = views.experiment_data(store, camp, experiment)
    if as_json:
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map errors to exit codes (no traceback for a user mistake)."""
    try:
        app(args=argv, standalone_mode=False)
        return 0
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except click.exceptions.UsageError as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except HiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
