"""The decoding worker: ``python -m core.engine.decode_worker``, started by :class:`core.engine.decoding.DecoderPool`.

Reads one request at a time from its standard input, decodes with :func:`core.engine.images.decode_here` under
an address-space limit (the request's memory budget plus what the worker already uses), and answers on its
original standard output: the photo's metadata and cost, then the raw pixels; or the error to raise. Anything
else printed goes to standard error, so it cannot garble an answer. Exits when its input closes.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import numpy as np

from core.engine.decoding import DecodeCost, read_message, write_message
from core.engine.images import decode_here
from core.errors import ImageError

#: Room above the budget for the decoder's own buffers and the estimates' rounding.
_MARGIN = 256 * 1024 * 1024


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (0 where there is no /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM, the peak resident size, to the current one
    except OSError:
        pass


def handle(request: dict[str, Any]) -> tuple[tuple[Any, ...], np.ndarray | None]:
    budget = request["budget"]
    _reset_peak()
    before = _status("VmRSS")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _status("VmSize") + budget.memory + _MARGIN
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    started = time.perf_counter()
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        try:
            loaded = decode_here(request["data"], name=request["name"], max_pixels=request["max_pixels"], budget=budget)
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except MemoryError:
        name = request["name"]
        photo = f"The photo '{name}'" if name else "This photo"
        message = f"{photo} is too large for this server's memory. Please upload a smaller version of the photo."
        return ("error", ImageError(message)), None
    except (ImageError, ValueError, TypeError) as exc:
        return ("error", exc), None
    cost = DecodeCost(max(0, _status("VmHWM") - before), time.perf_counter() - started)
    return ("ok", loaded.pixels.shape, loaded.info, cost), loaded.pixels


def main() -> None:
    answers = os.dup(1)
    os.dup2(2, 1)  # stray prints go to standard error
    while True:
        try:
            request = read_message(0)
        except EOFError:
            return
        answer, pixels = handle(request)
        write_message(answers, answer)
        if pixels is not None:
            view = pixels.data.cast("B")  # C-contiguous: sent without a copy
            while view:
                view = view[os.write(answers, view) :]


if __name__ == "__main__":
    main()
