"""Runs attacking Hive itself, each written as the real attack, in both sandbox modes (bwrap and none).

Each test names what the README's "What a run can and cannot do" claims for that mode.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hive import sandbox, views
from hive.campaign import open_campaign
from hive.executors import LocalExecutor
from hive.logs import log_tail
from hive.runner import Runner
from hive.workspace import Workspace, content_hash
from tests.conftest import wait_still


def attack_commit(ws: Workspace, number: int, code: str) -> str:
    """A candidate whose train.py runs `code` (after its own training, so the run still succeeds)."""
    tree = ws.worktree(number, ws.baseline_commit())
    (tree / "train.py").write_text((tree / "train.py").read_text() + "\n" + code + "\n")
    commit = ws.commit(tree, f"exp-{number}")
    ws.remove_worktree(number)
    return commit


def test_a_hook_a_run_plants_in_the_campaign_repo_never_runs(quick, sandbox_mode, tmp_path):
    pb, ws = quick
    ran = tmp_path / "hook-ran"
    hook = f"#!/bin/sh\necho \"$@\" >> {ran}\n"
    hooks = ws.repo_dir / ".git" / "hooks"
    # every hook Hive's git could fire, and a repo config pointing hooks and a monitor at the run's own scripts
    code = ("import os, stat\n"
            "try:\n"
            f"    for name in ('post-commit', 'pre-commit', 'commit-msg', 'post-checkout', 'reference-transaction'):\n"
            f"        path = os.path.join({str(hooks)!r}, name)\n"
            f"        open(path, 'w').write({hook!r}); os.chmod(path, 0o755)\n"
            f"    open({str(ws.repo_dir / '.git' / 'config')!r}, 'a').write("
            f"'[core]\\n\\thooksPath = {hooks}\\n\\tfsmonitor = {hooks}/post-commit\\n')\n"
            "    print('planted')\n"
            "except OSError as exc:\n"
            "    print('refused:', exc)\n")
    commit = attack_commit(ws, 2, code)
    outcome = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode)).run_seed(2, 1, commit)
    log = outcome.log_path.read_text()
    if sandbox_mode == "bwrap":  # the repo's .git is not even there
        assert "refused:" in log and "planted" not in log.replace("refused", "")
    else:
        assert "planted" in log and (hooks / "post-commit").exists()
    # Hive's next commits, checkouts and ref moves in the campaign repo
    tree = ws.worktree(3, ws.baseline_commit())
    (tree / "train.py").write_text((tree / "train.py").read_text() + "\n# exp-3\n")
    new = ws.commit(tree, "exp-3")
    ws.advance_best(new, "keep exp-3")
    ws.remove_worktree(3)
    assert not ran.exists(), f"a planted hook ran: {ran.read_text()}"
    # the control: the same hook does run under plain git (in the campaign repo where the run planted it)
    control = ws.repo_dir
    if sandbox_mode == "bwrap":  # nothing was planted there: plant it in a scratch repo
        control = tmp_path / "control"
        subprocess.run(["git", "init", "-q", str(control)], check=True)
        (control / ".git" / "hooks" / "post-commit").write_text(hook)
        (control / ".git" / "hooks" / "post-commit").chmod(0o755)
    subprocess.run(["git", "-C", str(control), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "control"], capture_output=True)
    assert ran.exists(), "the planted hook would not run under plain git: the test proves nothing"


FORGE_BASELINE = '''
import subprocess
import sys
def git(*args, stdin=None):
    return subprocess.run(["git", *args], cwd="../../../repo", input=stdin, capture_output=True, text=True).stdout.strip()
try:
    blob = git("hash-object", "-w", "--stdin", stdin="print('---'); print('val_loss: 0.000009')\\n")
    tree = git("mktree", stdin=f"100644 blob {blob}\\tscore.py\\n")
    forged = git("commit-tree", tree, "-m", "forged", stdin="")
    moved = subprocess.run(["git", "update-ref", "refs/heads/hive/quickstart/baseline", forged], cwd="../../../repo",
                           capture_output=True, text=True)
    print("moved" if moved.returncode == 0 and forged else "refused:", moved.stderr.strip())
except OSError as exc:
    print("refused:", exc)
'''


def test_a_run_that_moves_the_baseline_ref_to_a_forged_scorer_changes_no_score(quick, sandbox_mode):
    pb, ws = quick
    baseline = ws.baseline_commit()
    runner = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode))
    outcome = runner.run_seed(2, 1, attack_commit(ws, 2, FORGE_BASELINE))
    log = outcome.log_path.read_text()
    if sandbox_mode == "bwrap":  # the repo is not there to write to
        assert "moved" not in log.replace("moved to", "") and outcome.status == "ok"
        assert outcome.metrics["val_loss"] > 0.1
    else:  # the ref moved; Hive saw it, moved it back and did not score the run
        assert "\nmoved" in log
        assert outcome.status == "tampered" and "baseline branch (moved to" in outcome.error
    assert ws.baseline_commit() == baseline
    # every later seed is scored by the real scorer
    clean = runner.run_seed(3, 1, attack_commit(ws, 3, "pass"))
    assert clean.status == "ok" and clean.metrics["val_loss"] > 0.1


PLANT_SNAPSHOT = '''
try:
    open("../../../harness/score.py", "w").write("print('---'); print('val_loss: 0.000009')\\n")
    print("planted")
except OSError as exc:
    print("refused:", exc)
'''


def test_a_run_that_rewrites_the_harness_snapshot_is_never_scored_by_it(quick, sandbox_mode):
    pb, ws = quick
    runner = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode))
    outcome = runner.run_seed(2, 1, attack_commit(ws, 2, PLANT_SNAPSHOT))
    if sandbox_mode == "bwrap":  # the campaign folder is not there
        assert "refused:" in outcome.log_path.read_text() and outcome.status == "ok"
        assert outcome.metrics["val_loss"] > 0.1
    else:  # written; the copy fails its hash check, so the seed is not scored and the snapshot is made again
        assert outcome.status == "tampered" and "does not match the hash" in outcome.error
    assert "held-out" in (ws.harness_dir / "score.py").read_text()
    clean = runner.run_seed(3, 1, attack_commit(ws, 3, "pass"))
    assert clean.status == "ok" and clean.metrics["val_loss"] > 0.1


def test_a_baseline_ref_moved_between_starts_is_moved_back_and_reported(quick, tmp_path):
    pb, _ = quick
    home = tmp_path / "workspaces"
    ctx = open_campaign(pb, home)
    recorded = ctx.campaign.baseline_commit
    ctx.close()
    repo = home / "quickstart" / "repo"

    def git(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, text=True,
                              check=True).stdout.strip()
    tree = git("mktree", stdin=f"100644 blob {git('hash-object', '-w', '--stdin', stdin='forged')}\tscore.py\n")
    git("update-ref", "refs/heads/hive/quickstart/baseline", git("commit-tree", tree, "-m", "forged"))
    ctx = open_campaign(pb, home)
    try:
        events = [e.message for e in ctx.store.events(ctx.campaign.id)]
        assert any("the baseline branch had been moved" in m for m in events), events
        assert git("rev-parse", "hive/quickstart/baseline") == recorded == ctx.runner.baseline
        assert ctx.campaign.harness_sha256 == content_hash(home / "quickstart" / "harness")
    finally:
        ctx.close()


def test_links_a_run_puts_where_its_logs_are_are_never_followed(quick, sandbox_mode, tmp_path):
    pb, ws = quick
    victim, secret = tmp_path / "victim.txt", tmp_path / "secret.json"
    victim.write_text("the user's file\n")
    secret.write_text('{"token": "sk-secret-55d1"}')
    logs = "../../../logs/exp-2"
    code = ("import os\n"
            "try:\n"
            f"    os.symlink({str(victim)!r}, '{logs}/new'); os.replace('{logs}/new', '{logs}/seed-1.log')\n"
            f"    os.symlink({str(victim)!r}, '{logs}/seed-1.score.log')\n"
            # Hive's pid file of this run (written as the run starts, removed as it ends)
            f"    os.symlink({str(victim)!r}, '{logs}/pid'); os.replace('{logs}/pid', '{logs}/seed-1.log.pid')\n"
            "    print('linked')\n"
            "except OSError as exc:\n"
            "    print('refused:', exc)\n"
            f"os.symlink({str(secret)!r}, 'metrics.json')\n")
    outcome = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode)).run_seed(2, 1, attack_commit(ws, 2, code))
    assert victim.read_text() == "the user's file\n", "Hive wrote through a link"
    assert "sk-secret" not in str(outcome.metrics) and "token" not in outcome.metrics
    assert not os.path.lexists(ws.logs / "exp-2" / "seed-1.log.pid")
    if sandbox_mode == "bwrap":  # the logs are not there; the link in its own folder is not followed
        assert outcome.status == "ok" and "refused:" in outcome.log_path.read_text()
    else:
        assert outcome.status == "tampered" and "symbolic link" in outcome.error
        assert not outcome.log_path.is_symlink() and "replaced" in outcome.log_path.read_text()
    # `hive show --log` and every tail reader refuse a link
    link = ws.logs / "exp-2" / "seed-9.log"
    link.symlink_to(victim)
    assert "the user's file" not in views.read_log(str(link)) and "symbolic link" in views.read_log(str(link))
    assert log_tail(link, None, missing="(missing)") == "(missing)"


def test_a_hard_link_to_a_users_file_in_place_of_a_log_is_never_written(quick, tmp_path):
    pb, ws = quick
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    code = (f"import os\nos.unlink('../../../logs/exp-2/seed-1.log'); os.link({str(victim)!r}, "
            f"'../../../logs/exp-2/seed-1.log')\n")
    outcome = Runner(pb, ws, LocalExecutor(sandbox="none")).run_seed(2, 1, attack_commit(ws, 2, code))
    assert victim.read_text() == "the user's file\n"
    assert outcome.status == "tampered" and "hard link" in outcome.error


# run inside a fresh process that got the secrets in its initial environment (what /proc/<pid>/environ shows);
# in mode none it becomes an ordinary user first, as a run outside the sandbox is the user who started Hive
HIVE_WITH_SECRETS = '''
import ctypes, os, resource, sys
from pathlib import Path
from hive.executors import LocalExecutor, RunRequest, scrubbed_environment
mode, folder = sys.argv[1], Path(sys.argv[2])
if mode == "none":
    os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable again, as every process an ordinary user starts is
run_dir = folder / "runs" / "exp-2" / "seed-1"
request = RunRequest(command=sys.argv[3], cwd=run_dir, log_path=folder / "logs" / "seed-1.log", timeout=20,
                     env=scrubbed_environment(), hidden=[folder])
print(LocalExecutor(kill_grace=0.5, sandbox=mode).run(request))
'''
READ_EVERY_ENVIRON = r'''
pid=$$
while [ "$pid" -gt 1 ]; do
  echo "ancestor $pid"; tr '\0' '\n' < /proc/$pid/environ 2>&1
  pid=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$pid/status)
done
for f in /proc/[0-9]*/environ; do tr '\0' '\n' < $f; done 2>/dev/null
cat "$HOME/.config/keys" "$REAL_HOME/.config/keys" 2>&1; echo end
'''


@pytest.fixture
def open_tmp():
    """A temp folder an ordinary user can reach (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="hive-attack-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="becomes an ordinary user (uid 65534) to show what one can read: needs root")
def test_no_key_hive_was_started_with_is_readable_by_a_run(sandbox_mode, open_tmp):
    tmp_path = open_tmp
    folder = tmp_path / "c"
    (folder / "runs" / "exp-2" / "seed-1").mkdir(parents=True)
    (folder / "logs").mkdir()
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "keys").write_text("HOME-FILE-KEY-31c9\n")
    for path in (tmp_path, folder, *folder.rglob("*"), home, *home.rglob("*")):
        os.chown(path, 65534, 65534)  # the user's own files, for mode none's ordinary user
    tmp_path.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "OPENAI_API_KEY": "sk-initial-8a1f",
           "HIVE_SECRET": "hive-initial-2e7d", "PYTHONPATH": str(Path(__file__).parents[1])}
    attack = READ_EVERY_ENVIRON.replace("$REAL_HOME", str(home))
    proc = subprocess.run([sys.executable, "-c", HIVE_WITH_SECRETS, sandbox_mode, str(folder), attack], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "exit_code=0" in proc.stdout, proc.stderr[-2000:]
    log = (folder / "logs" / "seed-1.log").read_text()
    assert "ancestor" in log and "end" in log, log
    assert "sk-initial" not in log and "hive-initial" not in log, "a run read a key Hive was started with"
    if sandbox_mode == "bwrap":
        assert "HOME-FILE-KEY" not in log, "the user's home is not there"
    else:  # README: in mode none a run reads every file the user can, $HOME included
        assert "HOME-FILE-KEY" in log and "Permission denied" in log


FORGER = '''
import os, sys, time
score_log = sys.argv[1]
deadline = time.time() + 20
while time.time() < deadline:
    open(sys.argv[2], "a").write(".")  # a heartbeat: the test sees whether this process still lives
    try:
        if os.path.getsize(score_log) > 0:
            open(score_log, "a").write("\\n---\\nval_loss: 0.00001\\nmodel_bytes: 1\\n")
            break
    except OSError:
        pass
    time.sleep(0.01)
'''


def test_a_detached_daemon_waiting_for_the_score_log_forges_nothing(quick, sandbox_mode):
    pb, ws = quick
    score_log = "../../../logs/exp-2/seed-1.score.log"  # where the run knows its score will be written
    code = ("import subprocess, sys\n"
            f"open('forger.py', 'w').write({FORGER!r})\n"
            f"subprocess.Popen([sys.executable, 'forger.py', {score_log!r}, 'daemon.beat'], start_new_session=True)\n"
            f"subprocess.Popen(['setsid', '-f', sys.executable, 'forger.py', {score_log!r}, 'setsid.beat'])\n"
            "import time; time.sleep(0.3)\n")
    outcome = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode)).run_seed(2, 1, attack_commit(ws, 2, code))
    assert outcome.status == "ok", outcome.error
    assert outcome.metrics["val_loss"] > 0.1 and outcome.metrics["model_bytes"] > 1, outcome.metrics
    run_dir = ws.runs / "exp-2" / "seed-1"
    for beat in ("daemon.beat", "setsid.beat"):
        assert (run_dir / beat).exists(), f"the {beat} forger never started"
        assert wait_still(run_dir / beat, limit=2), f"the {beat} forger outlived its run"
    assert "0.00001" not in (ws.logs / "exp-2" / "seed-1.score.log").read_text()


