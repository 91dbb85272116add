"""core.indexing.subset and the search scope (core.service.scope): a search within a species or region compares the
query only with those individuals, through a view of the shared index that leaves the index and its shortlist
banks as they were (issue 16: Identify defaults to the encounter's species and region). On a copy of the app's real
turtle gallery (tests/fixtures/appgallery.py: t006, t019, t002, two photos each)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.appgallery import APP_ENV, AppGallery, copy_home
from sqlmodel import select

from core.engine.shortlist import ShortlistConf, shortlist_index
from core.errors import EmptyGalleryError
from core.indexing.subset import restricted, subset
from core.io import sha256_hex
from core.review.sites import add_site
from core.service import identify, scope
from core.service.app import App
from core.settings import Settings
from core.store.fieldwork import Encounter
from core.store.models import Individual, Photo, User

pytestmark = pytest.mark.usefixtures("cheap_hashing")


@pytest.fixture
def app(app_gallery: AppGallery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The app on a copy of the gallery, with SIFT (quick to search: no LightGlue, features computed in a second)."""
    home = copy_home(app_gallery, tmp_path / "home")
    env = {**APP_ENV, "SCUTE_HOME": str(home), "SCUTE_EXTRACTOR": "sift"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = App(Settings.from_env(env))
    yield app
    app.db.dispose()


def _ids(app: App) -> dict[str, int]:
    with app.session() as session:
        return {i.code: i.id for i in session.exec(select(Individual)).all()}  # type: ignore[misc]


def test_a_restricted_search_ranks_only_the_allowed_individuals_and_leaves_the_shared_index_whole(
    app: App, app_gallery: AppGallery
) -> None:
    ids = _ids(app)
    assert set(ids) == {"t006", "t019", "t002"}
    data = app_gallery.query.read_bytes()
    sha = sha256_hex(data)
    index = app.indexes.get(app.engine, app.db, app.store, "unknown")
    whole = [(p.key, p.identity) for p in index.photos]
    assert len(whole) == 6

    # Without t006 (the query's individual) the search ranks only t019 and t002.
    allowed = {ids["t019"], ids["t002"]}
    found = identify.find(app, data, sha, crop=None, rotation=0, side="unknown", individuals=allowed)
    assert set(found.identification.ranking) == {"t019", "t002"}
    assert {c.identity for c in found.candidates} <= {"t019", "t002"}
    assert {p.identity for p in found.index.photos} == {"t019", "t002"} and len(found.index.photos) == 4
    assert found.evidence().candidates and all(c.identity != "t006" for c in found.evidence().candidates)

    # The shared index is untouched, and the next search of everything ranks and shows t006 again. (SIFT at 512 px
    # finds no strong match for this query anywhere, so which individual comes first is not what is tested here.)
    assert [(p.key, p.identity) for p in index.photos] == whole and len(index.features) == 6
    everyone = identify.find(app, data, sha, crop=None, rotation=0, side="unknown")
    assert everyone.index is index
    assert "t006" in {c.identity for c in everyone.candidates}
    assert set(everyone.identification.ranking) == {"t006", "t019", "t002"}

    # The same filter gives the same view (kept, not rebuilt); a view's shortlist bank is its own.
    with app.session() as session:
        view = restricted(session, index, allowed)
        assert restricted(session, index, allowed) is view
        assert restricted(session, index, None) is index
        assert restricted(session, index, set(ids.values())) is index
    conf = ShortlistConf()
    bank = shortlist_index(view, conf, "cpu")
    assert len(bank.keys) == 4 and view.shortlists is not index.shortlists
    assert len(shortlist_index(index, conf, "cpu").keys) == 6
    with pytest.raises(EmptyGalleryError, match="No individual in the gallery fits this species and region"):
        subset(index, [])


def test_the_default_scope_is_the_encounters_species_and_region_and_everywhere_lifts_it(app: App) -> None:
    ids = _ids(app)
    with app.session() as session:
        admin = session.exec(select(User).where(User.username == "admin")).one()
        site = add_site(session, admin, "Ras Baridi", region="Red Sea", latitude=24.27, longitude=37.62, radius_km=5)
        add_site(session, admin, "Diani", region="Kenya", latitude=-4.30, longitude=39.58, radius_km=10)
        for code, species in (("t006", "Green turtle"), ("t019", "Green turtle"), ("t002", "Hawksbill")):
            session.get(Individual, ids[code]).species = species
        # t019 was photographed at Ras Baridi, t006 in Kenya (coordinates inside Diani); t002 nowhere known.
        first = {code: session.exec(select(Photo).where(Photo.individual_id == ids[code])).first() for code in ids}
        first["t019"].site_id = site.id
        first["t006"].latitude, first["t006"].longitude = -4.31, 39.57
        encounter = Encounter(submitted_by=admin.id, species="Green turtle", site_id=site.id)
        session.add(encounter)
        session.flush()
        encounter_id, admin_id = encounter.id, admin.id

    chosen = scope.default_scope(app, encounter_id=encounter_id)
    assert chosen == scope.SearchScope("Green turtle", "Red Sea")
    assert chosen.describe() == "Green turtle individuals seen in Red Sea (and those of unknown species or place)"
    assert scope.default_scope(app, latitude=-4.3, longitude=39.6) == scope.SearchScope("", "Kenya")
    assert scope.default_scope(app, latitude=0.0, longitude=0.0) == scope.SearchScope("", "")
    assert scope.allowed_individuals(app, chosen) == {ids["t019"]}
    assert scope.allowed_individuals(app, scope.SearchScope("Green turtle", "Kenya")) == {ids["t006"]}
    assert scope.allowed_individuals(app, scope.SearchScope("Hawksbill", "Kenya")) == {ids["t002"]}  # place unknown
    assert scope.allowed_individuals(app, scope.SearchScope("Green turtle", "Red Sea", everywhere=True)) is None
    assert scope.allowed_individuals(app, scope.SearchScope()) is None
    assert scope.scope_choices(app) == scope.ScopeChoices([], ["Kenya", "Red Sea"])
    # Before the encounter exists: the species of the volunteer's latest encounter.
    assert scope.default_scope(app, user_id=admin_id, latitude=24.27, longitude=37.62) == scope.SearchScope(
        "Green turtle", "Red Sea"
    )
    assert scope.default_scope(app, user_id=admin_id + 1000) == scope.SearchScope("", "")


def test_views_are_kept_with_their_index_and_freed_with_it() -> None:
    """A replaced index (the gallery changed) must not stay in memory through the views kept of it."""
    import gc

    from core.engine.index import GalleryIndex, GalleryPhoto
    from core.engine.scoring import ScoringConf
    from core.indexing import subset as views

    photos = [GalleryPhoto(f"{i:064x}", f"T{i % 2}", Path(f"{i}.jpg"), photo_id=i) for i in range(4)]
    index = GalleryIndex(photos, [object()] * 4, {}, {}, ScoringConf())
    view = views.subset(index, [0, 2])
    assert [p.photo_id for p in view.photos] == [0, 2] and views.subset(index, [2, 0]) is view
    assert view.shortlists is not index.shortlists and view._models is index._models
    assert [p.photo_id for p in index.photos] == [0, 1, 2, 3]
    assert views.subset(index, [0, 1, 2, 3, 99]) is index
    assert id(index) in views._views
    gone = id(index)
    del index, view
    gc.collect()
    assert gone not in views._views
