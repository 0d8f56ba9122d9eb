"""Snapshot tests: how each TUI screen looks at 80x24, with a fixed clock and fixed store rows."""

from __future__ import annotations

import pytest

from tests.test_tui import make_app, make_store


@pytest.fixture
def app(tmp_path):
    make_store(tmp_path / "ws")
    return make_app(tmp_path / "ws")


def test_dashboard(snap_compare, app):
    assert snap_compare(app, terminal_size=(80, 24))


def test_experiment_screen(snap_compare, app):
    assert snap_compare(app, press=["enter"], terminal_size=(80, 24))


def test_experiment_diff(snap_compare, app):
    assert snap_compare(app, press=["enter", "d"], terminal_size=(80, 24))


def test_pull_request_screen(snap_compare, app):
    assert snap_compare(app, press=["p"], terminal_size=(80, 24))



def test_experiment_transcript(snap_compare, app):
    assert snap_compare(app, press=["e", "6", "enter", "t"], terminal_size=(80, 24))
