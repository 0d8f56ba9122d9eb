"""Pull requests from a real quickstart campaign: body, export as branch and patch, approve, reject, stacked wins."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hive import prs
from hive.agents.base import Verdict
from hive.agents.context import campaign_view
from hive.store.home import find_campaign
from hive.export import export
from hive.playbook import Playbook, load_playbook
from hive.store import Campaign, Experiment, Run, Store, make_engine
from hive.workspace import GIT_ENV, Workspace
from tests.conftest import PLAYBOOKS, run_hive

# strategist seed 4 with one slot deterministically keeps two experiments, the second built on the first
CAMPAIGN_ARGS = ["--max-experiments", "5", "-c", "strategist_seed=8", "-c", "scheduler.slots=1"]
GIT = {**os.environ, **GIT_ENV}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=GIT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """A finished quickstart campaign with a stack of two kept wins (copy it before changing it)."""
    root = tmp_path_factory.mktemp("campaign")
    proc = run_hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", *CAMPAIGN_ARGS, cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store, camp = find_campaign(root / "workspaces", "quickstart")
    pulls = store.pull_requests(camp.id)
    assert [(p.number, p.parent_pr) for p in pulls] == [(1, None), (2, 1)], \
        f"strategist_seed=8 no longer yields two stacked keeps; pick another seed: {proc.stderr[-1500:]}"
    store.engine.dispose()
    return root


@pytest.fixture
def home(campaign, tmp_path) -> Path:
    """A private copy of the campaign, so tests that approve or reject do not see each other."""
    shutil.copytree(campaign / "workspaces", tmp_path / "workspaces")
    return tmp_path / "workspaces"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The user's repository: a git repo made from the quickstart template."""
    path = tmp_path_factory.mktemp("source") / "quickstart"
    shutil.copytree(PLAYBOOKS / "quickstart", path, ignore=shutil.ignore_patterns("__pycache__"))
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "the user's code")
    return path


def clone(source: Path, dest: Path) -> Path:
    git(source.parent, "clone", "-q", str(source), str(dest))
    return dest


def hive(home: Path, *args: str) -> subprocess.CompletedProcess:
    return run_hive(*args, cwd=home.parent, env={"HIVE_HOME": str(home)}, timeout=60)


def kept_diff(home: Path, base: str, head: str) -> str:
    return git(home / "quickstart" / "repo", "diff", base, head, "--", ".", ":(exclude).hive")


def test_body_has_evidence_cost_and_lineage(campaign):
    result = hive(campaign / "workspaces", "pr", "show", "2", "--json", "--diff")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    body = data["body"]
    store, camp = find_campaign(campaign / "workspaces", "quickstart")
    first, second = (p.experiment_number for p in store.pull_requests(camp.id))
    for part in ("## Hypothesis", f"vs parent exp-{first}", "vs baseline exp-1", "p = ",
                 "constraint `model_bytes <= 1000`",
                 f"| seed | status | val_loss | val_loss (best exp-{first}) | val_loss (baseline exp-1) | model_bytes | wall s |",
                 f"| metric | this PR (exp-{second}) | best exp-{first} | baseline exp-1 |", "## How it ran",
                 "SEED=1 python train.py", "| `train.py` |", "GPU-seconds", "tokens", "$",
                 f"builds on PR #1 (exp-{first})"):
        assert part in body, part
    assert data["builds_on"] == [1] and data["diff"].startswith("diff --git")
    listed = json.loads(hive(campaign / "workspaces", "pr", "list", "--json").stdout)
    assert [(p["number"], p["status"]) for p in listed] == [(1, "open"), (2, "open")]
    bad = hive(campaign / "workspaces", "pr", "show", "7")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: N: no pull request #7 (valid: 1, 2)"


