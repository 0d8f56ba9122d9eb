"""A/A false keeps: how often each keep rule 'improves' on pure seed noise, and how optimistic its best is.

Simulates many 20-experiment campaigns on a metric that is N(0, 1) whatever the change (lower is better),
judged by Hive's real Critic (first seed screens, confirm_seeds seeds, one-sided Welch) and by autoresearch's
rule (keep any new running minimum of a single seed). Run: python bench/aa_false_keeps.py [--campaigns 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import write  # noqa: E402
from hive.agents.critic import Critic, SeedResult  # noqa: E402
from hive.playbook import Objective  # noqa: E402


def hive_campaign(rng: random.Random, critic: Critic, experiments: int, seeds: int) -> tuple[int, float]:
    best = [rng.gauss(0, 1) for _ in range(seeds)]
    keeps = 0
    for _ in range(experiments):
        results = [SeedResult(1, "ok", {"score": rng.gauss(0, 1)})]
        verdict = critic.judge(results, best, 1)
        if verdict.verdict == "more_seeds":
            results += [SeedResult(i + 2, "ok", {"score": rng.gauss(0, 1)}) for i in range(verdict.seeds_wanted)]
            verdict = critic.judge(results, best, 1)
        if verdict.verdict == "keep":
            keeps += 1
            best = [r.metrics["score"] for r in results]
    return keeps, statistics.fmean(best)


def greedy_campaign(rng: random.Random, experiments: int) -> tuple[int, float]:
    best, keeps = rng.gauss(0, 1), 0
    for _ in range(experiments):
        value = rng.gauss(0, 1)
        if value < best:
            best, keeps = value, keeps + 1
    return keeps, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=2000)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(20261121)
    rules = {}
    for alpha in (0.01, 0.05):
        critic = Critic(Objective(metric="score", direction="minimize", alpha=alpha, confirm_seeds=args.seeds))
        rules[f"hive alpha={alpha}"] = [hive_campaign(rng, critic, args.experiments, args.seeds)
                                        for _ in range(args.campaigns)]
    rules["keep-if-lower (autoresearch)"] = [greedy_campaign(rng, args.experiments) for _ in range(args.campaigns)]
    table = {}
    print(f"{args.campaigns} A/A campaigns of {args.experiments} experiments, metric ~ N(0, 1), lower is better")
    print(f"{'rule':<30} {'false keeps':>18} {'P(keeps>1)':>11} {'reported best (sd)':>20}")
    for name, outcomes in rules.items():
        keeps = [k for k, _ in outcomes]
        bests = [b for _, b in outcomes]
        row = {"false_keeps_mean": statistics.fmean(keeps), "false_keeps_std": statistics.stdev(keeps),
               "p_more_than_one": sum(k > 1 for k in keeps) / len(keeps),
               "reported_best_mean_sd": statistics.fmean(bests), "reported_best_std_sd": statistics.stdev(bests)}
        table[name] = row
        print(f"{name:<30} {row['false_keeps_mean']:>8.2f} ± {row['false_keeps_std']:<7.2f} "
              f"{row['p_more_than_one']:>11.3f} {row['reported_best_mean_sd']:>+11.2f} ± {row['reported_best_std_sd']:.2f}")
    write("aa_false_keeps", {"campaigns": args.campaigns, "experiments": args.experiments, "seeds": args.seeds,
                             "rules": table})


if __name__ == "__main__":
    main()
