"""Which MP4 each audio file of one render call is written to, refused before anything renders when two inputs
would share a file or an output would overwrite an input."""

from __future__ import annotations

from pathlib import Path

from lipsync_render.errors import OptionError
from lipsync_render.paths import first_collision, first_overwritten_input


def planned_outputs(audio: list[Path], output: Path | None = None, out_dir: Path | None = None) -> list[Path]:
    """Each input's MP4: ``output`` for every input when given, else ``OUT_DIR/AUDIO_STEM.mp4`` (default: the
    current directory). No two inputs to one file, no output onto an input (OptionError); ``out_dir`` is created."""
    targets = [output or (out_dir or Path(".")) / f"{path.stem}.mp4" for path in audio]
    collision = first_collision([(str(path), target) for path, target in zip(audio, targets)])
    if collision:
        first, second, target = collision
        raise OptionError(
            f"{first} and {second} would both be written to {target}; render them to different --out-dir folders."
        )
    overwritten = first_overwritten_input(targets, audio)
    if overwritten:
        raise OptionError(f"The output {overwritten[0]} is the input {overwritten[1]}; refusing to overwrite an input.")
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OptionError(f"Cannot create the output directory {out_dir} ({exc.strerror or exc}).") from None
    return targets
