"""GPU inventory (NVML | simulated | CPU slots) and the scheduler that leases it; never oversubscribes."""

from hive.scheduler.inventory import (
    CpuInventory,
    Device,
    GpuInventory,
    InventoryUnavailable,
    NvmlInventory,
    SimulatedInventory,
    make_inventory,
)
from hive.scheduler.scheduler import Lease, Scheduler, make_scheduler

__all__ = [
    "CpuInventory", "Device", "GpuInventory", "InventoryUnavailable", "Lease", "NvmlInventory", "Scheduler",
    "SimulatedInventory", "make_inventory", "make_scheduler",
]
