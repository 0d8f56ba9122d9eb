"""Several small runs share one GPU by memory: never over it, never past the cap, whole-GPU runs still alone."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections import defaultdict

import pytest

from hive.driver import preflight
from hive.errors import BadInput
from hive.playbook import Resources, load_playbook
from hive.playbook import Scheduler as SchedulerConfig
from hive.scheduler import Scheduler, SimulatedInventory, check_resources, make_scheduler
from hive.store import Experiment, Run
from tests.conftest import PLAYBOOKS

H100_80GB_MB = 81559  # what NVML reports as total memory for an 80 GB H100: 5 x 16 GB do not fit
GB16 = 16384


async def _until(predicate, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture
def child_pids():
    """Real child processes to stand for our runs on the GPU: NVML lists a run's pid, and it descends from us."""
    procs: list[subprocess.Popen] = []

    def spawn() -> int:
        procs.append(subprocess.Popen(["sleep", "60"]))
        return procs[-1].pid

    yield spawn
    for proc in procs:
        proc.kill()
        proc.wait()


def test_one_80gb_gpu_runs_four_16gb_runs_at_once_and_never_a_fifth(child_pids):
    inventory = SimulatedInventory(1, memory_mb=H100_80GB_MB)
    scheduler = Scheduler(inventory, poll_interval=0.01)
    running: dict[str, int] = {}
    peak = [0]

    async def run(name: str, seconds: float) -> None:
        async with scheduler.lease(name, gpu_memory_mb=GB16) as lease:
            assert lease.devices == [0] and lease.gpu_memory_mb == GB16
            assert len(running) < 4, f"{name} placed beside {sorted(running)}"
            pid = child_pids()
            running[name] = pid
            peak[0] = max(peak[0], len(running))
            inventory.set_process(0, pid, GB16)  # the run allocates its memory; NVML shows it as used
            assert inventory.devices()[0].free_mb >= 0
            await asyncio.sleep(seconds)
            inventory.set_process(0, pid, None)
            del running[name]

    async def main() -> None:
        rng = random.Random(5)
        tasks = [asyncio.create_task(run(f"r{i}", rng.uniform(0.01, 0.04))) for i in range(12)]
        await _until(lambda: len(running) == 4)
        # four are in, each using its 16 GB: the fifth waits, though 4 x 16 GB leaves 15 GB free
        assert inventory.devices()[0].free_mb == H100_80GB_MB - 4 * GB16
        assert scheduler.try_acquire("fifth", gpu_memory_mb=GB16) is None
        assert len(scheduler.snapshot()["waiting"]) == 8
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert peak[0] == 4
    assert scheduler.snapshot()["leases"] == [] and scheduler.snapshot()["devices"][0]["reserved_mb"] == 0


def test_our_runs_memory_is_counted_once_and_a_stranger_s_in_full(child_pids):
    inventory = SimulatedInventory(1, memory_mb=H100_80GB_MB)
    scheduler = Scheduler(inventory)
    leases = [scheduler.try_acquire(f"r{i}", gpu_memory_mb=GB16) for i in range(3)]
    assert all(lease is not None for lease in leases)
    for _ in leases:  # our three runs have allocated their reservations: the reading shows 48 GB used
        inventory.set_process(0, child_pids(), GB16)
    device = scheduler.snapshot()["devices"][0]
    assert device["reserved_mb"] == 3 * GB16 and device["headroom_mb"] == H100_80GB_MB - 3 * GB16
    fourth = scheduler.try_acquire("r3", gpu_memory_mb=GB16)
    assert fourth is not None, "our own runs' memory was counted twice (once reserved, once as used)"
    scheduler.release(fourth)
    # the same memory used by someone else's process (pid 1 is not ours) leaves no room beside our three shares
    inventory.set_process(0, 1, GB16)
    assert scheduler.snapshot()["devices"][0]["headroom_mb"] == H100_80GB_MB - 3 * GB16 - GB16
    assert scheduler.try_acquire("r3", gpu_memory_mb=GB16) is None


