"""Property-based bad input: random playbooks and CLI arguments never produce a traceback."""

from __future__ import annotations

import copy
import subprocess
import sys

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hive.errors import BadInput
from hive.playbook import load_playbook
from tests.conftest import PLAYBOOKS

BASE = yaml.safe_load((PLAYBOOKS / "quickstart.yaml").read_text())
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                            st.integers(), max_size=2))


def _paths(node, prefix=()):  # noqa: ANN001
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated(draw):
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = data
        try:
            for key in path[:-1]:
                node = node[key]
            action = draw(st.sampled_from(["replace", "delete", "extra"]))
            if action == "replace":
                node[path[-1]] = draw(SCALARS)
            elif action == "delete" and isinstance(node, dict):
                node.pop(path[-1], None)
            elif isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=8))] = draw(SCALARS)
        except (KeyError, IndexError, TypeError):
            continue
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_playbooks_load_or_fail_with_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("pb") / "book.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    # the source resolves relative to the playbook, so point it at the real template
    try:
        load_playbook(path, [f"source={PLAYBOOKS / 'quickstart'}"] if isinstance(data.get("source"), str) else [])
    except BadInput as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(str(path))


@settings(max_examples=60, deadline=None)
@given(override=st.text(max_size=40))
def test_random_overrides_are_bad_input_or_fine(override):
    try:
        load_playbook(PLAYBOOKS / "quickstart.yaml", [override])
    except BadInput as exc:
        assert "\n" not in str(exc)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.sampled_from(["show", "status", "leaderboard", "start", "playbook", "validate", "--json",
                                      "--diff", "-c", "x=1", "0", "-5", "99999999999999999999", "nope", "--campaign",
                                      "../etc", "\u00e9", "--limit", "--max-experiments", ""]), min_size=1, max_size=4))
def test_random_cli_arguments_never_show_a_traceback(tmp_path_factory, args):
    home = tmp_path_factory.mktemp("home")
    proc = subprocess.run([sys.executable, "-m", "hive", *args], cwd=home, capture_output=True, text=True, timeout=60,
                          env={"HIVE_HOME": str(home / "workspaces"), "PATH": "/usr/bin:/bin",
                               "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
    assert proc.returncode in (0, 1, 2), (args, proc.returncode)
