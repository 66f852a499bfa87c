"""The Python side of benchmarks/gpu_check.sh: what the machine can run, the speech to render, a render watched
for its busiest thread, and the summary (JSON and one Markdown table) of every step and result.

    python benchmarks/gpu_check_report.py facts FACTS.json          # prints NEED_x='reason' lines for the shell
    python benchmarks/gpu_check_report.py speech SECONDS OUT.wav    # espeak-ng looped to length, else babble
    python benchmarks/gpu_check_report.py watch RESULT.json -- lipsync render ... --json
    python benchmarks/gpu_check_report.py summary OUT [OUT2 ...] [--into DIR]

``summary`` merges several result folders (the PyTorch call and the ONNX Runtime call of a device session, say)
into one table. A step needs nothing, ``torch`` (importable), ``cuda`` (PyTorch sees a GPU), ``ort-cuda``
(a session really runs on ONNX Runtime's CUDA provider, the doctor's check) or ``ort-tensorrt`` (the same for
TensorRT); an unmet need skips the step with its reason, which the dry-run test accepts and nothing else.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

NEEDS = ("torch", "cuda", "ort-cuda", "ort-tensorrt")


def facts(path: Path) -> None:
    """Versions and the reason each need is unmet ('' when met), as JSON and as shell assignments."""
    from lipsync_render.devices import cuda_driver_present
    from lipsync_render.diagnostics.doctor import check_cuda_provider, check_tensorrt

    found: dict = {"python": sys.version.split()[0]}
    need = dict.fromkeys(NEEDS, "")
    try:
        import torch

        found["torch"] = f"{torch.__version__} (CUDA {torch.version.cuda})"
        if not torch.cuda.is_available():
            need["cuda"] = "PyTorch sees no CUDA GPU"
        else:
            found["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        need["torch"] = need["cuda"] = "torch is not importable"
    import onnxruntime

    found["onnxruntime"] = f"{onnxruntime.__version__} {onnxruntime.get_available_providers()}"
    driver = cuda_driver_present()
    for name, check in (("ort-cuda", check_cuda_provider), ("ort-tensorrt", check_tensorrt)):
        result = check(driver)
        if result.status != "ok":
            gpu_build = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
            need[name] = ("" if gpu_build else "onnxruntime-gpu absent: ") + result.detail
    found["needs_unmet"] = {key: value for key, value in need.items() if value}
    path.write_text(json.dumps(found, indent=1) + "\n")
    for key, value in found.items():
        print(f"{key}: {value}", file=sys.stderr)
    for key, value in need.items():
        print(f"NEED_{key.replace('-', '_')}={shlex.quote(value)}")


def speech(seconds: float, path: Path) -> None:
    """Exactly ``seconds`` of speech: espeak-ng's reading of a paragraph looped when it is installed, else the
    project's speech-like babble (the content costs no stage more or less)."""
    import numpy as np
    import soundfile as sf

    from lipsync_render.runtimes.calibration import babble

    text = (
        "The quick brown fox jumps over the lazy dog. A talking head reads this paragraph so that every stage of "
        "the render sees speech: vowels, stops, fricatives and the pauses between sentences."
    )
    espeak = shutil.which("espeak-ng")
    if espeak:
        raw = path.with_suffix(".espeak.wav")
        subprocess.run([espeak, "-w", str(raw), text], check=True, capture_output=True)
        voice, rate = sf.read(raw, dtype="int16")
        raw.unlink()
        samples = np.resize(voice, int(seconds * rate))
    else:
        rate = 16000
        samples = (np.clip(babble(seconds), -1, 1) * 32767).astype(np.int16)[: int(seconds * rate)]
    sf.write(path, samples, rate, subtype="PCM_16")
    print(f"{path}: {seconds:g} s of {'espeak-ng speech' if espeak else 'babble'} at {rate} Hz", file=sys.stderr)


