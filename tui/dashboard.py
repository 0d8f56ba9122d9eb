"""The dashboard: header, leaderboard, in-flight experiments, slots, event feed and the metric plot."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from tui.data import Snapshot
from tui.widgets import (
    EventFeed,
    HeaderPanel,
    InFlightList,
    InFlightRow,
    Leaderboard,
    MetricPlot,
    SlotPanel,
)


class DashboardScreen(Screen):
    """Polls the store every refresh and applies each snapshot in place."""

    BINDINGS = [
        Binding("enter", "open_selected", "Open", show=True),
        Binding("e", "ask_experiment", "Exp #"),
        Binding("p", "pull_requests", "PRs"),
        Binding("s", "sort", "Sort"),
        Binding("tab", "focus_next", "Pane", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.refreshing = False
        self.snapshot: Snapshot | None = None

    def compose(self) -> ComposeResult:
        yield HeaderPanel(id="header")
        with Horizontal(id="top"):
            yield Leaderboard(id="leaderboard")
            with Vertical(id="side"):
                yield InFlightList(id="inflight")
                yield SlotPanel(id="slots")
        with Horizontal(id="bottom"):
            yield MetricPlot(id="plot")
            yield EventFeed(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#leaderboard").border_title = "leaderboard"
        self.query_one("#inflight").border_title = "in flight"
        self.query_one("#slots").border_title = "slots"
        self.query_one("#plot").border_title = "metric over time"
        self.query_one("#events").border_title = "events"
        # the first snapshot is built right away so the screen never opens empty
        self.apply(self.app.source.build())
        self.set_interval(self.app.refresh_seconds, self.poll)

    def poll(self) -> None:
        self.app.check_engine()
        if not self.refreshing:
            self.refreshing = True
            self.build_in_background()

    @work(thread=True, group="refresh")
    def build_in_background(self) -> None:
        try:
            snapshot = self.app.source.build()
        except Exception as exc:  # noqa: BLE001  (a locked or half-written store: try again next tick)
            self.app.call_from_thread(self.app.notify, f"refresh failed: {exc}", severity="warning")
            self.refreshing = False
            return
        self.app.call_from_thread(self.apply, snapshot)

    def apply(self, snap: Snapshot) -> None:
        """Update every widget from a snapshot (each one changes only what differs)."""
        self.refreshing = False
        self.snapshot = snap
        self.query_one(HeaderPanel).show(snap.header, snap.waiting)
        if snap.header is not None and self.app.title != f"hive · {snap.header.campaign}":
            self.app.title = f"hive · {snap.header.campaign}"
        self.query_one(Leaderboard).show(snap.leaderboard)
        self.query_one(InFlightList).show(snap.in_flight)
        self.query_one(SlotPanel).show(snap.slots)
        self.query_one(EventFeed).show(snap.events)
        self.query_one(MetricPlot).show(snap.plot)

    # -- actions -----------------------------------------------------------
    def action_open_selected(self) -> None:
        """Open the focused in-flight experiment, else the leaderboard's selected one."""
        if isinstance(self.focused, InFlightRow):
            self.app.open_experiment(self.focused.number)
            return
        number = self.query_one(Leaderboard).selected_number()
        if number is not None:
            self.app.open_experiment(number)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.open_experiment(int(event.row_key.value))

    def action_ask_experiment(self) -> None:
        self.app.ask_experiment()

    def action_pull_requests(self) -> None:
        self.app.open_pull_requests()

    def action_sort(self) -> None:
        self.notify(f"leaderboard sorted by {self.query_one(Leaderboard).cycle_sort()}", timeout=2)
