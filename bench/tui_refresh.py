"""How long one TUI refresh takes with 10,000 experiments in the store: snapshot build + apply (goal < 100 ms).

    python bench/tui_refresh.py [--experiments 10000] [--refreshes 30]

Builds a campaign store in a temp folder (experiments, 3 runs each, 5 events each, a few in flight), opens the
dashboard headless at 120x40, and between refreshes writes what a running campaign writes (a finished experiment,
its events, a new run). Prints the timings and writes bench/results/tui_refresh.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from hive.store.home import open_store
from hive.store import Campaign, Event, Experiment, Run, Store

RESULTS = Path(__file__).resolve().parent / "results" / "tui_refresh.json"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
VERDICTS = ["discard"] * 80 + ["keep"] * 2 + ["crash"] * 8 + ["timeout"] * 5 + ["edit_failed"] * 5


def build_store(home: Path, n: int, in_flight: int = 8) -> Store:
    """A campaign with n experiments (the last `in_flight` still running), 3 runs and 5 events per experiment."""
    rng = random.Random(0)
    (home / "bench").mkdir(parents=True)
    store = open_store(home, "bench")
    playbook = {"run": {"timeout": 600}, "budget": {"max_experiments": n + 1000, "max_hours": 48},
                "objective": {"metric": "val_bpb", "direction": "minimize"}}
    camp = store.add(Campaign(name="bench", playbook_json=json.dumps(playbook), status="running", started_at=T0,
                              updated_at=T0))
    exps, runs, events = [], [], []
    best = 1.5
    for number in range(1, n + 1):
        done = T0 + timedelta(seconds=30 * number)
        running = number > n - in_flight
        verdict = "baseline" if number == 1 else rng.choice(VERDICTS)
        value = None if verdict in ("crash", "timeout", "edit_failed") else best + abs(rng.gauss(0, 0.05))
        if verdict == "keep":
            value = best = best - 0.001
        exps.append({"id": number, "campaign_id": camp.id, "number": number, "hypothesis": f"hypothesis {number} " * 4,
                     "rationale": "", "proposal_json": "{}", "diff": "--- a\n+++ b\n" * 20, "verdict_reason": "",
                     "kind": "baseline" if number == 1 else "candidate", "status": "running" if running else "done",
                     "verdict": None if running else verdict, "metric_mean": None if running else value,
                     "metric_std": 0.001, "n_seeds": 3, "created_at": done - timedelta(seconds=60),
                     "started_at": done - timedelta(seconds=50), "finished_at": None if running else done,
                     "commit": "", "parent_commit": "", "gpu_seconds": 0.0, "cpu_seconds": 0.0})
        for seed in (1, 2, 3):
            runs.append({"experiment_id": number, "seed": seed, "status": "running" if running else "ok",
                         "metrics_json": json.dumps({"val_bpb": value}), "devices": str(seed - 1) if running else "",
                         "log_path": "", "error": "", "started_at": done - timedelta(seconds=40)})
        for k, kind in enumerate(("propose", "code", "run", "seed", "verdict")):
            events.append({"campaign_id": camp.id, "ts": done + timedelta(milliseconds=k), "experiment_number": number,
                           "kind": kind, "message": f"{kind} of exp-{number}"})
    with store.engine.begin() as conn:
        conn.execute(insert(Experiment), exps)
        conn.execute(insert(Run), runs)
        conn.execute(insert(Event), events)
    return store


def write_like_a_campaign(store: Store, campaign_id: int, i: int) -> None:
    """What a running campaign writes between two refreshes: a finished experiment, a run, some events."""
    exp = store.new_experiment(campaign_id, hypothesis=f"new hypothesis {i}", status="done", verdict="discard",
                               metric_mean=1.6 + i / 1000, n_seeds=1, finished_at=datetime.now(UTC))
    store.add(Run(experiment_id=exp.id, seed=1, status="ok"))
    for kind in ("propose", "run", "verdict"):
        store.event(campaign_id, kind, f"{kind} of exp-{exp.number}", exp.number)


def ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median": round(statistics.median(values) * 1000, 2),
            "p95": round(values[min(len(values) - 1, int(0.95 * len(values)))] * 1000, 2),
            "max": round(values[-1] * 1000, 2)}


async def measure(home: Path, refreshes: int) -> dict:
    from tui.app import HiveApp

    app = HiveApp(home, "bench", refresh_seconds=3600)
    build, apply, total = [], [], []
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.pause()
        store, cid = app.source.store, app.source.campaign_id
        for i in range(refreshes):
            write_like_a_campaign(store, cid, i)
            t0 = time.perf_counter()
            snapshot = app.source.build()
            t1 = time.perf_counter()
            screen.apply(snapshot)
            t2 = time.perf_counter()
            build.append(t1 - t0)
            apply.append(t2 - t1)
            total.append(t2 - t0)
            await pilot.pause()
        rows = screen.query_one("#leaderboard").row_count
    return {"build_ms": ms(build), "apply_ms": ms(apply), "refresh_ms": ms(total), "leaderboard_rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--refreshes", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        store = build_store(home, args.experiments)
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        from tui.data import DashboardSource

        DashboardSource(home, "bench", lambda: datetime.now(UTC)).build()
        cold = time.perf_counter() - t0
        result = asyncio.run(measure(home, args.refreshes))
        store.engine.dispose()
    result = {"experiments": args.experiments, "runs": args.experiments * 3, "events": args.experiments * 5,
              "refreshes": args.refreshes, "goal_ms": 100, "first_build_ms": round(cold * 1000, 1),
              **result, "store_setup_s": round(setup, 2), "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    r = result["refresh_ms"]
    print(f"TUI refresh with {args.experiments} experiments: median {r['median']} ms, p95 {r['p95']} ms "
          f"(build {result['build_ms']['median']} ms + apply {result['apply_ms']['median']} ms; "
          f"first build {result['first_build_ms']} ms; goal < 100 ms) -> {RESULTS}")


if __name__ == "__main__":
    main()
