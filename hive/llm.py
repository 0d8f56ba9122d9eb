"""The LLM edge: one litellm call per request, a model per role, retries on transient errors, tokens and dollars recorded."""

from __future__ import annotations

import functools
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at import

import jinja2  # noqa: E402
import litellm  # noqa: E402

from hive.errors import BadInput, BudgetExhausted, HiveError, ModelUnreachable  # noqa: E402
from hive.playbook import Playbook  # noqa: E402
from hive.scripted import ensure_server  # noqa: E402
from hive.store import LlmCall, Store  # noqa: E402
from hive.transcripts import Transcript  # noqa: E402

litellm.suppress_debug_info = True
TRANSIENT = (litellm.RateLimitError, litellm.Timeout, litellm.APIConnectionError,
             litellm.ServiceUnavailableError, litellm.InternalServerError)
UNREACHABLE_STATUS = (401, 402, 403, 404)  # a bad key, no credit, no access, no such model: no retry can help
QUOTA_WORDS = ("insufficient_quota", "exceeded your current quota", "credit balance is too low", "billing")
PROMPTS = Path(__file__).parent / "prompts"
SCRIPTED_PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
_registered: set[str] = set()


class LlmFailed(HiveError):
    """An LLM call failed for good: a permanent error, or transient errors on every try."""


class LLM:
    """Completes chat messages for a role of one campaign, within the playbook's dollar budget."""

    def __init__(self, store: Store, campaign_id: int, playbook: Playbook, max_tries: int = 5, backoff: float = 1.0,
                 logs: Path | None = None):
        self.store, self.campaign_id, self.playbook = store, campaign_id, playbook
        self.max_tries, self.backoff = max_tries, backoff
        self._unreachable: dict[str, str] = {}  # model -> why: other experiments' calls fail at once, unsent
        self.logs = logs  # where each experiment's transcripts go (logs/exp-N/<role>.jsonl); None: nowhere
        self._transcripts: dict[tuple[int, str], Transcript] = {}

    def transcript(self, role: str, number: int | None) -> Transcript | None:
        """The transcript every call of a role for an experiment is appended to (None without logs or a number)."""
        if self.logs is None or number is None:
            return None
        key = (number, role)
        if key not in self._transcripts:
            transcript = self._transcripts[key] = Transcript(self.logs, number, role)
            self.store.ensure_transcript(self.campaign_id, number, role, str(transcript.path))
        return self._transcripts[key]

    def model_for(self, role: str) -> str | None:
        """The model configured for a role: the playbook's `models.<role>`, else HIVE_MODEL, else None."""
        return self.playbook.model_for(role)

    def enabled(self, role: str) -> bool:
        return self.model_for(role) is not None

    def complete(self, role: str, messages: list[dict], experiment_number: int | None = None,
                 transcript: Transcript | None = None) -> str:
        """The model's reply to the messages; raises BudgetExhausted before a call over budget, LlmFailed after retries.

        With a `transcript`, the messages it has not seen, the reply and the call's cost are appended to it.
        """
        model = self.model_for(role)
        if model is None:
            raise BadInput(f"models.{role}: no model configured (set it in the playbook or HIVE_MODEL)")
        if model in self._unreachable:
            raise ModelUnreachable(self._unreachable[model])
        kwargs, prices = self._route(model)
        transcript = transcript or self.transcript(role, experiment_number)
        for attempt in range(1, self.max_tries + 1):
            self._check_budget()
            t0 = time.monotonic()
            try:
                response = litellm.completion(messages=messages, extra_headers={"X-Hive-Role": role},
                                              timeout=self.playbook.models.timeout, max_retries=0, **kwargs)
            except Exception as exc:  # noqa: BLE001  (every failure is recorded; only transient ones are retried)
                self._record(role, model, experiment_number, time.monotonic() - t0, error=f"{type(exc).__name__}: {exc}")
                status = unreachable_status(exc)
                if status is not None:
                    why = self._unreachable[model] = (f"models.{role}: {model} cannot be reached: HTTP {status} "
                                                      f"({type(exc).__name__}: {_first_line(exc)})")
                    raise ModelUnreachable(why) from exc
                if not isinstance(exc, TRANSIENT) or attempt == self.max_tries:
                    raise LlmFailed(f"{role} call to {model} failed after {attempt} tries: {type(exc).__name__}: {exc}") from exc
                time.sleep(min(60.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random()))
                continue
            usage = getattr(response, "usage", None)
            tokens_in, tokens_out = getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
            seconds, dollars = time.monotonic() - t0, _dollars(response, prices, tokens_in, tokens_out)
            self._record(role, model, experiment_number, seconds, tokens_in, tokens_out, dollars)
            reply = response.choices[0].message.content or ""
            if transcript is not None:
                transcript.call(messages, reply, model=model, tokens_in=tokens_in, tokens_out=tokens_out,
                                dollars=round(dollars, 6), seconds=round(seconds, 3))
            return reply
        raise AssertionError("unreachable")

    def _route(self, model: str) -> tuple[dict, dict | None]:
        """litellm arguments for a configured model (a `scripted:` one starts the local server) and its price."""
        models = self.playbook.models
        if model.startswith("scripted:"):
            server = ensure_server(model.removeprefix("scripted:"))
            _register("openai/scripted", SCRIPTED_PRICE)
            return {"model": "openai/scripted", "api_base": server.api_base, "api_key": "scripted"}, SCRIPTED_PRICE
        kwargs: dict = {"model": model}
        if models.api_base:
            kwargs["api_base"] = models.api_base
        if models.api_key_env:
            kwargs["api_key"] = os.environ.get(models.api_key_env, "")
        prices = models.prices.get(model)
        if prices:
            _register(model, prices)
        return kwargs, prices

    def _check_budget(self) -> None:
        cap = self.playbook.budget.max_dollars
        if cap is not None:
            spent = self.store.llm_totals(self.campaign_id)["dollars"]
            if spent >= cap:
                raise BudgetExhausted(f"LLM budget spent: ${spent:.4f} of budget.max_dollars ${cap:g}")

    def _record(self, role: str, model: str, number: int | None, seconds: float, tokens_in: int = 0,
                tokens_out: int = 0, dollars: float = 0.0, error: str = "") -> None:
        self.store.add(LlmCall(campaign_id=self.campaign_id, experiment_number=number, role=role, model=model,
                               prompt_tokens=tokens_in, completion_tokens=tokens_out, dollars=dollars,
                               seconds=round(seconds, 3), ok=not error, error=error[:2000]))


