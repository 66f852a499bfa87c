"""Many-machine test fixtures, everything on 127.0.0.1: a two-node Ray cluster (S3: moto_fixtures.py).

- :class:`RayCluster`: a head and a second node, each its own ``ray start`` with its own temporary folder and a
  custom resource naming it (``lipsync_node_head``, ``lipsync_node_two``), started through ray_loopback.py so
  that both keep the address 127.0.0.1 (Ray would rewrite it to the routable one); a driver connects with
  :meth:`RayCluster.driver_env` (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps ``ray.init('127.0.0.1:P')`` as is).
  Nodes are told apart and killed by their processes: those whose command line names the node's folder, with all
  their descendants. Teardown kills exactly those (not ``ray stop --force``, which kills every Ray process of
  the user on the machine, other sessions' included) and checks that none is left. The cluster has a token of its
  own (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), so no other session's ~/.ray/auth_token decides for it, and
  health checks fast enough (``RAY_health_check_*``) that a killed node is declared dead in ~1.5 s.
  ``node_env`` adds variables for one node only (its own package cache); ``hidden_on_two`` covers folders with an
  empty tmpfs for the second node only: it starts in a private mount namespace (``unshare --mount``, root only,
  see :func:`can_hide_folders`), which its raylet and workers inherit, so the driver and the head see a folder that
  the second node does not (a package on the driver's disk).
- :func:`non_loopback_sockets`: every socket of the given processes that listens or connects off loopback.

Measured on the 2-core machine: the head starts in ~5 s, the second node in ~3 s.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil
import pytest

LOOPBACK_WRAPPER = Path(__file__).with_name("ray_loopback.py")
HEAD_RESOURCE = "lipsync_node_head"
TWO_RESOURCE = "lipsync_node_two"
# A killed node is declared dead after period x threshold: ~1.5 s instead of Ray's default ~15 s.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_loopback(address: str) -> bool:
    if address.startswith("::ffff:"):
        address = address[7:]
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def non_loopback_sockets(processes) -> list[str]:
    """'pid name local -> remote' for each inet socket of ``processes`` that is not loopback at both ends
    (a listener on 0.0.0.0 or :: counts: it can be reached from outside)."""
    found = []
    for proc in processes:
        try:
            connections = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in connections:
            ends = [c.laddr] + ([c.raddr] if c.raddr else [])
            if not all(is_loopback(end.ip) for end in ends):
                found.append(f"{proc.pid} {name} {c.laddr} -> {c.raddr or '-'} {c.status}")
    return found


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class RayCluster:
    """A head and a second node of Ray on 127.0.0.1, one CPU each (see the module's docstring)."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        cpus: int = 1,
        node_env: dict[str, dict[str, str]] | None = None,
        hidden_on_two: list[Path] | tuple[Path, ...] = (),
    ):
        # Short folders: Ray's Unix socket paths live under them and must stay below 108 characters.
        self.base = Path(tempfile.mkdtemp(prefix="lr-", dir="/tmp"))
        self.folders = {"head": self.base / "h", "two": self.base / "2"}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus = cpus
        base_env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and not k.startswith("RAY_")}
        # Ray 2.60 turns token authentication on by itself when ~/.ray/auth_token exists (another session's
        # ray.init() writes one), and a node started without it cannot join: a token of this cluster's own, explicit.
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.env = base_env | FAST_HEALTH_CHECKS | auth | {"RAY_USAGE_STATS_ENABLED": "0"} | (env or {})
        self.node_env = node_env or {}
        self.hidden_on_two = [str(folder) for folder in hidden_on_two]
        self.shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
        self.shm_seen: set[str] = set()
        self.shm_of_killed: dict[str, set[str]] = {}  # node -> what its processes held when it was killed
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def _ray_start(self, node: str, *args: str) -> None:
        folder = self.folders[node]
        folder.mkdir()
        resource = HEAD_RESOURCE if node == "head" else TWO_RESOURCE
        command = [
            sys.executable,
            str(LOOPBACK_WRAPPER),
            "start",
            *args,
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.cpus}",
            "--num-gpus=0",
            f"--temp-dir={folder}",
            f"--resources={json.dumps({resource: 1})}",
            "--object-store-memory=80000000",
            "--disable-usage-stats",
        ]
        if node == "two" and self.hidden_on_two:
            command = [*HIDING_PREFIX, *self.hidden_on_two, "--", *command]
        env = self.env | self.node_env.get(node, {})
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"ray start ({node}) failed: {(done.stdout + done.stderr)[-3000:]}")

    def start(self) -> RayCluster:
        try:
            self._ray_start("head", "--head", f"--port={self.port}", "--include-dashboard=false")
            self._ray_start("two", f"--address={self.address}")
        except BaseException:
            self.stop()
            raise
        return self.sample()

    def sample(self) -> RayCluster:
        """Start noting the /dev/shm entries of the cluster's processes (start() does; call it after starting the
        nodes some other way)."""
        self._sampler = threading.Thread(target=self._sample_shm, name="shm-sampler", daemon=True)
        self._sampler.start()
        return self

    def _sample_shm(self) -> None:
        """Note every /dev/shm entry that a cluster process or a descendant of this process (a driver) maps or
        holds open, 4 times a second: the machine is shared, so only these can be called ours at teardown."""
        while not self._sampling.wait(0.25):
            try:
                procs = self.processes() + psutil.Process().children(recursive=True)
            except psutil.Error:
                continue
            self.shm_seen |= shm_paths(procs)

    def driver_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a driver process (``ray.init(address='127.0.0.1:P')`` or ``--ray 127.0.0.1:P``)."""
        return self.env | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_ADDRESS": self.address} | (extra or {})

    def processes(self, node: str | None = None) -> list[psutil.Process]:
        """Every process of one node (or both): command line names its folder, or a descendant of one that does."""
        folders = [str(f) for name, f in self.folders.items() if node in (None, name)]
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if any(folder in part for part in cmdline for folder in folders):
                found[proc.pid] = proc
                try:
                    found.update((child.pid, child) for child in proc.children(recursive=True))
                except psutil.NoSuchProcess:
                    pass
        return list(found.values())

    def node_id(self, node: str) -> str:
        """The Ray node id (hex) of one node, as its raylet was given it."""
        for proc in self.processes(node):
            try:
                if proc.name() == "raylet":
                    return next(a.split("=", 1)[1] for a in proc.cmdline() if a.startswith("--node_id="))
            except (psutil.NoSuchProcess, StopIteration):
                continue
        raise RuntimeError(f"no raylet found for node {node}")

    def kill(self, node: str) -> int:
        """SIGKILL every process of a node (its raylet, agents and workers); how many there were."""
        procs = self.processes(node)
        self.shm_of_killed[node] = shm_paths(procs)
        self.shm_seen |= self.shm_of_killed[node]
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        return len(procs)

    def shm_left(self) -> list[str]:
        """The /dev/shm entries that processes of this cluster (or drivers) used and that are still there."""
        return sorted(
            path for path in self.shm_seen if os.path.basename(path) not in self.shm_before and os.path.exists(path)
        )

    def stop(self) -> list[str]:
        """Kill both nodes (the second first), remove the folders; the processes and /dev/shm entries left (the
        entries are removed once listed)."""
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join()
        for node in ("two", "head"):
            self.kill(node)
        left = [f"process {p.pid} {p.name()}" for p in self.processes() if p.is_running()]
        for path in self.shm_left():  # reported, then removed: they are this cluster's, and the machine is shared
            left.append(path)
            with contextlib.suppress(OSError):
                os.unlink(path)
        shutil.rmtree(self.base, ignore_errors=True)
        return left


# sh -c SCRIPT sh FOLDER... -- COMMAND...: an empty tmpfs over each folder, then the command (in the namespace).
HIDING_PREFIX = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'while [ "$1" != -- ]; do mount -t tmpfs -o size=1m none "$1" || exit 1; shift; done; shift; exec "$@"',
    "sh",
]


def can_hide_folders() -> bool:
    """Whether this machine lets a process cover a folder in a mount namespace of its own (root and unshare)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = [*HIDING_PREFIX, folder, "--", "true"]
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def shm_paths(processes) -> set[str]:
    """The /dev/shm paths that ``processes`` map (shared memory, POSIX semaphores) or hold open."""
    found = set()
    for proc in processes:
        try:
            with open(f"/proc/{proc.pid}/maps") as maps:
                found.update(line.split(None, 5)[5].strip() for line in maps if "/dev/shm/" in line)
            for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
                if target.startswith("/dev/shm/"):
                    found.add(target)
        except OSError:
            continue
    return {path.removesuffix(" (deleted)") for path in found if not path.endswith(" (deleted)")}


@pytest.fixture(scope="module")
def ray_cluster(moto_s3):
    """A two-node Ray cluster for a test module, its workers given the moto server's environment; torn down
    with a check that nothing is left."""
    pytest.importorskip("ray", reason="ray is in the test extra")
    cluster = RayCluster(env=moto_s3.env).start()
    try:
        yield cluster
    finally:
        left = cluster.stop()
        assert not left, f"left behind by the cluster: {left}"
