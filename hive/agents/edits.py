"""Search/replace edit blocks (aider's format): parse them from a model's reply and apply them to a tree, all or nothing."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hive.errors import EditRejected
from hive.playbook import matches_any

SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
DIVIDER = re.compile(r"^\s*={5,9}\s*$")
REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class EditBlock:
    path: str
    search: str
    replace: str


def parse_edits(text: str) -> list[EditBlock]:
    """The edit blocks in a reply, in order; the path is the last non-fence line before `<<<<<<< SEARCH`."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        if not SEARCH.match(lines[i]):
            i += 1
            continue
        path = _path_before(lines, i) or (blocks[-1].path if blocks and REPLACE.match(lines[i - 1]) else None)
        if path is None:
            raise EditRejected(f"edit block at reply line {i + 1} has no file path on the line before '<<<<<<< SEARCH'")
        j = i + 1
        while j < len(lines) and not DIVIDER.match(lines[j]):
            j += 1
        k = j + 1
        while k < len(lines) and not REPLACE.match(lines[k]):
            k += 1
        if k >= len(lines):
            raise EditRejected(f"edit block for {path} at reply line {i + 1} is not closed by '=======' and '>>>>>>> REPLACE'")
        blocks.append(EditBlock(path, _joined(lines[i + 1:j]), _joined(lines[j + 1:k])))
        i = k + 1
    return blocks


def apply_edits(tree: Path, text: str, editable: list[str], protected: list[str]) -> list[str]:
    """Apply every edit block in `text` under `tree` and return the changed paths; EditRejected (nothing written) if any fails."""
    blocks = parse_edits(text)
    if not blocks:
        raise EditRejected("no edit blocks found; write each change as: path, <<<<<<< SEARCH, old lines, =======, new lines, >>>>>>> REPLACE")
    tree = tree.resolve()
    before: dict[str, str | None] = {}
    after: dict[str, str] = {}
    for n, block in enumerate(blocks, 1):
        path = _check_path(tree, block.path, editable, protected)
        if path not in before:
            target = tree / path
            before[path] = target.read_text(encoding="utf-8") if target.is_file() else None
            if before[path] is not None:
                after[path] = before[path]
        after[path] = _replace(after.get(path), block, n)
    changed = [p for p in after if after[p] != before[p]]
    if not changed:
        raise EditRejected("the edit blocks change nothing (REPLACE equals SEARCH)")
    for path in changed:
        if path.endswith(".py"):
            try:
                compile(after[path], path, "exec")
            except SyntaxError as exc:
                raise EditRejected(f"{path} does not compile after the edits: {exc.msg} at line {exc.lineno}") from None
    _write_all(tree, {p: after[p] for p in changed}, before)
    return changed


def _path_before(lines: list[str], i: int) -> str | None:
    for line in reversed(lines[max(0, i - 3):i]):
        if not line.strip() or FENCE.match(line):
            continue
        if REPLACE.match(line):
            return None
        # a path alone on its line, or the last word of a line like "In train.py:"
        path = line.split()[-1].strip("`*#:'\"").strip()
        return path.removeprefix("./") or None
    return None


def _joined(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _check_path(tree: Path, path: str, editable: list[str], protected: list[str]) -> str:
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not (tree / pure).resolve().is_relative_to(tree):
        raise EditRejected(f"{path}: outside the repository; use a path relative to its root")
    rel = pure.as_posix()
    if matches_any(rel, protected):
        raise EditRejected(f"{rel}: protected; it may not be changed")
    if not matches_any(rel, editable):
        raise EditRejected(f"{rel}: not editable (editable: {', '.join(editable)})")
    return rel


def _replace(content: str | None, block: EditBlock, n: int) -> str:
    """The content with the block applied: exact match first, then ignoring trailing whitespace on each line."""
    where = f"edit block {n} ({block.path})"
    if content is None:
        if block.search.strip():
            raise EditRejected(f"{where}: file does not exist; to create it, leave SEARCH empty")
        return block.replace
    if not block.search.strip():
        return content + ("" if not content or content.endswith("\n") else "\n") + block.replace
    padded = content if content.endswith("\n") else content + "\n"
    hits = _find(padded, block.search)
    if not hits:
        raise EditRejected(f"{where}: SEARCH text not found{_closest(content, block.search)}")
    if len(hits) > 1:
        lines = ", ".join(str(padded.count("\n", 0, start) + 1) for start, _ in hits)
        raise EditRejected(f"{where}: SEARCH text matches {len(hits)} places (lines {lines}); include more surrounding lines")
    start, end = hits[0]
    out = padded[:start] + block.replace + padded[end:]
    return out if content.endswith("\n") else out.removesuffix("\n")


def _find(content: str, search: str) -> list[tuple[int, int]]:
    exact = [(m.start(), m.end()) for m in re.finditer(r"(?m)^" + re.escape(search), content)]
    if exact:
        return exact
    # models often drop or add trailing spaces; match line by line ignoring them
    pattern = "".join(re.escape(line.rstrip()) + r"[ \t]*\n" for line in search.splitlines())
    return [(m.start(), m.end()) for m in re.finditer(r"(?m)^" + pattern, content)]


def _closest(content: str, search: str) -> str:
    """Which SEARCH line is missing from the file, and the file's closest line to it."""
    have = {line.strip() for line in content.splitlines()}
    missing = next((line.strip() for line in search.splitlines() if line.strip() and line.strip() not in have), None)
    if missing is None:
        return "; every SEARCH line exists but not consecutively in that order; copy the lines exactly as they are"
    stripped = [line.strip() for line in content.splitlines()]
    near = [line for line in stripped if missing in line][:1] or difflib.get_close_matches(missing, stripped, n=1, cutoff=0.6)
    return f"; the line {missing!r} is not in the file" + (f" (closest: {near[0]!r})" if near else "")


def _write_all(tree: Path, contents: dict[str, str], before: dict[str, str | None]) -> None:
    """Write every file via a temporary and rename; on any failure restore what was already written."""
    done: list[str] = []
    try:
        for path, text in contents.items():
            target = tree / path
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.hive-edit")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
            done.append(path)
    except OSError as exc:
        for path in done:
            if before[path] is None:
                (tree / path).unlink(missing_ok=True)
            else:
                (tree / path).write_text(before[path], encoding="utf-8")
        raise EditRejected(f"could not write {path}: {exc}") from None
