"""core.review: sightings, votes, consensus, decisions, concurrency; and the sightings/vote command line.

Runs on SQLite files, and also on PostgreSQL when ``SCUTE_TEST_DATABASE_URL`` is set (wiped first).
The two-process tests start real processes (spawn) that vote at the same moment.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fixtures.models import SMALL_ALIKED_CONF
from fixtures.photos import image_bytes
from PIL import Image
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from core import cli
from core.catalogue.importer import import_rows
from core.catalogue.manifest import ManifestRow
from core.engine.features import photo_key
from core.engine.index import GalleryPhoto
from core.engine.search import Engine as SearchEngine
from core.engine.search import Identification
from core.io import sha256_hex
from core.review.individuals import next_code
from core.review.rules import AlreadyDecided, AlreadyInGallery, AlreadyVoted, ReviewConfig, ReviewError
from core.review.sightings import CandidateInput, list_sightings, review_queue, sighting_detail, submit_sighting
from core.review.users import PermissionDenied, create_user, disable_user, get_user
from core.review.votes import Tally, cast_vote, decide, tally
from core.store.db import make_engine, session_scope
from core.store.gallery import add_photo, gallery_entries, get_or_create_individual, record_features
from core.store.models import AuditLog, Candidate, FeatureRecord, Individual, Photo, Sighting, User, Vote
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"


@dataclass
class World:
    """Ids of the fixture's users and individuals (rows are re-read in each test's own session)."""

    admin: int
    alice: int
    bob: int
    carol: int
    t1: int
    t2: int


@pytest.fixture
def world(engine: Engine, store: PhotoStore) -> World:
    """An admin, volunteers alice and bob, reviewer carol; T-0001 with two gallery photos, T-0002 with one."""
    with session_scope(engine) as session:
        admin = create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = create_user(session, "alice", PASSWORD, actor=admin)
        bob = create_user(session, "bob", PASSWORD, actor=admin)
        carol = create_user(session, "carol", PASSWORD, "reviewer", actor=admin)
        t1, _ = get_or_create_individual(session, "T-0001", "Donatello")
        t2, _ = get_or_create_individual(session, "T-0002", "Raphael")
        for seed, individual in ((1, t1), (2, t1), (3, t2)):
            add_photo(session, store, image_bytes(seed), suffix=".png", individual=individual, width=32, height=24)
        return World(admin.id, alice.id, bob.id, carol.id, t1.id, t2.id)  # type: ignore[arg-type]


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    assert user is not None
    return user


def _candidates(world: World) -> list[CandidateInput]:
    return [
        CandidateInput(individual_id=world.t1, rank=1, score=0.81, probability=0.64, n_matches=57),
        CandidateInput(individual_id=world.t2, rank=2, score=0.22, probability=0.16, n_matches=9),
    ]


def _submit(
    engine: Engine, store: PhotoStore, world: World, seed: int = 100, user: str = "alice", size=(32, 24), **kwargs
):
    kwargs.setdefault("candidates", _candidates(world))
    kwargs.setdefault("new_individual_probability", 0.12)
    with session_scope(engine) as session:
        data = image_bytes(seed, size=size)
        return submit_sighting(session, store, _user(session, getattr(world, user)), data, **kwargs)


@pytest.fixture
def cli_home(store: PhotoStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's data folder is the tests' photo store; SIFT computes a decided photo's features
    (a photo joins the gallery only with usable ones, core.indexing.searchable) without loading a network."""
    monkeypatch.setenv("SCUTE_HOME", str(store.root.parent))
    monkeypatch.setenv("SCUTE_EXTRACTOR", "sift")


def _vote(engine: Engine, user_id: int, sighting_id: int, decision: str, individual_id: int | None = None, **kw):
    with session_scope(engine) as session:
        return cast_vote(session, _user(session, user_id), sighting_id, decision, individual_id, **kw)


def _count(session: Session, model: type, *where) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


# --- the life of a sighting --------------------------------------------------------------------------


