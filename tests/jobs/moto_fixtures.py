"""The S3 server of the many-machine tests: moto's server mode on 127.0.0.1, spoken to over real HTTP.

:class:`MotoServer`: ``python -m moto.server`` on a free loopback port, health-checked over HTTP; s3fs (through
botocore) finds it by ``AWS_ENDPOINT_URL``, botocore's own variable, so the code under test has no test hook. The
environment also switches off what could reach further: the EC2 instance metadata lookup, the user's AWS config
files and any HTTP proxy for loopback.

Measured on the 2-core machine: moto starts in ~1.5 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.jobs.cluster_fixtures import PROXY_VARIABLES, free_port


def _no_proxy_opener():
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


class MotoServer:
    """moto's S3 server on 127.0.0.1 (a subprocess of its own session, stopped by its process id)."""

    def __init__(self, log: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = s3_env(self.endpoint)
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> MotoServer:
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES} | self.env
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with _no_proxy_opener().open(f"{self.endpoint}/moto-api/", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def reset(self) -> None:
        """Empty every bucket (moto's own reset call)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        _no_proxy_opener().open(request, timeout=10).close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """A moto S3 server for the session, its environment set in this process (s3fs reads it)."""
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    pytest.importorskip("s3fs", reason="s3fs is in the test extra")
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    with pytest.MonkeyPatch.context() as patch:
        for name in PROXY_VARIABLES:
            patch.delenv(name, raising=False)
        for name, value in server.env.items():
            patch.setenv(name, value)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(moto_s3):
    """A fresh, empty bucket: its name (moto is reset first)."""
    import boto3

    moto_s3.reset()
    boto3.client("s3").create_bucket(Bucket="lipsync-test")
    return "lipsync-test"
