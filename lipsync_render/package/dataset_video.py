"""Frames of a dataset's video (``--video``, or the pre-processed layout's ``full_body_video.mp4``), decoded with
PyAV one at a time and counted against the rectangles they go with; errors name the file.

Frames are converted with ``media.colour.decode_bgr``, the exact matrix and range the video's tags name (the
one decode the tool has; ``media.video.read_frames_bgr`` uses it too). swscale's default ``to_ndarray("bgr24")``,
which earlier versions used here, reads about one level dark (+0.78 levels mean on the test video), so a package
built from a video now holds the colours a player shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lipsync_render.errors import PackageError
from lipsync_render.media.colour import decode_bgr


def open_video(path: Path):
    """An open PyAV container with a video stream; errors name the file."""
    import av

    if not path.is_file():
        raise PackageError(f"Video {path} does not exist.")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise PackageError(f"Cannot open video {path} ({exc}).") from None
    if not container.streams.video:
        container.close()
        raise PackageError(f"{path} has no video stream.")
    return container


def video_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video's first stream."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        return int(stream.codec_context.width), int(stream.codec_context.height)


def video_frames(path: Path, frame_count: int, width: int, height: int, count_origin: str) -> Iterator[np.ndarray]:
    """BGR frames decoded with PyAV, one at a time; the video must hold exactly ``frame_count`` frames
    (``count_origin`` says where that number comes from, e.g. "landmarks/ has 12 landmark files")."""
    import av

    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded > frame_count:
                    continue  # only count the rest, for the error message
                image = decode_bgr(frame)
                if image.shape != (height, width, 3):
                    raise PackageError(
                        f"Frame {decoded - 1} of {path} is {image.shape[1]}x{image.shape[0]}; "
                        f"the first frame is {width}x{height}."
                    )
                yield image
        except av.FFmpegError as exc:
            raise PackageError(f"Cannot decode video {path} at frame {decoded} ({exc}).") from None
    if decoded != frame_count:
        raise PackageError(f"{path} has {decoded} frames but {count_origin}.")