def test_sighting_life_cycle(engine: Engine, store: PhotoStore, world: World) -> None:
    hooked: list[tuple[int, int | None, bool]] = []

    def hook(photo: Photo) -> None:
        hooked.append((photo.id, photo.individual_id, photo.in_gallery))  # type: ignore[arg-type]

    taken = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
    submission = _submit(
        engine,
        store,
        world,
        proposal="same",
        proposed_individual_id=world.t1,
        comment="same scute pattern",
        side="left",
        crop=(0.1, 0.1, 0.9, 0.9),
        rotation=90,
        taken_at=taken,
        notes="nesting beach, north end",
        on_gallery_change=hook,
    )
    assert submission.created is True
    assert submission.outcome is not None
    assert (submission.outcome.status, submission.outcome.applied) == ("pending", False)
    sighting_id, photo_id = submission.sighting.id, submission.photo.id
    assert hooked == []

    with session_scope(engine) as session:
        detail = sighting_detail(session, sighting_id)  # type: ignore[arg-type]
        s, photo = detail.sighting, detail.photo
        assert (s.status, s.side, s.notes, s.taken_at) == (
            "pending",
            "left",
            "nesting beach, north end",
            taken,
        )
        assert s.new_individual_probability == pytest.approx(0.12)
        assert (s.submitted_by, s.decision, s.decided_individual_id) == (world.alice, None, None)
        assert [(c.rank, c.code, c.individual_id, c.n_matches) for c in detail.candidates] == [
            (1, "T-0001", world.t1, 57),
            (2, "T-0002", world.t2, 9),
        ]
        assert [c.probability for c in detail.candidates] == pytest.approx([0.64, 0.16])
        assert [(v.user_id, v.decision, v.individual_id, v.comment) for v in detail.votes] == [
            (world.alice, "same", world.t1, "same scute pattern")
        ]
        assert detail.tally == Tally(same={world.t1: 1})
        assert (photo.individual_id, photo.in_gallery, photo.side, photo.rotation) == (
            None,
            False,
            "left",
            90,
        )
        assert photo.crop == pytest.approx((0.1, 0.1, 0.9, 0.9))
        assert (photo.uploaded_by, photo.width, photo.height) == (world.alice, 32, 24)
        assert photo_id not in {e.photo_id for e in gallery_entries(session, store)}
        assert [s.id for s in review_queue(session, _user(session, world.bob))] == [sighting_id]
        assert review_queue(session, _user(session, world.alice)) == []

    outcome = _vote(engine, world.bob, sighting_id, "same", world.t1, on_gallery_change=hook)  # type: ignore[arg-type]
    assert (outcome.status, outcome.applied, outcome.decision, outcome.individual_id) == (
        "decided",
        True,
        "same",
        world.t1,
    )
    assert hooked == [(photo_id, world.t1, True)]

    with session_scope(engine) as session:
        s = session.get(Sighting, sighting_id)
        photo = session.get(Photo, photo_id)
        assert (s.status, s.decision, s.decided_individual_id, s.decided_by) == (
            "decided",
            "same",
            world.t1,
            world.bob,
        )
        assert s.decided_at is not None and s.decided_at.tzinfo is not None
        assert (photo.individual_id, photo.in_gallery) == (world.t1, True)
        entries = {e.photo_id: e.individual_code for e in gallery_entries(session, store)}
        assert entries[photo_id] == "T-0001"
        assert sorted(entries.values()) == ["T-0001", "T-0001", "T-0001", "T-0002"]
        decisions = session.exec(select(AuditLog).where(AuditLog.action == "sighting.decide")).all()
        assert [(e.target_id, e.user_id, e.payload["decision"], e.payload["code"]) for e in decisions] == [
            (sighting_id, world.bob, "same", "T-0001")
        ]
        assert decisions[0].payload["before"] == {
            "status": "pending",
            "photo_individual_id": None,
            "photo_in_gallery": False,
        }

    # A late vote is stored but changes nothing, and the hook is not called again.
    late = _vote(engine, world.carol, sighting_id, "new", on_gallery_change=hook)  # type: ignore[arg-type]
    assert (late.status, late.applied) == ("decided", False)
    assert len(hooked) == 1
    with session_scope(engine) as session:
        assert _count(session, Vote, Vote.sighting_id == sighting_id) == 3
        assert session.get(Photo, photo_id).individual_id == world.t1
        assert _count(session, AuditLog, AuditLog.action == "sighting.decide") == 1
        with pytest.raises(AlreadyDecided, match="already decided"):
            decide(session, _user(session, world.admin), sighting_id, "new")  # type: ignore[arg-type]


