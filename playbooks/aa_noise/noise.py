"""A/A control: the metric is pure seed noise, N(0, 1); the knob only reshuffles the random stream.

Any "improvement" a rule keeps on this playbook is a false keep.
"""

import os
import random

KNOB = 0.5  # has no effect on the distribution of the metric, only on which draw comes out
SEED = int(os.environ.get("SEED", 1))  # the run's seed (set by Hive)

rng = random.Random(f"{SEED}:{KNOB!r}")
print("---")
print(f"score: {rng.gauss(0.0, 1.0):.6f}")
