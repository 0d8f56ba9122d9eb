"""The LLM coder: shows the plan and the editable files through `prompts/coder.md`, applies the reply's edit blocks."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from hive.agents.base import CampaignView, Proposal
from hive.agents.edits import apply_edits
from hive.errors import EditRejected
from hive.llm import LLM, render_prompt
from hive.playbook import matches_any

MAX_FILE_CHARS = 60_000
MAX_TOTAL_CHARS = 150_000


class LlmCoder:
    """Turns a plan into edits; a rejected edit is fed back to the model, up to `max_tries` replies."""

    name = "llm"

    def __init__(self, llm: LLM, editable: list[str], protected: list[str], max_tries: int = 3):
        self.llm, self.editable, self.protected, self.max_tries = llm, editable, protected, max_tries

    def code(self, proposal: Proposal, tree: Path, view: CampaignView, number: int) -> str:
        """Edit the worktree for the proposal and return a one-line summary; EditRejected (tree untouched) on failure."""
        files, omitted = _editable_files(tree, self.editable, self.protected)
        before = {f["path"]: f["text"] for f in files}
        prompt = render_prompt("coder", proposal=proposal, view=view, files=files, omitted=omitted, protected=self.protected)
        messages = [{"role": "user", "content": prompt}]
        for _ in range(self.max_tries):
            reply = self.llm.complete("coder", messages, number)
            try:
                changed = apply_edits(tree, reply, self.editable, self.protected)
            except EditRejected as exc:
                error = str(exc)
                messages += [{"role": "assistant", "content": reply},
                             {"role": "user", "content": render_prompt("retry", role="coder", error=error)}]
                continue
            return "edited " + ", ".join(_counts(p, before.get(p, ""), (tree / p).read_text(encoding="utf-8")) for p in changed)
        raise EditRejected(f"coder gave up after {self.max_tries} tries; last problem: {error}")


def _editable_files(tree: Path, editable: list[str], protected: list[str]) -> tuple[list[dict], list[str]]:
    """The editable text files under the tree with their contents, and those left out for size."""
    files, omitted, total = [], [], 0
    for root, dirs, names in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(names):
            rel = (Path(root) / name).relative_to(tree).as_posix()
            if not matches_any(rel, editable) or matches_any(rel, protected):
                continue
            try:
                text = (tree / rel).read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                omitted.append(rel)
                continue
            if len(text) > MAX_FILE_CHARS or total + len(text) > MAX_TOTAL_CHARS:
                omitted.append(rel)
                continue
            files.append({"path": rel, "text": text})
            total += len(text)
    return files, omitted


def _counts(path: str, old: str, new: str) -> str:
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0))
    added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    return f"{path} (+{added} -{removed})"
