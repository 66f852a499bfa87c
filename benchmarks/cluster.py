"""render-many here, on ``--ray local`` and on a two-node Ray cluster on this machine, side by side; then the time
a node killed mid-run costs.

    python benchmarks/cluster.py [--model PACKAGE | --tiny] [--jobs 8] [--seconds 4] [--s3] [--kill-at 0.3]

One manifest of ``--jobs`` jobs (clips of ``--seconds`` cut from examples/hello.wav, local paths) is rendered:

1. ``lipsync render-many M`` (one process, jobs one after another);
2. ``lipsync render-many M --ray local`` (a fresh single-node Ray instance);
3. ``--ray 127.0.0.1:P``: a head and a second node, each started with ``ray start --num-cpus=1`` on 127.0.0.1
   (tests/jobs/cluster_fixtures.py, so two CPU slots on the whole machine, as local has its cores);
4. the same cluster, started afresh, with the second node SIGKILLed once ``--kill-at`` of the jobs have finished
   and it has a job in flight (a partial output of one of its processes exists):
   the difference of wall times with 3 is the time the lost node cost (its job in flight redone, its slot gone);
5. with ``--s3``: 3 again with audio, package and outputs in an S3 bucket (moto's server on 127.0.0.1).

Each run is a fresh ``lipsync render-many ... --json`` process; wall time is from launch to exit (Ray start-up and
package loading included: that is what a user waits for); fps = frames of all jobs / wall time. Cluster start-up
is not timed. Needs the test extra (Ray, moto, s3fs) and is run from the repository root.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.jobs.cluster_fixtures import RayCluster  # noqa: E402
from tests.jobs.cluster_runs import (  # noqa: E402
    DriverRun,
    cut_clips,
    node_two_is_rendering,
    upload,
    watch,
    write_manifest,
)
from tests.jobs.moto_fixtures import MotoServer  # noqa: E402


def read_rows(manifest: Path) -> list[dict]:
    return list(csv.DictReader(manifest.open()))


def measure(name: str, manifest: Path, args: list[str], env: dict, cluster=None, kill_at: float | None = None):
    """One render-many run: a row of the table (jobs/s, fps, retries per run, per-node jobs)."""
    run = DriverRun(manifest, [*args, "--json"], env)
    seen = {"killed_at_s": None}
    if cluster is not None:
        jobs = len(read_rows(manifest))
        folders = {Path(r["output"]).parent for r in read_rows(manifest)}  # where local outputs are in progress
        ready = None if kill_at is None else node_two_is_rendering(*folders, after_results=math.ceil(kill_at * jobs))
        seen = watch(run, cluster, 1800, ready)
    code = run.wait(1800)
    results = run.results(strict=False)
    noise = len([line for line in run.stdout if line.strip()]) - len(results)
    if code != 0 or any(r["status"] != "ok" for r in results):
        raise SystemExit(f"{name}: render-many failed (exit {code}):\n{run.text()[-3000:]}")
    frames = sum(r["frames"] for r in results)
    print(f"  {name}: {run.wall_s:.1f} s", file=sys.stderr, flush=True)
    nodes: dict[str, int] = {}
    for r in results:
        nodes[r.get("node") or "-"] = nodes.get(r.get("node") or "-", 0) + 1
    return {
        "name": name,
        "wall": run.wall_s,
        "jobs/s": len(results) / run.wall_s,
        "fps": frames / run.wall_s,
        "frames": frames,
        "retries": sum(len(r.get("retried") or []) for r in results),
        "nodes": ", ".join(f"{n}: {k}" for n, k in sorted(nodes.items())),
        "killed_at": seen["killed_at_s"],
        "noise": noise,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| run | wall s | jobs/s | fps | frames | retries | jobs per node | other stdout lines |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        name = r["name"] + (f" (killed at {r['killed_at']:.1f} s)" if r["killed_at"] is not None else "")
        lines.append(
            f"| {name} | {r['wall']:.1f} | {r['jobs/s']:.3f} | {r['fps']:.1f} | {r['frames']} | {r['retries']} "
            f"| {r['nodes']} | {r['noise']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a package (default: a synth package of 20 frames made here)")
    parser.add_argument("--tiny", action="store_true", help="synthesize the tiny package (trivial models)")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per job")
    parser.add_argument("--kill-at", type=float, default=0.3, help="fraction of jobs finished when node two dies")
    parser.add_argument("--s3", action="store_true", help="also a cluster run with every path an s3:// URL")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lipsync-cluster-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"LIPSYNC_CACHE": str(work / "cache"), "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        model = str(Path(args.model).resolve()) if args.model and Path(args.model).exists() else args.model
        if model is None:
            model = str(work / "package")
            synth = [sys.executable, "-m", "lipsync_render", "package", "synth", model, "--frames", "20"]
            subprocess.run(synth + (["--tiny"] if args.tiny else []), check=True, capture_output=True)
        clips = cut_clips(work / "clips", [args.seconds] * args.jobs)
        rows = [{"audio": c, "model": model, "output": work / "out" / f"{i:02}.mp4"} for i, c in enumerate(clips)]
        manifest = write_manifest(work / "jobs.csv", rows)
        print(
            f"{args.jobs} jobs of {args.seconds:g} s, package {model}; cores {os.cpu_count()}, "
            f"load average before {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            flush=True,
        )

        results = [measure("local", manifest, [], env)]
        results.append(measure("--ray local", manifest, ["--ray", "local"], env))
        for kill_at in (None, args.kill_at):
            cluster = RayCluster(env={"LIPSYNC_CACHE": str(work / "cache")}).start()
            try:
                name = "two-node cluster" + ("" if kill_at is None else ", node two killed")
                results.append(
                    measure(name, manifest, ["--ray", cluster.address], cluster.driver_env(), cluster, kill_at)
                )
            finally:
                cluster.stop()
        if args.s3:
            results.append(s3_run(work, model, clips))
        print(table(results))
        whole, killed = results[2], results[3]
        print(
            f"time lost to the killed node: {killed['wall'] - whole['wall']:+.1f} s "
            f"({killed['wall'] / whole['wall'] - 1:+.0%}), {killed['retries']} job(s) retried"
        )
        print(
            f"--ray local / local wall time: {results[1]['wall'] / results[0]['wall']:.2f}x; "
            f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def s3_run(work: Path, model: str, clips: list[Path]) -> dict:
    """The two-node cluster with audio, package and outputs in a bucket of moto's server on 127.0.0.1."""
    import boto3

    server = MotoServer(work / "moto.log").start()
    saved = {name: os.environ.get(name) for name in server.env}
    os.environ.update(server.env)
    try:
        boto3.client("s3").create_bucket(Bucket="bench")
        package = upload(Path(model), "s3://bench/package")
        rows = [
            {"audio": upload(c, f"s3://bench/audio/{c.name}"), "model": package, "output": f"s3://bench/out/{i}.mp4"}
            for i, c in enumerate(clips)
        ]
        manifest = write_manifest(work / "jobs-s3.csv", rows)
        cluster = RayCluster(env=server.env | {"LIPSYNC_CACHE": str(work / "cache-s3")}).start()
        try:
            return measure(
                "two-node cluster, data on S3", manifest, ["--ray", cluster.address], cluster.driver_env(), cluster
            )
        finally:
            cluster.stop()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


if __name__ == "__main__":
    main()
