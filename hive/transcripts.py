"""Transcripts: every conversation of every role, one JSON line per message, at `logs/exp-N/<role>.jsonl`.

A line is `{"ts", "kind", ...}`: kind `message` (role, content: what was sent to or came back from a model),
`command` (command, exit_code, seconds, output: what the agentic coder ran and saw), `note` (text: what Hive
decided, e.g. an edit rejected) or `cost` (tokens, dollars, seconds of one model call). Lines are appended as
they happen (a coder that gave up can be debugged from its file), and a reader skips a torn last line.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

ROLE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def transcript_path(logs: Path, number: int, role: str) -> Path:
    """Where the transcript of one role of one experiment lives."""
    if not ROLE_RE.match(role):
        raise ValueError(f"transcript role {role!r} is not a short lower-case name")
    return Path(logs) / f"exp-{number}" / f"{role}.jsonl"


class Transcript:
    """Appends one role's conversation of one experiment to its JSONL file."""

    def __init__(self, logs: Path, number: int, role: str):
        self.path = transcript_path(logs, number, role)
        self.role = role
        self._sent = 0  # messages of the current conversation already written

    def call(self, messages: list[dict], reply: str, **cost: Any) -> None:
        """One model call: the messages not written yet (all of a new conversation), the reply and its cost."""
        new = messages[self._sent:] if len(messages) >= self._sent else messages
        for m in new:
            self.message(str(m.get("role", "user")), str(m.get("content") or ""))
        self.message("assistant", reply)
        self.write("cost", **cost)
        self._sent = len(messages) + 1  # the caller appends the reply to its messages

    def write(self, kind: str, **fields: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"ts": round(time.time(), 3), "kind": kind, **fields}, default=str, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def message(self, role: str, content: str) -> None:
        self.write("message", role=role, content=content)

    def note(self, text: str) -> None:
        self.write("note", text=text)


def read_transcript(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of a transcript file, in order (a line cut by a kill is skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    yield from parse_entries(text)


def parse_entries(text: str) -> Iterator[dict[str, Any]]:
    """The entries of transcript lines (a line that is not a JSON object, e.g. cut by a kill, is skipped)."""
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield entry


def transcripts(logs: Path, number: int) -> dict[str, Path]:
    """Every role's transcript of one experiment: role -> path, in name order."""
    folder = Path(logs) / f"exp-{number}"
    return {p.stem: p for p in sorted(folder.glob("*.jsonl"))} if folder.is_dir() else {}


def render_entry(entry: dict[str, Any], width: int | None = None) -> str:
    """One transcript entry as text for `hive show --transcript` and the TUI (`width` clips long bodies)."""
    kind = entry.get("kind")
    if kind == "message":
        head, body = f"--- {entry.get('role', '?')}", str(entry.get("content", ""))
    elif kind == "command":
        head = f"$ {entry.get('command', '')}"
        body = (f"{entry.get('output', '')}\n[exit {entry.get('exit_code')}, {entry.get('seconds', 0):.1f} s]"
                if entry.get("exit_code") is not None else str(entry.get("output", "")))
    elif kind == "cost":
        return (f"[{entry.get('tokens_in', 0)} tokens in, {entry.get('tokens_out', 0)} out, "
                f"${entry.get('dollars', 0):.4f}, {entry.get('seconds', 0):.1f} s]")
    else:
        head, body = "[hive]", str(entry.get("text", ""))
    if width is not None and len(body) > width:
        body = body[:width] + f"\n... ({len(body) - width} more characters)"
    return f"{head}\n{body}".rstrip()