# The acceptance walk on real photos: t006 has one gallery photo and the query OftsohIPPw ranks it only
# second; once NVvCgDiDnf (same animal, near the query in time) is confirmed, t006 comes first.
REAL_GALLERY = {"t006": ["IwlHBilGrP.jpg"], "t019": ["IGEDlUWUGW.JPG"], "t002": ["AWKZYHmepZ.JPG", "AyPUCFEHdl.JPG"]}
REAL_SUBMITTED = ("t006", "NVvCgDiDnf.jpg")
REAL_QUERY = ("t006", "OftsohIPPw.jpg")


@pytest.fixture(scope="module")
def turtle_engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    """ALIKED + LightGlue at test size; one feature and pair cache for both databases."""
    return SearchEngine("aliked", dict(SMALL_ALIKED_CONF), device="cpu", cache_dir=tmp_path_factory.mktemp("turtles"))


def _identify(db: Engine, store: PhotoStore, engine: SearchEngine, path: Path) -> Identification:
    """What the app does for a volunteer's photo: index the current gallery, match, rank."""
    with session_scope(db) as session:
        photos = [
            GalleryPhoto(e.sha256, e.individual_code, e.path, e.crop, e.rotation, e.photo_id, e.individual_name)
            for e in gallery_entries(session, store)
        ]
    query = engine.features(path, sha256_hex(path.read_bytes()))  # decoded only when not cached yet
    return engine.identify(query, engine.build_index(photos), top_k=3)


def test_sighting_life_cycle_on_real_turtles(
    engine: Engine,
    store: PhotoStore,
    turtle_engine: SearchEngine,
    turtle_manifest: list[dict[str, object]],
    data_dir: Path,
) -> None:
    """Submit -> two volunteers agree -> the photo joins the gallery -> the next search ranks the turtle higher."""
    by_name = {(str(r["identity"]), Path(r["path"]).name): Path(r["path"]) for r in turtle_manifest}  # type: ignore[arg-type]
    root = data_dir / "turtles"
    gallery = []
    for identity, names in REAL_GALLERY.items():
        gallery += [ManifestRow(str(by_name[identity, name].relative_to(root)), identity) for name in names]
    imported = import_rows(engine, store, turtle_engine, gallery, root)
    assert (imported.added, imported.individuals_created, imported.problems) == (4, 3, [])
    submitted, query = by_name[REAL_SUBMITTED], by_name[REAL_QUERY]

    before = _identify(engine, store, turtle_engine, query)
    rank_before = before.ranking.index("t006") + 1
    assert rank_before > 1, before.ranking

    with session_scope(engine) as session:
        admin = create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice_id = create_user(session, "alice", PASSWORD, actor=admin).id
        bob_id = create_user(session, "bob", PASSWORD, actor=admin).id
        ids = {i.code: i.id for i in session.exec(select(Individual)).all()}

    # Alice submits the photo with the ranking she was shown and proposes t006.
    seen = _identify(engine, store, turtle_engine, submitted)
    candidates = [
        CandidateInput(ids[c.identity], rank, c.score, c.probability, c.matches)  # type: ignore[arg-type]
        for rank, c in enumerate(seen.candidates, 1)
    ]
    with session_scope(engine) as session:
        submission = submit_sighting(
            session,
            store,
            _user(session, alice_id),  # type: ignore[arg-type]
            submitted.read_bytes(),
            candidates=candidates,
            new_individual_probability=seen.new_individual_probability,
            proposal="same",
            proposed_individual_id=ids["t006"],
            original_name=submitted.name,
        )
        assert submission.outcome is not None and submission.outcome.status == "pending"
        sighting_id, photo_id = submission.sighting.id, submission.photo.id
    with session_scope(engine) as session:
        detail = sighting_detail(session, sighting_id)  # type: ignore[arg-type]
        assert [c.code for c in detail.candidates] == [c.identity for c in seen.candidates]
        assert photo_id not in {e.photo_id for e in gallery_entries(session, store)}

    # Bob agrees: the second concordant vote decides, and the gallery hook caches the photo's features.
    with session_scope(engine) as session:

        def cache_features(photo: Photo) -> None:
            features = turtle_engine.features(store.path(photo.path), photo.sha256, photo.crop, photo.rotation)
            key = photo_key(photo.sha256, photo.crop, photo.rotation)
            cache = turtle_engine.feature_cache
            relpath = cache.path(features.version, key).relative_to(cache.root)
            name, version = turtle_engine.extractor.name, features.version
            record_features(session, photo.id, name, version, str(relpath), len(features))  # type: ignore[arg-type]

        bob = _user(session, bob_id)  # type: ignore[arg-type]
        outcome = cast_vote(session, bob, sighting_id, "same", ids["t006"], on_gallery_change=cache_features)  # type: ignore[arg-type]
        assert (outcome.applied, outcome.status, outcome.individual_id) == (True, "decided", ids["t006"])
    with session_scope(engine) as session:
        photo = session.get(Photo, photo_id)
        assert (photo.individual_id, photo.in_gallery) == (ids["t006"], True)
        assert _count(session, FeatureRecord, FeatureRecord.photo_id == photo_id) == 1
        assert {e.photo_id: e.individual_code for e in gallery_entries(session, store)}[photo_id] == "t006"

    after = _identify(engine, store, turtle_engine, query)
    rank_after = after.ranking.index("t006") + 1
    assert rank_after < rank_before and rank_after == 1, (before.ranking, after.ranking)
    assert after.scores["t006"] > before.scores["t006"]
    assert after.candidates[0].photo.photo_id == photo_id  # the confirmed photo is the one that matched
    assert after.candidates[0].probability > next(c.probability for c in before.candidates if c.identity == "t006")


