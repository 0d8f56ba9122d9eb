"""Leases of GPUs and CPU slots: first come first served, bounded backfill, never a device over its memory."""

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
from hive.scheduler.inventory import CpuInventory, Device, GpuInventory, InventoryUnavailable, make_inventory
from hive.scheduler.placement import GpuAsk, Holdings, Placement

if TYPE_CHECKING:
    from hive import playbook

POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Lease:
    """Devices (NVML indices, for CUDA_VISIBLE_DEVICES) and CPU threads one run holds until released.

    `gpu_memory_mb` is the memory reserved on its one device when the lease is a share of it; 0 when the lease
    holds its devices whole.
    """

    id: int
    holder: str
    devices: list[int]
    cpu_threads: int
    started_at: float  # time.time(), for display
    gpu_memory_mb: int = 0


@dataclass(eq=False)
class _Request:
    holder: str
    ask: GpuAsk
    cpu_threads: int
    placed: asyncio.Event | None
    holders: tuple[str, ...] = ()  # a request for several runs granted at one moment (acquire_together)
    queued_at: float = field(default_factory=time.time)
    overtaken: int = 0
    leases: list[Lease] = field(default_factory=list)
    pool: str = field(init=False)

    def __post_init__(self) -> None:
        self.pool = "gpu" if self.ask.wants_gpu else "cpu"
        self.holders = self.holders or (self.holder,)

    @property
    def lease(self) -> Lease | None:
        return self.leases[0] if self.leases else None


