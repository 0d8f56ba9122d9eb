"""Repositories nobody wrote for Hive, run as campaigns as they are: flags only (charflags), a config file of
assignments and --key=value flags (tinygpt, in the shape of nanoGPT)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path


import optuna
import pandas
import PIL.Image
import pytest
from optuna.trial import TrialState

from hive.agents.base import Proposal
from hive.agents.knob_coder import KnobCoder
from hive.agents.search import study_storage
from hive.campaign import find_campaign
from hive.errors import EditRejected
from hive.knobs import KNOBS_FILE
from hive.playbook import load_playbook
from tests.conftest import run_hive

FIXTURES = Path(__file__).parent / "fixtures"


def tree_hash(folder: Path) -> str:
    """A digest of every file under a folder (names and bytes), to prove a campaign changed none of them."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def start(root: Path, playbook: str, *args: str, timeout: float = 240):
    return run_hive("start", str(FIXTURES / playbook), "--headless", *args, cwd=root, timeout=timeout)


def hive(root: Path, *args: str):
    return run_hive(*args, cwd=root, timeout=60)


def finished_campaign(tmp_path_factory, name: str) -> Path:  # noqa: ANN001
    """A campaign of the fixture repository NAME run to its end, which leaves the fixture's files as they were."""
    root = tmp_path_factory.mktemp(name)
    before = tree_hash(FIXTURES / name)
    proc = start(root, f"{name}.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tree_hash(FIXTURES / name) == before, "the campaign changed the fixture repository"
    return root


@pytest.fixture(scope="module")
def charflags(tmp_path_factory) -> Path:
    """A finished charflags campaign: its knobs are command-line flags, its seed a flag, its log its own format."""
    return finished_campaign(tmp_path_factory, "charflags")


def test_flags_only_repo_runs_and_every_run_records_its_command_line(charflags):
    store, camp = find_campaign(charflags / "workspaces", "charflags")
    baseline = store.experiment(camp.id, 1)
    assert baseline.verdict == "baseline" and baseline.n_seeds == 3
    shown = json.loads(hive(charflags, "show", "2", "--json").stdout)
    run = shown["runs"][0]
    # the knob values went in as flags, the seed through the {seed} placeholder; the store says exactly that
    knobs = store.experiment(camp.id, 2).proposal["knobs"]
    assert run["command"] == (f"python train.py --seed {run['seed']} --lr {knobs['lr']} "
                              f"--batch_size {knobs['batch_size']}")
    assert run["env"] == {}  # this playbook passes nothing through the environment (seed_env: null)
    text = hive(charflags, "show", "2").stdout
    assert f"    $ {run['command']}" in text
    # the log starts with the same line, so a log read on its own says how to reproduce it
    log = Path(run["log_path"]).read_text()
    assert log.splitlines()[0] == f"[hive] $ {run['command']}"
    assert re.search(r"final val loss [0-9.]+", log)


def test_leaderboard_never_ranks_a_discard_above_the_best_and_one_seed_shows_no_spread(tmp_path):
    """With one seed and a min_delta nothing can clear, every candidate is discarded though several have a lower
    mean than the baseline: the baseline (the best) still ranks first, and no '± 0' is shown for one seed."""
    proc = start(tmp_path, "charflags.yaml", "--max-experiments", "5", "-c", "objective.confirm_seeds=1",
                 "-c", "run.seeds=[1]", "-c", "objective.min_delta=10", "-c", "scheduler.slots=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    board = json.loads(hive(tmp_path, "leaderboard", "--json").stdout)
    rows = board["rows"]
    assert rows[0]["number"] == 1 and rows[0]["is_best"] and rows[0]["verdict"] == "baseline"
    assert any(r["metric_mean"] < rows[0]["metric_mean"] for r in rows[1:]), "no discard beat the baseline's mean"
    assert all(r["verdict"] == "discard" for r in rows[1:])
    text = hive(tmp_path, "leaderboard").stdout
    assert "1-seed rows" not in text and "discarded rows come after every kept one" in text
    first = text.splitlines()[1].split()
    assert first[:4] == ["1*", "1", "baseline", f"{rows[0]['metric_mean']:.6g}"] and first[4] == "-"
    status = hive(tmp_path, "status").stdout
    assert "± 0" not in status and "(1 seed(s))" in status
    assert "± " not in hive(tmp_path, "show", "1").stdout


def test_budget_reached_names_the_last_experiments_and_none_follows(charflags):
    store, camp = find_campaign(charflags / "workspaces", "charflags")
    assert store.count_experiments(camp.id) == 4
    events = list(store.events(camp.id, limit=1000))
    at = next(i for i, e in enumerate(events) if "max_experiments (4) reached: no new experiment" in e.message)
    named = {int(n) for n in re.findall(r"exp-(\d+)", events[at].message)}
    later = {e.experiment_number for e in events[at + 1:] if e.kind == "propose"}
    assert later <= named and max(named) == 4


@pytest.fixture(scope="module")
def tinygpt(tmp_path_factory) -> Path:
    """A finished tinygpt campaign: config-file knobs, `--key=value` flag knobs and seed, a knob constraint."""
    return finished_campaign(tmp_path_factory, "tinygpt")


def test_key_equals_value_repo_runs_with_its_flag_style_seed_flag_and_integer_knobs(tinygpt):
    """tinygpt's configurator refuses `--key value` and `--batch_size=8.0`: every seed ran, so every flag went in
    as `--key=value` with an int for an int knob, the seed by run.seed_flag, and the constraint held."""
    store, camp = find_campaign(tinygpt / "workspaces", "tinygpt")
    assert store.experiment(camp.id, 1).n_seeds == 3
    ran = 0
    for number in range(2, store.count_experiments(camp.id) + 1):
        exp = store.experiment(camp.id, number)
        knobs = exp.proposal["knobs"]
        for run in store.runs(exp.id):
            assert run.status == "ok", (run.status, run.error)
            assert run.command == (f"python train.py config/train_tiny.py --batch_size={knobs['batch_size']} "
                                   f"--max_iters={knobs['max_iters']} --seed={run.seed}")
            log = Path(run.log_path).read_text()
            assert f"overriding batch_size = {knobs['batch_size']}\n" in log and f"overriding seed = {run.seed}" in log
            assert knobs["batch_size"] * knobs["max_iters"] <= 1200
            ran += 1
    assert ran >= 2  # candidates screened out after their first seed run once
    assert json.loads(hive(tinygpt, "show", "2", "--json").stdout)["runs"][0]["command"].endswith("--seed=1")


def test_an_impossible_knob_constraint_refuses_every_proposal_before_it_runs(tmp_path):
    """No configuration satisfies the constraint: each candidate is refused without a run (the sampler is told
    it failed), the baseline (which sets no flag knob) still runs, and the campaign ends normally."""
    proc = start(tmp_path, "tinygpt.yaml", "--max-experiments", "3", "-c", "run.seeds=[1]",
                 "-c", "objective.confirm_seeds=1", "-c", 'knob_constraints=["batch_size > 40"]')
    assert proc.returncode == 0, proc.stderr[-2000:]
    store, camp = find_campaign(tmp_path / "workspaces", "tinygpt")
    for number in (2, 3):
        exp = store.experiment(camp.id, number)
        assert exp.verdict == "edit_failed", (exp.verdict, exp.verdict_reason)
        assert "knob constraint 'batch_size > 40' fails for batch_size=" in exp.verdict_reason
        assert list(store.runs(exp.id)) == []
    study = optuna.load_study(study_name="tinygpt",
                              storage=study_storage(tmp_path / "workspaces" / "tinygpt" / "optuna.journal"))
    assert len(study.get_trials(states=(TrialState.FAIL,))) >= 2  # the sampler was told each refusal failed


def test_knob_values_are_checked_whole_before_anything_is_written(tmp_path):
    """An int knob takes 8.0 as 8 and refuses 8.5; a value out of range is refused; nothing is written then."""
    pb = load_playbook(FIXTURES / "tinygpt.yaml")
    shutil.copytree(FIXTURES / "tinygpt", tmp_path / "tree")
    tree = tmp_path / "tree"
    coder = KnobCoder(pb)
    assert coder.code(Proposal("h", "r", knobs={"batch_size": 8.0, "max_iters": 40}), tree) == "batch_size=8, max_iters=40"
    assert json.loads((tree / KNOBS_FILE).read_text()) == {"batch_size": 8, "max_iters": 40}
    for bad, why in (({"batch_size": 8.5}, "batch_size=8.5 is not an integer"),
                     ({"max_iters": 200}, "max_iters=200 is outside [20, 80]"),
                     ({"batch_size": 32}, "knob constraint 'batch_size * max_iters <= 1200' fails for batch_size=32, "
                                          "max_iters=40")):
        with pytest.raises(EditRejected, match=re.escape(why)):
            coder.code(Proposal("h", "r", knobs=bad), tree)
    # the refused proposals left the earlier values (and the one proposal's partial knobs keep the others)
    coder.code(Proposal("h", "r", knobs={"batch_size": 4}), tree)
    assert json.loads((tree / KNOBS_FILE).read_text()) == {"batch_size": 4, "max_iters": 40}


@pytest.mark.parametrize("override, named", [
    ('knob_constraints=["batch_size % heads == 0"]', "'heads' is not a knob"),
    ('knob_constraints=["__import__(1) == 0"]', "Call is not allowed"),
    ('knob_constraints=["batch_size"]', "compares nothing"),
    ("run.flag_style=colon", "run.flag_style"),
    ("run.seed_flag=seed", "run.seed_flag"),
])
def test_bad_knob_binding_fields_are_one_line_and_exit_2(tmp_path, override, named):
    proc = run_hive("playbook", "validate", str(FIXTURES / "tinygpt.yaml"), "-c", override, cwd=tmp_path)
    assert proc.returncode == 2 and named in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def git_repo_of(folder: Path, where: Path) -> Path:
    """A git clone-alike of a fixture repository: its files, one commit."""
    shutil.copytree(folder, where)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "upstream"]):
        subprocess.run(["git", *args], cwd=where, check=True, env={**os.environ, **GIT_ID})
    return where