def test_a_run_asking_more_memory_than_is_free_waits_until_it_is():
    inventory = SimulatedInventory(1, memory_mb=81920, external={0: (70000, 0)})  # a stranger's job holds 70 GB
    scheduler = Scheduler(inventory, poll_interval=0.02)

    async def main() -> None:
        small = await scheduler.acquire("small", gpu_memory_mb=8000)  # 11920 MB free: this one fits
        waiter = asyncio.create_task(scheduler.acquire("big", gpu_memory_mb=16000))
        await asyncio.sleep(0.1)
        assert not waiter.done() and scheduler.snapshot()["waiting"][0]["gpu_memory_mb"] == 16000
        scheduler.release(small)  # 11920 MB free now: still not enough for 16000
        await asyncio.sleep(0.1)
        assert not waiter.done()
        inventory.set_external(0, used_mb=40000)  # their job shrinks; nobody tells us, the poll finds out
        lease = await asyncio.wait_for(waiter, 1)
        assert lease.devices == [0] and lease.gpu_memory_mb == 16000

    asyncio.run(main())


def test_a_run_asking_more_than_our_shares_leave_free_waits_for_one_of_them_to_end():
    scheduler = Scheduler(SimulatedInventory(1, memory_mb=H100_80GB_MB), poll_interval=0.01)

    async def main() -> None:
        four = [await scheduler.acquire(f"r{i}", gpu_memory_mb=GB16) for i in range(4)]
        assert scheduler.snapshot()["devices"][0]["headroom_mb"] == H100_80GB_MB - 4 * GB16  # 16023 MB left
        big = asyncio.create_task(scheduler.acquire("big", gpu_memory_mb=20000))
        await asyncio.sleep(0.1)  # ten polls: still no room for 20000 MB
        assert not big.done() and [w["holder"] for w in scheduler.snapshot()["waiting"]] == ["big"]
        scheduler.release(four[0])
        lease = await asyncio.wait_for(big, 1)
        assert lease.devices == [0] and lease.gpu_memory_mb == 20000
        assert scheduler.snapshot()["devices"][0]["reserved_mb"] == 3 * GB16 + 20000 <= H100_80GB_MB

    asyncio.run(main())


def test_max_runs_per_gpu_caps_a_device_with_memory_to_spare():
    scheduler = Scheduler(SimulatedInventory(2), max_runs_per_gpu=3)
    leases = [scheduler.try_acquire(f"r{i}", gpu_memory_mb=1000) for i in range(7)]
    placed = [lease for lease in leases if lease is not None]
    assert len(placed) == 6 and leases[6] is None
    per_device = defaultdict(int)
    for lease in placed:
        per_device[lease.devices[0]] += 1
    assert dict(per_device) == {0: 3, 1: 3}
    assert [lease.devices[0] for lease in placed] == [0, 1, 0, 1, 0, 1]  # spread before they stack
    assert scheduler.capacity(gpu_memory_mb=1000) == 6


def test_shares_spread_over_gpus_before_they_stack_then_go_where_most_memory_is_left():
    inventory = SimulatedInventory(3, memory_mb=81920, external={2: (30000, 0)})  # a stranger holds 30 GB of GPU 2
    scheduler = Scheduler(inventory)
    first = [scheduler.try_acquire(f"r{i}", gpu_memory_mb=20000).devices[0] for i in range(3)]
    assert first == [0, 1, 2]  # one run on each GPU while any GPU has none of ours
    # then the fewest of ours, the most headroom: GPU 2 has 31920 MB of room, GPUs 0 and 1 have 61920
    more = [scheduler.try_acquire(f"r{i}", gpu_memory_mb=20000).devices[0] for i in range(3, 6)]
    assert more == [0, 1, 2]
    assert scheduler.try_acquire("r6", gpu_memory_mb=20000).devices == [0]  # GPU 2 is full: 11920 MB left
    assert scheduler.snapshot()["devices"][2]["headroom_mb"] == 81920 - 30000 - 2 * 20000


def test_a_fraction_of_a_gpu_is_that_share_of_its_memory():
    scheduler = Scheduler(SimulatedInventory(1, memory_mb=H100_80GB_MB))
    leases = [scheduler.try_acquire(f"q{i}", gpus=0.25) for i in range(5)]
    assert [lease is not None for lease in leases] == [True, True, True, True, False]
    assert leases[0].gpu_memory_mb == H100_80GB_MB // 4  # rounded down, so four quarters always fit
    assert scheduler.capacity(gpus=0.25) == 4 and scheduler.capacity(gpus=0.5) == 2


