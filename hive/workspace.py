"""The campaign's git state: its repo, one worktree per experiment, run folders, the best branch, the harness."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from hive.errors import BadInput, HiveError
from hive.knobs import KNOBS_FILE
from hive.logs import own_folder
from hive.playbook import Playbook, matches_any

GIT_ENV = {"GIT_AUTHOR_NAME": "Hive", "GIT_AUTHOR_EMAIL": "hive@localhost",
           "GIT_COMMITTER_NAME": "Hive", "GIT_COMMITTER_EMAIL": "hive@localhost"}
SKIP_DIRS = {".git", "__pycache__", ".venv", "workspaces", ".pytest_cache"}
HIVE_DIR = ".hive"  # Hive's own bookkeeping (knob values) travels in commits but never in an export
# Hive's git on the campaign repo never runs a program the repo names: no hooks, no filesystem monitor
SAFE_GIT = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
# what of Hive's environment its git on the campaign repo gets (a clone may need the ssh agent and proxies)
GIT_PASSED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSH_AUTH_SOCK", "GIT_SSH",
              "GIT_SSH_COMMAND", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


class GitFailed(Exception):
    """A git command on the campaign repo failed (a bug or a broken repo, not a user mistake)."""

    def __init__(self, args: tuple[str, ...], code: int, stderr: str, stdout: str):
        super().__init__(f"git {' '.join(args[:2])} failed (exit {code}): {stderr.strip()[-500:]}")
        self.code, self.stderr, self.stdout = code, stderr, stdout


def run_git(cwd: Path, *args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """One git command in `cwd` with the environment plus `env`; the caller reads its exit code."""
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **(env or {})}, input=stdin,
                          capture_output=True, text=True, check=False)


def campaign_git_env() -> dict[str, str]:
    """The whole environment of Hive's git on the campaign repo: a short allow-list, no secret, Hive's identity."""
    env = {k: v for k, v in os.environ.items() if k in GIT_PASSED}
    return {**env, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0"}


def run_campaign_git(cwd: Path, *args: str, stdin: str | bytes | None = None, text: bool = True,
                     env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One git command on the campaign repo: hooks and monitors off, a scrubbed environment (plus `env`)."""
    return subprocess.run(["git", *SAFE_GIT, *args], cwd=cwd, env={**campaign_git_env(), **(env or {})}, input=stdin,
                          capture_output=True, text=text, check=False)


