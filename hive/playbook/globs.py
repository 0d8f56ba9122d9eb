"""The playbook's path globs (`editable`, `protected`): `*` within a folder, `**` across folders."""

from __future__ import annotations

import re


def matches_any(path: str, globs: list[str]) -> bool:
    """True if a repo-relative posix path matches one of the globs (`**` spans folders)."""
    return any(_glob_re(g).match(path) for g in globs)


def _glob_re(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(c), i + 1
    # a folder pattern covers everything beneath it
    return re.compile(f"^{out}(?:/.*)?$")
