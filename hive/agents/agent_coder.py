"""The agentic coder: a multi-turn loop in the experiment's worktree, in the style of mini-swe-agent.

Each model turn gives one shell command (a ```bash block) or `DONE: <one-line summary>`. Hive runs the command in
the worktree with a time limit, a scrubbed environment and, where bubblewrap works, in the run sandbox (the
worktree writable but for its protected files, the campaign's store, logs and other worktrees hidden, no network),
and answers with the output's head and tail. At DONE Hive checks the worktree (editable paths only, Python
compiles, something changed) and sends a problem back as the next turn; outputs of runs (untracked files outside
`editable`) are removed. The graph then checks and commits as for any coder.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hive.agents.base import CampaignView, Proposal
from hive.agents.context import top_level_names
from hive.errors import EditRejected
from hive.executors.base import scrubbed_environment
from hive.invocation import expand
from hive.llm import LLM, render_prompt
from hive.playbook import AgentCoderSpec, Playbook, matches_any
from hive.sandbox import Policy, Sandbox
from hive.workspace import run_git

COMMAND = re.compile(r"```(?:bash|sh|shell|console)?[ \t]*\n(.*?)```", re.S)
DONE = re.compile(r"^\s*DONE:\s*(.*\S)\s*$", re.M)
GIVE_UP = re.compile(r"^\s*GIVE UP:\s*(.*\S)\s*$", re.M)
OUTLINE_NAMES = 40  # top-level names listed per file in the prompt's outline


@dataclass
class CommandResult:
    exit_code: int | None  # None: killed at the time limit
    output: str
    seconds: float


class AgentCoder:
    """Codes a plan, or repairs a crash, by running commands in the worktree until the model says DONE."""

    name = "agent"

    def __init__(self, llm: LLM, playbook: Playbook, repo_dir: Path, hidden: list[Path], sandbox: Sandbox,
                 spec: AgentCoderSpec | None = None):
        self.llm, self.pb, self.repo_dir = llm, playbook, Path(repo_dir)
        self.hidden, self.sandbox = [Path(p) for p in hidden], sandbox
        self.spec = spec or AgentCoderSpec()

    # -- the two tasks -----------------------------------------------------------
    def code(self, proposal: Proposal, tree: Path, view: CampaignView, number: int) -> str:
        """Implement the proposal in the worktree and return the model's one-line summary; EditRejected if it cannot."""
        prompt = render_prompt("agent_coder", proposal=proposal, view=view, smoke=self.smoke_command(),
                               outline=outline(tree, self.pb.editable, self.pb.protected), spec=self.spec)
        return self._loop(tree, prompt, number, "code")

    def repair(self, tree: Path, failure: str, log_tail: str, diff: str, number: int, attempt: int) -> str:
        """Fix the worktree's change after its run crashed (`failure`, the log's last lines, the change's diff)."""
        prompt = render_prompt("agent_repair", failure=failure, log_tail=log_tail, diff=diff, attempt=attempt,
                               attempts=self.spec.repair_attempts, smoke=self.smoke_command(), rules=self.pb.rules,
                               editable=self.pb.editable, protected=self.pb.protected, spec=self.spec)
        return self._loop(tree, prompt, number, f"repair attempt {attempt}")

    def smoke_command(self) -> str | None:
        """The playbook's smoke command as the coder types it in the worktree ({repo} filled in)."""
        smoke = self.pb.run.smoke
        return expand(smoke, self.repo_dir, self.pb.run.seeds[0]) if smoke else None

    # -- the loop ------------------------------------------------------------------
    def _loop(self, tree: Path, prompt: str, number: int, task: str) -> str:
        transcript = self.llm.transcript("coder", number)
        if transcript is not None:
            transcript.note(f"{task}: up to {self.spec.max_steps} steps in {tree}"
                            f" ({'sandboxed' if self.sandbox.enforced else 'NOT sandboxed'})")
        messages = [{"role": "user", "content": prompt}]
        for step in range(1, self.spec.max_steps + 1):
            reply = self.llm.complete("coder", messages, number)
            messages.append({"role": "assistant", "content": reply})
            gave_up = GIVE_UP.search(reply)
            if gave_up and not COMMAND.search(reply):
                raise EditRejected(f"coder gave up ({task}): {gave_up.group(1)[:300]}")
            done, command = parse_action(reply)
            if done is not None:
                problem = self.finish_problem(tree)
                if problem is None:
                    return done
                answer = f"Not done yet: {problem}"
            elif command is not None:
                result = self.execute(command, tree)
                if transcript is not None:
                    transcript.write("command", step=step, command=command, exit_code=result.exit_code,
                                     seconds=round(result.seconds, 3), output=result.output)
                status = (f"exit code {result.exit_code}" if result.exit_code is not None
                          else f"killed after the {self.spec.command_timeout:g} s time limit")
                answer = f"[{status}, {result.seconds:.1f} s]\n{result.output}"
            else:
                answer = ("Your reply had no command. Reply with exactly one ```bash block holding one command, "
                          "or a line `DONE: <one-line summary>` when the change is finished.")
            left = self.spec.max_steps - step
            messages.append({"role": "user", "content": f"{answer}\n\n({left} step{'s' * (left != 1)} left)"})
        raise EditRejected(f"coder used all {self.spec.max_steps} steps of coder.max_steps without finishing ({task})")

    def execute(self, command: str, tree: Path) -> CommandResult:
        """Run one shell command in the worktree: time limit, scrubbed environment, sandbox where it works."""
        pb, tree = self.pb, Path(tree).resolve()
        protected = tuple(p for p in tree_files(tree) if matches_any(p.relative_to(tree).as_posix(), pb.protected))
        visible = tuple(p for p in (self.repo_dir,) if p.exists())
        policy = Policy(writable=(tree,), read_only=visible + protected, hidden=tuple(self.hidden),
                        network=pb.run.network)
        env = {k: expand(v, self.repo_dir, pb.run.seeds[0], quote=False) for k, v in pb.run.env.items()}
        if pb.run.seed_env:
            env[pb.run.seed_env] = str(pb.run.seeds[0])
        argv = self.sandbox.argv(["/bin/bash", "-c", command], policy, cwd=tree)
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(argv, cwd=tree, env=scrubbed_environment(env, pb.run.pass_env),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                code: int | None = proc.wait(timeout=self.spec.command_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                code = None
            return CommandResult(code, head_and_tail(out, self.spec.output_chars), time.monotonic() - t0)

    def finish_problem(self, tree: Path) -> str | None:
        """What keeps the worktree's change from being committed, or None; untracked outputs of runs are removed."""
        pb = self.pb
        status = run_git(tree, "status", "--porcelain=v1", "-z", "--untracked-files=all")
        if status.returncode != 0:
            return f"git status failed in the worktree: {status.stderr.strip()[-300:]}"
        changed, problems = [], []
        for item in (i for i in status.stdout.split("\0") if i):
            code, path = item[:2], item[3:]
            editable = matches_any(path, pb.editable) and not matches_any(path, pb.protected)
            if code == "??" and not editable:
                (Path(tree) / path).unlink(missing_ok=True)  # an output of a run, not a change
            elif not editable:
                why = "protected" if matches_any(path, pb.protected) else "not editable"
                problems.append(f"{path} is {why}; restore it with `git checkout -- {path}`")
            else:
                changed.append(path)
        for path in changed:
            target = Path(tree) / path
            if path.endswith(".py") and target.is_file():
                try:
                    compile(target.read_text(encoding="utf-8", errors="replace"), path, "exec")
                except SyntaxError as exc:
                    problems.append(f"{path} does not compile: {exc.msg} at line {exc.lineno}")
        if not changed and not problems:
            problems.append(f"no editable file has changed (editable: {', '.join(pb.editable)})")
        return "; ".join(problems) or None


def parse_action(reply: str) -> tuple[str | None, str | None]:
    """(summary, None) for a reply that says DONE, (None, command) for one with a ```bash block, else (None, None)."""
    commands = COMMAND.findall(reply)
    done = DONE.search(reply)
    if done and not commands:
        return done.group(1)[:200], None
    if commands:
        return None, commands[0].strip() or None
    return None, None


def head_and_tail(fh, limit: int) -> str:  # noqa: ANN001  (a binary file object)
    """A command's output: all of it within `limit` characters, else its head and tail around a cut mark."""
    size = fh.seek(0, 2)
    fh.seek(0)
    if size <= limit:
        return fh.read().decode("utf-8", "replace")
    head = fh.read(limit // 3).decode("utf-8", "replace")
    fh.seek(size - (limit - limit // 3))
    tail = fh.read().decode("utf-8", "replace")
    return f"{head}\n... ({size - limit} bytes of output cut; use head, tail, grep or sed -n to read parts) ...\n{tail}"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def tree_files(tree: Path) -> list[Path]:
    """The files under a worktree, outside .git."""
    out = []
    for root, dirs, names in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "__pycache__"))
        out += [Path(root) / n for n in sorted(names) if n != ".git"]
    return out


def outline(tree: Path, editable: list[str], protected: list[str]) -> list[dict]:
    """The files of the worktree the prompt lists: path, size, whether editable, and a Python file's top-level names."""
    tree = Path(tree).resolve()
    out = []
    for path in tree_files(tree):
        rel = path.relative_to(tree).as_posix()
        is_protected = matches_any(rel, protected)
        entry = {"path": rel, "bytes": path.stat().st_size, "editable": matches_any(rel, editable) and not is_protected,
                 "protected": is_protected, "names": []}
        if rel.endswith(".py") and (entry["editable"] or is_protected) and entry["bytes"] < 2_000_000:
            entry["names"] = top_level_names(path.read_text(encoding="utf-8", errors="replace"))[:OUTLINE_NAMES]
        out.append(entry)
    return out[:200]
