"""``ray start`` that keeps a 127.0.0.1 node address: ``python tests/jobs/ray_loopback.py start ...``.

Ray on Linux rewrites ``--node-ip-address=127.0.0.1`` and ``--address=127.0.0.1:P`` to the machine's routable
address (``ray._private.services.resolve_ip_for_localhost``: it asks the routing table for the way to 8.8.8.8), so a
"loopback" cluster would talk over the machine's external interface. Ray has a switch that stops the rewrite,
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, but the same switch makes ``ray start --address`` refuse to add a node,
so the second node cannot use it; this wrapper turns only the rewrite off and then runs Ray's own CLI. A driver
needs no wrapper: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in its environment keeps ``ray.init('127.0.0.1:P')`` as is.
"""

import sys

import ray._private.services as services


def _keep(host: str) -> str:
    if not host:
        raise ValueError(f"Malformed host: {host}")
    return host


services.resolve_ip_for_localhost = _keep

if __name__ == "__main__":
    from ray.scripts.scripts import main

    sys.argv[0] = "ray"
    sys.exit(main())