GIT_ID = {"GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@example.com", "GIT_COMMITTER_NAME": "u",
          "GIT_COMMITTER_EMAIL": "u@example.com"}


def test_a_flags_only_pull_request_exports_as_a_script_that_reproduces_the_kept_run(charflags, tmp_path):
    """A PR whose knobs are all flags has no diff: the export refuses, naming the flags, rather than exporting an
    unrelated commit; with --knobs-to the patch adds a script, and that script run in the user's repository gives
    the kept experiment's metric on the same seed."""
    store, camp = find_campaign(charflags / "workspaces", "charflags")
    pr = store.pull_requests(camp.id)[0]  # the first keep's
    exp = store.experiment(camp.id, pr.experiment_number)
    assert pr.number == 1 and exp.verdict == "keep"
    knobs = exp.proposal["knobs"]
    refused = hive(charflags, "pr", "export", "1", "--format", "patch", "--to", str(tmp_path / "out"))
    assert refused.returncode == 2 and not (tmp_path / "out").exists()
    assert f"--lr {knobs['lr']}, --batch_size {knobs['batch_size']}; pass --knobs-to FILE" in refused.stderr
    bad = hive(charflags, "pr", "export", "1", "--format", "patch", "--knobs-to", "../x.sh")
    assert bad.returncode == 2 and "--knobs-to: '../x.sh' must be a relative path" in bad.stderr
    made = hive(charflags, "pr", "export", "1", "--format", "patch", "--to", str(tmp_path / "out"),
                "--knobs-to", "run_hive.sh", "--json")
    assert made.returncode == 0, made.stderr
    patch = json.loads(made.stdout)["paths"][0]
    user = git_repo_of(FIXTURES / "charflags", tmp_path / "user")
    subprocess.run(["git", "am", patch], cwd=user, check=True, env={**os.environ, **GIT_ID}, capture_output=True)
    script = (user / "run_hive.sh").read_text()
    assert f"--lr {knobs['lr']} --batch_size {knobs['batch_size']}" in script
    out = subprocess.run(["sh", "run_hive.sh"], cwd=user, env={**os.environ, "SEED": "2"}, capture_output=True,
                         text=True, check=True).stdout
    seed2 = next(r for r in store.runs(exp.id) if r.seed == 2)
    assert float(re.search(r"final val loss ([0-9.]+)", out).group(1)) == seed2.metrics["val_loss"]


