"""The sandbox: what a run, a scorer or a coder command may see and touch, enforced with bubblewrap (`bwrap`).

Inside a sandbox the whole filesystem is read-only; the policy's `writable` folders are the only places a command
can change. Folders where secrets or other processes' state live are replaced by empty, private ones: `/tmp`,
`/var/tmp`, `/run` (service sockets), `/home`, `/root`, `$HOME` and whatever the policy hides (a campaign folder: its
store, repo, logs and other runs). The command gets its own PID namespace and `/proc` (it sees no other process,
and every process it starts dies with it, `setsid` or not), no network unless the policy allows it, no
capabilities even when Hive runs as root, and only the GPU device nodes the policy names.

Usage, e.g. for a coder's shell command in its worktree:

    box = Sandbox("auto")                      # bwrap when it works on this machine, else none (box.warning says why)
    argv = box.argv(["/bin/sh", "-c", cmd], Policy(writable=(tree,), read_only=(data,)), cwd=tree)
    subprocess.run(argv, cwd=tree, env=scrubbed_environment(), ...)

`Policy.network=True` allows the network; `Policy(devices=gpu_nodes([0, 1]))` shows the nodes of GPUs 0 and 1
(and `gpu_nodes` says what `CUDA_VISIBLE_DEVICES` must be inside). In mode `none`, `argv` returns the command
unchanged: nothing is enforced, and callers keep their own best-effort checks.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hive.errors import BadInput

MODES = ("auto", "bwrap", "none")
# folders replaced by empty private ones in every sandbox: temp files, service sockets, home folders
PRIVATE = ("/tmp", "/var/tmp", "/run", "/home", "/root")
GPU_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


@dataclass(frozen=True)
class Policy:
    """What one sandboxed command may touch; every path must exist on the host."""

    writable: tuple[Path, ...] = ()  # bound read-write at the same path (a run's own folder)
    read_only: tuple[Path, ...] = ()  # bound read-only at the same path, even inside a hidden folder
    hidden: tuple[Path, ...] = ()  # replaced by an empty folder (a campaign folder)
    network: bool = False
    devices: tuple[Path, ...] = ()  # device nodes to show at /dev/<name> (see gpu_nodes)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def probe() -> str | None:
    """Why bubblewrap cannot sandbox a command on this machine, or None when it can (tried once per process)."""
    exe = bwrap_path()
    if exe is None:
        return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        proc = subprocess.run(wrap(["/bin/true"], Policy(), Path("/")), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not start: {exc}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout or f"exit {proc.returncode}").strip().splitlines()
        return f"bwrap cannot create its namespaces here: {lines[-1] if lines else proc.returncode}"
    return None


def resolve(mode: str) -> str:
    """The mode a playbook's `sandbox` setting means on this machine: 'bwrap' or 'none'."""
    if mode not in MODES:
        raise BadInput(f"executor.sandbox: {mode!r} is not one of {', '.join(MODES)}")
    if mode == "none":
        return "none"
    problem = probe()
    if problem is None:
        return "bwrap"
    if mode == "bwrap":
        raise BadInput(f"executor.sandbox: 'bwrap' cannot run on this machine: {problem} "
                       f"(use sandbox: auto or none)")
    return "none"


def fallback_warning(mode: str) -> str | None:
    """One line saying that runs are not sandboxed and why, when `mode` falls back to none; else None."""
    if mode == "auto" and probe() is not None:
        return f"runs are NOT sandboxed: {probe()}; executor.sandbox: auto fell back to none"
    return None


class Sandbox:
    """A sandbox mode resolved once ('auto' becomes 'bwrap' or 'none'); `argv` wraps a command in it."""

    def __init__(self, mode: str = "auto"):
        self.requested = mode
        self.mode = resolve(mode)
        self.warning = fallback_warning(mode)

    @property
    def enforced(self) -> bool:
        return self.mode == "bwrap"

    def argv(self, argv: list[str], policy: Policy, cwd: Path, info_fd: int | None = None) -> list[str]:
        """`argv` as it runs under `policy` from `cwd` (unchanged in mode none)."""
        if self.mode == "none":
            return list(argv)
        return wrap(argv, policy, cwd, info_fd)


