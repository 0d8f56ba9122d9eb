"""Small dashboard widgets, each updated in place from a snapshot (no remounts, so no flicker)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, ProgressBar, RichLog, Static

from tui.data import EventLine, Header, InFlight, LeaderRow, Slot, clock_text
from tui.plot import Bucket, Plot

VERDICT_STYLE = {"keep": "bold green", "baseline": "cyan", "discard": "dim", "crash": "red", "timeout": "red",
                 "invalid": "yellow", "rejected": "yellow", "edit_failed": "yellow"}
SPARK = "▁▂▃▄▅▆▇█"


def number(value: float | None, digits: int = 5) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


class HeaderPanel(Static):
    """Campaign, objective, best and its delta vs baseline, budget used, elapsed."""

    def show(self, h: Header | None, waiting: str | None = None) -> None:
        if h is None:
            self.update(Text(waiting or "", style="italic"))
            return
        arrow = "↓" if h.direction == "minimize" else "↑"
        top = Text.assemble((f" {h.campaign} ", "bold reverse"), f" [{h.status}]  ",
                            (f"{h.metric} {arrow}", "bold"), "  best ")
        if h.best_value is None:
            top.append("-")
        else:
            top.append(number(h.best_value, 6), "bold green")
            top.append(f" (exp-{h.best_number})")
            if h.delta is not None and h.best_number != 1:
                top.append(f" {h.delta:+.4g} vs baseline", "green" if h.delta != 0 else "")
        budget = f"exp {h.experiments}" + (f"/{h.max_experiments}" if h.max_experiments else "")
        wall = clock_text(h.elapsed) + (f"/{h.max_hours:g}h" if h.max_hours else "")
        dollars = f"${h.dollars:.2f}" + (f"/${h.max_dollars:g}" if h.max_dollars else "")
        kept = h.verdicts.get("keep", 0)
        bottom = Text(f" budget {budget} · wall {wall} · {dollars}   kept {kept} · open PRs {h.open_prs}", style="dim")
        self.update(Text("\n").join([top, bottom]))


class Leaderboard(DataTable):
    """The top of the leaderboard; rows keyed by experiment number, cells updated only when they change."""

    COLUMNS = (("rank", "#"), ("exp", "exp"), ("verdict", "verdict"), ("mean", "metric"), ("std", "±"),
               ("seeds", "n"), ("p", "p"), ("hypothesis", "hypothesis"))
    SORTS = ("rank", "mean", "exp", "seeds", "p")

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_shown: list[LeaderRow] = []
        self.sort_key = "rank"
        self.sort_reverse = False

    def on_mount(self) -> None:
        for key, label in self.COLUMNS:
            self.add_column(label, key=key)

    @staticmethod
    def _cells(row: LeaderRow) -> dict[str, object]:
        return {"rank": row.rank, "exp": row.number, "verdict": Text(row.verdict, VERDICT_STYLE.get(row.verdict, "")),
                "mean": number(row.mean, 6), "std": number(row.std if row.n_seeds > 1 else None, 2), "seeds": row.n_seeds,
                "p": number(row.p_value, 2), "hypothesis": row.hypothesis.splitlines()[0][:80] if row.hypothesis else ""}

    def show(self, rows: list[LeaderRow]) -> None:
        """Apply new rows: update changed cells in place, rebuild only when the set or order of rows changed."""
        rows = self._sorted(rows)
        if [r.number for r in rows] != [r.number for r in self.rows_shown]:
            selected = self.selected_number()
            self.clear()
            for row in rows:
                self.add_row(*self._cells(row).values(), key=str(row.number))
            if selected is not None and str(selected) in self.rows:
                self.move_cursor(row=self.get_row_index(str(selected)), animate=False)
        else:
            for old, new in zip(self.rows_shown, rows):
                if old != new:
                    for key, value in self._cells(new).items():
                        self.update_cell(str(new.number), key, value)
        self.rows_shown = rows

    def _sorted(self, rows: list[LeaderRow]) -> list[LeaderRow]:
        attr = {"rank": "rank", "mean": "mean", "exp": "number", "seeds": "n_seeds", "p": "p_value"}[self.sort_key]
        missing = float("inf") if not self.sort_reverse else float("-inf")
        return sorted(rows, key=lambda r: (getattr(r, attr) if getattr(r, attr) is not None else missing, r.rank),
                      reverse=self.sort_reverse)

    def cycle_sort(self) -> str:
        """Sort by the next column (rank, metric, exp, seeds, p); a full cycle flips the order."""
        i = self.SORTS.index(self.sort_key) + 1
        if i == len(self.SORTS):
            i, self.sort_reverse = 0, not self.sort_reverse
        self.sort_key = self.SORTS[i]
        self.show(list(self.rows_shown))
        return f"{self.sort_key}{' (reversed)' if self.sort_reverse else ''}"

    def selected_number(self) -> int | None:
        if not self.rows_shown or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value
        return int(key) if key is not None else None


class InFlightRow(Vertical, can_focus=True):
    """One experiment in flight: a line of text and its elapsed/limit bar (focus it and press Enter to open)."""

    def __init__(self, item: InFlight) -> None:
        super().__init__(classes="inflight-row")
        self.item = item
        self.number = item.number
        self.label = Static(classes="inflight-label")
        self.bar = ProgressBar(total=item.limit, show_eta=False, show_percentage=False, classes="inflight-bar")

    def compose(self) -> ComposeResult:
        yield self.label
        yield self.bar

    def on_mount(self) -> None:
        self.show(self.item)

    def show(self, item: InFlight) -> None:
        self.item = item
        what = f"seed {item.seeds}" if item.seeds else item.status
        where = f" gpu {item.devices}" if item.devices else ""
        first = Text.assemble((f"exp-{item.number} ", "bold"), f"{what}{where} ",
                              (f"{clock_text(item.elapsed)}/{clock_text(item.limit)}", "dim"))
        hypothesis = Text(item.hypothesis.splitlines()[0] if item.hypothesis else "", "italic")
        for line in (first, hypothesis):
            line.no_wrap, line.overflow = True, "ellipsis"
        self.label.update(Text("\n").join([first, hypothesis]))
        self.bar.update(total=item.limit, progress=min(item.elapsed or 0.0, item.limit))


class InFlightList(VerticalScroll):
    """Experiments in flight, reconciled by number: rows are added, updated or removed, never all rebuilt."""

    def show(self, items: list[InFlight]) -> None:
        current = {row.number: row for row in self.query(InFlightRow)}
        wanted = {item.number for item in items}
        for number, row in current.items():
            if number not in wanted:
                row.remove()
        new_rows = []
        for item in items:
            if item.number in current:
                if current[item.number].item != item:
                    current[item.number].show(item)
            else:
                new_rows.append(InFlightRow(item))
        if new_rows:
            self.mount_all(new_rows)
        empty = self.query("#inflight-empty")
        if not items and not empty:
            self.mount(Static("nothing in flight", id="inflight-empty", classes="dim"))
        elif items and empty:
            empty.remove()

    def numbers(self) -> list[int]:
        return [row.number for row in self.query(InFlightRow)]


class SlotPanel(Static):
    """GPUs (utilisation and memory when the scheduler is at hand, with a short history) and CPU slots."""

    HISTORY = 16

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: dict[str, list[int]] = {}
        self.slots: list[Slot] = []

    def show(self, slots: list[Slot]) -> None:
        if slots == self.slots and not any(s.utilisation is not None for s in slots):
            return
        self.slots = slots
        lines = []
        for slot in slots:
            line = Text.assemble((f"{slot.name:<6}", "bold"))
            if slot.utilisation is not None:
                hist = self.history.setdefault(slot.name, [])
                hist.append(slot.utilisation)
                del hist[:-self.HISTORY]
                spark = "".join(SPARK[min(7, u * 8 // 101)] for u in hist)
                line.append(f"{slot.utilisation:>3}% {spark:<{self.HISTORY}} ", "green")
                if slot.total_mb:
                    line.append(f"{slot.used_mb / 1024:.0f}/{slot.total_mb / 1024:.0f}G ", "dim")
            line.append(slot.holder or "idle", "" if slot.holder else "dim")
            lines.append(line)
        self.update(Text("\n").join(lines))


class EventFeed(RichLog):
    """The latest events, appended as they arrive."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=500, wrap=True, markup=False, min_width=20, **kwargs)

    def show(self, events: list[EventLine]) -> None:
        for e in events:
            where = f"exp-{e.number} " if e.number is not None else ""
            style = "red" if e.kind == "error" else ("green" if "keep" in e.message[:12] else "")
            self.write(Text.assemble((f"{e.ts:%H:%M:%S} ", "dim"), (f"{e.kind:<8} ", "bold"), where,
                                     (e.message.splitlines()[0] if e.message else "", style)))