class Scheduler:
    """Hands out leases so that every device a run holds is really free: whole and ours alone, or shared in memory.

    A request for `gpus` N >= 1 takes N whole devices that no lease of ours touches and whose reading shows at
    least `min_free_mb` free and utilisation at most `max_utilisation` percent (someone else's job makes a device
    busy). A request for a share (0 < `gpus` < 1 of a device's memory, or `gpu_memory_mb`) takes one device that no
    whole lease holds, with fewer than `max_runs_per_gpu` shares on it and that much memory free once our other
    shares are counted (see placement.py); shares never add up past a device's memory. CPU requests (gpus=0) take
    `cpu_threads` of `cpu_slots` cores. Waiting requests are served in arrival order; a later one that fits may
    overtake one that does not (backfill), but each waiting request is overtaken at most `starvation_limit` times
    before nothing of its pool passes it. `acquire_together` asks for several runs' leases granted at one moment
    (the two sides of a side-by-side recheck), waiting and overtaken as one request. The executor turns
    `lease.devices` into CUDA_VISIBLE_DEVICES. All methods run on one event loop; `release` may also be called
    from another thread.
    """

    def __init__(self, inventory: GpuInventory, cpu_slots: int | None = None, max_utilisation: int = 10,
                 starvation_limit: int = 8, poll_interval: float = POLL_SECONDS, max_runs_per_gpu: int = 8):
        self.inventory = inventory
        default_cores = inventory.cores if isinstance(inventory, CpuInventory) else (os.cpu_count() or 1)
        self.cpu_slots = max(1, cpu_slots or default_cores)
        self.max_utilisation = max_utilisation
        self.max_runs_per_gpu = max(1, max_runs_per_gpu)
        self.starvation_limit = starvation_limit
        self.poll_interval = poll_interval
        self._ids = itertools.count(1)
        self._leases: dict[int, Lease] = {}
        self._held: dict[int, Holdings] = {}  # device index -> what our leases hold on it
        self._cpu_charged: dict[int, int] = {}  # lease id -> CPU slots it takes
        self._queue: list[_Request] = []
        self._read_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- public API ----------------------------------------------------------------------------------------------

    async def acquire(self, holder: str, gpus: float = 0, min_free_mb: int = 0, cpu_threads: int = 1,
                      gpu_memory_mb: int | None = None) -> Lease:
        """Wait until the request fits, in fair order, and return its lease; release it with `release`."""
        request = self._request(holder, GpuAsk.of(gpus, gpu_memory_mb, min_free_mb), cpu_threads, asyncio.Event())
        return (await self._wait(request))[0]

    async def acquire_together(self, holders: list[str], gpus: float = 0, min_free_mb: int = 0,
                               cpu_threads: int = 1, gpu_memory_mb: int | None = None) -> list[Lease] | None:
        """A lease for each holder, all granted at one moment, so their runs start together: one request in the
        fair order, overtaken (at most `starvation_limit` times) while fewer are free. None where the machine
        cannot hold them all at once even when ours are done (the caller runs them one by one)."""
        if self.capacity(gpus, cpu_threads, min_free_mb, gpu_memory_mb) < len(holders):
            return None
        request = self._request(" + ".join(holders), GpuAsk.of(gpus, gpu_memory_mb, min_free_mb), cpu_threads,
                                asyncio.Event(), tuple(holders))
        return await self._wait(request)

    async def _wait(self, request: _Request) -> list[Lease]:
        self._loop = asyncio.get_running_loop()
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
        return list(request.leases)

    def try_acquire(self, holder: str, gpus: float = 0, min_free_mb: int = 0, cpu_threads: int = 1,
                    gpu_memory_mb: int | None = None) -> Lease | None:
        """The lease if the request fits now without jumping the fair order, else None."""
        request = self._request(holder, GpuAsk.of(gpus, gpu_memory_mb, min_free_mb), cpu_threads, None)
        self._queue.append(request)
        self._dispatch()
        if request.lease is None:
            self._queue.remove(request)
        return request.lease

    @asynccontextmanager
    async def lease(self, holder: str, gpus: float = 0, min_free_mb: int = 0, cpu_threads: int = 1,
                    gpu_memory_mb: int | None = None) -> AsyncIterator[Lease]:
        """`async with scheduler.lease(...) as lease:` releases on exit, on an exception and on cancellation."""
        held = await self.acquire(holder, gpus, min_free_mb, cpu_threads, gpu_memory_mb)
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

    def capacity(self, gpus: float = 0, cpu_threads: int = 1, min_free_mb: int = 0,
                 gpu_memory_mb: int | None = None) -> int:
        """How many runs of this size can be in flight at once now (0 if other people's jobs fill every GPU)."""
        ask = GpuAsk.of(gpus, gpu_memory_mb, min_free_mb)
        if not ask.wants_gpu:
            return self.cpu_slots // self._cpu_cost(cpu_threads)
        return self._placement().capacity(ask)

    def snapshot(self) -> dict:
        """Devices (memory, utilisation, the leases on each), CPU slots in use, leases and the queue, JSON-ready."""
        placement = self._placement()
        devices = []
        for device in placement.devices:
            held = placement.held(device.index)
            on_it = [self._leases[i] for i in ([held.whole] if held.whole is not None else list(held.shares))]
            devices.append({
                **asdict(device), "holder": ", ".join(lease.holder for lease in on_it) or None,
                "lease": held.whole, "shared": bool(held.shares), "reserved_mb": held.reserved_mb,
                "headroom_mb": placement.headroom_mb(device),
                "leases": [{"id": lease.id, "holder": lease.holder, "gpu_memory_mb": lease.gpu_memory_mb or None}
                           for lease in on_it],
                "available": held.empty and placement.whole_fits(device, GpuAsk(whole=1))})
        now = time.time()
        return {
            "inventory": self.inventory.kind,
            "max_utilisation": self.max_utilisation,
            "max_runs_per_gpu": self.max_runs_per_gpu,
            "devices": devices,
            "cpu": {"slots": self.cpu_slots, "used": sum(self._cpu_charged.values())},
            "leases": [asdict(lease) for lease in self._leases.values()],
            "waiting": [{"holder": r.holder, "runs": len(r.holders), "gpus": r.ask.whole or r.ask.share,
                         "gpu_memory_mb": r.ask.memory_mb,
                         "min_free_mb": r.ask.min_free_mb, "cpu_threads": r.cpu_threads,
                         "waited_seconds": round(now - r.queued_at, 3), "overtaken": r.overtaken}
                        for r in self._queue],
        }

    # ---- placement -----------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Walk the queue in arrival order and place every request that fits and may pass those it overtakes."""
        if not self._queue:
            return
        placement: Placement | None = None  # one reading per pass; our leases update it as they are placed
        free_cpu = self.cpu_slots - sum(self._cpu_charged.values())
        skipped: dict[str, list[_Request]] = {"gpu": [], "cpu": []}  # per pool: waiting requests this pass skipped
        for request in list(self._queue):
            if request.pool == "gpu":
                if placement is None:
                    placement = self._placement()
                fits = self._fits(request, placement)
            else:
                fits = self._cpu_cost(request.cpu_threads) * len(request.holders) <= free_cpu
            passed = skipped[request.pool]
            if not fits:
                passed.append(request)
                continue
            if any(r.overtaken >= self.starvation_limit for r in passed):
                continue  # a request has waited through enough overtakes: its pool drains for it
            for r in passed:
                r.overtaken += 1
            if request.pool == "cpu":
                free_cpu -= self._cpu_cost(request.cpu_threads) * len(request.holders)
            self._place(request, placement)

    def _fits(self, request: _Request, placement: Placement) -> bool:
        """Whether every run of a GPU request fits now: each placed in turn on what the ones before it took, then
        all taken back."""
        if len(request.holders) == 1:
            return bool(placement.choose(request.ask))
        taken = []
        for holder in request.holders:
            devices = placement.choose(request.ask)
            if not devices:
                break
            taken.append(self._hold(request, holder, devices, placement))
        for lease in taken:
            self._drop(lease)
        return len(taken) == len(request.holders)

    def _place(self, request: _Request, placement: Placement | None) -> None:
        at = time.time()  # one moment for all of a request's leases
        for holder in request.holders:
            devices = placement.choose(request.ask) if request.pool == "gpu" and placement is not None else []
            request.leases.append(self._hold(request, holder, devices, placement, at))
        self._queue.remove(request)
        if request.placed is not None:
            request.placed.set()

    def _hold(self, request: _Request, holder: str, devices: list[Device], placement: Placement | None,
              at: float = 0.0) -> Lease:
        ask = request.ask
        reserve = ask.reserve_mb(devices[0].total_mb) if ask.shared else 0
        lease = Lease(id=next(self._ids), holder=holder, devices=[d.index for d in devices],
                      cpu_threads=request.cpu_threads, started_at=at or time.time(), gpu_memory_mb=reserve)
        self._leases[lease.id] = lease
        for device in devices:
            held = self._held.setdefault(device.index, Holdings())
            # the invariants, checked where they are made
            if ask.shared:
                assert held.whole is None and placement is not None, f"device {device.index} is leased whole"
                assert placement.headroom_mb(device) >= reserve, f"device {device.index} would go over its memory"
                held.shares[lease.id] = reserve
            else:
                assert held.empty, f"device {device.index} is already leased"
                held.whole = lease.id
        if not devices:
            self._cpu_charged[lease.id] = self._cpu_cost(request.cpu_threads)
        return lease

    def _release(self, lease: Lease) -> None:
        if self._drop(lease):
            self._dispatch()

    def _drop(self, lease: Lease) -> bool:
        """Take the lease's devices and slots back without placing anyone; False if it was not held."""
        if self._leases.pop(lease.id, None) is None:
            return False
        for index in lease.devices:
            held = self._held.get(index)
            if held is None:
                continue
            if held.whole == lease.id:
                held.whole = None
            held.shares.pop(lease.id, None)
            if held.empty:
                del self._held[index]
        self._cpu_charged.pop(lease.id, None)
        return True

    def _withdraw(self, request: _Request) -> None:
        if request in self._queue:
            self._queue.remove(request)
        for lease in request.leases:
            self._drop(lease)
        self._dispatch()  # what it held is free again, and a starving request that leaves unblocks those behind it

    # ---- helpers -------------------------------------------------------------------------------------------------

    def _request(self, holder: str, ask: GpuAsk, cpu_threads: int, placed: asyncio.Event | None,
                 holders: tuple[str, ...] = ()) -> _Request:
        if cpu_threads < 1:
            raise BadInput(f"resources.cpu_threads: must be 1 or more, got {cpu_threads}")
        if ask.wants_gpu:
            ask.check(self._read(), self.inventory.kind)
        return _Request(holder=holder, ask=ask, cpu_threads=cpu_threads, placed=placed, holders=holders)

    def _read(self) -> list[Device]:
        self._read_at = time.monotonic()
        return self.inventory.devices()

    def _placement(self) -> Placement:
        return Placement(self._read(), self._held, self.max_utilisation, self.max_runs_per_gpu)

    def _cpu_cost(self, cpu_threads: int) -> int:
        # a run wider than the machine still runs, alone
        return min(cpu_threads, self.cpu_slots)