def test_new_individual_gets_next_code(engine: Engine, store: PhotoStore, world: World) -> None:
    with session_scope(engine) as session:
        get_or_create_individual(session, "T-0007")  # gaps are not filled: max + 1
        get_or_create_individual(session, "X-0099")  # another pattern is ignored
        get_or_create_individual(session, "T-12a")  # not of the pattern either
    submission = _submit(engine, store, world, proposal="new")
    outcome = _vote(engine, world.carol, submission.sighting.id, "new")  # type: ignore[arg-type]
    assert (outcome.applied, outcome.decision) == (True, "new")
    with session_scope(engine) as session:
        created = session.get(Individual, outcome.individual_id)
        assert (created.code, created.status) == ("T-0008", "active")
        photo = session.get(Photo, submission.photo.id)
        assert (photo.individual_id, photo.in_gallery) == (created.id, True)
        assert next_code(session, "T-{n:04d}") == "T-0009"
        assert next_code(session, "Caretta {n}") == "Caretta 1"
    with session_scope(engine) as session:
        other = _submit(engine, store, world, seed=101, proposal="new", config=ReviewConfig(required_votes=1))
        assert other.outcome is not None and other.outcome.applied is True
        assert session.get(Individual, other.outcome.individual_id).code == "T-0009"


def test_code_pattern_is_configurable(engine: Engine, store: PhotoStore, world: World) -> None:
    config = ReviewConfig(required_votes=1, code_pattern="CM{n:03d}")
    submission = _submit(engine, store, world, proposal="new", config=config)
    with session_scope(engine) as session:
        assert session.get(Individual, submission.outcome.individual_id).code == "CM001"  # type: ignore[union-attr]


def test_resubmission_links_to_existing_sighting(engine: Engine, store: PhotoStore, world: World) -> None:
    first = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t1)
    again = _submit(engine, store, world, proposal="new")  # same user, same bytes: nothing added
    assert (again.created, again.sighting.id, again.photo.id, again.outcome) == (
        False,
        first.sighting.id,
        first.photo.id,
        None,
    )
    by_bob = _submit(engine, store, world, user="bob", proposal="same", proposed_individual_id=world.t1)
    assert (by_bob.created, by_bob.sighting.id) == (False, first.sighting.id)
    assert by_bob.outcome is not None and by_bob.outcome.applied is True  # bob's proposal was his vote
    with session_scope(engine) as session:
        assert _count(session, Sighting) == 1
        assert _count(session, Photo) == 4
        assert _count(session, Candidate) == 2
        assert _count(session, Vote) == 2
        assert session.get(Sighting, first.sighting.id).status == "decided"


def test_submitting_a_gallery_photo_is_refused(engine: Engine, store: PhotoStore, world: World) -> None:
    with (
        session_scope(engine) as session,
        pytest.raises(AlreadyInGallery, match="already in the gallery as T-0001"),
    ):
        submit_sighting(
            session,
            store,
            _user(session, world.alice),
            image_bytes(1),
            candidates=[],
            new_individual_probability=None,
        )
    with session_scope(engine) as session:
        assert _count(session, Sighting) == 0


