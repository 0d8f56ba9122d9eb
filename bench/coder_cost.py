"""What the agentic coder costs: tokens, dollars and wall seconds per coder step and per experiment, for the
scripted campaigns (the scripted model's price is $1 in / $2 out per million tokens; tokens are characters / 4).

    python -m bench.coder_cost                 # quickstart, 6 experiments (about a minute)
    python -m bench.coder_cost --param-golf    # also param_golf with a tiny model, 3 experiments (minutes)

A step is one model turn of the coder: its call (tokens, dollars, seconds, from the transcript) and the command
it ran (seconds). An experiment's wall seconds run from its creation to its verdict. Results go to
bench/results/coder_cost.json with the load average (the machine is shared: seconds depend on it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import summary, write
from hive.store.home import find_campaign
from hive.transcripts import read_transcript

ROOT = Path(__file__).resolve().parents[1]
TINY_GOLF = ["-c", "run.env.ITERATIONS=3", "-c", "run.env.MODEL_DIM=64", "-c", "run.env.NUM_LAYERS=2",
             "-c", "run.env.MAX_WALLCLOCK_SECONDS=30", "-c", "run.seeds=[1,2]", "-c", "objective.confirm_seeds=1",
             "-c", "run.smoke=python prepare.py --split train && ITERATIONS=2 MAX_WALLCLOCK_SECONDS=0 python train_gpt.py"]
CAMPAIGNS = {"quickstart": (["--max-experiments", "6", "-c", "run.seeds=[1,2,3]"], "scripted:quickstart"),
             "param_golf": (["--max-experiments", "3", *TINY_GOLF], "scripted:param_golf")}


def measure(name: str, home: Path) -> dict:
    """Run one scripted campaign in `home` and read its coder's costs from the store and the transcripts."""
    extra, model = CAMPAIGNS[name]
    env = {**os.environ, "HIVE_HOME": str(home), "HIVE_MODEL": model, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hive", "start", str(ROOT / "playbooks" / f"{name}.yaml"),
                           "--headless", "-c", "strategist=llm", *extra], env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name}: hive start failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    store, camp = find_campaign(home, name)
    steps, experiments = [], []
    for exp in store.experiments(camp.id):
        if exp.kind == "baseline":
            continue
        calls = {t.role: t.path for t in store.transcripts(camp.id, exp.number)}
        entries = list(read_transcript(Path(calls["coder"]))) if "coder" in calls else []
        costs = [e for e in entries if e["kind"] == "cost"]
        commands = [e for e in entries if e["kind"] == "command"]
        for i, cost in enumerate(costs):
            command = commands[i] if i < len(commands) else None
            steps.append({"experiment": exp.number, "tokens": cost["tokens_in"] + cost["tokens_out"],
                          "dollars": cost["dollars"], "model_seconds": cost["seconds"],
                          "command_seconds": command["seconds"] if command else 0.0})
        llm = store.llm_totals(camp.id, exp.number)
        seconds = (exp.finished_at - exp.created_at).total_seconds() if exp.finished_at else None
        experiments.append({"number": exp.number, "verdict": exp.verdict, "coder_steps": len(costs),
                            "tokens": int(llm["prompt_tokens"] + llm["completion_tokens"]),
                            "dollars": round(llm["dollars"], 6), "wall_seconds": seconds,
                            "attempts": len(store.attempts(exp.id))})
    store.engine.dispose()
    return {
        "campaign_wall_seconds": round(wall, 1),
        "per_step": {key: summary([s[key] for s in steps]) for key in ("tokens", "dollars", "model_seconds",
                                                                        "command_seconds")} if steps else {},
        "per_experiment": {key: summary([e[key] for e in experiments if e[key] is not None])
                           for key in ("coder_steps", "tokens", "dollars", "wall_seconds")} if experiments else {},
        "experiments": experiments,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--param-golf", action="store_true", help="also the param_golf campaign (tiny model)")
    args = parser.parse_args()
    results = {}
    for name in ["quickstart"] + (["param_golf"] if args.param_golf else []):
        with tempfile.TemporaryDirectory(prefix=f"coder-cost-{name}-") as home:
            print(f"{name}: running ...", flush=True)
            results[name] = measure(name, Path(home))
            per = results[name]["per_experiment"]
            print(f"{name}: {len(results[name]['experiments'])} experiments, median {per['coder_steps']['median']} "
                  f"coder steps, ${per['dollars']['median']:.4f} and {per['wall_seconds']['median']:.1f} s each",
                  flush=True)
    write("coder_cost", {"scripted_price": "$1 in / $2 out per million tokens", **results})


if __name__ == "__main__":
    main()
