"""Loading a playbook: YAML, `-c key.path=value` overrides, profiles, one-line errors, a check against its source."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hive.errors import BadInput
from hive.knobs import top_level_assignments
from hive.playbook.globs import matches_any
from hive.playbook.schema import FileBinding, Playbook


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise BadInput(f"-c {dotted}: '{key}' is not an index of a list of {len(node)}")
            key = int(key)
        elif not isinstance(node, dict):
            raise BadInput(f"-c {dotted}: '{'.'.join(keys[:i])}' is not a mapping")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


def parse_override(text: str) -> tuple[str, Any]:
    """Split `key.path=value` and parse the value as YAML (so numbers and lists keep their type)."""
    if "=" not in text:
        raise BadInput(f"-c {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$", key.strip()):
        raise BadInput(f"-c {text!r}: {key!r} is not a dotted key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_error(origin: str, exc: ValidationError) -> str:
    # a misspelled key explains the "missing" error that comes with it: name the typo first
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = ".".join(_loc_part(p) for i, p in enumerate(first["loc"])
                   if not str(p).endswith("Binding") and p not in ("LocalExecutor", "DockerExecutor", "SlurmExecutor")
                   and not (i > 0 and first["loc"][i - 1] == "coder"))  # the coder's kind tag
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required field is missing"
    elif first["type"] == "literal_error":
        msg = msg.replace("Input should be", "must be one of")
    elif first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = "must be a mapping of fields"
    elif first["type"] == "union_tag_invalid":
        msg = msg.replace("Input tag", "kind").replace(" found using 'kind'", "").replace("does not match any of the expected tags:", "is not one of")
    extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{loc}: " if loc else ""
    # one line, whatever odd key or value the file holds
    return f"{origin}: {where}{msg}{extra}".replace("\n", "\\n")


def _loc_part(part: object) -> str:
    text = str(part)
    return text if re.fullmatch(r"[A-Za-z0-9_.-]+", text) else repr(text)


def load_playbook(path: str | Path, overrides: list[str] | None = None, check_source: bool = True) -> Playbook:
    """Load, override, validate and cross-check a playbook; raise BadInput with one line on any problem."""
    path = Path(path)
    origin = str(path)
    if path.is_dir():
        raise BadInput(f"{origin}: is a folder; give the playbook's YAML file (e.g. playbooks/quickstart.yaml)")
    if not path.is_file():
        raise BadInput(f"{origin}: playbook file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BadInput(f"{origin}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{origin}: not UTF-8 text") from None
    if not isinstance(data, dict):
        raise BadInput(f"{origin}: a playbook is a YAML mapping, got {type(data).__name__}")
    for text in overrides or []:
        key, value = parse_override(text)
        _set_path(data, key, value)
    profile = data.get("profile")
    if profile is not None:
        profiles = data.get("profiles") or {}
        if not isinstance(profiles, dict) or profile not in profiles:
            valid = ", ".join(sorted(profiles)) if isinstance(profiles, dict) and profiles else "none defined"
            raise BadInput(f"{origin}: profile: unknown profile {profile!r} (valid: {valid})")
        if not isinstance(profiles[profile], dict):
            raise BadInput(f"{origin}: profiles.{profile}: must be a mapping of fields to override")
        data = _deep_merge(data, profiles[profile])
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        raise BadInput(_format_error(origin, exc)) from None
    playbook.path = path.resolve()
    if check_source:
        check_against_source(playbook, origin)
    return playbook


def check_against_source(playbook: Playbook, origin: str) -> None:
    """Cross-check the playbook against its source folder: it exists, knob files and assignments exist."""
    src = playbook.source_dir()
    if src is None:
        return
    if not src.is_dir():
        raise BadInput(f"{origin}: source: folder or repository {playbook.source!r} not found (looked at {src})")
    for i, knob in enumerate(playbook.knobs):
        if not isinstance(knob.bind, FileBinding):
            continue
        target = src / knob.bind.file
        if not target.is_file():
            raise BadInput(f"{origin}: knobs.{i}.bind.file: file {knob.bind.file!r} does not exist in {src}")
        if not matches_any(knob.bind.file, playbook.editable):
            raise BadInput(f"{origin}: knobs.{i}.bind.file: {knob.bind.file!r} is not covered by 'editable'")
        if matches_any(knob.bind.file, playbook.protected):
            raise BadInput(f"{origin}: knobs.{i}.bind.file: {knob.bind.file!r} is protected")
        try:
            names = top_level_assignments(target.read_text(encoding="utf-8"))
        except SyntaxError as exc:
            raise BadInput(f"{origin}: knobs.{i}.bind.file: {knob.bind.file!r} is not valid Python: {exc.msg}") from None
        if knob.bind.assign not in names:
            raise BadInput(f"{origin}: knobs.{i}.bind.assign: no top-level assignment {knob.bind.assign!r} in {knob.bind.file}")
