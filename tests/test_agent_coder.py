"""The agentic coder: real commands in a real git worktree (sandboxed where bwrap works), a real litellm client
against the scripted server on 127.0.0.1, transcripts on disk and in the store, and `hive show --transcript`."""

from __future__ import annotations

import json
import shutil

import pytest

from hive.agents.agent_coder import AgentCoder, parse_action
from hive.agents.base import Proposal
from hive.agents.llm_coder import _editable_files
from hive.errors import EditRejected
from hive.llm import LLM
from hive.playbook import load_playbook
from hive.sandbox import Sandbox
from hive.scripted import ensure_server
from hive.store import Store, make_engine
from hive.store.home import find_campaign
from hive.transcripts import read_transcript
from hive.workspace import Workspace
from tests.conftest import PLAYBOOKS
from tests.test_llm_agents import view

PLAN = Proposal("Decay the learning rate linearly", plan="In train.py decay the rate: lr = LEARNING_RATE * (1 - step / STEPS)")
UPDATE = "    w, b = w - LEARNING_RATE * vw, b - LEARNING_RATE * vb\n"


def bash(text: str, command: str) -> str:
    return f"{text}\n\n```bash\n{command}\n```"


def replace(old: str, new: str, path: str = "train.py") -> str:
    return (f"python - <<'PY'\nfrom pathlib import Path\np = Path({path!r})\ns = p.read_text()\nold = {old!r}\n"
            f"assert s.count(old) == 1, 'not found'\np.write_text(s.replace(old, {new!r}))\nPY")


