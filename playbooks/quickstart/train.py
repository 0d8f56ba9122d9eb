"""Quickstart: fit a line to noisy samples by mini-batch gradient descent, in a second, with no dependencies.

The run prints `---` then `key: value` lines; `score.py` (protected) measures the saved model on held-out data.
"""

import json
import os
import random
import time

# ---------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------
LEARNING_RATE = 0.01  # step size of gradient descent; too small underfits in STEPS steps
STEPS = 40  # number of gradient steps
BATCH_SIZE = 8  # samples per step; larger batches give steadier gradients
MOMENTUM = 0.0  # heavy-ball momentum
NUM_SAMPLES = 256  # training samples drawn for this seed
SEED = int(os.environ.get("SEED", 1))  # the run's seed (set by Hive)

# ---------------------------------------------------------------------------
# Data: y = 2.5 x - 1 + noise, x in [-2, 2]
# ---------------------------------------------------------------------------
rng = random.Random(SEED)
xs = [rng.uniform(-2, 2) for _ in range(NUM_SAMPLES)]
ys = [2.5 * x - 1.0 + rng.gauss(0, 0.5) for x in xs]

# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------
t0 = time.time()
w, b, vw, vb = 0.0, 0.0, 0.0, 0.0
for step in range(STEPS):
    idx = [rng.randrange(NUM_SAMPLES) for _ in range(BATCH_SIZE)]
    gw = sum(2 * (w * xs[i] + b - ys[i]) * xs[i] for i in idx) / BATCH_SIZE
    gb = sum(2 * (w * xs[i] + b - ys[i]) for i in idx) / BATCH_SIZE
    vw, vb = MOMENTUM * vw + gw, MOMENTUM * vb + gb
    w, b = w - LEARNING_RATE * vw, b - LEARNING_RATE * vb
    if w != w or abs(w) > 1e12:
        raise SystemExit("diverged: weight is NaN or huge")
train_loss = sum((w * x + b - y) ** 2 for x, y in zip(xs, ys)) / NUM_SAMPLES

with open("model.json", "w") as fh:
    json.dump({"w": w, "b": b}, fh)

print("---")
print(f"train_loss: {train_loss:.6f}")
print(f"steps: {STEPS}")
print(f"train_seconds: {time.time() - t0:.3f}")
