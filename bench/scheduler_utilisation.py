"""GPU-seconds busy under Hive's scheduler versus synchronous batches, on simulated GPUs, in one process run.

Each run sleeps for its duration while holding its GPUs. Utilisation = GPU-seconds held by runs divided by
(GPUs x wall time from the first start to the last finish). Hive: a producer keeps a queue of requests and
each run takes a lease as soon as GPUs free up. Baseline: fill the GPUs with a batch, wait for its slowest
run, then start the next batch. The steady-state figure stops at the last start: the drain after it (GPUs idling
while the last long runs finish) costs any scheduler that does not know run lengths, and shrinks with campaign length.

    python bench/scheduler_utilisation.py [--runs 200] [--seeds 3] [--out bench/results/scheduler_utilisation.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import inspect
import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

from hive.scheduler import Scheduler, SimulatedInventory

DEFAULT_LIMIT = inspect.signature(Scheduler).parameters["starvation_limit"].default

MIN_SECONDS, MAX_SECONDS = 0.01, 0.2
TWO_GPU_SHARE = 0.2


@dataclass
class Job:
    gpus: int
    seconds: float


@dataclass
class Span:
    start: float
    end: float
    gpus: int


def make_jobs(runs: int, seed: int) -> list[Job]:
    """Heavy-tailed durations (lognormal, clipped to 0.01-0.2 s); a fifth of the runs need 2 GPUs."""
    rng = random.Random(seed)
    jobs = []
    for _ in range(runs):
        seconds = min(MAX_SECONDS, max(MIN_SECONDS, 0.04 * math.exp(rng.gauss(0, 0.8))))
        jobs.append(Job(gpus=2 if rng.random() < TWO_GPU_SHARE else 1, seconds=seconds))
    return jobs


def utilisation(spans: list[Span], n_gpus: int) -> dict:
    """Busy fraction over the whole span, and over the steady state (up to the last start, before the drain)."""
    first, last_start = min(s.start for s in spans), max(s.start for s in spans)
    wall = max(s.end for s in spans) - first
    busy = sum((s.end - s.start) * s.gpus for s in spans)
    steady = sum((min(s.end, last_start) - s.start) * s.gpus for s in spans if s.start < last_start)
    return {"utilisation": busy / (n_gpus * wall),
            "steady_state_utilisation": steady / (n_gpus * (last_start - first)),
            "wall_seconds": wall, "busy_gpu_seconds": busy}


async def run_hive(jobs: list[Job], n_gpus: int, starvation_limit: int) -> list[Span]:
    scheduler = Scheduler(SimulatedInventory(n_gpus), starvation_limit=starvation_limit)
    spans: list[Span] = []
    queued = asyncio.Semaphore(2 * n_gpus)  # the campaign driver keeps about this many experiments ready

    async def run(i: int, job: Job) -> None:
        try:
            async with scheduler.lease(f"run{i}", gpus=job.gpus):
                start = time.perf_counter()
                await asyncio.sleep(job.seconds)
                spans.append(Span(start, time.perf_counter(), job.gpus))
        finally:
            queued.release()

    tasks = []
    for i, job in enumerate(jobs):
        await queued.acquire()
        tasks.append(asyncio.create_task(run(i, job)))
    await asyncio.gather(*tasks)
    return spans


async def run_batches(jobs: list[Job], n_gpus: int) -> list[Span]:
    spans: list[Span] = []

    async def run(job: Job) -> None:
        start = time.perf_counter()
        await asyncio.sleep(job.seconds)
        spans.append(Span(start, time.perf_counter(), job.gpus))

    i = 0
    while i < len(jobs):
        batch, used = [], 0
        while i < len(jobs) and used + jobs[i].gpus <= n_gpus:
            batch.append(jobs[i])
            used += jobs[i].gpus
            i += 1
        await asyncio.gather(*(run(job) for job in batch))
    return spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3, help="workloads to measure (seeds 0..N-1)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scheduler_utilisation.json")
    parser.add_argument("--starvation-limits", default=f"{DEFAULT_LIMIT},4",
                        help="backfill bounds to measure; the first is the scheduler's default")
    args = parser.parse_args()
    limits = [int(x) for x in args.starvation_limits.split(",")]

    scenarios = []
    for n_gpus in (4, 8):
        for seed in range(args.seeds):
            jobs = make_jobs(args.runs, seed)
            scenarios.append({
                "gpus": n_gpus, "seed": seed, "runs": len(jobs), "two_gpu_runs": sum(j.gpus == 2 for j in jobs),
                "total_gpu_seconds": sum(j.seconds * j.gpus for j in jobs),
                "hive": {str(limit): utilisation(asyncio.run(run_hive(jobs, n_gpus, limit)), n_gpus)
                         for limit in limits},
                "synchronous_batches": utilisation(asyncio.run(run_batches(jobs, n_gpus)), n_gpus)})

    header = "".join(f"  {'hive L=' + str(limit):>9}  {'steady':>6}" for limit in limits)
    print(f"{'GPUs':>4}  {'seed':>4}{header}  {'batches':>7}")
    for s in scenarios:
        cells = "".join(f"  {s['hive'][str(limit)]['utilisation']:>9.1%}  "
                        f"{s['hive'][str(limit)]['steady_state_utilisation']:>6.1%}" for limit in limits)
        print(f"{s['gpus']:>4}  {s['seed']:>4}{cells}  {s['synchronous_batches']['utilisation']:>7.1%}")

    summary = []
    for n_gpus in (4, 8):
        rows = [s for s in scenarios if s["gpus"] == n_gpus]
        picks = {"synchronous_batches": lambda s: s["synchronous_batches"]["utilisation"]}
        for limit in limits:
            picks[f"hive_limit_{limit}"] = lambda s, key=str(limit): s["hive"][key]["utilisation"]
            picks[f"hive_limit_{limit}_steady_state"] = \
                lambda s, key=str(limit): s["hive"][key]["steady_state_utilisation"]
        row = {"gpus": n_gpus}
        for name, pick in picks.items():
            values = [pick(s) for s in rows]
            row[name] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
        summary.append(row)
        hive = ", ".join(f"limit {limit}: {row[f'hive_limit_{limit}']['mean']:.1%} "
                         f"(steady {row[f'hive_limit_{limit}_steady_state']['mean']:.1%})" for limit in limits)
        print(f"{n_gpus} GPUs, mean of {len(rows)} workloads: hive {hive}; "
              f"batches {row['synchronous_batches']['mean']:.1%}")

    result = {
        "benchmark": "scheduler_utilisation",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "workload": {"runs": args.runs, "seeds": list(range(args.seeds)), "seconds": [MIN_SECONDS, MAX_SECONDS],
                     "distribution": "0.04 * lognormal(0, 0.8), clipped", "two_gpu_share": TWO_GPU_SHARE},
        "default_starvation_limit": DEFAULT_LIMIT,
        "metric": "GPU-seconds held by runs / (GPUs x wall time from the first start to the last finish); "
                  "steady state: the same up to the last start, leaving out the final drain",
        "summary": summary,
        "scenarios": scenarios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