def test_exif_date_and_place_are_defaults(engine: Engine, store: PhotoStore, world: World) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2024:06:01 14:30:00"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (12.0, 30.0, 0.0), 3: "W", 4: (45.0, 15.0, 0.0)})
    with session_scope(engine) as session:
        submission = submit_sighting(
            session,
            store,
            _user(session, world.alice),
            image_bytes(7, "JPEG", exif=exif),
            candidates=[],
            new_individual_probability=0.9,
        )
        s = submission.sighting
        assert (s.taken_at, s.latitude, s.longitude) == (
            datetime(2024, 6, 1, 14, 30, tzinfo=UTC),
            12.5,
            -45.25,
        )
        assert submission.photo.path.endswith(".jpg")
        assert submission.outcome is None
        assert s.status == "pending"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"side": "front"}, ReviewError, "side"),
        ({"proposal": "same"}, ReviewError, "which individual"),
        ({"proposal": "maybe"}, ReviewError, "not a vote"),
        ({"new_individual_probability": 1.5}, ValueError, "between 0 and 1"),
        ({"candidates": [CandidateInput(424242, 1, 0.5, 0.5, 3)]}, ReviewError, "does not exist"),
        ({"candidates": [CandidateInput(1, 1, 0.5), CandidateInput(1, 1, 0.4)]}, ValueError, "distinct"),
        ({"candidates": [CandidateInput(1, 0, 0.5)]}, ValueError, "rank"),
        ({"candidates": [CandidateInput(1, 1, float("nan"))]}, ValueError, "finite"),
    ],
)
def test_invalid_submissions_store_nothing(
    engine: Engine, store: PhotoStore, world: World, kwargs: dict, error: type, match: str
) -> None:
    kwargs.setdefault("candidates", [])
    kwargs.setdefault("new_individual_probability", 0.5)
    with pytest.raises(error, match=match), session_scope(engine) as session:
        submit_sighting(session, store, _user(session, world.alice), image_bytes(200), **kwargs)
    with session_scope(engine) as session:
        assert (_count(session, Sighting), _count(session, Photo), _count(session, Vote)) == (0, 3, 0)


def test_not_a_photo_is_refused(engine: Engine, store: PhotoStore, world: World) -> None:
    from core.errors import ImageError

    with pytest.raises(ImageError), session_scope(engine) as session:
        submit_sighting(
            session,
            store,
            _user(session, world.alice),
            b"not a photo",
            candidates=[],
            new_individual_probability=None,
        )


# --- votes and consensus -----------------------------------------------------------------------------


def test_conflicting_votes_go_to_an_admin(engine: Engine, store: PhotoStore, world: World) -> None:
    submission = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t1)
    sighting_id, photo_id = submission.sighting.id, submission.photo.id
    outcome = _vote(engine, world.bob, sighting_id, "new")  # type: ignore[arg-type]
    assert (outcome.status, outcome.applied) == ("conflict", False)
    with session_scope(engine) as session:
        assert session.get(Sighting, sighting_id).status == "conflict"
        assert (session.get(Photo, photo_id).individual_id, session.get(Photo, photo_id).in_gallery) == (
            None,
            False,
        )
        assert _count(session, AuditLog, AuditLog.action == "sighting.conflict") == 1
        assert [s.id for s in list_sightings(session, "conflict")] == [sighting_id]
        assert list_sightings(session, "pending") == []

    # More agreement does not settle a conflict by itself: the vote is stored, the admin decides.
    outcome = _vote(engine, world.carol, sighting_id, "same", world.t1)  # type: ignore[arg-type]
    assert (outcome.status, outcome.applied) == ("conflict", False)
    with session_scope(engine) as session:
        assert _count(session, Vote, Vote.sighting_id == sighting_id) == 3
        assert session.get(Photo, photo_id).individual_id is None
        with pytest.raises(PermissionDenied, match="only a admin may decide"):
            decide(session, _user(session, world.carol), sighting_id, "same", world.t2)  # type: ignore[arg-type]

    with session_scope(engine) as session:
        outcome = decide(session, _user(session, world.admin), sighting_id, "same", world.t2)  # type: ignore[arg-type]
    assert (outcome.status, outcome.applied, outcome.individual_id) == ("decided", True, world.t2)
    with session_scope(engine) as session:
        s = session.get(Sighting, sighting_id)
        assert (s.status, s.decided_by, s.decided_individual_id) == ("decided", world.admin, world.t2)
        photo = session.get(Photo, photo_id)
        assert (photo.individual_id, photo.in_gallery) == (world.t2, True)
        entry = session.exec(select(AuditLog).where(AuditLog.action == "sighting.decide")).one()
        assert (entry.user_id, entry.payload["how"], entry.payload["before"]["status"]) == (
            world.admin,
            "admin",
            "conflict",
        )