def test_a_run_cannot_forge_or_delete_the_store_in_the_sandbox(quick, sandbox_mode):
    pb, ws = quick
    db = ws.root / "hive.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table experiment (number integer, verdict text)")
        conn.execute("insert into experiment values (1, 'keep')")
    code = ("import os, sqlite3\n"
            "try:\n"
            "    c = sqlite3.connect('../../../hive.db'); c.execute(\"insert into experiment values (99, 'keep')\")\n"
            "    c.commit(); c.close(); os.remove('../../../hive.db'); print('forged')\n"
            "except Exception as exc:\n"
            "    print('refused:', exc)\n")
    outcome = Runner(pb, ws, LocalExecutor(sandbox=sandbox_mode)).run_seed(2, 1, attack_commit(ws, 2, code))
    if sandbox_mode == "bwrap":
        assert "refused:" in outcome.log_path.read_text()
        with sqlite3.connect(db) as conn:
            assert conn.execute("select number, verdict from experiment").fetchall() == [(1, "keep")]
    else:  # README: in mode none a run can write whatever the user can, the store included
        assert "\nforged" in outcome.log_path.read_text() and not db.exists()


def test_auto_falls_back_to_none_with_one_warning_line(quick, tmp_path, monkeypatch):
    pb, _ = quick
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)  # a machine without bubblewrap
    sandbox.probe.cache_clear()
    try:
        ctx = open_campaign(pb.model_copy(update={"executor": pb.executor.model_copy(update={"sandbox": "auto"})}),
                            tmp_path / "workspaces")
        try:
            warnings = [e.message for e in ctx.store.events(ctx.campaign.id) if e.kind == "warning"]
            assert warnings == ["runs are NOT sandboxed: bwrap is not installed (Debian/Ubuntu: apt-get install "
                                "bubblewrap); executor.sandbox: auto fell back to none"]
            assert not ctx.runner.executor.sandbox.enforced
        finally:
            ctx.close()
    finally:
        sandbox.probe.cache_clear()


