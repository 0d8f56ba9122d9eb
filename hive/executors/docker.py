"""The docker executor: each run in a fresh, labelled, offline container with the worktree mounted read-write."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

try:  # a dependency, but a broken install must be one line at `hive start`, not a traceback on import
    import docker
    import requests
except ImportError:
    docker = requests = None

from hive.errors import HiveError
from hive.executors.base import RunRequest, RunResult, stop_reason
from hive.logs import append_log, open_log

CAMPAIGN_LABEL = "hive.campaign"
RUN_LABEL = "hive.run"
LOG_LABEL = "hive.log"  # the run's log file: tells apart two campaigns of one name in different workspaces
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# variables whose host value means nothing inside a container; dropped when they still hold the host's value
HOST_ONLY = ("PATH", "HOME", "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH", "TMPDIR", "SHELL", "CUDA_HOME", "CUDA_PATH")
STATS_EVERY_SECONDS = 1.0


def connect(timeout: float = 60):  # noqa: ANN201  (a docker.DockerClient)
    """A client for the daemon at DOCKER_HOST (or the default socket); HiveError in one line if it does not answer."""
    if docker is None:
        raise HiveError("executor.kind: 'docker' needs the docker SDK: pip install docker")
    try:
        client = docker.from_env(timeout=timeout, max_pool_size=64)
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise HiveError(f"docker daemon at {where} is unreachable: {_first_line(exc)}") from None
    return client


class DockerExecutor:
    """Runs each command as `sh -c` in a new container of the playbook's image; timeout or cancel kills and removes it.

    The run folder is mounted read-write at `config.workdir` and is the working directory; each `read_only` entry
    is mounted read-only at `/hive/<name>` and its host path is rewritten to that path in the command and the env.
    """

    name = "docker"
    confines = True  # a container sees only the folders mounted into it

    def __init__(self, config, campaign: str = "", client=None):  # noqa: ANN001  (playbook.DockerExecutor, DockerClient)
        self.config = config
        self.campaign = campaign
        self.client = client or connect()
        try:
            self.client.images.get(config.image)
        except docker.errors.ImageNotFound:
            raise HiveError(f"executor.image: image {config.image!r} is not on the docker daemon "
                            f"(docker pull or build it first)") from None
        except docker.errors.DockerException as exc:
            raise HiveError(f"docker: cannot inspect image {config.image!r}: {_first_line(exc)}") from None

    def run(self, request: RunRequest, cancel: threading.Event | None = None) -> RunResult:
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            container = self._start(request)
        except docker.errors.DockerException as exc:
            error = f"docker could not start the run: {_first_line(exc)}"
            append_log(request.log_path, f"\n[hive] {error}\n")
            return RunResult(exit_code=None, wall_seconds=time.monotonic() - started, error=error)
        try:
            follower = threading.Thread(target=_follow_logs, args=(container, request.log_path), daemon=True,
                                        name=f"logs {request.label}")
            follower.start()
            exit_code, peak_mb, timed_out, cancelled = self._wait(container, follower, started + request.timeout,
                                                                  cancel)
            wall = time.monotonic() - started
            follower.join(timeout=5)
            oom = exit_code is not None and _oom_killed(container)
        finally:
            _remove(container)
        error = stop_reason(request.timeout, timed_out, cancelled)
        if not error and exit_code is None:
            error = "the container vanished before it reported an exit code"
        elif not error and oom:
            error = "out of memory: the kernel killed the run at the container's memory limit"
        if error:
            append_log(request.log_path, f"\n[hive] {error}\n")
        return RunResult(exit_code=exit_code, wall_seconds=wall, peak_rss_mb=peak_mb, timed_out=timed_out,
                         cancelled=cancelled, error=error)

    def _start(self, request: RunRequest):  # noqa: ANN202
        cfg = self.config
        rewrites = {str(request.cwd): cfg.workdir}
        volumes = {str(request.cwd): {"bind": cfg.workdir, "mode": "rw"}}
        for name, host in request.read_only.items():
            if Path(host) == Path(request.cwd):
                continue  # the run folder is the working directory already
            rewrites[str(host)] = f"/hive/{name}"
            volumes[str(host)] = {"bind": f"/hive/{name}", "mode": "ro"}
        env = container_environment(request.env, rewrites)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(request.threads))
        device_requests = None
        if request.devices:
            # inside the container the leased GPUs are numbered from 0: no CUDA_VISIBLE_DEVICES of host indices
            device_requests = [docker.types.DeviceRequest(device_ids=[str(d) for d in request.devices],
                                                          capabilities=[["gpu"]])]
        # the executor's limit is the container's; else the run's own (an rlimit locally, a cgroup limit here)
        memory = cfg.memory or (f"{request.memory_mb}m" if request.memory_mb else None)
        return self.client.containers.run(
            cfg.image, ["/bin/sh", "-c", _rewrite(request.command, rewrites)], detach=True, working_dir=cfg.workdir,
            volumes=volumes, environment=env, network_mode=cfg.network, mem_limit=memory, memswap_limit=memory,
            device_requests=device_requests, user=cfg.user or f"{os.getuid()}:{os.getgid()}",
            labels={CAMPAIGN_LABEL: self.campaign, RUN_LABEL: request.label or str(request.log_path),
                    LOG_LABEL: str(request.log_path)},
            stdin_open=False, tty=False)

    def _wait(self, container, follower: threading.Thread, deadline: float,  # noqa: ANN001
              cancel: threading.Event | None) -> tuple[int | None, float | None, bool, bool]:
        """Wait for the container to exit (its log stream ends with it); kill it on timeout or cancel."""
        timed_out = cancelled = False
        peak_mb: float | None = None
        next_stats = time.monotonic() + STATS_EVERY_SECONDS / 2
        pause = 0.01
        while follower.is_alive():
            now = time.monotonic()
            if now >= deadline or (cancel is not None and cancel.is_set()):
                timed_out, cancelled = now >= deadline, now < deadline
                _kill(container)
                break
            if now >= next_stats:
                peak_mb = _max(peak_mb, _memory_mb(container))
                next_stats = now + STATS_EVERY_SECONDS
            follower.join(pause)
            pause = min(pause * 1.5, 0.1)
        try:
            # the log stream ends when the container stops, so this returns at once (unless the stream broke)
            status = container.wait(timeout=max(1.0, deadline - time.monotonic()))
            return status.get("StatusCode"), peak_mb, timed_out, cancelled
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            _kill(container)
            return None, peak_mb, True, cancelled
        except docker.errors.NotFound:
            return None, peak_mb, timed_out, cancelled


def container_environment(env: dict[str, str], rewrites: dict[str, str],
                          host: dict[str, str] | None = None) -> dict[str, str]:
    """A run's environment as the container should see it: host-only entries dropped, host paths rewritten."""
    host = dict(os.environ if host is None else host)
    out = {}
    for key, value in env.items():
        if key == "PATH" or (key in HOST_ONLY and value == host.get(key)):
            continue
        out[key] = _rewrite(value, rewrites)
    out["PATH"] = CONTAINER_PATH
    out.setdefault("HOME", "/tmp")
    return out


