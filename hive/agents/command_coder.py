"""The coding agent you already use: an agent CLI (mini-swe-agent, aider, codex, claude-code) run in the worktree.

Hive writes the plan to a task file, runs the CLI in the experiment's worktree with a time limit, an allow-list
environment (PATH, HOME, locale, and only the API-key variable the playbook names) and, where bubblewrap works, in
the sandbox (the worktree writable but for its protected files, the rest of the campaign hidden; the network
stays, as the model is reached over it). Its output and its own trajectory are kept as the coder's transcript (`logs/exp-N/coder.jsonl`), its
cost recorded where the CLI reports one. The graph then checks and commits as for any coder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hive.agents.base import CampaignView, Proposal
from hive.errors import BadInput, EditRejected
from hive.playbook import Playbook, matches_any
from hive.playbook.schema import CommandCoderSpec
from hive.sandbox import Policy, Sandbox
from hive.store import LlmCall, Store
from hive.transcripts import Transcript
from hive.workspace import run_git

OUTPUT_CHARS = 20_000  # of the CLI's output kept in the transcript (head and tail)


@dataclass(frozen=True)
class Preset:
    """How one agent CLI is run: its executable, its argv template, the environment it needs, where it reports."""

    executable: str
    argv: tuple[str, ...]  # placeholders: {model} {task} {task_file} {out} {files}; {base_args} expands to base_args
    base_args: tuple[str, ...] = ()  # only when an api_base is set (placeholder {api_base})
    env: dict[str, str] = field(default_factory=dict)
    base_env: dict[str, str] = field(default_factory=dict)  # only when an api_base is set
    key_env: str = "OPENAI_API_KEY"
    tested: bool = False  # run for real in Hive's tests (the others: their command line only)
    bare_model: bool = False  # the CLI takes "gpt-5", not litellm's "openai/gpt-5"


PRESETS: dict[str, Preset] = {
    "mini-swe-agent": Preset(
        "mini", ("-c", "mini_textbased.yaml", "-c", "agent.mode=yolo", "-c", "agent.cost_limit=0", "{base_args}",
                 "--model-class", "litellm_textbased", "-m", "{model}", "-t", "{task}", "-y", "--exit-immediately",
                 "-o", "{out}/trajectory.json"),
        base_args=("-c", "model.model_kwargs.api_base={api_base}"),
        env={"MSWEA_CONFIGURED": "true", "MSWEA_COST_TRACKING": "ignore_errors", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        tested=True),
    "aider": Preset(
        "aider", ("--model", "{model}", "{base_args}", "--edit-format", "diff", "--yes-always", "--no-git",
                  "--no-auto-commits", "--no-check-update", "--no-show-model-warnings", "--no-pretty", "--no-stream",
                  "--no-analytics", "--no-auto-lint", "--no-show-release-notes", "--chat-history-file",
                  "{out}/aider.chat.md", "--input-history-file", "{out}/aider.input", "--message-file", "{task_file}",
                  "{files}"),
        base_args=("--openai-api-base", "{api_base}"), env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"}, tested=True),
    "codex": Preset(
        "codex", ("exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write", "-m", "{model}",
                  "{base_args}", "{task}"),
        base_args=("-c", "model_provider=hive", "-c",
                   'model_providers.hive={{name="hive", base_url="{api_base}", env_key="OPENAI_API_KEY", wire_api="chat"}}'),
        bare_model=True),
    "claude-code": Preset(
        "claude", ("-p", "{task}", "--output-format", "json", "--model", "{model}", "--dangerously-skip-permissions"),
        base_env={"ANTHROPIC_BASE_URL": "{api_base}"}, key_env="ANTHROPIC_API_KEY", bare_model=True),
}


def preset_for(spec: CommandCoderSpec) -> Preset | None:
    """The preset a spec names (None for a full command template); BadInput naming the field if there is none such."""
    if spec.preset is None:
        return None
    preset = PRESETS.get(spec.preset)
    if preset is None:
        raise BadInput(f"coder.preset: {spec.preset!r} is not one of {', '.join(PRESETS)}")
    return preset


def check_cli(spec: CommandCoderSpec) -> str:
    """The executable the coder runs, found on PATH (or as given); BadInput naming the field when it is missing."""
    preset = preset_for(spec)
    if spec.cli is not None:
        exe, field_name = spec.cli, "coder.cli"
    elif preset is not None:
        exe, field_name = preset.executable, "coder.preset"
    else:
        words = shlex.split(spec.command or "")
        exe, field_name = (words[0] if words else ""), "coder.command"
    found = shutil.which(exe) if exe else None
    if found is None:
        raise BadInput(f"{field_name}: the agent CLI {exe!r} is not on PATH (install it, or give coder.cli: PATH)")
    return str(Path(found).resolve())  # a pipx-style link resolves to its venv, which the sandbox shows


def build_argv(spec: CommandCoderSpec, executable: str, model: str, task: str, task_file: Path, out: Path,
               files: list[str], api_base: str | None) -> list[str]:
    """The exact command line the coder runs for a task (a template is run by bash, its placeholders quoted)."""
    values = {"model": model, "task": task, "task_file": str(task_file), "out": str(out), "api_base": api_base or ""}
    preset = preset_for(spec)
    if preset is None:
        quoted = {k: shlex.quote(v) for k, v in values.items()} | {"files": " ".join(map(shlex.quote, files))}
        return ["/bin/bash", "-c", (spec.command or "").format(**quoted)]
    if preset.bare_model:
        values["model"] = model.split("/", 1)[-1]
    argv = [executable]
    for arg in preset.argv:
        if arg == "{base_args}":
            argv += [a.format(**values) for a in preset.base_args] if api_base else []
        elif arg == "{files}":
            argv += files
        else:
            argv.append(arg.format(**values))
    return argv


class CommandCoder:
    """Runs an agent CLI on the plan in the worktree; what it changed is checked and committed by the graph."""

    name = "command"

    def __init__(self, spec: CommandCoderSpec, playbook: Playbook, store: Store, campaign_id: int, logs: Path,
                 hidden: list[Path], sandbox: Sandbox, api: Callable[[], tuple[str, str | None]]):
        self.spec, self.pb, self.store, self.campaign_id = spec, playbook, store, campaign_id
        self.logs, self.hidden, self.sandbox = Path(logs), [Path(p) for p in hidden], sandbox
        self.api = api  # () -> (model, api_base) the CLI is told: a `scripted:` model starts its server first
        self.preset = preset_for(spec)
        self.executable = check_cli(spec)

    def code(self, proposal: Proposal, tree: Path, view: CampaignView, number: int) -> str:
        """Run the CLI on the proposal; a one-line summary, or EditRejected when it failed or changed nothing."""
        return self._run_cli(task_text(proposal, view, self.pb), Path(tree).resolve(), number, "coder-cli")

    def repair(self, tree: Path, failure: str, log_tail: str, diff: str, number: int, attempt: int) -> str:
        """Run the CLI again on the change whose run crashed: the failure, the log's last lines and the diff."""
        task = repair_text(failure, log_tail, diff, attempt, self.spec.repair_attempts, self.pb)
        return self._run_cli(task, Path(tree).resolve(), number, f"coder-cli-repair-{attempt}")

    def _run_cli(self, task: str, tree: Path, number: int, folder: str) -> str:
        """One run of the CLI on a task file in the worktree: transcript, cost, checks of its exit."""
        out = self.logs / f"exp-{number}" / folder
        shutil.rmtree(out, ignore_errors=True)
        (out / "home").mkdir(parents=True)
        task_file = out / "task.md"
        task_file.write_text(task, encoding="utf-8")
        model, api_base = self.api()
        tracked = _tracked(tree)
        files = [p for p in tracked if matches_any(p, self.pb.editable) and not matches_any(p, self.pb.protected)]
        # protected files stay readable (the CLI may read how the scorer calls the model) and cannot be written
        protected = tuple(tree / p for p in tracked if matches_any(p, self.pb.protected) and (tree / p).is_file())
        argv = build_argv(self.spec, self.executable, model, task, task_file, out, files, api_base)
        env = self._environment(out / "home", api_base)
        # the CLI's own install (a venv's bin/..) stays readable wherever it lives, /tmp and homes included
        policy = Policy(writable=(tree, out), read_only=(Path(self.executable).parent.parent, *protected),
                        hidden=tuple(self.hidden), network=True)
        transcript = Transcript(self.logs, number, "coder")
        self.store.ensure_transcript(self.campaign_id, number, "coder", str(transcript.path))
        transcript.note(f"{self.spec.preset or 'command'}: {shlex.join(argv)} in {tree} "
                        f"({'sandboxed' if self.sandbox.enforced else 'NOT sandboxed'}; "
                        f"environment: {', '.join(sorted(env))})")
        t0 = time.monotonic()
        code, output = _run(self.sandbox.argv(argv, policy, cwd=tree), tree, env, self.spec.timeout)
        seconds = time.monotonic() - t0
        transcript.write("command", command=shlex.join(argv), exit_code=code, seconds=round(seconds, 3),
               output=output)
        for role, content in cli_messages(self.spec.preset, out, output):
            transcript.message(role, content)
        dollars, tokens_in, tokens_out = cli_cost(self.spec.preset, out, output)
        self.store.add(LlmCall(campaign_id=self.campaign_id, experiment_number=number, role="coder",
                               model=f"{self.spec.preset or 'command'}:{model}", prompt_tokens=tokens_in,
                               completion_tokens=tokens_out, dollars=dollars, seconds=round(seconds, 3),
                               ok=code == 0, error="" if code == 0 else f"exit {code}"))
        transcript.write("cost", model=model, tokens_in=tokens_in, tokens_out=tokens_out, dollars=dollars, seconds=round(seconds, 3))
        _remove_outputs(tree, self.pb)
        if code != 0:
            why = "was killed at coder.timeout" if code is None else f"exited {code}"
            raise EditRejected(f"{self.spec.preset or 'coder command'} {why}: {_last_line(output)}")
        return f"{self.spec.preset or 'command'} in {seconds:.0f} s: {_last_line(output)[:120]}"

    def _environment(self, home: Path, api_base: str | None) -> dict[str, str]:
        """PATH, HOME, locale, the preset's settings and the one API-key variable named; nothing else of Hive's."""
        path = os.pathsep.join([str(Path(self.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
        env = {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1"}
        if self.preset is not None:
            env.update(self.preset.env)
            if api_base:
                env.update({k: v.format(api_base=api_base) for k, v in self.preset.base_env.items()})
        key_env = self.spec.api_key_env or self.pb.models.api_key_env or (self.preset.key_env if self.preset else None)
        if key_env:
            env[key_env] = os.environ.get(key_env, "")
            if self.preset is not None and key_env != self.preset.key_env:  # the CLI reads its own variable
                env[self.preset.key_env] = env[key_env]
        return env


def task_text(proposal: Proposal, view: CampaignView, playbook: Playbook) -> str:
    """The task file: hypothesis, plan, rules, objective, constraints, smoke command, what must not be touched."""
    smoke = getattr(playbook.run, "smoke", None)
    lines = [f"# Task: {proposal.hypothesis}", "", proposal.plan or proposal.rationale or proposal.hypothesis, "",
             "## Objective", f"{view.direction} `{view.metric}`" + (f", subject to: {'; '.join(view.constraints)}"
                                                                  if view.constraints else ""), "",
             "## Rules", (view.rules or "(none)").strip(), "",
             "## Files", f"You may edit only: {', '.join(playbook.editable)}.",
             f"Never change (any edit to these is rejected): {', '.join(playbook.protected) or '(none)'}.",
             "Do not commit; Hive checks and commits your change.", ""]
    if smoke:
        lines += ["## Check your change", f"Run the smoke command and read its output: `{smoke}`", ""]
    lines += ["Removing code for an equal result is a win: keep the change as simple as the plan allows."]
    return "\n".join(lines) + "\n"


def repair_text(failure: str, log_tail: str, diff: str, attempt: int, attempts: int, playbook: Playbook) -> str:
    """The task file of a repair: what failed, the log's last lines (the traceback), the change so far."""
    smoke = playbook.run.smoke
    lines = [f"# Repair: the run of your change crashed (repair attempt {attempt} of {attempts})", "",
             f"What failed: {failure}", "", "## The log's last lines", "```", log_tail.rstrip(), "```", "",
             "## Your change so far (already in the files)", "```diff", diff.rstrip(), "```", "",
             "Fix the cause so the run completes; keep the idea of the change.",
             f"You may edit only: {', '.join(playbook.editable)}. "
             f"Never change: {', '.join(playbook.protected) or '(none)'}. Do not commit.", ""]
    if smoke:
        lines += [f"Run the smoke command and read its output before you finish: `{smoke}`", ""]
    return "\n".join(lines)


def cli_messages(preset: str | None, out: Path, output: str) -> list[tuple[str, str]]:
    """The conversation the CLI kept (mini-swe-agent's trajectory, aider's chat history), as (role, content)."""
    if preset == "mini-swe-agent":
        data = _json(out / "trajectory.json")
        return [(str(m.get("role", "?")), _content(m.get("content"))) for m in data.get("messages", [])]
    if preset == "aider" and (out / "aider.chat.md").is_file():
        return [("assistant", (out / "aider.chat.md").read_text(encoding="utf-8", errors="replace"))]
    return []


def cli_cost(preset: str | None, out: Path, output: str) -> tuple[float, int, int]:
    """(dollars, tokens in, tokens out) where the CLI reports them (0 where it does not)."""
    if preset == "claude-code":
        data = _last_json(output)
        usage = data.get("usage") or {}
        return float(data.get("total_cost_usd") or 0), int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    if preset == "mini-swe-agent":
        stats = _json(out / "trajectory.json").get("info", {}).get("model_stats", {})
        return float(stats.get("instance_cost") or 0), 0, 0
    if preset == "aider":
        tokens = re.findall(r"Tokens: ([\d.]+)(k?) sent, ([\d.]+)(k?) received", output)
        cost = re.findall(r"Cost: \$([\d.]+) message", output)
        count = lambda n, k: int(float(n) * (1000 if k else 1))  # noqa: E731
        return (sum(map(float, cost)), sum(count(a, b) for a, b, _, _ in tokens),
                sum(count(c, d) for _, _, c, d in tokens))
    return 0.0, 0, 0


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Run the CLI: its exit code (None when killed at the time limit) and its output's head and tail."""
    with tempfile.TemporaryFile() as fh:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            code = None
        size = fh.seek(0, 2)
        fh.seek(0)
        if size <= OUTPUT_CHARS:
            return code, fh.read().decode("utf-8", "replace")
        head = fh.read(OUTPUT_CHARS // 4).decode("utf-8", "replace")
        fh.seek(size - OUTPUT_CHARS * 3 // 4)
        return code, f"{head}\n... ({size - OUTPUT_CHARS} bytes cut) ...\n{fh.read().decode('utf-8', 'replace')}"


def _remove_outputs(tree: Path, playbook: Playbook) -> None:
    """Untracked files the CLI left that are not editable (caches, histories, run outputs) are not its change."""
    status = run_git(tree, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    for item in (i for i in status.stdout.split("\0") if i):
        if item.startswith("?? "):
            path = item[3:]
            if not matches_any(path, playbook.editable) or matches_any(path, playbook.protected):
                target = tree / path
                shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink(missing_ok=True)


def _tracked(tree: Path) -> list[str]:
    return [p for p in run_git(tree, "ls-files", "-z").stdout.split("\0") if p]


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_json(output: str) -> dict:
    for line in reversed(output.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return {}


def _content(content: object) -> str:
    if isinstance(content, list):  # multimodal parts
        return "\n".join(str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in content)
    return str(content or "")


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"
