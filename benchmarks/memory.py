"""Peak memory of a long render against a short one: does RSS stay flat with the audio length?

    python benchmarks/memory.py --model demo --seconds 20 600
    python benchmarks/memory.py --model packages/memtiny --seconds 20 10800   # 3 h, tiny package

Renders examples/hello.wav looped to each length (written block by block) with `lipsync render` in a subprocess
and samples the RSS of the whole process tree (the main process, its video encoder process and compositing
workers) every 50 ms. Prints the peak per length and the ratio of the longest to the shortest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello.wav"


def looped_speech(seconds: float, path: Path) -> Path:
    """examples/hello.wav repeated to ``seconds`` of 16 kHz audio, written a minute at a time."""
    samples, rate = sf.read(EXAMPLE, dtype="int16")
    count = int(seconds * rate)
    minute = np.resize(samples, 60 * rate)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as out:
        for start in range(0, count, len(minute)):
            out.write(minute[: min(len(minute), count - start)])
    return path


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def peak_rss(command: list[str]) -> tuple[int, float]:
    """(peak tree RSS in bytes, wall seconds) of a command."""
    start = time.perf_counter()
    process = psutil.Popen(command, stdout=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process))
        time.sleep(0.05)
    if process.returncode != 0:
        sys.exit(f"render failed ({process.returncode}): {' '.join(command)}")
    return peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--seconds", type=float, nargs="+", default=[20, 600])
    parser.add_argument("--extra", default="", help="extra `lipsync render` flags, e.g. '--precision int8'")
    args = parser.parse_args()
    peaks = {}
    with tempfile.TemporaryDirectory() as scratch:
        for seconds in args.seconds:
            wav = looped_speech(seconds, Path(scratch) / f"speech_{seconds:g}s.wav")
            command = [
                sys.executable,
                "-m",
                "lipsync_render",
                "render",
                str(wav),
                "--model",
                args.model,
                "-o",
                str(Path(scratch) / "out.mp4"),
                "--quiet",
                *args.extra.split(),
            ]
            peak, wall = peak_rss(command)
            peaks[seconds] = peak
            print(
                f"{seconds:>7g} s audio: peak RSS {peak / 2**20:8.1f} MiB (process tree), {wall:7.1f} s wall, "
                f"{seconds * 25 / wall:6.1f} fps",
                flush=True,
            )
    shortest, longest = min(peaks), max(peaks)
    print(f"ratio {longest:g} s / {shortest:g} s: {peaks[longest] / peaks[shortest]:.3f}")


if __name__ == "__main__":
    main()
