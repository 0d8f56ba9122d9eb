"""Knob values in a repository: top-level assignments found, read and rewritten by AST, and the file of flag/env knobs."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from hive.errors import EditRejected

# flag and environment knobs live here, so a commit alone says how to run it
KNOBS_FILE = ".hive/knobs.json"


def format_value(value: Any) -> str:
    """Python source for a knob value that keeps its type (floats stay floats)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".eni") else text + ".0"
    return repr(value)


def _literal_span(node: ast.expr, name: str) -> ast.expr:
    """The node to replace: the literal itself, or the default of `os.environ.get(NAME, default)` inside a call."""
    if isinstance(node, ast.Constant) or (isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant)):
        return node
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in ("get", "getenv")
                and len(sub.args) == 2 and isinstance(sub.args[1], (ast.Constant, ast.UnaryOp))):
            return sub.args[1]
    return node


def read_value(source: str, name: str) -> Any:
    """The current literal value of a top-level assignment (None when it is not a literal)."""
    node = top_level_assignments(source).get(name)
    if node is None:
        return None
    span = _literal_span(node.value, name)
    try:
        value = ast.literal_eval(span)
    except ValueError:
        return None
    # an env default written as a string ("0.1") still counts as the number it parses to
    if isinstance(value, str) and span is not node.value:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def rewrite_assignment(source: str, name: str, value: Any) -> str:
    """Replace the value of `NAME = ...` (or its env default) with `value`; everything else stays byte for byte."""
    node = top_level_assignments(source).get(name)
    if node is None:
        raise EditRejected(f"no top-level assignment {name!r}")
    span = _literal_span(node.value, name)
    text = format_value(value)
    if span is not node.value and isinstance(getattr(span, "value", None), str):
        text = repr(str(value))  # the default of os.environ.get is a string; keep it one
    # ast counts lines split at \n, \r\n and \r only, and columns in UTF-8 bytes: so do the offsets here
    data = source.encode("utf-8")
    offsets = [0]
    for line in data.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    start = offsets[span.lineno - 1] + span.col_offset
    end = offsets[span.end_lineno - 1] + span.end_col_offset
    out = (data[:start] + text.encode("utf-8") + data[end:]).decode("utf-8")
    if read_value(out, name) != _reparsed(value):
        raise EditRejected(f"rewriting {name} did not give {value!r}; the file is left as it was")
    return out


def _reparsed(value: Any) -> Any:
    """What a rewritten value reads back as (floats are written with 6 significant digits)."""
    if isinstance(value, float) and not isinstance(value, bool):
        return float(format_value(value))
    return value


def runtime_knobs(run_dir: Path) -> dict[str, Any]:
    """The flag/env knob values a commit carries (empty when it has none)."""
    path = run_dir / KNOBS_FILE
    return parse_runtime_knobs(path.read_text() if path.is_file() else None)


def parse_runtime_knobs(text: str | None) -> dict[str, Any]:
    """The flag/env knob values in a knob file's text (empty when there is none or it is not a JSON object)."""
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def top_level_assignments(source: str) -> dict[str, ast.Assign | ast.AnnAssign]:
    """Map each simple top-level assignment target name in a Python source to its node."""
    found: dict[str, ast.Assign | ast.AnnAssign] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found[node.target.id] = node
    return found
