"""core.indexing.searchable: a photo joins the gallery only with usable features, computed outside the write lock.

Issue 15, finding 1: a sighting framed on a flat part of its photo could be decided; its features failed
quietly and the gallery held a photo no search could use, which ``check`` called consistent. Finding 2: the
decision decoded the photo inside the write lock, so an admin's edit meanwhile failed "database is locked".
Everything here runs on a copy of the app's real turtle gallery (tests/fixtures/appgallery.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.appgallery import APP_ENV, AppGallery, copy_home
from fixtures.world import snapshot
from sqlmodel import select

from core import cli
from core.engine import images
from core.indexing.searchable import UnsearchablePhoto
from core.io import sha256_hex
from core.review import curation
from core.service import identify, review
from core.service.app import App
from core.settings import Settings
from core.store import db as store_db
from core.store.db import session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import Individual, Photo, Sighting, User

pytestmark = pytest.mark.usefixtures("cheap_hashing")

#: A real turtle photo and a crop of it on flat, overexposed sky: nothing there for a search to match.
FLAT_PHOTO = "images/t007/tgwcyZBmCW.JPG"
FLAT_CROP = (0.2, 0.0, 0.3, 0.1)


@pytest.fixture
def app(app_gallery: AppGallery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """The app on a copy of the gallery; ``@pytest.mark.parametrize("app", [{...}], indirect=True)`` changes
    settings (SIFT keeps a test that searches quick: no network to load, no LightGlue)."""
    home = copy_home(app_gallery, tmp_path / "home")
    env = {**APP_ENV, "SCUTE_HOME": str(home), **getattr(request, "param", {})}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = App(Settings.from_env(env))
    yield app
    app.db.dispose()


def _user(app: App, name: str) -> User:
    with app.session() as session:
        return session.exec(select(User).where(User.username == name)).one()


def _flat_upload(data_dir: Path) -> identify.Upload:
    path = data_dir / "turtles" / FLAT_PHOTO
    return identify.read_upload(path.name, path.read_bytes())


def test_a_crop_on_a_flat_part_of_a_real_photo_cannot_enter_the_gallery(app: App, data_dir: Path) -> None:
    alice, bob, admin = _user(app, "alice"), _user(app, "bob"), _user(app, "admin")
    sent = identify.send(app, alice, _flat_upload(data_dir), None, proposal="new", crop=FLAT_CROP)
    sighting_id = sent.sighting.id
    assert sighting_id is not None and sent.outcome is not None and sent.outcome.status == "pending"
    before = snapshot(app.db)

    # Bob's concordant vote would decide: refused with the reason, and nothing of it is kept.
    with pytest.raises(UnsearchablePhoto, match=r"cannot join the gallery.*looks blank.*stays as it was"):
        review.vote(app, bob, sighting_id, "new", None)
    with pytest.raises(UnsearchablePhoto, match="looks blank"):
        review.decide(app, admin, sighting_id, "new", None)
    assert snapshot(app.db) == before
    with app.session() as session:
        assert session.get(Sighting, sighting_id).status == "pending"
        photo = session.get(Photo, sent.photo.id)
        assert (photo.in_gallery, photo.individual_id) == (False, None)

    # The command line's decision goes through the same gate.
    url = app.settings.database_url
    assert cli.main(["sightings", "decide", str(sighting_id), "new", "--db", url, "--user", "admin"]) == 2
    assert snapshot(app.db) == before
    assert cli.main(["check", "--db", url, "--home", str(app.settings.home), "--quick"]) == 0


def test_a_vote_on_a_searchable_photo_still_decides_and_records_its_features(app: App, app_gallery: AppGallery):
    alice, bob = _user(app, "alice"), _user(app, "bob")
    upload = identify.read_upload(app_gallery.query.name, app_gallery.query.read_bytes())
    sent = identify.send(app, alice, upload, None, proposal="new")
    settled = review.vote(app, bob, sent.sighting.id, "new", None)  # type: ignore[arg-type]
    assert (settled.outcome.applied, settled.outcome.status) == (True, "decided")
    assert cli.main(["check", "--db", app.settings.database_url, "--home", str(app.settings.home), "--quick"]) == 0


def test_an_admin_edit_is_not_blocked_while_a_votes_photo_is_decoded(
    app: App, app_gallery: AppGallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, admin = _user(app, "alice"), _user(app, "bob"), _user(app, "admin")
    upload = identify.read_upload(app_gallery.query.name, app_gallery.query.read_bytes())
    sent = identify.send(app, alice, upload, None, proposal="same", individual_id=_id(app, "t019"))
    # An admin's edit from another connection that waits at most half a second for the write lock.
    monkeypatch.setattr(store_db, "SQLITE_BUSY_TIMEOUT_S", 0.5)
    other = store_db.make_engine(app.settings.database_url)
    edits: list[str] = []
    real_load = images.load_image

    def load_and_edit(*args, **kwargs):
        try:
            with session_scope(other) as session:
                curation.rename(session, admin, "t006", f"edited while decoding {len(edits)}")
            edits.append("saved")
        except Exception as exc:  # "database is locked" when the vote holds the lock while it decodes
            edits.append(f"failed: {exc}")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(images, "load_image", load_and_edit)
    try:
        settled = review.vote(app, bob, sent.sighting.id, "same", _id(app, "t019"))  # type: ignore[arg-type]
    finally:
        other.dispose()
    assert edits and set(edits) == {"saved"}, edits  # the photo was decoded, and every edit meanwhile went through
    assert (settled.outcome.applied, settled.code) == (True, "t019")
    with app.session() as session:
        assert session.exec(select(Individual).where(Individual.code == "t006")).one().name.startswith("edited")


def _id(app: App, code: str) -> int:
    with app.session() as session:
        return session.exec(select(Individual.id).where(Individual.code == code)).one()  # type: ignore[return-value]


@pytest.mark.parametrize("app", [{"SCUTE_EXTRACTOR": "sift"}], indirect=True)
def test_a_bad_gallery_photo_never_breaks_search_and_check_reports_it(
    app: App, app_gallery: AppGallery, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The state today's code left behind: the flat crop decided into the gallery without features.
    flat = (data_dir / "turtles" / FLAT_PHOTO).read_bytes()
    with app.session() as session:
        t007, _ = get_or_create_individual(session, "t007")
        bad, _ = add_photo(
            session, app.store, flat, suffix=".jpg", individual=t007, crop=FLAT_CROP, width=2000, height=1333
        )
        bad_id = bad.id
    query = app_gallery.query
    data = query.read_bytes()
    found = identify.find(app, data, sha256_hex(data), crop=None, rotation=0, side="unknown")
    # SIFT at 512 px finds no strong match for this query anywhere (LightGlue on ALIKED does): what matters here is
    # that the search answers over every good photo and leaves the bad one, t007's only photo, out.
    assert sorted(found.identification.ranking) == sorted({i for _, i in app_gallery.gallery_rows})
    assert "t007" not in {c.identity for c in found.candidates}
    assert any(f"gallery photo {bad_id} of t007" in why and "blank" in why for why in found.index.skipped.values())

    home, url = str(app.settings.home), app.settings.database_url
    capsys.readouterr()
    assert cli.main(["identify", str(query), "--db", url, "--json"]) == 0
    listed = {c["identity"] for c in json.loads(capsys.readouterr().out)["candidates"]}
    assert app_gallery.query_identity in listed and "t007" not in listed
    assert cli.main(["check", "--db", url, "--home", home, "--quick"]) == 1
    assert f"gallery photo {bad_id} of t007 joined the gallery without features" in capsys.readouterr().out
