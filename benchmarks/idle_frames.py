"""Idle frames in silence: ``--silence keep`` against ``--silence idle``, whole process, side by side.

    python benchmarks/idle_frames.py --model demo [--repeat 3] [-- extra lipsync render flags]

Renders examples/pauses.wav and a speech file with long pauses made here with eSpeak NG and SoX (three sentences,
each followed by 4 s of silence) with ``lipsync render --silence keep`` and ``--silence idle``, alternating, each
run a fresh process (imports, package check, sessions, encoding: all of it timed). Prints per file the frames,
the idle frames and where they are, the median wall seconds and the median CPU seconds (user + system of the
process and its helper processes, which other load on a shared machine moves far less than wall time) of each
mode, and the speed-ups; then renders once more with ``--frames-dir`` PNGs and checks that every idle frame
equals its package frame bit for bit.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lipsync_render.media.audio import AudioStream
from lipsync_render.media.features import frame_count_for_audio
from lipsync_render.package import load_package
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.silence import idle_ranges, stream_still_weights

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pauses.wav"
LIPSYNC = [sys.executable, "-m", "lipsync_render"]
SENTENCES = (
    "Welcome back. Today we look at rendering talking heads offline.",
    "The model only runs where somebody is speaking.",
    "In the silences, the frames come straight from the package.",
)
PAUSE_SECONDS = 4


def long_pauses_wav(folder: Path) -> Path:
    """Three eSpeak NG sentences, each padded with PAUSE_SECONDS of silence by SoX, as 16 kHz mono 16-bit."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed to make the long-pause speech (apt-get install espeak-ng sox).")
    padded = []
    for i, sentence in enumerate(SENTENCES):
        raw, pad = folder / f"s{i}.wav", folder / f"s{i}_padded.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), sentence], check=True)
        subprocess.run(["sox", "-R", str(raw), str(pad), "pad", "0", str(PAUSE_SECONDS)], check=True)
        padded.append(str(pad))
    out = folder / "long_pauses.wav"
    subprocess.run(["sox", "-R", *padded, "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    return out


def render(audio: Path, model: str, output: Path, silence: str, extra: list[str]) -> tuple[float, float, dict]:
    """One ``lipsync render`` process: (wall seconds, CPU seconds, its --json record)."""
    command = [*LIPSYNC, "render", str(audio), "--model", model, "-o", str(output), "--silence", silence, "--json"]
    before = cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run([*command, *extra], capture_output=True, text=True)
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - before
    if done.returncode != 0:
        sys.exit(f"lipsync render failed: {done.stderr.strip()}")
    return wall, cpu, json.loads(done.stdout.strip().splitlines()[-1])


def cpu_seconds() -> float:
    """User + system seconds of every finished child process and their own waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def idle_frames_equal_the_package(audio: Path, model: str, scratch: Path, extra: list[str]) -> tuple[int, bool]:
    """Render with --silence idle and PNG frames; (idle frames, whether each equals its package frame exactly)."""
    frames_dir = scratch / "frames"
    render(
        audio, model, scratch / "check.mp4", "idle", [*extra, "--frames-dir", str(frames_dir), "--frames-format", "png"]
    )
    weights = frame_weights(audio)
    package = load_package(model)
    schedule = frame_schedule(len(weights), package.frame_count)
    idle = np.flatnonzero(weights == 1)
    equal = all(np.array_equal(cv2.imread(str(frames_dir / f"{k:06d}.png")), package.frames[schedule[k]]) for k in idle)
    shutil.rmtree(frames_dir)
    return len(idle), equal


def frame_weights(audio: Path) -> np.ndarray:
    stream = AudioStream(audio)
    return np.array(list(stream_still_weights(stream.blocks(), frame_count_for_audio(stream.sample_count))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more lipsync render flags, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for audio in (EXAMPLE, long_pauses_wav(scratch)):
            weights = frame_weights(audio)
            spans = ", ".join(f"{a}-{b} ({a / 25:.2f}-{(b + 1) / 25:.2f} s)" for a, b in idle_ranges(weights))
            print(f"{audio.name}: {len(weights)} frames, {int((weights == 1).sum())} idle: {spans}", flush=True)
            walls, cpus = {"keep": [], "idle": []}, {"keep": [], "idle": []}
            for _ in range(args.repeat):
                for mode in walls:
                    wall, cpu, record = render(audio, args.model, scratch / f"{mode}.mp4", mode, args.extra)
                    walls[mode].append(wall)
                    cpus[mode].append(cpu)
                    print(f"  {mode}: {wall:.2f} s wall, {cpu:.2f} s CPU, {record['idle_frames']} idle", flush=True)
            for name, runs in (("wall", walls), ("CPU", cpus)):
                keep, idle = (statistics.median(runs[m]) for m in ("keep", "idle"))
                print(f"  median {name}: keep {keep:.2f} s, idle {idle:.2f} s: {keep / idle:.2f}x", flush=True)
            count, equal = idle_frames_equal_the_package(audio, args.model, scratch, args.extra)
            print(f"  {count} idle frames equal their package frames exactly: {equal}", flush=True)


if __name__ == "__main__":
    main()
