"""Executors: one protocol (run a command, wait, report), engines chosen by the playbook's `executor.kind`."""

from hive.executors.base import Executor, RunRequest, RunResult, scrubbed_environment
from hive.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "RunRequest", "RunResult", "make_executor", "scrubbed_environment"]


def make_executor(config) -> Executor:  # noqa: ANN001  (a playbook executor section)
    """The executor the playbook names."""
    if config.kind == "local":
        return LocalExecutor()
    raise NotImplementedError(f"executor {config.kind!r} is not available yet")
