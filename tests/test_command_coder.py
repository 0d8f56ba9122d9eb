"""The command coder: real agent CLIs (mini-swe-agent, aider), each in its own venv under .agents/, driven through
Hive's scripted OpenAI-compatible server on 127.0.0.1; the presets that cannot run here by their exact command line."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from hive.agents.base import CampaignView, Proposal
from hive.agents.command_coder import PRESETS, CommandCoder, build_argv, check_cli
from hive.campaign import find_campaign
from hive.errors import BadInput, EditRejected
from hive.playbook import load_playbook
from hive.playbook.schema import CommandCoderSpec
from hive.sandbox import Sandbox
from hive.scripted import ensure_server
from hive.store import LlmCall, Store, make_engine
from tests.conftest import PLAYBOOKS, ROOT

AGENTS = Path(os.environ.get("HIVE_AGENTS_DIR") or ROOT / ".agents")  # where scripts/agents.sh installs
LR = "LEARNING_RATE = 0.01  # step size of gradient descent; too small underfits in STEPS steps"
NEW_LR = LR.replace("0.01", "0.1")


def cli(name: str) -> Path:
    exe = AGENTS / name / "bin" / PRESETS[name].executable
    if not exe.is_file():
        pytest.skip(f"{name} is not installed in {AGENTS / name} (run `bash scripts/agents.sh {name}`)")
    return exe


def campaign(tmp_path, script: dict):
    """A worktree of the quickstart (a real git repository), a store, the scripted server serving `script`."""
    tree = tmp_path / "tree"
    shutil.copytree(PLAYBOOKS / "quickstart", tree)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=tree, check=True)
    (tmp_path / "script.json").write_text(json.dumps(script))
    server = ensure_server(str(tmp_path / "script.json"))
    store = Store(make_engine(f"sqlite:///{tmp_path}/h.db"))
    camp, _ = store.ensure_campaign("quickstart")
    return tree, server, store, camp.id


def view() -> CampaignView:
    return CampaignView(name="quickstart", metric="val_loss", direction="minimize", constraints=["model_bytes <= 1000"],
                        rules="Never touch score.py.", knobs=[], editable=["train.py"], protected=["score.py"],
                        baseline=None, best=None, leaderboard=[], recent=[], in_flight=[], lessons=[])


def coder(tmp_path, preset: str, store, cid, server, **spec):
    pb = load_playbook(PLAYBOOKS / "quickstart.yaml")
    spec = CommandCoderSpec(preset=preset, cli=str(cli(preset)), **spec)
    return CommandCoder(spec, pb, store, cid, tmp_path / "logs", [], Sandbox("auto"),
                        api=lambda: ("openai/coder", server.api_base))


PLAN = Proposal(hypothesis="Raise LEARNING_RATE to 0.1", plan="In train.py set LEARNING_RATE = 0.1.")


def diff(tree) -> str:
    return subprocess.run(["git", "diff"], cwd=tree, capture_output=True, text=True, check=True).stdout


def transcript(tmp_path, number: int) -> list[dict]:
    path = tmp_path / "logs" / f"exp-{number}" / "coder.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mini_swe_agent_reads_edits_and_finishes_through_the_scripted_server(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "scripted")
    monkeypatch.setenv("HIVE_SECRET_FOR_TEST", "must-not-leak")
    steps = ["Let me read it.\n\n```mswea_bash_command\ngrep -n '^LEARNING_RATE' train.py; env | sort\n```",
             f"Now the change.\n\n```mswea_bash_command\nsed -i 's/^LEARNING_RATE = 0.01 /LEARNING_RATE = 0.1 /' train.py\n```",
             "Done.\n\n```mswea_bash_command\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"]
    tree, server, store, cid = campaign(tmp_path, {"coder": steps})
    summary = coder(tmp_path, "mini-swe-agent", store, cid, server).code(PLAN, tree, view(), 2)
    assert summary.startswith("mini-swe-agent in ")
    assert f"-{LR}\n+{NEW_LR}" in diff(tree)
    asked = [r for r in server.requests if r["role"] == "coder"]
    assert len(asked) == 3 and "Raise LEARNING_RATE to 0.1" in asked[0]["text"] and "score.py" in asked[0]["text"]
    lines = transcript(tmp_path, 2)
    kinds = [line["kind"] for line in lines]
    assert kinds[:2] == ["note", "command"] and kinds.count("message") >= 6 and kinds[-1] == "cost"
    seen = "\n".join(line.get("content", "") for line in lines if line["kind"] == "message")
    assert "LEARNING_RATE = 0.01" in seen  # the grep's output reached the agent and its transcript
    assert "OPENAI_API_KEY=scripted" in seen and "must-not-leak" not in seen and "HIVE_" not in seen
    with store.session() as s:
        row = s.query(LlmCall).one()
    assert row.role == "coder" and row.model == "mini-swe-agent:openai/coder" and row.ok and row.experiment_number == 2


def test_aider_applies_its_edit_through_the_scripted_server(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "scripted")
    reply = f"Raising the rate.\n\ntrain.py\n```python\n<<<<<<< SEARCH\n{LR}\n=======\n{NEW_LR}\n>>>>>>> REPLACE\n```\n"
    tree, server, store, cid = campaign(tmp_path, {"coder": [reply]})
    coder(tmp_path, "aider", store, cid, server).code(PLAN, tree, view(), 3)
    assert f"-{LR}\n+{NEW_LR}" in diff(tree)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tree, capture_output=True, text=True).stdout
    assert status.strip() == "M train.py"  # aider's caches and histories are not left in the worktree
    lines = transcript(tmp_path, 3)
    assert any(line["kind"] == "message" and "SEARCH" in line["content"] for line in lines)
    command = next(line for line in lines if line["kind"] == "command")
    assert command["exit_code"] == 0 and "Applied edit to train.py" in command["output"]
    with store.session() as s:
        row = s.query(LlmCall).one()
    assert row.prompt_tokens > 0 and row.completion_tokens > 0  # aider's "Tokens: ... sent, ... received"


def test_a_cli_that_fails_is_a_rejected_edit(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "scripted")
    tree, server, store, cid = campaign(tmp_path, {"coder": [{"status": 400, "error": "no such thing"}]})
    spec = CommandCoderSpec(command="echo trying {model} && exit 3")
    pb = load_playbook(PLAYBOOKS / "quickstart.yaml")
    with pytest.raises(EditRejected, match="coder command exited 3: trying openai/coder"):
        CommandCoder(spec, pb, store, cid, tmp_path / "logs", [], Sandbox("auto"),
                     api=lambda: ("openai/coder", server.api_base)).code(PLAN, tree, view(), 4)


def test_the_command_lines_of_the_presets_not_run_here():
    task, out = "Raise the rate", Path("/c/logs/exp-2/coder-cli")
    base = "http://127.0.0.1:9/v1"
    codex = build_argv(CommandCoderSpec(preset="codex"), "codex", "openai/gpt-5", task, out / "task.md", out, [], base)
    assert codex == ["codex", "exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write", "-m", "gpt-5",
                     "-c", "model_provider=hive", "-c",
                     f'model_providers.hive={{name="hive", base_url="{base}", env_key="OPENAI_API_KEY", wire_api="chat"}}',
                     task]
    claude = build_argv(CommandCoderSpec(preset="claude-code"), "claude", "anthropic/claude-sonnet-4-5", task,
                        out / "task.md", out, [], None)
    assert claude == ["claude", "-p", task, "--output-format", "json", "--model", "claude-sonnet-4-5",
                      "--dangerously-skip-permissions"]


def test_a_missing_cli_names_the_field():
    with pytest.raises(BadInput, match=r"^coder.preset: the agent CLI 'claude' is not on PATH"):
        check_cli(CommandCoderSpec(preset="claude-code"))
    with pytest.raises(BadInput, match=r"^coder.cli: the agent CLI '/nowhere/mini' is not on PATH"):
        check_cli(CommandCoderSpec(preset="mini-swe-agent", cli="/nowhere/mini"))
    with pytest.raises(BadInput, match=r"^coder.command: the agent CLI 'no-such-agent' is not on PATH"):
        check_cli(CommandCoderSpec(command="no-such-agent --task {task_file}"))


# -- in a campaign: hive start with coder: {kind: command} ---------------------------------------------------------

def start_with(hive, tmp_path, coder: str, script: dict, experiments: int = 2, *overrides: str):
    (tmp_path / "campaign.json").write_text(json.dumps(script))
    return hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", str(experiments),
                "-c", "strategist=llm", "-c", f"coder={coder}", "-c", "scheduler.lookahead=0",
                *(a for o in overrides for a in ("-c", o)),
                env={"HIVE_MODEL": f"scripted:{tmp_path / 'campaign.json'}", "OPENAI_API_KEY": "scripted"})


PROPOSAL = json.dumps({"hypothesis": "Raise LEARNING_RATE to 0.1", "rationale": "underfits", "parent": None,
                       "plan": "In train.py set LEARNING_RATE = 0.1."})


@pytest.mark.parametrize("preset", ["mini-swe-agent", "aider"])
def test_an_agent_cli_completes_a_quickstart_experiment(hive, tmp_path, preset):
    exe = cli(preset)
    if preset == "mini-swe-agent":
        steps = [f"```mswea_bash_command\nsed -i 's/^LEARNING_RATE = 0.01 /LEARNING_RATE = 0.1 /' train.py\n```",
                 "```mswea_bash_command\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"]
    else:
        steps = [f"train.py\n```python\n<<<<<<< SEARCH\n{LR}\n=======\n{NEW_LR}\n>>>>>>> REPLACE\n```\n"]
    result = start_with(hive, tmp_path, f"{{kind: command, preset: {preset}, cli: {exe}}}",
                        {"proposer": [PROPOSAL], "coder": steps})
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(hive("show", "2", "--json").stdout)
    assert shown["verdict"] in ("keep", "discard") and shown["runs"], shown["verdict_reason"]
    assert f"+{NEW_LR}" in shown["diff"]
    text = hive("show", "2", "--transcript", "--role", "coder")
    assert text.returncode == 0, text.stderr
    assert f"$ {exe}" in text.stdout and "[exit 0," in text.stdout


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_a_command_coder_that_edits_a_protected_file_is_rejected(hive, tmp_path, sandbox):
    """In the sandbox the protected file is read-only, so the edit itself fails; without one, Hive's check after
    the CLI rejects the change. Either way nothing runs and the file is as it was."""
    if sandbox == "bwrap" and not Sandbox("auto").enforced:
        pytest.skip("bubblewrap does not work on this machine")
    evil = "sed -i 's/^print(\"---\")/print(\"---\"); print(\"val_loss: 0\")/' score.py && echo edited"
    result = start_with(hive, tmp_path, json.dumps({"kind": "command", "command": evil}),
                        {"proposer": [PROPOSAL]}, 2, f"executor.sandbox={sandbox}")
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(hive("show", "2", "--json").stdout)
    if sandbox == "bwrap":
        assert shown["verdict"] == "edit_failed" and "sed: cannot rename" in shown["verdict_reason"], shown
        assert "score.py" not in (shown["diff"] or "")  # the write never happened
    else:  # the edit happened in the worktree; the recorded diff shows the reviewer what was refused
        assert shown["verdict"] == "rejected" and "score.py" in shown["verdict_reason"], shown["verdict_reason"]
    assert shown["runs"] == []


def test_a_command_coders_crash_goes_back_to_the_cli_with_the_traceback_and_its_repair_counts(hive, tmp_path):
    """The CLI's first change crashes the smoke run; the CLI is run again on a repair task (the failure, the log's
    last lines, its diff) and removes the cause: two attempts, only the second's runs count, the verdict says so."""
    # an agent CLI in three lines (the sandbox has a /tmp of its own, so not a file there): make the change, and
    # on a repair task remove the line that crashes
    agent = ("if grep -q '^# Repair' \"$1\"; then sed -i '$d' train.py; else\n"
             "  sed -i 's/^LEARNING_RATE = 0.01 /LEARNING_RATE = 0.1 /' train.py\n"
             "  echo \"import sys; sys.exit('the new schedule is not defined')\" >> train.py; fi\n")
    command = f"bash -c {shlex.quote(agent)} agent {{task_file}}"
    result = start_with(hive, tmp_path, json.dumps({"kind": "command", "command": command}),
                        {"proposer": [PROPOSAL]}, 2, "run.smoke=python train.py")
    assert result.returncode == 0, result.stderr[-3000:]
    store, camp = find_campaign(tmp_path / "workspaces", "quickstart")
    exp = store.experiment(camp.id, 2)
    attempts = list(store.attempts(exp.id))
    assert [(a.attempt, a.status) for a in attempts] == [(1, "crashed"), (2, "running")]
    assert attempts[0].failure.startswith("smoke: ") and "the new schedule is not defined" in attempts[0].tail
    assert exp.verdict in ("keep", "discard") and exp.verdict_reason.startswith(
        f"crash, repaired on attempt 2, then {exp.verdict}: ")
    assert f"+{NEW_LR}" in exp.diff and "sys.exit" not in exp.diff
    runs = list(store.runs(exp.id))
    assert runs and all(r.status == "ok" for r in runs)
    # the repair task the CLI was given: the failure, the log's last lines and its own change
    task = (tmp_path / "workspaces" / "quickstart" / "logs" / "exp-2" / "coder-cli-repair-1" / "task.md").read_text()
    assert task.startswith("# Repair: the run of your change crashed (repair attempt 1 of 2)")
    assert "the new schedule is not defined" in task and f"+{NEW_LR}" in task and "+import sys" in task
    commands = [e for e in json.loads(hive("show", "2", "--transcript", "--json").stdout)["transcript"]["coder"]
                if e["kind"] == "command"]
    assert len(commands) == 2 and all(c["exit_code"] == 0 for c in commands)
    store.engine.dispose()


def test_field_errors_of_the_command_coder_exit_2_naming_the_field(hive, tmp_path):
    for coder, field in (("{kind: command, preset: cursor}", "coder.preset: must be one of"),
                         ("{kind: command, preset: claude-code}", "coder.preset"),
                         ("{kind: command, command: 'no-such-agent {task_file}'}", "coder.command")):
        result = start_with(hive, tmp_path, coder, {"proposer": [PROPOSAL]})
        assert result.returncode == 2, (coder, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and field in lines[0], (coder, lines)
