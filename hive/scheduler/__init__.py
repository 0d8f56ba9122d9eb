"""GPU inventory (NVML | simulated | CPU slots) and the scheduler that leases it, whole or packed by memory."""

from hive.scheduler.inventory import (
    CpuInventory,
    Device,
    GpuInventory,
    GpuProcess,
    InventoryUnavailable,
    NvmlInventory,
    SimulatedInventory,
    make_inventory,
)
from hive.scheduler.placement import GpuAsk
from hive.scheduler.scheduler import Lease, Scheduler, check_resources, make_scheduler

__all__ = [
    "CpuInventory", "Device", "GpuAsk", "GpuInventory", "GpuProcess", "InventoryUnavailable", "Lease",
    "NvmlInventory", "Scheduler", "SimulatedInventory", "check_resources", "make_inventory", "make_scheduler",
]
