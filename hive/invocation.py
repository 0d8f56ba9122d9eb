"""What a seed runs: the command line (knob flags and the seed filled in) and the environment Hive adds."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from hive.knobs import runtime_knobs
from hive.playbook import EnvBinding, FlagBinding, Playbook


@dataclass
class Invocation:
    """Exactly what a seed runs: the shell command line and the variables Hive adds to the run's environment."""

    command: str
    env: dict[str, str]  # the delta over the scrubbed host environment: run.env, knob variables, the seed

    def shell_line(self) -> str:
        """One line a person can paste into a shell to run the same thing (from the run's folder)."""
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{assignments} {self.command}".strip()


def knob_arguments(playbook: Playbook, values: dict) -> tuple[list[str], dict[str, str]]:
    """Command-line flags and environment variables for the knobs bound to them."""
    flags, env = [], {}
    for knob in playbook.knobs:
        if knob.name not in values:
            continue
        value = values[knob.name]
        if isinstance(knob.bind, FlagBinding):
            flags.append(flag_argument(knob.bind.flag, value, knob.bind.flag_style or playbook.run.flag_style))
        elif isinstance(knob.bind, EnvBinding):
            env[knob.bind.env] = str(value)
    return flags, env


def flag_argument(flag: str, value: object, style: str) -> str:
    """One flag with its value as the shell should see it: `--lr 0.1` (style space) or `--lr=0.1` (equals)."""
    return f"{flag}={shlex.quote(str(value))}" if style == "equals" else f"{flag} {shlex.quote(str(value))}"


def invocation(playbook: Playbook, repo_dir: Path, run_dir: Path, seed: int, smoke: bool = False) -> Invocation:
    """The command line and environment delta of one seed of the commit checked out in `run_dir`.

    With `smoke`, the playbook's smoke command (`run.smoke`) stands for its command."""
    run = playbook.run
    flags, knob_env = knob_arguments(playbook, runtime_knobs(run_dir))
    env = {k: expand(v, repo_dir, seed, quote=False) for k, v in run.env.items()}
    env.update(knob_env)
    if run.seed_env:
        env[run.seed_env] = str(seed)
    if run.seed_flag:
        flags.append(flag_argument(run.seed_flag, seed, run.flag_style))
    command = expand(" ".join([run.smoke if smoke and run.smoke else run.command, *flags]), repo_dir, seed)
    return Invocation(command=command, env=env)


def expand(text: str, repo_dir: Path, seed: int | None = None, quote: bool = True, harness: Path | None = None) -> str:
    """Fill in {repo} (the campaign repo, e.g. for shared data), {seed} and, for a scorer, {harness}."""
    shell = shlex.quote if quote else str
    if harness is not None:
        text = text.replace("{harness}", shell(str(harness)))
    if seed is not None:
        text = text.replace("{seed}", str(seed))
    return text.replace("{repo}", shell(str(repo_dir)))
