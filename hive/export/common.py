"""What every export format shares: the change it spans (commits and pull requests) and what it made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hive.store import Experiment, PullRequest


@dataclass
class ExportResult:
    """What an export made, and what the user may run next."""

    number: int
    fmt: str
    paths: list[str] = field(default_factory=list)
    branch: str | None = None
    includes: list[int] = field(default_factory=list)  # earlier PRs squashed into this export
    depends_on: list[int] = field(default_factory=list)  # earlier PRs this export needs first (--only)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        where = f"branch {self.branch} in {self.paths[0]}" if self.branch else ", ".join(self.paths)
        lines = [f"PR #{self.number} exported as {self.fmt}: {where}"]
        if self.includes:
            lines.append("  includes the stack it builds on: " + ", ".join(f"PR #{n}" for n in self.includes))
        if self.depends_on:
            lines.append("  depends on " + ", ".join(f"PR #{n}" for n in self.depends_on) + ": apply or merge it first")
        lines += [f"  {note}" for note in self.notes]
        lines += [f"  $ {cmd}" for cmd in self.commands]
        return "\n".join(lines)


@dataclass
class Change:
    """The commits an export spans and the PRs that come with it."""

    pr: PullRequest
    exp: Experiment
    base: str
    head: str
    includes: list[PullRequest]
    depends_on: list[PullRequest]
    knob_script: str | None = None  # a file the export added: the flag/env knob values, as a script


    def message(self) -> str:
        note = ""
        if self.includes:
            note = "\n\n## Included\n\n" + "\n".join(
                f"- PR #{p.number}: {p.title}" for p in self.includes) + f"\n- PR #{self.pr.number}: {self.pr.title}\n"
        elif self.depends_on:
            note = "\n\n## Depends on\n\n" + "\n".join(
                f"- PR #{p.number}: {p.title}" for p in self.depends_on) + "\n\nApply or merge those first.\n"
        if self.knob_script:
            note += (f"\n\n## Knob values outside the diff\n\n`{self.knob_script}` runs the command with the flags and "
                     f"environment variables this change was kept with.\n")
        return f"{self.pr.title}\n\n{self.pr.body.rstrip()}{note}\n"


def result(change: Change, fmt: str, **fields: Any) -> ExportResult:
    return ExportResult(number=change.pr.number, fmt=fmt, includes=[p.number for p in change.includes],
                        depends_on=[p.number for p in change.depends_on], **fields)