def test_double_vote_is_refused(engine: Engine, store: PhotoStore, world: World) -> None:
    submission = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t1)
    sighting_id = submission.sighting.id
    _vote(engine, world.carol, sighting_id, "unsure")  # type: ignore[arg-type]
    with pytest.raises(AlreadyVoted, match="'carol' has already voted 'unsure' on sighting"):
        _vote(engine, world.carol, sighting_id, "same", world.t1)  # type: ignore[arg-type]
    with pytest.raises(AlreadyVoted, match="'alice' has already voted"):  # the submitter's proposal was her vote
        _vote(engine, world.alice, sighting_id, "same", world.t1)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        votes = session.exec(select(Vote).where(Vote.sighting_id == sighting_id).order_by(col(Vote.id))).all()
        assert [(v.user_id, v.decision) for v in votes] == [(world.alice, "same"), (world.carol, "unsure")]
        assert session.get(Sighting, sighting_id).status == "pending"
    # The database itself refuses a second row, whatever the code above does.
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(Vote(sighting_id=sighting_id, user_id=world.carol, decision="new"))  # type: ignore[arg-type]
        session.flush()


def test_disabled_user_cannot_vote(engine: Engine, store: PhotoStore, world: World) -> None:
    submission = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t1)
    with session_scope(engine) as session:
        stale_bob = _user(session, world.bob)  # an app may still hold this object, signed in
    with session_scope(engine) as session:
        disable_user(session, _user(session, world.admin), "bob")
    with pytest.raises(PermissionDenied, match="'bob' is disabled"), session_scope(engine) as session:
        cast_vote(session, stale_bob, submission.sighting.id, "same", world.t1)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        assert _count(session, Vote) == 1
        assert session.get(Sighting, submission.sighting.id).status == "pending"
        assert session.get(Photo, submission.photo.id).individual_id is None
    with pytest.raises(PermissionDenied, match="disabled"), session_scope(engine) as session:
        submit_sighting(session, store, stale_bob, image_bytes(300), candidates=[], new_individual_probability=None)


def test_unsure_votes_count_for_nothing(engine: Engine, store: PhotoStore, world: World) -> None:
    submission = _submit(engine, store, world, proposal="unsure")
    sighting_id = submission.sighting.id
    assert _vote(engine, world.bob, sighting_id, "unsure").status == "pending"  # type: ignore[arg-type]
    assert _vote(engine, world.carol, sighting_id, "new").status == "pending"  # type: ignore[arg-type]
    outcome = _vote(engine, world.admin, sighting_id, "new")  # type: ignore[arg-type]
    assert (outcome.status, outcome.applied) == ("decided", True)
    with session_scope(engine) as session:
        assert tally(session, sighting_id) == Tally(same={}, new=2, unsure=2)  # type: ignore[arg-type]


def test_vote_for_retired_individual_is_refused(engine: Engine, store: PhotoStore, world: World) -> None:
    submission = _submit(engine, store, world)
    with session_scope(engine) as session:
        session.get(Individual, world.t2).status = "retired"
    with pytest.raises(ReviewError, match="T-0002 is retired"):
        _vote(engine, world.bob, submission.sighting.id, "same", world.t2)  # type: ignore[arg-type]
    with pytest.raises(ReviewError, match="There is no individual"):
        _vote(engine, world.bob, submission.sighting.id, "same", 424242)  # type: ignore[arg-type]
    with pytest.raises(ReviewError, match="names no individual"):
        _vote(engine, world.bob, submission.sighting.id, "new", world.t1)  # type: ignore[arg-type]
    with pytest.raises(ReviewError, match="no sighting 999"):
        _vote(engine, world.bob, 999, "new")


def test_votes_for_merged_codes_agree_with_the_survivor(engine: Engine, store: PhotoStore, world: World) -> None:
    submission = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t2)
    with session_scope(engine) as session:
        t2 = session.get(Individual, world.t2)
        t2.status, t2.merged_into_id = "merged", world.t1
    outcome = _vote(engine, world.bob, submission.sighting.id, "same", world.t1)  # type: ignore[arg-type]
    assert (outcome.applied, outcome.individual_id) == (True, world.t1)