def test_body_renders_as_github_markdown(campaign):
    """The evidence, per-seed values and diff stat are real tables; the command line is a code block."""
    from markdown_it import MarkdownIt

    body = json.loads(hive(campaign / "workspaces", "pr", "show", "2", "--json").stdout)["body"]
    html = MarkdownIt("commonmark").enable("table").render(body)
    assert html.count("<table>") == 3  # evidence, per seed, changed files
    store, camp = find_campaign(campaign / "workspaces", "quickstart")
    exp = store.experiment(camp.id, store.pull_requests(camp.id)[1].experiment_number)
    runs = store.runs(exp.id)
    for run in runs:  # every seed's value is a cell of the per-seed table
        assert f"<td>{run.seed}</td>\n<td>ok</td>\n<td>{run.metrics['val_loss']:.6g}</td>" in html
    assert f'<code class="language-sh">SEED={runs[0].seed} python train.py\n' in html
    assert "<h2>Lineage</h2>" in html and "<strong>" in html


def test_export_branch_is_the_kept_change_and_lists_the_stack(campaign, source, tmp_path):
    home = campaign / "workspaces"
    user = clone(source, tmp_path / "clone")
    result = hive(home, "pr", "export", "1", "--format", "branch", "--to", str(user))
    assert result.returncode == 0, result.stderr
    assert "gh pr create --head hive/quickstart/pr-1 --title" in result.stdout
    store, camp = find_campaign(home, "quickstart")
    pr1, pr2 = store.pull_requests(camp.id)
    baseline = camp.baseline_commit
    assert git(user, "diff", "HEAD", "hive/quickstart/pr-1") == kept_diff(home, baseline, pr1.commit)
    assert git(user, "rev-list", "--count", "HEAD..hive/quickstart/pr-1").strip() == "1"
    assert git(user, "log", "-1", "--format=%s", "hive/quickstart/pr-1").strip() == pr1.title
    assert git(user, "status", "--porcelain") == ""  # the user's checkout is untouched

    # the stacked win: by default the whole stack from the baseline, the message naming both PRs
    result = hive(home, "pr", "export", "2", "--format", "branch", "--to", str(user))
    assert result.returncode == 0 and "includes the stack it builds on: PR #1" in result.stdout
    assert git(user, "diff", "HEAD", "hive/quickstart/pr-2") == kept_diff(home, baseline, pr2.commit)
    assert "- PR #1: " in git(user, "log", "-1", "--format=%B", "hive/quickstart/pr-2")

    # --only: its own diff from its parent, stacked on PR #1's branch, saying it depends on it
    result = hive(home, "pr", "export", "2", "--format", "branch", "--to", str(user), "--only")
    assert result.returncode == 0 and "depends on PR #1" in result.stdout, result.stderr
    assert "--base hive/quickstart/pr-1" in result.stdout
    assert git(user, "diff", "hive/quickstart/pr-1", "hive/quickstart/pr-2") == kept_diff(home, pr1.commit, pr2.commit)
    assert "Depends on" in git(user, "log", "-1", "--format=%B", "hive/quickstart/pr-2")

    # --only on a fresh clone without PR #1: one line naming --only and the dependency, exit 2
    fresh = clone(source, tmp_path / "fresh")
    result = hive(home, "pr", "export", "2", "--format", "branch", "--to", str(fresh), "--only")
    assert result.returncode == 2 and "--only" in result.stderr and "depends on PR #1" in result.stderr
    assert "hive/quickstart/pr-2" not in git(fresh, "branch", "--list")
    store.engine.dispose()


def test_export_branch_needs_a_git_repository(campaign, tmp_path):
    result = hive(campaign / "workspaces", "pr", "export", "1", "--format", "branch")
    assert result.returncode == 2 and result.stderr.startswith("error: --to:")
    result = hive(campaign / "workspaces", "pr", "export", "1", "--format", "branch", "--to", str(tmp_path))
    assert result.returncode == 2 and "is not a git repository" in result.stderr


