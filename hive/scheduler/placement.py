"""Which GPUs a request may take now: whole devices of its own, or a share of one device's memory beside others.

Our own runs appear in every NVML reading as used memory, like anyone else's. So a device's room for one more
shared run is its free memory less the part of our reservations our processes have not taken yet:
`free - max(0, reserved - ours)`, where `ours` is the memory NVML lists for processes descended from this one.
Before a run allocates, its whole reservation counts; once it has, the reading shows it and nothing is counted
twice. Where NVML lists no processes (a container that hides them), `ours` is 0 and packing is conservative.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hive.errors import BadInput
from hive.scheduler.inventory import Device


@dataclass(frozen=True)
class GpuAsk:
    """What one run asks of the GPUs: `whole` devices of its own, or (`share` or `memory_mb`) a part of one."""

    whole: int = 0
    share: float = 0.0  # 0 < share < 1: that fraction of a device's total memory
    memory_mb: int | None = None
    min_free_mb: int = 0

    @classmethod
    def of(cls, gpus: float, gpu_memory_mb: int | None = None, min_free_mb: int = 0) -> GpuAsk:
        """The ask for `run.resources`-style values; BadInput names the field when they make no sense."""
        if gpus < 0:
            raise BadInput(f"resources.gpus: must be 0 or more, got {gpus}")
        if gpus >= 1 and gpus != int(gpus):
            raise BadInput(f"resources.gpus: {gpus} is neither a whole number of GPUs nor a share of one (0 < gpus < 1)")
        if gpu_memory_mb is not None and gpus >= 1:
            raise BadInput(f"resources.gpu_memory_mb: asks for a share of one GPU, but gpus: {gpus} asks for whole ones")
        if gpu_memory_mb is not None and gpu_memory_mb < 1:
            raise BadInput(f"resources.gpu_memory_mb: must be 1 or more, got {gpu_memory_mb}")
        if gpus >= 1:
            return cls(whole=int(gpus), min_free_mb=min_free_mb)
        return cls(share=float(gpus), memory_mb=gpu_memory_mb, min_free_mb=min_free_mb)

    @property
    def wants_gpu(self) -> bool:
        return bool(self.whole) or self.shared

    @property
    def shared(self) -> bool:
        return self.share > 0 or self.memory_mb is not None

    def reserve_mb(self, total_mb: int) -> int:
        """MB a shared run reserves on a device of `total_mb` (rounded down, so 1/k of a device fits k runs)."""
        return max(self.memory_mb or 0, int(self.share * total_mb), 1)

    def check(self, devices: list[Device], kind: str) -> None:
        """BadInput, naming the field, if no device of this inventory could ever hold the ask."""
        if not self.wants_gpu:
            return
        need = max(1, self.whole)
        if len(devices) < need:
            raise BadInput(f"resources.gpus: a run asks for {self._asked()} but the {kind} inventory has "
                           f"{len(devices)} GPU(s); lower it or set scheduler.inventory/simulate_gpus")
        largest = max(d.total_mb for d in devices)
        if self.memory_mb is not None and self.memory_mb > largest:
            raise BadInput(f"resources.gpu_memory_mb: {self.memory_mb} MB is more than any GPU here has "
                           f"(largest: {largest} MB)")
        if len([d for d in devices if d.total_mb >= self.min_free_mb]) < need:
            raise BadInput(f"resources.min_free_memory_mb: {self.min_free_mb} MB is more than {need} GPU(s) here "
                           f"have in total")

    def _asked(self) -> str:
        if self.whole:
            return f"{self.whole} GPU(s)"
        return f"{self.memory_mb} MB of a GPU" if self.memory_mb is not None else f"{self.share:g} of a GPU"


@dataclass
class Holdings:
    """What our leases hold on one device: it whole (one lease), or shares of it (lease id -> MB reserved)."""

    whole: int | None = None
    shares: dict[int, int] = field(default_factory=dict)

    @property
    def reserved_mb(self) -> int:
        return sum(self.shares.values())

    @property
    def empty(self) -> bool:
        return self.whole is None and not self.shares


class Placement:
    """One reading of the devices, judged against what our leases hold; pure, so a dispatch pass is consistent."""

    def __init__(self, devices: list[Device], holdings: dict[int, Holdings], max_utilisation: int,
                 max_runs_per_gpu: int):
        self.devices = devices
        self.holdings = holdings
        self.max_utilisation = max_utilisation
        self.max_runs_per_gpu = max_runs_per_gpu
        self._ours = own_pids({p.pid for d in devices for p in d.processes})

    def held(self, index: int) -> Holdings:
        return self.holdings.get(index) or Holdings()

    def headroom_mb(self, device: Device) -> int:
        """Free memory on the device once our leases' memory not yet in use is counted as taken."""
        ours = sum(p.used_mb or 0 for p in device.processes if p.pid in self._ours)
        return device.free_mb - max(0, self.held(device.index).reserved_mb - ours)

    def foreign_busy(self, device: Device) -> bool:
        """Someone else's job keeps the device busier than `max_utilisation` (our own packed runs do not count)."""
        if device.utilisation <= self.max_utilisation:
            return False
        if self.held(device.index).empty:
            return True
        return any(p.pid not in self._ours for p in device.processes)

    def whole_fits(self, device: Device, ask: GpuAsk) -> bool:
        return self.held(device.index).empty and device.free_mb >= ask.min_free_mb and not self.foreign_busy(device)

    def share_fits(self, device: Device, ask: GpuAsk) -> bool:
        held = self.held(device.index)
        return (held.whole is None and len(held.shares) < self.max_runs_per_gpu and not self.foreign_busy(device)
                and self.headroom_mb(device) >= max(ask.reserve_mb(device.total_mb), ask.min_free_mb))

    def choose(self, ask: GpuAsk) -> list[Device]:
        """The devices the ask takes now, or [] if it does not fit: whole ones by index, a share spread first."""
        if ask.whole:
            free = [d for d in self.devices if self.whole_fits(d, ask)]
            return free[:ask.whole] if len(free) >= ask.whole else []
        fits = [d for d in self.devices if self.share_fits(d, ask)]
        # shares spread over GPUs before they stack (a run beside fewer of ours computes faster), then the most
        # headroom and the least busy: a campaign's runs all ask alike, so an idle GPU kept whole would only idle
        fits.sort(key=lambda d: (len(self.held(d.index).shares), -self.headroom_mb(d), d.utilisation, d.index))
        return fits[:1]

    def capacity(self, ask: GpuAsk) -> int:
        """How many runs of this ask the devices hold at once, counting ours as if they were not there."""
        if ask.whole:
            usable = sum(1 for d in self.devices if not self.held(d.index).empty or self.whole_fits(d, ask))
            return usable // ask.whole
        total = 0
        for d in self.devices:
            held = self.held(d.index)
            if held.whole is not None or self.foreign_busy(d):
                continue
            room = self.headroom_mb(d) + held.reserved_mb
            if room >= ask.min_free_mb:
                total += min(self.max_runs_per_gpu, room // ask.reserve_mb(d.total_mb))
        return total


def own_pids(pids: set[int]) -> set[int]:
    """Those of `pids` that are this process or descend from it (read from /proc; others count as foreign)."""
    me = os.getpid()
    return {pid for pid in pids if _descends_from(pid, me)}


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(64):  # deeper than any real process tree
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # gone, or in a pid namespace we cannot see
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state is the parent's pid
    return False