@pytest.mark.parametrize(
    ("tally_", "config", "expected"),
    [
        (Tally(), ReviewConfig(), ("pending", None)),
        (Tally(same={1: 1}), ReviewConfig(), ("pending", None)),
        (Tally(same={1: 2}, unsure=3), ReviewConfig(), ("decided", ("same", 1))),
        (Tally(new=2), ReviewConfig(), ("decided", ("new", None))),
        (Tally(same={1: 1}, new=1), ReviewConfig(), ("conflict", None)),
        (Tally(same={1: 1, 2: 1}), ReviewConfig(), ("conflict", None)),
        (Tally(same={1: 2}), ReviewConfig(required_votes=3), ("pending", None)),
        (
            Tally(same={1: 3}, new=1),
            ReviewConfig(required_votes=3, allowed_dissent=1),
            ("decided", ("same", 1)),
        ),
        (
            Tally(same={1: 2}, new=2),
            ReviewConfig(allowed_dissent=2),
            ("pending", None),
        ),  # a tie decides nothing
        (Tally(same={1: 2}, new=2), ReviewConfig(allowed_dissent=1), ("conflict", None)),
        (Tally(same={1: 1}), ReviewConfig(required_votes=1), ("decided", ("same", 1))),
    ],
)
def test_consensus_rule(tally_: Tally, config: ReviewConfig, expected: tuple) -> None:
    assert tally_.verdict(config) == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"required_votes": 0}, "at least 1"),
        ({"allowed_dissent": -1}, ">= 0"),
        ({"code_pattern": "T-0001"}, "exactly one field"),
        ({"code_pattern": "T-{n}-{m}"}, "exactly one field"),
        ({"code_pattern": "T-{n:s}"}, "cannot format"),
        ({"code_pattern": "T-{n:x}"}, "cannot be read back"),
        ({"code_pattern": ""}, "exactly one field"),
    ],
)
def test_review_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReviewConfig(**kwargs)


# --- two processes at the same moment ----------------------------------------------------------------


def _vote_in_process(url: str, username: str, sighting_id: int, decision: str, individual_id, barrier, results) -> None:
    """Runs in a spawned process: wait for the other voter, then vote; report what happened."""
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            user = get_user(session, username)  # read before the race, like a signed-in app session
            barrier.wait(timeout=60)
            outcome = cast_vote(
                session,
                user,
                sighting_id,
                decision,
                individual_id,
                # Holding the lock a little longer makes the two transactions overlap for sure.
                on_gallery_change=lambda photo: time.sleep(0.3),
            )
        results.put((username, outcome.applied, outcome.status, outcome.individual_id, None))
    except BaseException as exc:
        results.put((username, None, None, None, repr(exc)))
    finally:
        engine.dispose()


def _race(url: str, votes: list[tuple[str, int, str, int | None]]) -> list[tuple]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(votes))
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_vote_in_process, args=(url, *vote, barrier, results), daemon=True) for vote in votes
    ]
    for process in processes:
        process.start()
    collected = []
    try:
        for _ in processes:
            collected.append(results.get(timeout=120))
    except queue.Empty:  # pragma: no cover - only when a worker hangs
        pytest.fail(f"a voting process did not finish; got {collected}")
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return sorted(collected)


@pytest.mark.parametrize("decision", ["same", "new"])
def test_two_processes_voting_at_once_decide_once(
    db_url: str, engine: Engine, store: PhotoStore, world: World, decision: str
) -> None:
    individual = world.t1 if decision == "same" else None
    submission = _submit(engine, store, world, proposal=decision, proposed_individual_id=individual)
    sighting_id = submission.sighting.id
    results = _race(db_url, [("bob", sighting_id, decision, individual), ("carol", sighting_id, decision, individual)])
    assert [r[4] for r in results] == [None, None], results
    assert sorted(r[1] for r in results) == [False, True]  # exactly one applied the decision
    assert {r[2] for r in results} == {"decided"}
    with session_scope(engine) as session:
        votes = session.exec(select(Vote.user_id).where(Vote.sighting_id == sighting_id)).all()
        assert sorted(votes) == sorted([world.alice, world.bob, world.carol])  # no vote lost
        assert _count(session, AuditLog, AuditLog.action == "sighting.decide") == 1
        assert _count(session, AuditLog, AuditLog.action == "sighting.vote") == 3
        s = session.get(Sighting, sighting_id)
        photo = session.get(Photo, submission.photo.id)
        assert (s.status, photo.individual_id, photo.in_gallery) == ("decided", s.decided_individual_id, True)
        codes = session.exec(select(Individual.code).order_by(col(Individual.code))).all()
        if decision == "new":
            assert codes == ["T-0001", "T-0002", "T-0003"]  # one new individual, not two
        else:
            assert (codes, s.decided_individual_id) == (["T-0001", "T-0002"], world.t1)


