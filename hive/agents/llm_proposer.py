"""The LLM proposer: reads the campaign view through `prompts/proposer.md` and returns one validated Proposal."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hive.agents.base import CampaignView, Proposal, parent_problem
from hive.errors import HiveError
from hive.llm import LLM, first_json_object, render_prompt


class ProposalFailed(HiveError):
    """The model gave no usable, new proposal within the allowed tries."""


class ProposalReply(BaseModel):
    """The JSON object the proposer must answer with."""

    model_config = ConfigDict(extra="ignore")
    hypothesis: str = Field(min_length=3)
    rationale: str = ""
    parent: int | None = None
    plan: str = Field(min_length=3)


class LlmProposer:
    """Asks the model for the next experiment; feeds malformed or duplicate replies back and asks again."""

    name = "llm"

    def __init__(self, llm: LLM, max_tries: int = 3):
        self.llm, self.max_tries = llm, max_tries

    def propose(self, view: CampaignView, number: int) -> Proposal:
        """A new proposal for experiment `number`; ProposalFailed after `max_tries` unusable replies."""
        messages = [{"role": "user", "content": render_prompt("proposer", view=view, number=number)}]
        for _ in range(self.max_tries):
            reply = self.llm.complete("proposer", messages, number)
            try:
                return _proposal(reply, view)
            except ValueError as exc:
                error = str(exc)
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": render_prompt("retry", role="proposer", error=error)}]
        raise ProposalFailed(f"no usable proposal after {self.max_tries} tries; last problem: {error}")

    def observe(self, proposal: Proposal, outcome: object) -> None:
        """Nothing to do: the store carries the history the next prompt shows."""


def _proposal(reply: str, view: CampaignView) -> Proposal:
    try:
        data = ProposalReply.model_validate(first_json_object(reply))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'object'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"the JSON object does not fit the schema ({problems})") from None
    if data.parent is not None:
        shown = {e.number: e for e in [*view.leaderboard, *view.recent, *(e for e in (view.best, view.baseline) if e)]}
        fit = sorted(n for n, e in shown.items() if parent_problem(n, None, e.verdict) is None)
        parent = shown.get(data.parent)
        problem = (f"#{data.parent} is not among the experiments shown" if parent is None
                   else parent_problem(data.parent, None, parent.verdict))
        if problem:
            raise ValueError(f"parent {problem}; use null (current best) or one of {fit}")
    key = _normal(data.hypothesis)
    for e in [*view.in_flight, *view.recent, *view.leaderboard]:
        if _normal(e.hypothesis) == key:
            state = "is in flight" if e in view.in_flight else f"was already tried ({e.verdict or 'unfinished'})"
            raise ValueError(f"that hypothesis repeats experiment #{e.number}, which {state}; propose a different experiment")
    return Proposal(hypothesis=data.hypothesis.strip(), rationale=data.rationale.strip(), parent=data.parent,
                    plan=data.plan.strip(), strategist="llm")


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9.]+", " ", text.lower()).split())
