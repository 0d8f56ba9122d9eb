"""Run logs: one reader for the CLI, the TUI and the agents (the tail, the whole log, or what it gained), and the cap."""

from __future__ import annotations

import os
import stat
from pathlib import Path

LOG_TAIL_BYTES = 4000  # what an error message or the feed quotes of a log
# a run may put a link where Hive expects its log (or hard-link a user's file there): never followed, never written
_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class LinkedLog(OSError):
    """A log path that is a link (or a file with other names) where Hive expects a file of its own."""


def not_own_file(path: str | Path) -> str | None:
    """Why `path` is not a plain file of Hive's own (a symbolic link, a hard link, not a regular file), or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if info.st_nlink != 1:
        return f"{path} has {info.st_nlink} names (a hard link)"
    if os.path.realpath(Path(path).parent) != os.path.abspath(Path(path).parent):
        return f"{Path(path).parent} is reached through a symbolic link"
    return None


def open_log(path: str | Path, mode: str = "rb"):  # noqa: ANN201  (a binary file object)
    """Open a log without following a link: "wb" makes a new file (whatever was at the path goes), "ab" appends.

    LinkedLog when the path (or its folder) is a link or a hard link, so Hive never reads or writes a user's file
    through a run's planted link.
    """
    folder = Path(path).parent
    if os.path.realpath(folder) != os.path.abspath(folder):  # an unlink or create there would land elsewhere
        raise LinkedLog(f"{folder} is reached through a symbolic link")
    if mode == "wb":
        try:
            os.unlink(path)  # removes a planted link itself, never what it points to
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    elif mode == "ab":
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    else:
        flags = os.O_RDONLY
    why = not_own_file(path)
    if why is None:
        try:
            fd = os.open(path, flags | _NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno != 40:  # ELOOP: the final component is a link
                raise
            why = f"{path} is a symbolic link"
        else:
            info = os.fstat(fd)
            if info.st_nlink == 1 and stat.S_ISREG(info.st_mode):
                return os.fdopen(fd, mode, buffering=0 if mode == "ab" else -1)
            os.close(fd)
            why = f"{path} is not a plain file of its own"
    raise LinkedLog(why)


def own_folder(folder: Path, root: Path) -> Path:
    """Make `folder` (inside `root`) a real folder: every link on the way down from `root` is removed, not followed."""
    here = Path(root)
    for part in Path(folder).relative_to(root).parts:
        here = here / part
        if here.is_symlink():
            here.unlink()
        here.mkdir(exist_ok=True)
    return Path(folder)


def write_log(path: Path, text: str) -> None:
    """Start a log afresh with `text` (a link or file planted at the path is replaced, never written through)."""
    with open_log(path, "wb") as log:
        log.write(text.encode())


class LogTail:
    """The end of a growing log file, read incrementally (only new bytes after the first read)."""

    def __init__(self, path: str | Path, first_bytes: int | None = LOG_TAIL_BYTES, whole_lines: bool = False):
        self.path = Path(path) if path else None
        self.offset: int | None = None
        self.first_bytes = first_bytes  # None: the first read returns the whole log
        self.whole_lines = whole_lines  # True: a last line still being written is left for the next read

    def read_new(self, missing: str = "") -> str:
        """Text appended since the last call (the last `first_bytes` on the first call); `missing` if unreadable."""
        if self.path is None:
            return missing
        try:
            with open_log(self.path, "rb") as fh:
                size = fh.seek(0, 2)
                if self.offset is None or size < self.offset:
                    self.offset = 0 if self.first_bytes is None else max(0, size - self.first_bytes)
                fh.seek(self.offset)
                data = fh.read(size - self.offset)
                if self.whole_lines:
                    data = data[:data.rfind(b"\n") + 1]
                self.offset += len(data)
        except OSError:
            return missing
        return data.decode("utf-8", errors="replace")


def log_tail(path: str | Path, limit: int | None = LOG_TAIL_BYTES, missing: str = "") -> str:
    """The last `limit` bytes of a log (all of it when None), for error messages, the feed and `hive show --log`."""
    return LogTail(path, limit).read_new(missing)


def append_log(path: Path, text: str) -> None:
    """Add Hive's own lines (a stop reason, the scorer's output) to the end of a run's log."""
    try:
        log = open_log(path, "ab")
    except LinkedLog:  # dropped, never written through a link (the runner records the link as tampering)
        return
    with log:
        log.write(text.encode())


def cap_log(path: Path, max_mb: float, head: int = 2**20, tail: int = 4 * 2**20) -> bool:
    """Shrink a log over `max_mb` to its first and last megabytes (a runaway print must not fill the disk)."""
    try:
        with open_log(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= max_mb * 2**20:
                return False
            first = fh.read(head)
            fh.seek(max(size - tail, len(first)))
            last = fh.read()
    except OSError:
        return False
    cut = size - len(first) - len(last)
    # written beside and renamed over: a link planted meanwhile is replaced, never written through
    part = path.with_name(path.name + ".cap")
    with open_log(part, "wb") as out:
        out.write(first + f"\n[hive] ... {cut} bytes cut from a {size} byte log ...\n".encode() + last)
    os.replace(part, path)
    return True
