"""The GPU check: what NVML sees, then one short campaign packing runs on one GPU and the same one-at-a-time.

`bench/gpu_check.sh` runs this with the Python that has Hive. Without an NVIDIA GPU it prints one line saying so,
writes a JSON that says so and exits 0. With one it runs the Parameter Golf template's GPU profile twice, in this
one process run: packed (several runs share the GPU by memory) and one-at-a-time (`scheduler.max_runs_per_gpu=1`),
and writes each run's device and peak GPU memory, each campaign's wall time and runs-per-GPU-hour for both.

    python bench/gpu_check.py [--out bench/results/gpu_check.json] [--experiments 6] [--minutes 3]
    python bench/gpu_check.py --simulate-gpus 1 --playbook playbooks/quickstart.yaml \
        -c run.resources.gpu_memory_mb=20000       # a rehearsal of the GPU path on simulated GPUs (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._common import machine  # noqa: E402
from hive.store.home import open_store  # noqa: E402

DEFAULT_PLAYBOOK = ROOT / "playbooks" / "param_golf.yaml"
MODES = {"packed": [], "one_at_a_time": ["-c", "scheduler.max_runs_per_gpu=1"]}


def hive(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hive", *args], capture_output=True, text=True, timeout=timeout)


def nvidia_smi() -> str | None:
    """`nvidia-smi -L` (one line per GPU), or None where there is no nvidia-smi or it fails."""
    if shutil.which("nvidia-smi") is None:
        return None
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def campaign(playbook: Path, mode: str, overrides: list[str], experiments: int, minutes: float,
             simulate_gpus: int | None, home: Path) -> dict:
    """Run one campaign headless and read back, from its store, where each run ran and what it took."""
    args = ["start", str(playbook), "--headless", "--max-experiments", str(experiments), "--workspaces", str(home),
            "-c", f"budget.max_hours={minutes / 60:.4f}", *(x for o in overrides for x in ("-c", o)), *MODES[mode]]
    if simulate_gpus:
        args += ["--simulate-gpus", str(simulate_gpus)]
    print(f"gpu_check: campaign {mode}: hive {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hive", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in proc.stdout:  # headless prints one line per event: pass them on as progress
        print(f"  [{mode}] {line.rstrip()}", flush=True)
        tail = (tail + [line.rstrip()])[-20:]
    rc = proc.wait()
    wall = time.perf_counter() - t0
    name = playbook.stem
    store = open_store(home, name)
    camp = store.campaign(name)
    if camp is None:
        return {"returncode": rc, "wall_seconds": round(wall, 2), "error": "\n".join(tail), "runs": []}
    exps = {e.id: e for e in store.experiments(camp.id)}
    runs = []
    for exp_id, exp_runs in store.runs_for(list(exps)).items():
        for r in exp_runs:
            metrics = r.metrics
            runs.append({
                "experiment": exps[exp_id].number, "seed": r.seed, "status": r.status, "devices": r.devices,
                "device": metrics.get("run.device"), "peak_gpu_memory_mb": metrics.get("run.peak_gpu_memory_mb"),
                "peak_gpu_reserved_mb": metrics.get("run.peak_gpu_reserved_mb"), "wall_seconds": r.wall_seconds,
                "started_at": r.started_at.isoformat() if r.started_at else None,
                "finished_at": r.finished_at.isoformat() if r.finished_at else None})
    return {"returncode": rc, "wall_seconds": round(wall, 2), "experiments": len(exps), **throughput(runs),
            "runs": sorted(runs, key=lambda r: (r["experiment"], r["seed"]))}


def throughput(runs: list[dict]) -> dict:
    """Finished runs per GPU-hour over the span from the first run's start to the last one's finish."""
    done = [r for r in runs if r["started_at"] and r["finished_at"] and r["status"] == "ok"]
    if not done:
        return {"runs_ok": 0, "gpus_used": 0, "span_seconds": None, "runs_per_gpu_hour": None, "most_at_once": 0}
    spans = [(datetime.fromisoformat(r["started_at"]).timestamp(), datetime.fromisoformat(r["finished_at"]).timestamp())
             for r in done]
    span = max(e for _, e in spans) - min(s for s, _ in spans)
    gpus = len({d for r in done for d in r["devices"].split(",") if d}) or 1
    at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    return {"runs_ok": len(done), "gpus_used": gpus, "span_seconds": round(span, 2),
            "runs_per_gpu_hour": round(len(done) / (gpus * span / 3600), 1) if span > 0 else None,
            "most_at_once": at_once}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check.json")
    parser.add_argument("--playbook", type=Path, default=DEFAULT_PLAYBOOK)
    parser.add_argument("-c", dest="overrides", action="append", default=None,
                        help="playbook override (default for param_golf: profile=gpu)")
    parser.add_argument("--experiments", type=int, default=6, help="experiments per campaign (baseline included)")
    parser.add_argument("--minutes", type=float, default=3.0, help="each campaign's budget.max_hours, in minutes")
    parser.add_argument("--simulate-gpus", type=int, default=None, help="rehearse on N simulated GPUs (no NVML)")
    args = parser.parse_args()
    overrides = args.overrides if args.overrides is not None else (
        ["profile=gpu"] if args.playbook.resolve() == DEFAULT_PLAYBOOK else [])

    gpus_args = ["gpus", "--json", *(["--simulate-gpus", str(args.simulate_gpus)] if args.simulate_gpus else [])]
    proc = hive(*gpus_args, timeout=120)
    if proc.returncode != 0:
        print(f"gpu_check: `hive gpus --json` failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return 1
    seen = json.loads(proc.stdout)
    result: dict = {"benchmark": "gpu_check", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "machine": machine(), "nvidia_smi": nvidia_smi(), "hive_gpus": seen,
                    "simulated": bool(args.simulate_gpus)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not seen["devices"]:
        reason = (f"no NVIDIA GPU: NVML sees none (hive gpus: inventory {seen['inventory']}, "
                  f"{seen['cpu_slots']} CPU slots); nothing was run on a GPU")
        print(f"gpu_check: {reason}")
        args.out.write_text(json.dumps({**result, "gpu": False, "reason": reason}, indent=2) + "\n")
        print(f"gpu_check: wrote {args.out}")
        return 0

    device = seen["devices"][0]
    print(f"gpu_check: {len(seen['devices'])} GPU(s) seen ({seen['inventory']}): GPU 0 {device['name']}, "
          f"{device['total_mb']} MB", flush=True)
    campaigns = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        for mode in MODES:
            campaigns[mode] = campaign(args.playbook, mode, overrides, args.experiments, args.minutes,
                                       args.simulate_gpus, Path(tmp) / mode)
    packed, alone = campaigns["packed"]["runs_per_gpu_hour"], campaigns["one_at_a_time"]["runs_per_gpu_hour"]
    gain = round(packed / alone, 2) if packed and alone else None
    result.update({"gpu": True, "device": {k: device[k] for k in ("index", "name", "total_mb")},
                   "playbook": str(args.playbook), "overrides": overrides, "experiments": args.experiments,
                   "campaigns": campaigns, "packing_gain": gain})
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for mode, c in campaigns.items():
        print(f"gpu_check: {mode:<13} exit {c['returncode']}, {c.get('runs_ok', 0)} runs ok in "
              f"{c['wall_seconds']} s, at most {c.get('most_at_once', 0)} at once: "
              f"{c.get('runs_per_gpu_hour')} runs per GPU-hour")
    print(f"gpu_check: packing gives {gain}x the runs per GPU-hour of one-at-a-time; wrote {args.out}")
    return 0 if all(c["returncode"] == 0 for c in campaigns.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