def wrap(argv: list[str], policy: Policy, cwd: Path, info_fd: int | None = None) -> list[str]:
    """The bwrap command line that runs `argv` from `cwd` under `policy`.

    `info_fd` (an inherited pipe) receives bwrap's JSON with the host pid of the sandbox's init process.
    """
    out = [bwrap_path() or "bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try"]
    if not policy.network:
        out.append("--unshare-net")
    if os.geteuid() == 0:
        out += ["--cap-drop", "ALL"]  # root keeps every capability in bwrap otherwise (and could remount)
    if info_fd is not None:
        out += ["--info-fd", str(info_fd)]
    out += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for node in policy.devices:
        inside = f"/dev/{node.parent.name}/{node.name}" if node.parent.name == "nvidia-caps" else f"/dev/{node.name}"
        out += ["--dev-bind", str(node), inside]
    out += _mounts(policy)
    home = _private_home()
    out += ["--setenv", "HOME", home, "--setenv", "TMPDIR", "/tmp", "--chdir", str(Path(cwd).resolve()), "--", *argv]
    return out


def _private_home() -> str:
    """The HOME a sandboxed command gets: the host's home path, which is an empty private folder inside."""
    home = os.environ.get("HOME") or ""
    return home if home not in ("", "/") and Path(home).is_absolute() and Path(home).is_dir() else "/tmp"


def _mounts(policy: Policy) -> list[str]:
    hidden = [Path(p) for p in PRIVATE] + [Path(p) for p in (os.environ.get("HOME"), str(Path.home())) if p]
    hidden += list(policy.hidden)
    hidden = [p.resolve() for p in hidden if p.is_absolute() and p.is_dir()]
    hidden = [p for p in hidden if p != Path("/")]
    read_only = [Path(p).resolve() for p in policy.read_only]
    # the interpreter Hive runs (and a run's `python` is) stays readable wherever it lives
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parents[1])}:
        path = Path(prefix).resolve()
        if any(path.is_relative_to(h) for h in hidden):
            read_only.append(path)
    writable = [Path(p).resolve() for p in policy.writable]
    exposed = read_only + writable
    # a folder inside one already hidden needs no mount of its own, unless something inside or around it is shown
    home = Path(_private_home()).resolve()
    hidden = [p for p in hidden if not any(p != h and p.is_relative_to(h) for h in hidden) or p == home
              or any(q.is_relative_to(p) or p.is_relative_to(q) for q in exposed)]
    for path in exposed:
        if not path.exists():
            raise FileNotFoundError(f"sandbox: {path} does not exist")
    # a mount covers what was mounted beneath it before: shallow paths first, so deeper ones stay visible
    order = {"--tmpfs": 0, "--ro-bind": 1, "--bind": 2}
    mounts = sorted({*(("--tmpfs", p) for p in hidden), *(("--ro-bind", p) for p in read_only),
                     *(("--bind", p) for p in writable)}, key=lambda m: (len(m[1].parts), order[m[0]], str(m[1])))
    out: list[str] = []
    for flag, path in mounts:
        out += [flag, str(path)] if flag == "--tmpfs" else [flag, str(path), str(path)]
    # what the policy hides is an empty folder nothing can be written to (the private ones stay writable scratch)
    private = {Path(p) for p in PRIVATE} | {home}
    for path in hidden:
        if path not in private:
            out += ["--remount-ro", str(path)]
    return out


def gpu_nodes(indices: list[int], dev: Path = Path("/dev")) -> tuple[tuple[Path, ...], str]:
    """The device nodes a run on GPUs `indices` (NVML's numbering) needs, and its CUDA_VISIBLE_DEVICES inside.

    Only the leased GPUs' /dev/nvidiaN nodes are shown, so CUDA sees no other GPU; they are named by UUID
    because CUDA numbers the GPUs it can open from 0.
    """
    if not indices:
        return (), ""
    minors, uuids = _nvml_identities(indices)
    nodes = [dev / name for name in GPU_CONTROL_NODES if (dev / name).exists()]
    caps = dev / "nvidia-caps"
    if caps.is_dir():
        nodes += sorted(caps.iterdir())
    nodes += [dev / f"nvidia{minor}" for minor in minors if (dev / f"nvidia{minor}").exists()]
    visible = ",".join(uuids) if all(uuids) else ",".join(str(i) for i in range(len(indices)))
    return tuple(nodes), visible


def _nvml_identities(indices: list[int]) -> tuple[list[int], list[str]]:
    """Each GPU's device minor number and UUID from NVML; index and no UUID when NVML cannot say."""
    try:
        import pynvml  # optional here: without NVML a GPU's minor number is its index

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001  (no NVML library or driver: fall back to minor == index)
        return list(indices), [""] * len(indices)
    minors, uuids = [], []
    for index in indices:
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            minors.append(int(pynvml.nvmlDeviceGetMinorNumber(handle)))
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuids.append(uuid.decode() if isinstance(uuid, bytes) else str(uuid))
        except Exception:  # noqa: BLE001
            minors.append(index)
            uuids.append("")
    return minors, uuids