def reap_containers(campaign: str, logs: Path | None = None, client=None) -> int:  # noqa: ANN001
    """Remove the containers labelled with this campaign (leftovers of a Hive that crashed); return how many.

    With `logs`, only those whose run logs to a file under that folder: a campaign of the same name in another
    workspace keeps its containers.
    """
    client = client or connect()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": f"{CAMPAIGN_LABEL}={campaign}"}):
        log = Path(container.labels.get(LOG_LABEL, "/"))
        if logs is not None and not log.is_relative_to(logs):
            continue
        _remove(container)
        removed += 1
    return removed


def _rewrite(text: str, rewrites: dict[str, str]) -> str:
    # longest host path first, so a folder inside another one keeps its own mount
    for host in sorted(rewrites, key=len, reverse=True):
        text = text.replace(host, rewrites[host])
    return text


def _follow_logs(container, log_path: Path) -> None:  # noqa: ANN001
    """Copy the container's output into the run's log file as it comes, until the container stops."""
    with open_log(log_path, "ab") as log:
        try:
            log.writelines(container.logs(stream=True, follow=True, stdout=True, stderr=True))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.write(f"\n[hive] log stream ended: {_first_line(exc)}\n".encode())


def _memory_mb(container) -> float | None:  # noqa: ANN001
    """Peak (cgroup v1) or current (v2) memory of a running container from one stats sample, in MB."""
    try:
        stats = container.stats(stream=False, one_shot=True).get("memory_stats") or {}
    except Exception:  # noqa: BLE001  (stats are a nicety: any failure just means no number)
        return None
    used = stats.get("max_usage") or stats.get("usage")
    return used / 2**20 if used else None


def _oom_killed(container) -> bool:  # noqa: ANN001
    try:
        container.reload()
    except docker.errors.DockerException:
        return False
    return bool(container.attrs.get("State", {}).get("OOMKilled"))


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _kill(container) -> None:  # noqa: ANN001
    try:
        container.kill()
    except docker.errors.DockerException:
        pass  # already stopped or gone


def _remove(container) -> None:  # noqa: ANN001
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
