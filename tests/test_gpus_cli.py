"""`hive gpus` and `hive start --simulate-gpus`: devices are shown with their holders and never shared by two runs."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import pairwise

from hive.store.home import open_store
from hive.store import Experiment, Run
from tests.conftest import PLAYBOOKS

SLEEPY = "run.command=python -c 'import random,time; time.sleep(random.random()*0.3)' && python train.py"


def _runs(home, name="quickstart") -> tuple:
    store = open_store(home, name)
    camp = store.campaign(name)
    exps = store.experiments(camp.id)
    return store, exps, [r for rs in store.runs_for([e.id for e in exps]).values() for r in rs]


def test_simulated_gpus_are_never_shared_by_two_runs(hive, tmp_path):
    proc = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "6",
                "--simulate-gpus", "4", "-c", "run.resources.gpus=1", "-c", SLEEPY, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished: max_experiments (6) reached" in proc.stderr
    _, exps, runs = _runs(tmp_path / "workspaces")
    placed = [r for r in runs if r.devices]
    assert len(exps) == 6 and len(placed) >= 8, [(r.status, r.devices) for r in runs]
    assert all(r.status == "ok" and len(r.devices.split(",")) == 1 for r in placed)
    by_device = defaultdict(list)
    for run in placed:
        assert run.started_at is not None and run.finished_at is not None
        by_device[int(run.devices)].append((run.started_at, run.finished_at))
    assert set(by_device) <= {0, 1, 2, 3} and len(by_device) > 1  # the runs really spread over the devices
    for device, spans in by_device.items():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            assert start >= end, f"two runs overlapped on gpu {device}"

    # the campaign's own (simulated) inventory is what `hive gpus <campaign>` shows; nothing holds it now
    shown = hive("gpus", "quickstart", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["inventory"] == "simulated" and [d["index"] for d in data["devices"]] == [0, 1, 2, 3]
    assert data["running"] == [] and all(d["held_by"] == [] for d in data["devices"])

    # a run recorded as running holds its device
    store, exps, runs = _runs(tmp_path / "workspaces")
    store.update(Experiment, exps[-1].id, status="running")
    held = next(r for r in runs if r.experiment_id == exps[-1].id)
    store.update(Run, held.id, status="running", devices="2")
    shown = hive("gpus", "--json")  # the only campaign there is
    data = json.loads(shown.stdout)
    assert data["devices"][2]["held_by"] == [f"quickstart exp-{exps[-1].number}/seed-{held.seed}"]
    assert data["running"][0]["devices"] == [2]
    text = hive("gpus").stdout
    assert "Simulated GPU 2" in text and f"exp-{exps[-1].number}/seed-{held.seed}" in text


def test_gpus_without_a_gpu_shows_cpu_slots(hive):
    proc = hive("gpus", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    if data["inventory"] == "cpu":  # a machine with a real GPU shows NVML devices instead
        assert data["devices"] == [] and data["cpu_slots"] >= 1
        assert hive("gpus").stdout.startswith(f"no GPU: {data['cpu_slots']} CPU slots")
    simulated = json.loads(hive("gpus", "--simulate-gpus", "2", "--json").stdout)
    assert simulated["inventory"] == "simulated" and len(simulated["devices"]) == 2
    assert simulated["devices"][0]["total_mb"] == simulated["devices"][0]["free_mb"] > 0


def test_gpus_names_an_unknown_campaign(hive):
    proc = hive("gpus", "nope")
    assert proc.returncode == 2 and "no campaign 'nope'" in proc.stderr
