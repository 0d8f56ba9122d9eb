"""Stored against derived: an experiment's mean, spread, seed count and GPU/CPU-seconds at 100,000 experiments.

Experiment.metric_mean, metric_std, n_seeds, gpu_seconds and cpu_seconds are written when an experiment is judged;
each could instead be computed from its Run rows when shown. This times both ways, on one SQLite store built like
bench/scale.py's (3 runs per experiment): the leaderboard (top 20), the best's value, one experiment as `hive show`
reads it, and the campaign's GPU/CPU-seconds totals. Each derived answer is checked equal to the stored one.

    python bench/store_scale.py [--experiments 100000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from bench._common import summary, write  # noqa: E402
from bench.tui_refresh import build_store  # noqa: E402
from hive.store import Store  # noqa: E402
from hive.store.queries import FINISHED, RANKED_VERDICTS  # noqa: E402

METRIC = "val_bpb"
RUN_SECONDS, GPUS, CPU_THREADS = 10.0, 1, 2  # every run's wall time and the playbook's resources, for the totals
_X = "json_extract(r.metrics_json, '$.\"' || :metric || '\"')"
_VERDICTS = ", ".join(f"'{v}'" for v in RANKED_VERDICTS)

DERIVED_LEADERBOARD = text(f"""
    WITH agg AS (
        SELECT r.experiment_id AS id, avg({_X}) AS mean, count({_X}) AS n
        FROM run r JOIN experiment e ON e.id = r.experiment_id
        WHERE e.campaign_id = :campaign AND e.status = '{FINISHED}' AND e.verdict IN ({_VERDICTS}) AND r.status = 'ok'
        GROUP BY r.experiment_id)
    SELECT e.number, agg.mean, agg.n FROM agg JOIN experiment e ON e.id = agg.id
    WHERE agg.mean IS NOT NULL
    ORDER BY CASE WHEN e.number = :best THEN 0 WHEN e.verdict IN ('keep', 'baseline') THEN 1 ELSE 2 END,
             agg.mean, e.number
    LIMIT :limit""")
DERIVED_ONE = text(f"""
    SELECT avg({_X}) AS mean, avg({_X} * {_X}) - avg({_X}) * avg({_X}) AS var, count({_X}) AS n
    FROM run r WHERE r.experiment_id = :experiment AND r.status = 'ok'""")
DERIVED_TOTALS = text("""
    SELECT sum(r.wall_seconds) * :gpus, sum(r.wall_seconds) * :threads
    FROM run r JOIN experiment e ON e.id = r.experiment_id WHERE e.campaign_id = :campaign""")
STORED_TOTALS = text("SELECT sum(gpu_seconds), sum(cpu_seconds) FROM experiment WHERE campaign_id = :campaign")


def timed(fn, repeats: int) -> tuple[dict, object]:  # noqa: ANN001
    values, answer = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        answer = fn()
        values.append((time.perf_counter() - t0) * 1000)
    return {k: round(v, 3) for k, v in summary(values).items()}, answer


def queries(store: Store, campaign_id: int) -> dict:
    """name -> (stored, derived): functions answering the same question each way."""
    def stored_board() -> list:
        return [(e.number, e.metric_mean, e.n_seeds) for e in store.leaderboard(campaign_id, "minimize", 20)]

    def derived_board() -> list:
        best = store.best(campaign_id)
        with store.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(DERIVED_LEADERBOARD, {
                "metric": METRIC, "campaign": campaign_id, "best": best.number if best else -1, "limit": 20})]

    def one(exp, derived: bool) -> tuple:  # noqa: ANN001
        if not derived:
            return exp.metric_mean, exp.n_seeds
        with store.engine.connect() as conn:
            mean, _var, n = conn.execute(DERIVED_ONE, {"metric": METRIC, "experiment": exp.id}).one()
        return mean, n

    def show(number: int, derived: bool) -> tuple:
        exp = store.experiment(campaign_id, number)
        store.runs(exp.id)  # hive show lists the runs either way
        return one(exp, derived)

    def totals(derived: bool) -> tuple:
        with store.engine.connect() as conn:
            if derived:
                return tuple(conn.execute(DERIVED_TOTALS, {"campaign": campaign_id, "gpus": GPUS,
                                                           "threads": CPU_THREADS}).one())
            return tuple(conn.execute(STORED_TOTALS, {"campaign": campaign_id}).one())

    middle = store.count_experiments(campaign_id) // 2
    return {
        "leaderboard": (stored_board, derived_board),
        "best_value": (lambda: one(store.best(campaign_id), False), lambda: one(store.best(campaign_id), True)),
        "show_one": (lambda: show(middle, False), lambda: show(middle, True)),
        "gpu_cpu_seconds_totals": (lambda: totals(False), lambda: totals(True)),
    }


def same(a: object, b: object) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(a))
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="store_scale", help="result name under bench/results/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building a store with {args.experiments} experiments (3 runs each)...", flush=True)
        t0 = time.perf_counter()
        store = build_store(Path(tmp), args.experiments)
        camp = store.campaign("bench")
        with store.engine.begin() as conn:  # the totals' inputs: every run's wall time, what the graph records
            conn.execute(text("UPDATE run SET wall_seconds = :s"), {"s": RUN_SECONDS})
            conn.execute(text("UPDATE experiment SET gpu_seconds = 3 * :s * :g, cpu_seconds = 3 * :s * :t"),
                         {"s": RUN_SECONDS, "g": GPUS, "t": CPU_THREADS})
            # the stored count is of seeds with a metric: none while running or when every seed crashed
            conn.execute(text("UPDATE experiment SET n_seeds = 0 WHERE status != 'done' OR metric_mean IS NULL"))
        print(f"  built in {time.perf_counter() - t0:.1f} s", flush=True)
        results = {}
        for name, (stored, derived) in queries(store, camp.id).items():
            stored_ms, stored_answer = timed(stored, args.repeats)
            derived_ms, derived_answer = timed(derived, args.repeats)
            if not same(stored_answer, derived_answer):
                raise SystemExit(f"{name}: derived {derived_answer!r} differs from stored {stored_answer!r}")
            results[name] = {"stored_ms": stored_ms, "derived_ms": derived_ms,
                             "ratio": round(derived_ms["median"] / stored_ms["median"], 1)}
            print(f"{name:<24} stored median {stored_ms['median']:9.3f} ms   derived median "
                  f"{derived_ms['median']:9.3f} ms   ({results[name]['ratio']}x)", flush=True)
    write(args.out, {"experiments": args.experiments, "runs_per_experiment": 3, "repeats": args.repeats,
                     "backend": "sqlite", **results})


if __name__ == "__main__":
    main()