class MetricPlot(Widget):
    """Every experiment's metric (dots; kept ones bright) and the best so far (a line) against time."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plot: Plot | None = None

    def show(self, plot: Plot | None) -> None:
        if plot != self.plot:
            self.plot = plot
            self.refresh()

    def render(self) -> Text:
        plot = self.plot
        width, height = self.content_size.width, self.content_size.height
        if plot is None or not plot.buckets or plot.y_lo is None or width < 12 or height < 3:
            return Text("no finished experiment yet", style="dim")
        axis = 7
        cols, rows = width - axis - 1, height - 1
        grid = [[(" ", "")] * cols for _ in range(rows)]
        lo, hi = plot.y_lo, plot.y_hi if plot.y_hi != plot.y_lo else plot.y_lo + 1e-9

        def row_of(value: float) -> int:
            frac = (value - lo) / (hi - lo)
            return rows - 1 - min(rows - 1, max(0, round(frac * (rows - 1))))

        best = None
        for c, group in enumerate(_columns(plot.buckets, cols)):
            best = next((b.best for b in reversed(group) if b.best is not None), best)
            if best is not None:
                grid[row_of(best)][c] = ("─", "green")
            for b in group:
                for value in {b.lo, b.hi} - {None}:
                    mark = "↑" if value > hi else "↓" if value < lo else "•"
                    grid[row_of(value)][c] = (mark, "bold green" if b.kept else "yellow")
        text = Text(no_wrap=True, overflow="crop")
        labels = {0: number(hi, 4), rows - 1: number(lo, 4)}
        for r in range(rows):
            text.append(f"{labels.get(r, ''):>{axis}}│", "dim")
            for ch, style in grid[r]:
                text.append(ch, style)
            text.append("\n")
        text.append(f"{'':>{axis}}└{'─' * (cols - 8)}{clock_text(plot.span):>8}", "dim")
        return text


def _columns(buckets: list[Bucket], cols: int) -> list[list[Bucket]]:
    """Spread buckets over `cols` columns (several per column when narrow, gaps when wide)."""
    groups: list[list[Bucket]] = [[] for _ in range(cols)]
    for i, bucket in enumerate(buckets):
        groups[i * cols // len(buckets)].append(bucket)
    return groups
