"""Planning time of `render-many`: reading a manifest and checking its outputs, before the first job starts.

    python benchmarks/manifest_planning.py [--rows 1000 10000 100000] [--format csv|jsonl]

Writes a manifest of N rows (one audio file and one distinct output each, the audio files missing, as in issue
24's case) into a temporary folder and times ``jobs.read_jobs`` on it: row parsing, option values and the output
checks (no two jobs write one file, no job writes onto an input). Issue 24 measured 6/22/99 s for 500/1,000/2,000
rows with the pairwise check; the check is now one key per path and one dictionary look-up, so the time grows
linearly with the rows. Prints one line per size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lipsync_render.jobs.manifest import read_jobs


def write_manifest(folder: Path, rows: int, kind: str) -> Path:
    path = folder / f"jobs-{rows}.{kind}"
    if kind == "csv":
        lines = ["audio,model,output,workers"]
        lines += [f"audio/{i}.wav,demo,out/{i}.mp4,0" for i in range(rows)]
    else:
        lines = [
            json.dumps({"audio": f"audio/{i}.wav", "model": "demo", "output": f"out/{i}.mp4"}) for i in range(rows)
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for rows in args.rows:
            manifest = write_manifest(Path(scratch), rows, args.format)
            tick = time.perf_counter()
            jobs = read_jobs(manifest)
            seconds = time.perf_counter() - tick
            print(
                f"{rows:>7} rows ({args.format}): planned {len(jobs)} jobs in {seconds:.2f} s "
                f"({1e6 * seconds / rows:.0f} us per row)"
            )


if __name__ == "__main__":
    main()
