"""A/A false keeps: how often each keep rule 'improves' on pure seed noise, and how optimistic its best is.

Simulates many 20-experiment campaigns on a metric that is pure seed noise whatever the change (lower is
better; sd 1 in total). The noise has a part shared by every configuration on the same seed and the run's own
part, split as measured on CPU Parameter Golf (bench/results/seed_noise.json). Rules: Hive's real Critic as
shipped (first seed screened against the best on that seed, paired one-sided t-test, seeds one at a time from
confirm_seeds to max_seeds under the Pocock boundary, futility stops; the best runs any seed it lacks), the
same critic unpaired (Welch, 3 seeds: Hive before pairing), and autoresearch's keep-if-lower on one seed.
Run: python bench/aa_false_keeps.py [--campaigns 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import RESULTS, write  # noqa: E402
from bench._sim import SeedEffects, SeedNoise, judge_sequentially  # noqa: E402
from hive.agents.critic import Critic  # noqa: E402
from hive.playbook import Objective  # noqa: E402

SEEDS = [1, 2, 3, 4, 5]


def noise_model() -> tuple[SeedNoise, str]:
    """Total sd 1, split into shared and own parts as measured (or the issue's campaign figures if unmeasured)."""
    path = RESULTS / "seed_noise.json"
    if path.is_file():
        measured = SeedNoise.measured(json.loads(path.read_text()))
        source = f"measured ({path.name})"
    else:
        measured = SeedNoise(shared_sd=0.0215, own_sd=0.0069 / 2 ** 0.5)
        source = "issue 12's campaign figures (seed_noise.json not found)"
    scale = measured.total_sd
    return SeedNoise(measured.shared_sd / scale, measured.own_sd / scale), source


def hive_campaign(rng: random.Random, critic: Critic, experiments: int, noise: SeedNoise) -> dict:
    effects = SeedEffects(noise, rng)
    best = {s: effects.value(0.0, s) for s in SEEDS[:critic.objective.confirm_seeds]}
    keeps, runs, candidate_runs = 0, len(best), 0
    fixed_runs = 0  # candidate runs had every screened candidate been given all max_seeds seeds
    pool: list[list[float]] = []
    for _ in range(experiments):
        judged = judge_sequentially(critic, SEEDS, lambda s: effects.value(0.0, s), best,
                                    lambda s: effects.value(0.0, s), pool=pool if critic.test == "paired" else None)
        runs += len(judged.values) + judged.reference_runs
        candidate_runs += len(judged.values)
        fixed_runs += 1 if len(judged.values) == 1 else critic.max_seeds
        if judged.verdict.verdict == "keep":
            keeps += 1
            best = dict(judged.values)
    return {"keeps": keeps, "best": statistics.fmean(best.values()), "runs": runs, "candidate_runs": candidate_runs,
            "fixed_runs": fixed_runs}


def greedy_campaign(rng: random.Random, experiments: int, noise: SeedNoise) -> dict:
    effects = SeedEffects(noise, rng)
    best, keeps = effects.value(0.0, 1), 0
    for _ in range(experiments):
        value = effects.value(0.0, 1)
        if value < best:
            best, keeps = value, keeps + 1
    return {"keeps": keeps, "best": best, "runs": experiments + 1, "fixed_runs": experiments}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=2000)
    parser.add_argument("--experiments", type=int, default=20)
    args = parser.parse_args()
    noise, source = noise_model()
    rng = random.Random(20261121)
    rules = {}
    for alpha in (0.01, 0.05):
        objective = Objective(metric="score", direction="minimize", alpha=alpha, confirm_seeds=3)
        critic = Critic(objective, test="paired", max_seeds=5)
        rules[f"hive alpha={alpha}"] = (critic, [hive_campaign(rng, critic, args.experiments, noise)
                                                 for _ in range(args.campaigns)])
    unpaired = Critic(Objective(metric="score", direction="minimize", alpha=0.05, confirm_seeds=3), test="welch")
    rules["hive unpaired (Welch, 3 seeds) alpha=0.05"] = (
        unpaired, [hive_campaign(rng, unpaired, args.experiments, noise) for _ in range(args.campaigns)])
    rules["keep-if-lower (autoresearch)"] = (None, [greedy_campaign(rng, args.experiments, noise)
                                                    for _ in range(args.campaigns)])
    table = {}
    print(f"{args.campaigns} A/A campaigns of {args.experiments} experiments, lower is better, seed sd 1: shared "
          f"{noise.shared_sd:.2f}, own {noise.own_sd:.2f} ({source})")
    print(f"{'rule':<42} {'false keeps':>14} {'P(keeps>1)':>11} {'reported best (sd)':>19} {'runs/exp':>9}")
    for name, (critic, outcomes) in rules.items():
        keeps = [o["keeps"] for o in outcomes]
        bests = [o["best"] for o in outcomes]
        runs = statistics.fmean(o["runs"] for o in outcomes) / args.experiments
        row = {"false_keeps_mean": statistics.fmean(keeps), "false_keeps_std": statistics.stdev(keeps),
               "p_more_than_one": sum(k > 1 for k in keeps) / len(keeps),
               "reported_best_mean_sd": statistics.fmean(bests), "reported_best_std_sd": statistics.stdev(bests),
               "runs_per_experiment": runs}
        if critic is not None:
            row["level_per_look"] = critic.level
            row["looks"] = list(critic.looks)
            row["candidate_runs_per_experiment"] = statistics.fmean(o["candidate_runs"] for o in outcomes) / args.experiments
            row["candidate_runs_per_experiment_fixed"] = statistics.fmean(o["fixed_runs"] for o in outcomes) / args.experiments
        table[name] = row
        print(f"{name:<42} {row['false_keeps_mean']:>5.2f} ± {row['false_keeps_std']:<5.2f} "
              f"{row['p_more_than_one']:>11.3f} {row['reported_best_mean_sd']:>+10.2f} ± {row['reported_best_std_sd']:.2f}"
              f" {runs:>9.2f}")
    for name, row in table.items():
        if "looks" in row and len(row["looks"]) > 1:
            print(f"{name}: nominal level {row['level_per_look']:.4f} at looks {row['looks']}; "
                  f"{row['candidate_runs_per_experiment']:.2f} candidate runs per experiment against "
                  f"{row['candidate_runs_per_experiment_fixed']:.2f} with every screened candidate given "
                  f"{row['looks'][-1]} seeds")
    write("aa_false_keeps", {"campaigns": args.campaigns, "experiments": args.experiments, "seeds": SEEDS,
                             "noise": {"shared_sd": noise.shared_sd, "own_sd": noise.own_sd, "source": source},
                             "rules": table})


if __name__ == "__main__":
    main()
