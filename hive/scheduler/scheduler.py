"""Leases of GPUs and CPU slots: first come first served, bounded backfill, never two runs on one device."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from hive.errors import BadInput
from hive.scheduler.inventory import CpuInventory, Device, GpuInventory, make_inventory

if TYPE_CHECKING:
    from hive import playbook

POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Lease:
    """Devices (NVML indices, for CUDA_VISIBLE_DEVICES) and CPU threads one run holds until released."""

    id: int
    holder: str
    devices: list[int]
    cpu_threads: int
    started_at: float  # time.time(), for display


@dataclass(eq=False)
class _Request:
    holder: str
    gpus: int
    min_free_mb: int
    cpu_threads: int
    placed: asyncio.Event | None
    queued_at: float = field(default_factory=time.time)
    overtaken: int = 0
    lease: Lease | None = None

    @property
    def pool(self) -> str:
        return "gpu" if self.gpus else "cpu"


class Scheduler:
    """Hands out leases so that every device a run holds is ours alone and really free.

    GPU requests take whole devices that we have not leased and whose reading shows at least `min_free_mb` free
    and utilisation at most `max_utilisation` percent (someone else's job makes a device busy). CPU requests
    (gpus=0) take `cpu_threads` of `cpu_slots` cores. Waiting requests are served in arrival order; a later one
    that fits may overtake one that does not (backfill), but each waiting request is overtaken at most
    `starvation_limit` times before nothing of its pool passes it. The executor turns `lease.devices` into
    CUDA_VISIBLE_DEVICES. All methods run on one event loop; `release` may also be called from another thread.
    """

    def __init__(self, inventory: GpuInventory, cpu_slots: int | None = None, max_utilisation: int = 10,
                 starvation_limit: int = 8, poll_interval: float = POLL_SECONDS):
        self.inventory = inventory
        default_cores = inventory.cores if isinstance(inventory, CpuInventory) else (os.cpu_count() or 1)
        self.cpu_slots = max(1, cpu_slots or default_cores)
        self.max_utilisation = max_utilisation
        self.starvation_limit = starvation_limit
        self.poll_interval = poll_interval
        self._ids = itertools.count(1)
        self._leases: dict[int, Lease] = {}
        self._held: dict[int, int] = {}  # device index -> lease id
        self._cpu_charged: dict[int, int] = {}  # lease id -> CPU slots it takes
        self._queue: list[_Request] = []
        self._read_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- public API ----------------------------------------------------------------------------------------------

    async def acquire(self, holder: str, gpus: int = 0, min_free_mb: int = 0, cpu_threads: int = 1) -> Lease:
        """Wait until the request fits, in fair order, and return its lease; release it with `release`."""
        self._loop = asyncio.get_running_loop()
        request = self._request(holder, gpus, min_free_mb, cpu_threads, asyncio.Event())
        self._queue.append(request)
        try:
            self._dispatch()
            while request.lease is None:
                try:
                    await asyncio.wait_for(request.placed.wait(), self.poll_interval)
                except TimeoutError:
                    # re-read the inventory: someone else's job may have ended
                    if time.monotonic() - self._read_at >= self.poll_interval * 0.9:
                        self._dispatch()
        except BaseException:  # cancelled or timed out while waiting, or granted just as the waiter was cancelled
            self._withdraw(request)
            raise
        return request.lease

    def try_acquire(self, holder: str, gpus: int = 0, min_free_mb: int = 0, cpu_threads: int = 1) -> Lease | None:
        """The lease if the request fits now without jumping the fair order, else None."""
        request = self._request(holder, gpus, min_free_mb, cpu_threads, None)
        self._queue.append(request)
        self._dispatch()
        if request.lease is None:
            self._queue.remove(request)
        return request.lease

    @asynccontextmanager
    async def lease(self, holder: str, gpus: int = 0, min_free_mb: int = 0,
                    cpu_threads: int = 1) -> AsyncIterator[Lease]:
        """`async with scheduler.lease(...) as lease:` releases on exit, on an exception and on cancellation."""
        held = await self.acquire(holder, gpus, min_free_mb, cpu_threads)
        try:
            yield held
        finally:
            self.release(held)

    def release(self, lease: Lease) -> None:
        """Give the lease's devices and slots back and place whoever now fits; releasing twice is harmless."""
        loop = self._loop
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if loop is not None and current is not loop and loop.is_running():
            loop.call_soon_threadsafe(self._release, lease)  # from an executor thread: mutate on the loop's thread
            return
        self._release(lease)

    def capacity(self, gpus: int = 0, cpu_threads: int = 1, min_free_mb: int = 0) -> int:
        """How many runs of this size can be in flight at once now (0 if other people's jobs fill every GPU)."""
        if gpus <= 0:
            return self.cpu_slots // self._cpu_cost(cpu_threads)
        usable = sum(1 for d in self._read() if d.index in self._held or self._usable(d, min_free_mb))
        return usable // gpus

    def snapshot(self) -> dict:
        """Devices (free memory, utilisation, holder), CPU slots in use, leases and the waiting queue, JSON-ready."""
        holders = {index: self._leases[lease_id] for index, lease_id in self._held.items()}
        devices = []
        for device in self._read():
            held = holders.get(device.index)
            available = held is None and self._usable(device, 0)
            devices.append({**asdict(device), "holder": held.holder if held else None,
                            "lease": held.id if held else None, "available": available})
        now = time.time()
        return {
            "inventory": self.inventory.kind,
            "max_utilisation": self.max_utilisation,
            "devices": devices,
            "cpu": {"slots": self.cpu_slots, "used": sum(self._cpu_charged.values())},
            "leases": [asdict(lease) for lease in self._leases.values()],
            "waiting": [{"holder": r.holder, "gpus": r.gpus, "min_free_mb": r.min_free_mb,
                         "cpu_threads": r.cpu_threads, "waited_seconds": round(now - r.queued_at, 3),
                         "overtaken": r.overtaken} for r in self._queue],
        }

    # ---- placement -----------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Walk the queue in arrival order and place every request that fits and may pass those it overtakes."""
        if not self._queue:
            return
        readings: list[Device] | None = None
        free_cpu = self.cpu_slots - sum(self._cpu_charged.values())
        skipped: list[_Request] = []
        for request in list(self._queue):
            devices: list[int] = []
            if request.gpus:
                if readings is None:
                    readings = self._read()
                devices = [d.index for d in readings
                           if d.index not in self._held and self._usable(d, request.min_free_mb)][:request.gpus]
                fits = len(devices) == request.gpus
            else:
                fits = self._cpu_cost(request.cpu_threads) <= free_cpu
            passed = [r for r in skipped if r.pool == request.pool]
            if not fits:
                skipped.append(request)
                continue
            if any(r.overtaken >= self.starvation_limit for r in passed):
                continue  # a request has waited through enough overtakes: its pool drains for it
            for r in passed:
                r.overtaken += 1
            if not request.gpus:
                free_cpu -= self._cpu_cost(request.cpu_threads)
            self._place(request, devices)

    def _place(self, request: _Request, devices: list[int]) -> None:
        lease = Lease(id=next(self._ids), holder=request.holder, devices=devices, cpu_threads=request.cpu_threads,
                      started_at=time.time())
        self._leases[lease.id] = lease
        for index in devices:
            # the invariant, checked where it is made
            assert index not in self._held, f"device {index} is already leased"
            self._held[index] = lease.id
        if not devices:
            self._cpu_charged[lease.id] = self._cpu_cost(request.cpu_threads)
        request.lease = lease
        self._queue.remove(request)
        if request.placed is not None:
            request.placed.set()

    def _release(self, lease: Lease) -> None:
        if self._leases.pop(lease.id, None) is None:
            return
        for index in lease.devices:
            if self._held.get(index) == lease.id:
                del self._held[index]
        self._cpu_charged.pop(lease.id, None)
        self._dispatch()

    def _withdraw(self, request: _Request) -> None:
        if request in self._queue:
            self._queue.remove(request)
        if request.lease is not None:
            self._release(request.lease)
        else:
            self._dispatch()  # a starving request that leaves unblocks those behind it

    # ---- helpers -------------------------------------------------------------------------------------------------

    def _request(self, holder: str, gpus: int, min_free_mb: int, cpu_threads: int,
                 placed: asyncio.Event | None) -> _Request:
        if gpus < 0:
            raise BadInput(f"resources.gpus: must be 0 or more, got {gpus}")
        if cpu_threads < 1:
            raise BadInput(f"resources.cpu_threads: must be 1 or more, got {cpu_threads}")
        if gpus:
            devices = self._read()
            big_enough = [d for d in devices if d.total_mb >= min_free_mb]
            if len(devices) < gpus:
                raise BadInput(f"resources.gpus: a run asks for {gpus} GPU(s) but the {self.inventory.kind} "
                               f"inventory has {len(devices)}; lower it or set scheduler.inventory/simulate_gpus")
            if len(big_enough) < gpus:
                raise BadInput(f"resources.min_free_memory_mb: {min_free_mb} MB is more than {gpus} GPU(s) here "
                               f"have in total")
        return _Request(holder=holder, gpus=gpus, min_free_mb=min_free_mb, cpu_threads=cpu_threads, placed=placed)

    def _read(self) -> list[Device]:
        self._read_at = time.monotonic()
        return self.inventory.devices()

    def _usable(self, device: Device, min_free_mb: int) -> bool:
        return device.free_mb >= min_free_mb and device.utilisation <= self.max_utilisation

    def _cpu_cost(self, cpu_threads: int) -> int:
        # a run wider than the machine still runs, alone
        return min(cpu_threads, self.cpu_slots)


def make_scheduler(config: playbook.Scheduler, resources: playbook.Resources) -> Scheduler:
    """The scheduler a playbook asks for; `config.slots` fixes how many CPU runs of `resources` go at once."""
    inventory = make_inventory(config.inventory, config.simulate_gpus, config.simulated_memory_mb,
                               cpu_threads=resources.cpu_threads)
    cpu_slots = config.slots * resources.cpu_threads if config.slots else None
    return Scheduler(inventory, cpu_slots=cpu_slots, max_utilisation=config.max_utilisation,
                     starvation_limit=config.starvation_limit)
