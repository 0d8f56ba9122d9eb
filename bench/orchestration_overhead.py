"""Orchestration overhead per experiment: everything but the training command and LLM latency.

Runs a real campaign (Optuna proposer, AST knob rewrite committed without a checkout, lease, local executor, parse,
critic, record, checkpoint) of N experiments whose command is a no-op that prints a metric, one slot, no
lookahead, one seed each, so experiments run strictly one after another. Overhead = experiment wall time
(proposed -> recorded) minus the run's own wall time.
The run and its scorer-less parse go through the sandbox the playbook names (`--sandbox auto | bwrap | none`), so
the sandbox's start-up cost is in the no-op run's time and its clean-up in the overhead.
Run: python bench/orchestration_overhead.py [--experiments 200] [--sandbox bwrap]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._common import summary, write  # noqa: E402

TEMPLATE = '''import os
LR = 0.1  # a knob the proposer rewrites
print("---")
print(f"loss: {abs(LR - 0.05) + int(os.environ.get('SEED', 1)) * 1e-6}")
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto")
    args = parser.parse_args()
    from hive.driver import start
    from hive.playbook import load_playbook
    from hive.store import Store, make_engine

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tpl").mkdir()
        (root / "tpl" / "noop.py").write_text(TEMPLATE)
        (root / "book.yaml").write_text(f"""
name: overhead
source: tpl
editable: [noop.py]
run: {{command: python noop.py, timeout: 30, seeds: [1]}}
objective: {{metric: loss, direction: minimize, confirm_seeds: 1}}
scheduler: {{slots: 1, lookahead: 0}}
executor: {{kind: local, sandbox: {args.sandbox}}}
knobs: [{{name: LR, type: float, low: 0.0001, high: 1.0, log: true, bind: {{file: noop.py, assign: LR}}}}]
budget: {{max_experiments: {args.experiments + 1}}}
""")
        pb = load_playbook(root / "book.yaml")
        done = 0

        def progress(line: str) -> None:
            nonlocal done
            if " verdict " in line:
                done += 1
                if done % 20 == 0:
                    print(f"  {done}/{args.experiments + 1} experiments recorded", flush=True)

        started = time.monotonic()
        start(pb, root / "workspaces", echo=progress)
        total = time.monotonic() - started
        store = Store(make_engine(f"sqlite:///{root / 'workspaces' / 'overhead' / 'hive.db'}"))
        camp = store.campaign("overhead")
        exps = [e for e in store.experiments(camp.id) if e.kind == "candidate"]
        runs = store.runs_for([e.id for e in exps])
        overhead_ms, run_ms = [], []
        for exp in exps:
            wall = sum(r.wall_seconds or 0 for r in runs[exp.id])
            span = (exp.finished_at - exp.created_at).total_seconds()
            overhead_ms.append((span - wall) * 1000)
            run_ms.append(wall * 1000)
        throughput_ms = (total * 1000 - sum(run_ms)) / len(exps)
    over, run = summary(overhead_ms), summary(run_ms)
    load = os.getloadavg()
    print(f"{len(exps)} experiments in {total:.1f} s, sandbox {args.sandbox}, load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"orchestration overhead per experiment: median {over['median']:.1f} ms, p95 {over['p95']:.1f} ms "
          f"(goal <= 100 ms median)")
    print(f"the no-op run itself (python start-up): median {run['median']:.1f} ms")
    print(f"campaign wall minus run time, per experiment: {throughput_ms:.1f} ms")
    name = "orchestration_overhead" + ("" if args.sandbox == "auto" else f"_{args.sandbox}")
    write(name, {"experiments": len(exps), "sandbox": args.sandbox, "load_average": load, "overhead_ms": over,
                 "run_ms": run, "wall_seconds": total, "wall_minus_runs_per_experiment_ms": throughput_ms,
                 "goal_median_ms": 100})


if __name__ == "__main__":
    main()
