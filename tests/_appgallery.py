"""A small real turtle gallery for the app tests (AppTest and the browser test), built once per session.

Three individuals with two photos each, imported with the engine at 512 px / 512 keypoints so that the
whole app suite stays quick on two CPU cores. The null pairs are matched once while building the
template (the pair cache lives in the data folder), so every copy starts with a warm cache.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from support_photos import CHEAP_HASHER

#: What the app reads from the environment; the template is built with exactly these settings.
APP_ENV = {"SCUTE_EXTRACTOR": "aliked", "SCUTE_MAX_SIDE": "512", "SCUTE_KEYPOINTS": "512", "SCUTE_DEVICE": "cpu"}
IDENTITIES = ("t006", "t019", "t002")
PER_IDENTITY = 2
#: A photo of t006 that is not in the gallery; at these settings it matches t006 with many strong matches.
QUERY = ("images/t006/dFJLspgzYe.jpg", "t006")
PASSWORD = "turtles are great"
USERS = (("admin", "admin"), ("alice", "volunteer"), ("bob", "reviewer"))
#: argon2 at its cheapest: these tests are about the app, not password strength (see test_users).
FAST_HASHER = CHEAP_HASHER


@dataclass(frozen=True)
class AppGallery:
    home: Path  # a SCUTE_HOME with gallery.db, photos/, features/, matches/
    query: Path
    query_identity: str
    gallery_rows: tuple[tuple[str, str], ...]


def gallery_rows(manifest: Sequence[dict[str, object]]) -> list[tuple[Path, str]]:
    """The first PER_IDENTITY photos (by path) of each of IDENTITIES."""
    rows = []
    for identity in IDENTITIES:
        paths = sorted(Path(r["path"]) for r in manifest if r["identity"] == identity)  # type: ignore[arg-type]
        rows += [(p, identity) for p in paths[:PER_IDENTITY]]
    return rows


def build_template(home: Path, manifest: Sequence[dict[str, object]], turtles: Path) -> AppGallery:
    """Import the gallery, create the accounts, and match the null pairs, all into ``home``."""
    from core.catalogue.importer import import_rows
    from core.evaluation.protocol import ManifestRow
    from core.review import users
    from core.service.appstate import EngineSettings, IndexCache
    from core.store.db import init_db, session_scope
    from core.store.photos import PhotoStore

    home.mkdir(parents=True, exist_ok=True)
    settings = EngineSettings.from_env(APP_ENV)
    engine = settings.make_engine(cache_dir=home)
    db = init_db(f"sqlite:///{home / 'gallery.db'}")
    store = PhotoStore(home / "photos")
    rows = gallery_rows(manifest)
    report = import_rows(
        db, store, engine, [ManifestRow(str(p.relative_to(turtles)), ident) for p, ident in rows], turtles
    )
    assert report.added == len(rows), report.problems
    saved = users._HASHER
    users._HASHER = FAST_HASHER
    try:
        with session_scope(db) as session:
            admin = users.create_user(session, USERS[0][0], PASSWORD, USERS[0][1], actor=None)
            for name, role in USERS[1:]:
                users.create_user(session, name, PASSWORD, role, actor=admin)
    finally:
        users._HASHER = saved
    IndexCache().get(engine, db, store)  # fills the feature and pair caches of the template
    db.dispose()
    query = turtles / QUERY[0]
    return AppGallery(home, query, QUERY[1], tuple((str(p), i) for p, i in rows))


def copy_home(template: AppGallery, destination: Path) -> Path:
    shutil.copytree(template.home, destination)
    return destination
