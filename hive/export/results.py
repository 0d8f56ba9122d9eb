"""A campaign's results as a table: autoresearch's results.tsv (commit, metric, memory_gb, status, description), or
CSV / JSON with every seed and every metric."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from hive.errors import BadInput
from hive.store import Campaign, Experiment, Run, Store

RESULT_FORMATS = ("tsv", "csv", "json")
# autoresearch knows three statuses; every Hive verdict is one of them
STATUS = {"baseline": "keep", "keep": "keep", "discard": "discard", "pruned": "discard"}
# what a run may report as its peak memory, in MB, best first (GPU memory is what autoresearch records)
MEMORY_KEYS = ("peak_gpu_memory_mb", "peak_vram_mb", "peak_memory_mb")


def results(store: Store, campaign: Campaign, fmt: str) -> str:
    """The campaign's finished experiments in `fmt` (tsv: autoresearch's columns; csv: one row per seed; json)."""
    if fmt not in RESULT_FORMATS:
        raise BadInput(f"--format: {fmt!r} is not one of {', '.join(RESULT_FORMATS)}")
    metric = campaign.objective_metric
    exps = [e for e in store.experiments(campaign.id) if e.status == "done"]
    runs = store.runs_for([e.id for e in exps])
    if fmt == "tsv":
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["commit", metric, "memory_gb", "status", "description"])
        for exp in exps:
            status = status_of(exp)
            value = exp.metric_mean if status != "crash" and exp.metric_mean is not None else 0.0
            writer.writerow([(exp.commit or "")[:7], f"{value:.6f}", f"{memory_gb(runs[exp.id]):.1f}", status,
                             _one_line(exp.hypothesis)])
        return out.getvalue()
    rows = [experiment_row(exp, runs[exp.id]) for exp in exps]
    if fmt == "json":
        return json.dumps({"campaign": campaign.name, "metric": metric, "direction": campaign.direction,
                           "experiments": rows}, indent=2, default=str) + "\n"
    keys = sorted({k for row in rows for run in row["runs"] for k in run["metrics"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["experiment", "commit", "verdict", "status", "description", "seed", "run_status", *keys,
                     "command"])
    for row in rows:
        for run in row["runs"] or [{"seed": "", "status": "", "metrics": {}, "command": ""}]:
            writer.writerow([row["experiment"], row["commit"], row["verdict"], row["status"], row["description"],
                             run["seed"], run["status"], *[run["metrics"].get(k, "") for k in keys], run["command"]])
    return out.getvalue()


def status_of(exp: Experiment) -> str:
    """autoresearch's status of an experiment: keep, discard or crash."""
    return STATUS.get(exp.verdict or "", "crash")


def memory_gb(runs: list[Run]) -> float:
    """The largest peak memory of an experiment's runs, in GB: GPU memory when the run reports it, else RSS."""
    peaks = []
    for run in runs:
        reported = next((run.metrics[k] for k in MEMORY_KEYS if isinstance(run.metrics.get(k), (int, float))), None)
        peaks.append(reported if reported is not None else run.peak_rss_mb or 0.0)
    return max(peaks, default=0.0) / 1024


def experiment_row(exp: Experiment, runs: list[Run]) -> dict[str, Any]:
    return {"experiment": exp.number, "commit": exp.commit, "verdict": exp.verdict, "status": status_of(exp),
            "description": _one_line(exp.hypothesis), "metric_mean": exp.metric_mean, "metric_std": exp.metric_std,
            "p_value": exp.p_value, "memory_gb": round(memory_gb(runs), 3), "parent": exp.parent_number,
            "runs": [{"seed": r.seed, "status": r.status, "metrics": r.metrics, "command": r.command} for r in runs]}


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())
