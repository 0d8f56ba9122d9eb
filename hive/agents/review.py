"""The critic's optional LLM review: does a diff break a rule a regex cannot see?"""

from __future__ import annotations

from hive.llm import LLM, first_json_object, render_prompt


class LlmReviewer:
    """Asks the critic model whether a diff breaks the playbook's rules; fails closed on replies it cannot read."""

    def __init__(self, llm: LLM, max_tries: int = 2):
        self.llm, self.max_tries = llm, max_tries

    def review(self, diff: str, rules: str, number: int) -> tuple[bool, str]:
        """(ok, reason) for a diff; an unreadable reply is asked again once, then counts as a rule breach."""
        messages = [{"role": "user", "content": render_prompt("critic", diff=diff, rules=rules, number=number)}]
        for _ in range(self.max_tries):
            reply = self.llm.complete("critic", messages, number)
            try:
                return _verdict(reply)
            except ValueError as exc:
                error = str(exc)
            self.llm.store.event(self.llm.campaign_id, "review_unreadable", f"{error}: {reply[:500]}", number)
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": render_prompt("retry", role="critic", error=error)}]
        return False, f"the review was unreadable {self.max_tries} times, so the change is not trusted ({error})"


def _verdict(reply: str) -> tuple[bool, str]:
    data = first_json_object(reply)
    if not isinstance(data.get("ok"), bool):
        raise ValueError("'ok' is not true or false")
    return data["ok"], str(data.get("reason") or ("no rule broken" if data["ok"] else "rule broken"))
