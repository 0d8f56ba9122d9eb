"""Pilot tests of the TUI: every screen driven by keys, asserting on widgets and on the store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.widgets import DataTable, Log, Static, TabbedContent

from hive.store.home import open_store
from hive.store import Campaign, Event, Experiment, LlmCall, PullRequest, Run, Store
from tests.conftest import PLAYBOOKS
from tui.app import HiveApp
from tui.dashboard import DashboardScreen
from tui.experiment import ExperimentScreen
from tui.pulls import AskScreen, PullRequestScreen
from tui.widgets import EventFeed, HeaderPanel, InFlightList, Leaderboard, SlotPanel

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
PLAYBOOK = {"name": "demo", "run": {"timeout": 60, "seeds": [1, 2, 3]},
            "objective": {"metric": "val_loss", "direction": "minimize", "constraints": []},
            "budget": {"max_experiments": 20, "max_hours": 2, "max_dollars": 5}}
DIFF = textwrap.dedent("""\
    diff --git a/train.py b/train.py
    --- a/train.py
    +++ b/train.py
    @@ -1,3 +1,3 @@
    -LEARNING_RATE = 0.01  # step size
    +LEARNING_RATE = 0.02  # step size
     STEPS = 40  # number of steps
    """)
# (number, verdict, metric mean, std, seeds, p, minutes after T0 it finished, hypothesis)
FINISHED = [
    (1, "baseline", 1.0, 0.05, 3, None, 1, "baseline: the source as given"),
    (2, "discard", 1.1, 0.02, 1, None, 2, "halve the learning rate"),
    (3, "keep", 0.8, 0.01, 3, 0.004, 3, "double the learning rate"),
    (4, "crash", None, None, 0, None, 4, "remove the bias term"),
    (5, "discard", 0.82, 0.03, 3, 0.4, 5, "add momentum 0.5"),
    (6, "keep", 0.7, 0.02, 3, 0.001, 7, "more steps with the doubled learning rate"),
    (7, "discard", 3.5, 0.0, 1, None, 8, "a huge batch"),
]

TRANSCRIPTS = {
    "proposer": [{"ts": 1.0, "kind": "message", "role": "user", "content": "Propose the next experiment."},
                 {"ts": 2.0, "kind": "message", "role": "assistant", "content": "more steps with the doubled rate"}],
    "coder": [{"ts": 3.0, "kind": "message", "role": "assistant", "content": "I read train.py first."},
              {"ts": 4.0, "kind": "command", "command": "grep -n STEPS train.py", "exit_code": 0, "seconds": 0.1,
               "output": "2:STEPS = 40  # number of steps"},
              {"ts": 5.0, "kind": "cost", "tokens_in": 1200, "tokens_out": 80, "dollars": 0.0123, "seconds": 1.5}],
}


def make_store(home: Path, name: str = "demo") -> Store:
    """A campaign with fixed rows: finished experiments, two in flight, events, an LLM call and two pull requests."""
    (home / name).mkdir(parents=True, exist_ok=True)
    store = open_store(home, name)
    camp = store.add(Campaign(name=name, playbook_json=json.dumps({**PLAYBOOK, "name": name}),
                              status="running",
                              created_at=T0, started_at=T0, updated_at=T0))
    logs = home / name / "logs"
    for number, verdict, mean, std, n, p, minute, hypothesis in FINISHED:
        done = T0 + timedelta(minutes=minute)
        exp = store.add(Experiment(campaign_id=camp.id, number=number, kind="baseline" if number == 1 else "candidate",
                                   parent_number=None if number == 1 else 1, hypothesis=hypothesis,
                                   rationale=f"rationale of exp-{number}", diff="" if number == 1 else DIFF,
                                   commit=f"{number:02d}" * 20, status="done", verdict=verdict,
                                   verdict_reason=f"why exp-{number} is {verdict}", metric_mean=mean, metric_std=std,
                                   p_value=p, n_seeds=n, created_at=done - timedelta(seconds=50),
                                   started_at=done - timedelta(seconds=40), finished_at=done))
        for seed in range(1, max(n, 1) + 1):
            log = logs / f"exp-{number}" / f"seed-{seed}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"exp-{number} seed {seed} starting\nstep 10 loss 0.9\n---\nval_loss: {mean}\n")
            store.add(Run(experiment_id=exp.id, seed=seed, status="ok" if mean is not None else "failed",
                          metrics_json=json.dumps({"val_loss": (mean or 0) + seed / 1000}), exit_code=0,
                          wall_seconds=12.5, log_path=str(log), started_at=done - timedelta(seconds=30),
                          finished_at=done))
    for number, status, hypothesis in ((8, "running", "cosine learning-rate schedule"), (9, "coding", "wider model")):
        exp = store.add(Experiment(campaign_id=camp.id, number=number, parent_number=6, hypothesis=hypothesis,
                                   status=status, created_at=NOW - timedelta(seconds=60),
                                   started_at=NOW - timedelta(seconds=45)))
        if status == "running":
            for seed, device in ((1, "0"), (2, "1")):
                log = logs / f"exp-{number}" / f"seed-{seed}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(f"exp-{number} seed {seed} starting\n")
                store.add(Run(experiment_id=exp.id, seed=seed, status="running", devices=device, log_path=str(log),
                              started_at=NOW - timedelta(seconds=30 - 10 * seed)))
    for i, (kind, number, message) in enumerate([
            ("campaign", None, "created demo (objective: minimize val_loss, 2 slot(s))"),
            ("verdict", 1, "baseline val_loss = 1 ± 0.05 over 3 seed(s)"),
            ("verdict", 3, "keep: mean 0.8 ± 0.01 over 3 seeds"),
            ("verdict", 4, "crash: exit 1"),
            ("verdict", 6, "keep: mean 0.7 ± 0.02 over 3 seeds"),
            ("run", 8, "seed 1 started on gpu 0"),
            ("run", 8, "seed 2 started on gpu 1")]):
        store.add(Event(campaign_id=camp.id, ts=T0 + timedelta(minutes=i + 1), experiment_number=number, kind=kind,
                        message=message))
    # what the proposer and the coder of exp-6 said and ran, as hive.transcripts writes it
    for role, entries in TRANSCRIPTS.items():
        path = logs / "exp-6" / f"{role}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in entries))
        store.ensure_transcript(camp.id, 6, role, str(path))
    store.add(LlmCall(campaign_id=camp.id, role="proposer", model="scripted", prompt_tokens=100,
                      completion_tokens=20, dollars=0.25, ts=T0))
    for number, exp_number, status in ((1, 3, "approved"), (2, 6, "open")):
        store.add(PullRequest(campaign_id=camp.id, number=number, experiment_number=exp_number, status=status,
                              title=f"exp-{exp_number}: {FINISHED[exp_number - 1][7]}",
                              body=f"## Hypothesis\n\n{FINISHED[exp_number - 1][7]}\n\n## Evidence\n\n"
                                   f"| seed | val_loss |\n|---|---|\n| 1 | {FINISHED[exp_number - 1][2]} |\n",
                              created_at=T0, decided_at=T0 if status != "open" else None))
    return store


def make_app(home: Path, **kwargs) -> HiveApp:
    return HiveApp(home, "demo", clock=lambda: NOW, **{"refresh_seconds": 3600, **kwargs})


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def home(tmp_path):
    make_store(tmp_path / "ws")
    return tmp_path / "ws"


def text_of(widget: Static) -> str:
    return str(widget.render())


async def test_dashboard_shows_header_leaderboard_in_flight_slots_and_events(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        header = text_of(screen.query_one(HeaderPanel))
        assert "demo" in header and "val_loss" in header and "0.7 (exp-6)" in header and "-0.3 vs baseline" in header
        assert "exp 9/20" in header and "wall 10:00/2h" in header and "$0.25/$5" in header
        board = screen.query_one(Leaderboard)
        # kept ones (the baseline was) before discards; crash and in-flight are not ranked
        assert [r.number for r in board.rows_shown] == [6, 3, 1, 5, 2, 7]
        assert board.row_count == 6
        assert screen.query_one(InFlightList).numbers() == [8, 9]
        slots = text_of(screen.query_one(SlotPanel))
        assert "gpu 0" in slots and "exp-8 seed 1" in slots and "exp-8 seed 2" in slots
        assert len(screen.query_one(EventFeed).lines) >= 7
        await pilot.press("s")  # sort by metric: same order here; then by experiment number
        await pilot.press("s")
        assert [r.number for r in board.rows_shown] == [1, 2, 3, 5, 6, 7]


async def test_enter_on_leaderboard_opens_experiment_with_seeds_diff_and_log(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down", "enter")  # second row: exp-3
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ExperimentScreen) and screen.number == 3
        assert "double the learning rate" in text_of(screen.query_one("#exp-summary"))
        assert "why exp-3 is keep" in text_of(screen.query_one("#exp-summary"))
        assert screen.query_one("#seeds", DataTable).row_count == 3
        await pilot.press("d")
        assert screen.query_one(TabbedContent).active == "diff"
        await pilot.press("l")
        await pilot.pause()
        log = screen.query_one("#exp-log", Log)
        assert "exp-3 seed 1 starting" in "\n".join(log.lines)
        await pilot.press("n")
        await pilot.pause()
        assert screen.log_seed == 2 and "exp-3 seed 2 starting" in "\n".join(log.lines)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_experiment_by_number_tails_a_growing_log(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("e")
        assert isinstance(app.screen, AskScreen)
        await pilot.press("8", "enter")
        screen = app.screen
        assert isinstance(screen, ExperimentScreen) and screen.number == 8
        assert screen.log_seed == 1  # the running seed
        with open(home / "demo" / "logs" / "exp-8" / "seed-1.log", "a") as fh:
            fh.write("step 20 loss 0.5\n")
        screen.poll()  # what the refresh timer calls
        await pilot.pause(0.2)
        assert "step 20 loss 0.5" in screen.query_one("#exp-log", Log).lines


async def test_transcript_tab_shows_each_roles_conversation_and_follows_a_growing_one(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("e", "6", "enter")
        screen = app.screen
        assert isinstance(screen, ExperimentScreen) and screen.number == 6
        await pilot.press("t")
        assert screen.query_one(TabbedContent).active == "transcript"
        shown = screen.query_one("#exp-transcript", Log)
        lines = list(shown.lines)
        # the coder's first: its words, the command it ran with what it saw and its exit, and the call's cost
        assert screen.role == "coder" and "coder transcript (1/2" in text_of(screen.query_one("#transcript-which"))
        assert "--- assistant" in lines and "I read train.py first." in lines
        assert "$ grep -n STEPS train.py" in lines and "2:STEPS = 40  # number of steps" in lines
        assert "[exit 0, 0.1 s]" in lines and "[1200 tokens in, 80 out, $0.0123, 1.5 s]" in lines
        with open(home / "demo" / "logs" / "exp-6" / "coder.jsonl", "a") as fh:  # the coder goes on working
            fh.write(json.dumps({"ts": 6.0, "kind": "note", "text": "edit rejected: score.py is protected"}) + "\n")
            fh.write('{"ts": 7.0, "kind": "message", "role": "assis')  # a line still being written waits
        screen.poll()
        await pilot.pause(0.2)
        lines = list(shown.lines)
        assert lines.count("$ grep -n STEPS train.py") == 1 and "edit rejected: score.py is protected" in lines
        assert not any("assis" in line and "assistant" not in line for line in lines)
        await pilot.press("r")
        assert screen.role == "proposer"
        lines = list(shown.lines)
        assert "Propose the next experiment." in lines and "I read train.py first." not in lines
        await pilot.press("escape", "e", "3", "enter")  # no conversation: the tab says so
        await pilot.press("t")
        assert "no transcript" in text_of(app.screen.query_one("#transcript-which"))


async def test_enter_on_in_flight_row_opens_it(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.query_one(InFlightList).query("InFlightRow").last().focus()
        await pilot.press("enter")
        assert isinstance(app.screen, ExperimentScreen) and app.screen.number == 9


async def test_pull_requests_reject_with_a_reason_changes_the_store(home):
    app = make_app(home)
    store = app.source.open()
    cid = app.source.campaign_id
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("p")
        screen = app.screen
        assert isinstance(screen, PullRequestScreen)
        assert screen.query_one("#prs", DataTable).row_count == 2
        await pilot.press("down", "r")  # PR #2, open
        assert isinstance(app.screen, AskScreen)
        await pilot.press(*"too risky", "enter")
        pr = store.pull_requests(cid)[1]
        assert (pr.status, pr.reason) == ("rejected", "too risky")
        assert "rejected" in str(screen.query_one("#prs", DataTable).get_cell("2", "status"))
        assert "too risky" in store.lessons(cid)[-1].text
        await pilot.press("a")  # a decided PR cannot be approved: said, not crashed
        assert store.pull_requests(cid)[1].status == "rejected"
        await pilot.press("d")
        assert screen.query_one(TabbedContent).active == "pr-diff-pane"
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_attached_tui_shows_an_experiment_written_by_another_process_within_2s(home):
    app = make_app(home, refresh_seconds=0.2)
    writer = textwrap.dedent(f"""
        from datetime import datetime, timezone
        from pathlib import Path
        from hive.store.home import open_store
        from hive.store import Experiment
        store = open_store(Path({str(home)!r}), "demo")
        cid = store.campaign("demo").id
        exp = store.new_experiment(cid, hypothesis="written by another process", status="done", verdict="keep",
                                   metric_mean=0.5, metric_std=0.01, n_seeds=3,
                                   finished_at=datetime.now(timezone.utc))
        store.event(cid, "verdict", "keep: mean 0.5 from the other process", exp.number)
    """)
    async with app.run_test(size=(80, 24)) as pilot:
        board = app.screen.query_one(Leaderboard)
        assert 10 not in [r.number for r in board.rows_shown]
        subprocess.run([sys.executable, "-c", writer], check=True, timeout=60)
        for _ in range(20):
            await pilot.pause(0.1)
            if board.rows_shown and board.rows_shown[0].number == 10:
                break
        assert board.rows_shown[0].number == 10
        assert "exp 10/20" in text_of(app.screen.query_one(HeaderPanel))


async def test_engine_under_the_tui_pull_request_actions_then_quit_stops_it_cleanly(tmp_path):
    """`hive start` on a terminal: the campaign runs in a thread; approve and export its first PR; quit stops it."""
    from hive.playbook import load_playbook
    from tui.engine import EngineThread

    home = tmp_path / "ws"
    # slow enough runs and a large budget: the campaign must still be running when the TUI quits
    engine = EngineThread(load_playbook(PLAYBOOKS / "quickstart.yaml", [
        "budget.max_experiments=500", "run.command=sleep 0.3 && python train.py"]), home).start()
    app = HiveApp(home, engine.name, engine=engine, refresh_seconds=3600, export_dir=tmp_path / "out")
    async with app.run_test(size=(80, 24)) as pilot:
        header = app.screen.query_one(HeaderPanel)
        def open_prs() -> int:
            shown = re.search(r"open PRs (\d+)", text_of(header))
            return int(shown.group(1)) if shown else 0

        for _ in range(400):  # up to 80 s on a loaded machine
            app.screen.poll()  # what the refresh timer calls (a live timer would slow every pilot.press)
            await pilot.pause(0.2)
            # the baseline ran and a candidate beat it (on a loaded machine more may open between two polls)
            if open_prs() >= 1:
                break
        assert open_prs() >= 1 and engine.running
        await pilot.press("p")
        await pilot.press("x", "enter")  # the default format: patch
        assert (tmp_path / "out" / "hive-pr-1.patch").read_text().startswith("From ")
        await pilot.press("a")
        store = app.source.store
        assert store.pull_requests(app.source.campaign_id)[0].status == "approved"
        await pilot.press("escape")
        await app.action_quit()
        for _ in range(100):
            await pilot.pause(0.1)
            if not engine.running:
                break
    assert not engine.running and engine.error is None
    camp = store.campaign("quickstart")
    assert camp.status == "stopped"
    assert not [r for e in store.experiments(camp.id) for r in store.runs(e.id) if r.status == "running"]


async def test_dashboard_waits_for_a_campaign_that_has_not_started(tmp_path):
    app = HiveApp(tmp_path / "ws", "later", clock=lambda: NOW, refresh_seconds=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        assert "waiting for campaign later" in text_of(app.screen.query_one(HeaderPanel))
        make_store(tmp_path / "ws", "later")
        for _ in range(100):  # the next refreshes find it; a loaded machine may need more than one
            await pilot.pause(0.1)
            if app.screen.query_one(Leaderboard).row_count:
                break
        assert "later" in text_of(app.screen.query_one(HeaderPanel))
        assert app.screen.query_one(Leaderboard).row_count == 6


async def test_gpu_panel_shows_scheduler_utilisation_history(home):
    class Engine:
        error = None
        running = False
        readings = iter([10, 50, 90])

        def scheduler_snapshot(self):
            util = next(self.readings, 90)
            return {"devices": [{"index": 0, "total_mb": 81920, "free_mb": 40960, "utilisation": util, "holder": None}],
                    "cpu": {"slots": 4, "used": 0}}

    app = make_app(home, engine=Engine())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        for _ in range(2):
            screen.poll()
            while screen.refreshing:
                await pilot.pause(0.05)
        slots = text_of(screen.query_one(SlotPanel))
        assert "90%" in slots and "▁▄█" in slots and "40/80G" in slots and "exp-8 seed 1" in slots


def test_hive_tui_names_an_unknown_campaign_exit_2(hive):
    proc = hive("tui", "nope")
    assert proc.returncode == 2
    assert "--campaign" in proc.stderr and "'nope'" in proc.stderr and "Traceback" not in proc.stderr
