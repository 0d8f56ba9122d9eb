"""scripts/services.sh: fast checks of the command line, and of the services it reports running."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "services.sh"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_usage_without_arguments():
    r = run()
    assert r.returncode == 2
    assert "services.sh" in r.stderr


def test_env_when_nothing_runs(tmp_path):
    r = run("env", env={"HIVE_SERVICES_DIR": str(tmp_path / "none")})
    assert r.returncode == 0
    assert "export" not in r.stdout
    assert r.stdout.startswith("#")


def test_status_when_nothing_runs(tmp_path):
    r = run("status", env={"HIVE_SERVICES_DIR": str(tmp_path / "none")})
    assert r.returncode == 0
    assert r.stdout.count("stopped") == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="stop needs root")
def test_stop_when_nothing_exists(tmp_path):
    r = run("stop", env={"HIVE_SERVICES_DIR": str(tmp_path / "none")})
    assert r.returncode == 0
    assert not (tmp_path / "none").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_unknown_service_is_rejected(tmp_path):
    r = run("stop", "nosuch", env={"HIVE_SERVICES_DIR": str(tmp_path)})
    assert r.returncode != 0
    assert "unknown service" in r.stderr


@pytest.mark.skipif(not os.environ.get("SLURM_CONF") or not shutil.which("sinfo"), reason="no Slurm (scripts/services.sh slurm)")
def test_slurm_node_is_up():
    r = subprocess.run(["sinfo", "-h", "-o", "%P %T %N"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "debug*" in r.stdout and "localhost" in r.stdout


@pytest.mark.skipif(not os.environ.get("DOCKER_HOST", "").startswith("unix://") or not shutil.which("docker"),
                    reason="no docker (scripts/services.sh docker)")
def test_docker_python_image_runs():
    r = subprocess.run(["docker", "run", "--rm", "--network", "none", "hive-test/python:3.11", "python3", "-c",
                        "import json, sqlite3, hashlib; print(json.dumps([1]))"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1]"
