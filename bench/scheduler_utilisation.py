"""GPU-seconds busy under Hive's scheduler versus synchronous batches, on simulated GPUs, in one process run.

Each run sleeps for its duration while holding its GPUs. Utilisation = GPU-seconds held by runs divided by
(GPUs x wall time from the first start to the last finish). Hive: a producer keeps a queue of requests and
each run takes a lease as soon as GPUs free up. Baseline: fill the GPUs with a batch, wait for its slowest
run, then start the next batch. The steady-state figure stops at the last start: the drain after it (GPUs idling
while the last long runs finish) costs any scheduler that does not know run lengths, and shrinks with campaign length.

    python bench/scheduler_utilisation.py [--runs 200] [--seeds 3] [--out bench/results/scheduler_utilisation.json]

Packing (`--packing`, written to bench/results/scheduler_packing.json): one workload of small runs, each needing a
few GB of an 80 GB GPU, run twice on the same simulated GPUs: every run leased a whole GPU (without packing), and
every run leased a share of one by its memory (`gpu_memory_mb`, with packing). Runs per GPU-hour = runs / (GPUs x
wall hours from the first start to the last finish), with one simulated second standing for one minute of a real
run. The simulation assumes a packed run takes as long as it would alone, which holds only while the GPU's compute
is not the bottleneck (runs this small leave most of it idle); bench/gpu_check.sh measures the real effect.
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
GPU_MB = 81920  # an 80 GB GPU, as the simulated inventory reads it
PACKED_MEMORY_MB = (4000, 8000, 16000, 24000)  # what a small run asks: autoresearch- to CPU-Parameter-Golf-sized
SIM_MINUTES_PER_SECOND = 1.0  # one simulated second stands for one minute of a real run


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


async def feed(jobs: list, queued: asyncio.Semaphore, run) -> None:  # noqa: ANN001
    """Start `run(i, job)` for each job as the driver would: only while fewer than the semaphore's depth wait."""
    tasks = []
    for i, job in enumerate(jobs):
        await queued.acquire()
        tasks.append(asyncio.create_task(run(i, job)))
    await asyncio.gather(*tasks)


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

    await feed(jobs, queued, run)
    return spans


@dataclass
class SmallJob:
    memory_mb: int
    seconds: float


def make_small_jobs(runs: int, seed: int) -> list[SmallJob]:
    """The durations of make_jobs; each run asks 4, 8, 16 or 24 GB of one GPU (none needs a GPU to itself)."""
    rng = random.Random(seed)
    return [SmallJob(memory_mb=rng.choice(PACKED_MEMORY_MB),
                     seconds=min(MAX_SECONDS, max(MIN_SECONDS, 0.04 * math.exp(rng.gauss(0, 0.8)))))
            for _ in range(runs)]


async def run_small(jobs: list[SmallJob], n_gpus: int, packed: bool) -> tuple[list[Span], int]:
    """The jobs under Hive's scheduler, each leasing a share of a GPU by its memory (packed) or a whole GPU."""
    scheduler = Scheduler(SimulatedInventory(n_gpus, memory_mb=GPU_MB))
    spans: list[Span] = []
    in_flight, most = [0], [0]
    queued = asyncio.Semaphore(2 * n_gpus * scheduler.max_runs_per_gpu)  # the same depth for both: enough to pack

    async def run(i: int, job: SmallJob) -> None:
        ask = {"gpu_memory_mb": job.memory_mb} if packed else {"gpus": 1}
        try:
            async with scheduler.lease(f"run{i}", **ask) as lease:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
                start = time.perf_counter()
                await asyncio.sleep(job.seconds)
                spans.append(Span(start, time.perf_counter(), len(lease.devices)))
                in_flight[0] -= 1
        finally:
            queued.release()

    await feed(jobs, queued, run)
    return spans, most[0]


def runs_per_gpu_hour(spans: list[Span], n_gpus: int) -> dict:
    wall = max(s.end for s in spans) - min(s.start for s in spans)
    hours = wall * SIM_MINUTES_PER_SECOND / 60
    return {"runs": len(spans), "wall_seconds": round(wall, 3), "runs_per_gpu_hour": round(len(spans) / (n_gpus * hours), 1)}


def measure_packing(runs: int, seeds: int) -> dict:
    scenarios = []
    for n_gpus in (1, 4):
        for seed in range(seeds):
            jobs = make_small_jobs(runs, seed)
            row = {"gpus": n_gpus, "seed": seed, "runs": len(jobs)}
            for name, packed in (("without_packing", False), ("with_packing", True)):
                spans, most = asyncio.run(run_small(jobs, n_gpus, packed))
                row[name] = {**runs_per_gpu_hour(spans, n_gpus), "most_runs_at_once": most}
            row["gain"] = round(row["with_packing"]["runs_per_gpu_hour"] / row["without_packing"]["runs_per_gpu_hour"], 2)
            print(f"{n_gpus:>4}  {seed:>4}  {row['without_packing']['runs_per_gpu_hour']:>10.1f}  "
                  f"{row['with_packing']['runs_per_gpu_hour']:>10.1f}  {row['gain']:>5.2f}x  "
                  f"(at most {row['with_packing']['most_runs_at_once']} at once)", flush=True)
            scenarios.append(row)
    summary = []
    for n_gpus in (1, 4):
        rows = [s for s in scenarios if s["gpus"] == n_gpus]
        mean = {name: round(sum(r[name]["runs_per_gpu_hour"] for r in rows) / len(rows), 1)
                for name in ("without_packing", "with_packing")}
        summary.append({"gpus": n_gpus, "runs_per_gpu_hour_mean": mean,
                        "gain_mean": round(sum(r["gain"] for r in rows) / len(rows), 2),
                        "gain_min": min(r["gain"] for r in rows), "gain_max": max(r["gain"] for r in rows)})
        print(f"{n_gpus} GPU(s), mean of {len(rows)} workloads: runs per GPU-hour without packing "
              f"{mean['without_packing']}, with packing {mean['with_packing']} "
              f"({summary[-1]['gain_mean']}x)")
    return {"workload": {"runs": runs, "seeds": list(range(seeds)), "seconds": [MIN_SECONDS, MAX_SECONDS],
                         "distribution": "0.04 * lognormal(0, 0.8), clipped", "memory_mb": list(PACKED_MEMORY_MB),
                         "gpu_memory_mb": GPU_MB, "simulated_minutes_per_second": SIM_MINUTES_PER_SECOND,
                         "max_runs_per_gpu": inspect.signature(Scheduler).parameters["max_runs_per_gpu"].default},
            "metric": "runs / (GPUs x wall hours, first start to last finish); a packed run is assumed to take "
                      "as long as it would alone",
            "summary": summary, "scenarios": scenarios}


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
    parser.add_argument("--packing", action="store_true",
                        help="measure runs per GPU-hour with and without packing instead (scheduler_packing.json)")
    args = parser.parse_args()
    if args.packing:
        print(f"{'GPUs':>4}  {'seed':>4}  {'whole/hour':>10}  {'packed/hour':>10}  gain")
        out = args.out if args.out.name != "scheduler_utilisation.json" else args.out.with_name("scheduler_packing.json")
        result = {"benchmark": "scheduler_packing",
                  "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                              "python": platform.python_version(), "load_average": os.getloadavg()},
                  **measure_packing(args.runs, args.seeds)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        return
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
