"""core.review.inbox: the messages decisions send (submitter, proposers, followers), read state, following.

Runs on SQLite files, and on PostgreSQL when ``SCUTE_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fixtures.photos import image_bytes
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from core.review import inbox
from core.review.curation import merge
from core.review.rules import ReviewConfig, ReviewError
from core.review.sightings import CandidateInput, submit_sighting
from core.review.users import create_user
from core.review.votes import cast_vote, decide
from core.service.history import audit_rows
from core.store.db import session_scope
from core.store.feedback import Notification
from core.store.fieldwork import Encounter
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import AuditLog, User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")
PASSWORD = "correct horse battery"
TAKEN = datetime(2025, 5, 3, 9, 30, tzinfo=UTC)


@dataclass
class World:
    admin: int
    alice: int
    bob: int
    carol: int
    t1: int
    t2: int


@pytest.fixture
def world(engine: Engine, store: PhotoStore) -> World:
    with session_scope(engine) as session:
        admin = create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = create_user(session, "alice", PASSWORD, actor=admin)
        bob = create_user(session, "bob", PASSWORD, actor=admin)
        carol = create_user(session, "carol", PASSWORD, "reviewer", actor=admin)
        t1, _ = get_or_create_individual(session, "T-0001")
        t2, _ = get_or_create_individual(session, "T-0002")
        for seed, individual in ((1, t1), (2, t2)):
            add_photo(session, store, image_bytes(seed), suffix=".png", individual=individual, width=32, height=24)
        return World(admin.id, alice.id, bob.id, carol.id, t1.id, t2.id)  # type: ignore[arg-type]


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    assert user is not None
    return user


def _submit(engine: Engine, store: PhotoStore, world: World, seed: int = 100, **kwargs) -> int:
    with session_scope(engine) as session:
        result = submit_sighting(
            session,
            store,
            _user(session, world.alice),
            image_bytes(seed),
            candidates=[CandidateInput(individual_id=world.t1, rank=1, score=0.8, probability=0.7, n_matches=40)],
            new_individual_probability=0.1,
            taken_at=TAKEN,
            **kwargs,
        )
        return result.sighting.id  # type: ignore[return-value]


def _vote(engine: Engine, user_id: int, sighting_id: int, decision: str, individual_id: int | None = None) -> None:
    with session_scope(engine) as session:
        cast_vote(session, _user(session, user_id), sighting_id, decision, individual_id, config=ReviewConfig())


def _messages(engine: Engine, user_id: int) -> list[tuple[str, str]]:
    with session_scope(engine) as session:
        return [(n.kind, n.message) for n in inbox.inbox(session, user_id)]


def test_consensus_tells_submitter_proposers_and_followers(engine: Engine, store: PhotoStore, world: World) -> None:
    with session_scope(engine) as session:
        assert inbox.follow(session, world.admin, world.t1) is True
        assert inbox.follow(session, world.admin, world.t1) is False  # following twice changes nothing
    sighting = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t1)
    assert _messages(engine, world.alice) == []  # pending: nothing decided yet
    _vote(engine, world.carol, sighting, "same", world.t1)  # two concordant votes decide (the default rule)

    assert _messages(engine, world.alice) == [("confirmed", "Your encounter of 2025-05-03 was confirmed as T-0001.")]
    assert _messages(engine, world.carol) == [
        ("proposal", "The encounter of 2025-05-03 you reviewed was decided as T-0001 (as you proposed).")
    ]
    assert _messages(engine, world.admin) == [
        ("seen_again", "T-0001 was seen again (encounter of 2025-05-03, by alice).")
    ]
    assert _messages(engine, world.bob) == []
    with session_scope(engine) as session:
        note = inbox.inbox(session, world.alice)[0]
        encounter = session.exec(select(Encounter)).one()
        assert (note.encounter_id, note.individual_id, note.read_at) == (encounter.id, world.t1, None)


def test_admin_decision_tells_who_disagreed(engine: Engine, store: PhotoStore, world: World) -> None:
    sighting = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t1)
    _vote(engine, world.bob, sighting, "new")  # one each
    with session_scope(engine) as session:
        decide(session, _user(session, world.admin), sighting, "new", config=ReviewConfig())
        created = session.exec(
            select(Notification).where(Notification.user_id == world.alice, Notification.kind == "new_individual")
        ).one()
    assert created.message == "Your encounter of 2025-05-03 was recorded as a new individual T-0003."
    assert created.kind == "new_individual"
    assert _messages(engine, world.bob) == [
        ("proposal", "The encounter of 2025-05-03 you reviewed was decided as T-0003 (as you proposed).")
    ]


def test_disagreeing_proposer_and_conflict(engine: Engine, store: PhotoStore, world: World) -> None:
    config = ReviewConfig(required_votes=2, allowed_dissent=0)
    with session_scope(engine) as session:
        sighting = submit_sighting(
            session,
            store,
            _user(session, world.alice),
            image_bytes(7),
            candidates=[],
            new_individual_probability=None,
            proposal="same",
            proposed_individual_id=world.t1,
            taken_at=TAKEN,
            config=config,
        ).sighting.id
    with session_scope(engine) as session:
        cast_vote(session, _user(session, world.bob), sighting, "same", world.t2, config=config)  # type: ignore[arg-type]
    assert _messages(engine, world.alice) == [
        (
            "conflict",
            "Your encounter of 2025-05-03 was found to be a conflict: the reviewers disagree, so an admin will decide.",
        )
    ]
    with session_scope(engine) as session:
        decide(session, _user(session, world.admin), sighting, "same", world.t1, config=config)  # type: ignore[arg-type]
    assert _messages(engine, world.bob) == [
        ("proposal", "The encounter of 2025-05-03 you reviewed was decided as T-0001 (you proposed T-0002).")
    ]
    assert [kind for kind, _ in _messages(engine, world.alice)] == ["confirmed", "conflict"]


def test_refused_decision_leaves_no_message(engine: Engine, store: PhotoStore, world: World) -> None:
    """The messages are written in the decision's transaction: a hook that refuses it takes them back too."""
    sighting = _submit(engine, store, world, proposal="same", proposed_individual_id=world.t1)

    def refuse(photo: object) -> None:
        raise ValueError("unsearchable")

    with pytest.raises(ValueError), session_scope(engine) as session:
        cast_vote(session, _user(session, world.carol), sighting, "same", world.t1, on_gallery_change=refuse)
    assert _messages(engine, world.alice) == []
    assert _messages(engine, world.carol) == []


