"""How a package keeps its background frames: ``npy`` (raw, memory-mapped) or ``jpeg`` (tiled JPEG in one file).

Every reader of package frames goes through a :class:`FrameStore` (``open_frame_store``): ``store[i]`` is frame
``i`` as (H, W, 3) uint8 BGR, ``store.rect_pixels(i, rect)`` the pixels needed for a crop. The ``npy`` store is a
zero-copy memory map. The ``jpeg`` store holds each frame as a grid of independently coded JPEG tiles (256x256,
aligned to the 16-pixel 4:2:0 block grid) in one data file, with an offset index: random access by frame index is
O(1), and the prepare stage decodes only the tiles under the face rectangle. The formats, the choice of codec and
the measured sizes and speeds are in ``packages/README.md``.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from lipsync_render.errors import PackageError
from lipsync_render.store_choice import JPEG, NPY, store_choice

FILE_NAMES = {NPY: {"frames": "frames.npy"}, JPEG: {"frames": "frames.jpg.bin", "frames_index": "frames.index.npy"}}
_SOF_MARKERS = {0xC0, 0xC1, 0xC2}  # baseline, extended and progressive Huffman JPEG: what libjpeg-turbo decodes


def tile_boxes(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """The tiles of a frame, row by row, as (y0, y1, x0, x1)."""
    return [
        (y, min(y + tile, height), x, min(x + tile, width))
        for y in range(0, height, tile)
        for x in range(0, width, tile)
    ]


class FrameStore:
    """A package's background frames by index: ``store[i]`` is (H, W, 3) uint8 BGR."""

    codec: str
    shape: tuple[int, int, int, int]
    files: tuple[Path, ...]
    dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return self.read(self._index(index))

    def __iter__(self):
        return (self.read(i) for i in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every frame in one array (decodes them all: for tests and small packages, never for rendering)."""
        return np.stack(list(self)) if dtype is None else np.stack(list(self)).astype(dtype)

    def _index(self, index: int) -> int:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} is outside the {len(self)} frames of {self.files[0]}")
        return index % len(self)

    @property
    def disk_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``index``; a store that decodes writes into ``out`` when given."""
        raise NotImplementedError

    def rect_pixels(self, index: int, rect) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """(pixels, rect within them): at least the pixels of ``rect`` of frame ``index``, exactly as ``read``."""
        raise NotImplementedError


class NpyFrameStore(FrameStore):
    """Raw frames in one ``.npy``, memory-mapped: paged in on demand, shared between processes, exact."""

    codec = NPY

    def __init__(self, path: Path):
        self.path = Path(path)
        self.files = (self.path,)
        self.array = np.load(self.path, mmap_mode="r")
        self.shape = tuple(self.array.shape)

    def __reduce__(self):
        return NpyFrameStore, (self.path,)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        return self.array[index]

    def rect_pixels(self, index: int, rect) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        return self.array[index], tuple(int(v) for v in rect)


class JpegFrameStore(FrameStore):
    """Frames as JPEG tiles in one data file; ``offsets[k]:offsets[k + 1]`` is tile ``k % T`` of frame ``k // T``."""

    codec = JPEG

    def __init__(self, data_path: Path, index_path: Path, count: int, height: int, width: int, tile: int):
        self.data_path, self.index_path = Path(data_path), Path(index_path)
        self.files = (self.data_path, self.index_path)
        self.shape = (count, height, width, 3)
        self.tile = tile
        self.boxes = tile_boxes(width, height, tile)
        self.columns = math.ceil(width / tile)
        self.offsets = np.load(self.index_path, mmap_mode="r")
        size = self.data_path.stat().st_size
        self.data = np.memmap(self.data_path, np.uint8, mode="r") if size else np.zeros(0, np.uint8)

    def __reduce__(self):
        count, height, width, _ = self.shape
        return JpegFrameStore, (self.data_path, self.index_path, count, height, width, self.tile)

    def read(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(self.shape[1:], np.uint8)
        for t, (y0, y1, x0, x1) in enumerate(self.boxes):
            out[y0:y1, x0:x1] = self._decode(index, t)
        return out

    def rect_pixels(self, index: int, rect) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        x1, y1, x2, y2 = (int(v) for v in rect)
        rows = range(y1 // self.tile, (max(y2, y1 + 1) - 1) // self.tile + 1)
        cols = range(x1 // self.tile, (max(x2, x1 + 1) - 1) // self.tile + 1)
        top, left = rows[0] * self.tile, cols[0] * self.tile
        bottom = self.boxes[rows[-1] * self.columns][1]
        right = self.boxes[cols[-1]][3]
        pixels = np.empty((bottom - top, right - left, 3), np.uint8)
        for r in rows:
            for c in cols:
                y0, y1b, x0, x1b = self.boxes[r * self.columns + c]
                pixels[y0 - top : y1b - top, x0 - left : x1b - left] = self._decode(index, r * self.columns + c)
        return pixels, (x1 - left, y1 - top, x2 - left, y2 - top)

    def _decode(self, index: int, t: int) -> np.ndarray:
        y0, y1, x0, x1 = self.boxes[t]
        k = index * len(self.boxes) + t
        start, stop = int(self.offsets[k]), int(self.offsets[k + 1])
        where = f"{self.data_path}: frame {index}, tile {t}"
        if not 0 <= start < stop <= len(self.data):
            raise PackageError(f"{where} lies at bytes {start}-{stop}, outside the file's {len(self.data)} bytes.")
        code = self.data[start:stop]
        size = jpeg_size(code)
        if size != (x1 - x0, y1 - y0):
            found = "is not a JPEG image" if size is None else f"is a {size[0]}x{size[1]} JPEG"
            raise PackageError(f"{where} {found}; a {x1 - x0}x{y1 - y0} JPEG tile was expected.")
        image, message = decode_reporting(code)
        if message:
            raise PackageError(f"{where} is a damaged JPEG (the decoder says: {message}).")
        if image is None or image.shape != (y1 - y0, x1 - x0, 3):
            raise PackageError(f"{where} does not decode to a {x1 - x0}x{y1 - y0} colour image.")
        return image


_DECODER_LOCK = threading.Lock()
_MESSAGES: list = []  # (pid, an unlinked temporary file): one per process, opened on first use


def decode_reporting(code: np.ndarray) -> tuple[np.ndarray | None, str]:
    """``cv2.imdecode`` of one JPEG, and what libjpeg said while decoding it ('' when nothing).

    libjpeg reports a damaged scan ('Corrupt JPEG data: premature end of data segment') as a *warning*, printed to
    the process's stderr, and still returns an image with garbage where the data was bad; OpenCV passes neither
    on. So stderr (the file descriptor, where C writes) points at a temporary file for the decode, under a lock:
    about 5 us per tile against 300 us to decode it. Text another thread wrote in that window is passed on to the
    real stderr; anything libjpeg wrote is the decoder's complaint, and the tile is refused."""
    with _DECODER_LOCK:
        if not _MESSAGES or _MESSAGES[0][0] != os.getpid():  # a forked worker gets a file of its own
            _MESSAGES[:] = [(os.getpid(), tempfile.TemporaryFile())]  # noqa: SIM115 (kept for the process)
        capture = _MESSAGES[0][1]
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            image = cv2.imdecode(code, cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if not os.fstat(capture.fileno()).st_size:
            return image, ""
        capture.seek(0)
        text = capture.read(1 << 16).decode("utf-8", "replace")
        capture.seek(0)
        capture.truncate()
    ours = [line for line in text.splitlines() if _LIBJPEG.search(line)]
    others = [line for line in text.splitlines() if line.strip() and not _LIBJPEG.search(line)]
    if others:
        os.write(2, ("\n".join(others) + "\n").encode())
    return image, "; ".join(ours)[:200]


_LIBJPEG = re.compile(r"JPEG|Huffman|marker|data segment|DCT|quantization|scan|sampling|component|Bogus", re.I)


def jpeg_size(code: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None unless it is a whole baseline/progressive JPEG."""
    if len(code) < 4 or bytes(code[:2]) != b"\xff\xd8" or bytes(code[-2:]) != b"\xff\xd9":
        return None
    head = bytes(code[: 1 << 16])
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            if pos + 10 > len(head) or head[pos + 9] not in (1, 3):
                return None
            return int.from_bytes(head[pos + 7 : pos + 9], "big"), int.from_bytes(head[pos + 5 : pos + 7], "big")
        if marker == 0xDA or 0xC3 <= marker <= 0xCF:  # a scan before the frame header, or a codec we do not take
            return None
        pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
    return None


def open_frame_store(paths: dict[str, Path], manifest: dict) -> FrameStore:
    """The frames store a checked manifest declares, its index and size checked; PackageError naming the file."""
    choice = store_choice(manifest)
    expected = (manifest["frame_count"], manifest["height"], manifest["width"], 3)
    if choice.codec == NPY:
        try:
            store = NpyFrameStore(paths["frames"])
        except (ValueError, OSError) as exc:
            raise PackageError(f"{paths['frames']} is not a readable .npy frame array ({exc}).") from None
        if store.array.dtype != np.uint8 or store.shape != expected:
            raise PackageError(
                f"{store.path} holds {store.array.dtype} {store.shape} but the manifest says uint8 {expected}."
            )
        return store
    index_path = paths["frames_index"]
    tiles = len(tile_boxes(expected[2], expected[1], choice.tile))
    try:
        offsets = np.load(index_path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise PackageError(f"{index_path} is not a readable .npy offset index ({exc}).") from None
    count = expected[0] * tiles + 1
    if offsets.dtype != np.dtype("<i8") or offsets.shape != (count,):
        raise PackageError(
            f"{index_path} holds {offsets.dtype} {offsets.shape}; {expected[0]} frames of {tiles} tiles need int64 "
            f"({count},) offsets."
        )
    size = paths["frames"].stat().st_size
    steps = np.diff(offsets)
    if offsets[0] != 0 or offsets[-1] != size or (steps <= 0).any():
        raise PackageError(
            f"{index_path} is not a valid offset index for {paths['frames']}: offsets must rise strictly from 0 "
            f"to the file's size, {size} bytes."
        )
    store = JpegFrameStore(paths["frames"], index_path, *expected[:3], choice.tile)
    store.read(0)  # a store that cannot decode its first frame fails here, not at render time
    return store


def verify_frames(store: FrameStore) -> list[str]:
    """Decode every frame (``package validate``): the first one that fails, as a one-sentence problem."""
    if store.codec == NPY:
        return []
    scratch = np.empty(store.shape[1:], np.uint8)
    try:
        for index in range(len(store)):
            store.read(index, out=scratch)
    except PackageError as exc:
        return [str(exc)]
    return []
