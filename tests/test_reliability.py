"""Faulty runs, tampering runs and concurrent readers: each is recorded as what it is, and the campaign goes on."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hive.executors import LocalExecutor
from hive.runner import Runner
from hive.workspace import Workspace
from tests.conftest import PLAYBOOKS, pg_url

FIXTURES = Path(__file__).parent / "fixtures"


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def test_every_kind_of_faulty_run_is_recorded_and_the_campaign_goes_on(hive, tmp_path):
    result = hive("start", str(FIXTURES / "faults.yaml"), "--headless", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "internal error" not in result.stderr
    root = tmp_path / "workspaces" / "faults"
    got = {}
    for number, proposal, verdict, reason in rows(root / "hive.db", "select number, proposal_json, verdict, "
                                                  "verdict_reason from experiment where number > 1"):
        got[json.loads(proposal)["knobs"]["FAULT"]] = (verdict, reason)
    # the search space has 8 values and the baseline is one of them: every fault is tried exactly once
    assert set(got) == {"crash", "hang", "nan", "oom", "garbage", "missing", "huge_log"}, got
    assert got["crash"][0] == "crash" and "exit code 1" in got["crash"][1]
    assert got["hang"][0] == "timeout" and "5 s limit" in got["hang"][1]
    assert got["nan"][0] == "invalid" and "nan" in got["nan"][1]
    assert got["oom"][0] == "crash" and "out of memory" in got["oom"][1]
    assert got["garbage"][0] == "invalid" and "missing" in got["garbage"][1]
    assert got["missing"][0] == "invalid"
    assert got["huge_log"][0] in ("discard", "keep")  # its metric survives the cut log
    errors = dict(rows(root / "hive.db", "select json_extract(e.proposal_json, '$.knobs.FAULT'), r.error "
                                         "from run r join experiment e on r.experiment_id = e.id where e.number > 1"))
    assert "deliberate crash" in errors["crash"], "a failed run keeps its log tail"
    huge = next(root.glob("logs/exp-*/seed-1.log"), None)
    assert huge is not None
    sizes = [p.stat().st_size for p in root.glob("logs/exp-*/seed-1.log")]
    assert max(sizes) < 6 * 2**20, "a runaway log is cut to its head and tail"
    assert any(b"bytes cut from a" in p.read_bytes() for p in root.glob("logs/exp-*/seed-1.log"))
    assert not list(root.glob("logs/**/*.pid")), "nothing is left running"
    status = json.loads(hive("status", "--json").stdout)
    assert status["status"] == "finished"


def _commit(ws: Workspace, number: int, edit) -> str:  # noqa: ANN001
    tree = ws.worktree(number, ws.baseline_commit())
    edit(tree)
    commit = ws.commit(tree, f"exp-{number}")
    ws.remove_worktree(number)
    return commit


def test_scorer_uses_the_pristine_harness_even_when_the_run_changes_its_copy(quick, sandbox_mode):
    pb, ws = quick

    def cheat(tree: Path) -> None:
        # the run rewrites its own copy of the scorer, writes a forged metrics.json and prints a forged metric
        (tree / "train.py").write_text((tree / "train.py").read_text() + (
            "\nopen('score.py', 'w').write(\"print('---'); print('val_loss: 0.0')\")\n"
            "open('metrics.json', 'w').write('{\"val_loss\": 0.0}')\n"
            "print('---'); print('val_loss: 0.0')\n"))
    commit = _commit(ws, 2, cheat)
    outcome = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode)).run_seed(2, 1, commit)
    assert outcome.status == "ok"
    assert outcome.metrics["val_loss"] > 0.1 and outcome.metrics["run.val_loss"] == 0.0


def test_a_run_cannot_plant_the_scorer_it_will_be_scored_with(quick, sandbox_mode):
    pb, ws = quick

    def attack(tree: Path) -> None:
        # plant forged scorers wherever a harness could be expected: beside the run folder and in the workspace;
        # a sandbox refuses the writes, and the run goes on either way
        planted = "\nimport os\n" + "".join(
            f"try:\n    os.makedirs({str(d)!r}, exist_ok=True); open({str(d / 'score.py')!r}, 'w').write(FAKE)\n"
            "except OSError as e:\n    print('refused:', e)\n"
            for d in (ws.runs / "exp-2" / "seed-1.harness", ws.root / "harness"))
        (tree / "train.py").write_text((tree / "train.py").read_text() + (
            "\nFAKE = \"print('---'); print('val_loss: 0.0')\"" + planted))
    commit = _commit(ws, 2, attack)
    outcome = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode)).run_seed(2, 1, commit)
    if sandbox_mode == "bwrap":  # the snapshot is not even there: the writes fail, the run is scored as it is
        assert outcome.status == "ok", outcome.error
        assert outcome.metrics["val_loss"] > 0.1
    else:  # the write lands, and the hash check before scoring catches it: nothing is scored, nothing forged
        assert "refused:" not in outcome.log_path.read_text()
        assert outcome.status == "tampered" and "does not match the hash" in outcome.error, outcome.error
        assert "val_loss" not in outcome.metrics
        again = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode)).run_seed(3, 1, ws.baseline_commit())
        assert again.status == "ok" and again.metrics["val_loss"] > 0.1, "the snapshot is made again from the baseline"
    assert not list((ws.runs / "exp-2").glob("seed-1.harness-*")), "the scorer's copy is removed after scoring"


def test_a_run_that_writes_into_the_campaign_repo_is_caught(quick, sandbox_mode):
    pb, ws = quick
    victim = ws.repo_dir / "train.py"

    def attack(tree: Path) -> None:
        (tree / "train.py").write_text((tree / "train.py").read_text() + (
            f"\nopen({str(victim)!r}, 'a').write('# planted\\n')\nopen({str(ws.repo_dir / 'x.txt')!r}, 'w')\n"))
    commit = _commit(ws, 2, attack)
    executor = LocalExecutor(sandbox=sandbox_mode)
    assert executor.confines == (sandbox_mode == "bwrap")
    outcome = Runner(pb, ws, executor).run_seed(2, 1, commit)
    if sandbox_mode == "bwrap":  # the repo is not even there: the write fails and so does the run
        assert outcome.status == "failed" and "No such file or directory" in outcome.log_path.read_text()
    else:  # written, then found and undone
        assert outcome.status == "tampered" and "campaign repo" in outcome.error
    assert ws.repo_changes() == [] and "# planted" not in victim.read_text()


def test_an_llm_edit_to_a_protected_file_never_runs(hive, tmp_path):
    script = tmp_path / "evil.json"
    evil_edit = "score.py\n<<<<<<< SEARCH\nprint(\"---\")\n=======\nprint(\"---\"); print(\"val_loss: 0\")\n>>>>>>> REPLACE\n"
    script.write_text(json.dumps({
        "proposer": [json.dumps({"hypothesis": f"make the score better {i}", "rationale": "r", "parent": None,
                                 "plan": "edit score.py"}) for i in range(10)],
        "coder": [evil_edit]}))
    result = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "3",
                  "-c", "strategist=llm", "-c", "coder=edits", env={"HIVE_MODEL": f"scripted:{script}"})
    assert result.returncode == 0, result.stderr[-3000:]
    db = tmp_path / "workspaces" / "quickstart" / "hive.db"
    candidates = rows(db, "select id, verdict, verdict_reason from experiment where number > 1")
    assert candidates and all(v == "edit_failed" and "protected" in r for _, v, r in candidates)
    ids = ",".join(str(i) for i, _, _ in candidates)
    assert rows(db, f"select count(*) from run where experiment_id in ({ids})") == [(0,)]


def test_readers_never_see_lock_errors_while_a_campaign_writes(tmp_path):
    env = {**os.environ, "HIVE_HOME": str(tmp_path / "workspaces")}
    env.pop("HIVE_DB_URL", None)
    writer = subprocess.Popen([sys.executable, "-m", "hive", "start", str(PLAYBOOKS / "quickstart.yaml"),
                               "--headless", "--max-experiments", "30"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    reads, failures = 0, []  # 30 experiments: long enough for several reads even when each `hive status` is slow
    deadline = time.monotonic() + 120
    while writer.poll() is None and time.monotonic() < deadline:
        if (tmp_path / "workspaces" / "quickstart" / "hive.db").exists():
            r = subprocess.run([sys.executable, "-m", "hive", "status", "quickstart", "--json"], env=env,
                               cwd=tmp_path, capture_output=True, text=True)
            reads += 1
            if r.returncode != 0 and "no campaign" not in r.stderr:
                failures.append(r.stderr)
        time.sleep(0.05)
    assert writer.wait(timeout=120) == 0, writer.stderr.read()[-2000:]
    assert reads >= 3 and not failures, failures[:1]


@pytest.mark.skipif(not pg_url(), reason="PostgreSQL not available: set HIVE_TEST_PG_URL (scripts/services.sh postgres)")
def test_two_campaigns_in_one_postgresql_database(tmp_path):
    import sqlalchemy as sa

    schema = f"two_{os.getpid()}"
    admin = sa.create_engine(pg_url())
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{pg_url()}?options=-csearch_path%3D{schema}"
    env = {**os.environ, "HIVE_HOME": str(tmp_path / "workspaces"), "HIVE_DB_URL": url}
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "hive", "start", str(PLAYBOOKS / "quickstart.yaml"),
                                   "--headless", "--max-experiments", "6", "--campaign", name], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for name in ("alpha", "beta")]
        for proc in procs:
            assert proc.wait(timeout=180) == 0, proc.stderr.read()[-2000:]
        with admin.connect() as conn:
            counts = conn.execute(sa.text(
                f'select c.name, count(e.id), count(distinct e.number) from "{schema}".campaign c '
                f'join "{schema}".experiment e on e.campaign_id = c.id group by c.name order by c.name')).all()
        assert [tuple(r) for r in counts] == [("alpha", 6, 6), ("beta", 6, 6)]
        board = subprocess.run([sys.executable, "-m", "hive", "leaderboard", "beta", "--json"], env=env,
                               cwd=tmp_path, capture_output=True, text=True)
        assert board.returncode == 0 and json.loads(board.stdout)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_a_repo_write_among_concurrent_runs_blames_no_innocent_run(quick):
    import threading

    pb, ws = quick

    def writer(tree: Path) -> None:
        (tree / "train.py").write_text((tree / "train.py").read_text() + (
            f"\nimport time\nif os.environ['SEED'] == '1':\n    open({str(ws.repo_dir / 'evil')!r}, 'w')\n"
            "time.sleep(1.0)\n"))
    commit = _commit(ws, 2, writer)
    runner = Runner(pb, ws, LocalExecutor(sandbox="none"))  # in the sandbox the repo is not there to write to
    outcomes = {}

    def run(seed: int) -> None:
        outcomes[seed] = runner.run_seed(2, seed, commit)
    threads = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [outcomes[s].status for s in (1, 2, 3)] == ["ok", "ok", "ok"], {s: o.error for s, o in outcomes.items()}
    assert ws.repo_changes() == [] and not (ws.repo_dir / "evil").exists()
    logs = "".join(outcomes[s].log_path.read_text() for s in (1, 2, 3))
    assert "the writer is unknown" in logs


def test_an_llm_with_no_new_idea_is_an_outcome_not_a_crash(hive, tmp_path):
    script = tmp_path / "stuck.json"
    same = json.dumps({"hypothesis": "raise the learning rate", "rationale": "r", "parent": None,
                       "plan": "LEARNING_RATE = 0.1"})
    edit = ("train.py\n<<<<<<< SEARCH\nLEARNING_RATE = 0.01\n=======\nLEARNING_RATE = 0.1\n>>>>>>> REPLACE\n")
    script.write_text(json.dumps({"proposer": [same], "coder": [edit]}))
    result = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "4",
                  "-c", "strategist=llm", "-c", "coder=edits", "-c", "scheduler.lookahead=0", "-c", "scheduler.slots=1",
                  env={"HIVE_MODEL": f"scripted:{script}"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    db = tmp_path / "workspaces" / "quickstart" / "hive.db"
    verdicts = [v for (v,) in rows(db, "select verdict from experiment where number > 1 order by number")]
    assert verdicts[0] != "no_proposal" and set(verdicts[1:]) == {"no_proposal"}, verdicts
