"""What compute the machine has right now: GPUs read through NVML, simulated GPUs, or plain CPU slots."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Protocol

from hive.errors import BadInput, HiveError

InventoryKind = Literal["auto", "nvml", "simulated", "cpu"]
KINDS = ("auto", "nvml", "simulated", "cpu")


class InventoryUnavailable(HiveError):
    """The requested inventory cannot be read on this machine (no NVML library, no driver); fall back to another."""


@dataclass(frozen=True)
class GpuProcess:
    """A process NVML lists on a device, with the memory it uses (None where the driver does not say)."""

    pid: int
    used_mb: int | None = None


@dataclass
class Device:
    """One GPU as last read: memory in MB, utilisation in percent, and the processes using it (empty if unknown)."""

    index: int
    name: str
    total_mb: int
    free_mb: int
    utilisation: int
    processes: list[GpuProcess] = field(default_factory=list)


class GpuInventory(Protocol):
    """A fresh reading of the machine's GPUs on every call to `devices()`."""

    kind: str

    def devices(self) -> list[Device]: ...


class NvmlInventory:
    """Real GPUs through nvidia-ml-py; our own runs show up as used memory and as processes, as on any reading.

    Indices are NVML's (PCI bus order): set CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA_VISIBLE_DEVICES means the same GPUs.
    """

    kind = "nvml"

    def __init__(self) -> None:
        try:
            import pynvml  # only the NVML inventory loads it, and a machine without it falls back
        except ImportError as exc:
            raise InventoryUnavailable("NVML unavailable: nvidia-ml-py is not installed") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            # LibraryNotFound and DriverNotLoaded are the usual ones on a machine without a GPU
            raise InventoryUnavailable(f"NVML unavailable: {exc} ({type(exc).__name__})") from exc
        self._nvml = pynvml

    def devices(self) -> list[Device]:
        nvml = self._nvml
        found = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                utilisation = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:  # not supported on some devices (MIG, vGPU): memory decides alone
                utilisation = 0
            try:
                processes = [GpuProcess(p.pid, _mb(p.usedGpuMemory))
                             for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)]
            except nvml.NVMLError:
                processes = []
            found.append(Device(index=index, name=name.decode() if isinstance(name, bytes) else str(name),
                                total_mb=int(memory.total) // 2**20, free_mb=int(memory.free) // 2**20,
                                utilisation=utilisation, processes=processes))
        return found

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass


class SimulatedInventory:
    """N identical idle GPUs for tests, demos and benchmarks, read the way NVML reads real ones.

    `external` maps a device index to (used_mb, utilisation percent) of someone else's job, which NVML would show
    as used memory with no process we can see (another container's). `set_process` puts a process on a device, as
    NVML lists one: its memory is used memory too. Nothing else appears here: a campaign's runs on simulated GPUs
    allocate nothing, so what they hold is the scheduler's own accounting of its leases.
    """

    kind = "simulated"

    def __init__(self, n: int, memory_mb: int = 81920, external: dict[int, tuple[int, int]] | None = None):
        if n < 1:
            raise BadInput(f"scheduler.simulate_gpus: need at least 1 simulated GPU, got {n}")
        self.n = n
        self.memory_mb = memory_mb
        self.external: dict[int, tuple[int, int]] = {}
        self.processes: dict[int, dict[int, int]] = {}  # device index -> pid -> MB it uses
        for index, (used_mb, utilisation) in (external or {}).items():
            self.set_external(index, used_mb, utilisation)

    def set_external(self, index: int, used_mb: int = 0, utilisation: int = 0) -> None:
        """Put (or with zeros, take away) a foreign job on device `index`; the next reading shows it."""
        if not 0 <= index < self.n:
            raise ValueError(f"device {index} does not exist (0..{self.n - 1})")
        if used_mb or utilisation:
            self.external[index] = (min(used_mb, self.memory_mb), utilisation)
        else:
            self.external.pop(index, None)

    def set_process(self, index: int, pid: int, used_mb: int | None) -> None:
        """List process `pid` on device `index` using `used_mb` MB (None: take it off), as NVML would."""
        if not 0 <= index < self.n:
            raise ValueError(f"device {index} does not exist (0..{self.n - 1})")
        on_device = self.processes.setdefault(index, {})
        if used_mb is None:
            on_device.pop(pid, None)
        else:
            on_device[pid] = used_mb

    def devices(self) -> list[Device]:
        found = []
        for index in range(self.n):
            used_mb, utilisation = self.external.get(index, (0, 0))
            processes = [GpuProcess(pid, mb) for pid, mb in self.processes.get(index, {}).items()]
            used_mb += sum(p.used_mb for p in processes)
            found.append(Device(index=index, name=f"Simulated GPU {index}", total_mb=self.memory_mb,
                                free_mb=max(0, self.memory_mb - used_mb), utilisation=utilisation,
                                processes=processes))
        return found


class CpuInventory:
    """No GPUs: runs share the cores, `slots` = cores // threads per run (at least 1)."""

    kind = "cpu"

    def __init__(self, threads_per_run: int = 1, cores: int | None = None):
        self.cores = cores or os.cpu_count() or 1
        self.threads_per_run = max(1, threads_per_run)

    @property
    def slots(self) -> int:
        return max(1, self.cores // self.threads_per_run)

    def devices(self) -> list[Device]:
        return []


def _mb(used_bytes: int | None) -> int | None:
    # NVML reports None (NVML_VALUE_NOT_AVAILABLE) where it cannot attribute memory, e.g. without permission
    return None if used_bytes is None else int(used_bytes) // 2**20


def make_inventory(kind: str = "auto", simulate_gpus: int = 0, memory_mb: int = 81920,
                   cpu_threads: int = 1) -> GpuInventory:
    """Pick an inventory by name; "auto" is simulated if `simulate_gpus` > 0, else NVML with a GPU, else CPU slots."""
    if kind not in KINDS:
        raise BadInput(f"scheduler.inventory: unknown inventory {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "simulated" or (kind == "auto" and simulate_gpus > 0):
        return SimulatedInventory(simulate_gpus, memory_mb)
    if kind == "cpu":
        return CpuInventory(cpu_threads)
    if kind == "nvml":
        return NvmlInventory()
    try:
        nvml = NvmlInventory()
    except InventoryUnavailable:
        return CpuInventory(cpu_threads)
    if not nvml.devices():  # driver loaded but no GPU (e.g. all hidden)
        nvml.close()
        return CpuInventory(cpu_threads)
    return nvml
