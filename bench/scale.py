"""Scale: a store with 100,000 experiments; median ms of the leaderboard query, the proposer's campaign context
and a TUI dashboard snapshot.

    python bench/scale.py [--experiments 100000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import summary, write  # noqa: E402
from bench.tui_refresh import build_store  # noqa: E402


def timed(fn, repeats: int) -> dict:  # noqa: ANN001
    values = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        values.append((time.perf_counter() - t0) * 1000)
    return {k: round(v, 2) for k, v in summary(values).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    from hive.agents.context import campaign_view
    from hive.playbook import load_playbook
    from tui.data import DashboardSource

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        print(f"building a store with {args.experiments} experiments (3 runs, 5 events each)...", flush=True)
        t0 = time.perf_counter()
        store = build_store(home, args.experiments)
        print(f"  built in {time.perf_counter() - t0:.1f} s", flush=True)
        camp = store.campaign("bench")
        playbook = load_playbook(Path(__file__).resolve().parents[1] / "playbooks" / "quickstart.yaml")
        source = DashboardSource(home, "bench", clock=lambda: datetime.now(timezone.utc))
        source.build()
        results = {
            "leaderboard_ms": timed(lambda: store.leaderboard(camp.id, "minimize", 20), args.repeats),
            "proposer_context_ms": timed(lambda: campaign_view(store, camp.id, playbook), args.repeats),
            "tui_snapshot_ms": timed(source.build, args.repeats),
        }
    for name, stats in results.items():
        print(f"{name:<22} median {stats['median']:8.2f} ms   p95 {stats['p95']:8.2f} ms")
    write("scale", {"experiments": args.experiments, "repeats": args.repeats, **results})


if __name__ == "__main__":
    main()