def test_results_export_is_autoresearchs_results_tsv_and_csv_json_carry_every_seed(charflags, tmp_path):
    store, camp = find_campaign(charflags / "workspaces", "charflags")
    exps = list(store.experiments(camp.id))
    out = tmp_path / "results.tsv"
    made = hive(charflags, "export", "results", "charflags", "--format", "tsv", "--to", str(out))
    assert made.returncode == 0, made.stderr
    table = pandas.read_csv(out, sep="\t", dtype={"commit": str})
    assert list(table.columns) == ["commit", "val_loss", "memory_gb", "status", "description"]
    assert list(table["commit"]) == [e.commit[:7] for e in exps]
    assert list(table["status"]) == ["keep" if e.verdict in ("baseline", "keep") else "discard" for e in exps]
    assert list(table["val_loss"].round(6)) == [round(e.metric_mean, 6) for e in exps]
    assert (table["memory_gb"] > 0).all() and table["description"].iloc[0] == "baseline: the source as given"
    seeds = pandas.read_csv(io.StringIO(hive(charflags, "export", "results", "--campaign", "charflags",
                                             "--format", "csv").stdout))
    assert len(seeds) == sum(len(store.runs(e.id)) for e in exps)
    assert {"experiment", "seed", "val_loss", "wall_seconds", "command"} <= set(seeds.columns)
    as_json = json.loads(hive(charflags, "export", "results", "--json").stdout)
    assert [len(e["runs"]) for e in as_json["experiments"]] == [len(store.runs(e.id)) for e in exps]
    for args, named in ((["--format", "xml"], "--format: 'xml' is not one of tsv, csv, json"),
                        (["--to", str(tmp_path)], "is a folder"),
                        (["other", "--campaign", "charflags"], "name two campaigns")):
        bad = hive(charflags, "export", "results", *args)
        assert bad.returncode == 2 and named in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("HIVE_TEST_ARTIFACTS") or Path(__file__).parent.parent / "test-artifacts")


