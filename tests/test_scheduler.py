"""The scheduler against simulated GPUs, real CPU slots and this machine's (missing) NVML."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from types import SimpleNamespace

import pytest

from hive.errors import BadInput
from hive.playbook import Resources
from hive.playbook import Scheduler as SchedulerConfig
from hive.scheduler import (
    CpuInventory,
    GpuProcess,
    InventoryUnavailable,
    NvmlInventory,
    Scheduler,
    SimulatedInventory,
    make_inventory,
    make_scheduler,
)


def _nvml_works() -> bool:
    try:
        NvmlInventory()
    except InventoryUnavailable:
        return False
    return True


async def _until(predicate, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_random_concurrent_workload_never_shares_a_device():
    rng = random.Random(7)
    scheduler = Scheduler(SimulatedInventory(4), poll_interval=0.02)
    in_use: dict[int, str] = {}
    placed = []

    async def run(name: str, gpus: int, seconds: float) -> None:
        async with scheduler.lease(name, gpus=gpus) as lease:
            assert len(lease.devices) == gpus == len(set(lease.devices))
            assert not set(lease.devices) & set(in_use), f"{name} got {lease.devices} while {in_use} are leased"
            in_use.update({d: name for d in lease.devices})
            placed.append(name)
            try:
                await asyncio.sleep(seconds)
            finally:  # a run cancelled while it runs gives its devices back (the lease's exit does): so does the record
                for d in lease.devices:
                    del in_use[d]

    async def main() -> None:
        tasks = []
        for i in range(300):
            tasks.append(asyncio.create_task(run(f"r{i}", rng.choice([1, 1, 1, 2, 2, 4]), rng.uniform(0, 0.004))))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.uniform(0, 0.002))
        # cancel a few, waiting or running: the invariant must hold through withdrawals too
        for task in rng.sample(tasks, 30):
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)

    asyncio.run(main())
    assert len(placed) >= 270
    snapshot = scheduler.snapshot()
    assert snapshot["leases"] == [] and snapshot["waiting"] == [] and not in_use


def test_cpu_slots_are_never_oversubscribed():
    rng = random.Random(3)
    scheduler = Scheduler(CpuInventory(cores=4))
    threads_in_flight = [0]

    async def run(threads: int) -> None:
        async with scheduler.lease("cpu", cpu_threads=threads):
            threads_in_flight[0] += threads
            assert threads_in_flight[0] <= 4
            await asyncio.sleep(rng.uniform(0, 0.003))
            threads_in_flight[0] -= threads

    async def main() -> None:
        await asyncio.gather(*(run(rng.choice([1, 2, 3])) for _ in range(150)))

    asyncio.run(main())
    assert scheduler.snapshot()["cpu"] == {"slots": 4, "used": 0}


def test_device_busy_with_a_foreign_job_is_skipped_until_it_is_freed():
    inventory = SimulatedInventory(4, external={0: (30000, 95)})  # someone else's training job on GPU 0
    scheduler = Scheduler(inventory, poll_interval=0.02)

    async def main() -> None:
        leases = [await scheduler.acquire(f"r{i}", gpus=1) for i in range(3)]
        assert sorted(d for lease in leases for d in lease.devices) == [1, 2, 3]
        assert scheduler.try_acquire("r3", gpus=1) is None
        waiter = asyncio.create_task(scheduler.acquire("r3", gpus=1))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        assert [d["available"] for d in scheduler.snapshot()["devices"]] == [False, False, False, False]
        inventory.set_external(0)  # their job ends; nobody tells us, the poll finds out
        lease = await asyncio.wait_for(waiter, 1)
        assert lease.devices == [0]

    asyncio.run(main())


def test_memory_used_by_a_foreign_job_counts_even_when_idle():
    inventory = SimulatedInventory(2, memory_mb=81920, external={0: (70000, 0)})
    scheduler = Scheduler(inventory)
    small = scheduler.try_acquire("small", gpus=1, min_free_mb=10000)
    assert small is not None and small.devices == [0]  # 11920 MB free is enough
    scheduler.release(small)
    big = scheduler.try_acquire("big", gpus=1, min_free_mb=20000)
    assert big is not None and big.devices == [1]
    assert scheduler.try_acquire("big2", gpus=1, min_free_mb=20000) is None
    with pytest.raises(BadInput, match="min_free_memory_mb"):
        scheduler.try_acquire("huge", gpus=1, min_free_mb=100000)
    with pytest.raises(BadInput, match="resources.gpus"):
        scheduler.try_acquire("many", gpus=3)


def test_lease_is_released_on_exception_and_on_cancellation():
    scheduler = Scheduler(SimulatedInventory(1), poll_interval=0.02)

    async def main() -> None:
        with pytest.raises(RuntimeError):
            async with scheduler.lease("crash", gpus=1):
                raise RuntimeError("training diverged")
        assert scheduler.snapshot()["leases"] == []

        started = asyncio.Event()

        async def long_run() -> None:
            async with scheduler.lease("killed", gpus=1):
                started.set()
                await asyncio.sleep(60)

        running = asyncio.create_task(long_run())
        await started.wait()
        waiting = asyncio.create_task(scheduler.acquire("waiter", gpus=1))
        await _until(lambda: len(scheduler.snapshot()["waiting"]) == 1)
        waiting.cancel()  # cancelled while waiting: leaves the queue, takes nothing
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert scheduler.snapshot()["waiting"] == []
        running.cancel()  # cancelled while running: the device comes back
        with pytest.raises(asyncio.CancelledError):
            await running
        lease = scheduler.try_acquire("next", gpus=1)
        assert lease is not None and lease.devices == [0]
        scheduler.release(lease)
        scheduler.release(lease)  # idempotent
        assert scheduler.snapshot()["leases"] == []

    asyncio.run(main())


def test_release_from_an_executor_thread_wakes_the_waiter():
    scheduler = Scheduler(SimulatedInventory(1), poll_interval=10)

    async def main() -> None:
        first = await scheduler.acquire("first", gpus=1)
        waiter = asyncio.create_task(scheduler.acquire("second", gpus=1))
        await asyncio.sleep(0.01)
        await asyncio.to_thread(scheduler.release, first)
        assert (await asyncio.wait_for(waiter, 1)).devices == [0]

    asyncio.run(main())


@pytest.mark.parametrize("limit", [0, 1, 4])
def test_a_large_request_is_overtaken_at_most_starvation_limit_times(limit):
    scheduler = Scheduler(SimulatedInventory(4), starvation_limit=limit, poll_interval=10)

    async def main() -> None:
        smalls = [await scheduler.acquire(f"s{i}", gpus=1) for i in range(3)]
        big = asyncio.create_task(scheduler.acquire("big", gpus=4))
        await _until(lambda: len(scheduler.snapshot()["waiting"]) == 1)
        overtakes = 0
        # a stream of 1-GPU runs that would keep the 4-GPU run waiting forever without the bound
        for i in range(20):
            if not scheduler.snapshot()["waiting"]:
                break  # the 4-GPU run is placed
            for _ in range(2):
                lease = scheduler.try_acquire(f"stream{i}", gpus=1)
                if lease is not None:
                    smalls.append(lease)
                    overtakes += 1
            scheduler.release(smalls.pop(0))
            await asyncio.sleep(0)
        assert overtakes == limit
        assert sorted((await big).devices) == [0, 1, 2, 3]

    asyncio.run(main())


def test_runs_asked_together_start_at_one_moment_and_are_overtaken_at_most_starvation_limit_times():
    """A side-by-side pair on 2 CPU slots while a candidate holds one: single runs take a slot that frees (the
    pair cannot use it alone) twice, then the free slot waits for the other and both leases come at once."""
    scheduler = Scheduler(CpuInventory(cores=2), starvation_limit=2, poll_interval=10)

    async def main() -> None:
        held = scheduler.try_acquire("candidate", cpu_threads=1)
        pair = asyncio.create_task(scheduler.acquire_together(["exp-5/seed-1000501", "exp-3/seed-1000501"]))
        await _until(lambda: len(scheduler.snapshot()["waiting"]) == 1)
        assert scheduler.snapshot()["waiting"][0]["runs"] == 2
        overtakers = []
        for i in range(4):
            lease = scheduler.try_acquire(f"single-{i}", cpu_threads=1)
            if lease is None:
                break
            overtakers.append(lease)
            scheduler.release(held)  # the old run ends; the pair still finds one slot free, not two
            held = overtakers[-1]
            await asyncio.sleep(0)
        assert len(overtakers) == 2 and not pair.done(), "overtaken exactly starvation_limit times"
        assert scheduler.snapshot()["cpu"]["used"] == 1  # a slot stays free for the pair
        scheduler.release(held)
        leases = await pair
        assert [lease.holder for lease in leases] == ["exp-5/seed-1000501", "exp-3/seed-1000501"]
        assert leases[0].started_at == leases[1].started_at and scheduler.snapshot()["cpu"]["used"] == 2
        for lease in leases:
            scheduler.release(lease)
        assert scheduler.snapshot()["cpu"]["used"] == 0

    asyncio.run(main())


def test_runs_asked_together_share_a_gpu_where_it_holds_both_and_are_refused_where_it_never_can():
    scheduler = Scheduler(SimulatedInventory(1, memory_mb=80000), poll_interval=10)

    async def main() -> None:
        first, second = await scheduler.acquire_together(["a", "b"], gpu_memory_mb=30000)
        assert first.devices == second.devices == [0] and first.gpu_memory_mb == second.gpu_memory_mb == 30000
        assert scheduler.try_acquire("third", gpu_memory_mb=30000) is None, "two shares fill the 80 GB GPU"
        waiting = asyncio.create_task(scheduler.acquire_together(["c", "d"], gpu_memory_mb=30000))
        await _until(lambda: len(scheduler.snapshot()["waiting"]) == 1)
        scheduler.release(first)
        await asyncio.sleep(0.01)
        assert not waiting.done(), "one share free is not two"
        waiting.cancel()  # cancelled while waiting: leaves the queue, takes nothing
        with pytest.raises(asyncio.CancelledError):
            await waiting
        scheduler.release(second)
        assert scheduler.snapshot()["leases"] == [] and scheduler.snapshot()["waiting"] == []
        # 50 GB each: the GPU never holds two at once, so the caller is told to run them one by one
        assert await scheduler.acquire_together(["e", "f"], gpu_memory_mb=50000) is None
        assert await Scheduler(CpuInventory(cores=1)).acquire_together(["g", "h"]) is None

    asyncio.run(main())


def test_backfill_fills_gpus_a_waiting_large_request_cannot_use_yet():
    scheduler = Scheduler(SimulatedInventory(4), starvation_limit=4)
    held = [scheduler.try_acquire(f"s{i}", gpus=1) for i in range(3)]

    async def main() -> None:
        big = asyncio.create_task(scheduler.acquire("big", gpus=2))
        await asyncio.sleep(0)
        small = scheduler.try_acquire("small", gpus=1)
        assert small is not None and small.devices == [3]  # the free GPU works instead of idling
        assert scheduler.snapshot()["waiting"][0]["overtaken"] == 1
        for lease in held[:2]:
            scheduler.release(lease)
        assert sorted((await big).devices) == [0, 1]

    asyncio.run(main())


def test_capacity_counts_devices_that_are_ours_or_free():
    inventory = SimulatedInventory(4)
    scheduler = Scheduler(inventory)
    assert [scheduler.capacity(gpus=k) for k in (1, 2, 3, 4)] == [4, 2, 1, 1]
    inventory.set_external(0, used_mb=1000, utilisation=80)
    ours = scheduler.try_acquire("ours", gpus=1)
    assert ours.devices == [1]
    assert scheduler.capacity(gpus=1) == 3 and scheduler.capacity(gpus=2) == 1
    inventory.set_external(2, used_mb=81000)
    assert scheduler.capacity(gpus=1) == 3  # GPU 2 has 920 MB free: fine unless a run asks for more
    assert scheduler.capacity(gpus=1, min_free_mb=2000) == 2

    cpu = Scheduler(CpuInventory(cores=8))
    assert [cpu.capacity(cpu_threads=t) for t in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_make_scheduler_from_playbook_config():
    cpu = make_scheduler(SchedulerConfig(inventory="cpu", slots=3), Resources(cpu_threads=2))
    assert cpu.capacity(cpu_threads=2) == 3
    leases = [cpu.try_acquire(f"r{i}", cpu_threads=2) for i in range(4)]
    assert [lease is not None for lease in leases] == [True, True, True, False]

    sim = make_scheduler(SchedulerConfig(simulate_gpus=8, simulated_memory_mb=24000, max_utilisation=50),
                         Resources(gpus=2))
    snapshot = sim.snapshot()
    assert snapshot["inventory"] == "simulated" and len(snapshot["devices"]) == 8
    assert snapshot["devices"][0]["total_mb"] == 24000 and sim.max_utilisation == 50
    assert sim.capacity(gpus=2) == 4
    json.dumps(snapshot)

    with pytest.raises(BadInput, match="scheduler.inventory"):
        make_inventory("tpu")
    with pytest.raises(BadInput, match="simulate_gpus"):
        make_inventory("simulated", simulate_gpus=0)


@pytest.mark.skipif(_nvml_works(), reason="this machine has NVML and a GPU")
def test_without_nvml_auto_falls_back_to_cpu_slots():
    with pytest.raises(InventoryUnavailable, match="NVML unavailable"):
        make_inventory("nvml")
    inventory = make_inventory("auto", cpu_threads=1)
    assert isinstance(inventory, CpuInventory) and inventory.devices() == []
    scheduler = Scheduler(inventory)
    assert scheduler.capacity(cpu_threads=1) == inventory.slots == inventory.cores >= 1
    with pytest.raises(BadInput, match="resources.gpus"):
        scheduler.try_acquire("gpu-run", gpus=1)
    assert make_scheduler(SchedulerConfig(), Resources()).snapshot()["inventory"] == "cpu"


def test_nvml_readings_become_devices(monkeypatch):
    # the one fake in this file: NVML cannot run without a GPU
    class NVMLError(Exception):
        pass

    gpus = [("NVIDIA H100", 80 * 2**30, 60 * 2**30, 3, [4242]), ("NVIDIA H100", 80 * 2**30, 2**30, 99, [777, 778])]

    def utilisation(i):
        if i == 1:
            raise NVMLError("not supported")
        return SimpleNamespace(gpu=gpus[i][3])

    fake = SimpleNamespace(
        NVMLError=NVMLError, nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(gpus), nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda i: gpus[i][0].encode(),
        nvmlDeviceGetMemoryInfo=lambda i: SimpleNamespace(total=gpus[i][1], free=gpus[i][2]),
        nvmlDeviceGetUtilizationRates=utilisation,
        nvmlDeviceGetComputeRunningProcesses=lambda i: [SimpleNamespace(pid=p, usedGpuMemory=2**29) for p in gpus[i][4]])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    devices = NvmlInventory().devices()
    assert [(d.name, d.total_mb, d.free_mb, d.utilisation, d.processes) for d in devices] == [
        ("NVIDIA H100", 81920, 61440, 3, [GpuProcess(4242, 512)]),
        ("NVIDIA H100", 81920, 1024, 0, [GpuProcess(777, 512), GpuProcess(778, 512)])]
    assert make_inventory("auto").kind == "nvml"
    scheduler = Scheduler(NvmlInventory())
    assert scheduler.try_acquire("r", gpus=1, min_free_mb=8000).devices == [0]
    assert scheduler.try_acquire("r", gpus=1, min_free_mb=8000) is None
