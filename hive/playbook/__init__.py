"""The playbook: its schema (schema.py), how it is loaded (loader.py) and its path globs (globs.py)."""

from hive.playbook.globs import matches_any
from hive.playbook.loader import check_against_source, load_playbook, parse_override
from hive.playbook.schema import (
    AgentCoderSpec,
    CONSTRAINT_RE,
    NAME_RE,
    Binding,
    Budget,
    DockerExecutor,
    EnvBinding,
    Executor,
    FileBinding,
    FlagBinding,
    Knob,
    LocalExecutor,
    Models,
    Objective,
    Playbook,
    Progress,
    Resources,
    RunSpec,
    Scheduler,
    ScoreSpec,
    SlurmExecutor,
    json_schema,
)

__all__ = ["AgentCoderSpec", "CONSTRAINT_RE", "NAME_RE", "Binding", "Budget", "DockerExecutor", "EnvBinding", "Executor", "FileBinding",
           "FlagBinding", "Knob", "LocalExecutor", "Models", "Objective", "Playbook", "Progress", "Resources", "RunSpec",
           "Scheduler", "ScoreSpec", "SlurmExecutor", "check_against_source", "json_schema", "load_playbook",
           "matches_any", "parse_override"]