class _Logged(http.server.SimpleHTTPRequestHandler):
    """Serves a folder on 127.0.0.1 and remembers every path asked for."""

    asked: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).asked.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


def _browse(folder: Path, page: str, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """Load a page in headless Chromium from a local server; the DOM after load, and every request it made."""
    _Logged.asked = []
    handler = functools.partial(_Logged, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                "--window-size=1100,2400", "--virtual-time-budget=3000", "--dump-dom",
                f"http://127.0.0.1:{server.server_port}/{page}"]
        if screenshot is not None:
            args.insert(-1, f"--screenshot={screenshot}")
        dom = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    finally:
        server.shutdown()
    return dom, list(_Logged.asked)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it as root)")
def test_report_is_one_self_contained_page_a_headless_browser_renders_with_its_plots(charflags, tmp_path):
    made = hive(charflags, "report", "charflags", "--to", str(tmp_path / "report"), "--json")
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    # which candidates keep depends on which finished first (two slots, parents chosen from the best so far): the
    # report must say what the store says, and the campaign keeps at least one
    store, camp = find_campaign(charflags / "workspaces", "charflags")
    done = [e for e in store.experiments(camp.id) if e.status == "done"]
    kept = [e.number for e in done if e.verdict == "keep"]
    assert kept and data["kept"] == kept and data["verdicts"] == dict(Counter(e.verdict or "unknown" for e in done))
    assert data["best"] == store.best(camp.id).number
    page = (tmp_path / "report" / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page), "the page links something outside itself"
    assert page.count('src="data:image/png;base64,') == 3 and all(f"exp-{n}: " in page for n in kept)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    dom, asked = _browse(tmp_path / "report", "index.html", shot)
    assert asked == ["/index.html"]  # the page itself, and nothing else: no font, script, image or favicon
    assert 'data-images-shown="3"' in dom  # all three plots decoded and laid out
    with PIL.Image.open(shot) as image:
        assert image.size == (1100, 2400) and len(image.convert("RGB").getcolors(1 << 20) or []) > 50
    # the logger sees what a page asks for: a page with one outside image is caught
    (tmp_path / "report" / "control.html").write_text('<img src="/elsewhere.png">')
    _, asked = _browse(tmp_path / "report", "control.html")
    assert "/elsewhere.png" in asked