def test_a_log_folder_replaced_by_a_link_is_never_written_through(quick, tmp_path):
    pb, ws = quick
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "seed-1.log").write_text("the user's file\n")
    (victim / "seed-1.score.log").write_text("the user's other file\n")
    code = (f"import os, shutil\nshutil.move('../../../logs/exp-2', {str(tmp_path / 'moved')!r})\n"
            f"os.symlink({str(victim)!r}, '../../../logs/exp-2')\n")
    runner = Runner(pb, ws, LocalExecutor(sandbox="none"))
    outcome = runner.run_seed(2, 1, attack_commit(ws, 2, code))
    assert outcome.status == "tampered" and "symbolic link" in outcome.error
    assert (victim / "seed-1.log").read_text() == "the user's file\n"
    assert (victim / "seed-1.score.log").read_text() == "the user's other file\n"
    assert not (ws.logs / "exp-2").is_symlink() and "replaced" in (ws.logs / "exp-2" / "seed-1.log").read_text()
    # a link left there before a run starts is removed, not followed
    (ws.logs / "exp-3").symlink_to(victim)
    clean = runner.run_seed(3, 1, attack_commit(ws, 3, "pass"))
    assert clean.status == "ok" and (victim / "seed-1.log").read_text() == "the user's file\n"


def test_a_run_folder_replaced_by_a_link_never_makes_hive_delete_through_it(quick, tmp_path):
    pb, ws = quick
    victim = tmp_path / "victim"
    (victim / "seed-1").mkdir(parents=True)
    (victim / "seed-1" / "thesis.tex").write_text("years of work")
    code = f"import os\nos.symlink({str(victim)!r}, '../../../runs/exp-3')\n"
    runner = Runner(pb, ws, LocalExecutor(sandbox="none"))
    assert runner.run_seed(2, 1, attack_commit(ws, 2, code)).status == "ok"
    assert (ws.runs / "exp-3").is_symlink()  # planted for the next experiment's run folder
    assert runner.run_seed(3, 1, attack_commit(ws, 3, "pass")).status == "ok"
    assert (victim / "seed-1" / "thesis.tex").read_text() == "years of work"
    assert not (ws.runs / "exp-3").is_symlink()
