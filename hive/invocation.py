"""What a seed runs: the command line (knob flags and the seed filled in) and the environment Hive adds."""

from __future__ import annotations

import ast
import shlex
import shutil
import subprocess
import sys
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


def path_first(playbook: Playbook, repo_dir: Path) -> list[str]:
    """The folders before the host's PATH for runs, scorers and setup alike: run.path, then the folder of
    run.python (default: of the interpreter Hive runs in), so `python` means the same everywhere."""
    run = playbook.run
    folders = [expand(p, repo_dir, quote=False) for p in run.path]
    python = interpreter(playbook, repo_dir)
    return [*folders, str(Path(python).parent)]


def interpreter(playbook: Playbook, repo_dir: Path) -> str:
    """The `python` runs get: run.python ({repo} filled in; a bare name looked up on PATH), else Hive's own."""
    if not playbook.run.python:
        return sys.executable
    given = expand(playbook.run.python, repo_dir, quote=False)
    if "/" not in given:
        return shutil.which(given) or given
    path = Path(given).expanduser()
    if not path.is_absolute() and playbook.path is not None:
        path = playbook.path.parent / path
    return str(path.absolute())  # not resolved: a venv's bin/python is a link, and its folder is the venv's


def expand(text: str, repo_dir: Path, seed: int | None = None, quote: bool = True, harness: Path | None = None) -> str:
    """Fill in {repo} (the campaign repo, e.g. for shared data), {seed} and, for a scorer, {harness}."""
    shell = shlex.quote if quote else str
    if harness is not None:
        text = text.replace("{harness}", shell(str(harness)))
    if seed is not None:
        text = text.replace("{seed}", str(seed))
    return text.replace("{repo}", shell(str(repo_dir)))


def missing_imports(playbook: Playbook, python: str) -> tuple[str, list[str]]:
    """The script run.command starts (`python X.py`), and the top-level modules it imports that `python` cannot
    find (the repository's own modules and the standard library are not asked about)."""
    source = playbook.source_dir()
    words = shlex.split(playbook.run.command.replace("{repo}", ".").replace("{seed}", "1"))
    script = next((w for w in words if w.endswith(".py")), None)
    if source is None or script is None or not (source / script).is_file():
        return "", []
    try:
        tree = ast.parse((source / script).read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return script, []
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    local = {p.stem for p in source.glob("*.py")} | {p.name for p in source.iterdir() if p.is_dir()}
    asked = sorted(names - local - set(sys.stdlib_module_names) - {"__future__"})
    if not asked:
        return script, []
    probe = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    try:
        proc = subprocess.run([python, "-c", probe, *asked], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return script, asked
    return script, proc.stdout.split() if proc.returncode == 0 else asked
