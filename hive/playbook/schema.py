"""The playbook's schema: every field, its type, default and checks (one noun, so over 400 lines)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hive.playbook.constraints import parse_constraint

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
FLAG_RE = r"^-{1,2}[A-Za-z0-9][A-Za-z0-9_.-]*$"
FlagStyle = Literal["space", "equals"]
FLAG_STYLE_HELP = "how a flag carries its value: 'space' (--lr 0.1) or 'equals' (--lr=0.1)"
CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|<|>|==)\s*([-+0-9.eE_]+)\s*$")
SEED_MAX = 2**32 - 1  # numpy's and the samplers' seed range: a larger seed crashes the run or the sampler
MIN_LOG_MB = 5  # a capped log keeps its first 1 MB and last 4 MB: a smaller cap cannot be honoured
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
EnvName = Annotated[str, Field(pattern=ENV_NAME)]
Command = Annotated[str, Field(min_length=1, pattern=r"^[^\x00]*$")]  # no NUL: no process can be given one


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no limit, bound or threshold is inf or NaN


class Resources(Strict):
    gpus: int | float = Field(0, ge=0, description="GPUs per run: 0 = CPU only, N >= 1 = N whole GPUs of its own, "
                                                   "0 < x < 1 = that share of one GPU's memory, packed with others")
    gpu_memory_mb: int | None = Field(None, ge=1, description="a share of one GPU by memory: the run is packed with "
                                                              "others on a device that has this much free")
    min_free_memory_mb: int = Field(0, ge=0, description="only place a run on GPUs with this much free memory")
    cpu_threads: int = Field(1, ge=1, description="threads per run; CPU slots = cores / threads")
    memory_mb: int | None = Field(None, ge=16, description="address-space limit per run (an rlimit locally)")

    @field_validator("gpus")
    @classmethod
    def _whole_or_fraction(cls, value: int | float) -> int | float:
        if value >= 1 and value != int(value):
            raise ValueError(f"{value} is neither a whole number of GPUs nor a share of one (0 < gpus < 1)")
        return int(value) if value == int(value) else value

    @model_validator(mode="after")
    def _share_of_one(self) -> "Resources":
        if self.gpu_memory_mb is not None and self.gpus >= 1:
            raise ValueError(f"gpu_memory_mb asks for a share of one GPU, but gpus: {self.gpus} asks for whole ones "
                             f"(of its own); give one of them")
        return self

    @property
    def shared(self) -> bool:
        """True if a run takes a share of one GPU (packed with others) rather than whole GPUs of its own."""
        return self.gpu_memory_mb is not None or 0 < self.gpus < 1


class Progress(Strict):
    """A progress line in the run's log, read live, so a run clearly behind the best's curve is stopped (pruned)."""

    regex: str = Field(..., description="regex with two groups over the log: the step, then a value (e.g. a loss)")
    min_step: float = Field(0, ge=0, description="no run is pruned before this step")
    margin: float = Field(4.0, gt=0, description="prune when the run is this many of the best's seed standard "
                                                 "deviations (at that step) behind the best on the same seed")
    direction: Literal["minimize", "maximize"] = Field("minimize", description="whether a lower value is better")

    @field_validator("regex")
    @classmethod
    def _two_groups(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"does not compile: {exc}") from None
        if compiled.groups < 2:
            raise ValueError("needs two capture groups: the step, then the value")
        return value


class RunSpec(Strict):
    command: Command = Field(..., description="command run by /bin/sh -c in a fresh folder with the experiment's "
                                                         "files; {repo} is the campaign repo (shared data), {seed} the "
                                                         "seed; knob flags and seed_flag are appended")
    timeout: float = Field(600, gt=0, description="wall-clock limit in seconds; the process group is killed after it")
    env: dict[EnvName, Annotated[str, Field(pattern=r"^[^\x00]*$")]] = Field(
        default_factory=dict, description="extra environment for the run")
    pass_env: list[EnvName] = Field(default_factory=list, description="host variables passed through the scrubbed environment")
    seed_env: str | None = Field("SEED", pattern=ENV_NAME, description="environment variable that carries the seed (null: none)")
    seed_flag: str | None = Field(None, pattern=FLAG_RE, description="flag appended to the command with the seed, "
                                                                    "e.g. --seed (written in flag_style)")
    flag_style: FlagStyle = Field("space", description=FLAG_STYLE_HELP + "; a knob's bind.flag_style overrides it")
    python: str | None = Field(None, min_length=1, description="the interpreter `python` means for runs, the scorer and "
                                                            "setup: its folder goes first on PATH (a path, relative to "
                                                            "the playbook, {repo} allowed, or a name on PATH; default: "
                                                            "the one Hive runs in)")
    path: list[str] = Field(default_factory=list, description="folders put first on PATH (before run.python's) for runs, "
                                                              "the scorer and setup")
    seeds: list[Seed] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1,
                              description=f"distinct seeds (0 to {SEED_MAX}) in the order runs use them")
    resources: Resources = Field(default_factory=Resources)
    max_log_mb: float = Field(50, ge=MIN_LOG_MB, description="a longer log keeps its first 1 MB and its last 4 MB")
    network: bool = Field(False, description="let a sandboxed run reach the network (off: no interface but loopback)")
    progress: Progress | None = Field(None, description="live progress from the log; runs clearly behind are pruned")
    smoke: str | None = Field(None, min_length=1, description="a short version of the command (e.g. 20 steps) that the "
                                                              "agentic coder runs to check its change, and Hive before "
                                                              "the seeds")

    @field_validator("env", mode="before")
    @classmethod
    def _stringify_env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) < len(value):
            raise ValueError(f"seeds must be distinct; repeated: {sorted({s for s in value if value.count(s) > 1})}")
        return value


class ScoreSpec(Strict):
    command: Command = Field(..., description="scorer command, run in the worktree; {harness} is the pristine copy of protected files")
    timeout: float = Field(300, gt=0)


class Objective(Strict):
    metric: str = Field(..., min_length=1, description="the metric key the campaign optimises")
    direction: Literal["minimize", "maximize"] = "minimize"
    constraints: list[str] = Field(default_factory=list, description="e.g. 'artifact_bytes <= 16000000'")
    min_delta: float = Field(0.0, ge=0, description="a keep must beat the best by at least this much")
    alpha: float = Field(0.01, gt=0, lt=1, description="false-keep rate of the one-sided test for a keep, over all "
                                                        "its looks (Parameter Golf: 0.01)")
    confirm_seeds: int = Field(3, ge=1, description="seeds a candidate runs before a keep can first be decided")
    max_seeds: int | None = Field(None, ge=1, description="most seeds a promising candidate is given, one at a time "
                                                          "(default: every one of run.seeds)")
    test: Literal["paired", "welch"] = Field("paired", description="paired: per-seed differences against the best "
                                                                   "on the same seeds; welch: seeds not paired")
    recheck_seeds: int = Field(0, ge=0, le=10, description="a keep is run again side by side with the best on this "
                               "many fresh seeds, each pair at the same time, and stands only if it still wins "
                               "there (catches machine drift and luck; 0: off)")
    metrics_regex: dict[str, str] = Field(
        default_factory=dict,
        description="metric key -> regex with one group over the log (last match wins), for repos without '---' output",
    )

    @field_validator("constraints")
    @classmethod
    def _check_constraints(cls, value: list[str]) -> list[str]:
        for text in value:
            match = CONSTRAINT_RE.match(text)
            number = re.fullmatch(r"[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?", match.group(3)) if match else None
            if not number or not math.isfinite(float(number.group(0))):
                raise ValueError(f"constraint {text!r} is not 'key <=|>=|<|>|== number'")
        return value

    @field_validator("metrics_regex")
    @classmethod
    def _check_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for key, pattern in value.items():
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"regex for {key!r} does not compile: {exc}") from None
            if compiled.groups < 1:
                raise ValueError(f"regex for {key!r} needs a capture group around the value")
        return value


class FileBinding(Strict):
    file: str = Field(..., description="editable file holding the assignment (a path inside the source)")
    assign: str = Field(..., description="name of a top-level assignment in that file")


class FlagBinding(Strict):
    flag: str = Field(..., pattern=FLAG_RE, description="command-line flag appended to the run command")
    flag_style: FlagStyle | None = Field(None, description=FLAG_STYLE_HELP + " (default: run.flag_style)")


class EnvBinding(Strict):
    env: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment variable set for the run")


Binding = Union[FileBinding, FlagBinding, EnvBinding]


class Knob(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = Field(None, description="plain strings or numbers")
    bind: Binding

    @model_validator(mode="after")
    def _check_space(self) -> "Knob":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical knob needs a non-empty 'choices' list")
            odd = next((c for c in self.choices if not isinstance(c, (str, int, float, bool, type(None)))), None)
            if odd is not None:
                raise ValueError(f"choices must be plain strings or numbers, not a {type(odd).__name__} ({odd!r})")
            if len({repr(c) for c in self.choices}) < len(self.choices):
                raise ValueError(f"choices must be distinct (got {self.choices})")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"an {self.type} knob needs 'low' and 'high'")
            if self.low >= self.high:
                raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log-scale knob needs 'low' > 0")
            if self.log and self.step is not None:
                raise ValueError("a log-scale knob cannot have a 'step'")
            if self.type == "int" and any(v is not None and v != int(v) for v in (self.low, self.high, self.step)):
                raise ValueError("an int knob needs whole 'low', 'high' and 'step'")
        return self


class Models(Strict):
    proposer: str | None = Field(None, description="litellm model for the proposer (else HIVE_MODEL); 'scripted:<name>' replays a script")
    coder: str | None = Field(None, description="litellm model for the coder (else HIVE_MODEL)")
    critic: str | None = Field(None, description="litellm model for the critic's review (else HIVE_MODEL)")
    api_base: str | None = Field(None, description="base URL of an OpenAI-compatible server (e.g. a local vLLM)")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment variable holding the API key")
    prices: dict[str, dict[Literal["input_per_mtok", "output_per_mtok"], float]] = Field(
        default_factory=dict, description="model -> dollars per million input/output tokens, for models litellm has no price for")
    timeout: float = Field(300, gt=0, description="seconds one LLM call may take")


class AgentCoderSpec(Strict):
    """The built-in agentic coder: one shell command per model turn in the worktree, then 'done'."""

    kind: Literal["agent"] = "agent"
    max_steps: int = Field(30, ge=1, description="model turns (commands) one coding or repair may take")
    repair_attempts: int = Field(2, ge=0, description="times a crashed smoke run or seed goes back to the coder")
    command_timeout: float = Field(300, gt=0, description="seconds one of its commands may run")
    output_chars: int = Field(8000, ge=500, description="characters of a command's output shown (head and tail)")


class EditsCoderSpec(Strict):
    """One prompt with the editable files pasted in, answered with search/replace blocks (files over 60,000
    characters cannot be edited this way)."""

    kind: Literal["edits"]


class KnobsCoderSpec(Strict):
    """Rewrites the declared knobs' assignments (the knob strategists' coder)."""

    kind: Literal["knobs"]


class CommandCoderSpec(Strict):
    """An agent CLI as the coder: a preset (mini-swe-agent, aider, codex, claude-code) or a full command template."""

    kind: Literal["command"] = "command"
    preset: Literal["mini-swe-agent", "aider", "codex", "claude-code"] | None = Field(
        None, description="an agent CLI Hive knows how to run (README: the command line of each)")
    command: str | None = Field(None, min_length=1, description="a bash command template instead of a preset: "
                                "{task} {task_file} {model} {api_base} {out} {files} are filled in, quoted")
    cli: str | None = Field(None, min_length=1, description="the preset's executable, if not on PATH by its name")
    model: str | None = Field(None, description="the model the CLI is told (default models.coder, else HIVE_MODEL)")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="the one variable with a key the CLI gets (default: models.api_key_env, "
                                                "else the preset's own, e.g. ANTHROPIC_API_KEY for claude-code)")
    timeout: float = Field(1800, gt=0, description="seconds the CLI may run for one experiment")
    repair_attempts: int = Field(2, ge=0, description="times a crashed smoke run or seed goes back to the CLI")

    @model_validator(mode="after")
    def _preset_or_command(self) -> "CommandCoderSpec":
        if (self.preset is None) == (self.command is None):
            raise ValueError("give coder.preset or coder.command (one of them)")
        return self


CoderSpec = Annotated[Union[AgentCoderSpec, EditsCoderSpec, KnobsCoderSpec, CommandCoderSpec],
                     Field(discriminator="kind")]


class Budget(Strict):
    max_experiments: int | None = Field(None, ge=1)
    max_hours: float | None = Field(None, gt=0)
    max_dollars: float | None = Field(None, ge=0)


SandboxMode = Literal["auto", "bwrap", "none"]
SANDBOX_HELP = ("bwrap: every run and scorer in a bubblewrap sandbox (only its own folder writable, no network, "
                "its processes die with it); none: plain subprocesses; auto: bwrap when it works on this machine")


class LocalExecutor(Strict):
    kind: Literal["local"] = "local"
    sandbox: SandboxMode = Field("auto", description=SANDBOX_HELP)


class DockerExecutor(Strict):
    kind: Literal["docker"]
    image: str = Field(..., min_length=1, description="image each run starts from (must be on the daemon already)")
    workdir: str = Field("/workspace", pattern=r"^/", description="where the run folder is mounted and run from")
    network: str = Field("none", description="docker network mode; 'none' keeps runs offline")
    memory: str | None = Field(None, pattern=r"^[0-9]+[kmgKMG]?$", description="memory limit, e.g. '8g'")
    user: str | None = Field(None, description="uid[:gid] inside the container (default: Hive's own, so files stay yours)")


class SlurmExecutor(Strict):
    """Each run is one `sbatch` job; Slurm places GPUs itself, so Hive's scheduler only limits jobs in flight."""

    kind: Literal["slurm"]
    partition: str | None = None
    time_minutes: int | None = Field(None, ge=1, description="--time per job (default: run.timeout rounded up)")
    cpus_per_task: int | None = Field(None, ge=1, description="--cpus-per-task (default: run.resources.cpu_threads)")
    gpus: int | None = Field(None, ge=0, description="--gres=gpu:N per job (default: run.resources.gpus)")
    extra_args: list[str] = Field(default_factory=list, description="more sbatch arguments, e.g. ['--account=x']")
    poll_seconds: float = Field(1.0, gt=0, description="how often squeue is asked about a job")
    sandbox: SandboxMode = Field("auto", description=SANDBOX_HELP + " (checked on the compute node)")


