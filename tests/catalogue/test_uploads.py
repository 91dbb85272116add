"""core.catalogue.uploads and the browser's CSV import (core.service.catalogue): photos are matched to their
manifest row by path and content, never by a shared file name; original names are kept; every import is
audited (issue 15, finding 5).

Real turtle photos from the shared data, a real SQLite gallery and SIFT at 256 px, so the module takes seconds.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from sqlmodel import col, select

from core.catalogue.manifest import ManifestRow
from core.catalogue.uploads import match_rows, uploads_of
from core.io import sha256_hex
from core.review import users
from core.service import catalogue
from core.service.app import App
from core.settings import EngineSettings, Settings, sqlite_url
from core.store.audit import entries_for_individual
from core.store.db import init_db, session_scope
from core.store.models import AuditLog, Individual, Photo

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def turtles(turtle_manifest: list[dict[str, object]]) -> dict[str, bytes]:
    """One real photo of each of three turtles, by identity."""
    photos: dict[str, bytes] = {}
    for row in sorted(turtle_manifest, key=lambda r: str(r["path"])):
        identity = str(row["identity"])
        if identity in ("t001", "t002", "t003") and identity not in photos:
            photos[identity] = Path(row["path"]).read_bytes()  # type: ignore[arg-type]
    assert len(photos) == 3
    return photos


@pytest.fixture
def app(tmp_path: Path) -> App:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(
        home=home,
        database_url=sqlite_url(home),
        engine=EngineSettings(extractor="sift", max_side=256, device="cpu"),
        session_secret=b"k" * 32,
    )
    init_db(settings.database_url).dispose()
    return App(settings)


@pytest.fixture
def admin(app: App):
    with app.session() as session:
        return users.create_user(session, "admin", PASSWORD, "admin", actor=None)


def manifest(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue().encode()


def owners(app: App) -> dict[str, tuple[str, str]]:
    """sha256 -> (code, original name) of every photo."""
    with session_scope(app.db) as session:
        rows = session.exec(select(Photo.sha256, Individual.code, Photo.original_name).join(Individual)).all()
    return {sha: (code, name) for sha, code, name in rows}


def import_entries(app: App) -> list[AuditLog]:
    with session_scope(app.db) as session:
        query = select(AuditLog).where(AuditLog.action == "catalogue.import").order_by(col(AuditLog.id))
        return list(session.exec(query).all())


def test_two_cameras_files_of_one_name_are_never_filed_under_the_wrong_individual(
    app: App, admin, turtles: dict[str, bytes]
) -> None:
    """Loose uploads both named IMG_0001.JPG cannot be told apart: both rows are refused with the reason.
    The folder as uploaded, or a sha256 column, tells them apart: each photo lands on its own individual."""
    one, two = turtles["t001"], turtles["t002"]
    rows = manifest([["path", "identity"], ["cam1/IMG_0001.JPG", "T-1"], ["cam2/IMG_0001.JPG", "T-2"]])
    loose = [("IMG_0001.JPG", one), ("IMG_0001.JPG", two)]

    report = catalogue.import_uploaded_catalogue(app, admin, rows, loose)
    assert (report.added, report.individuals_created) == (0, 0)
    assert [(p.line, p.path) for p in report.problems] == [(2, "cam1/IMG_0001.JPG"), (3, "cam2/IMG_0001.JPG")]
    assert all("2 different uploaded photos are named IMG_0001.JPG" in p.reason for p in report.problems)
    assert all("sha256 column" in p.reason for p in report.problems)
    assert owners(app) == {}

    folders = [("cam2/IMG_0001.JPG", two), ("cam1/IMG_0001.JPG", one)]  # a folder upload, in any order
    report = catalogue.import_uploaded_catalogue(app, admin, rows, folders)
    assert (report.added, report.problems) == (2, [])
    assert owners(app) == {sha256_hex(one): ("T-1", "IMG_0001.JPG"), sha256_hex(two): ("T-2", "IMG_0001.JPG")}


def test_a_sha256_column_picks_the_upload_by_content(app: App, admin, turtles: dict[str, bytes]) -> None:
    one, two, three = turtles["t001"], turtles["t002"], turtles["t003"]
    rows = manifest(
        [
            ["path", "identity", "sha256"],
            ["IMG_0001.JPG", "T-2", sha256_hex(two).upper()],
            ["IMG_0001.JPG", "T-1", sha256_hex(one)],
            ["IMG_0001.JPG", "T-3", sha256_hex(three)],  # not uploaded under that name
            ["DSC_7.JPG", "T-3", "not-a-checksum"],
        ]
    )
    uploads = [("IMG_0001.JPG", one), ("IMG_0001.JPG", two), ("DSC_7.JPG", three)]
    report = catalogue.import_uploaded_catalogue(app, admin, rows, uploads)
    assert report.added == 2
    assert {p.line: p.reason for p in report.problems} == {
        4: "no uploaded file named IMG_0001.JPG has the sha256 the manifest gives",
        5: "sha256 is not a SHA-256 checksum: 'not-a-checksum'",
    }
    assert owners(app) == {sha256_hex(one): ("T-1", "IMG_0001.JPG"), sha256_hex(two): ("T-2", "IMG_0001.JPG")}


def test_uploads_keep_their_names_and_the_import_is_audited(app: App, admin, turtles: dict[str, bytes]) -> None:
    rows = manifest([["path", "identity", "side"], ["DSC_0042.JPG", "T-1", "left"], ["missing.jpg", "T-1", "left"]])
    uploads = [("DSC_0042.JPG", turtles["t001"]), ("DSC_0042.JPG", turtles["t001"])]  # the same photo twice: one
    job = catalogue.start_uploaded_import(app, admin, rows, uploads)
    assert job.wait(60) and job.state == "finished", job.error
    assert (job.result.added, [p.line for p in job.result.problems]) == (1, [3])
    assert owners(app) == {sha256_hex(turtles["t001"]): ("T-1", "DSC_0042.JPG")}
    (entry,) = import_entries(app)
    assert entry.user_id == admin.id
    assert entry.payload["after"] == {
        "source": "uploaded manifest (2 rows, 2 files)",
        "added": 1,
        "already_present": 0,
        "individuals_created": 1,
        "skipped": 1,
        "stopped": False,
    }
    with session_scope(app.db) as session:  # the individual it created has the import in its history
        (t1,) = session.exec(select(Individual.id).where(Individual.code == "T-1")).all()
        assert [e.id for e in entries_for_individual(session, t1)] == [entry.id]


def test_server_folder_and_zip_imports_are_audited_even_when_they_add_nothing(
    app: App, admin, turtles: dict[str, bytes], tmp_path: Path
) -> None:
    folder = tmp_path / "catalogue"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(turtles["t001"])
    (folder / "manifest.csv").write_bytes(manifest([["path", "identity"], ["a.jpg", "T-1"]]))
    archive = tmp_path / "cat.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.csv", manifest([["path", "identity"], ["b.jpg", "T-2"]]))
        zf.writestr("b.jpg", turtles["t002"])

    for _ in range(2):  # the second run adds nothing and is recorded all the same
        catalogue.import_from_server(app, admin, folder / "manifest.csv")
        catalogue.import_from_server(app, admin, archive)
    entries = import_entries(app)
    assert [e.user_id for e in entries] == [admin.id] * 4
    assert [(e.payload["after"].get("source") or e.payload["after"]["archive"]) for e in entries] == [
        str(folder / "manifest.csv"),
        "cat.zip",
    ] * 2
    assert [e.payload["after"]["added"] for e in entries] == [1, 1, 0, 0]
    assert [e.payload["after"]["already_present"] for e in entries] == [0, 0, 1, 1]


def test_a_stopped_import_is_audited_with_what_it_did(app: App, admin, turtles: dict[str, bytes]) -> None:
    rows = manifest([["path", "identity"], ["a.jpg", "T-1"], ["b.jpg", "T-2"]])
    job = catalogue.start_uploaded_import(app, admin, rows, [("a.jpg", turtles["t001"]), ("b.jpg", turtles["t002"])])
    job.stop()
    assert job.wait(60) and job.state == "stopped"
    (entry,) = import_entries(app)
    assert entry.payload["after"]["stopped"] is True and entry.payload["after"]["added"] == job.done == 1


def test_a_volunteer_cannot_import(app: App, admin, turtles: dict[str, bytes]) -> None:
    with app.session() as session:
        volunteer = users.create_user(session, "vera", PASSWORD, actor=admin)
    with pytest.raises(users.PermissionDenied):
        catalogue.import_uploaded_catalogue(
            app, volunteer, manifest([["path", "identity"], ["a.jpg", "T-1"]]), [("a.jpg", turtles["t001"])]
        )
    assert owners(app) == {} and import_entries(app) == []


@pytest.mark.parametrize(
    ("row", "uploads", "expected"),
    [
        ("a/b/IMG.JPG", ["top/a/b/IMG.JPG", "top/c/b/IMG.JPG"], 0),  # the folder upload adds a top folder
        ("IMG.JPG", ["x/IMG.JPG"], 0),  # a row without folders matches a single upload of that name
        ("cam1\\IMG.JPG", ["IMG.JPG", "cam1/IMG.JPG"], 1),  # the upload naming the folder wins
        ("cam1/IMG.JPG", ["cam2/IMG.JPG"], None),  # folders disagree: not the same file
        ("./../IMG.JPG", ["IMG.JPG"], 0),  # names are labels: . and .. are dropped, never followed
        ("img.jpg", ["IMG.JPG"], None),
    ],
)
def test_matching_rules(row: str, uploads: list[str], expected: int | None) -> None:
    files = uploads_of([(name, name.encode()) for name in uploads])
    matched, unmatched = match_rows([ManifestRow(row, "T-1")], [{}], files)
    if expected is None:
        assert matched == [] and len(unmatched) == 1
    else:
        assert unmatched == [] and matched[0].upload is files[expected]
