"""The LLM edge against the scripted OpenAI-compatible server, through the real litellm client and a real SQLite store."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from hive.errors import BadInput, BudgetExhausted, ModelUnreachable
from hive.llm import LLM, LlmFailed, first_json_object
from hive.playbook import Playbook, load_playbook
from hive.scripted import ensure_server, script_path
from hive.store import LlmCall, Store, make_engine
from tests.conftest import PLAYBOOKS


def make_llm(tmp_path, script: dict, overrides: list[str] | None = None, **kwargs) -> tuple[LLM, Store, int]:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    playbook = load_playbook(PLAYBOOKS / "quickstart.yaml", [f"models.proposer=scripted:{path}",
                                                              f"models.coder=scripted:{path}", *(overrides or [])])
    store = Store(make_engine(f"sqlite:///{tmp_path}/h.db"))
    camp, _ = store.ensure_campaign("quickstart")
    return LLM(store, camp.id, playbook, backoff=0.01, **kwargs), store, camp.id


def calls(store: Store) -> list[LlmCall]:
    with store.session() as s:
        return list(s.exec(select(LlmCall).order_by(LlmCall.id)))


def test_tokens_and_dollars_are_recorded_per_call(tmp_path):
    llm, store, cid = make_llm(tmp_path, {"proposer": ["x" * 400], "coder": ["done"]})
    assert llm.complete("proposer", [{"role": "user", "content": "y" * 800}], experiment_number=4) == "x" * 400
    assert llm.complete("coder", [{"role": "user", "content": "z" * 40}]) == "done"
    rows = calls(store)
    assert [(r.role, r.ok, r.experiment_number) for r in rows] == [("proposer", True, 4), ("coder", True, None)]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens) == (200, 100)
    assert rows[0].dollars == pytest.approx((200 * 1.0 + 100 * 2.0) / 1e6)  # the scripted model's registered price
    assert rows[0].model.startswith("scripted:") and rows[0].seconds > 0
    totals = store.llm_totals(cid)
    assert totals["calls"] == 2 and totals["prompt_tokens"] == 210 and totals["dollars"] > 0


def test_transient_errors_are_retried_and_recorded(tmp_path):
    llm, store, _ = make_llm(tmp_path, {"proposer": [{"status": 429}, {"status": 500}, "finally"]})
    assert llm.complete("proposer", [{"role": "user", "content": "hi"}]) == "finally"
    rows = calls(store)
    assert [r.ok for r in rows] == [False, False, True]
    assert "RateLimitError" in rows[0].error and "InternalServerError" in rows[1].error
    assert rows[0].prompt_tokens == 0 and rows[0].dollars == 0


def test_retries_are_bounded(tmp_path):
    llm, store, _ = make_llm(tmp_path, {"proposer": [{"status": 503}]}, max_tries=3)
    with pytest.raises(LlmFailed, match="after 3 tries"):
        llm.complete("proposer", [{"role": "user", "content": "hi"}])
    assert len(calls(store)) == 3


def test_permanent_errors_are_not_retried(tmp_path):
    llm, store, _ = make_llm(tmp_path, {"proposer": [{"status": 400}, "never"]})
    with pytest.raises(LlmFailed, match="after 1 tries"):
        llm.complete("proposer", [{"role": "user", "content": "hi"}])
    assert [r.ok for r in calls(store)] == [False]


def test_budget_exhausted_raises_before_calling(tmp_path):
    llm, store, cid = make_llm(tmp_path, {"proposer": ["a" * 4000]}, ["budget.max_dollars=0.0005"])
    llm.complete("proposer", [{"role": "user", "content": "b" * 4000}])  # 1000 in + 1000 out tokens = $0.003
    server = ensure_server(llm.model_for("proposer").removeprefix("scripted:"))
    seen = len(server.requests)
    with pytest.raises(BudgetExhausted, match="max_dollars"):
        llm.complete("proposer", [{"role": "user", "content": "again"}])
    assert len(server.requests) == seen and store.llm_totals(cid)["calls"] == 1


def test_model_per_role_from_playbook_else_hive_model(monkeypatch):
    playbook = Playbook.model_validate({
        "name": "p", "source": "quickstart", "editable": ["train.py"], "run": {"command": "true"},
        "objective": {"metric": "val_loss"}, "strategist": "llm", "models": {"proposer": "anthropic/claude-sonnet-4-5"}})
    llm = LLM(None, 1, playbook)  # type: ignore[arg-type]  (model resolution needs no store)
    monkeypatch.delenv("HIVE_MODEL", raising=False)
    assert llm.model_for("proposer") == "anthropic/claude-sonnet-4-5"
    assert llm.model_for("coder") is None and not llm.enabled("coder") and llm.enabled("proposer")
    with pytest.raises(BadInput, match="models.coder"):
        llm.complete("coder", [])
    monkeypatch.setenv("HIVE_MODEL", "openai/gpt-4o-mini")
    assert llm.model_for("coder") == "openai/gpt-4o-mini" and llm.model_for("critic") == "openai/gpt-4o-mini"
    assert llm.model_for("proposer") == "anthropic/claude-sonnet-4-5"


def test_hive_model_selects_a_shipped_script(tmp_path, monkeypatch):
    monkeypatch.setenv("HIVE_MODEL", "scripted:quickstart")
    store = Store(make_engine(f"sqlite:///{tmp_path}/h.db"))
    camp, _ = store.ensure_campaign("quickstart")
    llm = LLM(store, camp.id, load_playbook(PLAYBOOKS / "quickstart.yaml"))
    reply = llm.complete("critic", [{"role": "user", "content": "review this"}])
    assert isinstance(first_json_object(reply)["ok"], bool)
    with pytest.raises(BadInput, match="not found"):
        script_path("no-such-script")


def test_unpriced_local_model_counts_tokens_at_zero_dollars(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_LLM_KEY", "secret")
    server = ensure_server(str(_script(tmp_path, {"proposer": ["ok ok ok ok"]})))
    playbook = load_playbook(PLAYBOOKS / "quickstart.yaml", ["models.proposer=openai/my-local-llm",
                                                              f"models.api_base={server.api_base}",
                                                              "models.api_key_env=LOCAL_LLM_KEY"])
    store = Store(make_engine(f"sqlite:///{tmp_path}/h.db"))
    camp, _ = store.ensure_campaign("quickstart")
    llm = LLM(store, camp.id, playbook, max_tries=1)
    assert llm.complete("proposer", [{"role": "user", "content": "hello"}]) == "ok ok ok ok"
    row = calls(store)[0]
    assert row.completion_tokens > 0 and row.dollars == 0 and row.model == "openai/my-local-llm"
    priced = load_playbook(PLAYBOOKS / "quickstart.yaml", ["models.proposer=openai/my-priced-llm",
                                                            f"models.api_base={server.api_base}",
                                                            "models.api_key_env=LOCAL_LLM_KEY",
                                                            "models.prices={openai/my-priced-llm: {input_per_mtok: 3, output_per_mtok: 15}}"])
    LLM(store, camp.id, priced, max_tries=1).complete("proposer", [{"role": "user", "content": "hello"}])
    row = calls(store)[1]
    assert row.dollars == pytest.approx((row.prompt_tokens * 3 + row.completion_tokens * 15) / 1e6)


def _script(tmp_path, script: dict):
    path = tmp_path / "local.json"
    path.write_text(json.dumps(script))
    return path


def test_slow_replies_time_out_and_are_retried(tmp_path):
    llm, store, _ = make_llm(tmp_path, {"proposer": [{"delay": 1.5, "content": "late"}, {"delay": 0.1, "content": "on time"}]},
                             ["models.timeout=0.5"])
    assert llm.complete("proposer", [{"role": "user", "content": "hi"}]) == "on time"
    assert [(r.ok, "Timeout" in r.error) for r in calls(store)] == [(False, True), (True, False)]


@pytest.mark.parametrize("entry, status", [({"status": 401}, 401), ({"status": 403}, 403), ({"status": 404}, 404),
                                           ({"status": 429, "error": "You exceeded your current quota, please check "
                                                                     "your plan and billing details."}, 429)])
def test_a_model_that_cannot_answer_is_unreachable_after_one_call(tmp_path, entry, status):
    llm, store, _ = make_llm(tmp_path, {"proposer": [entry, "never"]})
    with pytest.raises(ModelUnreachable) as caught:
        llm.complete("proposer", [{"role": "user", "content": "hi"}])
    message = str(caught.value)
    assert f"HTTP {status}" in message and "models.proposer: scripted:" in message and "\n" not in message
    assert [r.ok for r in calls(store)] == [False]  # asked once, never retried
