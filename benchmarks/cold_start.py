"""Cold start: seconds from launching a fresh Python process to the first encoded frame.

    python benchmarks/cold_start.py --model demo [--repeat 3] [-- extra render options as key=value]

Each run starts a new interpreter (imports included), creates a Renderer (package validation, ONNX Runtime
sessions, compositing workers) and renders examples/hello.wav; the child reports when the first frame was
encoded. Prints each run and the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello.wav"

CHILD = """
import json, sys, time
launched = float(sys.argv[1])
from lipsync_render.options import split_options
from lipsync_render.rendering.renderer import Renderer
session, per_render = split_options(json.loads(sys.argv[4]))
first = []
with Renderer(sys.argv[2], session) as renderer:
    loaded = time.time()
    result = renderer.render(sys.argv[3], sys.argv[5], per_render,
                             on_progress=lambda done, total: first or first.append(time.time()))
print(json.dumps({"load": loaded - launched, "first_frame": first[0] - launched, "total": time.time() - launched,
                  "frames": result.frames}))
"""


def cold_start(model: str, options: dict, output: Path) -> dict:
    launched = time.time()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, repr(launched), model, str(EXAMPLE), json.dumps(options), str(output)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("options", nargs="*", help="render options as key=value (ints parsed), e.g. batch_size=8")
    args = parser.parse_args()
    options = {k: int(v) if v.isdigit() else v for k, v in (o.split("=", 1) for o in args.options)}
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.repeat):
            run = cold_start(args.model, options, Path(scratch) / "out.mp4")
            runs.append(run)
            print(
                f"ready {run['load']:.2f} s, first frame {run['first_frame']:.2f} s, "
                f"done {run['total']:.2f} s ({run['frames']} frames)",
                flush=True,
            )
    print(f"median time to first encoded frame: {statistics.median(r['first_frame'] for r in runs):.2f} s")


if __name__ == "__main__":
    main()