def test_whole_and_shared_leases_mix_without_sharing_a_whole_gpu():
    scheduler = Scheduler(SimulatedInventory(3, memory_mb=81920), poll_interval=0.01)

    async def main() -> None:
        share = await scheduler.acquire("share", gpu_memory_mb=20000)
        assert share.devices == [0]
        whole = [await scheduler.acquire(f"whole{i}", gpus=1) for i in range(2)]
        assert sorted(d for lease in whole for d in lease.devices) == [1, 2]  # not the shared GPU 0
        more = [await scheduler.acquire(f"share{i}", gpu_memory_mb=20000) for i in range(3)]
        assert all(lease.devices == [0] for lease in more)  # shares go beside shares, never on a whole lease
        assert scheduler.try_acquire("share-x", gpu_memory_mb=20000) is None  # GPU 0 is full, 1 and 2 are whole
        third_whole = asyncio.create_task(scheduler.acquire("whole2", gpus=1))
        scheduler.release(whole[0])
        third = await asyncio.wait_for(third_whole, 1)
        assert third.devices == whole[0].devices
        scheduler.release(third)
        two = asyncio.create_task(scheduler.acquire("two", gpus=2))  # GPU 0 (shared) and the one just freed
        for lease in [share, *more]:
            await asyncio.sleep(0.01)
            assert not two.done(), "a whole-GPU run was placed on a device shares still use"
            scheduler.release(lease)
        assert sorted((await asyncio.wait_for(two, 1)).devices) == sorted([0, *third.devices])

    asyncio.run(main())


def test_random_mixed_workload_never_goes_over_memory_or_shares_a_whole_gpu():
    rng = random.Random(11)
    inventory = SimulatedInventory(2, memory_mb=40000)
    scheduler = Scheduler(inventory, poll_interval=0.01, max_runs_per_gpu=4)
    reserved: dict[int, int] = defaultdict(int)
    whole: set[int] = set()
    shares: dict[int, int] = defaultdict(int)

    async def run(name: str, seconds: float) -> None:
        kind = rng.choice(["whole", "mb", "mb", "fraction"])
        kwargs = {"whole": {"gpus": 1}, "mb": {"gpu_memory_mb": rng.choice([4000, 9000, 15000])},
                  "fraction": {"gpus": rng.choice([0.1, 0.25, 0.5])}}[kind]
        async with scheduler.lease(name, **kwargs) as lease:
            for d in lease.devices:
                assert d not in whole, f"{name} placed on a whole-leased GPU {d}"
            if kind == "whole":
                assert not any(shares[d] for d in lease.devices)
                whole.update(lease.devices)
            else:
                d = lease.devices[0]
                reserved[d] += lease.gpu_memory_mb
                shares[d] += 1
                assert reserved[d] <= 40000 and shares[d] <= 4
            await asyncio.sleep(seconds)
            if kind == "whole":
                whole.difference_update(lease.devices)
            else:
                reserved[d] -= lease.gpu_memory_mb
                shares[d] -= 1

    async def main() -> None:
        await asyncio.gather(*(run(f"r{i}", rng.uniform(0, 0.01)) for i in range(120)))

    asyncio.run(main())
    assert scheduler.snapshot()["leases"] == [] and not whole and not any(shares.values())


def test_packed_runs_on_a_gpu_busy_with_our_own_work_still_pack(child_pids):
    inventory = SimulatedInventory(1)
    scheduler = Scheduler(inventory, max_utilisation=10)
    first = scheduler.try_acquire("first", gpu_memory_mb=8000)
    inventory.set_process(0, child_pids(), 8000)
    inventory.set_external(0, utilisation=90)  # our run keeps the GPU busy
    assert scheduler.try_acquire("second", gpu_memory_mb=8000) is not None
    inventory.set_process(0, 1, 2000)  # a stranger's process appears: the utilisation may be theirs
    assert scheduler.try_acquire("third", gpu_memory_mb=8000) is None
    scheduler.release(first)


