"""``python -m core``: the command line lives in :mod:`core.cli`.

Output piped into a reader that stops early (``python -m core sightings show 1 | head``) ends the command
quietly, as any Unix tool does, instead of with a BrokenPipeError traceback.
"""

import os
import sys

from core.cli import main

#: What a shell reports for a program ended by SIGPIPE (128 + 13).
BROKEN_PIPE_STATUS = 141


def run() -> int:
    try:
        status = main()
        sys.stdout.flush()  # the last output is written here, while the error can still be caught
    except BrokenPipeError:
        # Nothing more reaches the reader; point stdout at /dev/null so the interpreter's own flush at exit
        # does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE_STATUS
    return status


if __name__ == "__main__":
    sys.exit(run())
