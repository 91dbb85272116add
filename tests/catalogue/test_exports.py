"""Every exported CSV cell is safe to open in a spreadsheet: the catalogue's tables, the ``manifest.csv`` and
``individuals.csv`` inside its ZIPs, and the Evaluate page's per-query download (issue 15, finding 9).

A cell a spreadsheet would run as a formula starts with ``= + - @``, tab or carriage return; numbers
(``-12.5``) are numbers. Escaped cells still import back exactly. Real SQLite, a real turtle photo.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest
from sqlmodel import select

from core.catalogue.exporter import export_catalogue
from core.catalogue.format import CATALOGUE_ZIP
from core.catalogue.zip_import import import_zip
from core.engine.search import Engine as SearchEngine
from core.evaluation.protocol import EvaluationReport, QueryOutcome
from core.review.sightings import submit_sighting
from core.review.users import create_user
from core.review.votes import cast_vote
from core.service.evaluation import report_csv
from core.store.db import init_db, session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import Individual, Photo
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CODE = '=HYPERLINK("http://evil")'
NAME = "@SUM(1+1)"
FILE_NAME = "=cmd|' calc'!A0.jpg"  # what a hostile volunteer names the file they upload


def unsafe_cells(data: bytes) -> list[str]:
    """Cells a spreadsheet would evaluate: formula-like text that is not a plain number."""
    bad = []
    for row in csv.reader(io.StringIO(data.decode("utf-8"), newline="")):
        for cell in row:
            if cell.startswith(FORMULA_START):
                try:
                    float(cell)
                except ValueError:
                    bad.append(cell)
    return bad


@pytest.fixture
def search_engine_sift(tmp_path: Path) -> SearchEngine:
    return SearchEngine("sift", {"max_side": 256}, device="cpu", cache_dir=tmp_path / "engine")


@pytest.fixture
def turtle_photos(turtle_manifest: list[dict[str, object]]) -> list[bytes]:
    paths = sorted(str(r["path"]) for r in turtle_manifest if r["identity"] in ("t001", "t002"))
    return [Path(paths[0]).read_bytes(), Path(paths[-1]).read_bytes()]


def test_every_exported_cell_is_safe_and_imports_back_exactly(
    tmp_path: Path, turtle_photos: list[bytes], search_engine_sift: SearchEngine
) -> None:
    db = init_db(f"sqlite:///{tmp_path / 'a.db'}")
    store = PhotoStore(tmp_path / "photos")
    with session_scope(db) as session:
        admin = create_user(session, "admin", "correct horse battery", "admin", actor=None)
        individual, _ = get_or_create_individual(session, CODE, NAME)
        individual.species, individual.notes = "-2+3", "+notes"
        add_photo(
            session,
            store,
            turtle_photos[0],
            suffix=".jpg",
            individual=individual,
            width=10,
            height=10,
            original_name=FILE_NAME,
            latitude=-12.5,
            longitude=-45.25,
        )
        submission = submit_sighting(
            session,
            store,
            admin,
            turtle_photos[1],
            candidates=[],
            new_individual_probability=None,
            notes="=1+1",
            original_name=FILE_NAME,
        )
        cast_vote(session, admin, submission.sighting.id, "same", individual.id, comment="@evil")
    out = tmp_path / "out"
    report = export_catalogue(db, store, out, photos=True, per_individual=True)
    db.dispose()

    files: dict[str, bytes] = {p.name: p.read_bytes() for p in report.files if p.suffix == ".csv"}
    for archive in [out / CATALOGUE_ZIP, *(out / "individuals").iterdir()]:
        with zipfile.ZipFile(archive) as zf:
            files |= {f"{archive.name}/{n}": zf.read(n) for n in zf.namelist() if n.endswith(".csv")}
    assert f"{CATALOGUE_ZIP}/manifest.csv" in files and "votes.csv" in files and "sightings.csv" in files
    assert {name: unsafe_cells(data) for name, data in files.items()} == {name: [] for name in files}
    manifest = files[f"{CATALOGUE_ZIP}/manifest.csv"].decode()
    assert "'" + FILE_NAME in manifest and "'" + CODE.replace('"', '""') in manifest and ",-12.5," in manifest

    # The escaped manifest still imports back exactly: the code and the file name as they were.
    target = init_db(f"sqlite:///{tmp_path / 'b.db'}")
    result = import_zip(target, PhotoStore(tmp_path / "p2"), search_engine_sift, out / CATALOGUE_ZIP)
    assert (result.added, result.problems) == (1, [])
    with session_scope(target) as session:
        (code, name, species, notes) = session.exec(
            select(Individual.code, Individual.name, Individual.species, Individual.notes)
        ).one()
        assert (code, name, species, notes) == (CODE, NAME, "-2+3", "+notes")
        assert session.exec(select(Photo.original_name)).all() == [FILE_NAME]
    target.dispose()


def test_the_evaluation_download_escapes_codes_and_paths() -> None:
    detail = [
        QueryOutcome("=evil.jpg", CODE, False, [NAME, "T-1"], 0.7, 0.1, 2.0),
        QueryOutcome("photos/b.jpg", "T-1", True, ["T-1"], 0.1, 0.8, 0.4),
    ]
    report = EvaluationReport({}, "confident", 2, 2, ["T-1"], 1.0, 3.0, 0.1, 1.0, {}, {}, detail)
    data = report_csv(report)
    assert unsafe_cells(data) == []
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[1][:4] == ["'=evil.jpg", "'" + CODE, "False", "'" + NAME + " T-1"]
    assert rows[2] == ["photos/b.jpg", "T-1", "True", "T-1", "0.1000", "0.8000", "0.400"]
