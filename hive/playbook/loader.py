"""Loading a playbook: YAML, `-c key.path=value` overrides, profiles, one-line errors, a check against its source."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hive.errors import BadInput
from hive.knobs import top_level_assignments
from hive.playbook.globs import matches_any
from hive.playbook.schema import FileBinding, Playbook


MAX_VALUES = 100_000  # a playbook's values once YAML aliases are expanded; past it, an alias bomb, refused unbuilt


def _read_yaml(text: str, origin: str) -> Any:
    """Parse YAML, refusing before it builds anything a document whose aliases expand past MAX_VALUES values."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_VALUES:
            raise BadInput(f"{origin}: its YAML aliases expand to more than {MAX_VALUES} values (an alias bomb?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values a node holds with every alias expanded (memoised per node: no expansion happens)."""
    key = id(node)
    if key in sizes:
        if sizes[key] < 0:
            raise BadInput("an alias refers to a value that contains it (a recursive YAML alias)")
        return sizes[key]
    sizes[key] = -1
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        total = 1
    sizes[key] = total
    return total


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
        data = _read_yaml(path.read_text(encoding="utf-8"), origin)
    except BadInput as exc:
        raise BadInput(str(exc) if str(exc).startswith(origin) else f"{origin}: {exc}") from None
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
    if (src / ".git").exists():
        _check_git_source(playbook, src, origin)
    for i, knob in enumerate(playbook.knobs):
        if not isinstance(knob.bind, FileBinding):
            continue
        if knob.bind.file.startswith("/") or ".." in knob.bind.file.split("/"):
            raise BadInput(f"{origin}: knobs.{i}.bind.file: {knob.bind.file!r} is not a path inside the source "
                           f"(no leading / and no ..)")
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


def _git(src: Path, *args: str) -> list[str] | None:
    proc = subprocess.run(["git", *args], cwd=src, capture_output=True, text=True, check=False)
    return proc.stdout.splitlines() if proc.returncode == 0 else None


def _check_git_source(playbook: Playbook, src: Path, origin: str) -> None:
    """A git source is cloned at its ref (HEAD): editable or protected files it lacks, or changes not committed, are named."""
    ref = playbook.ref or "HEAD"
    if _git(src, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}") is None:
        raise BadInput(f"{origin}: ref: {ref!r} is not a commit, branch or tag of {src}")
    tracked = set(_git(src, "ls-tree", "-r", "--name-only", ref) or [])
    globs = playbook.editable + playbook.protected
    untracked = [p for p in _git(src, "ls-files", "--others", "--exclude-standard") or []
                 if p not in tracked and matches_any(p, globs)]
    if untracked:
        raise BadInput(f"{origin}: source: {', '.join(untracked[:3])} not committed at {ref} of {src}, which is what "
                       f"the campaign clones (editable or protected files it would lack): commit them")
    if playbook.ref is None:
        changed = [p for p in _git(src, "diff", "--name-only", "HEAD") or [] if matches_any(p, globs)]
        if changed:
            raise BadInput(f"{origin}: source: {', '.join(changed[:3])} in {src} has changes not committed; the "
                           f"campaign clones HEAD without them: commit or stash them")
