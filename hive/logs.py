"""Run logs: one reader for the CLI, the TUI and the agents (the tail, the whole log, or what it gained), and the cap."""

from __future__ import annotations

from pathlib import Path

LOG_TAIL_BYTES = 4000  # what an error message or the feed quotes of a log


class LogTail:
    """The end of a growing log file, read incrementally (only new bytes after the first read)."""

    def __init__(self, path: str | Path, first_bytes: int | None = LOG_TAIL_BYTES):
        self.path = Path(path) if path else None
        self.offset: int | None = None
        self.first_bytes = first_bytes  # None: the first read returns the whole log

    def read_new(self, missing: str = "") -> str:
        """Text appended since the last call (the last `first_bytes` on the first call); `missing` if unreadable."""
        if self.path is None:
            return missing
        try:
            with open(self.path, "rb") as fh:
                size = fh.seek(0, 2)
                if self.offset is None or size < self.offset:
                    self.offset = 0 if self.first_bytes is None else max(0, size - self.first_bytes)
                fh.seek(self.offset)
                data = fh.read(size - self.offset)
                self.offset = size
        except OSError:
            return missing
        return data.decode("utf-8", errors="replace")


def log_tail(path: str | Path, limit: int | None = LOG_TAIL_BYTES, missing: str = "") -> str:
    """The last `limit` bytes of a log (all of it when None), for error messages, the feed and `hive show --log`."""
    return LogTail(path, limit).read_new(missing)


def append_log(path: Path, text: str) -> None:
    """Add Hive's own lines (a stop reason, the scorer's output) to the end of a run's log."""
    with open(path, "a", encoding="utf-8") as log:
        log.write(text)


def cap_log(path: Path, max_mb: float, head: int = 2**20, tail: int = 4 * 2**20) -> bool:
    """Shrink a log over `max_mb` to its first and last megabytes (a runaway print must not fill the disk)."""
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if size <= max_mb * 2**20:
        return False
    with open(path, "rb") as fh:
        first = fh.read(head)
        fh.seek(size - tail)
        last = fh.read()
    cut = size - len(first) - len(last)
    path.write_bytes(first + f"\n[hive] ... {cut} bytes cut from a {size} byte log ...\n".encode() + last)
    return True
