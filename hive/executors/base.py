"""The executor protocol, what a run is asked to do and what came of it, and the scrubbed environment."""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# host variables a run sees; everything else (API keys, tokens, Hive's own settings) stays out
PASSED = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TERM", "TZ", "TMPDIR", "SHELL",
          "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "NCCL_*", "TORCH_HOME"]
SECRET = ["*_API_KEY", "*_KEY", "*TOKEN*", "*SECRET*", "*PASSWORD*", "HIVE_*", "AWS_*", "LITELLM_*", "OPENAI_*",
          "ANTHROPIC_*", "AZURE_*", "GOOGLE_*", "HF_*"]


def stop_reason(timeout: float, timed_out: bool, cancelled: bool) -> str:
    """Why Hive ended a run itself ("" when it did not), in the words every executor logs."""
    if timed_out:
        return f"killed after the {timeout:g} s limit"
    return "cancelled" if cancelled else ""


@dataclass
class RunRequest:
    """One run of one seed: a shell command in a folder, with a limit and a log file."""

    command: str
    cwd: Path
    log_path: Path
    timeout: float
    env: dict[str, str] = field(default_factory=dict)
    devices: list[int] = field(default_factory=list)
    threads: int = 1
    memory_mb: int | None = None
    label: str = ""
    # read-only folders a sandboxing executor mounts (e.g. the pristine harness)
    read_only: dict[str, Path] = field(default_factory=dict)
    # what a sandboxed command may change (None: its own folder, `cwd`) and what it must not see at all
    writable: list[Path] | None = None
    hidden: list[Path] = field(default_factory=list)
    network: bool = False


@dataclass
class RunResult:
    exit_code: int | None
    wall_seconds: float
    peak_rss_mb: float | None = None
    timed_out: bool = False
    cancelled: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


class Executor(Protocol):
    """Runs a command somewhere and waits for it; `cancel` set by another thread stops it early."""

    name: str
    # True when a run can reach nothing but its own folder (the campaign repo is not even visible to it), so
    # nothing needs checking for writes into the repo after it
    confines: bool

    def run(self, request: RunRequest, cancel: threading.Event | None = None) -> RunResult: ...


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def scrubbed_environment(extra: dict[str, str] | None = None, pass_env: list[str] | None = None,
                         host: dict[str, str] | None = None, path_first: list[str] | None = None) -> dict[str, str]:
    """The environment of a run: a short allow-list of host variables, never a secret, plus `extra`.

    `pass_env` may name more host variables; names that look like secrets are dropped even then, unless
    they are set explicitly through `extra` (the playbook's `run.env`). `path_first` goes before the host's
    PATH (the playbook's run.path and run.python; by default the folder of the interpreter Hive runs in).
    """
    host = dict(os.environ if host is None else host)
    allowed = PASSED + list(pass_env or [])
    env = {k: v for k, v in host.items() if _matches(k, allowed) and not _matches(k, SECRET)}
    # the run's `python` is the playbook's run.python, else the interpreter Hive runs in (its packages: torch)
    first = path_first if path_first is not None else [str(Path(sys.executable).parent)]
    env["PATH"] = os.pathsep.join([*first, env.get("PATH", "/usr/bin:/bin")])
    env.setdefault("HOME", "/tmp")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