def setup(tmp_path, coder_script: list, mode: str = "auto", source=None, overrides=()):  # noqa: ANN001
    """An agentic coder on a fresh worktree of the quickstart (or `source`) campaign, and its scripted server."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "script.json"
    spec.write_text(json.dumps({"coder": coder_script}))
    extra = [f"source={source}"] if source else []
    pb = load_playbook(PLAYBOOKS / "quickstart.yaml", [f"models.coder=scripted:{spec}", "strategist=llm", *extra,
                                                       *overrides])
    ws = Workspace(tmp_path / "ws", "quickstart")
    base = ws.create(pb)
    store = Store(make_engine(f"sqlite:///{tmp_path}/h.db"))
    camp, _ = store.ensure_campaign("quickstart")
    llm = LLM(store, camp.id, pb, backoff=0.01, logs=ws.logs)
    coder = AgentCoder(llm, pb, ws.repo_dir, [ws.root], Sandbox(mode), pb.coder_spec)
    return coder, ws.worktree(4, base), ws, store, camp, ensure_server(str(spec))


def test_reads_edits_hits_an_error_fixes_it_and_finishes(tmp_path):
    script = [bash("Read the loop.", "grep -n 'for step' -A 8 train.py"),
              bash("Decay the rate.", replace(UPDATE, "lr = LEARNING_RATE * (1 - step / STEPS)\n" + UPDATE.replace("LEARNING_RATE", "lr"))),
              bash("Smoke test.", "python train.py"),
              bash("Indent the new line.", replace("lr = LEARNING_RATE", "    lr = LEARNING_RATE")),
              bash("Smoke test again.", "python train.py"),
              "It runs.\n\nDONE: linear decay of the learning rate"]
    coder, tree, ws, store, camp, server = setup(tmp_path, script)
    assert coder.code(PLAN, tree, view(), 4) == "linear decay of the learning rate"
    text = (tree / "train.py").read_text()
    assert "    lr = LEARNING_RATE * (1 - step / STEPS)\n    w, b = w - lr * vw, b - lr * vb\n" in text
    assert not (tree / "model.json").exists(), "an output of the smoke run is not a change: removed at DONE"
    # the model saw the real outputs: the loop it read, the IndentationError, then the metrics
    seen = [r["messages"][-1]["content"] for r in server.requests[1:]]
    assert "for step in range(STEPS):" in seen[0] and "IndentationError" in seen[2] and "train_loss:" in seen[4]
    assert "[exit code 1," in seen[2] and "(25 steps left)" in seen[4]
    first = server.requests[0]["text"]
    for expected in ["`python train.py`", "`score.py`", "protected", "train.py` (", "LEARNING_RATE", "Simplicity"]:
        assert expected in first, expected
    entries = list(read_transcript(ws.logs / "exp-4" / "coder.jsonl"))
    commands = [e for e in entries if e["kind"] == "command"]
    assert [c["exit_code"] for c in commands] == [0, 0, 1, 0, 0]
    assert "IndentationError" in commands[2]["output"]
    costs = [e for e in entries if e["kind"] == "cost"]
    assert len(costs) == 6 and all(c["tokens_in"] > 0 and c["dollars"] > 0 for c in costs)
    assert [(t.role, t.path) for t in store.transcripts(camp.id, 4)] == [("coder", str(ws.logs / "exp-4" / "coder.jsonl"))]


def test_a_100000_character_editable_file_is_edited(tmp_path):
    source = tmp_path / "big"
    shutil.copytree(PLAYBOOKS / "quickstart", source)
    train = source / "train.py"
    filler = "".join(f"# note {i:06d}: {'x' * 60}\n" for i in range(1500))  # 100,500 characters of comments
    train.write_text(train.read_text() + filler + "FINAL_TOUCH = 0  # the last line of a large file\n")
    assert len(train.read_text()) > 100_000
    _, omitted = _editable_files(source, ["train.py"], ["score.py"])
    assert omitted == ["train.py"], "the one-prompt coder cannot show (so cannot edit) this file"
    script = [bash("Find the line near the end.", "grep -n FINAL_TOUCH train.py"),
              bash("Change it.", "sed -i 's/^FINAL_TOUCH = 0 /FINAL_TOUCH = 1 /' train.py"),
              bash("Check.", "tail -n 1 train.py && python -m py_compile train.py"),
              "DONE: FINAL_TOUCH 0 -> 1"]
    coder, tree, *_ , server = setup(tmp_path, script, source=source)
    coder.code(PLAN, tree, view(), 4)
    text = (tree / "train.py").read_text()
    assert len(text) > 100_000 and text.endswith("FINAL_TOUCH = 1  # the last line of a large file\n")
    assert text.count("\n") == train.read_text().count("\n")
    assert f"{text.count(chr(10))}:FINAL_TOUCH = 0" in server.requests[1]["messages"][-1]["content"]


def test_a_protected_file_cannot_be_written_in_the_sandbox(tmp_path):
    if Sandbox("auto").mode != "bwrap":
        pytest.skip("bwrap cannot run here")
    script = [bash("Make the scorer kinder.", "echo 'print(\"val_loss: 0\")' >> score.py; echo rc=$?"),
              bash("Peek at the campaign store.", "ls ../.. ; cat ../../hive.db 2>&1 | head -c 100; echo"),
              bash("Then the real change.", "sed -i 's/^STEPS = 40 /STEPS = 80 /' train.py"),
              "DONE: STEPS 40 -> 80"]
    coder, tree, ws, *_ , server = setup(tmp_path, script, mode="bwrap")
    (ws.root / "hive.db").write_text("secret store")
    coder.code(PLAN, tree, view(), 4)
    first, second = (server.requests[i]["messages"][-1]["content"] for i in (1, 2))
    assert "Read-only file system" in first and "rc=1" in first
    assert "secret store" not in second
    assert "val_loss: 0" not in (tree / "score.py").read_text()


def test_done_with_a_broken_or_illegal_change_is_sent_back(tmp_path):
    script = [bash("Break it.", "echo 'def (' >> train.py && echo x > notes.txt && echo '# hi' >> README.md"),
              "DONE: broke it",
              bash("Undo README and fix train.py.", "git checkout -- README.md && sed -i '$ d' train.py && "
                                                    "sed -i 's/^STEPS = 40 /STEPS = 41 /' train.py"),
              "DONE: STEPS 40 -> 41"]
    coder, tree, *_ , server = setup(tmp_path, script, mode="none")
    assert coder.code(PLAN, tree, view(), 4) == "STEPS 40 -> 41"
    answer = server.requests[2]["messages"][-1]["content"]
    assert "train.py does not compile" in answer and "README.md is not editable" in answer
    assert "notes.txt" not in answer and not (tree / "notes.txt").exists()  # an untracked output: removed


def test_steps_run_out_give_up_and_time_limits(tmp_path):
    coder, tree, *_ = setup(tmp_path, ["I am thinking."], overrides=["coder.max_steps=3"])
    with pytest.raises(EditRejected, match="all 3 steps of coder.max_steps"):
        coder.code(PLAN, tree, view(), 4)
    coder, tree, *_ = setup(tmp_path / "b", ["GIVE UP: the loop has no learning rate to decay"])
    with pytest.raises(EditRejected, match="gave up .*no learning rate"):
        coder.code(PLAN, tree, view(), 4)
    coder, tree, *_ = setup(tmp_path / "c", ["x"], overrides=["coder.command_timeout=1"])
    result = coder.execute("echo started; sleep 30; echo never", tree)
    assert result.exit_code is None and "started" in result.output and "never" not in result.output
    assert result.seconds < 10
    big = coder.execute("seq 1 200000", tree)
    assert big.output.startswith("1\n2\n") and big.output.rstrip().endswith("200000") and "cut" in big.output
    assert len(big.output) < coder.spec.output_chars + 200


def test_parse_action():
    assert parse_action("ok\n```bash\nls -la\n```\n") == (None, "ls -la")
    assert parse_action("All good.\nDONE: raised the rate") == ("raised the rate", None)
    assert parse_action("DONE: x\n```bash\nls\n```") == (None, "ls"), "a command wins over a premature DONE"
    assert parse_action("no idea") == (None, None)


def test_campaign_with_the_agentic_coder_and_show_transcript(hive, tmp_path):
    result = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "4",
                  "-c", "strategist=llm", "-c", "scheduler.slots=1", "-c", "run.seeds=[1,2,3]",
                  env={"HIVE_MODEL": "scripted:quickstart"})
    assert result.returncode == 0, result.stderr[-3000:]
    shown = hive("show", "4", "--transcript", "--role", "coder")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "$ python train.py" in out and "IndentationError" in out and "I indent it" in out
    assert out.index("IndentationError") < out.index("train_loss:", out.index("IndentationError"))
    diff = hive("show", "4", "--diff").stdout
    assert "+    lr = LEARNING_RATE * (1 - step / STEPS)" in diff and "+    w, b = w - lr * vw, b - lr * vb" in diff
    data = json.loads(hive("show", "4", "--transcript", "--json").stdout)
    assert set(data["transcripts"]) == {"coder", "proposer"}
    assert any(e["kind"] == "command" for e in data["transcript"]["coder"])
    bad = hive("show", "4", "--transcript", "--role", "nobody")
    assert bad.returncode == 2 and "--role" in bad.stderr and "coder" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("override, field", [("coder.max_steps=0", "coder.max_steps"),
                                             ("coder.repair_attempts=-1", "coder.repair_attempts"),
                                             ("coder=wizard", "coder"), ("coder.bogus=1", "coder.bogus"),
                                             ("run.smoke=", "run.smoke")])
def test_field_errors_are_one_line_naming_the_field(hive, override, field):
    result = hive("playbook", "validate", str(PLAYBOOKS / "quickstart.yaml"), "-c", override)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f": {field}: " in lines[0] and "Traceback" not in result.stderr, lines


def test_every_shipped_playbook_has_a_smoke_command():
    for path in sorted(PLAYBOOKS.glob("*.yaml")):
        pb = load_playbook(path, check_source=False)
        assert pb.run.smoke and pb.run.smoke != pb.run.command or path.stem in ("quickstart", "aa_noise"), path
        assert pb.run.smoke, path
        assert load_playbook(path, ["strategist=llm"], check_source=False).coder_spec.kind == "agent"


WARMUP = {"hypothesis": "Warm the learning rate up over the first 10 steps", "rationale": "early steps overshoot",
          "parent": None, "plan": "In train.py scale the step size by min(1, (step + 1) / 10) in the update."}


def repair_script() -> dict:
    """A coder whose first change crashes when run (a NameError) and whose repair defines what was missing."""
    code, fix = "implement the plan below", "crashed when Hive ran it"
    return {"proposer": [json.dumps(WARMUP)], "coder": [
        {"when": code, "turn": 1, "content": bash("Scale the update.", replace(UPDATE, "    lr = LEARNING_RATE * warmup(step)\n" + UPDATE.replace("LEARNING_RATE", "lr")))},
        {"when": code, "turn": 2, "content": "DONE: warm the learning rate up over 10 steps"},
        {"when": fix, "turn": 1, "content": bash("The traceback says warmup is not defined.", "grep -n 'warmup' train.py")},
        {"when": fix, "turn": 2, "content": bash("Define it above the loop.", replace("for step in range(STEPS):\n", "def warmup(step):\n    return min(1.0, (step + 1) / 10)\n\n\nfor step in range(STEPS):\n"))},
        {"when": fix, "turn": 3, "content": bash("Smoke test.", "python train.py")},
        {"when": fix, "turn": 4, "content": "DONE: define warmup() before the loop"}]}


@pytest.mark.parametrize("smoke", ["python train.py", "null"])
def test_a_crash_is_repaired_and_only_the_repaired_attempt_counts(hive, tmp_path, smoke):
    script = tmp_path / "repair.json"
    script.write_text(json.dumps(repair_script()))
    result = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "2",
                  "-c", "strategist=llm", "-c", "run.seeds=[1,2,3]", "-c", f"run.smoke={smoke}",
                  env={"HIVE_MODEL": f"scripted:{script}"})
    assert result.returncode == 0, result.stderr[-3000:]
    store, camp = find_campaign(tmp_path / "workspaces", "quickstart")
    exp = store.experiment(camp.id, 2)
    attempts = list(store.attempts(exp.id))
    assert [(a.attempt, a.status) for a in attempts] == [(1, "crashed"), (2, "running")]
    assert attempts[0].failure.startswith("smoke: " if smoke != "null" else "seed 1: ")
    assert "NameError: name 'warmup' is not defined" in attempts[0].tail and "Traceback" in attempts[0].tail
    assert exp.commit == attempts[1].commit != attempts[0].commit
    assert exp.verdict in ("keep", "discard") and exp.verdict_reason.startswith(
        f"crash, repaired on attempt 2, then {exp.verdict}: ")
    runs = list(store.runs(exp.id))
    assert runs and all(r.status == "ok" for r in runs), "the crashed attempt's run is not among the experiment's"
    logs = tmp_path / "workspaces" / "quickstart" / "logs" / "exp-2"
    assert (logs / "attempt-1.seed-1.log").exists() == (smoke == "null")
    shown = hive("show", "2", "--diff").stdout
    assert "def warmup(step):" in shown and "attempt 1: " in shown and " crashed: " in shown
    repair_turns = [e for e in json.loads(hive("show", "2", "--transcript", "--json").stdout)["transcript"]["coder"]
                    if e["kind"] == "message" and "crashed when Hive ran it" in e.get("content", "")]
    assert repair_turns and "NameError" in repair_turns[0]["content"]
    store.engine.dispose()


def test_the_param_golf_script_reads_runs_the_smoke_test_hits_an_error_and_fixes_it(tmp_path):
    pytest.importorskip("torch", reason="the Parameter Golf template needs torch")
    from hive.scripted import SCRIPTS

    script = json.loads((SCRIPTS / "param_golf.json").read_text())
    plan = Proposal(**json.loads(script["proposer"][0]))
    pb = load_playbook(PLAYBOOKS / "param_golf.yaml", ["models.coder=scripted:param_golf", "strategist=llm",
                                                       "run.env.MODEL_DIM=64", "run.env.NUM_LAYERS=2"])
    ws = Workspace(tmp_path / "ws", "param_golf")
    base = ws.create(pb)
    store = Store(make_engine(f"sqlite:///{tmp_path}/h.db"))
    camp, _ = store.ensure_campaign("param_golf")
    llm = LLM(store, camp.id, pb, backoff=0.01, logs=ws.logs)
    tree = ws.worktree(2, base)
    coder = AgentCoder(llm, pb, ws.repo_dir, [ws.root], Sandbox("auto"), pb.coder_spec)
    assert coder.code(plan, tree, view(), 2) == "LeakyReLU(0.5)^2 in the MLP (was relu^2)"
    commit = ws.commit(tree, "exp-2")
    diff = ws.diff(base, commit)
    assert "+        return self.proj(F.leaky_relu(self.fc(x), negative_slope=0.5).square())" in diff
    assert ws.illegal_changes(base, commit, pb) == [] and ws.changed_paths(base, commit) == ["train_gpt.py"]
    commands = [e for e in read_transcript(ws.logs / "exp-2" / "coder.jsonl") if e["kind"] == "command"]
    smokes = [c for c in commands if "ITERATIONS=20" in c["command"]]
    assert len(smokes) == 2 and "unexpected keyword argument 'slope'" in smokes[0]["output"]
    assert "steps: 20" in smokes[1]["output"] and "Traceback" not in smokes[1]["output"]
    assert "module.load_artifact(artifact_path)" in commands[1]["output"]  # it read how the protected scorer loads the model