def thread_seconds(processes: dict) -> dict[tuple[int, int], tuple[str, float]]:
    """CPU seconds and name of every thread of these processes (vanished ones left out)."""
    values = {}
    for pid, process in list(processes.items()):
        try:
            threads = process.threads()
        except Exception:  # the process ended between two samples
            continue
        for thread in threads:
            try:
                name = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
            except OSError:
                name = "?"
            values[(pid, thread.id)] = (name, thread.user_time + thread.system_time)
    return values


def watch(result_path: Path, command: list[str]) -> int:
    """Run a ``lipsync render --json`` command, sampling every 50 ms the CPU time of each thread of its child
    processes (compositing workers, the video encoder); the pipeline threads' own figures come from the JSON
    (``cpu_seconds``). Writes the render's JSON plus the busiest host thread; returns the command's exit code."""
    import psutil

    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    seen: dict[tuple[int, int], tuple[str, float]] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            try:
                children = {child.pid: child for child in root.children(recursive=True)}
            except psutil.Error:
                continue
            seen.update(thread_seconds(children))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = process.communicate()
    stop.set()
    sampler.join()
    sys.stdout.write(stdout)
    if process.returncode != 0:
        return process.returncode
    result = json.loads(stdout.strip().splitlines()[-1])
    flags = dict(itertools.pairwise(command))
    result["settings"] = {key: flags.get(f"--{flag}") for key, flag in SETTINGS.items()}
    per_frame = 1000 / max(1, result["frames"])
    threads = {f"{name} (pipeline)": seconds * per_frame for name, seconds in result["cpu_seconds"].items()}
    for (pid, tid), (name, seconds) in seen.items():
        threads[f"{name} (child {pid}, thread {tid})"] = seconds * per_frame
    busiest = max(threads, key=threads.get)
    result["busiest_thread"], result["busiest_thread_ms"] = busiest, threads[busiest]
    result["thread_ms_per_frame"] = dict(sorted(threads.items(), key=lambda item: -item[1])[:8])
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"busiest host thread: {busiest}, {threads[busiest]:.2f} ms/frame", file=sys.stderr)
    return 0


SETTINGS = {"device": "device", "batch": "batch-size", "size": "size"}  # of a render, from its command line
STAGES = ("audio", "prepare", "inference", "compositing", "encoding")


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def result_rows(folder: Path) -> list[dict]:
    """One row per bench batch size, per render and for the host ceiling found in a result folder."""
    rows = []
    for path in sorted(folder.glob("bench-*.json")):
        report = json.loads(path.read_text())
        session = report["settings"]["session"]
        for row in report["rows"]:
            rows.append(
                {
                    "run": f"bench {report['settings']['frames']} frames",
                    "backend": session["backend"],
                    "device": session["device"],
                    "precision": session["precision"],
                    "batch": row["batch_size"],
                    "fps": row["end_to_end_fps"],
                    "model_only_fps": row.get("model_only_fps"),
                    "without_unet_fps": row.get("without_unet_fps"),
                    "bound_by": row.get("bound_by"),
                    "stage_ms": {stage: row["stage_ms_per_frame"].get(stage) for stage in STAGES},
                    "busiest_thread": None,
                    "providers": row.get("providers"),
                }
            )
    for path in sorted(folder.glob("render-*.json")):
        result = json.loads(path.read_text())
        settings = result.get("settings", {})
        per_frame = 1000 / max(1, result["frames"])
        rows.append(
            {
                "run": f"render {result['duration']:g} s, {settings.get('size', '?')}",
                "backend": result["backend"],
                "device": settings.get("device", "?"),
                "precision": result["precision"],
                "batch": settings.get("batch"),
                "fps": result["fps"],
                "model_only_fps": None,
                "without_unet_fps": None,
                "bound_by": None,
                "stage_ms": {stage: result["seconds"].get(stage, 0.0) * per_frame for stage in STAGES},
                "busiest_thread": f"{result['busiest_thread_ms']:.2f} ms, {result['busiest_thread']}",
                "providers": result.get("providers"),
            }
        )
    ceiling = folder / "host-ceiling.json"
    if ceiling.exists():
        for row in json.loads(ceiling.read_text()):
            rows.append(
                {
                    "run": f"host ceiling, {row['cores']} cores, zero-cost UNet",
                    "backend": "stand-in",
                    "device": "cpu",
                    "precision": "-",
                    "batch": 25,
                    "fps": row["fps"],
                    "model_only_fps": None,
                    "without_unet_fps": row["projection"]["fps"],
                    "bound_by": row["projection"]["bound"],
                    "stage_ms": dict.fromkeys(STAGES),
                    "busiest_thread": f"{row['busiest_thread_ms']:.2f} ms, {row['busiest_thread']}",
                    "providers": None,
                }
            )
    return rows


