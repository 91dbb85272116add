"""What decoding a photo may cost, checked from its header, and worker processes that decode within that budget.

Why: bytes and pixels do not bound what a decode costs. A sub-megabyte TIFF of 32-bit floats expands to
gigabytes on its way to 8-bit RGB; a progressive JPEG's cost grows with its number of scans (each one walks
the whole image again), so a 2 MB file with thousands of scans keeps a core busy for minutes. Hence:

* :func:`check_cost` refuses from the header what would exceed the :class:`DecodeBudget`: too many frames or
  pages, too many JPEG scans, or an estimated peak memory (pixels x bytes per pixel of the decoded mode,
  its bit depth and sample format, plus the conversion to RGB) over the budget;
* :class:`DecoderPool` runs every decode of untrusted bytes in a separate worker process with an address-space
  limit (the memory budget plus the worker's own size) and a deadline: a worker past its deadline is killed,
  so an upload that slipped past the estimates costs at most ``seconds`` of one core, never the server.

Workers are plain Python processes running :mod:`core.engine.decode_worker` that stay up between decodes (starting
one costs about 0.4 s, a decode's round trip a few milliseconds plus copying the pixels once). They exit on
their own when this process goes away (their input pipe closes).
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from core.errors import ImageError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_DECODE_MEMORY",
    "MAX_DECODE_SECONDS",
    "MAX_FRAMES",
    "MAX_SCANS",
    "DecodeBudget",
    "DecodeCost",
    "DecoderPool",
    "check_cost",
    "default_pool",
    "estimated_memory",
]

MAX_DECODE_MEMORY: int = 1_500_000_000
"""Peak memory one decode may need (1.5 GB: a 120-megapixel 8-bit RGB photo needs about 1.2 GB)."""

MAX_DECODE_SECONDS: float = 20.0
"""Wall-clock time one decode may take in its worker (a 108-megapixel phone JPEG takes 2-3 s on a laptop core)."""

MAX_FRAMES: int = 32
"""Frames or pages a file may hold (phones' MPO and HEIC files carry 2-3; only the first is decoded)."""

MAX_SCANS: int = 100
"""Scans a JPEG may hold (progressive encoders write about 10; each scan walks the whole image again)."""


@dataclass(frozen=True)
class DecodeBudget:
    """What one decode may cost; the defaults are the documented limits (README, "Reliability and security")."""

    memory: int = MAX_DECODE_MEMORY
    seconds: float = MAX_DECODE_SECONDS
    frames: int = MAX_FRAMES
    scans: int = MAX_SCANS

    def __post_init__(self) -> None:
        if self.memory < 1 or self.seconds <= 0 or self.frames < 1 or self.scans < 1:
            raise ValueError(f"every decode budget must be positive, got {self}")


@dataclass(frozen=True)
class DecodeCost:
    """What a decode cost in its worker: peak resident memory of the worker during it, and seconds."""

    peak_bytes: int
    seconds: float


# --------------------------------------------------------------------------------------------------
# Costs read from the header

# Bytes per pixel Pillow holds for a decoded image of each mode (multi-band images take 4 bytes a pixel).
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Bytes per pixel of the conversion to RGB on top of the decoded image: the numpy copy, any intermediate image
# or wider working array, the 3-byte result and one more 3-byte copy for orientation (core.engine.images).
_CONVERT_RGB = 6  # RGB: the numpy copy (the result) 3 + its oriented copy 3
_CONVERT_PALETTE = 10  # L, P, CMYK, YCbCr...: an RGB image (4) first
_CONVERT_ALPHA = 14  # RGBA, LA, PA: an RGBA and an RGB image first
_CONVERT_WIDE = 15  # 16/32-bit and float: the copy 4, a 4-byte working array, 8-bit grey 1, RGB 3, oriented 3
# Decoders' own buffers: a progressive JPEG keeps every DCT coefficient (2 bytes a sample) until it ends.
_PROGRESSIVE_JPEG = 6

_SAMPLES = {
    "1": "1-bit",
    "L": "8-bit",
    "P": "8-bit palette",
    "I": "32-bit integer",
    "F": "32-bit floating-point",
}


def _describe(mode: str) -> str:
    if mode.startswith("I;16"):
        return "16-bit"
    return _SAMPLES.get(mode, f"8-bit {mode}")


def estimated_memory(mode: str, size: tuple[int, int], progressive: bool = False) -> int:
    """Peak bytes to decode an image of ``mode`` and ``size`` and turn it into RGB (an upper estimate)."""
    pixels = size[0] * size[1]
    stored = _STORED.get(mode, 4)
    if mode.startswith("I;16") or mode in ("I", "F"):
        convert = _CONVERT_WIDE
    elif mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        convert = _CONVERT_ALPHA
    elif mode == "RGB":
        convert = _CONVERT_RGB
    else:
        convert = _CONVERT_PALETTE
    decoder = _PROGRESSIVE_JPEG if progressive else 0
    return pixels * (stored + max(convert, decoder))


def check_cost(im: Image.Image, stream: BinaryIO, photo: str, budget: DecodeBudget) -> None:
    """Refuse, before decoding, a file whose frames, scans or memory would exceed ``budget``.

    ``photo`` names the file in messages ("The photo 'x.jpg'"). ``stream`` is the file Pillow reads; its
    position is restored.
    """
    frames = _frame_count(im, stream, budget.frames)
    if frames > budget.frames:
        raise ImageError(
            f"{photo} holds more than {budget.frames} pictures or pages; Scute reads single photos. "
            "Please upload the one photo on its own, as a JPEG or PNG."
        )
    progressive = False
    if im.format in ("JPEG", "MPO"):
        scans = _jpeg_scans(stream)
        progressive = bool(im.info.get("progressive") or im.info.get("progression"))
        if scans > budget.scans:
            raise ImageError(
                f"{photo} is a JPEG built from {scans} scans (ordinary photos have at most about 10; the limit "
                f"is {budget.scans}), which would take very long to decode. "
                "Please open it in a photo editor and save it again as an ordinary JPEG."
            )
    needed = estimated_memory(im.mode, im.size, progressive)
    if needed > budget.memory:
        width, height = im.size
        raise ImageError(
            f"{photo} would need about {needed / 1e9:.1f} GB of memory to decode ({width} × {height} pixels "
            f"of {_describe(im.mode)} samples; the limit is {budget.memory / 1e9:.1f} GB). "
            "Please export it as an 8-bit JPEG or PNG, or at a lower resolution."
        )


def _jpeg_scans(stream: BinaryIO) -> int:
    """Start-of-scan markers in the file. Entropy-coded data escapes 0xFF bytes, so each one is a real scan
    (of the photo or of an embedded preview, which is a scan either way)."""
    position = stream.tell()
    try:
        stream.seek(0)
        return stream.read().count(b"\xff\xda")
    finally:
        stream.seek(position)


def _frame_count(im: Image.Image, stream: BinaryIO, limit: int) -> int:
    """Frames or pages, counting at most ``limit + 1``: a TIFF's page chain is walked here, bounded, because
    Pillow's ``n_frames`` walks all of it (millions of tiny pages fit in a few megabytes)."""
    if im.format == "TIFF":
        return _tiff_pages(stream, limit)
    try:
        return int(getattr(im, "n_frames", 1) or 1)
    except Exception:  # a malformed frame index: the decode itself decides
        return 1


def _tiff_pages(stream: BinaryIO, limit: int) -> int:
    position = stream.tell()
    try:
        stream.seek(0)
        head = stream.read(16)
        order = "<" if head[:2] == b"II" else ">"
        big = struct.unpack_from(f"{order}H", head, 2)[0] == 43  # BigTIFF
        offset_format, count_format = (f"{order}Q", f"{order}Q") if big else (f"{order}I", f"{order}H")
        offset = struct.unpack_from(offset_format, head, 8 if big else 4)[0]
        entry = 20 if big else 12
        pages, seen = 0, set()
        while offset and offset not in seen and pages <= limit:
            seen.add(offset)
            stream.seek(offset)
            raw = stream.read(struct.calcsize(count_format))
            if len(raw) < struct.calcsize(count_format):
                break
            (entries,) = struct.unpack(count_format, raw)
            stream.seek(offset + len(raw) + entries * entry)
            raw = stream.read(struct.calcsize(offset_format))
            pages += 1
            if len(raw) < struct.calcsize(offset_format):
                break
            (offset,) = struct.unpack(offset_format, raw)
        return max(1, pages)
    except (struct.error, OSError, ValueError):
        return 1  # a header Pillow opened but this walk cannot follow: the decode itself decides
    finally:
        stream.seek(position)


# --------------------------------------------------------------------------------------------------
# Worker processes

_HEADER = struct.Struct(">Q")
_WORKER_MODULE = "core.engine.decode_worker"
_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the ``core`` package


def write_message(fd: int, message: object) -> None:
    """One pickled message, length first (both ends are this code: pickle is safe here)."""
    blob = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    _write_all(fd, _HEADER.pack(len(blob)) + blob)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, size: int, deadline: float | None = None, into: memoryview | None = None) -> memoryview:
    """Exactly ``size`` bytes from ``fd`` (into ``into`` when given); TimeoutError past ``deadline``,
    EOFError when the other end has gone."""
    buffer = into if into is not None else memoryview(bytearray(size))
    done = 0
    while done < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        got = os.readv(fd, [buffer[done:size]])
        if got == 0:
            raise EOFError
        done += got
    return buffer


