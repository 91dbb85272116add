"""Long work (catalogue imports) in a background thread of the app, so that no request waits on it.

A job outlives the page that started it: the admin may leave Curate, come back and find its progress, stop
it, or resume it. Imports commit row by row and recognise photos already in the gallery, so a stopped or
failed import resumed later redoes nothing that was finished. Jobs live in the app process (one
:class:`Jobs` per :class:`~core.service.app.App`); a job interrupted by a restart is resumed by importing
the same catalogue again.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import ScuteError

log = logging.getLogger(__name__)

#: ``work(progress)`` runs the job; ``progress(stage, done, total)`` reports, and raises JobStopped when asked.
Work = Callable[[Callable[[str, int, int], None]], Any]


class JobStopped(ScuteError):
    """Raised inside a job's work at its next progress report after someone pressed Stop."""


@dataclass
class Job:
    id: int
    label: str
    user: str
    work: Work = field(repr=False)
    folder: Path | None = None  # the job's own copy of its input (uploads), removed when it finishes
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    stage: str = "waiting"
    done: int = 0
    total: int = 0
    state: str = "running"  # running, finished, stopped, failed
    error: str = ""
    result: Any = None
    finished: datetime | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def progress(self, stage: str, done: int, total: int) -> None:
        """Record how far the work got (``done`` steps are finished), then stop there if asked to."""
        self.stage, self.done, self.total = stage, done, total
        if self._stop.is_set() and done < total:
            raise JobStopped("Stopped on request.")

    def stop(self) -> None:
        """Ask the job to stop after the row it is working on (what is finished stays)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running


class Jobs:
    """The app process's background jobs, newest first; finished ones are kept for the page to report."""

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, label: str, user: str, work: Work, folder: Path | None = None) -> Job:
        job = Job(next(self._ids), label, user, work, folder)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._run(job)
        return job

    def resume(self, job_id: int) -> Job:
        """Run a stopped or failed job's work again; finished rows are recognised and skipped."""
        job = self.get(job_id)
        if job is None:
            raise ScuteError("That import is no longer known to this app; start it again.")
        if job.running:
            return job
        job.state, job.error, job.finished, job._stop = "running", "", None, threading.Event()
        self._run(job)
        return job

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.id)

    def running(self) -> list[Job]:
        return [job for job in self.all() if job.running]

    def _run(self, job: Job) -> None:
        job._thread = threading.Thread(target=self._body, args=(job,), name=f"scute-job-{job.id}", daemon=True)
        job._thread.start()

    def _body(self, job: Job) -> None:
        try:
            job.result = job.work(job.progress)
            job.state = "finished"
            if job.folder is not None:
                shutil.rmtree(job.folder, ignore_errors=True)
        except JobStopped:
            job.state = "stopped"
        except ScuteError as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # a job's failure is shown on the page; the app carries on
            log.exception("Background job %d (%s) failed", job.id, job.label)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = datetime.now(UTC)

    def _forget_old(self) -> None:
        done = [j for j in sorted(self._jobs.values(), key=lambda j: j.id) if not j.running]
        for job in done[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job.id]
