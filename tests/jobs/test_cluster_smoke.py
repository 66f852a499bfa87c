"""The two-node Ray cluster of cluster_fixtures.py: both nodes on 127.0.0.1, told apart, one killed, torn down."""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from tests.jobs.cluster_fixtures import HEAD_RESOURCE, TWO_RESOURCE, RayCluster, non_loopback_sockets

pytest.importorskip("ray", reason="ray is in the test extra")

DRIVER = """
import json, os, sys, time
import psutil, ray
ray.init(address=os.environ["RAY_ADDRESS"], _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="ERROR")

@ray.remote(num_cpus=0)
def where():
    return ray.get_runtime_context().get_node_id()

@ray.remote(num_cpus=0)
class Ring:  # holds a shared-memory block as a rendering actor's frame ring does
    def __init__(self):
        from multiprocessing import shared_memory
        self.shm = shared_memory.SharedMemory(create=True, size=4096)

    def name(self):
        return "/dev/shm/" + self.shm.name

out = {"nodes": {}}
if "--ring" in os.environ.get("DRIVER_FLAGS", ""):  # detached: it outlives this driver, until its node dies
    ring = Ring.options(resources={"lipsync_node_two": 0.01}, lifetime="detached", name="ring").remote()
    out["ring"] = ray.get(ring.name.remote(), timeout=60)
for resource in sys.argv[1:]:
    out[resource] = ray.get(where.options(resources={resource: 0.01}).remote(), timeout=60)
deadline = time.monotonic() + 30
while True:  # a killed node is declared dead within the fast health checks
    nodes = {n["NodeID"]: n for n in ray.nodes()}
    alive = {n: nodes[n]["Alive"] for n in nodes}
    waiting = "--wait-dead" in os.environ.get("DRIVER_FLAGS", "")
    if not waiting or not all(alive.values()) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
out["nodes"] = {n: {"alive": nodes[n]["Alive"], "ip": nodes[n]["NodeManagerAddress"]} for n in nodes}
out["driver_sockets"] = [f"{c.laddr} -> {c.raddr}" for c in psutil.Process().net_connections("inet")
                         if not all(e.ip.removeprefix("::ffff:").startswith("127.") or e.ip == "::1"
                                    for e in [c.laddr] + ([c.raddr] if c.raddr else []))]
print(json.dumps(out))
"""


def drive(cluster, *resources, flags=""):
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *resources],
        env=cluster.driver_env({"DRIVER_FLAGS": flags}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_nodes_on_loopback_one_killed_then_nothing_left():
    started = time.monotonic()
    cluster = RayCluster().start()
    try:
        start_s = time.monotonic() - started
        first = drive(cluster, HEAD_RESOURCE, TWO_RESOURCE, flags="--ring")
        assert first[HEAD_RESOURCE] != first[TWO_RESOURCE]
        assert {n["ip"] for n in first["nodes"].values()} == {"127.0.0.1"} and len(first["nodes"]) == 2
        assert first["driver_sockets"] == []
        assert non_loopback_sockets(cluster.processes()) == []
        two = cluster.processes("two")
        assert any(p.name() == "raylet" for p in two) and not set(two) & set(cluster.processes("head"))

        assert cluster.kill("two") >= 2
        assert not any(p.is_running() for p in two)
        after = drive(cluster, HEAD_RESOURCE, flags="--wait-dead")
        assert after[HEAD_RESOURCE] == first[HEAD_RESOURCE]
        assert after["nodes"][first[TWO_RESOURCE]]["alive"] is False
        assert after["nodes"][first[HEAD_RESOURCE]]["alive"] is True
        assert cluster.shm_left() == [first["ring"]]  # the killed node's ring is noticed, then removed here
        os.unlink(first["ring"])
    finally:
        left = cluster.stop()
    assert left == []
    assert not cluster.base.exists()
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(cluster.base) in " ".join(p.info["cmdline"] or [])]
    print(f"cluster start {start_s:.1f} s, whole test {time.monotonic() - started:.1f} s")
