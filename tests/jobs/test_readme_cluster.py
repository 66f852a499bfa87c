"""The commands of the README's "Many machines" section, run as written against a two-node cluster on 127.0.0.1
and an S3 server (moto) holding the section's example bucket.

Three things cannot be literal on a shared test machine, and are changed here only: ``ray start`` runs through
ray_loopback.py with a temporary folder of its own and ``--node-ip-address=127.0.0.1`` (plain Ray would use
/tmp/ray and the machine's routable address); ``HEAD_IP:6379`` becomes 127.0.0.1 and a free port; ``ray stop``
(which ends every Ray process of the user on the machine, other sessions' included) becomes the fixture's kill
of this cluster's processes. The manifest rows are the section's, less the https:// one (no test reaches off
this machine).
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobs.cluster_fixtures import LOOPBACK_WRAPPER, RayCluster, free_port
from tests.jobs.cluster_runs import bucket_keys, cut_clips, upload

pytest.importorskip("ray", reason="ray is in the test extra")
pytest.importorskip("moto.server", reason="moto[server] is in the test extra")

README = Path(__file__).resolve().parents[2] / "README.md"


def section_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Many machines") :]
    section = section[: section.index("\n## ", 3)]
    return re.findall(r"```\n(.*?)```", section, flags=re.S)


def test_the_many_machines_commands_run_as_written(moto_s3, tiny_package, tmp_path):
    import boto3

    commands_block, manifest_block = section_blocks()[:2]
    commands = [line.split("#")[0].strip() for line in commands_block.splitlines() if line.strip()]
    rows = [line for line in manifest_block.splitlines() if line.strip() and not line.startswith("https://")]
    assert [c.split()[:2] for c in commands] == [
        ["ray", "start"],
        ["ray", "start"],
        ["lipsync", "render-many"],
        ["lipsync", "render-many"],
        ["ray", "stop"],
    ], "the section's commands changed: update this test"
    moto_s3.reset()
    boto3.client("s3").create_bucket(Bucket="my-bucket")
    upload(tiny_package, "s3://my-bucket/packages/anna")
    for clip, row in zip(cut_clips(tmp_path / "clips", [1.5] * (len(rows) - 1)), rows[1:]):
        upload(clip, row.split(",")[0])
    (tmp_path / "jobs.csv").write_text("\n".join(rows) + "\n")

    cluster = RayCluster(env=moto_s3.env)
    head = f"127.0.0.1:{free_port()}"
    try:
        for node, command in zip(("head", "two"), commands[:2]):
            cluster.folders[node].mkdir()
            args = shlex.split(command.replace("HEAD_IP:6379", head).replace("6379", head.split(":")[1]))[2:]
            extra = [f"--temp-dir={cluster.folders[node]}", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
            extra += ["--include-dashboard=false"] if node == "head" else []
            done = subprocess.run(
                [sys.executable, str(LOOPBACK_WRAPPER), "start", *args, *extra],
                env=cluster.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-2000:]
        cluster.sample()
        env = cluster.driver_env(
            {"LIPSYNC_CACHE": str(tmp_path / "cache"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        )
        outputs = []
        for command in commands[2:4]:
            done = subprocess.run(
                command.replace("HEAD_IP:6379", head), shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            outputs.append(done)
        results = (tmp_path / "results.jsonl").read_text().splitlines()
        assert len(results) == len(rows) - 1 and all('"status": "ok"' in line for line in results)
        text = outputs[1].stdout + outputs[1].stderr
        assert text.count("skip ") == len(rows) - 1, text
        assert {key for key in bucket_keys("my-bucket") if key.startswith("renders/")} == {
            f"{row.split(',')[2].removeprefix('s3://my-bucket/')}{suffix}"
            for row in rows[1:]
            for suffix in ("", ".json")
        }
    finally:
        left = cluster.stop()  # in place of `ray stop`
    assert left == [], left
