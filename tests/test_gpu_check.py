"""bench/gpu_check.sh end to end on this machine: without a GPU one clear line, exit 0 and a JSON saying so; its
GPU path rehearsed on a simulated GPU (the same campaigns and read-back, packed against one at a time)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from hive.scheduler import InventoryUnavailable, NvmlInventory
from tests.conftest import PLAYBOOKS, ROOT

SCRIPT = ROOT / "bench" / "gpu_check.sh"


def _gpu_here() -> bool:
    try:
        inventory = NvmlInventory()
    except InventoryUnavailable:
        return False
    try:
        return bool(inventory.devices())
    finally:
        inventory.close()


def _check(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "GPU_CHECK_PYTHON": str(ROOT / ".venv" / "bin" / "python"), "HIVE_HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True,
                          env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.mark.skipif(_gpu_here(), reason="this machine has an NVIDIA GPU: the no-GPU path cannot show here")
def test_without_a_gpu_the_check_says_so_in_one_line_exits_0_and_writes_json(tmp_path):
    proc, data = _check(tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("gpu_check: no NVIDIA GPU")]
    assert lines == ["gpu_check: no NVIDIA GPU: NVML sees none (hive gpus: inventory cpu, "
                     f"{data['hive_gpus']['cpu_slots']} CPU slots); nothing was run on a GPU"]
    assert data["gpu"] is False and data["reason"] == lines[0].removeprefix("gpu_check: ")
    assert data["hive_gpus"]["devices"] == [] and "campaigns" not in data
    assert data["nvidia_smi"] is None or shutil.which("nvidia-smi")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_gpu_path_rehearsed_on_a_simulated_gpu_packs_runs_and_measures_both_ways(tmp_path):
    sleepy = "run.command=python -c 'import time; time.sleep(0.3)' && python train.py"
    proc, data = _check(tmp_path, "--simulate-gpus", "1", "--playbook", str(PLAYBOOKS / "quickstart.yaml"),
                        "-c", "run.resources.gpu_memory_mb=20000", "-c", sleepy, "--experiments", "2")
    assert data["gpu"] is True and data["simulated"] is True
    assert data["device"] == {"index": 0, "name": "Simulated GPU 0", "total_mb": 81920}
    packed, alone = data["campaigns"]["packed"], data["campaigns"]["one_at_a_time"]
    for c in (packed, alone):
        assert c["returncode"] == 0 and c["experiments"] == 2 and c["runs_ok"] >= 2
        assert all(r["devices"] == "0" for r in c["runs"] if r["status"] == "ok")
        assert c["runs_per_gpu_hour"] == pytest.approx(c["runs_ok"] / (c["span_seconds"] / 3600), rel=0.01)
    assert alone["most_at_once"] == 1  # scheduler.max_runs_per_gpu=1: never two on the GPU
    assert packed["most_at_once"] >= 2  # 81920 MB holds four 20000 MB shares
    assert data["packing_gain"] == pytest.approx(packed["runs_per_gpu_hour"] / alone["runs_per_gpu_hour"], abs=0.01)
    assert "gpu_check: packing gives" in proc.stdout
