"""What each `lipsync render` call pays before its first frame, on real-size packages, side by side in one run.

    python benchmarks/cold_start.py [--dir /tmp/lipsync-cold-start] [--repeat 3] [--sections packages,loop,naive]

``packages``: builds (once, under ``--dir``; ``--keep`` keeps them) 100- and 523-frame 1280x720 packages with the
npy and the jpeg store and a 523-frame 1920x1080 npy one (``lipsync package synth NAME --frames N --size WxH
--frames-store S --weights random``), renders each once untimed (the precision choice is measured and cached,
checksums verified and recorded, the page cache warmed), then ``--repeat`` rounds of one ``lipsync render`` call
per package, the packages alternating. Each call is the real CLI in a fresh interpreter, timed from launch:
launch to first encoded frame, whole process, the render's own time (``seconds.total`` of ``--json``), the fixed
cost (whole process minus render time) and the CPU seconds of the whole process tree.

``loop``: 20 audio files rendered by a shell loop of 20 ``lipsync render`` calls against one call given the 20
files (the 523-frame npy package), alternating ``--loop-repeat`` times.

``naive``: 8 s of speech, whole process: ``lipsync render`` against the reference-style one-frame loop
(``python benchmarks/naive_baseline.py``) on the 100-frame package, alternating ``--repeat`` times.

Prints each measurement as it comes and a Markdown table per section (ranges are min-max over the rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
LIPSYNC = [sys.executable, "-m", "lipsync_render"]
PACKAGES = {  # name: synth arguments
    "100 frames, 1280x720, npy": ["--frames", "100"],
    "523 frames, 1280x720, npy": ["--frames", "523"],
    "523 frames, 1280x720, jpeg": ["--frames", "523", "--frames-store", "jpeg"],
    "523 frames, 1920x1080, npy": ["--frames", "523", "--size", "1920x1080"],
}
LOOP_PACKAGE = "523 frames, 1280x720, npy"
NAIVE_PACKAGE = "100 frames, 1280x720, npy"

# Runs the real CLI in this fresh interpreter, noting when the first frame was encoded (the progress callback).
# The Renderer is patched when the CLI imports it, not before, so the CLI's imports happen in its own order.
CHILD = """
import importlib.abc, importlib.util, os, sys, time
if os.environ.get("LIPSYNC_SOURCE"):  # the baseline checkout, not the installed (editable) one
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    sys.path.insert(0, os.environ["LIPSYNC_SOURCE"])

def mark_first_frame(renderer):
    plain = renderer.Renderer.render
    def render(self, audio, output, options=None, on_progress=None):
        def progress(done, total):
            if "COLD_START_MARK" in os.environ and not os.path.exists(os.environ["COLD_START_MARK"]):
                with open(os.environ["COLD_START_MARK"], "w") as f:
                    f.write(repr(time.time()))
            if on_progress is not None:
                on_progress(done, total)
        return plain(self, audio, output, options, progress)
    renderer.Renderer.render = render

class PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "lipsync_render.rendering.renderer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            mark_first_frame(module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, PatchOnImport())
from lipsync_render.cli.app import main
sys.argv = ["lipsync", *sys.argv[1:]]
main()
"""


def package_dir(root: Path, label: str) -> Path:
    return root / label.replace(", ", "-").replace(" ", "")


def build(root: Path, label: str) -> Path:
    path = package_dir(root, label)
    if not (path / "package.json").exists():
        shutil.rmtree(path, ignore_errors=True)
        command = [*LIPSYNC, "package", "synth", path.name, "--out-dir", str(root), "--weights", "random"]
        subprocess.run([*command, *PACKAGES[label]], check=True, stdout=subprocess.DEVNULL)
    return path


def write_audio(path: Path, seconds: float) -> Path:
    """``seconds`` of speech cut from (and, past its end, looped over) examples/hello.wav."""
    samples, rate = sf.read(EXAMPLES / "hello.wav", dtype="int16")
    count = int(seconds * rate)
    sf.write(path, np.resize(samples, count), rate)
    return path


def timed(command: list[str], mark: Path | None = None, source: Path | None = None) -> dict:
    """Run ``command``; wall seconds from launch, CPU seconds of its whole process tree, first frame if marked.
    ``source``: a checkout whose lipsync_render the command imports instead (the baseline; its spawned helper
    processes still import the installed one)."""
    env = dict(os.environ)
    if source is not None:
        env["LIPSYNC_SOURCE"] = str(source)
    if mark is not None:
        mark.unlink(missing_ok=True)
        env["COLD_START_MARK"] = str(mark)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launched = time.time()
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.time() - launched
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({out.returncode}): {out.stderr.strip()[-600:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    run = {"wall": wall, "cpu": cpu}
    if mark is not None:
        run["first_frame"] = float(mark.read_text()) - launched
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if lines:
        run["render"] = sum(json.loads(line)["seconds"]["total"] for line in lines)
        run["fixed"] = wall - run["render"]
    return run


def render_call(package: Path, audio: list[Path], out_dir: Path, mark: Path | None) -> list[str]:
    child = [sys.executable, "-c", CHILD] if mark is not None else LIPSYNC
    return [*child, "render", *map(str, audio), "--model", str(package), "--out-dir", str(out_dir), "--json", "-q"]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def load_note() -> str:
    return "load average " + " / ".join(f"{v:.1f}" for v in os.getloadavg())


def packages_section(
    root: Path, scratch: Path, repeat: int, baseline: Path | None, seconds: float, only: list[str] | None
) -> None:
    audio = write_audio(scratch / "two.wav", seconds)
    paths = {label: build(root, label) for label in PACKAGES if not only or label in only}
    sizes = {label: sum(f.stat().st_size for f in p.iterdir() if f.is_file()) / 1e9 for label, p in paths.items()}
    sources = {"": None, " (baseline)": baseline} if baseline else {"": None}
    for path in paths.values():  # untimed: precision choice, verified record, page cache
        for source in sources.values():
            timed(render_call(path, [audio], scratch, scratch / "mark"), None, source)
    print(f"packages: warm-up done, {load_note()}", flush=True)
    runs = {label + tag: [] for label in paths for tag in sources}
    for round_ in range(repeat):
        for label, path in paths.items():
            for tag, source in sources.items():
                run = timed(render_call(path, [audio], scratch, scratch / "mark"), scratch / "mark", source)
                runs[label + tag].append(run)
                print(
                    f"round {round_ + 1} {label}{tag}: first frame {run['first_frame']:.2f} s, "
                    f"whole {run['wall']:.2f} s, render {run['render']:.2f} s, fixed {run['fixed']:.2f} s, "
                    f"CPU {run['cpu']:.2f} s",
                    flush=True,
                )
    print(f"\n{seconds:g} s of audio, {repeat} rounds, median (min-max), seconds; {load_note()} at the end\n")
    print("| package | GB | launch to first frame | whole process | render | fixed cost | CPU, process tree |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, rows in runs.items():
        cells = [spread([r[k] for r in rows]) for k in ("first_frame", "wall", "render", "fixed", "cpu")]
        print(f"| {label} | {sizes[label.split(' (')[0]]:.2f} | " + " | ".join(cells) + " |")


def loop_section(root: Path, scratch: Path, repeat: int, seconds: float) -> None:
    package = build(root, LOOP_PACKAGE)
    files = [write_audio(scratch / f"clip{i:02d}.wav", seconds) for i in range(20)]
    one_call = render_call(package, files, scratch / "one", None)
    lipsync = shlex.join(LIPSYNC)
    loop = (
        f'set -e; for f in {shlex.quote(str(scratch))}/clip*.wav; do {lipsync} render "$f" --model '
        f"{shlex.quote(str(package))} --out-dir {shlex.quote(str(scratch / 'loop'))} -q; done"
    )
    (scratch / "one").mkdir(exist_ok=True)
    (scratch / "loop").mkdir(exist_ok=True)
    timed(render_call(package, files[:1], scratch, None))  # warm
    pairs = []
    for round_ in range(repeat):
        many = timed(["bash", "-c", loop])
        single = timed(one_call)
        pairs.append((many, single))
        print(
            f"round {round_ + 1}: 20 calls {many['wall']:.2f} s (CPU {many['cpu']:.2f}), "
            f"one call {single['wall']:.2f} s (CPU {single['cpu']:.2f}, render {single['render']:.2f}): "
            f"{many['wall'] / single['wall']:.2f}x",
            flush=True,
        )
    print(f"\n20 files of {seconds:g} s, {LOOP_PACKAGE}; {load_note()} at the end")
    print(f"shell loop: {loop}\none call: {shlex.join(one_call)}\n")
    print("| round | shell loop, 20 calls | one call, 20 files | ratio | CPU ratio |")
    print("|---:|---:|---:|---:|---:|")
    for i, (many, single) in enumerate(pairs, 1):
        print(
            f"| {i} | {many['wall']:.2f} s | {single['wall']:.2f} s | {many['wall'] / single['wall']:.2f}x | "
            f"{many['cpu'] / single['cpu']:.2f}x |"
        )


def naive_section(root: Path, scratch: Path, repeat: int) -> None:
    package = build(root, NAIVE_PACKAGE)
    audio = write_audio(scratch / "speech8.wav", 8.0)
    ours = [*LIPSYNC, "render", str(audio), "--model", str(package), "-o", str(scratch / "r.mp4"), "-q"]
    naive = [sys.executable, str(HERE / "naive_baseline.py"), str(audio), "--model", str(package)]
    naive += ["-o", str(scratch / "n.mp4")]
    timed(ours)  # warm: the precision choice is cached
    pairs = []
    for round_ in range(repeat):
        pairs.append((timed(naive), timed(ours)))
        print(
            f"round {round_ + 1}: naive {pairs[-1][0]['wall']:.2f} s, lipsync render {pairs[-1][1]['wall']:.2f} s",
            flush=True,
        )
    slow = [n["wall"] for n, _ in pairs]
    fast = [o["wall"] for _, o in pairs]
    print(f"\n8 s of speech (200 frames), whole process, {repeat} alternating rounds; {load_note()} at the end\n")
    print("| command | wall s, each round | median |")
    print("|---|---|---:|")
    print(f"| `{' '.join(naive)}` | {', '.join(f'{v:.2f}' for v in slow)} | {statistics.median(slow):.2f} |")
    print(f"| `{' '.join(ours)}` | {', '.join(f'{v:.2f}' for v in fast)} | {statistics.median(fast):.2f} |")
    ratios = [n / o for n, o in zip(slow, fast)]
    print(
        f"\nwhole process: **{statistics.median(slow) / statistics.median(fast):.2f}x** the naive loop "
        f"(medians; per round {min(ratios):.2f}-{max(ratios):.2f}x)"
    )


def compile_bytecode(baseline: Path | None) -> None:
    """Write the bytecode of the measured source trees, as the first run of any ordinary install does (a wheel
    install at install time). Under PYTHONDONTWRITEBYTECODE=1 an editable checkout is otherwise compiled again by
    every call: 0.08 s of each call's fixed cost on this machine, which no user pays."""
    import lipsync_render

    trees = [Path(lipsync_render.__file__).parent, HERE]
    if baseline is not None:
        trees.append(baseline / "lipsync_render")
    for tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True)
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("bytecode compiled (PYTHONDONTWRITEBYTECODE is set here, so no call writes its own)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "lipsync-cold-start")
    parser.add_argument("--repeat", type=int, default=3, help="Timed rounds per package (and naive pair).")
    parser.add_argument("--loop-repeat", type=int, default=1, help="Rounds of the 20-file comparison.")
    parser.add_argument("--loop-seconds", type=float, default=2.0, help="Length of each of the 20 files.")
    parser.add_argument("--sections", default="packages,loop,naive", help="Any of packages, loop, naive.")
    parser.add_argument("--seconds", type=float, default=2.0, help="Audio length for the packages section.")
    parser.add_argument("--only", help="Packages to measure, ';'-separated labels (default: all).")
    parser.add_argument("--baseline", type=Path, help="A checkout of another version, measured alongside (packages).")
    parser.add_argument("--keep", action="store_true", help="Keep the packages under --dir (GBs) for a rerun.")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs, {load_note()} at the start", flush=True)
    compile_bytecode(args.baseline)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            if "packages" in sections:
                packages_section(
                    args.dir,
                    Path(scratch),
                    args.repeat,
                    args.baseline,
                    args.seconds,
                    args.only and args.only.split(";"),
                )
            if "loop" in sections:
                loop_section(args.dir, Path(scratch), args.loop_repeat, args.loop_seconds)
            if "naive" in sections:
                naive_section(args.dir, Path(scratch), args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