@pytest.mark.parametrize("resources, message", [
    ({"gpus": 1.5}, "run.resources.gpus: 1.5 is neither a whole number of GPUs nor a share of one"),
    ({"gpus": -1}, "run.resources.gpus: Input should be greater than or equal to 0"),
    ({"gpus": 2, "gpu_memory_mb": 8000}, "run.resources: gpu_memory_mb asks for a share of one GPU, but gpus: 2"),
    ({"gpus": 0.5, "gpu_memory_mb": 0}, "run.resources.gpu_memory_mb: Input should be greater than or equal to 1"),
    ({"gpu_memory_mb": 90000}, "resources.gpu_memory_mb: 90000 MB is more than any GPU here has (largest: 81920 MB)"),
])
def test_bad_gpu_resources_are_one_line(resources, message):
    overrides = ["scheduler.simulate_gpus=1", *(f"run.resources.{key}={value}" for key, value in resources.items())]
    with pytest.raises(BadInput) as caught:
        preflight(load_playbook(PLAYBOOKS / "quickstart.yaml", overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_validate_names_a_gpu_share_larger_than_any_device(hive):
    proc = hive("playbook", "validate", str(PLAYBOOKS / "quickstart.yaml"), "-c", "scheduler.simulate_gpus=1",
                "-c", "scheduler.simulated_memory_mb=24000", "-c", "run.resources.gpu_memory_mb=30000")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == ("error: resources.gpu_memory_mb: 30000 MB is more than any GPU here has "
                                   "(largest: 24000 MB)")


def test_check_resources_and_make_scheduler_follow_the_playbook():
    config = SchedulerConfig(simulate_gpus=1, simulated_memory_mb=24000, max_runs_per_gpu=2)
    check_resources(config, Resources(gpu_memory_mb=24000))
    with pytest.raises(BadInput, match="gpu_memory_mb: 24001 MB"):
        check_resources(config, Resources(gpu_memory_mb=24001))
    with pytest.raises(BadInput, match="resources.gpus: a run asks for 0.5 of a GPU but the cpu inventory has 0"):
        check_resources(SchedulerConfig(inventory="cpu"), Resources(gpus=0.5))
    cpu_only = load_playbook(PLAYBOOKS / "quickstart.yaml", ["scheduler.inventory=cpu", "run.resources.gpus=0.5"])
    preflight(cpu_only, here=False)  # validating a GPU playbook on a machine without one
    with pytest.raises(BadInput, match="resources.gpus: a run asks for 0.5 of a GPU"):
        preflight(cpu_only)  # starting it there
    scheduler = make_scheduler(config, Resources(gpus=0.25))
    assert scheduler.max_runs_per_gpu == 2 and scheduler.capacity(gpus=0.25) == 2
    assert Resources(gpus=1.0).gpus == 1 and isinstance(Resources(gpus=1.0).gpus, int)
    assert Resources(gpus=0.25).shared and Resources(gpu_memory_mb=1).shared and not Resources(gpus=1).shared


SLEEPY = "run.command=python -c 'import time; time.sleep(0.4)' && python train.py"


def test_a_campaign_packs_runs_on_one_simulated_gpu_and_hive_gpus_shows_the_shares(hive, tmp_path):
    from hive.campaign import open_store

    proc = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "3",
                "--simulate-gpus", "1", "-c", "run.resources.gpu_memory_mb=20000",
                "-c", SLEEPY, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = open_store(tmp_path / "workspaces", "quickstart")
    camp = store.campaign("quickstart")
    exps = store.experiments(camp.id)
    runs = [r for rs in store.runs_for([e.id for e in exps]).values() for r in rs if r.devices]
    assert runs and all(r.devices == "0" for r in runs)
    spans = sorted((r.started_at, r.finished_at) for r in runs)
    overlapping = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert 2 <= overlapping <= 4, f"runs did not share the one GPU as packed runs: {spans}"  # 81920 MB: 4 x 20000

    # two seeds recorded as running on GPU 0: `hive gpus --json` lists both, each with its share
    store.update(Experiment, exps[-1].id, status="running")
    held = [r for r in runs if r.experiment_id in (exps[-1].id, exps[-2].id)][:2]
    for run in held:
        store.update(Run, run.id, status="running")
    store.update(Experiment, exps[-2].id, status="running")
    data = json.loads(hive("gpus", "quickstart", "--json").stdout)
    device = data["devices"][0]
    assert device["shared"] and device["reserved_mb"] == 2 * 20000 and len(device["leases"]) == 2
    assert all(lease["gpu_memory_mb"] == 20000 for lease in device["leases"])
    assert "sharing it, 40000 MB reserved" in hive("gpus", "quickstart").stdout


def test_the_param_golf_gpu_profile_packs_runs_on_one_gpu():
    pb = load_playbook(PLAYBOOKS / "param_golf.yaml", ["profile=gpu"])
    assert pb.run.resources.shared and pb.run.resources.gpu_memory_mb == 4000
    preflight(pb, here=False)  # validates on this CPU-only machine; starting it needs a GPU
    packed = load_playbook(PLAYBOOKS / "param_golf.yaml", ["profile=gpu", "scheduler.simulate_gpus=1",
                                                           "scheduler.simulated_memory_mb=143771"])
    preflight(packed)
    assert make_scheduler(packed.scheduler, packed.run.resources).capacity(gpu_memory_mb=4000) == 8  # the cap
