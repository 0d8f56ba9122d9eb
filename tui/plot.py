"""The dashboard's metric plot as plain data: experiments bucketed by finish time, keeps marked, the best's line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PLOT_BUCKETS = 120


@dataclass(frozen=True)
class Bucket:
    lo: float | None
    hi: float | None
    kept: bool
    best: float | None


@dataclass(frozen=True)
class Plot:
    buckets: list[Bucket]
    y_lo: float | None
    y_hi: float | None
    span: float


def make_plot(points: list[tuple[datetime, float, str]], start: datetime | None, now: datetime,
              direction: str, buckets: int = PLOT_BUCKETS) -> Plot:
    """Bucket experiment metrics by finish time; each bucket keeps its range, whether it holds a keep, and the best."""
    if not points:
        return Plot([], None, None, 0.0)
    start = start or points[0][0]
    span = max(1.0, (max(now, points[-1][0]) - start).total_seconds())
    better = min if direction == "minimize" else max
    lo_hi: list[list[float]] = [[] for _ in range(buckets)]
    kept = [False] * buckets
    best_at: list[float | None] = [None] * buckets
    for ts, value, verdict in points:
        i = min(buckets - 1, max(0, int((ts - start).total_seconds() / span * buckets)))
        lo_hi[i].append(value)
        if verdict in ("keep", "baseline"):
            kept[i] = True
            best_at[i] = value if best_at[i] is None else better(best_at[i], value)
    out, best = [], None
    for i in range(buckets):
        if best_at[i] is not None:
            best = best_at[i] if best is None else better(best, best_at[i])
        values = lo_hi[i]
        out.append(Bucket(min(values) if values else None, max(values) if values else None, kept[i], best))
    values = sorted(v for _, v, _ in points)
    # clip outliers so one diverged run does not flatten the rest of the plot
    if direction == "minimize":
        y_lo, y_hi = values[0], values[int(0.9 * (len(values) - 1))]
        y_hi = max(y_hi, next((b.best for b in out if b.best is not None), y_hi))
    else:
        y_lo, y_hi = values[int(0.1 * (len(values) - 1))], values[-1]
        y_lo = min(y_lo, next((b.best for b in out if b.best is not None), y_lo))
    return Plot(out, y_lo, y_hi, span)