def git_output(cwd: Path, *args: str, env: dict | None = None, stdin: str | None = None) -> str:
    """The output of one git command in `cwd`; HiveError naming the command when it fails."""
    proc = run_git(cwd, *args, env=env, stdin=stdin)
    if proc.returncode != 0:
        raise HiveError(f"git {args[0]} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
MAX_PACKS = 16  # packs in the campaign repo before commit_files merges the small ones
REGULAR_MODES = ("100644", "100755")  # a plain file and an executable one, as git records them


def _blob_id(data: bytes, like: str) -> str:
    """The id git gives a file of `data`, in the hash of the id `like` (SHA-1, or SHA-256 in such a repo)."""
    algorithm = hashlib.sha1 if len(like) == 40 else hashlib.sha256
    return algorithm(b"blob %d\0" % len(data) + data).hexdigest()


_NOT_HIVE = ["--", ".", f":(exclude){HIVE_DIR}"]


def experiment_branch(campaign: str, number: int, kind: str = "candidate") -> str:
    """The branch an experiment's commit is on: the campaign's baseline branch for the baseline, else its own."""
    return f"hive/{campaign}/baseline" if kind == "baseline" else f"hive/{campaign}/exp-{number}"


class Workspace:
    """Everything under `workspaces/<campaign>/`: repo/, trees/, runs/, logs/."""

    def __init__(self, root: Path, campaign: str):
        self.campaign = campaign
        self.root = Path(root).resolve()
        self.repo_dir = self.root / "repo"
        self.trees = self.root / "trees"
        self.runs = self.root / "runs"
        self.logs = self.root / "logs"
        self._repo_lock = threading.Lock()  # runs finish in threads; one git command on the checkout at a time
        self._pack_lock = threading.Lock()  # one repack at a time
        self._cache_lock = threading.Lock()
        self._entry_cache: dict[str, dict[str, tuple[str, str, str] | None]] = {}  # commit -> path -> entry
        self._texts: dict[str, str] = {}  # blob id -> its text (a blob never changes): the knob files read again

    # -- names -------------------------------------------------------------
    def branch(self, number: int) -> str:
        return experiment_branch(self.campaign, number)

    @property
    def best_branch(self) -> str:
        return f"hive/{self.campaign}/best"

    @property
    def baseline_branch(self) -> str:
        return experiment_branch(self.campaign, 1, "baseline")

    def _git(self, *args: str, cwd: Path | None = None, stdin: str | None = None, env: dict | None = None) -> str:
        proc = run_campaign_git(cwd or self.repo_dir, *args, stdin=stdin, env=env)
        if proc.returncode != 0:
            raise GitFailed(args, proc.returncode, proc.stderr, proc.stdout)
        return proc.stdout

    # -- the campaign repo ---------------------------------------------------
    def exists(self) -> bool:
        return (self.repo_dir / ".git").exists() and self.has_branch(self.baseline_branch)

    def create(self, playbook: Playbook) -> str:
        """Make the campaign repo from the playbook's source (once); return the baseline commit."""
        for folder in (self.trees, self.runs, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        if self.exists():
            self.clear_stale_locks()
            return self.baseline_commit()
        # a crash mid-creation leaves a half-made repo: start it again
        if self.repo_dir.exists():
            shutil.rmtree(self.repo_dir)
        staging = self.root / "repo.partial"
        if staging.exists():
            shutil.rmtree(staging)
        src = playbook.source_dir()
        if src is not None and not (src / ".git").exists():
            if not src.is_dir():
                raise BadInput(f"source: folder {playbook.source!r} not found")
            shutil.copytree(src, staging, ignore=shutil.ignore_patterns(*SKIP_DIRS))
            self._git("init", "-q", "-b", "main", str(staging), cwd=self.root)
        else:
            origin = str(src) if src is not None else playbook.source
            try:
                self._git("clone", "-q", "--no-hardlinks", origin, str(staging), cwd=self.root)
            except GitFailed as exc:
                why = (exc.stderr.strip().splitlines() or ["git clone failed"])[-1]
                raise BadInput(f"source: cannot clone {playbook.source!r}: {why}") from None
            if playbook.ref:
                try:
                    self._git("checkout", "-q", playbook.ref, cwd=staging)
                except GitFailed:
                    raise BadInput(f"ref: {playbook.ref!r} is not a commit, branch or tag of {playbook.source!r}") from None
        self._git("config", "user.name", GIT_ENV["GIT_AUTHOR_NAME"], cwd=staging)
        self._git("config", "user.email", GIT_ENV["GIT_AUTHOR_EMAIL"], cwd=staging)
        self._git("add", "-A", cwd=staging)
        self._git("commit", "-q", "--allow-empty", "-m", f"hive: baseline of campaign {self.campaign}", cwd=staging)
        head = self._git("rev-parse", "HEAD", cwd=staging).strip()
        self._git("branch", "-f", self.best_branch, head, cwd=staging)
        self._git("branch", "-f", self.baseline_branch, head, cwd=staging)
        staging.rename(self.repo_dir)
        self.snapshot_harness(playbook, head)
        return head

    def baseline_commit(self) -> str:
        return self._git("rev-parse", self.baseline_branch).strip()

    def best_commit(self) -> str:
        return self._git("rev-parse", self.best_branch).strip()

    def has_branch(self, name: str) -> bool:
        try:
            self._git("rev-parse", "--verify", "-q", f"refs/heads/{name}")
            return True
        except (GitFailed, FileNotFoundError, NotADirectoryError):
            return False

    def clear_stale_locks(self) -> list[Path]:
        """Remove git lock files a killed process left behind (call only while holding the campaign lock)."""
        gitdir = self.repo_dir / ".git"
        stale = [p for p in [gitdir / "index.lock", gitdir / "HEAD.lock", *gitdir.glob("worktrees/*/index.lock"),
                             *gitdir.glob("refs/heads/**/*.lock")] if p.exists()]
        for path in stale:
            path.unlink(missing_ok=True)
        self._git("worktree", "prune")
        return stale

    def repo_changes(self) -> list[str]:
        """Paths changed in the campaign repo's own checkout (nothing of Hive's writes there after creation)."""
        with self._repo_lock:
            out = self._git("--no-optional-locks", "status", "--porcelain", "--untracked-files=all")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def restore_repo(self) -> None:
        """Undo foreign writes to the campaign repo's checkout (ignored files, e.g. a setup's outputs, stay)."""
        with self._repo_lock:
            self._git("reset", "-q", "--hard")
            self._git("clean", "-q", "-fd")

    # -- worktrees (where the coder edits) -----------------------------------
    def worktree(self, number: int, base_commit: str) -> Path:
        """The experiment's worktree on its branch, (re)set to `base_commit`; safe to call again after a crash.

        Work to keep (an earlier attempt's commit) is kept by passing it as `base_commit`.
        """
        path = self.trees / f"exp-{number}"
        branch = self.branch(number)
        if not path.exists():
            try:  # the common case: one git call
                self._git("worktree", "add", "-q", "-f", "-B", branch, str(path), base_commit)
                return path
            except GitFailed:
                pass  # a stale registration or lock from a crash: take the careful path below
        self.clear_stale_locks()
        registered = str(path) in self._git("worktree", "list", "--porcelain")
        if registered and path.exists():
            self._git("checkout", "-q", "-B", branch, base_commit, cwd=path)
            self._git("reset", "-q", "--hard", cwd=path)
            self._git("clean", "-q", "-fd", cwd=path)
            return path
        if path.exists():
            shutil.rmtree(path)
            self._git("worktree", "prune")
        self._git("worktree", "add", "-q", "-f", "-B", branch, str(path), base_commit)
        return path

    def commit(self, tree: Path, message: str) -> str:
        """Commit everything changed in a worktree; return the new commit (HEAD if nothing changed)."""
        self._git("add", "-A", cwd=tree)
        try:
            self._git("commit", "-q", "-m", message, cwd=tree)
        except GitFailed as exc:
            if "nothing to commit" not in (exc.stdout or "") + (exc.stderr or ""):
                raise
        return self._git("rev-parse", "HEAD", cwd=tree).strip()

    def _entries(self, commit: str, paths: list[str]) -> dict[str, tuple[str, str, str]]:
        """What `commit` holds at each of `paths` that it has: path -> (mode, kind, object id).

        A commit never changes, so the answer is kept (the graph reads a parent's files, then commits on it).
        """
        known = self._entry_cache.get(commit, {})
        if all(p in known for p in paths):
            return {p: known[p] for p in paths if known[p] is not None}
        listed = self._git("ls-tree", "-z", commit, "--", *paths).split("\0") if paths else []
        entries = {}
        for entry in filter(None, listed):
            meta, path = entry.split("\t", 1)
            mode, kind, sha = meta.split()
            entries[path] = (mode, kind, sha)
        if OBJECT_ID.fullmatch(commit):  # an object id, not a branch name that may move
            with self._cache_lock:
                if commit not in self._entry_cache and len(self._entry_cache) >= 64:
                    self._entry_cache.pop(next(iter(self._entry_cache)))
                self._entry_cache.setdefault(commit, {}).update({p: entries.get(p) for p in paths})
        return entries

    def read_files(self, commit: str, paths: list[str]) -> dict[str, str | None] | None:
        """The text of each path at `commit` (None where absent), in two git calls and without a checkout.

        None when any of them is not a regular file there (a link, a folder, a submodule) or not UTF-8 text:
        such a tree is edited in a worktree instead, as is a path fast-import would need quoted.
        """
        if any(p.startswith('"') or "\n" in p for p in paths):
            return None
        entries = self._entries(commit, paths)
        if any(kind != "blob" or mode not in REGULAR_MODES for mode, kind, _ in entries.values()):
            return None
        texts: dict[str, str | None] = {p: None for p in paths}
        known = {p: self._texts.get(entries[p][2]) for p in paths if p in entries}
        texts.update({p: text for p, text in known.items() if text is not None})
        order = [p for p, text in known.items() if text is None]
        if not order:
            return texts
        proc = run_campaign_git(self.repo_dir, "cat-file", "--batch", text=False,
                                stdin="".join(f"{entries[p][2]}\n" for p in order).encode())
        if proc.returncode != 0:
            raise GitFailed(("cat-file", "--batch"), proc.returncode, proc.stderr.decode(errors="replace"), "")
        out, at = proc.stdout, 0
        for path in order:  # each object: "<id> blob <size>\n", its bytes, "\n"
            header_end = out.index(b"\n", at)
            size = int(out[at:header_end].split()[2])
            body = out[header_end + 1:header_end + 1 + size]
            at = header_end + 1 + size + 1
            try:
                texts[path] = body.decode("utf-8")
            except UnicodeDecodeError:
                return None
        with self._cache_lock:
            if len(self._texts) > 64:
                self._texts.clear()
            self._texts.update({entries[p][2]: texts[p] for p in order if len(texts[p]) < 1_000_000})
        return texts

    def commit_files(self, number: int, base: str, files: dict[str, str], message: str) -> str:
        """Commit `files` (path -> new text) on `base` to the experiment's branch without a checkout; the commit.

        One `git fast-import`: a file keeps its mode, a new one is a plain file. When no file changes, the branch
        is set to `base` and `base` returned, as `commit` does for a worktree with nothing to commit.
        """
        branch = f"refs/heads/{self.branch(number)}"
        entries = self._entries(base, list(files))
        changed = {p: text.encode() for p, text in files.items()
                   if p not in entries or _blob_id(text.encode(), entries[p][2]) != entries[p][2]}
        if not changed:
            self._git("update-ref", branch, base)
            return base
        stamp = f"{GIT_ENV['GIT_COMMITTER_NAME']} <{GIT_ENV['GIT_COMMITTER_EMAIL']}> {int(time.time())} +0000"
        body = message.encode()
        stream = [f"commit {branch}\nmark :1\nauthor {stamp}\ncommitter {stamp}\ndata {len(body)}\n".encode(),
                  body, f"\nfrom {base}\n".encode()]
        for path, data in sorted(changed.items()):
            mode = entries[path][0] if path in entries else "100644"
            stream += [f"M {mode} inline {path}\ndata {len(data)}\n".encode(), data, b"\n"]
        stream.append(b"\nget-mark :1\ndone\n")
        # its objects stay in one small pack (exploding them to loose objects costs a second process, 8 ms)
        proc = run_campaign_git(self.repo_dir, "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet", "--force",
                                "--done", text=False, stdin=b"".join(stream))
        if proc.returncode != 0:
            raise GitFailed(("fast-import",), proc.returncode, proc.stderr.decode(errors="replace"), "")
        self._merge_small_packs()
        return proc.stdout.decode().strip()

    def _merge_small_packs(self) -> None:
        """Merge the small packs fast-import leaves once there are many (each object lookup walks every pack)."""
        packs = self.repo_dir / ".git" / "objects" / "pack"
        if sum(1 for f in os.scandir(packs) if f.name.endswith(".pack")) <= MAX_PACKS:
            return
        with self._pack_lock:
            try:  # geometric: the small packs are merged, a large one (a dataset) is not rewritten
                self._git("repack", "-d", "-q", "--geometric=2")
            except GitFailed:  # a git older than 2.32
                self._git("repack", "-a", "-d", "-q")

    def remove_worktree(self, number: int) -> None:
        """Drop a finished experiment's worktree (its branch and commits stay)."""
        path = self.trees / f"exp-{number}"
        try:
            self._git("worktree", "remove", "--force", str(path))
        except GitFailed:
            shutil.rmtree(path, ignore_errors=True)
            self._git("worktree", "prune")

    # -- commits and diffs -------------------------------------------------
    def diff(self, base: str, head: str) -> str:
        return self._git("diff", "--no-color", "--no-ext-diff", base, head)

    def export_diff(self, base: str, head: str) -> str:
        """The binary-safe diff from `base` to `head`, without Hive's own bookkeeping folder."""
        return self._git("diff", "--binary", "--full-index", "--no-color", "--no-ext-diff", base, head, *_NOT_HIVE)

    def format_patch(self, commit: str) -> str:
        """`git format-patch` of one commit, without Hive's own bookkeeping folder."""
        return self._git("format-patch", "--stdout", "--binary", "--full-index", "-1", commit, *_NOT_HIVE)

    def changed_paths(self, base: str, head: str) -> list[str]:
        out = self._git("diff", "--name-only", "--no-renames", base, head)
        return [line for line in out.splitlines() if line]

    def illegal_changes(self, base: str, head: str, playbook: Playbook, changed: list[str] | None = None) -> list[str]:
        """Paths changed between two commits (`changed`, where the caller knows them) that are protected or not
        editable."""
        paths = self.changed_paths(base, head) if changed is None else changed
        return [p for p in paths if p != KNOBS_FILE
                and (matches_any(p, playbook.protected) or not matches_any(p, playbook.editable))]

    def is_ancestor(self, older: str, newer: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", older, newer)
            return True
        except GitFailed:
            return False

    def advance_best(self, commit: str, message: str) -> str:
        """Fast-forward the best branch to a new commit with the kept tree, the evidence in its message.

        Its parents are the previous best and the kept commit, so the branch only ever moves forward and
        `git diff <previous best> best` is exactly what the keep changed relative to it.
        """
        best = self.best_commit()
        new = self.commit_tree(commit, [best] if best == commit else [best, commit], message)
        self.update_ref(self.best_branch, new, best)
        return new

    def commit_tree(self, tree_ish: str, parents: list[str], message: str) -> str:
        """A new commit of `tree_ish`'s tree on `parents`; no branch points at it until one is moved there."""
        tree = self._git("rev-parse", f"{tree_ish}^{{tree}}").strip()
        return self._git("commit-tree", tree, *[a for p in parents for a in ("-p", p)], "-F", "-", stdin=message).strip()

    def commit_with_file(self, tree_ish: str, parents: list[str], path: str, text: str, message: str) -> str:
        """A new commit of `tree_ish`'s tree plus one executable file at `path`; nothing points at it."""
        with tempfile.TemporaryDirectory(prefix="hive-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("read-tree", tree_ish, env=env)
            blob = self._git("hash-object", "-w", "--stdin", stdin=text).strip()
            self._git("update-index", "--add", "--cacheinfo", f"100755,{blob},{path}", env=env)
            tree = self._git("write-tree", env=env).strip()
        return self._git("commit-tree", tree, *[a for p in parents for a in ("-p", p)], "-F", "-", stdin=message).strip()

    def rev_parse(self, rev: str) -> str:
        return self._git("rev-parse", rev).strip()

    def tree_ids(self, commits: list[str]) -> list[str]:
        """The tree (what files it holds) of each commit, in order."""
        return self._git("rev-parse", *(f"{c}^{{tree}}" for c in commits)).split() if commits else []

    def same_tree(self, a: str, b: str) -> bool:
        """Whether two commits hold exactly the same files."""
        first, second = self.tree_ids([a, b])
        return first == second

    def update_ref(self, branch: str, new: str, old: str) -> None:
        """Move `branch` to `new` only if it is at `old` now ("" when it must not exist yet)."""
        self._git("update-ref", f"refs/heads/{branch}", new, old)

    def merge_tree(self, ours: str, theirs: str) -> tuple[int, str]:
        """`git merge-tree --write-tree`: (0, tree) when the two merge cleanly, (1, tree and conflicted paths) when not."""
        proc = run_campaign_git(self.repo_dir, "merge-tree", "--write-tree", "--name-only", "--no-messages", ours,
                                theirs)
        if proc.returncode not in (0, 1):
            raise HiveError(f"git merge-tree failed: {proc.stderr.strip()}")
        return proc.returncode, proc.stdout

    def file_at(self, commit: str, path: str) -> str:
        return self._git("show", f"{commit}:{path}")

    def has_file(self, commit: str, path: str) -> bool:
        return run_campaign_git(self.repo_dir, "cat-file", "-e", f"{commit}:{path}").returncode == 0

    # -- run folders and the harness -----------------------------------------
    def run_dir(self, number: int, seed: int, commit: str, name: str = "") -> Path:
        """A fresh folder with exactly the committed files of `commit`, for one run of one seed (or `name`)."""
        path = self.runs / f"exp-{number}" / (name or f"seed-{seed}")
        own_folder(path.parent, self.root)  # a link a run left on the way is removed: rmtree would follow it
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
        path.mkdir()
        self.extract(commit, path)
        return path

    def tracked_files(self, commit: str) -> list[str]:
        """Every file committed at `commit`."""
        return self._git("ls-tree", "-r", "--name-only", commit).splitlines()

    def tracked_bytes(self, commit: str, folder: str) -> int:
        """The size of the files committed under `folder` at `commit`."""
        sizes = self._git("ls-tree", "-r", "-l", commit, folder).splitlines()
        return sum(int(line.split()[3]) for line in sizes if line.split()[3].isdigit())

    def extract(self, commit: str, dest: Path, paths: list[str] | None = None) -> None:
        proc = run_campaign_git(self.repo_dir, "archive", "--format=tar", commit, *(["--", *paths] if paths else []),
                                text=False)
        if proc.returncode != 0:
            raise GitFailed(("archive", commit), proc.returncode, proc.stderr.decode(errors="replace"), "")
        data = proc.stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")

    def protected_files(self, commit: str, playbook: Playbook) -> list[str]:
        return [f for f in self.tracked_files(commit) if matches_any(f, playbook.protected)]

    @property
    def harness_dir(self) -> Path:
        """The harness snapshot: the protected files at the baseline commit, copied once at campaign creation."""
        return self.root / "harness"

    def snapshot_harness(self, playbook: Playbook, commit: str) -> str:
        """(Re)make the harness snapshot from the protected files at `commit`; return its content hash."""
        staging = self.root / "harness.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        files = self.protected_files(commit, playbook)
        if files:
            self.extract(commit, staging, files)
        shutil.rmtree(self.harness_dir, ignore_errors=True)
        staging.rename(self.harness_dir)
        return content_hash(self.harness_dir)

    def fresh_harness(self, dest: Path, expected: str) -> Path:
        """A new copy of the harness snapshot at `dest`, made after the run it scores has ended, checked by hash.

        The copy itself is hashed (what the scorer will run is what was checked); HarnessChanged when it differs
        from `expected`, the hash recorded at campaign creation. No git ref is read, so a moved ref changes nothing.
        """
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(self.harness_dir, dest, symlinks=True)
        got = content_hash(dest)
        if got != expected:
            shutil.rmtree(dest, ignore_errors=True)
            raise HarnessChanged(f"the harness snapshot {self.harness_dir} does not match the hash recorded at "
                                 f"campaign creation (sha256 {got[:12]}, recorded {expected[:12]})")
        return dest

    def baseline_moved(self, expected: str) -> str | None:
        """Where the baseline branch points when it is not at `expected` (it is moved back); None when it is."""
        try:
            now = self.baseline_commit()
        except GitFailed:
            now = "(missing)"
        if now == expected:
            return None
        self._git("update-ref", f"refs/heads/{self.baseline_branch}", expected)
        return now


class HarnessChanged(HiveError):
    """The harness snapshot differs from the hash recorded when the campaign was created."""


def content_hash(folder: Path) -> str:
    """sha256 of a folder's names, kinds and bytes (a link counts as its target's name, never followed)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                digest.update(f"L {rel} {os.readlink(path)}\0".encode())
            else:
                data = path.read_bytes()
                digest.update(f"F {rel} {len(data)}\0".encode() + data)
        for name in dirnames:
            digest.update(f"D {(base / name).relative_to(folder).as_posix()}\0".encode())
    return digest.hexdigest()