def read_message(fd: int, deadline: float | None = None) -> Any:
    (size,) = _HEADER.unpack(read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(read_exact(fd, size, deadline))


class _Worker:
    """One decoding process and its pipes."""

    def __init__(self) -> None:
        # The worker finds this checkout's ``core`` first, whatever the current folder and environment.
        start = f"import sys; sys.path.insert(0, {str(_ROOT)!r}); from {_WORKER_MODULE} import main; main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", start], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.to_worker = self.process.stdin.fileno()
        self.from_worker = self.process.stdout.fileno()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class DecoderPool:
    """Worker processes that decode one photo at a time each; at most ``size`` run at once.

    :meth:`run` sends a request and waits at most ``seconds`` for the answer; a worker that misses its
    deadline (or dies) is killed and replaced on the next request. Thread-safe.
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = size or max(1, os.cpu_count() or 1)
        self._slots = threading.BoundedSemaphore(self.size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        #: Workers started so far (tests check that a killed worker is replaced, not leaked).
        self.started = 0

    def run(
        self,
        request: dict[str, Any],
        seconds: float,
        too_slow: Callable[[], ImageError],
        crashed: Callable[[], ImageError],
    ) -> tuple[Any, np.ndarray | None]:
        """The worker's answer and its pixels (None when it sent none); raises what the worker raised, or
        ``too_slow()`` past the deadline and ``crashed()`` when the worker died (both after killing it)."""
        with self._slots:
            worker = self._take()
            deadline = time.monotonic() + seconds
            try:
                write_message(worker.to_worker, request)
                answer = read_message(worker.from_worker, deadline)
                pixels = None
                if answer[0] == "ok":
                    shape = answer[1]
                    pixels = np.empty(shape, np.uint8)
                    read_exact(worker.from_worker, pixels.nbytes, deadline, pixels.data.cast("B"))
            except TimeoutError:
                worker.stop()
                raise too_slow() from None
            except (EOFError, OSError, pickle.UnpicklingError):
                worker.stop()
                raise crashed() from None
            except BaseException:  # KeyboardInterrupt, a thread stopped mid-read: the pipe is out of step
                worker.stop()
                raise
            with self._lock:
                self._idle.append(worker)
        if answer[0] == "error":
            raise answer[1]
        return answer, pixels

    def close(self) -> None:
        """Stop every idle worker (busy ones are stopped by their callers' deadlines)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    return worker
                worker.stop()
            self.started += 1
        return _Worker()


_POOL: tuple[int, DecoderPool] | None = None  # (the process that started it, the pool)
_POOL_LOCK = threading.Lock()


def default_pool() -> DecoderPool:
    """The process's pool, started on first use and stopped at exit. A forked child gets a pool of its own:
    its parent's workers answer on pipes the parent reads too."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            pool = DecoderPool()
            atexit.register(pool.close)
            _POOL = (os.getpid(), pool)
        return _POOL[1]