def test_patch_applies_with_git_am(campaign, source, tmp_path):
    home = campaign / "workspaces"
    for number, only in ((1, False), (2, False)):
        out = tmp_path / f"out{number}"
        result = hive(home, "pr", "export", str(number), "--format", "patch", "--to", str(out))
        assert result.returncode == 0, result.stderr
        patch = out / f"hive-pr-{number}.patch"
        user = clone(source, tmp_path / f"clone{number}")
        git(user, "am", str(patch))
        store, camp = find_campaign(home, "quickstart")
        pr = prs.get_pr(store, camp.id, number)
        assert git(user, "diff", "HEAD~1", "HEAD") == kept_diff(home, camp.baseline_commit, pr.commit)
        assert git(user, "log", "-1", "--format=%s").strip() == pr.title
        store.engine.dispose()
    result = hive(home, "pr", "export", "2", "--format", "patch", "--only", "--to", str(tmp_path / "only.patch"))
    assert "depends on PR #1" in result.stdout and (tmp_path / "only.patch").is_file()


def test_approve_merges_into_accepted(home):
    repo = home / "quickstart" / "repo"
    result = hive(home, "pr", "approve", "1")
    assert result.returncode == 0, result.stderr
    store, camp = find_campaign(home, "quickstart")
    pr1, pr2 = store.pull_requests(camp.id)
    assert pr1.status == "approved"
    log = git(repo, "log", "--format=%H", "hive/quickstart/accepted").split()
    assert pr1.commit in log and camp.baseline_commit in log and pr2.commit not in log
    again = hive(home, "pr", "approve", "1")
    assert again.returncode == 2 and "already approved" in again.stderr
    assert hive(home, "pr", "approve", "2").returncode == 0
    assert git(repo, "rev-parse", "hive/quickstart/accepted").strip() == pr2.commit  # a fast-forward
    store.engine.dispose()


def test_approving_a_stacked_pr_approves_what_it_builds_on(home):
    result = hive(home, "pr", "approve", "2")
    assert result.returncode == 0 and "PR #1, approved along with it" in result.stdout
    store, camp = find_campaign(home, "quickstart")
    pr1, pr2 = store.pull_requests(camp.id)
    assert pr1.status == pr2.status == "approved" and "with PR #2" in pr1.reason
    store.engine.dispose()