Executor = Annotated[Union[LocalExecutor, DockerExecutor, SlurmExecutor], Field(discriminator="kind")]


class Scheduler(Strict):
    inventory: Literal["auto", "nvml", "simulated", "cpu"] = "auto"
    simulate_gpus: int = Field(0, ge=0)
    simulated_memory_mb: int = Field(81920, ge=1)
    slots: int | None = Field(None, ge=1, description="override the number of concurrent runs")
    max_utilisation: int = Field(10, ge=0, le=100, description="a GPU busier than this (percent) counts as taken")
    max_runs_per_gpu: int = Field(8, ge=1, description="most runs packed on one GPU (runs with a share of one)")
    lookahead: int = Field(1, ge=0, description="experiments proposed and coded ahead of a free slot")
    starvation_limit: int = Field(8, ge=0, description="how often smaller runs may overtake a waiting larger one")


class Playbook(Strict):
    name: str = Field(..., pattern=NAME_RE, description="campaign name (letters, digits, . _ -)")
    description: str = ""
    source: str = Field(..., min_length=1, description="template folder under playbooks/, or a path/URL of a git repo")
    ref: str | None = Field(None, description="git ref of the source to start from")
    editable: list[str] = Field(..., min_length=1, description="globs of files agents may change")
    protected: list[str] = Field(default_factory=list, description="globs nobody may change (scorer, data, eval)")
    setup: str | None = Field(None, description="command run once in the campaign repo after it is created "
                                                "(its outputs must be git-ignored)")
    run: RunSpec
    score: ScoreSpec | None = None
    objective: Objective
    strategist: Literal["optuna", "llm", "random", "greedy"] = "optuna"
    search: Literal["local", "global"] = Field("local", description="local: change one to three knobs of the best "
                                                                    "in a trust region; global: sample every knob")
    strategist_seed: Seed | None = Field(None, description="seed of the knob sampler, for reproducible proposals")
    knobs: list[Knob] = Field(default_factory=list)
    knob_constraints: list[str] = Field(default_factory=list, description="expressions over knob names every "
                                        "configuration must satisfy before it runs, e.g. 'NUM_HEADS % NUM_KV_HEADS == 0'")
    coder: CoderSpec | None = Field(None, description="agent | edits | knobs | command, or a mapping with kind: and its fields "
                                                      "(default: agent with strategist llm, else knobs)")
    models: Models = Field(default_factory=Models)
    budget: Budget = Field(default_factory=Budget)
    executor: Executor = Field(default_factory=LocalExecutor)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    rules: str = ""
    profile: str | None = Field(None, description="name of an entry of 'profiles' to apply")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    # where the playbook was loaded from; the source folder resolves relative to it
    path: Path | None = Field(None, exclude=True)

    @field_validator("coder", mode="before")
    @classmethod
    def _coder_by_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": value}
        if isinstance(value, dict) and "kind" not in value:  # `-c coder.max_steps=5` tunes the default coder
            return {"kind": "agent", **value}
        return value

    @field_validator("executor", mode="before")
    @classmethod
    def _local_by_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and "kind" not in value:  # `-c executor.sandbox=none` tunes the local executor
            return {"kind": "local", **value}
        return value

    @model_validator(mode="after")
    def _check_names(self) -> "Playbook":
        names = [k.name for k in self.knobs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"knob names must be unique; repeated: {', '.join(dupes)}")
        if self.strategist != "llm" and not self.knobs:
            raise ValueError(f"strategist {self.strategist!r} searches the knobs, but 'knobs' is empty "
                             f"(declare knobs, or use strategist: llm)")
        if self.objective.confirm_seeds > len(self.run.seeds):
            raise ValueError(f"objective.confirm_seeds ({self.objective.confirm_seeds}) needs at least that many "
                             f"run.seeds (has {len(self.run.seeds)})")
        for text in self.knob_constraints:
            parse_constraint(text, set(names))
        max_seeds = self.objective.max_seeds
        if max_seeds is not None and not self.objective.confirm_seeds <= max_seeds <= len(self.run.seeds):
            raise ValueError(f"objective.max_seeds ({max_seeds}) must be between confirm_seeds "
                             f"({self.objective.confirm_seeds}) and the number of run.seeds ({len(self.run.seeds)})")
        if self.coder is not None and self.coder.kind == "knobs" and not self.knobs:
            raise ValueError("coder: 'knobs' rewrites the declared knobs, but 'knobs' is empty")
        if "{harness}" in self.run.command:
            raise ValueError("run.command: {harness} is only for score.command (the run never sees the scorer)")
        return self

    @property
    def max_seeds(self) -> int:
        """The most seeds a candidate may earn: objective.max_seeds, else every one of run.seeds.

        confirm_seeds 1 without max_seeds is autoresearch's rule: one seed decides.
        """
        if self.objective.max_seeds:
            return self.objective.max_seeds
        return 1 if self.objective.confirm_seeds == 1 else len(self.run.seeds)

    @property
    def coder_spec(self) -> AgentCoderSpec | EditsCoderSpec | KnobsCoderSpec | CommandCoderSpec:
        """The coder the campaign uses: `coder`, else the agent with an LLM strategist, else the knob rewriter."""
        if self.coder is not None:
            return self.coder
        return AgentCoderSpec() if self.strategist == "llm" else KnobsCoderSpec(kind="knobs")

    def model_for(self, role: str) -> str | None:
        """The model configured for a role: `models.<role>`, else HIVE_MODEL, else None."""
        return getattr(self.models, role, None) or os.environ.get("HIVE_MODEL") or None

    def source_dir(self) -> Path | None:
        """The local folder or repository the campaign starts from, or None for a remote URL."""
        if re.match(r"^[a-z+]+://|^git@", self.source):
            return None
        base = self.path.parent if self.path else Path.cwd()
        candidate = Path(self.source).expanduser()
        return candidate if candidate.is_absolute() else (base / candidate).resolve()


def json_schema() -> dict:
    """The JSON Schema of a playbook, for editors."""
    return Playbook.model_json_schema()
