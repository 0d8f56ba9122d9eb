"""HiveApp: watch a campaign live (dashboard), drill into experiments, review pull requests."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from tui.dashboard import DashboardScreen
from tui.data import DashboardSource
from tui.engine import EngineThread
from tui.experiment import ExperimentScreen
from tui.pulls import AskScreen, PullRequestScreen


def utc_now() -> datetime:
    return datetime.now(UTC)


class HiveApp(App):
    """Reads the store (safe while another process writes it); with an engine, the campaign runs underneath."""

    CSS_PATH = "hive.tcss"
    TITLE = "hive"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, home: Path, campaign: str | None = None, clock: Callable[[], datetime] = utc_now,
                 refresh_seconds: float = 1.0, engine=None,
                 export_dir: Path | None = None):
        super().__init__()
        self.engine = engine
        self.export_dir = export_dir  # None: the current directory, as `hive pr export` does
        self.refresh_seconds = refresh_seconds
        self.source = DashboardSource(Path(home), campaign, clock,
                                      getattr(engine, "scheduler_snapshot", None))
        self.stopping = False

    def get_default_screen(self) -> DashboardScreen:
        return DashboardScreen()

    def open_experiment(self, number: int) -> None:
        if self.source.open() is None:
            self.notify("the campaign has not started yet", severity="warning")
            return
        self.push_screen(ExperimentScreen(number))

    def ask_experiment(self) -> None:
        def done(answer: str | None) -> None:
            if answer is None:
                return
            if not answer.removeprefix("exp-").isdigit():
                self.notify(f"not an experiment number: {answer!r}", severity="error")
                return
            self.open_experiment(int(answer.removeprefix("exp-")))

        self.push_screen(AskScreen("Open experiment number:", "e.g. 12"), done)

    def open_pull_requests(self) -> None:
        if self.source.open() is None:
            self.notify("the campaign has not started yet", severity="warning")
            return
        self.push_screen(PullRequestScreen())

    def check_engine(self) -> None:
        """Leave with the engine's error when the campaign it runs has failed."""
        if self.engine is not None and self.engine.error is not None and not self.stopping:
            self.exit(return_code=1, message=f"error: {self.engine.error}")

    async def action_quit(self) -> None:
        """Quit; with an engine running, first ask it to stop cleanly and wait (a second quit leaves at once)."""
        if self.engine is None or not self.engine.running or self.stopping:
            self.exit()
            return
        self.stopping = True
        self.notify("stopping the campaign: cancelling runs, keeping records…", timeout=30)
        self.wait_for_engine()

    @work(thread=True)
    def wait_for_engine(self) -> None:
        self.engine.stop()
        self.call_from_thread(self.exit)


def run_campaign(playbook, home: Path, name: str | None = None, accept_changes: bool = False) -> str:
    """`hive start` on a terminal: the campaign runs in a thread under the TUI; returns the campaign's name.

    Quitting the TUI stops the campaign cleanly and waits for it; an engine error is raised again here.
    """
    engine = EngineThread(playbook, home, name, accept_changes).start()
    try:
        HiveApp(home, engine.name, engine=engine).run()
    finally:
        if engine.running:
            print(f"stopping campaign {engine.name} (Ctrl-C to abort)…", file=sys.stderr, flush=True)
        engine.stop()
    if engine.error is not None:
        raise engine.error
    return engine.name
