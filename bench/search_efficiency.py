"""Search efficiency on CPU Parameter Golf: what each strategy's best is really worth after the same budget.

Strategies (same playbook, same short runs, same number of experiments, several campaign seeds):
  optuna  - Hive's default: TPE over the knobs, noise-aware critic (first seed screens, 3 seeds, Welch)
  random  - random search, same critic
  greedy  - autoresearch's rule: change one knob of the best at a time, keep if the single run is lower
Every campaign's final best commit is then re-run on 3 fresh seeds (never seen by the campaign), so the table
compares true quality, not each rule's own optimistic report.
Run: python bench/search_efficiency.py [--experiments 8] [--campaign-seeds 2] [--iterations 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._common import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = {
    "optuna": [],
    "random": ["strategist=random"],
    "greedy": ["strategist=greedy", "objective.confirm_seeds=1", "objective.min_delta=0"],
}
FRESH_SEEDS = [101, 102, 103]


def short_runs(iterations: int) -> list[str]:
    # a short fixed step count, and a time limit that kills configurations far too big for it
    return [f"run.env.ITERATIONS={iterations}", "run.env.MAX_WALLCLOCK_SECONDS=0", "run.timeout=150"]


def run_campaign(home: Path, name: str, overrides: list[str], experiments: int) -> dict:
    args = [sys.executable, "-m", "hive", "start", str(ROOT / "playbooks" / "param_golf.yaml"), "--headless",
            "--campaign", name, "--max-experiments", str(experiments)]
    for o in overrides:
        args += ["-c", o]
    env = {**os.environ, "HIVE_HOME": str(home)}
    env.pop("HIVE_DB_URL", None)
    started = time.monotonic()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"campaign {name} failed: {proc.stderr[-1500:]}")
    shown = subprocess.run([sys.executable, "-m", "hive", "status", name, "--json"], env=env,
                           capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"hive status {name} failed: {shown.stderr[-1500:]}")
    status = json.loads(shown.stdout)
    status["wall_seconds"] = time.monotonic() - started
    return status


def fresh_score(home: Path, name: str, overrides: list[str]) -> list[float]:
    """The best commit's val_bpb on seeds the campaign never used."""
    from hive.store.home import open_store
    from hive.executors import LocalExecutor
    from hive.objective import metric_value
    from hive.playbook import load_playbook
    from hive.runner import Runner
    from hive.workspace import Workspace

    pb = load_playbook(ROOT / "playbooks" / "param_golf.yaml", overrides)
    store = open_store(home, name)
    best = store.best(store.campaign(name).id)
    ws = Workspace(home / name, name)
    runner = Runner(pb, ws, LocalExecutor())
    values = []
    for seed in FRESH_SEEDS:
        outcome = runner.run_seed(10_000 + best.number, seed, best.commit)
        value = metric_value(outcome.metrics, "val_bpb")
        if value is not None:
            values.append(value)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=8)
    parser.add_argument("--campaign-seeds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in STRATEGIES}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        for seed in range(1, args.campaign_seeds + 1):
            for strategy, extra in STRATEGIES.items():
                name = f"{strategy}-{seed}"
                overrides = short_runs(args.iterations) + extra + [f"strategist_seed={seed}"]
                print(f"campaign {name}: {args.experiments} experiments...", flush=True)
                status = run_campaign(home, name, overrides, args.experiments)
                fresh = fresh_score(home, name, short_runs(args.iterations))
                row = {"campaign_seed": seed, "reported_best": status["best"]["metric_mean"],
                       "baseline": status["baseline"]["metric_mean"], "keeps": status["verdicts"].get("keep", 0),
                       "fresh_seed_values": fresh, "fresh_mean": statistics.fmean(fresh) if fresh else None,
                       "wall_seconds": round(status["wall_seconds"], 1)}
                results[strategy].append(row)
                print(f"  reported best {row['reported_best']:.4f}, on fresh seeds {row['fresh_mean']:.4f} "
                      f"(baseline {row['baseline']:.4f}, {row['keeps']} keep(s), {row['wall_seconds']:.0f} s)",
                      flush=True)
    summary = {}
    print(f"\n{'strategy':<8} {'fresh-seed best val_bpb':>26} {'reported best':>16} {'optimism':>10} {'keeps':>6}")
    for strategy, rows in results.items():
        fresh = [r["fresh_mean"] for r in rows if r["fresh_mean"] is not None]
        reported = [r["reported_best"] for r in rows]
        optimism = [r["fresh_mean"] - r["reported_best"] for r in rows if r["fresh_mean"] is not None]
        summary[strategy] = {
            "fresh_mean": statistics.fmean(fresh), "fresh_spread": statistics.pstdev(fresh),
            "reported_mean": statistics.fmean(reported), "optimism_mean": statistics.fmean(optimism),
            "keeps_mean": statistics.fmean(r["keeps"] for r in rows)}
        s = summary[strategy]
        print(f"{strategy:<8} {s['fresh_mean']:>18.4f} ± {s['fresh_spread']:<6.4f} {s['reported_mean']:>16.4f} "
              f"{s['optimism_mean']:>+10.4f} {s['keeps_mean']:>6.1f}")
    write("search_efficiency", {"experiments": args.experiments, "campaign_seeds": args.campaign_seeds,
                                "iterations": args.iterations, "fresh_seeds": FRESH_SEEDS,
                                "summary": summary, "campaigns": results})


if __name__ == "__main__":
    main()
