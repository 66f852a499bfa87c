"""Many renders from one manifest: resumable batch jobs, locally or fanned out over a Ray cluster.

A manifest (``JOBS.csv`` or ``JOBS.jsonl``) lists one job per row: ``audio``, ``model``, ``output`` and any
render option (``batch_size``, ``crf``, ...). Every finished ``X.mp4`` gets a sidecar ``X.mp4.json`` recording what
made it (input hash, package checksum, options, tool version) and how it went (frames, timings). The sidecar is
written after the MP4 is in place, so with ``skip_existing`` a killed run picks up where it stopped: a job is
skipped only when its MP4 and a matching sidecar both exist.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from lipsync_render import __version__
from lipsync_render.errors import LipsyncError
from lipsync_render.inference import DeviceRequest
from lipsync_render.package import MANIFEST, resolve_package_path, sha256_file
from lipsync_render.pipeline import Renderer, RenderOptions, RenderResult

REQUIRED_COLUMNS = ("audio", "model")
# Options a manifest row may set, with their types. frames_dir is left out: one frames folder per job is not a
# batch use case, and jobs must not write outside their output.
OPTION_TYPES = {
    "batch_size": int, "workers": int, "device": str, "threads": int, "start_frame": int, "loop": str,
    "crf": int, "preset": str, "precision": str, "features": str, "encoder": str, "cuda_graph": bool,
}
# Options that change the pixels or the audio of an output; the others (batch size, workers, threads, device,
# CUDA graphs) only change how fast it is made, so changing them does not invalidate a finished output.
OUTPUT_OPTIONS = ("start_frame", "loop", "crf", "preset", "precision", "features", "encoder")
# Options a Renderer fixes when it loads (sessions, pool, encoder); jobs that share them share one Renderer.
RENDERER_OPTIONS = ("batch_size", "workers", "device", "threads", "precision", "cuda_graph", "encoder")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes"), ("0", "false", "no")
LEFTOVER_PATTERN = re.compile(r"^\.(?P<name>.*)\.(?P<pid>\d+)\.(partial\.mp4|tmp)$")


@dataclass
class Job:
    """One render: an audio file, a package and an output, with the row it came from."""

    audio: Path
    model: str
    output: Path
    options: RenderOptions
    source: str  # "JOBS.csv, line 4": where to look when it fails

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.output)

    @property
    def renderer_key(self) -> tuple:
        """Jobs with equal keys can share one loaded Renderer."""
        return (self.model, *(getattr(self.options, name) for name in RENDERER_OPTIONS))


@dataclass
class JobResult:
    """How one job went: status is ok, skipped or error; ``--json`` prints one object per job."""

    job: str
    input: str
    output: str
    model: str
    status: str = "ok"
    error: str | None = None
    frames: int = 0
    duration: float = 0.0
    fps: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    host: str = ""

    @classmethod
    def for_job(cls, job: Job, **values) -> "JobResult":
        return cls(job=job.source, input=str(job.audio), output=str(job.output), model=job.model, **values)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- manifests


def read_jobs(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Job]:
    """Jobs from a CSV or JSONL manifest; relative paths are taken from the manifest's directory.

    A row without an output goes to ``out_dir/AUDIO_STEM.mp4``. Raises LipsyncError naming the file and line of
    the first malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise LipsyncError(f"Job manifest {path} does not exist.")
    readers = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows}
    if path.suffix.lower() not in readers:
        raise LipsyncError(f"Job manifest {path} must be a .csv or .jsonl file.")
    base = path.resolve().parent
    out_dir = Path(out_dir).resolve() if out_dir is not None else None
    jobs = [_job_from_row(row, f"{path}, line {line}", base, out_dir) for line, row in readers[path.suffix.lower()](path)]
    if not jobs:
        raise LipsyncError(f"Job manifest {path} lists no jobs.")
    _check_unique_outputs(jobs)
    return jobs


