"""The campaign engine running under the TUI: `hive.driver.start` in a thread, stopped cleanly on request."""

from __future__ import annotations

import threading
from pathlib import Path

from hive.playbook import Playbook


class EngineThread:
    """Runs a campaign in a background thread; `stop()` asks it to finish cleanly (runs cancelled, records kept)."""

    def __init__(self, playbook: Playbook, home: Path, name: str | None = None, accept_changes: bool = False):
        self.playbook, self.home, self.accept_changes = playbook, home, accept_changes
        self.name = name or playbook.name
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.context = None  # the open campaign, once the engine has it
        self._thread = threading.Thread(target=self._run, name=f"hive-engine-{self.name}", daemon=True)

    def start(self) -> EngineThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        from hive.driver import start  # seconds to import (langgraph, optuna): `hive tui` only watches, never pays it

        try:
            start(self.playbook, self.home, self.name, echo=None, stop=self.stop_event,
                  on_open=lambda ctx: setattr(self, "context", ctx), accept_changes=self.accept_changes)
        except BaseException as exc:  # noqa: BLE001  (reported by the TUI and re-raised by the CLI after it closes)
            self.error = exc

    def scheduler_snapshot(self) -> dict | None:
        """Devices, their holders and free memory, from the engine's scheduler (None until it has one)."""
        scheduler = getattr(self.context, "scheduler", None)
        if scheduler is None:
            return None
        try:
            return scheduler.snapshot()
        except RuntimeError:  # the engine changed a lease while we read; the next refresh gets it
            return None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the campaign to stop and wait for it; True when it has."""
        self.stop_event.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()