def unreachable_status(exc: Exception) -> int | None:
    """The HTTP status of an error that no retry can cure (auth, access, unknown model, spent quota), else None."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return None
    if status in UNREACHABLE_STATUS:
        return status
    text = str(exc).lower()
    if status in (400, 429) and any(word in text for word in QUOTA_WORDS):  # a 429 for quota is not a rate limit
        return status
    return None


def _first_line(exc: Exception, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _register(model: str, prices: dict) -> None:
    if model not in _registered:
        litellm.register_model({model: {"input_cost_per_token": prices.get("input_per_mtok", 0) / 1e6,
                                        "output_cost_per_token": prices.get("output_per_mtok", 0) / 1e6,
                                        "cache_creation_input_token_cost": 0.0, "cache_read_input_token_cost": 0.0,
                                        "litellm_provider": model.split("/")[0] if "/" in model else "openai",
                                        "mode": "chat"}})
        _registered.add(model)


def _dollars(response: object, prices: dict | None, tokens_in: int, tokens_out: int) -> float:
    """litellm's price of a response, else the playbook's registered price, else 0 (tokens are still counted)."""
    try:
        cost = litellm.completion_cost(completion_response=response)
        if cost:
            return float(cost)
    except Exception:  # noqa: BLE001  (an unmapped model has no price; that is not an error)
        pass
    if prices:
        return (tokens_in * prices.get("input_per_mtok", 0) + tokens_out * prices.get("output_per_mtok", 0)) / 1e6
    return 0.0


def render_prompt(name: str, **context: object) -> str:
    """Render `hive/prompts/<name>.md` (Jinja2) with the context."""
    return _prompts().get_template(f"{name}.md").render(**context).strip() + "\n"


@functools.cache
def _prompts() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["clip"] = _clip
    env.filters["num"] = lambda x: "-" if x is None else f"{x:.6g}"
    return env


def _clip(text: str, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters cut)"


def first_json_object(text: str) -> dict:
    """The first JSON object in a reply, tolerating code fences and prose around it; ValueError if there is none."""
    decoder = json.JSONDecoder()
    for start in (i for i, c in enumerate(text) if c == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no complete JSON object found in the reply (was it cut off?)")