@pytest.mark.parametrize("decision", ["same", "new"])
def test_two_processes_deciding_two_sightings_at_once(
    db_url: str, engine: Engine, store: PhotoStore, world: World, decision: str
) -> None:
    """Both decisions apply: "new" gets two distinct codes, "same" puts both photos in T-0001."""
    individual = world.t1 if decision == "same" else None
    first = _submit(engine, store, world, seed=400, proposal=decision, proposed_individual_id=individual)
    second = _submit(engine, store, world, seed=401, proposal=decision, proposed_individual_id=individual)
    results = _race(
        db_url,
        [
            ("bob", first.sighting.id, decision, individual),
            ("carol", second.sighting.id, decision, individual),
        ],
    )
    assert [(r[1], r[4]) for r in results] == [(True, None), (True, None)], results
    with session_scope(engine) as session:
        codes = {session.get(Individual, r[3]).code for r in results}
        assert codes == ({"T-0001"} if decision == "same" else {"T-0003", "T-0004"})
        photos = [session.get(Photo, s.photo.id) for s in (first, second)]
        assert [(p.individual_id, p.in_gallery) for p in photos] == [(r[3], True) for r in results]


# --- command line ------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    """The real command line (``python -m core``)."""
    return cli.main(argv)


def test_cli_sightings_and_vote(db_url: str, engine: Engine, store: PhotoStore, world: World, capsys, cli_home) -> None:
    submission = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t1, size=(256, 192))
    sid = str(submission.sighting.id)
    capsys.readouterr()

    assert _cli(["sightings", "list", "--db", db_url, "--status", "pending"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "status", "submitted", "by", "side", "votes", "decision"]
    assert out[1].split()[:2] == [sid, "pending"] and "alice" in out[1]

    assert _cli(["sightings", "show", sid, "--db", db_url]) == 0
    shown = capsys.readouterr().out
    assert f"Sighting {sid}: pending" in shown and "T-0002" in shown and "64 %" in shown

    assert _cli(["vote", sid, "same", "--individual", "T-0001", "--user", "bob", "--db", db_url]) == 0
    assert capsys.readouterr().out.strip() == f"Vote stored; sighting {sid} is decided: same T-0001."

    assert _cli(["vote", sid, "new", "--user", "bob", "--db", db_url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: 'bob' has already voted")
    assert "Traceback" not in captured.err

    assert _cli(["vote", sid, "same", "--individual", "T-9999", "--user", "carol", "--db", db_url]) == 2
    assert capsys.readouterr().err == "error: There is no individual 'T-9999'.\n"
    assert _cli(["vote", sid, "unsure", "--user", "nobody", "--db", db_url]) == 2
    assert capsys.readouterr().err == "error: There is no user called 'nobody'.\n"

    assert _cli(["sightings", "list", "--db", db_url, "--status", "decided"]) == 0
    assert "same T-0001" in capsys.readouterr().out
    with session_scope(engine) as session:
        assert _count(session, Vote) == 2


def test_cli_admin_decides(db_url: str, engine: Engine, store: PhotoStore, world: World, capsys, cli_home) -> None:
    submission = _submit(engine, store, world, size=(256, 192))
    sid = str(submission.sighting.id)
    assert _cli(["sightings", "decide", sid, "new", "--user", "alice", "--db", db_url]) == 2
    assert "only a admin may decide" in capsys.readouterr().err
    assert _cli(["sightings", "decide", sid, "new", "--user", "admin", "--db", db_url]) == 0
    assert capsys.readouterr().out.strip() == f"Decided; sighting {sid} is decided: new T-0003."


def test_cli_help_and_bad_database(tmp_path: Path, capsys) -> None:
    for argv in (["vote", "--help"], ["sightings", "list", "--help"], ["sightings", "--help"]):
        with pytest.raises(SystemExit) as exited:
            _cli(argv)
        assert exited.value.code == 0
        assert "--db URL" in capsys.readouterr().out or argv == ["sightings", "--help"]
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert _cli(["sightings", "list", "--db", f"sqlite:///{blocked}/sub/x.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
