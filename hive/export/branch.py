"""A pull request as one commit on a branch of the user's own repository (and, with --gh, a GitHub pull request)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from hive.errors import BadInput, HiveError
from hive.export.common import Change, ExportResult
from hive.export.common import result as result_of
from hive.playbook import Playbook
from hive.store import Campaign
from hive.workspace import GIT_ENV, HIVE_DIR, Workspace, git_output, run_git


def _source_repo(to: Path | None, playbook: Playbook) -> Path:
    if to is None:
        src = playbook.source_dir()
        if src is None or not (src / ".git").exists():
            raise BadInput(f"--to: the playbook's source {playbook.source!r} is not a local git repository; "
                           f"pass --to PATH of a clone of it")
        return src.resolve()
    to = Path(to).expanduser().resolve()
    if not to.is_dir() or run_git(to, "rev-parse", "--git-dir").returncode != 0:
        raise BadInput(f"--to: {to} is not a git repository")
    return Path(git_output(to, "rev-parse", "--show-toplevel").strip())


def _has_commit(repo: Path, rev: str) -> bool:
    return run_git(repo, "cat-file", "-e", f"{rev}^{{commit}}").returncode == 0


def _identity(repo: Path) -> dict[str, str]:
    """The repository owner's git identity when configured, else Hive's."""
    if run_git(repo, "config", "user.name").stdout.strip() and run_git(repo, "config", "user.email").stdout.strip():
        return {}
    return dict(GIT_ENV)


def export_branch(workspace: Workspace, campaign: Campaign, change: Change, playbook: Playbook, to: Path | None,
            gh: bool) -> ExportResult:
    src = _source_repo(to, playbook)
    branch = f"hive/{campaign.name}/pr-{change.pr.number}"
    dep_branch = f"hive/{campaign.name}/pr-{change.depends_on[0].number}" if change.depends_on else None
    if dep_branch and _has_commit(src, f"refs/heads/{dep_branch}"):
        base, base_name = git_output(src, "rev-parse", dep_branch).strip(), dep_branch  # a stacked pull request
    elif _has_commit(src, change.base):
        base, base_name = change.base, change.base[:12]
    else:
        base, base_name = git_output(src, "rev-parse", "HEAD").strip(), "HEAD"
    patch = workspace.export_diff(change.base, change.head)
    if not patch.strip():
        raise HiveError(f"pull request #{change.pr.number} changes nothing outside {HIVE_DIR}/")
    with tempfile.TemporaryDirectory(prefix="hive-export-") as tmp:
        # dated when the PR was opened, so exporting it again makes the very same commit (a push of it is a no-op)
        when = change.pr.created_at.strftime("%Y-%m-%dT%H:%M:%S+0000")
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **_identity(src), "GIT_AUTHOR_DATE": when,
               "GIT_COMMITTER_DATE": when}
        git_output(src, "read-tree", base, env=env)
        applied = run_git(src, "apply", "--cached", "--whitespace=nowarn", env=env, stdin=patch)
        if applied.returncode != 0:
            why = applied.stderr.strip().splitlines()[0] if applied.stderr.strip() else "conflicts"
            if change.depends_on:
                raise BadInput(f"--only: PR #{change.pr.number}'s own diff does not apply to {base_name} of {src} ({why}); "
                               f"it depends on PR #{change.depends_on[0].number}: export that first, or drop --only")
            raise HiveError(f"PR #{change.pr.number} does not apply to {base_name} of {src} ({why}); nothing was changed")
        tree = git_output(src, "write-tree", env=env).strip()
        commit = git_output(src, "commit-tree", tree, "-p", base, "-F", "-", env=env, stdin=change.message()).strip()
    current = run_git(src, "symbolic-ref", "-q", "HEAD").stdout.strip()
    if current == f"refs/heads/{branch}":
        raise BadInput(f"--to: branch {branch} is checked out in {src}; switch to another branch first")
    existed = _has_commit(src, f"refs/heads/{branch}")
    git_output(src, "update-ref", f"refs/heads/{branch}", commit)
    body_file = workspace.root / "exports" / f"pr-{change.pr.number}.md"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_text(change.message().split("\n\n", 1)[1])
    gh_cmd = ["gh", "pr", "create", "--head", branch, "--title", change.pr.title, "--body-file", str(body_file)]
    if dep_branch and base_name == dep_branch:
        gh_cmd[3:3] = ["--base", dep_branch]
    push = ["git", "-C", str(src), "push", "-u", "origin", branch]
    result = result_of(change, "branch", paths=[str(src)], branch=branch,
                     commands=[shlex.join(push), f"cd {shlex.quote(str(src))} && {shlex.join(gh_cmd)}"],
                     notes=[f"one commit {commit[:12]} on {base_name}" + (" (replaced the earlier export)" if existed else "")])
    if gh:
        if shutil.which("gh") is None:
            raise BadInput("--gh: the gh command is not installed; run the printed commands yourself")
        for cmd in (push, gh_cmd):
            proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise HiveError(f"{shlex.join(cmd[:3])} failed: {proc.stderr.strip()[-300:]}")
            result.notes.append(proc.stdout.strip())
    return result


def push_branch(result: ExportResult, title: str, body_file: Path, remote: str | None, branch: str | None,
                open_pr: bool) -> ExportResult:
    """Push an exported branch to a remote of the user's repository (or a URL); with `open_pr`, open the GitHub
    pull request with `gh` when it is installed and logged in, else say the exact command."""
    src, local = Path(result.paths[0]), result.branch
    remote = remote or "origin"
    remotes = run_git(src, "remote").stdout.split()
    if remote not in remotes and not (re.match(r"^[a-z+]+://|^[^/]+@[^:]+:", remote) or Path(remote).expanduser().exists()):
        raise BadInput(f"--remote: {remote!r} is neither a remote of {src} (remotes: {', '.join(remotes) or 'none'}) "
                       f"nor a URL or path")
    target = branch or local
    if run_git(src, "check-ref-format", f"refs/heads/{target}").returncode != 0:
        raise BadInput(f"--branch: {target!r} is not a valid branch name")
    # the user's own credentials reach the remote; the repository's hooks do not run
    pushed = run_git(src, "-c", "core.hooksPath=/dev/null", "push", remote, f"refs/heads/{local}:refs/heads/{target}")
    if pushed.returncode != 0:
        why = pushed.stderr.strip().splitlines()[-1] if pushed.stderr.strip() else f"exit {pushed.returncode}"
        raise HiveError(f"git push {remote} {target} failed ({why}); a branch of that name with other commits is "
                        f"never overwritten: pass --branch NEW")
    result.notes.append(f"pushed {local} ({git_output(src, 'rev-parse', local).strip()[:12]}) to {remote} as {target}")
    gh_cmd = ["gh", "pr", "create", "--head", target, "--title", title, "--body-file", str(body_file)]
    result.commands = []
    logged_in = shutil.which("gh") is not None and subprocess.run(
        ["gh", "auth", "status"], cwd=src, capture_output=True, check=False).returncode == 0
    if open_pr and logged_in:
        made = subprocess.run(gh_cmd, cwd=src, capture_output=True, text=True, check=False)
        if made.returncode != 0:
            raise HiveError(f"gh pr create failed: {made.stderr.strip()[-300:]}")
        result.notes.append(f"opened {made.stdout.strip()}")
        return result
    if open_pr:
        result.notes.append("gh is not installed or not logged in (`gh auth login`); open the pull request with:")
    result.commands.append(f"cd {shlex.quote(str(src))} && {shlex.join(gh_cmd)}")
    return result
