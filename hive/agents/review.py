"""The critic's optional LLM review: does a diff break a rule a regex cannot see?"""

from __future__ import annotations

from hive.llm import LLM, first_json_object, render_prompt


class LlmReviewer:
    """Asks the critic model whether a diff breaks the playbook's rules."""

    def __init__(self, llm: LLM):
        self.llm = llm

    def review(self, diff: str, rules: str, number: int) -> tuple[bool, str]:
        """(ok, reason) for a diff; an unreadable reply counts as ok and is recorded as an event."""
        prompt = render_prompt("critic", diff=diff, rules=rules, number=number)
        reply = self.llm.complete("critic", [{"role": "user", "content": prompt}], number)
        try:
            data = first_json_object(reply)
            if not isinstance(data.get("ok"), bool):
                raise ValueError("'ok' is not true or false")
            return data["ok"], str(data.get("reason") or ("no rule broken" if data["ok"] else "rule broken"))
        except ValueError as exc:
            self.llm.store.event(self.llm.campaign_id, "review_unreadable", f"{exc}: {reply[:500]}", number)
            return True, "review unreadable"
