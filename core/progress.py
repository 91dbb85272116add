"""The shapes of progress callbacks, shared by the engine, imports, evaluations and their progress bars."""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(done, total)`` after each step of one job.
Progress = Callable[[int, int], None]
#: ``progress(stage, done, total)`` for jobs in several stages (an evaluation: "gallery", then "queries").
StageProgress = Callable[[str, int, int], None]
