"""A campaign report: one self-contained HTML page (plots inlined as PNG, no request leaves it) with the metric
over time, the best's per-seed spread against the baseline's, the verdict counts and the kept changes."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: draw to files only (must precede pyplot)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from hive.seeds import seed_stats  # noqa: E402
from hive.store import Campaign, Experiment, Store  # noqa: E402

COLOURS = {"keep": "#2a9d3f", "baseline": "#1f5fbf", "discard": "#9a9a9a"}
CRASH = "#d0453a"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<link rel="icon" href="data:,">
<title>Hive report: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f2f2f2; }} td.text {{ text-align: left; }}
pre {{ background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }}
.plots img {{ max-width: 100%; }}
</style></head>
<body>
<h1>Campaign {name}</h1>
<p>{summary}</p>
<div class="plots">
<h2>{metric} over time</h2>
<img id="plot-progress" alt="{metric} of every experiment, kept ones marked, the best so far as a line" src="{progress}">
<h2>Per-seed values: the best against the baseline</h2>
<img id="plot-seeds" alt="per-seed {metric} of the best and of the baseline" src="{seeds}">
<h2>Verdicts</h2>
<img id="plot-verdicts" alt="experiments by verdict" src="{verdicts}">
</div>
<table>{counts}</table>
<h2>Kept changes</h2>
{kept}
<script>
window.addEventListener("load", function () {{
  var shown = Array.prototype.filter.call(document.images, function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute("data-images-shown", String(shown.length));
}});
</script>
</body></html>
"""


def write_report(store: Store, campaign: Campaign, to: Path) -> dict[str, Any]:
    """Write `to/index.html` for the campaign; return what it holds (path, counts, plots)."""
    metric, direction = campaign.objective_metric, campaign.direction
    exps = [e for e in store.experiments(campaign.id) if e.status == "done"]
    runs = store.runs_for([e.id for e in exps])
    best = store.best(campaign.id)
    baseline = next((e for e in exps if e.kind == "baseline"), None)
    counts = Counter(e.verdict or "unknown" for e in exps)
    kept = [e for e in exps if e.verdict == "keep"]
    values = {e.number: seed_stats(list(runs[e.id]), metric)[0] for e in (best, baseline) if e is not None}
    page = PAGE.format(
        name=html.escape(campaign.name), metric=html.escape(metric), summary=html.escape(_summary(exps, best, baseline,
                                                                                                  metric, direction)),
        progress=_png(_progress_plot(exps, metric, direction)),
        seeds=_png(_seeds_plot(best, baseline, values, metric)),
        verdicts=_png(_verdicts_plot(counts)),
        counts="<tr><th>verdict</th><th>experiments</th></tr>" + "".join(
            f"<tr><td class='text'>{html.escape(v)}</td><td>{n}</td></tr>" for v, n in counts.most_common()),
        kept="\n".join(_kept_html(e, metric) for e in kept) or "<p>No experiment was kept.</p>")
    to.mkdir(parents=True, exist_ok=True)
    path = to / "index.html"
    path.write_text(page, encoding="utf-8")
    return {"campaign": campaign.name, "path": str(path), "experiments": len(exps), "verdicts": dict(counts),
            "kept": [e.number for e in kept], "best": best.number if best else None,
            "plots": ["progress", "seeds", "verdicts"], "bytes": path.stat().st_size}


def _summary(exps: list[Experiment], best: Experiment | None, baseline: Experiment | None, metric: str,
             direction: str) -> str:
    parts = [f"{len(exps)} finished experiment(s); objective: {direction} {metric}."]
    if baseline is not None and baseline.metric_mean is not None:
        parts.append(f"Baseline (exp-{baseline.number}): {baseline.metric_mean:.6g}.")
    if best is not None and best.metric_mean is not None:
        parts.append(f"Best (exp-{best.number}): {best.metric_mean:.6g}.")
    return " ".join(parts)


def _progress_plot(exps: list[Experiment], metric: str, direction: str):
    fig, ax = plt.subplots(figsize=(9, 4))
    better = min if direction == "minimize" else max
    measured = [e for e in exps if e.metric_mean is not None]
    for verdict, colour in COLOURS.items():
        points = [e for e in measured if (e.verdict or "") == verdict]
        if points:
            ax.scatter([e.number for e in points], [e.metric_mean for e in points], s=60 if verdict != "discard" else 25,
                       color=colour, label=verdict, zorder=3, edgecolors="black" if verdict == "keep" else "none")
    failed = [e.number for e in exps if e.metric_mean is None]
    if failed and measured:
        low = min(e.metric_mean for e in measured)
        ax.scatter(failed, [low] * len(failed), marker="x", color=CRASH, label="no metric (crash, refused)")
    line_x, line_y, current = [], [], None
    for e in sorted(measured, key=lambda e: e.number):
        if e.verdict in ("keep", "baseline"):
            current = e.metric_mean if current is None else better(current, e.metric_mean)
        if current is not None:
            line_x.append(e.number)
            line_y.append(current)
    if line_x:
        ax.step(line_x, line_y, where="post", color=COLOURS["keep"], label="best so far")
    ax.set_xlabel("experiment")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _seeds_plot(best: Experiment | None, baseline: Experiment | None, values: dict[int, list[float]], metric: str):
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = [(f"baseline (exp-{baseline.number})", values.get(baseline.number, []), COLOURS["baseline"])
              if baseline else None]
    if best is not None and (baseline is None or best.number != baseline.number):
        groups.append((f"best (exp-{best.number})", values.get(best.number, []), COLOURS["keep"]))
    groups = [g for g in groups if g and g[1]]
    for i, (label, vals, colour) in enumerate(groups):
        ax.scatter([i] * len(vals), vals, color=colour, s=50, zorder=3)
        ax.hlines(sum(vals) / len(vals), i - 0.2, i + 0.2, color=colour)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups])
    ax.set_xlim(-0.6, max(len(groups), 1) - 0.4)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, axis="y")
    return fig


def _verdicts_plot(counts: Counter):
    fig, ax = plt.subplots(figsize=(6, 3))
    names = [v for v, _ in counts.most_common()]
    ax.bar(names, [counts[v] for v in names], color=[COLOURS.get(v, CRASH) for v in names])
    ax.set_ylabel("experiments")
    return fig


def _png(fig) -> str:  # noqa: ANN001  (a matplotlib Figure)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _kept_html(exp: Experiment, metric: str) -> str:
    p = f", p = {exp.p_value:.3g}" if exp.p_value is not None else ""
    value = f"{exp.metric_mean:.6g}" if exp.metric_mean is not None else "-"
    return (f"<h3>exp-{exp.number}: {html.escape(exp.hypothesis or '')}</h3>\n"
            f"<p>{html.escape(metric)} = {value}{p}; {html.escape(exp.verdict_reason or '')}</p>\n"
            f"<pre>{html.escape(exp.diff or '(no diff: its knobs are flags or environment variables)')}</pre>")
