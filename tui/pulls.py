"""Pull requests: the list, each one's evidence and diff; approve, reject with a reason, export."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    DataTable,
    Footer,
    Input,
    Markdown,
    Static,
    TabbedContent,
    TabPane,
)

from tui import actions
from tui.detail import PullRequestRow, pull_requests

STATUS_STYLE = {"open": "bold yellow", "approved": "bold green", "rejected": "red"}


class AskScreen(ModalScreen[str | None]):
    """A one-line question (a reject reason, an experiment number); Enter answers, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, placeholder: str = "", default: str | None = None) -> None:
        super().__init__()
        self.prompt, self.placeholder, self.default = prompt, placeholder, default

    def compose(self) -> ComposeResult:
        with Vertical(id="ask"):
            yield Static(self.prompt, id="ask-prompt")
            yield Input(placeholder=self.placeholder, id="ask-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or self.default)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PullRequestScreen(Screen):
    """The campaign's pull requests; actions go through the same library functions as `hive pr`."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "approve", "Approve"),
        Binding("r", "reject", "Reject"),
        Binding("x", "export", "Export"),
        Binding("d", "toggle_diff", "Evidence/Diff"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[PullRequestRow] = []
        self.shown: int | None = None

    def compose(self) -> ComposeResult:
        yield DataTable(id="prs", cursor_type="row", zebra_stripes=True)
        with TabbedContent(initial="evidence", id="pr-tabs"):
            with TabPane("Evidence", id="evidence"):
                yield Markdown(id="pr-body")
            with TabPane("Diff", id="pr-diff-pane"), VerticalScroll():
                yield Static(id="pr-diff")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#prs", DataTable)
        for key, label in (("pr", "PR"), ("status", "status"), ("exp", "exp"), ("title", "title")):
            table.add_column(label, key=key)
        self.reload()
        table.focus()
        self.set_interval(self.app.refresh_seconds, self.poll)

    def poll(self) -> None:
        self.load_in_background()

    @work(thread=True, exclusive=True, group="prs")
    def load_in_background(self) -> None:
        rows = pull_requests(self.app.source.store, self.app.source.name)
        self.app.call_from_thread(self.show_rows, rows)

    def reload(self) -> None:
        self.show_rows(pull_requests(self.app.source.store, self.app.source.name))

    def show_rows(self, rows: list[PullRequestRow]) -> None:
        if rows == self.rows:
            return
        table = self.query_one("#prs", DataTable)
        selected = self.selected()
        same = [r.number for r in rows] == [r.number for r in self.rows]
        if same:
            for row in rows:
                table.update_cell(str(row.number), "status", Text(row.status, STATUS_STYLE.get(row.status, "")))
        else:
            table.clear()
            for row in rows:
                table.add_row(f"#{row.number}", Text(row.status, STATUS_STYLE.get(row.status, "")),
                              f"exp-{row.experiment}", row.title, key=str(row.number))
            if selected is not None and str(selected) in table.rows:
                table.move_cursor(row=table.get_row_index(str(selected)), animate=False)
        self.rows = rows
        self.show_detail(force=True)

    def selected(self) -> int | None:
        table = self.query_one("#prs", DataTable)
        if not self.rows or table.row_count == 0:
            return None
        return int(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)

    def current(self) -> PullRequestRow | None:
        number = self.selected()
        return next((r for r in self.rows if r.number == number), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self, force: bool = False) -> None:
        pr = self.current()
        if pr is None:
            self.query_one("#pr-body", Markdown).update("_no pull request yet: a kept experiment opens one_")
            self.query_one("#pr-diff", Static).update("")
            self.shown = None
            return
        if pr.number == self.shown and not force:
            return
        self.shown = pr.number
        reason = f"\n\n**Rejected:** {pr.reason}" if pr.status == "rejected" and pr.reason else ""
        self.query_one("#pr-body", Markdown).update(f"# PR #{pr.number} [{pr.status}]\n\n{pr.title}{reason}\n\n{pr.body}")
        self.query_one("#pr-diff", Static).update(Syntax(pr.diff or "(empty diff)", "diff", theme="ansi_dark"))

    # -- actions -----------------------------------------------------------
    def _act(self, do, *args) -> None:
        pr = self.current()
        if pr is None:
            self.notify("no pull request selected", severity="warning")
            return
        source = self.app.source
        try:
            message = do(source.store, source.campaign(), pr.number, *args)
        except Exception as exc:  # noqa: BLE001  (a refused action is shown, not fatal)
            self.notify(str(exc), severity="error")
            return
        self.notify(message, timeout=8)
        self.reload()

    def action_approve(self) -> None:
        self._act(actions.approve, self.app.source.home)

    def action_reject(self) -> None:
        self._ask("Reject PR #{}: why? (the proposer reads it as a lesson)", "reason", None,
                  lambda reason: self._act(actions.reject, reason))

    def action_export(self) -> None:
        self._ask("Export PR #{} as: patch, branch or param-golf", "patch", "patch",
                  lambda fmt: self._act(actions.export, self.app.source.home, fmt, self.app.export_dir))

    def _ask(self, prompt: str, placeholder: str, default: str | None, then) -> None:
        pr = self.current()
        if pr is None:
            self.notify("no pull request selected", severity="warning")
            return
        self.app.push_screen(AskScreen(prompt.format(pr.number), placeholder, default),
                             lambda answer: then(answer) if answer else None)

    def action_toggle_diff(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "pr-diff-pane" if tabs.active == "evidence" else "evidence"