def make_scheduler(config: playbook.Scheduler, resources: playbook.Resources) -> Scheduler:
    """The scheduler a playbook asks for; `config.slots` fixes how many CPU runs of `resources` go at once."""
    inventory = make_inventory(config.inventory, config.simulate_gpus, config.simulated_memory_mb,
                               cpu_threads=resources.cpu_threads)
    cpu_slots = config.slots * resources.cpu_threads if config.slots else None
    return Scheduler(inventory, cpu_slots=cpu_slots, max_utilisation=config.max_utilisation,
                     starvation_limit=config.starvation_limit, max_runs_per_gpu=config.max_runs_per_gpu)


def check_resources(config: playbook.Scheduler, resources: playbook.Resources, here: bool = True) -> None:
    """BadInput, naming the field, if the playbook's inventory could never hold one run of `resources`.

    With `here` False (validating a playbook meant for another machine), a machine without GPUs passes.
    """
    ask = GpuAsk.of(resources.gpus, resources.gpu_memory_mb, resources.min_free_memory_mb)
    if not ask.wants_gpu:
        return
    try:
        inventory = make_inventory(config.inventory, config.simulate_gpus, config.simulated_memory_mb,
                                   cpu_threads=resources.cpu_threads)
    except InventoryUnavailable as exc:
        if not here:
            return
        raise BadInput(f"scheduler.inventory: {config.inventory} is not readable here: {exc}") from None
    try:
        devices = inventory.devices()
        if devices or here:
            ask.check(devices, inventory.kind)
    finally:
        if hasattr(inventory, "close"):
            inventory.close()
