"""Tags in the catalogue's CSV files (issue 16): ``individuals.csv`` carries ``flipper_tags``, ``pit_tags`` and
``alternate_ids`` (``;``-separated); export then import into an empty database gives the same tags, and an
archive with a bad or duplicate tag is refused with its line before anything is imported."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fixtures.world import snapshot
from PIL import Image
from sqlalchemy.engine import Engine
from sqlmodel import select

from core.catalogue.exporter import export_catalogue
from core.catalogue.format import CATALOGUE_ZIP
from core.catalogue.importer import import_rows
from core.catalogue.manifest import read_manifest
from core.catalogue.zip_import import import_zip
from core.engine.search import Engine as SearchEngine
from core.errors import ManifestError
from core.review.tags import add_tag
from core.review.users import create_user
from core.service.history import audit_rows
from core.store.db import init_db, session_scope
from core.store.fieldwork import IndividualTag
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import Individual
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")


def photo_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((128, 96), Image.BICUBIC).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def search_engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    return SearchEngine("sift", {"max_side": 256}, device="cpu", cache_dir=tmp_path_factory.mktemp("engine"))


def all_tags(db: Engine) -> list[tuple[str, str, str]]:
    with session_scope(db) as session:
        rows = session.exec(select(Individual.code, IndividualTag.kind, IndividualTag.value).join(Individual)).all()
        return sorted((code, kind, value) for code, kind, value in rows)


def write_archive(path: Path, individuals: list[dict[str, str]]) -> Path:
    """A catalogue ZIP with one photo of T-0001 and these rows of individuals.csv."""
    columns = ["code", "flipper_tags", "pit_tags", "alternate_ids"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(individuals)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.csv", "path,identity,side\nphotos/a.jpg,T-0001,left\n")
        zf.writestr("photos/a.jpg", photo_bytes(1))
        zf.writestr("individuals.csv", buffer.getvalue())
    return path


def test_export_then_import_gives_the_same_tags(tmp_path: Path, search_engine: SearchEngine) -> None:
    source = init_db(f"sqlite:///{tmp_path / 'source.db'}")
    store = PhotoStore(tmp_path / "photos")
    with session_scope(source) as session:
        admin = create_user(session, "admin", "correct horse battery", "admin", actor=None)
        for seed, code in ((1, "T-0001"), (2, "T-0002")):
            individual, _ = get_or_create_individual(session, code)
            add_photo(session, store, photo_bytes(seed), suffix=".jpg", individual=individual, width=128, height=96)
        add_tag(session, admin, "T-0001", "flipper", "AB123")
        add_tag(session, admin, "T-0001", "flipper", "AB124")
        add_tag(session, admin, "T-0001", "pit", "985141000123456")
        add_tag(session, admin, "T-0002", "alternate", "-IoT 77")  # formula-like: written with an apostrophe
    export_catalogue(source, store, tmp_path / "out", photos=True)
    with (tmp_path / "out" / "individuals.csv").open(newline="") as handle:
        rows = {r["code"]: r for r in csv.DictReader(handle)}
    assert (rows["T-0001"]["flipper_tags"], rows["T-0001"]["pit_tags"]) == ("AB123;AB124", "985141000123456")
    assert (rows["T-0002"]["alternate_ids"], rows["T-0002"]["flipper_tags"]) == ("'-IoT 77", "")
    expected = all_tags(source)
    assert len(expected) == 4
    source.dispose()

    target = init_db(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        report = import_zip(target, PhotoStore(tmp_path / "photos-2"), search_engine, tmp_path / "out" / CATALOGUE_ZIP)
        assert report.problems == [] and (report.added, report.tags_added) == (2, 4)
        assert all_tags(target) == expected
        again = import_zip(target, PhotoStore(tmp_path / "photos-2"), search_engine, tmp_path / "out" / CATALOGUE_ZIP)
        assert again.tags_added == 0 and not again.changed  # idempotent
        assert all_tags(target) == expected
    finally:
        target.dispose()


@pytest.mark.parametrize(
    ("individuals", "message"),
    [
        (
            [{"code": "T-0001", "flipper_tags": "AB1;X9"}, {"code": "T-0002", "flipper_tags": "ab1"}],
            "individuals.csv line 3: the flipper tag ab1 is also given to T-0001. Nothing was imported.",
        ),
        (
            [{"code": "T-0001", "pit_tags": "P1"}, {"code": "T-0003", "pit_tags": "p7"}],
            "individuals.csv line 3: the PIT tag p7 is already on T-0009. Nothing was imported.",
        ),
        (
            [{"code": "T-0001", "alternate_ids": "ok;" + "x" * 129}],
            "individuals.csv line 2: The alternate id is too long: at most 128 characters. Nothing was imported.",
        ),
    ],
)
def test_a_duplicate_or_bad_tag_refuses_the_import_with_its_line(
    tmp_path: Path, search_engine: SearchEngine, individuals: list[dict[str, str]], message: str
) -> None:
    db = init_db(f"sqlite:///{tmp_path / 'gallery.db'}")
    try:
        with session_scope(db) as session:
            admin = create_user(session, "admin", "correct horse battery", "admin", actor=None)
            get_or_create_individual(session, "T-0009")
            add_tag(session, admin, "T-0009", "pit", "P7")
        before = snapshot(db)
        archive = write_archive(tmp_path / "catalogue.zip", individuals)
        with pytest.raises(ManifestError) as refused:
            import_zip(db, PhotoStore(tmp_path / "photos"), search_engine, archive)
        assert str(refused.value) == message
        assert snapshot(db) == before  # no individual, photo or tag was added
    finally:
        db.dispose()


def write_folder(folder: Path, rows: list[dict[str, str]]) -> Path:
    """A catalogue folder: photos a.jpg, b.jpg, c.jpg and a manifest with tag columns."""
    folder.mkdir()
    for seed, name in enumerate(("a.jpg", "b.jpg", "c.jpg"), start=1):
        (folder / name).write_bytes(photo_bytes(seed))
    columns = ["path", "identity", "side", "flipper_tags", "pit_tags", "alternate_ids"]
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)
    return folder / "manifest.csv"


def test_a_manifest_s_tag_columns_tag_each_row_s_individual(tmp_path: Path, search_engine: SearchEngine) -> None:
    manifest = write_folder(
        tmp_path / "cat",
        [
            {"path": "a.jpg", "identity": "T-0001", "flipper_tags": "AB1; AB2", "pit_tags": "P1"},
            {"path": "b.jpg", "identity": "T-0001", "flipper_tags": "ab1"},  # the same tag again: one tag
            {"path": "c.jpg", "identity": "T-0002", "alternate_ids": "IoT-5"},
        ],
    )
    db = init_db(f"sqlite:///{tmp_path / 'gallery.db'}")
    try:
        with session_scope(db) as session:
            admin = create_user(session, "admin", "correct horse battery", "admin", actor=None).id
        rows = read_manifest(manifest)
        photos = PhotoStore(tmp_path / "photos")
        report = import_rows(db, photos, search_engine, rows, manifest.parent, actor=admin, source="cat.csv")
        assert (report.added, report.tags_added, report.problems) == (3, 4, [])
        with session_scope(db) as session:
            assert audit_rows(session)[0].summary == (
                "Imported the catalogue “cat.csv”: 3 photos added, 2 new individuals, 0 rows skipped, 4 tags added."
            )
        assert all_tags(db) == [
            ("T-0001", "flipper", "AB1"),
            ("T-0001", "flipper", "AB2"),
            ("T-0001", "pit", "P1"),
            ("T-0002", "alternate", "IoT-5"),
        ]
        again = import_rows(db, PhotoStore(tmp_path / "photos"), search_engine, rows, manifest.parent)
        assert (again.added, again.tags_added) == (0, 0)
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [
                {"path": "a.jpg", "identity": "T-0001", "pit_tags": "P1"},
                {"path": "b.jpg", "identity": "T-0002", "pit_tags": "p1"},
            ],
            "line 3: the PIT tag p1 is also given to T-0001. Nothing was imported.",
        ),
        (
            [{"path": "a.jpg", "identity": "T-0001"}, {"path": "c.jpg", "identity": "T-0001", "flipper_tags": "F9"}],
            "line 3: the flipper tag F9 is already on T-0009. Nothing was imported.",
        ),
        (
            [{"path": "a.jpg", "identity": "T-0001", "alternate_ids": "ok;bad\x07"}],
            "line 2: The alternate id contains control characters; please remove them. Nothing was imported.",
        ),
    ],
)
def test_a_manifest_with_a_duplicate_or_bad_tag_imports_nothing(
    tmp_path: Path, search_engine: SearchEngine, rows: list[dict[str, str]], message: str
) -> None:
    manifest = write_folder(tmp_path / "cat", rows)
    db = init_db(f"sqlite:///{tmp_path / 'gallery.db'}")
    try:
        with session_scope(db) as session:
            admin = create_user(session, "admin", "correct horse battery", "admin", actor=None)
            get_or_create_individual(session, "T-0009")
            add_tag(session, admin, "T-0009", "flipper", "f9")
        before = snapshot(db)
        with pytest.raises(ManifestError) as refused:
            import_rows(db, PhotoStore(tmp_path / "photos"), search_engine, read_manifest(manifest), manifest.parent)
        assert str(refused.value) == message
        assert snapshot(db) == before
    finally:
        db.dispose()


def test_a_zip_manifest_row_clashing_with_individuals_csv_imports_nothing(
    tmp_path: Path, search_engine: SearchEngine
) -> None:
    archive = tmp_path / "catalogue.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.csv", "path,identity,flipper_tags\nphotos/a.jpg,T-0002,AB1\n")
        zf.writestr("photos/a.jpg", photo_bytes(1))
        zf.writestr("individuals.csv", "code,flipper_tags\nT-0001,AB1\n")
    db = init_db(f"sqlite:///{tmp_path / 'gallery.db'}")
    try:
        before = snapshot(db)
        with pytest.raises(ManifestError, match=r"^manifest.csv line 2: the flipper tag AB1 is also given to T-0001"):
            import_zip(db, PhotoStore(tmp_path / "photos"), search_engine, archive)
        assert snapshot(db) == before
    finally:
        db.dispose()