def test_runs_and_setup_use_the_playbooks_python_and_validate_names_an_import_it_lacks(tmp_path):
    """A repository whose trainer imports a package that only its own environment has: validate names the import
    Hive's python lacks; with run.python naming that environment, validate is quiet, setup and runs both get that
    python, and the baseline runs."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next((env / "lib").glob("python3*/site-packages"))
    (site / "hive_probe_dep.py").write_text("VALUE = 0.25\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("import os\nimport hive_probe_dep\n\nprint('---')\n"
                                   "print('val_loss:', hive_probe_dep.VALUE * int(os.environ['SEED']))\n")
    (tmp_path / "probe.yaml").write_text(
        "name: probe\nsource: repo\neditable: ['train.py']\n"
        "setup: python -c 'import hive_probe_dep' && python -c 'import sys; print(sys.prefix)' > setup-prefix.txt\n"
        "run: {command: python train.py, seeds: [1], timeout: 30}\n"
        "objective: {metric: val_loss, confirm_seeds: 1}\nstrategist: random\n"
        "knobs: [{name: W, type: int, low: 1, high: 3, bind: {env: W}}]\n")
    playbook = str(tmp_path / "probe.yaml")
    lacking = run_hive("playbook", "validate", playbook, "--json", cwd=tmp_path)
    assert lacking.returncode == 0, lacking.stderr
    assert json.loads(lacking.stdout)["warnings"] == [
        f"run: train.py imports hive_probe_dep, which the runs' python ({sys.executable}) does not have: install it "
        f"there, or set run.python to the interpreter of the repository's environment"]
    python = ["-c", f"run.python={env / 'bin' / 'python'}"]
    quiet = run_hive("playbook", "validate", playbook, *python, "--json", cwd=tmp_path)
    assert json.loads(quiet.stdout)["warnings"] == []
    bad = run_hive("playbook", "validate", playbook, "-c", "run.python=/nowhere/python", cwd=tmp_path)
    assert bad.returncode == 2 and "run.python: '/nowhere/python' is not an executable interpreter" in bad.stderr
    ran = run_hive("start", playbook, "--headless", "--max-experiments", "1", *python, cwd=tmp_path, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    store, camp = find_campaign(tmp_path / "workspaces", "probe")
    baseline = store.experiment(camp.id, 1)
    assert baseline.verdict == "baseline" and baseline.metric_mean == 0.25
    assert (tmp_path / "workspaces" / "probe" / "repo" / "setup-prefix.txt").read_text().strip() == str(env)
