"""Live progress: curves from logs, the same-seed comparison in seed-noise units, and pruning a real run."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

from hive.executors import LocalExecutor, RunRequest, scrubbed_environment
from hive.progress import PATIENCE, ProgressWatch, parse_curve, value_at, watch_for
from hive.runner import follow

REGEX = r"^step (\d+) loss ([0-9.eE+-]+|nan|inf)"


@dataclass
class Spec:
    regex: str = REGEX
    min_step: float = 10
    margin: float = 3.0
    direction: str = "minimize"


def curve(offset: float, steps=range(5, 101, 5)) -> list[tuple[float, float]]:
    return [(float(s), 3.0 / (1 + s / 20) + offset) for s in steps]


def test_curves_parse_interpolate_and_skip_garbage():
    text = "step 5 loss 2.5\nnoise\nstep 10 loss 2.0\nstep x loss 1\nstep 20 loss nan\n"
    points = parse_curve(text, REGEX)
    assert points[:2] == [(5.0, 2.5), (10.0, 2.0)] and len(points) == 3 and math.isnan(points[2][1])
    assert value_at([(5.0, 2.5), (10.0, 2.0)], 7.5) == 2.25
    assert value_at([(5.0, 2.5), (10.0, 2.0)], 12) is None


def test_a_run_clearly_behind_on_the_same_seed_is_pruned_a_close_one_is_not():
    reference = {1: curve(0.0), 2: curve(0.05), 3: curve(-0.05)}  # seed sd 0.05 at every step
    close = watch_for(Spec(), reference, 1)
    for s, v in curve(0.1):  # 2 seed sd behind: within the margin of 3
        assert close.feed(f"step {int(s)} loss {v}\n") is None
    behind = watch_for(Spec(), reference, 1)
    pruned = None
    for s, v in curve(0.2):  # 4 seed sd behind
        pruned = pruned or behind.feed(f"step {int(s)} loss {v}\n")
    assert pruned is not None and pruned.step == 10 + 5 * (PATIENCE - 1), "from min_step on, after PATIENCE lines"
    assert abs(pruned.gap - 0.2) < 1e-9 and "4.0 seed sd" in pruned.reason("exp-1")
    # a chunk may end mid-line; nothing is read twice or lost
    split = ProgressWatch(Spec(), reference[1], list(reference.values()))
    text = "".join(f"step {int(s)} loss {v}\n" for s, v in curve(0.2))
    for i in range(0, len(text), 7):
        split.feed(text[i:i + 7])
    assert split.pruned is not None and split.pruned.step == pruned.step
    # nothing to compare with: the reference has one seed, or not this one
    assert watch_for(Spec(), {1: curve(0.0)}, 1) is None and watch_for(Spec(), reference, 4) is None
    assert watch_for(None, reference, 1) is None


def test_maximize_direction_flips_the_gap():
    reference = {1: curve(0.0), 2: curve(0.05), 3: curve(-0.05)}
    watch = watch_for(Spec(direction="maximize"), reference, 1)
    for s, v in curve(0.5):  # higher is better here: far ahead, never pruned
        assert watch.feed(f"step {int(s)} loss {v}\n") is None


def test_follow_stops_a_real_run_that_falls_behind(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import time\n"
        "for step in range(5, 101, 5):\n"
        "    loss = 3.0 / (1 + step / 20) + (0.0 if step < 40 else (step - 40) * 0.1)\n"
        "    print(f'step {step} loss {loss:.5f}', flush=True)\n"
        "    time.sleep(0.15)\n")
    reference = {1: curve(0.0), 2: curve(0.05), 3: curve(-0.05)}
    request = RunRequest(command=f"{sys.executable} train.py", cwd=tmp_path, log_path=tmp_path / "run.log",
                         timeout=60, env=scrubbed_environment({}))
    started = time.monotonic()
    watch = watch_for(Spec(), reference, 1)
    result = follow(LocalExecutor(kill_grace=1), request, None, watch)
    assert result.cancelled and watch.pruned is not None
    assert 40 < watch.pruned.step < 100, "it diverges late, after step 40, and is stopped before its end"
    assert time.monotonic() - started < 20 * 0.15, "stopped before the full run's length"
    # without a watch the same request runs to its end
    full = follow(LocalExecutor(), request, None, None)
    assert full.exit_code == 0 and not full.cancelled
