"""Executors: one protocol (run a command, wait, report), engines chosen by the playbook's `executor.kind`."""

from __future__ import annotations

from pathlib import Path

from hive.executors.base import Executor, RunRequest, RunResult, scrubbed_environment
from hive.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "RunRequest", "RunResult", "make_executor", "reap_leftovers",
           "scrubbed_environment"]

KINDS = ("local", "docker", "slurm")


def make_executor(config, *, campaign: str = "", gpus: float = 0) -> Executor:  # noqa: ANN001  (playbook executor section)
    """The executor the playbook names; `campaign` labels containers and jobs, `gpus` is Slurm's default gres."""
    if config.kind == "local":
        return LocalExecutor(sandbox=config.sandbox)
    if config.kind == "docker":
        from hive.executors.docker import DockerExecutor

        return DockerExecutor(config, campaign=campaign)
    if config.kind == "slurm":
        from hive.executors.slurm import SlurmExecutor

        return SlurmExecutor(config, campaign=campaign, gpus=gpus)
    from hive.errors import BadInput

    raise BadInput(f"executor.kind: unknown executor {config.kind!r}; valid: {', '.join(KINDS)}")


def reap_leftovers(config, campaign: str, logs: Path) -> int:  # noqa: ANN001
    """Remove the containers or cancel the Slurm jobs a crashed Hive left of this campaign; return how many.

    Local processes are reaped by `local.reap_orphans`; this covers what lives outside Hive's process tree.
    """
    if config.kind == "docker":
        from hive.executors.docker import reap_containers

        return reap_containers(campaign, logs)
    if config.kind == "slurm":
        from hive.executors.slurm import reap_slurm_jobs

        return reap_slurm_jobs(logs)
    return 0