def _csv_rows(path: Path) -> Iterable[tuple[int, dict]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, skipinitialspace=True)
            header = [name.strip() for name in reader.fieldnames or []]
            if not header:
                return
            reader.fieldnames = header
            _check_columns(header, f"{path}, line 1", "column")
            for row in reader:
                if None in row:
                    raise LipsyncError(f"{path}, line {reader.line_num}: the row has more cells than the header.")
                yield reader.line_num, {k: v.strip() for k, v in row.items() if v is not None and v.strip()}
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LipsyncError(f"{path} is not a readable CSV file ({exc}).") from None


def _jsonl_rows(path: Path) -> Iterable[tuple[int, dict]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise LipsyncError(f"{path} is not a UTF-8 text file ({exc}).") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LipsyncError(f"{path}, line {number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(row, dict):
            raise LipsyncError(f"{path}, line {number}: each line must be one JSON object.")
        _check_columns(list(row), f"{path}, line {number}", "key")
        yield number, {k: v for k, v in row.items() if v is not None and v != ""}


def _check_columns(names: list[str], where: str, word: str) -> None:
    unknown = [n for n in names if n not in (*REQUIRED_COLUMNS, "output", *OPTION_TYPES)]
    if unknown:
        raise LipsyncError(f"{where}: unknown {word} '{unknown[0]}' (known: audio, model, output, "
                           f"{', '.join(OPTION_TYPES)}).")
    missing = [n for n in REQUIRED_COLUMNS if n not in names]
    if missing:
        raise LipsyncError(f"{where}: no '{missing[0]}' {word} (every job needs audio and model, and an output "
                           "unless --out-dir is given).")


def _job_from_row(row: dict, where: str, base: Path, out_dir: Path | None) -> Job:
    for name in REQUIRED_COLUMNS:
        if name not in row:
            raise LipsyncError(f"{where}: the '{name}' cell is empty.")
    audio = _resolve(str(row["audio"]), base)
    if "output" in row:
        output = _resolve(str(row["output"]), base)
    elif out_dir is not None:
        output = out_dir / f"{audio.stem}.mp4"
    else:
        raise LipsyncError(f"{where}: no output is given and no --out-dir to put it in.")
    values = {name: _option_value(name, row[name], where) for name in OPTION_TYPES if name in row}
    options = RenderOptions(**values)
    try:
        options.check()
        DeviceRequest.parse(options.device)
        if options.encoder not in ("auto", "libx264", "nvenc"):
            raise LipsyncError(f"Unknown video encoder '{options.encoder}': use auto, libx264 or nvenc.")
    except LipsyncError as exc:
        raise LipsyncError(f"{where}: {exc}") from None
    return Job(audio=audio, model=_model_reference(str(row["model"]), base), output=output, options=options,
               source=where)


def _resolve(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _model_reference(text: str, base: Path) -> str:
    """A model path is taken from the manifest's directory; a bare name is looked up as usual when loaded."""
    if os.sep in text or "/" in text or text.startswith("."):
        return str(_resolve(text, base))
    return text


def _option_value(name: str, value, where: str):
    kind = OPTION_TYPES[name]
    text = str(value).strip()
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text.lower() in TRUE_WORDS + FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        raise LipsyncError(f"{where}: {name} must be true or false (got '{text}').")
    if kind is int:
        if isinstance(value, bool) or not re.fullmatch(r"-?\d+", text):
            raise LipsyncError(f"{where}: {name} must be a whole number (got '{text}').")
        return int(text)
    return text


def _check_unique_outputs(jobs: list[Job]) -> None:
    seen: dict[Path, Job] = {}
    for job in jobs:
        key = job.output.resolve()
        if key in seen:
            raise LipsyncError(f"{job.source}: writes {job.output}, which {seen[key].source} writes too.")
        seen[key] = job


# ---------------------------------------------------------------------------------------------- sidecars


def sidecar_path(output: Path) -> Path:
    """``X.mp4`` -> ``X.mp4.json``."""
    return output.with_name(output.name + ".json")


def output_options(options: RenderOptions) -> dict:
    """The options that change what an output holds."""
    return {name: getattr(options, name) for name in OUTPUT_OPTIONS}


def job_identity(job: Job, package_checksum: str) -> dict:
    """What a finished output must have been made from for a rerun to keep it."""
    return {"input_sha256": sha256_file(job.audio), "package_checksum": package_checksum,
            "options": output_options(job.options), "version": __version__}


def write_sidecar(job: Job, result: RenderResult, package_checksum: str, video_codec: str) -> None:
    """Record what made ``job.output`` beside it; atomic, and only once the MP4 is in place."""
    record = {
        "tool": "lipsync-render",
        **job_identity(job, package_checksum),
        "input": str(job.audio),
        "model": job.model,
        "output": str(job.output),
        "output_bytes": job.output.stat().st_size,
        "video_codec": video_codec,
        "status": result.status,
        "frames": result.frames,
        "duration": result.duration,
        "fps": result.fps,
        "seconds": result.seconds,
        "providers": result.providers,
        "host": socket.gethostname(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    temporary = job.sidecar.with_name(f".{job.sidecar.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, job.sidecar)


def is_done(job: Job) -> bool:
    """Whether the job's MP4 exists and its sidecar says it was made from the same input, package and options."""
    if not job.output.is_file() or not job.sidecar.is_file():
        return False
    try:
        record = json.loads(job.sidecar.read_text())
        checksum = sha256_file(resolve_package_path(job.model) / MANIFEST)
        expected = job_identity(job, checksum)
    except (OSError, ValueError, LipsyncError):
        return False  # unreadable sidecar, missing input or package: render it and let that report the problem
    return (isinstance(record, dict) and record.get("status") == "ok"
            and record.get("output_bytes") == job.output.stat().st_size
            and all(record.get(key) == value for key, value in expected.items()))


def remove_stale_partials(output: Path) -> None:
    """Delete the partial MP4 and sidecar files a killed run left for this output (their process is gone).

    The process id in a partial's name is only checked on this machine; two runs rendering the same output at
    once on two machines of a shared file system are not supported anyway (the outputs would race too).
    """
    import glob

    import psutil

    if not output.parent.is_dir():
        return
    leftovers = {output.stem: f".{glob.escape(output.stem)}.*.partial.mp4",
                 sidecar_path(output).name: f".{glob.escape(sidecar_path(output).name)}.*.tmp"}
    for name, pattern in leftovers.items():
        for path in output.parent.glob(pattern):
            match = LEFTOVER_PATTERN.match(path.name)
            if match and match["name"] == name and not psutil.pid_exists(int(match["pid"])):
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- running


class JobWorker:
    """Renders jobs with one loaded Renderer, reloading only when a job needs another package or session setup.

    Used as is for local runs and wrapped as a Ray actor for cluster runs.
    """

    def __init__(self, single_gpu: bool = False, threads: int = 0):
        self.single_gpu = single_gpu  # a Ray GPU actor sees exactly one GPU, as cuda:0
        self.threads = threads  # ONNX Runtime threads when a job leaves them at 0 (all cores)
        self.renderer: Renderer | None = None
        self.key: tuple | None = None
        self.load_error: str | None = None

    def run(self, job: Job) -> JobResult:
        """Render one job and write its sidecar; failures become an error result."""
        job = self._adapt(job)
        try:
            renderer = self._renderer_for(job)
            job.output.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(job.output)
            # Per-render options (loop, crf, ...) are read from renderer.options at each render; the ones fixed at
            # load time are equal within a renderer_key, so swapping the options object is safe.
            renderer.options = replace(job.options, batch_size=renderer.options.batch_size,
                                       workers=renderer.options.workers)  # keep the resolved ones
            result = renderer.render(job.audio, job.output)
            write_sidecar(job, result, renderer.package.checksum, renderer.video_codec)
        except LipsyncError as exc:
            return JobResult.for_job(job, status="error", error=str(exc), host=socket.gethostname())
        except OSError as exc:
            message = f"Could not write {exc.filename or job.output}: {exc.strerror or exc}."
            return JobResult.for_job(job, status="error", error=message, host=socket.gethostname())
        return JobResult.for_job(job, frames=result.frames, duration=result.duration, fps=result.fps,
                                 seconds=result.seconds, providers=result.providers, host=socket.gethostname())

    def _adapt(self, job: Job) -> Job:
        options = job.options
        if self.single_gpu and ":" in options.device:
            options = replace(options, device=options.device.split(":")[0])
        if self.threads and options.threads == 0:
            options = replace(options, threads=self.threads)
        return job if options is job.options else replace(job, options=options)

    def _renderer_for(self, job: Job) -> Renderer:
        if self.key != job.renderer_key:
            self.close()
            self.key = job.renderer_key
            try:
                self.renderer = Renderer(job.model, replace(job.options))
            except LipsyncError as exc:
                self.load_error = str(exc)
        if self.renderer is None:
            raise LipsyncError(self.load_error or "The renderer could not be loaded.")
        return self.renderer

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        self.renderer, self.key, self.load_error = None, None, None


def run_jobs(jobs: list[Job], skip_existing: bool = False, fail_fast: bool = False,
             on_result: Callable[[JobResult], None] | None = None, ray_address: str | None = None) -> list[JobResult]:
    """Run jobs here (or on Ray when ``ray_address`` is given); results come back in job order.

    Jobs are grouped so that each package and session setup loads once. ``on_result`` sees each result as it
    finishes. With ``fail_fast`` no job is started after the first failure; jobs not started have no result.
    """
    results: dict[int, JobResult] = {}

    def report(index: int, result: JobResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(result)

    pending = []
    for index, job in enumerate(jobs):
        if skip_existing and is_done(job):
            report(index, JobResult.for_job(job, status="skipped", **_recorded(job)))
        else:
            pending.append(index)
    if ray_address is not None:
        from lipsync_render.ray_jobs import run_on_ray

        run_on_ray(list(jobs), pending, fail_fast, report, ray_address)
    else:
        _run_here(jobs, pending, fail_fast, report)
    return [results[i] for i in sorted(results)]


def _recorded(job: Job) -> dict:
    """Frames, duration and timings of a skipped job, from its sidecar."""
    record = json.loads(job.sidecar.read_text())
    return {name: record[name] for name in ("frames", "duration", "fps", "seconds", "providers", "host")
            if name in record}


def grouped(jobs: list[Job], indices: list[int]) -> list[int]:
    """Indices ordered so jobs sharing a renderer run back to back (groups in order of first appearance)."""
    first: dict[tuple, int] = {}
    for i in indices:
        first.setdefault(jobs[i].renderer_key, len(first))
    return sorted(indices, key=lambda i: first[jobs[i].renderer_key])


def _run_here(jobs: list[Job], pending: list[int], fail_fast: bool, report) -> None:
    worker = JobWorker()
    try:
        for index in grouped(jobs, pending):
            result = worker.run(jobs[index])
            report(index, result)
            if result.status == "error" and fail_fast:
                break
    finally:
        worker.close()


# ---------------------------------------------------------------------------------------------- reporting


class JobReporter:
    """One progress bar over all jobs (stderr, terminals only), a line per job and a closing summary."""

    def __init__(self, total: int, enabled: bool = True):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.total = total
        self.enabled = enabled
        self.results: list[JobResult] = []
        self.progress = None
        self.task = None

    def __enter__(self) -> "JobReporter":
        if self.enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("jobs"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                     console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("jobs", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def add(self, result: JobResult) -> None:
        """Print one line for a finished job and advance the bar."""
        self.results.append(result)
        if self.enabled:
            self.console.print(_describe(result), markup=False, soft_wrap=True)
        if self.progress is not None:
            self.progress.advance(self.task)

    def summary(self) -> None:
        if not self.enabled:
            return
        counts = {status: sum(r.status == status for r in self.results) for status in ("ok", "skipped", "error")}
        not_run = self.total - len(self.results)
        line = f"{counts['ok']} rendered, {counts['skipped']} skipped, {counts['error']} failed"
        self.console.print(line + (f", {not_run} not run" if not_run else ""), markup=False, soft_wrap=True)


def _describe(result: JobResult) -> str:
    if result.status == "error":
        return f"error: {result.job}: {result.error}"
    if result.status == "skipped":
        return f"skip  {result.output} (up to date)"
    return f"ok    {result.input} -> {result.output}  {result.frames} frames, {result.fps:.1f} fps"
