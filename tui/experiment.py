"""One experiment: hypothesis, rationale, verdict and why, per-seed metrics, the diff, the live log tail, and what
each role (proposer, coder, reviewer, an external agent) said and ran, live while it works."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Log, Static, TabbedContent, TabPane

from hive.logs import LogTail
from tui.detail import ExperimentDetail, TranscriptTail, experiment_detail
from tui.widgets import VERDICT_STYLE, number

SCREEN_LOG_BYTES = 32_000  # how much of a log the screen shows when it opens


class ExperimentScreen(Screen):
    """Reloads the experiment and appends new log lines every refresh while it is open."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("i", "tab('info')", "Info"),
        Binding("d", "tab('diff')", "Diff"),
        Binding("l", "tab('log')", "Log"),
        Binding("n", "next_seed", "Next seed"),
        Binding("t", "tab('transcript')", "Transcript"),
        Binding("r", "next_role", "Next role"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number
        self.detail: ExperimentDetail | None = None
        self.log_seed: int | None = None
        self.tail: LogTail | None = None
        self.role: str | None = None
        self.transcript: TranscriptTail | None = None
        self.loading = False

    def compose(self) -> ComposeResult:
        yield Static(id="exp-title")
        with TabbedContent(initial="info", id="exp-tabs"):
            with TabPane("Info", id="info"), VerticalScroll():
                yield Static(id="exp-summary")
                yield DataTable(id="seeds", cursor_type="row", zebra_stripes=True)
            with TabPane("Diff", id="diff"), VerticalScroll():
                yield Static(id="exp-diff")
            with TabPane("Log", id="log"):
                yield Static(id="log-which")
                yield Log(id="exp-log", max_lines=2000)
            with TabPane("Transcript", id="transcript"):
                yield Static(id="transcript-which")
                yield Log(id="exp-transcript", max_lines=5000)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#seeds", DataTable)
        for key, label in (("seed", "seed"), ("status", "status"), ("value", "metric"), ("wall", "wall s"),
                           ("devices", "device")):
            table.add_column(label, key=key)
        self.apply(*self._load())
        self.set_interval(self.app.refresh_seconds, self.poll)

    def poll(self) -> None:
        if not self.loading:
            self.loading = True
            self.load_in_background()

    @work(thread=True, group="experiment")
    def load_in_background(self) -> None:
        try:
            loaded = self._load()
        except Exception:  # noqa: BLE001  (the store is busy: next tick)
            self.loading = False
            return
        self.app.call_from_thread(self.apply, *loaded)

    def _load(self) -> tuple[ExperimentDetail | None, LogTail | None, str, TranscriptTail | None, str]:
        detail = experiment_detail(self.app.source.store, self.app.source.name, self.number)
        if detail is not None and self.tail is None and detail.seeds:
            running = [s for s in detail.seeds if s.status == "running"]
            seed = (running or detail.seeds)[0]
            self.log_seed, self.tail = seed.seed, LogTail(seed.log_path, SCREEN_LOG_BYTES)
        if detail is not None and self.transcript is None and detail.transcripts:
            roles = dict(detail.transcripts)  # the coder's first: what it ran is what a reader looks for
            self.role = "coder" if "coder" in roles else detail.transcripts[0][0]
            self.transcript = TranscriptTail(roles[self.role])
        tail, transcript = self.tail, self.transcript
        return (detail, tail, tail.read_new() if tail else "", transcript,
                transcript.read_new() if transcript else "")

    def apply(self, detail: ExperimentDetail | None, tail: LogTail | None, new_log: str,
              transcript: TranscriptTail | None = None, new_entries: str = "") -> None:
        self.loading = False
        if new_log and tail is self.tail:  # not a line of a seed the user has switched away from
            self.query_one("#exp-log", Log).write(new_log)
        if new_entries and transcript is self.transcript:  # nor of a role switched away from
            self.query_one("#exp-transcript", Log).write(new_entries)
        if detail == self.detail:
            return
        self.detail = detail
        if detail is None:
            self.query_one("#exp-title", Static).update(f"no experiment {self.number}")
            return
        self.query_one("#exp-title", Static).update(Text.assemble(
            (f" exp-{detail.number} ", "bold reverse"), f" {detail.kind} [{detail.status}] ",
            (detail.verdict or "-", VERDICT_STYLE.get(detail.verdict, "")),
            f"  parent exp-{detail.parent}" if detail.parent else "",
            f"  commit {detail.commit[:10]}" if detail.commit else ""))
        self.query_one("#exp-summary", Static).update(_summary(detail))
        table = self.query_one("#seeds", DataTable)
        table.clear()
        for s in detail.seeds:
            table.add_row(s.seed, Text(s.status, "green" if s.status == "ok" else "yellow"), number(s.value, 6),
                          "-" if s.wall_seconds is None else f"{s.wall_seconds:.1f}", s.devices or "cpu",
                          key=str(s.seed))
        diff = detail.diff or "(no diff: the source as given)"
        self.query_one("#exp-diff", Static).update(Syntax(diff, "diff", theme="ansi_dark", word_wrap=False))
        self._show_log_name()
        self._show_role_name()

    def _show_role_name(self) -> None:
        roles = [r for r, _ in self.detail.transcripts] if self.detail else []
        text = (f"{self.role} transcript ({roles.index(self.role) + 1}/{len(roles)}; r: next role)"
                if self.role in roles else "no transcript: this experiment had no model conversation")
        self.query_one("#transcript-which", Static).update(Text(text, "dim"))

    def _show_log_name(self) -> None:
        seeds = [s.seed for s in self.detail.seeds] if self.detail else []
        text = (f"seed {self.log_seed} log ({seeds.index(self.log_seed) + 1}/{len(seeds)}; n: next seed)"
                if self.log_seed in seeds else "no run yet")
        self.query_one("#log-which", Static).update(Text(text, "dim"))

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_next_seed(self) -> None:
        """Tail the next seed's log."""
        if not self.detail or not self.detail.seeds:
            return
        seeds = self.detail.seeds
        i = next((k for k, s in enumerate(seeds) if s.seed == self.log_seed), -1)
        seed = seeds[(i + 1) % len(seeds)]
        self.log_seed, self.tail = seed.seed, LogTail(seed.log_path, SCREEN_LOG_BYTES)
        log = self.query_one("#exp-log", Log)
        log.clear()
        log.write(self.tail.read_new())
        self.query_one(TabbedContent).active = "log"
        self._show_log_name()

    def action_next_role(self) -> None:
        """Show the next role's transcript."""
        if not self.detail or not self.detail.transcripts:
            return
        roles = [r for r, _ in self.detail.transcripts]
        i = roles.index(self.role) if self.role in roles else -1
        self.role = roles[(i + 1) % len(roles)]
        self.transcript = TranscriptTail(dict(self.detail.transcripts)[self.role])
        log = self.query_one("#exp-transcript", Log)
        log.clear()
        log.write(self.transcript.read_new())
        self.query_one(TabbedContent).active = "transcript"
        self._show_role_name()


def _summary(d: ExperimentDetail) -> Text:
    text = Text()
    text.append("hypothesis  ", "bold")
    text.append(f"{d.hypothesis or '-'}\n")
    if d.rationale:
        text.append("rationale   ", "bold")
        text.append(f"{d.rationale}\n")
    text.append("verdict     ", "bold")
    text.append(d.verdict or "pending", VERDICT_STYLE.get(d.verdict, ""))
    text.append(f"  {d.reason}\n" if d.reason else "\n")
    text.append(f"{d.metric:<11} ", "bold")
    p = f"   p = {d.p_value:.3g}" if d.p_value is not None else ""
    spread = f" ± {number(d.std, 2)}" if d.std is not None and d.n_seeds > 1 else ""
    text.append(f"mean {number(d.mean, 6)}{spread} over {d.n_seeds} seed(s){p}")
    return text
