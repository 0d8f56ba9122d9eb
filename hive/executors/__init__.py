"""Executors: one protocol (run a command, wait, report), engines chosen by the playbook's `executor.kind`."""

from __future__ import annotations

from pathlib import Path

from hive.executors.base import Executor, RunRequest, RunResult, scrubbed_environment
from hive.executors.local import LocalExecutor
from hive.executors.slurm import SlurmExecutor, reap_slurm_jobs

__all__ = ["Executor", "LocalExecutor", "RunRequest", "RunResult", "make_executor", "reap_leftovers",
           "scrubbed_environment"]


def make_executor(config, *, campaign: str = "", gpus: float = 0) -> Executor:  # noqa: ANN001  (playbook executor section)
    """The executor the playbook names; `campaign` labels containers and jobs, `gpus` is Slurm's default gres."""
    if config.kind == "docker":
        from hive.executors.docker import DockerExecutor  # the docker SDK loads only for a docker executor

        return DockerExecutor(config, campaign=campaign)
    if config.kind == "slurm":
        return SlurmExecutor(config, campaign=campaign, gpus=gpus)
    return LocalExecutor(sandbox=config.sandbox)  # the schema admits no other kind


def reap_leftovers(config, campaign: str, logs: Path) -> int:  # noqa: ANN001
    """Remove the containers or cancel the Slurm jobs a crashed Hive left of this campaign; return how many.

    Local processes are reaped by `local.reap_orphans`; this covers what lives outside Hive's process tree.
    """
    if config.kind == "docker":
        from hive.executors.docker import reap_containers  # the docker SDK loads only for a docker executor

        return reap_containers(campaign, logs)
    if config.kind == "slurm":
        return reap_slurm_jobs(logs)
    return 0
