"""The CPU side of a GPU host: CPU milliseconds per frame of every non-UNet stage, with a zero-cost UNet.

    python benchmarks/host_ceiling.py --model demo [--frames 500] [--cores 1,2] [--json F] [--markdown F]

On a GPU the UNet stops being the bound and the host stages set the pace. This renders the package (its frames,
rectangles and real audio encoder, here on the CPU: an upper bound for a GPU host, which runs the encoder on the
GPU) with its UNet swapped for the tiny stand-in (same I/O, next to no cost, one thread) and GPU settings - batch
25, compositing processes, x264's own threads, uint8 crops to the UNet (``--unet-io uint8``) - once per core
count, each in a child pinned with ``taskset`` to the first N cores, and reports:

- CPU ms per frame of each pipeline thread (features = mel + audio encoder, prepare = 328 crops, dispatch,
  send, collect; ``RenderResult.cpu_seconds``), of the rest of the main process (pool and queue threads, the
  stand-in UNet's ONNX Runtime threads), of the compositing processes and of the video encoder process (x264);
- the compositing work split into paste-back and BGR->I420, timed alone on one thread;
- the busiest single thread (pipeline threads exactly; threads of the child processes sampled every 50 ms);
- what 16 cores would sustain by arithmetic: all non-UNet CPU work spread over 16 cores, capped by the busiest
  single thread and by the compositing processes a 16-core host gets.

The inference thread is listed but not counted as host work: here it runs the stand-in UNet with the uint8
wrapper's float work on the CPU, which on a GPU host is device work (the host thread only copies and launches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

GPU_CORES = 16
TARGET_FPS = 400
THREAD_BUDGET_MS = 2.0
MAIN_THREADS = ("features", "prepare", "dispatch", "send", "collect")


def gpu_workers(cores: int) -> int:
    """The compositing processes SessionOptions.resolve gives a GPU host with this many cores."""
    return min(4, max(1, cores // 2))


class ThreadSampler:
    """Samples the CPU seconds of every thread of some processes; keeps the last value seen per thread."""

    def __init__(self, pids: list[int], interval: float = 0.05):
        import psutil

        self.processes = {pid: psutil.Process(pid) for pid in pids}
        self.seen: dict[tuple[int, int], float] = {}
        self.start = self._sample()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _sample(self) -> dict[tuple[int, int], float]:
        values = {}
        for pid, process in self.processes.items():
            for thread in process.threads():
                values[(pid, thread.id)] = thread.user_time + thread.system_time
        return values

    def _loop(self) -> None:
        while not self.stop.wait(0.05):
            self.seen.update(self._sample())

    def finish(self) -> dict[tuple[int, int], float]:
        """CPU seconds each thread spent while sampled."""
        self.stop.set()
        self.thread.join()
        self.seen.update(self._sample())
        return {key: value - self.start.get(key, 0.0) for key, value in self.seen.items()}


def process_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def compositing_split(package, frames: int) -> dict[str, float]:
    """Single-thread CPU ms per frame of paste-back and of BGR->I420 (the compositor's BT.709 conversion), on the
    package's frames."""
    from lipsync_render.media.colour import BT709Converter
    from lipsync_render.rendering.geometry import composite_frame

    rng = np.random.default_rng(0)
    prediction = rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)
    scratch = np.empty((package.height, package.width, 3), np.uint8)
    converter = BT709Converter(package.width, package.height)
    i420 = np.empty((package.height * 3 // 2, package.width), np.uint8)
    paste = convert = 0.0
    for number in range(frames):
        index = number % package.frame_count
        tick = time.thread_time()
        composite_frame(np.asarray(package.frames[index]), package.rects[index], prediction, out=scratch)
        middle = time.thread_time()
        converter.convert(scratch, out=i420)
        paste, convert = paste + middle - tick, convert + time.thread_time() - middle
    return {"paste_back": 1000 * paste / frames, "bgr_to_i420": 1000 * convert / frames}


def measure(model: str, frames: int, repeat: int) -> dict:
    """One core count (this process's affinity): the render's per-stage CPU figures."""
    import cv2

    from lipsync_render.diagnostics.bench import write_speech_wav
    from lipsync_render.diagnostics.ceilings import tiny_unet_twin
    from lipsync_render.options import SessionOptions
    from lipsync_render.package import load_package
    from lipsync_render.rendering.renderer import Renderer

    cv2.setNumThreads(1)
    cores = len(os.sched_getaffinity(0))
    options = SessionOptions(
        device="cpu",
        precision="fp32",
        batch_size=25,
        workers=gpu_workers(cores),
        threads=1,  # the stand-in UNet's work stays on the inference thread, apart from the host work
        encoder_threads=0,
        unet_io="uint8",
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="host-ceiling-") as tmp:
        wav = write_speech_wav(Path(tmp) / "speech.wav", frames)
        package = tiny_unet_twin(load_package(model), Path(tmp))
        with Renderer(package, options) as renderer:
            renderer.render(wav, Path(tmp) / "warm.mp4")  # warm-up: caches, x264 and pool start-up
            workers = sorted(renderer.pool.executor._processes)  # the compositing processes
            encoder = renderer.encoder_process.process.pid
            for _ in range(repeat):
                pids = [os.getpid(), *workers, encoder]
                before = {pid: process_cpu(pid) for pid in pids}
                sampler = ThreadSampler([*workers, encoder])
                result = renderer.render(wav, Path(tmp) / "out.mp4")
                threads = sampler.finish()
                after = {pid: process_cpu(pid) for pid in pids}
                runs.append((result, before, after, threads, workers, encoder))
            split = compositing_split(renderer.package, min(frames, 200))
    result, before, after, threads, workers, encoder = sorted(runs, key=lambda run: run[0].fps)[len(runs) // 2]
    per_frame = 1000 / result.frames
    cpu = {name: result.cpu_seconds.get(name, 0.0) * per_frame for name in (*MAIN_THREADS, "infer")}
    main_total = (after[os.getpid()] - before[os.getpid()]) * per_frame
    cpu["main_other"] = max(0.0, main_total - sum(cpu.values()))
    cpu["compositing"] = sum(after[pid] - before[pid] for pid in workers) * per_frame
    cpu["encoder"] = (after[encoder] - before[encoder]) * per_frame
    child_busiest = max(((pid, seconds) for (pid, _), seconds in threads.items()), key=lambda item: item[1])
    busiest = {name: cpu[name] for name in MAIN_THREADS}
    busiest["compositing process" if child_busiest[0] != encoder else "encoder thread"] = child_busiest[1] * per_frame
    name = max(busiest, key=busiest.get)
    return {
        "cores": cores,
        "workers": options.workers,
        "frames": result.frames,
        "fps": result.fps,
        "fps_runs": [run[0].fps for run in runs],
        "cpu_ms_per_frame": cpu,
        "compositing_split_ms": split,
        "host_ms_per_frame": sum(v for k, v in cpu.items() if k != "infer"),
        "busiest_thread": name,
        "busiest_thread_ms": busiest[name],
        "video_encoder": result.video_encoder,
    }


def projection(row: dict) -> dict:
    """What 16 cores would sustain, by arithmetic on one core count's figures."""
    workers = gpu_workers(GPU_CORES)
    limits = {
        "all host work over 16 cores": GPU_CORES * 1000 / row["host_ms_per_frame"],
        f"busiest thread ({row['busiest_thread']})": 1000 / row["busiest_thread_ms"],
        f"{workers} compositing processes": workers * 1000 / row["cpu_ms_per_frame"]["compositing"],
    }
    bound = min(limits, key=limits.get)
    return {"limits_fps": limits, "bound": bound, "fps": limits[bound]}


LABELS = {
    "features": "features thread (mel + audio encoder on the CPU)",
    "prepare": "prepare thread (328 crops, uint8)",
    "dispatch": "dispatch thread (predictions into the ring)",
    "send": "send thread (frames to the encoder, in order)",
    "collect": "collect thread (encoder replies)",
    "main_other": "rest of the main process (pool and queue threads)",
    "compositing": "compositing processes (paste-back + BGR->I420)",
    "encoder": "video encoder process (x264, its threads)",
    "infer": "inference thread (stand-in UNet + uint8 wrapper on the CPU; device work on a GPU) - not counted",
}


def markdown(rows: list[dict], command: str) -> str:
    """The table (one column per core count) and the 16-core arithmetic."""

    def line(label: str, cells) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [
        f"`{command}`",
        "",
        line("stage, CPU ms per frame", (f"{row['cores']} core(s)" for row in rows)),
        "|---|" + "---:|" * len(rows),
    ]
    lines += [line(label, (f"{row['cpu_ms_per_frame'][key]:.2f}" for row in rows)) for key, label in LABELS.items()]
    for key, label in (("paste_back", "paste-back alone, 1 thread"), ("bgr_to_i420", "BGR->I420 alone, 1 thread")):
        lines.append(line(f"- of compositing: {label}", (f"{row['compositing_split_ms'][key]:.2f}" for row in rows)))
    lines.append(line("**all host work (counted rows)**", (f"**{row['host_ms_per_frame']:.2f}**" for row in rows)))
    busiest = (f"{row['busiest_thread_ms']:.2f} ({row['busiest_thread']})" for row in rows)
    lines.append(line("busiest single thread", busiest))
    lines.append(line("end-to-end FPS (median run)", (f"{row['fps']:.1f}" for row in rows)))
    lines.append("")
    for row in rows:
        p = row["projection"]
        limits = "; ".join(f"{name}: {fps:.0f} fps" for name, fps in p["limits_fps"].items())
        lines.append(
            f"- {GPU_CORES} cores, by arithmetic on the {row['cores']}-core figures: **{p['fps']:.0f} fps**, "
            f"bound by {p['bound']} ({limits})."
        )
    if len(rows) > 1:
        scaling = rows[-1]["fps"] / rows[0]["fps"]
        lines.append(f"- {rows[0]['cores']} -> {rows[-1]['cores']} cores: {scaling:.2f}x the end-to-end FPS.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cores", default="1,2", help="core counts to pin to with taskset, e.g. 1,2 or 16")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.frames, args.repeat)))
        return
    rows = []
    for count in (int(c) for c in args.cores.split(",")):
        cores = sorted(os.sched_getaffinity(0))[:count]
        command = ["taskset", "-c", ",".join(map(str, cores)), sys.executable, __file__, "--child"]
        command += ["--model", args.model, "--frames", str(args.frames), "--repeat", str(args.repeat)]
        print(f"{count} core(s): {' '.join(command[:3])} ...", file=sys.stderr)
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        row["projection"] = projection(row)
        rows.append(row)
    text = markdown(rows, "python benchmarks/host_ceiling.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