def summary(folders: list[Path], into: Path) -> None:
    """summary.json (steps, facts, result rows) and summary.md (the steps table and one results table)."""
    steps, rows, facts_found = [], [], {}
    for folder in folders:
        if (folder / "steps.jsonl").exists():
            steps += [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines() if line.strip()]
        if (folder / "facts.json").exists():
            facts_found = json.loads((folder / "facts.json").read_text())
        rows += result_rows(folder)
    counts = {status: sum(step["status"] == status for step in steps) for status in ("ok", "failed", "skipped")}
    into.mkdir(parents=True, exist_ok=True)
    data = {"steps": steps, "counts": counts, "facts": facts_found, "rows": rows}
    (into / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [
        f"# GPU check: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped",
        "",
        f"GPU: {facts_found.get('gpu', 'none')}; torch {facts_found.get('torch', 'absent')}; "
        f"onnxruntime {facts_found.get('onnxruntime', '?')}",
        "",
        "| step | result | needs | s | at s |",
        "|---|---|---|---:|---:|",
    ]
    for step in steps:
        result = step["status"] + (f": {step['reason']}" if step["reason"] else "")
        lines.append(f"| {step['name']} | {result} | {step['needs'] or '-'} | {step['seconds']} | {step['at']} |")
    lines += [
        "",
        "| run | backend | device | precision | batch | end-to-end fps | model-only fps | without-UNet fps "
        "| bound by | " + " | ".join(f"{stage} ms/f" for stage in STAGES) + " | busiest host thread |",
        "|---|---|---|---|---:|---:|---:|---:|---|" + "---:|" * len(STAGES) + "---|",
    ]
    for row in rows:
        cells = [row["run"], row["backend"], row["device"], row["precision"], str(row["batch"] or "-")]
        cells += [fmt(row["fps"]), fmt(row["model_only_fps"]), fmt(row["without_unet_fps"]), row["bound_by"] or "-"]
        cells += [fmt(row["stage_ms"][stage], 2) for stage in STAGES] + [row["busiest_thread"] or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for step in steps:
        if step["status"] == "skipped" and step["name"].startswith(("bench-", "render-")):
            lines.append(f"| {step['name']} | skipped: {step['reason']} |" + " |" * (8 + len(STAGES)))
    text = "\n".join(lines) + "\n"
    (into / "summary.md").write_text(text)
    print(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("facts").add_argument("json", type=Path)
    speech_parser = sub.add_parser("speech")
    speech_parser.add_argument("seconds", type=float)
    speech_parser.add_argument("wav", type=Path)
    watch_parser = sub.add_parser("watch")
    watch_parser.add_argument("json", type=Path)
    watch_parser.add_argument("render", nargs=argparse.REMAINDER)
    summary_parser = sub.add_parser("summary")
    summary_parser.add_argument("folders", type=Path, nargs="+")
    summary_parser.add_argument("--into", type=Path)
    args = parser.parse_args()
    if args.command == "facts":
        facts(args.json)
    elif args.command == "speech":
        speech(args.seconds, args.wav)
    elif args.command == "watch":
        return watch(args.json, args.render[1:] if args.render[:1] == ["--"] else args.render)
    else:
        summary(args.folders, args.into or args.folders[0])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
