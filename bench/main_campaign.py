"""The README's main job, as a new user runs it, then its final best against the baseline on 5 fresh seeds.

Runs `hive start playbooks/param_golf.yaml --headless` (40 experiments, default settings: nothing overridden)
in a fresh HIVE_HOME, sampling the load average every 30 s (the figures depend on it: runs are capped at 90 s
of training, so a busy machine trains fewer steps). Then the final best commit and the baseline commit are
each re-run on seeds the campaign never used, seed for seed, and compared with a one-sided paired t-test.
Run: python bench/main_campaign.py [--home DIR] [--recheck-only]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import write  # noqa: E402
from hive.agents.significance import paired_p_value, shifted_gains  # noqa: E402
from hive.executors import LocalExecutor  # noqa: E402
from hive.objective import metric_value  # noqa: E402
from hive.playbook import load_playbook  # noqa: E402
from hive.runner import Runner  # noqa: E402
from hive.store.home import open_store  # noqa: E402
from hive.workspace import Workspace  # noqa: E402

PLAYBOOK = ROOT / "playbooks" / "param_golf.yaml"
NAME = "param_golf"
FRESH_SEEDS = [101, 102, 103, 104, 105]
LOAD_EVERY = 30.0


def sample_load(samples: list[tuple[float, float, float, float]], done: threading.Event) -> None:
    start = time.monotonic()
    while not done.is_set():
        samples.append((round(time.monotonic() - start, 1), *os.getloadavg()))
        done.wait(LOAD_EVERY)


def run_campaign(home: Path, log: Path) -> float:
    """`hive start` on the shipped playbook, its feed to `log` and its verdicts to stdout; the wall seconds."""
    env = {**os.environ, "HIVE_HOME": str(home)}
    env.pop("HIVE_DB_URL", None)
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hive", "start", str(PLAYBOOK), "--headless"], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if " verdict " in line or " campaign " in line:
                print(line.rstrip()[:200], flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"hive start failed (exit {proc.returncode}); see {log}")
    return time.monotonic() - started


def fresh_values(home: Path, runs: list[tuple[str, int]], seeds: list[int]) -> list[dict[int, float | None]]:
    """val_bpb of each (commit, experiment number) on each seed, scored by the pristine scorer (None where a seed
    failed). Seed by seed, the commits' runs start together on the campaign's two CPU slots, so each pair trains
    under the same machine load (the runs are capped by wall-clock time: load shifts their step count)."""
    pb = load_playbook(PLAYBOOK)
    runner = Runner(pb, Workspace(home / NAME, NAME), LocalExecutor())

    def one(job: tuple[str, int, int]) -> float | None:
        commit, number, seed = job
        outcome = runner.run_seed(number, seed, commit)
        value = metric_value(outcome.metrics, pb.objective.metric)
        print(f"  fresh seed {seed} of {commit[:10]}: {outcome.status} val_bpb={value}", flush=True)
        return value

    out: list[dict[int, float | None]] = [{} for _ in runs]
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        for seed in seeds:
            values = list(pool.map(one, [(commit, number, seed) for commit, number in runs]))
            for i, value in enumerate(values):
                out[i][seed] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="HIVE_HOME for the campaign (default: a new temp dir)")
    parser.add_argument("--recheck-only", action="store_true", help="skip the campaign; re-run an existing one's best")
    args = parser.parse_args()
    home = (args.home or Path(tempfile.mkdtemp(prefix="hive-main-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    samples: list[tuple[float, float, float, float]] = []
    done = threading.Event()
    sampler = threading.Thread(target=sample_load, args=(samples, done), daemon=True)
    sampler.start()
    wall, recorded = None, {}
    earlier = ROOT / "bench" / "results" / "main_campaign.json"
    if args.recheck_only and earlier.is_file():  # the campaign's own figures stay, from its run
        recorded = json.loads(earlier.read_text())
        recorded = recorded if recorded.get("home") == str(home) else {}
        wall = recorded.get("campaign_wall_seconds")
    if not args.recheck_only:
        print(f"campaign in {home} (feed: {home / 'campaign.log'})", flush=True)
        wall = run_campaign(home, home / "campaign.log")
    shown = subprocess.run([sys.executable, "-m", "hive", "status", NAME, "--json"], cwd=ROOT, capture_output=True,
                           text=True, env={**os.environ, "HIVE_HOME": str(home)})
    status = json.loads(shown.stdout)
    store = open_store(home, NAME)
    cid = store.campaign(NAME).id
    baseline, best = store.experiment(cid, 1), store.best(cid)
    pb = load_playbook(PLAYBOOK)
    print(f"best: exp-{best.number} {best.hypothesis} ({best.metric_mean}); re-running it and the baseline on "
          f"seeds {FRESH_SEEDS}", flush=True)
    if best.number != 1:
        base, cand = fresh_values(home, [(baseline.commit, 20_001), (best.commit, 20_000 + best.number)], FRESH_SEEDS)
    else:
        base, = fresh_values(home, [(baseline.commit, 20_001)], FRESH_SEEDS)
        cand = dict(base)
    done.set()
    pairs = [s for s in FRESH_SEEDS if base[s] is not None and cand[s] is not None]
    b, c = [base[s] for s in pairs], [cand[s] for s in pairs]
    gains = shifted_gains(pb.objective.direction, c, b, 0.0)
    fresh = {
        "seeds": FRESH_SEEDS, "baseline": base, "best": cand,
        "baseline_mean": statistics.fmean(b) if b else None, "best_mean": statistics.fmean(c) if c else None,
        "paired_gain_mean": statistics.fmean(gains) if gains else None,
        "paired_gain_sd": statistics.stdev(gains) if len(gains) > 1 else None,
        "p_value_gain_above_0": paired_p_value(gains),
        "p_value_gain_above_min_delta": paired_p_value(shifted_gains(pb.objective.direction, c, b,
                                                                     pb.objective.min_delta)),
    }
    loads = [s[1] for s in samples]
    load = {"min": min(loads), "mean": statistics.fmean(loads), "max": max(loads)} if loads else None
    fresh["load_average_1min"] = load
    kept = [e for e in store.experiments(cid) if e.verdict == "keep"]
    result = {
        "command": f"hive start {PLAYBOOK.relative_to(ROOT)} --headless", "home": str(home),
        "campaign_wall_seconds": wall, "experiments": status["experiments"], "verdicts": status["verdicts"],
        "pruned": status.get("pruned"),
        "kept": [{"number": e.number, "hypothesis": e.hypothesis, "metric_mean": e.metric_mean,
                  "p_value": e.p_value, "n_seeds": e.n_seeds} for e in kept],
        "baseline_reported": baseline.metric_mean, "best_number": best.number, "best_reported": best.metric_mean,
        "fresh": fresh,
        # the campaign's load: sampled here, or kept from its run when this only re-ran the fresh seeds
        "load_average_1min": recorded.get("load_average_1min") if args.recheck_only else load,
        "load_samples": recorded.get("load_samples") if args.recheck_only else samples,
    }
    print(f"\n{status['experiments']} experiments, verdicts {status['verdicts']}, wall {wall or 0:.0f} s, load "
          f"{result['load_average_1min']}")
    if fresh["best_mean"] is not None and fresh["baseline_mean"] is not None:
        print(f"fresh seeds {FRESH_SEEDS}: baseline {fresh['baseline_mean']:.4f}, best exp-{best.number} "
              f"{fresh['best_mean']:.4f}, paired gain {fresh['paired_gain_mean']:+.4f} ± "
              f"{fresh['paired_gain_sd'] or 0:.4f}, p(gain > 0) = {fresh['p_value_gain_above_0']}")
    write("main_campaign", result)


if __name__ == "__main__":
    main()
