"""Frames stores side by side: package size per frame, decode cost, and whole `lipsync render` speed with each.

    python benchmarks/frame_stores.py [--frames 100] [--stores npy,jpeg:95,jpeg,jpeg:75] [--rounds 5]
                                      [--weights random] [--audio examples/hello.wav] [--render-stores npy,jpeg]
                                      [--render-args "--precision fp32"]

Builds one synthetic 1280x720 package per store from the same frames (`lipsync package synth --frames-store S`),
prints each store's bytes a frame, PSNR against the npy frames, and the milliseconds to decode a whole frame
(compositing) and only the rectangle's tiles (prepare). Then renders the same audio with each of
``--render-stores`` in turn, round after round (so host load hits them alike), with the same settings
(``--render-args``, default `--precision fp32`, everything else default), and prints the median wall time and
speed relative to npy, and the CPU seconds of the whole render (its processes together), which host load moves
less than wall time.
Synthetic frames compress differently from camera video: ``--noise SIGMA`` adds Gaussian sensor-like noise to the
size measurement as a harder case.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LIPSYNC = [sys.executable, "-m", "lipsync_render"]


def store_sizes(stores: list[str], noise: float) -> None:
    """Bytes a frame and PSNR of each store on synthetic 1280x720 frames with added noise (no models)."""
    from lipsync_render.package.frame_store import JpegFrameStore
    from lipsync_render.package.frame_writer import frame_writer
    from lipsync_render.store_choice import parse_frames_store
    from lipsync_render.synth.avatar import avatar_frames

    rng = np.random.default_rng(0)
    frames = [np.clip(f + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8) for f in avatar_frames(10, 1280, 720)]
    with tempfile.TemporaryDirectory() as tmp:
        for store in stores:
            folder = Path(tmp) / store.replace(":", "_")
            folder.mkdir()
            writer = frame_writer(parse_frames_store(store), folder, len(frames))
            for frame in frames:
                writer.add(frame)
            files = writer.finish()
            size = sum((folder / rel).stat().st_size for rel in files.values())
            line = f"noise sigma {noise}: {store:<8} {size / len(frames) / 1e6:.3f} MB a frame"
            if "frames_index" in files:
                decoded = JpegFrameStore(folder / files["frames"], folder / files["frames_index"], 10, 720, 1280, 256)
                line += f", PSNR {min(psnr(decoded[i], f) for i, f in enumerate(frames)):.1f} dB (worst frame)"
            print(line, flush=True)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def decode_ms(package_path: Path, repeat: int = 20) -> tuple[float, float]:
    """Median milliseconds for a whole frame and for the rectangle's pixels, over the package's frames."""
    from lipsync_render.package import load_package

    package = load_package(package_path, verify_checksums=False)
    store, out = package.frames, np.empty(package.frames.shape[1:], np.uint8)
    whole, crop = [], []
    for i in range(repeat):
        index = i % len(store)
        tick = time.perf_counter()
        np.copyto(out, store.read(index, out=out))
        whole.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        pixels, _ = store.rect_pixels(index, package.rects[index])
        np.ascontiguousarray(pixels)
        crop.append(time.perf_counter() - tick)
    return 1000 * statistics.median(whole), 1000 * statistics.median(crop)


def render(package_path: Path, audio: Path, output: Path, settings: list[str]) -> dict:
    command = [*LIPSYNC, "render", str(audio), "--model", str(package_path), "-o", str(output), *settings]
    tick, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["wall"] = time.perf_counter() - tick
    record["cpu"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime  # the render's whole tree
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--stores", default="npy,jpeg:95,jpeg,jpeg:75")
    parser.add_argument("--render-stores", default="npy,jpeg")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--noise", type=float, default=3.0)
    parser.add_argument("--audio", type=Path, default=ROOT / "examples" / "hello.wav")
    parser.add_argument("--render-args", default="--precision fp32", help="render settings, the same for every store")
    args = parser.parse_args()
    stores = args.stores.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        packages = {}
        for store in sorted(set(stores) | set(args.render_stores.split(","))):
            packages[store] = Path(tmp) / store.replace(":", "_")
            synth = [*LIPSYNC, "package", "synth", str(packages[store]), "--frames", str(args.frames)]
            subprocess.run(
                [*synth, "--weights", args.weights, "--frames-store", store], check=True, capture_output=True
            )
        from lipsync_render.package import load_package

        reference = load_package(packages["npy"], verify_checksums=False).frames
        for store in stores:
            package = load_package(packages[store], verify_checksums=False)
            size = package.frames.disk_bytes / len(package.frames)
            worst = min(psnr(package.frames[i], reference[i]) for i in range(0, len(reference), 10))
            whole, crop = decode_ms(packages[store])
            print(
                f"synthetic demo frames: {store:<8} {size / 1e6:.3f} MB a frame, PSNR {worst:.1f} dB (worst), "
                f"decode {whole:.2f} ms a frame, {crop:.2f} ms the rectangle",
                flush=True,
            )
        store_sizes(stores, args.noise)
        runs: dict[str, list[dict]] = {store: [] for store in args.render_stores.split(",")}
        for round_number in range(args.rounds):
            for store in runs:
                record = render(packages[store], args.audio, Path(tmp) / f"{store}.mp4", args.render_args.split())
                runs[store].append(record)
                stages = {k: round(v, 2) for k, v in record.get("seconds", {}).items()}
                print(
                    f"round {round_number + 1} {store:<8} wall {record['wall']:.2f} s, CPU {record['cpu']:.2f} s  "
                    f"{stages}",
                    flush=True,
                )
        base = {key: statistics.median(r[key] for r in runs["npy"]) for key in ("wall", "cpu")}
        for store, records in runs.items():
            wall, cpu = (statistics.median(r[key] for r in records) for key in ("wall", "cpu"))
            print(
                f"{store:<8} median wall {wall:.2f} s, speed {base['wall'] / wall:.3f}x npy; "
                f"median CPU {cpu:.2f} s, {cpu / base['cpu']:.3f}x npy's"
            )


if __name__ == "__main__":
    main()