def test_approve_conflict_changes_nothing(home):
    store, camp = find_campaign(home, "quickstart")
    ws = Workspace(home / "quickstart", "quickstart")
    # a third PR from the baseline that rewrites the same lines as PR #1: it conflicts once PR #1 is accepted
    exp = store.new_experiment(camp.id, parent_number=1, hypothesis="a rival change", status="done", verdict="keep")
    tree = ws.worktree(exp.number, camp.baseline_commit)
    train = tree / "train.py"
    train.write_text(train.read_text().replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.02"))
    commit = ws.commit(tree, "a rival change")
    ws.remove_worktree(exp.number)
    store.update(Experiment, exp.id, commit=commit, parent_commit=camp.baseline_commit)
    rival = store.new_pull_request(camp.id, experiment_number=exp.number, title="rival", body="")
    prs.approve(store, camp, ws, 1)
    before = ws.rev_parse("hive/quickstart/accepted")
    with pytest.raises(prs.HiveError, match="conflicts with hive/quickstart/accepted in train.py"):
        prs.approve(store, camp, ws, rival.number)
    assert ws.rev_parse("hive/quickstart/accepted") == before
    assert prs.get_pr(store, camp.id, rival.number).status == "open"
    store.engine.dispose()


def _sibling(store, camp, ws, base: str, hypothesis: str, files: dict[str, str], **fields) -> Experiment:
    """A finished experiment whose commit is `base` with `files` written (made here, as the graph would)."""
    exp = store.new_experiment(camp.id, parent_number=1, hypothesis=hypothesis, status="done", **fields)
    tree = ws.worktree(exp.number, base)
    for name, text in files.items():
        (tree / name).write_text(text)
    commit = ws.commit(tree, hypothesis)
    ws.remove_worktree(exp.number)
    return store.update(Experiment, exp.id, commit=commit, parent_commit=base)


def test_approving_a_change_never_measured_with_the_accepted_code_is_refused_until_a_kept_experiment_holds_both(home):
    store, camp = find_campaign(home, "quickstart")
    ws = Workspace(home / "quickstart", "quickstart")
    pr1 = prs.get_pr(store, camp.id, 1)
    # a kept change from the baseline that merges cleanly with PR #1 (another file), never run together with it
    rival = _sibling(store, camp, ws, camp.baseline_commit, "a note", {"NOTES.md": "tuned by hand\n"},
                     verdict="keep", n_seeds=3)
    rival_pr = store.new_pull_request(camp.id, experiment_number=rival.number, title="a note", body="")
    prs.approve(store, camp, ws, 1)
    before = ws.rev_parse("hive/quickstart/accepted")
    with pytest.raises(prs.HiveError, match=rf"#{rival_pr.number} does not build on hive/quickstart/accepted and no "
                                            r"experiment ran them together: merging would put unmeasured code"):
        prs.approve(store, camp, ws, rival_pr.number)
    assert ws.rev_parse("hive/quickstart/accepted") == before
    assert prs.get_pr(store, camp.id, rival_pr.number).status == "open"
    # the campaign ran both together and discarded that: still refused, and the message names it
    both = {"NOTES.md": "tuned by hand\n"}
    lost = _sibling(store, camp, ws, pr1.commit, "both, measured", both, verdict="discard", n_seeds=3)
    with pytest.raises(prs.HiveError, match=rf"exp-{lost.number} ran exactly this combination and was not kept "
                                            r"\(discard\)"):
        prs.approve(store, camp, ws, rival_pr.number)
    # kept: the merge holds exactly what was measured, so it goes in
    store.update(Experiment, lost.id, verdict="keep")
    prs.approve(store, camp, ws, rival_pr.number)
    accepted = ws.rev_parse("hive/quickstart/accepted")
    assert ws.same_tree(accepted, lost.commit) and prs.get_pr(store, camp.id, rival_pr.number).status == "approved"
    store.engine.dispose()


def test_reject_reaches_the_proposer_and_keeps_best(home):
    repo = home / "quickstart" / "repo"
    best_before = git(repo, "rev-parse", "hive/quickstart/best")
    missing = hive(home, "pr", "reject", "2")
    assert missing.returncode == 2 and "--reason" in missing.stderr
    result = hive(home, "pr", "reject", "2", "--reason", "momentum this low is a fluke of seed 2")
    assert result.returncode == 0, result.stderr
    store, camp = find_campaign(home, "quickstart")
    playbook = load_playbook(PLAYBOOKS / "quickstart.yaml")
    view = campaign_view(store, camp.id, playbook)
    exp = store.experiment(camp.id, prs.get_pr(store, camp.id, 2).experiment_number)
    expected = f"PR #2 (exp-{exp.number}: {exp.hypothesis}) rejected by a human: momentum this low is a fluke of seed 2"
    assert expected in view.lessons
    assert prs.get_pr(store, camp.id, 2).reason == "momentum this low is a fluke of seed 2"
    assert [p.number for p in prs.list_prs(store, camp.id, "rejected")] == [2]
    assert git(repo, "rev-parse", "hive/quickstart/best") == best_before
    store.engine.dispose()


# -- Parameter Golf records folder -----------------------------------------------------------
TEMPLATE = PLAYBOOKS / "param_golf"
TINY = {"OMP_NUM_THREADS": "1", "ITERATIONS": "3", "MAX_WALLCLOCK_SECONDS": "0", "MODEL_DIM": "32", "NUM_LAYERS": "2",
        "NUM_HEADS": "2", "NUM_KV_HEADS": "1", "BATCH_SIZE": "2", "SEQ_LEN": "64"}
SUBMISSION_KEYS = {"author", "github_id", "name", "blurb", "date", "val_loss", "val_bpb", "bytes_total", "bytes_code",
                   "track", "seeds", "seed_results", "val_bpb_std", "val_loss_std", "delta_vs_leaderboard_bpb",
                   "delta_vs_leaderboard_nats", "artifact_bytes_mean", "artifact_bytes_max", "hardware",
                   "pytorch_version", "technique_summary", "compliance"}


def _golf_metrics(seed: int, bpb: float) -> dict:
    return {"val_loss": bpb * 0.6931, "val_bpb": bpb, "artifact_bytes": 900_000 + seed, "code_bytes": 16_000,
            "eval_seconds": 2.5, "run.steps": 125, "run.train_seconds": 50.0, "wall_seconds": 60.0}


@pytest.mark.skipif(not (TEMPLATE / "train_gpt.py").is_file(), reason="playbooks/param_golf is not there yet")
def test_param_golf_records_folder_runs_from_inside(tmp_path):
    pytest.importorskip("torch", reason="the Parameter Golf template needs torch")
    pb = Playbook.model_validate({
        "name": "golf", "source": str(TEMPLATE), "editable": ["train_gpt.py"],
        "protected": ["score.py", "prepare.py", "data/**"],
        "run": {"command": "python train_gpt.py", "seeds": [1, 2, 3]}, "strategist": "llm",
        "objective": {"metric": "val_bpb", "direction": "minimize", "constraints": ["artifact_bytes <= 16000000"]}})
    ws = Workspace(tmp_path / "home" / "golf", "golf")
    baseline = ws.create(pb)
    tree = ws.worktree(2, baseline)
    code = tree / "train_gpt.py"
    code.write_text(code.read_text().replace('os.environ.get("MLP_MULT", 2)', 'os.environ.get("MLP_MULT", 3)'))
    kept = ws.commit(tree, "wider MLP")
    ws.remove_worktree(2)

    store = Store(make_engine(f"sqlite:///{tmp_path / 'hive.db'}"))
    camp = store.add(Campaign(name="golf", playbook_json=pb.model_dump_json(), baseline_commit=baseline))
    base = store.new_experiment(camp.id, kind="baseline", commit=baseline, status="done", verdict="baseline",
                                metric_mean=1.30)
    exp = store.new_experiment(camp.id, parent_number=1, hypothesis="Widen the MLP to 3x", rationale="more capacity",
                               commit=kept, parent_commit=baseline, diff=ws.diff(baseline, kept), status="done",
                               verdict="keep", metric_mean=1.2, p_value=0.01)
    for seed in (1, 2, 3):
        store.add(Run(experiment_id=base.id, seed=seed, status="ok", metrics_json=json.dumps(_golf_metrics(seed, 1.30))))
        log = tmp_path / f"seed-{seed}.log"
        log.write_text(f"training seed {seed}\n---\nval_bpb: {1.2 + seed / 1000}\n")
        store.add(Run(experiment_id=exp.id, seed=seed, status="ok", log_path=str(log),
                      metrics_json=json.dumps(_golf_metrics(seed, 1.2 + seed / 1000))))
    pr = prs.open_pull_request(store, camp.id, exp, Verdict("keep", "better", 1.202, 0.001, 0.01), pb)

    result = export(store, camp, ws, pr.number, "param-golf", tmp_path / "out", False, author="Ada", github_id="ada")
    folder = Path(result.paths[0])
    assert folder.parent == tmp_path / "out" / "records" / "track_10min_16mb"
    assert folder.name.endswith("_WidenTheMLPTo3x") and len(folder.name.split("_")[0]) == 10
    sub = json.loads((folder / "submission.json").read_text())
    assert SUBMISSION_KEYS <= set(sub)
    assert (sub["author"], sub["github_id"], sub["seeds"]) == ("Ada", "ada", [1, 2, 3])
    assert sub["val_bpb"] == pytest.approx(1.202) and sub["delta_vs_leaderboard_bpb"] == pytest.approx(-0.098)
    assert sub["bytes_total"] == sub["artifact_bytes_max"] == 900_003 and sub["bytes_code"] == 16_000
    assert sub["seed_results"]["2"] == {"val_loss": pytest.approx(1.202 * 0.6931), "val_bpb": 1.202,
                                        "artifact_bytes": 900_002, "steps": 125, "step_avg_ms": 400.0,
                                        "eval_time_s": 2.5, "train_seconds": 50.0}
    assert sub["val_bpb_std"] == pytest.approx(0.001) and isinstance(sub["compliance"], dict)
    assert (folder / "train_seed3.log").read_text().startswith("training seed 3")
    assert (folder / "train_gpt.py").read_text() == ws.file_at(kept, "train_gpt.py")
    readme = (folder / "README.md").read_text()
    assert "Widen the MLP to 3x" in readme and "| 2 | " in readme

    run = subprocess.run([sys.executable, "train_gpt.py"], cwd=folder, env={**os.environ, **TINY},
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-1500:]
    assert "steps: 3" in run.stdout
    store.engine.dispose()


def test_pr_push_puts_the_kept_change_with_its_evidence_on_a_real_bare_remote(campaign, source, tmp_path):
    """The pushed branch's tree is the user's code plus exactly the kept diff; its commit message is the evidence."""
    home = campaign / "workspaces"
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    user = clone(bare, tmp_path / "user")  # origin is the bare remote
    bad = hive(home, "pr", "push", "1", "--to", str(user), "--remote", "nowhere")
    assert bad.returncode == 2 and "--remote: 'nowhere' is neither a remote of" in bad.stderr and "origin" in bad.stderr
    bad = hive(home, "pr", "push", "1", "--to", str(user), "--branch", "no..good")
    assert bad.returncode == 2 and "--branch: 'no..good' is not a valid branch name" in bad.stderr
    result = hive(home, "pr", "push", "1", "--to", str(user), "--branch", "speedup", "--open", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert any(n.startswith("pushed hive/quickstart/pr-1") and n.endswith("to origin as speedup") for n in data["notes"])
    assert data["commands"][-1].endswith(shlex.join(["gh", "pr", "create", "--head", "speedup", "--title",
                                                     prs.get_pr(*_store_and_id(home), 1).title, "--body-file",
                                                     str(home / "quickstart" / "exports" / "pr-1.md")]))
    store, camp = find_campaign(home, "quickstart")
    pr1 = store.pull_requests(camp.id)[0]
    # the remote's branch: one commit on the user's main whose diff is the kept change, message the evidence
    assert git(bare, "diff", "main", "speedup") == kept_diff(home, camp.baseline_commit, pr1.commit)
    assert git(bare, "rev-parse", "speedup^").strip() == git(bare, "rev-parse", "main").strip()
    message = git(bare, "log", "-1", "--format=%B", "speedup")
    assert message.startswith(pr1.title) and pr1.body.strip().splitlines()[0] in message and "| seed" in message
    # the same push again is a no-op; another change under the same name is refused, never overwritten
    again = hive(home, "pr", "push", "1", "--to", str(user), "--branch", "speedup")
    assert again.returncode == 0, again.stderr
    other = hive(home, "pr", "push", "2", "--to", str(user), "--branch", "speedup")
    assert other.returncode == 1 and "pass --branch NEW" in other.stderr
    assert git(bare, "diff", "main", "speedup") == kept_diff(home, camp.baseline_commit, pr1.commit)
    store.engine.dispose()


def _store_and_id(home: Path):
    store, camp = find_campaign(home, "quickstart")
    return store, camp.id