def test_read_state_is_per_user(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        first = inbox.notify(session, world.alice, "confirmed", "one").id
        inbox.notify(session, world.alice, "seen_again", "two")
        other = inbox.notify(session, world.bob, "confirmed", "bob's").id
        with pytest.raises(ReviewError, match="not a kind of message"):
            inbox.notify(session, world.alice, "spam", "three")
    with session_scope(engine) as session:
        assert inbox.unread_count(session, world.alice) == 2
        assert inbox.mark_read(session, world.alice, [first, other]) == 1  # bob's message is not alice's to mark
        assert inbox.unread_count(session, world.bob) == 1
        assert [n.message for n in inbox.inbox(session, world.alice, unread_only=True)] == ["two"]
        assert inbox.mark_read(session, world.alice, []) == 0
        assert inbox.mark_read(session, world.alice) == 1
        assert inbox.unread_count(session, world.alice) == 0
        assert len(inbox.inbox(session, world.alice)) == 2


def test_follow_unfollow_and_merge(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        assert inbox.follow(session, world.bob, world.t2) is True
        assert inbox.is_following(session, world.bob, world.t2)
        with pytest.raises(ReviewError, match="no individual"):
            inbox.follow(session, world.bob, 9999)
    with session_scope(engine) as session:
        merge(session, _user(session, world.admin), world.t2, world.t1)
    with session_scope(engine) as session:
        assert inbox.followers(session, world.t1) == [world.bob]  # following T-0002 now means its survivor
        assert inbox.unfollow(session, world.bob, world.t2) is True
        assert inbox.unfollow(session, world.bob, world.t2) is False
        assert inbox.followers(session, world.t1) == []
        actions = [a for a in session.exec(select(AuditLog.action)).all() if "follow" in a]
        assert actions == ["individual.follow", "individual.unfollow"]
        summaries = [r.summary for r in audit_rows(session, user_id=world.bob)]
        assert summaries[:2] == ["Stopped following T-0002.", "Started following T-0002."]
