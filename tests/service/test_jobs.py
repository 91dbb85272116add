"""core.service.jobs: imports run in the background, can be stopped and resumed, and never block a request."""

from __future__ import annotations

import csv
import io
import threading
from pathlib import Path

import pytest
from PIL import Image
from sqlmodel import func, select

from core.review import users
from core.service import catalogue
from core.service.app import App
from core.service.jobs import Jobs, JobStopped
from core.settings import EngineSettings, Settings, sqlite_url
from core.store.db import session_scope
from core.store.models import Photo

pytestmark = pytest.mark.usefixtures("cheap_hashing")


def photo_bytes(seed: int) -> bytes:
    """A 128x96 JPEG of smooth random blobs: plenty of SIFT keypoints."""
    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((128, 96), Image.BICUBIC).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_job_reports_progress_and_its_result() -> None:
    jobs = Jobs()

    def work(progress):
        for i in range(3):
            progress("importing", i + 1, 3)
        return "done"

    job = jobs.start("three rows", "admin", work)
    assert job.wait(10)
    assert (job.state, job.result, job.stage, job.done, job.total, job.fraction) == (
        "finished",
        "done",
        "importing",
        3,
        3,
        1.0,
    )
    assert jobs.all() == [job] and jobs.running() == []


def test_a_stopped_job_can_be_resumed_and_a_failure_is_kept() -> None:
    jobs, gate, calls = Jobs(), threading.Event(), []

    def work(progress):
        calls.append(1)
        progress("importing", 1, 3)
        if len(calls) == 1:
            assert gate.wait(10)
        progress("importing", 2, 3)  # raises JobStopped once Stop was pressed (step 2 is finished)
        progress("importing", 3, 3)
        return len(calls)

    job = jobs.start("three rows", "admin", work)
    job.stop()
    gate.set()
    assert job.wait(10) and job.state == "stopped" and job.done == 2
    assert jobs.resume(job.id) is job
    assert job.wait(10) and (job.state, job.result) == ("finished", 2)

    def broken(progress):
        raise RuntimeError("disk full")

    failed = jobs.start("broken", "admin", broken)
    assert failed.wait(10) and failed.state == "failed" and "disk full" in failed.error
    assert jobs.all()[0] is failed
    assert issubclass(JobStopped, Exception)


def _app(tmp_path: Path) -> App:
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        database_url=sqlite_url(home),
        engine=EngineSettings(extractor="sift", max_side=256, device="cpu"),
        session_secret=b"k" * 32,
    )
    home.mkdir(parents=True)
    from core.store.db import init_db

    init_db(settings.database_url).dispose()
    return App(settings)


def test_an_uploaded_import_runs_in_the_background_and_resumes_after_a_stop(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with app.session() as session:
        admin = users.create_user(session, "admin", "correct horse battery", "admin", actor=None)
    photos = {f"IMG_{i}.jpg": photo_bytes(900 + i) for i in range(4)}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "identity", "side"])
    for i, name in enumerate(photos):
        writer.writerow([name, f"T-{i % 2}", "left"])
    manifest = buffer.getvalue().encode()

    job = catalogue.start_uploaded_import(app, admin, manifest, photos)
    job.stop()  # the admin presses Stop at once: the row being imported finishes, the rest waits
    assert job.wait(60) and job.state == "stopped"
    with session_scope(app.db) as session:
        first = session.exec(select(func.count()).select_from(Photo)).one()
    assert first == job.done == 1 and job.total == 4
    catalogue.resume_import(app, job.id)
    assert job.wait(60) and job.state == "finished", job.error
    assert job.result.added == 4 - first and job.result.already_present == first
    with session_scope(app.db) as session:
        assert session.exec(select(func.count()).select_from(Photo)).one() == 4
    assert job.folder is not None and not job.folder.exists()  # the uploads' copy is gone once finished
    # The job also prepared the gallery: the first search does not build the index.
    assert app.indexes.wait(60) and len(app.indexes) == 1
    assert catalogue.import_jobs(app) == [job]


def test_a_malformed_manifest_is_refused_before_a_job_starts(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with app.session() as session:
        admin = users.create_user(session, "admin", "correct horse battery", "admin", actor=None)
    from core.errors import ScuteError

    with pytest.raises(ScuteError):
        catalogue.start_uploaded_import(app, admin, b"path,identity\n", {})
    assert catalogue.import_jobs(app) == []
