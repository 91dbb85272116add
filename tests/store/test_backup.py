"""core.backup and ``python -m core backup | restore | check``: consistent online copies, restored and compared.

Every method on its backend (SQLite: online backup API and export; PostgreSQL: pg_dump and export) round-trips
the database row for row and the photo store and feature cache file for file; a backup taken while users
are submitting and voting restores to a consistent gallery that is a snapshot of the live one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures.db import pg_url_or_skip, wipe
from fixtures.photos import image_bytes
from fixtures.world import PASSWORD, World, files_under, make_world, snapshot
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.engine import Engine

import core.store.backup as backup_module
from core.cli import main
from core.engine.features import FeatureCache, Features
from core.review import curation, users
from core.review.sightings import CandidateInput, submit_sighting
from core.review.votes import cast_vote
from core.store.backup import BackupError, backup
from core.store.db import init_db, session_scope
from core.store.gallery import record_features
from core.store.integrity import check_database, check_files
from core.store.models import Individual, Photo, User
from core.store.photos import PhotoStore
from core.store.restore import read_manifest, restore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

APPEND_ONLY = ("audit_log", "audit_individual", "vote", "candidate", "user_account")


def _url(backend: str, tmp_path: Path, name: str = "gallery.db") -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / name}"
    url = pg_url_or_skip()
    wipe(url)
    return url


def _populate(engine: Engine, home: Path) -> World:
    """A world with decided and pending sightings, votes, a merge and its undo, and cached features."""
    store = PhotoStore(home / "photos")
    world = make_world(engine, store)
    with session_scope(engine) as session:
        first = submit_sighting(
            session,
            store,
            session.get(User, world.alice),
            image_bytes(50),
            candidates=[CandidateInput(world.t1, 1, 0.8, 0.7, 30), CandidateInput(world.t2, 2, 0.1, 0.1, 2)],
            new_individual_probability=0.2,
            proposal="same",
            proposed_individual_id=world.t1,
            comment="O'Brien said; hi",
        )
        submit_sighting(
            session, store, session.get(User, world.bob), image_bytes(51), candidates=[], new_individual_probability=0.9
        )
    with session_scope(engine) as session:
        cast_vote(session, session.get(User, world.carol), first.sighting.id, "same", world.t1)
    with session_scope(engine) as session:
        entry = curation.merge(session, session.get(User, world.admin), world.t2, world.t1)
    with session_scope(engine) as session:
        curation.undo(session, session.get(User, world.admin), entry.id)
    cache = FeatureCache(home / "features")
    with session_scope(engine) as session:  # every gallery photo has features (check reports those without)
        for photo_id in session.exec(select(Photo.id).where(Photo.in_gallery).order_by(Photo.id)).scalars():
            features = Features(
                keypoints=__import__("numpy").zeros((3, 2), "float32"),
                descriptors=__import__("numpy").ones((3, 8), "float32"),
                scores=__import__("numpy").ones(3, "float32"),
                image_size=(32, 24),
                extractor="stub",
                version="stub-v1",
            )
            path = cache.put(features, f"{photo_id:064x}")
            record_features(session, photo_id, "stub", "stub-v1", str(path.relative_to(cache.root)), 3)
    return world


CASES = [("sqlite", "sqlite"), ("sqlite", "export"), ("postgresql", "pg_dump"), ("postgresql", "export")]


@pytest.mark.parametrize(("backend", "method"), CASES, ids=[f"{b}-{m}" for b, m in CASES])
def test_backup_restore_round_trip(backend: str, method: str, tmp_path: Path) -> None:
    if method == "pg_dump" and not shutil.which("pg_dump"):
        pytest.skip("pg_dump is not installed")
    url = _url(backend, tmp_path)
    home = tmp_path / "home"
    engine = init_db(url)
    _populate(engine, home)
    before = snapshot(engine)
    engine.dispose()

    manifest = backup(url, tmp_path / "backup", home=home, method=method)
    assert manifest.method == method and manifest.revision is not None
    assert manifest.tables == {name: len(rows) for name, rows in before.items()}
    assert (manifest.photos, manifest.features, manifest.missing_photos) == (5, 4, [])

    target = f"sqlite:///{tmp_path / 'restored.db'}" if backend == "sqlite" else url
    if backend == "postgresql":
        wipe(url)  # restore into the emptied database
    restored_home = tmp_path / "restored-home"
    restore(tmp_path / "backup", target, home=restored_home)
    engine = init_db(target)
    try:
        assert snapshot(engine) == before
        with session_scope(engine) as session:
            assert check_database(session) == []
            assert check_files(session, PhotoStore(restored_home / "photos"), restored_home / "features") == []
            # The restored database takes new rows (PostgreSQL sequences continue after the restored ids).
            admin = session.exec(select(User).where(User.username == "admin")).scalar_one()
            users.create_user(session, "after-restore", PASSWORD, actor=admin)
            session.add(Individual(code="T-9999"))
    finally:
        engine.dispose()
    assert files_under(restored_home) == files_under(home)


def test_export_backup_moves_a_gallery_from_sqlite_to_postgresql(tmp_path: Path) -> None:
    pg = pg_url_or_skip()
    source = f"sqlite:///{tmp_path / 'gallery.db'}"
    home = tmp_path / "home"
    engine = init_db(source)
    _populate(engine, home)
    before = snapshot(engine)
    engine.dispose()
    backup(source, tmp_path / "backup", home=home, method="export")
    wipe(pg)
    restore(tmp_path / "backup", pg, home=tmp_path / "pg-home")
    engine = init_db(pg)
    try:
        after = snapshot(engine)
    finally:
        engine.dispose()
    assert {name: len(rows) for name, rows in after.items()} == {name: len(rows) for name, rows in before.items()}
    for table in before:  # same values; PostgreSQL hands back aware UTC times where SQLite has naive UTC ones
        assert _naive(after[table]) == _naive(before[table]), table


def _naive(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    return [tuple(plain(v) for v in row) for row in rows]


# --- online: writers keep going while the backup runs ------------------------------------------------


class _Writers:
    """Three users submitting and voting in threads until stopped."""

    def __init__(self, url: str, home: Path, world: World) -> None:
        self.url, self.store, self.world = url, PhotoStore(home / "photos"), world
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.done = 0
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(3)]

    def __enter__(self) -> _Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _run(self, i: int) -> None:
        engine = init_db(self.url)
        user_id = (self.world.alice, self.world.bob, self.world.carol)[i]
        seed = 10_000 * (i + 1)
        try:
            while not self.stop.is_set():
                seed += 1
                with session_scope(engine) as session:
                    submission = submit_sighting(
                        session,
                        self.store,
                        session.get(User, user_id),
                        image_bytes(seed),
                        candidates=[CandidateInput(self.world.t1, 1, 0.5)],
                        new_individual_probability=0.3,
                        proposal="same",
                        proposed_individual_id=self.world.t1,
                    )
                with session_scope(engine) as session:
                    voter = self.world.carol if i != 2 else self.world.alice
                    cast_vote(session, session.get(User, voter), submission.sighting.id, "same", self.world.t1)
                self.done += 1
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_backup_while_users_write_restores_a_consistent_snapshot(backend: str, tmp_path: Path) -> None:
    url = _url(backend, tmp_path)
    home = tmp_path / "home"
    engine = init_db(url)
    world = make_world(engine, PhotoStore(home / "photos"))
    engine.dispose()
    with _Writers(url, home, world) as writers:
        while writers.done < 3 and not writers.errors:
            time.sleep(0.05)
        manifest = backup(url, tmp_path / "backup", home=home)
        started = writers.done
        while writers.done < started + 3 and not writers.errors:  # writers were not blocked by the backup
            time.sleep(0.05)
    assert writers.errors == []
    engine = init_db(url)
    live = snapshot(engine)
    engine.dispose()
    assert manifest.tables["sighting"] < len(live["sighting"])  # the snapshot predates later writes

    target = f"sqlite:///{tmp_path / 'restored.db'}" if backend == "sqlite" else url
    if backend == "postgresql":
        wipe(url)
    restored_home = tmp_path / "restored-home"
    restore(tmp_path / "backup", target, home=restored_home)
    engine = init_db(target)
    try:
        restored = snapshot(engine)
        with session_scope(engine) as session:
            assert check_database(session) == []
            assert check_files(session, PhotoStore(restored_home / "photos")) == []
    finally:
        engine.dispose()
    assert {name: len(rows) for name, rows in restored.items()} == manifest.tables
    for table in APPEND_ONLY:
        live_rows = {repr(row) for row in live[table]}
        assert all(repr(row) in live_rows for row in restored[table]), table  # each restored row is a live row


# --- refusals ------------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_backup(tmp_path: Path) -> tuple[str, Path, Path]:
    url = f"sqlite:///{tmp_path / 'gallery.db'}"
    home = tmp_path / "home"
    engine = init_db(url)
    _populate(engine, home)
    engine.dispose()
    out = tmp_path / "backup"
    backup(url, out, home=home)
    return url, home, out


def test_restore_refuses_a_database_with_data_unless_forced(sqlite_backup, tmp_path: Path) -> None:
    url, home, out = sqlite_backup
    engine = init_db(url)
    with session_scope(engine) as session:
        curation.rename(
            session, session.exec(select(User).where(User.role == "admin")).scalars().first(), "T-0001", "X"
        )
    changed = snapshot(engine)
    engine.dispose()
    with pytest.raises(BackupError, match="already holds data"):
        restore(out, url, home=home)
    engine = init_db(url)
    assert snapshot(engine) == changed
    engine.dispose()
    restore(out, url, home=home, force=True)
    engine = init_db(url)
    with session_scope(engine) as session:
        assert session.exec(select(Individual.name).where(Individual.code == "T-0001")).scalar_one() == "Donatello"
    engine.dispose()


def test_restore_refuses_incomplete_damaged_or_mismatched_backups(sqlite_backup, tmp_path: Path) -> None:
    _, _, out = sqlite_backup
    target = f"sqlite:///{tmp_path / 'new.db'}"
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    with (damaged / "database.sqlite").open("r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00garbage\x00")
    with pytest.raises(BackupError, match="damaged"):
        restore(damaged, target, home=tmp_path / "h1")
    incomplete = tmp_path / "incomplete"
    shutil.copytree(out, incomplete)
    (incomplete / "backup.json").unlink()
    with pytest.raises(BackupError, match="not a complete Scute backup"):
        restore(incomplete, target, home=tmp_path / "h2")
    (incomplete / "backup.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(BackupError, match="format"):
        read_manifest(incomplete)
    assert not (tmp_path / "new.db").exists() or snapshot(init_db(target)).get("individual", []) == []


def test_sqlite_backup_cannot_go_into_postgresql(sqlite_backup) -> None:
    pg = pg_url_or_skip()
    wipe(pg)
    _, home, out = sqlite_backup
    with pytest.raises(BackupError, match="SQLite file"):
        restore(out, pg, home=home)
    raw = create_engine(pg)
    metadata = MetaData()
    metadata.reflect(raw)
    raw.dispose()
    assert metadata.tables == {}  # nothing was touched


def test_second_backup_into_the_same_folder_copies_only_new_photos(sqlite_backup) -> None:
    url, home, out = sqlite_backup
    first = {p: p.stat().st_mtime_ns for p in (out / "photos").rglob("*") if p.is_file()}
    store = PhotoStore(home / "photos")
    store.put(image_bytes(4242), ".png")
    manifest = backup(url, out, home=home)
    after = {p: p.stat().st_mtime_ns for p in (out / "photos").rglob("*") if p.is_file()}
    assert manifest.photos == len(first) + 1
    assert {p: after[p] for p in first} == first  # untouched
    assert len(after) == len(first) + 1


def test_damaged_photo_in_the_live_store_is_not_copied_and_is_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gallery.db'}"
    home = tmp_path / "home"
    engine = init_db(url)
    world = make_world(engine, PhotoStore(home / "photos"))
    with session_scope(engine) as session:
        damaged = session.get(__import__("core.store.models", fromlist=["Photo"]).Photo, world.photos[0]).path
    engine.dispose()
    (home / "photos" / damaged).write_bytes(b"bit rot")
    manifest = backup(url, tmp_path / "backup", home=home)
    assert manifest.missing_photos == [damaged]
    assert manifest.photos == 2


# --- the command line -----------------------------------------------------------------------------------


def test_command_line_backup_restore_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'gallery.db'}"
    home = tmp_path / "home"
    engine = init_db(url)
    _populate(engine, home)
    before = snapshot(engine)
    engine.dispose()
    out = tmp_path / "backup"
    assert main(["backup", "--db", url, "--out", str(out), "--home", str(home)]) == 0
    assert "Backup written" in capsys.readouterr().out
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    assert main(["restore", "--db", target, "--from", str(out), "--home", str(tmp_path / "h2")]) == 0
    assert main(["restore", "--db", target, "--from", str(out), "--home", str(tmp_path / "h2")]) == 2
    assert "already holds data" in capsys.readouterr().err
    assert main(["check", "--db", target, "--home", str(tmp_path / "h2")]) == 0
    assert "gallery is consistent" in capsys.readouterr().out
    engine = init_db(target)
    assert snapshot(engine) == before
    engine.dispose()
    for photo in (tmp_path / "h2" / "photos").rglob("*.png"):
        photo.write_bytes(b"damaged")
        break
    assert main(["check", "--db", target, "--home", str(tmp_path / "h2"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["problems"]) == 1 and "damaged" in report["problems"][0]
    assert main(["restore", "--db", target, "--from", str(tmp_path / "nowhere")]) == 2
    assert "not a complete Scute backup" in capsys.readouterr().err


# --- issue 15: restore all or nothing, backups put in place whole, no WAL, owner-only files -------------


def _files(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: its SHA-256 and permission bits."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _gallery(url: str, home: Path) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, tuple[str, int]]]:
    engine = init_db(url)
    try:
        return snapshot(engine), _files(home)
    finally:
        engine.dispose()


def _rename_t1(url: str, name: str) -> None:
    engine = init_db(url)
    try:
        with session_scope(engine) as session:
            admin = session.exec(select(User).where(User.role == "admin")).scalars().first()
            curation.rename(session, admin, "T-0001", name)
    finally:
        engine.dispose()


def _rewrite_manifest(out: Path, **changes: Any) -> None:
    manifest = json.loads((out / "backup.json").read_text())
    manifest.update(changes)
    (out / "backup.json").write_text(json.dumps(manifest))


def test_restore_of_a_backup_from_an_unknown_revision_changes_nothing(sqlite_backup, tmp_path: Path) -> None:
    """Finding 3: restore --force used to drop every table before the unknown revision made it fail."""
    url, home, out = sqlite_backup
    _rename_t1(url, "changed after the backup")
    before = _gallery(url, home)
    future = tmp_path / "future"
    shutil.copytree(out, future)
    database = sqlite3.connect(future / "database.sqlite")
    database.execute("UPDATE alembic_version SET version_num = '9999_from_a_newer_scute'")
    database.commit()
    database.close()
    checksum = hashlib.sha256((future / "database.sqlite").read_bytes()).hexdigest()
    _rewrite_manifest(future, checksums={"database.sqlite": checksum})  # the file is intact, only newer
    with pytest.raises(BackupError, match="manifest says"):  # found in the database itself
        restore(future, url, home=home, force=True)
    assert _gallery(url, home) == before
    _rewrite_manifest(future, revision="9999_from_a_newer_scute")  # found in the manifest, before anything
    with pytest.raises(BackupError, match="does not know"):
        restore(future, url, home=home, force=True)
    assert _gallery(url, home) == before
    assert main(["restore", "--db", url, "--from", str(future), "--home", str(home), "--force"]) == 2
    assert _gallery(url, home) == before


@pytest.mark.parametrize(("backend", "method"), CASES, ids=[f"{b}-{m}" for b, m in CASES])
def test_restore_that_fails_verification_leaves_the_gallery_as_it_was(
    backend: str, method: str, tmp_path: Path
) -> None:
    """Finding 3: the restored copy is checked before it replaces anything; a mismatch changes nothing."""
    if method == "pg_dump" and not shutil.which("pg_dump"):
        pytest.skip("pg_dump is not installed")
    url = _url(backend, tmp_path)
    home = tmp_path / "home"
    engine = init_db(url)
    _populate(engine, home)
    engine.dispose()
    out = tmp_path / "backup"
    manifest = backup(url, out, home=home, method=method)
    _rename_t1(url, "changed after the backup")
    before = _gallery(url, home)
    _rewrite_manifest(out, tables={**manifest.tables, "sighting": manifest.tables["sighting"] + 1})
    with pytest.raises(BackupError, match=r"does not match|does not hold"):
        restore(out, url, home=home, force=True)
    assert _gallery(url, home) == before
    _rewrite_manifest(out, tables=manifest.tables)  # the honest manifest: now it replaces the gallery
    restore(out, url, home=home, force=True)
    engine = init_db(url)
    with session_scope(engine) as session:
        assert session.exec(select(Individual.name).where(Individual.code == "T-0001")).scalar_one() == "Donatello"
        assert check_database(session) == []
    engine.dispose()


def test_check_reports_a_missing_or_empty_database_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 3: `check` used to create empty tables in an emptied database and call it consistent."""
    missing = tmp_path / "nowhere" / "gallery.db"
    assert main(["check", "--db", f"sqlite:///{missing}", "--home", str(tmp_path / "h")]) == 1
    assert "no gallery database" in capsys.readouterr().out
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["check", "--db", f"sqlite:///{empty}", "--home", str(tmp_path / "h"), "--json"]) == 1
    assert "no gallery database" in json.loads(capsys.readouterr().out)["problems"][0]
    assert empty.stat().st_size == 0
    emptied = tmp_path / "emptied.db"  # a database whose gallery tables are gone (the old half-done restore)
    database = sqlite3.connect(emptied)
    database.execute("CREATE TABLE unrelated (x)")
    database.close()
    assert main(["check", "--db", f"sqlite:///{emptied}", "--home", str(tmp_path / "h")]) == 1
    assert "holds no gallery tables" in capsys.readouterr().out
    database = sqlite3.connect(emptied)
    assert [r[0] for r in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["unrelated"]
    database.close()


def test_a_failed_backup_refresh_leaves_the_previous_backup_restorable(
    sqlite_backup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 4: a refresh stopped half-way used to leave DIR without backup.json, refused by restore."""
    url, home, out = sqlite_backup
    previous = _files(out)
    PhotoStore(home / "photos").put(image_bytes(777), ".png")
    real_copy_tree = backup_module.copy_tree

    def copy_then_die(source: Path, dest: Path, **kwargs: Any) -> int:
        real_copy_tree(source, dest, **kwargs)
        raise KeyboardInterrupt  # the refresh stops after the new photos are copied

    monkeypatch.setattr(backup_module, "copy_tree", copy_then_die)
    with pytest.raises(KeyboardInterrupt):
        backup(url, out, home=home)
    monkeypatch.undo()
    assert _files(out) == previous
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".tmp-")] == []
    restore(out, f"sqlite:///{tmp_path / 'restored.db'}", home=tmp_path / "restored-home")
    refreshed = backup(url, out, home=home)  # and the next refresh completes
    assert refreshed.photos == read_manifest(out).photos == 6


def test_a_refresh_without_an_atomic_exchange_replaces_the_backup_by_renames(
    sqlite_backup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where renameat2 is missing (not Linux, old kernels, some file systems), two renames do it."""
    url, home, out = sqlite_backup
    PhotoStore(home / "photos").put(image_bytes(778), ".png")
    monkeypatch.setattr(backup_module, "_exchange", lambda first, second: False)
    manifest = backup(url, out, home=home)
    assert manifest.photos == read_manifest(out).photos == 6
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(("backup", ".tmp-"))) == ["backup"]
    restore(out, f"sqlite:///{tmp_path / 'restored.db'}", home=tmp_path / "restored-home")


def test_backup_refuses_a_folder_that_holds_other_files(sqlite_backup, tmp_path: Path) -> None:
    """A backup replaces its whole folder, so it never takes over one that holds anything else."""
    url, home, _ = sqlite_backup
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.odt").write_bytes(b"years of work")
    with pytest.raises(BackupError, match="not part of a Scute backup"):
        backup(url, folder, home=home)
    assert [p.name for p in folder.iterdir()] == ["thesis.odt"]


def test_sqlite_backup_is_not_left_in_wal_mode_and_restore_only_reads_it(sqlite_backup, tmp_path: Path) -> None:
    """Finding 10: the copy was switched to WAL, so restoring it from read-only media failed, and the
    restore wrote -wal/-shm files into the backup folder."""
    _, _, out = sqlite_backup
    header = (out / "database.sqlite").read_bytes()[18:20]
    assert header == b"\x01\x01"  # rollback journal: readable without -wal/-shm files
    assert sorted(p.name for p in out.iterdir()) == ["backup.json", "database.sqlite", "features", "photos"]
    before = {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*")}
    files = _files(out)
    for path in [*out.rglob("*"), out]:  # read-only media, as far as permissions can say (root ignores them)
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        restore(out, f"sqlite:///{tmp_path / 'restored.db'}", home=tmp_path / "restored-home")
    finally:
        for path in [out, *out.rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)
    assert {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*")} == before
    assert {k: v[0] for k, v in _files(out).items()} == {k: v[0] for k, v in files.items()}


def test_the_gallery_photo_store_and_backups_are_owner_only(tmp_path: Path) -> None:
    """Finding 10: gallery.db (with password hashes), its -wal/-shm, the photos and backups were world-readable."""
    old_umask = os.umask(0o022)  # the usual umask, which used to give 0644 files
    try:
        home = tmp_path / "data"
        url = f"sqlite:///{home / 'gallery.db'}"
        engine = init_db(url)
        _populate(engine, home)
        with engine.connect() as connection:  # the WAL files exist while a connection is open
            connection.exec_driver_sql("SELECT 1")
            database_files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in home.glob("gallery.db*")}
        engine.dispose()
        backup(url, tmp_path / "backups" / "nightly", home=home)
        restore(tmp_path / "backups" / "nightly", f"sqlite:///{tmp_path / 'r' / 'g.db'}", home=tmp_path / "r")
    finally:
        os.umask(old_umask)
    assert database_files == {"gallery.db": 0o600, "gallery.db-wal": 0o600, "gallery.db-shm": 0o600}
    for root in (home / "photos", tmp_path / "backups", tmp_path / "r"):
        modes = {stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")] if p.is_dir()}
        assert modes == {0o700}, root
        modes = {stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}
        assert modes == {0o600}, root
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_check_creates_no_tables_on_either_backend(db_url: str, tmp_path: Path) -> None:
    """Finding 3 on PostgreSQL too: an emptied database stays empty and `check` says so (exit 1)."""
    assert main(["check", "--db", db_url, "--home", str(tmp_path / "h")]) == 1
    if db_url.startswith("sqlite"):
        assert not (tmp_path / "gallery.db").exists()
        return
    raw = create_engine(db_url)
    metadata = MetaData()
    metadata.reflect(raw)
    raw.dispose()
    assert metadata.tables == {}
