"""Seed noise of CPU Parameter Golf, measured from a campaign's runs: per-configuration seed sd and paired-difference sd.

Reads a finished campaign store (e.g. the one bench/main_campaign.py leaves): for every configuration with two or
more seeds, the sample sd of its values over seeds (pooled over configurations); for every candidate with two or
more seeds shared with its parent, the sd of the per-seed differences (pooled). Under the model value = truth +
shared(seed) + own, the difference sd is own * sqrt(2), so the run's own part and the shared part follow; the
simulations (aa_false_keeps.py, search_power.py) use them. The runs are capped by wall clock, so a loaded machine
trains fewer steps and is noisier: the figures carry the load average the campaign recorded, and only figures
from a quiet machine should be written where the simulations read them (--write). Where the campaign ran
side-by-side rechecks, their pairs (started together) are measured apart from the seeds run minutes apart: own =
side-by-side sd / sqrt 2, the machine's state at a run's start (`sd_moment`) = sqrt(apart^2 / 2 - own^2), and the
seed's shared part the rest (search_power.py's MEASURED scenario).
Run: python bench/seed_noise.py --home HIVE_HOME [--campaign param_golf] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import RESULTS, write  # noqa: E402
from hive.agents.significance import pool_noise  # noqa: E402
from hive.graph import RECHECK_SEEDS  # noqa: E402
from hive.objective import metric_value  # noqa: E402
from hive.store.home import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--campaign", default="param_golf")
    parser.add_argument("--metric", default="val_bpb")
    parser.add_argument("--write", action="store_true", help="write bench/results/seed_noise.json (quiet runs only)")
    args = parser.parse_args()
    store = open_store(args.home, args.campaign)
    cid = store.campaign(args.campaign).id
    exps = {e.number: e for e in store.experiments(cid)}
    runs = store.runs_for([e.id for e in exps.values()])
    values = {n: {r.seed: v for r in runs[e.id] if r.status == "ok" and (v := metric_value(r.metrics, args.metric))
                  is not None} for n, e in exps.items()}
    per_config = [list(v.values()) for v in values.values() if len(v) >= 2]
    diffs, apart, together = [], [], []
    for n, e in exps.items():
        ref = values.get(e.parent_number or 0, {})
        for kind, keep in ((diffs, lambda s: True), (apart, lambda s: s < RECHECK_SEEDS),
                           (together, lambda s: s > RECHECK_SEEDS)):
            pairs = [values[n][s] - ref[s] for s in values[n] if s in ref and keep(s)]
            if len(pairs) >= 2:
                kind.append(pairs)
    config_var, config_df = pool_noise(per_config, 10**9)
    diff_var, diff_df = pool_noise(diffs, 10**9)
    if not config_df or not diff_df:
        raise SystemExit(f"too few seeds: {config_df} df of per-configuration spread, {diff_df} of differences")
    total, diff = math.sqrt(config_var), math.sqrt(diff_var)
    own = diff / math.sqrt(2)
    shared = math.sqrt(max(0.0, total ** 2 - own ** 2))
    walls = [r.wall_seconds for rs in runs.values() for r in rs if r.status == "ok" and r.wall_seconds]
    loads = None
    main_result = RESULTS / "main_campaign.json"
    if main_result.is_file():
        loads = json.loads(main_result.read_text()).get("load_average_1min")
    result = {"campaign": args.campaign, "home": str(args.home), "metric": args.metric,
              "configurations": len(per_config), "sd_per_configuration": total, "df_per_configuration": config_df,
              "pairs": len(diffs), "sd_paired_difference": diff, "df_paired_difference": diff_df,
              "sd_own": own, "sd_shared": shared, "run_wall_seconds_median": statistics.median(walls) if walls else None,
              "campaign_load_average_1min": loads}
    if together:
        together_var, together_df = pool_noise(together, 10**9)
        own_var = together_var / 2
        apart_var, apart_df = pool_noise(apart, 10**9)
        playbook_var, playbook_df = pool_noise([[v for s, v in vals.items() if s < RECHECK_SEEDS]
                                                for vals in values.values()], 10**9)
        moment_var = max(0.0, apart_var / 2 - own_var)
        result["three_way"] = {
            "sd_per_configuration": math.sqrt(playbook_var), "df_per_configuration": playbook_df,
            "sd_paired_apart": math.sqrt(apart_var), "df_paired_apart": apart_df,
            "sd_side_by_side": math.sqrt(together_var), "df_side_by_side": together_df,
            "sd_own": math.sqrt(own_var), "sd_moment": math.sqrt(moment_var),
            "sd_shared": math.sqrt(max(0.0, playbook_var - moment_var - own_var))}
    print(f"{args.campaign}: seed sd per configuration {total:.4f} ({len(per_config)} configurations, {config_df} df); "
          f"paired-difference sd {diff:.4f} ({len(diffs)} candidates, {diff_df} df) -> own {own:.4f}, shared "
          f"{shared:.4f}; median run {result['run_wall_seconds_median']} s; campaign load {loads}")
    if "three_way" in result:
        print("three ways: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in result["three_way"].items()))
    if args.write:
        write("seed_noise", result)


if __name__ == "__main__":
    main()
