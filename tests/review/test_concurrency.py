"""Twenty simulated users voting, submitting and curating at once against one database (SQLite in WAL mode,
and PostgreSQL when SCUTE_TEST_DATABASE_URL is set).

Four worker processes (from a fork server that imported Scute once) run five threads each; every thread
is one user with its own engine (its own connections). Afterwards: every vote a user was told was stored
is in the database and no other, every decision was applied exactly once (by exactly one caller), nothing
unexpected was raised (no "database is locked", no deadlock, no integrity error), and the database passes
``core.store.integrity.check_database`` (SQLite's ``PRAGMA integrity_check`` and ``foreign_key_check``
included) and ``check_files``.

The CI run lasts ``SCUTE_STRESS_SECONDS`` (default 10) per backend; for the full minute:
``SCUTE_STRESS_SECONDS=60 python -m pytest tests/review/test_concurrency.py``.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fixtures.photos import image_bytes, use_cheap_hashing
from fixtures.world import PASSWORD, forkserver_context
from sqlmodel import col, select

from core.review import curation, sightings, votes
from core.review.rules import AlreadyDecided, AlreadyInGallery, AlreadyVoted, ReviewError
from core.review.sightings import CandidateInput
from core.review.users import create_user
from core.store.db import init_db, make_engine, session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.integrity import check_database, check_files
from core.store.models import Individual, Sighting, User, Vote
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

STRESS_SECONDS = float(os.environ.get("SCUTE_STRESS_SECONDS", "10"))
PROCESSES, THREADS = 4, 5
ROLES = ["admin"] * 2 + ["reviewer"] * 6 + ["volunteer"] * 12
PHOTO_SEEDS = 150  # shared by everyone, so the same photo is submitted twice now and then
EXPECTED = (AlreadyVoted, AlreadyDecided, AlreadyInGallery, ReviewError, curation.CurationError)


# --- one simulated user ---------------------------------------------------------------------------------


class _User:
    def __init__(self, url: str, store_root: str, user_id: int, role: str, seed: int) -> None:
        self.engine = make_engine(url)
        self.store = PhotoStore(Path(store_root))
        self.user_id, self.role = user_id, role
        self.rng = random.Random(seed)
        self.log: list[tuple[Any, ...]] = []

    def run(self, deadline: float) -> list[tuple[Any, ...]]:
        try:
            while time.time() < deadline:
                op = self._pick()
                try:
                    op()
                except EXPECTED as exc:
                    self.log.append(("refused", self.user_id, type(exc).__name__, getattr(exc, "sighting_id", None)))
                except Exception as exc:  # anything else is a bug: report it with its traceback
                    self.log.append(("unexpected", self.user_id, repr(exc), traceback.format_exc()))
        finally:
            self.engine.dispose()
        return self.log

    def _pick(self):
        roll = self.rng.random()
        if self.role == "admin":
            return self.rng.choice([self.decide_conflict, self.decide_pending, self.curate, self.merge_and_undo])
        if roll < (0.35 if self.role == "volunteer" else 0.15):
            return self.submit
        if roll < 0.9:
            return self.vote
        return self.vote_anywhere

    def _me(self, session) -> User:
        user = session.get(User, self.user_id)
        assert user is not None
        return user

    def _active_ids(self) -> list[int]:
        with session_scope(self.engine) as session:
            return list(session.exec(select(Individual.id).where(Individual.status == "active")).all())

    def submit(self) -> None:
        active = self._active_ids()
        ranked = self.rng.sample(active, k=min(3, len(active)))
        candidates = [CandidateInput(ident, rank, 1.0 / rank, 0.5 / rank, 10) for rank, ident in enumerate(ranked, 1)]
        proposal = self.rng.choice([None, "same", "same", "new", "unsure"])
        with session_scope(self.engine) as session:
            result = sightings.submit_sighting(
                session,
                self.store,
                self._me(session),
                image_bytes(1000 + self.rng.randrange(PHOTO_SEEDS)),
                candidates=candidates,
                new_individual_probability=0.1,
                proposal=proposal,
                proposed_individual_id=ranked[0] if proposal == "same" else None,
                comment="seen it'; --",
            )
        outcome = result.outcome
        self.log.append(
            (
                "vote" if outcome is not None and outcome.vote_id is not None else "submit",
                self.user_id,
                result.sighting.id,
                outcome.vote_id if outcome is not None else None,
                bool(outcome and outcome.applied),
            )
        )

    def _vote_on(self, sighting_id: int) -> None:
        with session_scope(self.engine) as session:
            detail = sightings.sighting_detail(session, sighting_id)
            top = detail.candidates[0].individual_id if detail.candidates else None
        roll = self.rng.random()
        decision, individual = ("same", top) if roll < 0.6 and top is not None else ("new", None)
        if roll > 0.9:
            decision, individual = "unsure", None
        try:
            with session_scope(self.engine) as session:
                outcome = votes.cast_vote(session, self._me(session), sighting_id, decision, individual)
        except AlreadyVoted:
            self.log.append(("refused", self.user_id, "AlreadyVoted", sighting_id))
            return
        self.log.append(("vote", self.user_id, sighting_id, outcome.vote_id, outcome.applied))

    def vote(self) -> None:
        with session_scope(self.engine) as session:
            waiting = [s.id for s in sightings.review_queue(session, self._me(session), limit=10)]
        if waiting:
            self._vote_on(self.rng.choice(waiting))

    def vote_anywhere(self) -> None:
        """A stale page: vote on any sighting, decided or already voted on."""
        with session_scope(self.engine) as session:
            ids = list(session.exec(select(Sighting.id)).all())
        if ids:
            self._vote_on(self.rng.choice(ids))

    def _decide(self, status: str) -> None:
        with session_scope(self.engine) as session:
            ids = [s.id for s in sightings.list_sightings(session, status, limit=20)]
        if not ids:
            return
        sighting_id = self.rng.choice(ids)
        active = self._active_ids()
        decision = self.rng.choice(["same", "new"])
        with session_scope(self.engine) as session:
            votes.decide(
                session,
                self._me(session),
                sighting_id,
                decision,
                self.rng.choice(active) if decision == "same" else None,
            )
        self.log.append(("decide", self.user_id, sighting_id, None, True))

    def decide_conflict(self) -> None:
        self._decide("conflict")

    def decide_pending(self) -> None:
        if self.rng.random() < 0.3:
            self._decide("pending")

    def curate(self) -> None:
        target = self.rng.choice(self._active_ids())
        with session_scope(self.engine) as session:
            if self.rng.random() < 0.5:
                curation.rename(session, self._me(session), target, f'name {self.rng.randrange(10**6)} "quoted"')
            else:
                curation.edit_notes(session, self._me(session), target, f"notes; {self.rng.randrange(10**6)}")
        self.log.append(("curate", self.user_id, target, None, False))

    def merge_and_undo(self) -> None:
        active = self._active_ids()
        if len(active) < 3:
            return
        source, target = self.rng.sample(active, 2)
        with session_scope(self.engine) as session:
            entry = curation.merge(session, self._me(session), source, target)
        with session_scope(self.engine) as session:
            curation.undo(session, self._me(session), entry.id)  # type: ignore[arg-type]
        self.log.append(("merge+undo", self.user_id, source, target, False))


def _process_main(url: str, store_root: str, accounts: list[tuple[int, str]], seconds: float, barrier, results) -> None:
    """One worker process: five users in five threads, all starting together with the other processes."""
    use_cheap_hashing()
    logs: list[list[tuple[Any, ...]]] = [[] for _ in accounts]
    users_ = [_User(url, store_root, uid, role, seed=uid * 7919) for uid, role in accounts]
    barrier.wait(timeout=120)
    deadline = time.time() + seconds

    def run(i: int) -> None:
        logs[i] = users_[i].run(deadline)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(accounts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put([entry for log in logs for entry in log])


# --- the test -------------------------------------------------------------------------------------------


def _setup(url: str, store: PhotoStore) -> list[tuple[int, str]]:
    engine = init_db(url)
    try:
        with session_scope(engine) as session:
            admin = create_user(session, "admin0", PASSWORD, "admin", actor=None)
            accounts = [(admin.id, "admin")]
            for i, role in enumerate(ROLES[1:], 1):
                accounts.append((create_user(session, f"{role}{i}", PASSWORD, role, actor=admin).id, role))
            for n in range(1, 7):
                individual, _ = get_or_create_individual(session, f"T-{n:04d}", f"Turtle {n}")
                add_photo(session, store, image_bytes(n), suffix=".png", individual=individual, width=32, height=24)
    finally:
        engine.dispose()
    return accounts  # type: ignore[return-value]


def test_twenty_users_at_once(db_url: str, tmp_path: Path) -> None:
    store = PhotoStore(tmp_path / "photos")
    accounts = _setup(db_url, store)
    assert len(accounts) == PROCESSES * THREADS == 20
    ctx = forkserver_context()
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    processes = [
        ctx.Process(
            target=_process_main,
            args=(db_url, str(store.root), accounts[i::PROCESSES], STRESS_SECONDS, barrier, results),
            daemon=True,
        )
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    log: list[tuple[Any, ...]] = []
    try:
        for _ in processes:
            log += results.get(timeout=STRESS_SECONDS + 180)
    except queue.Empty:  # pragma: no cover - a hung worker
        pytest.fail("a worker process did not report back")
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    unexpected = [entry for entry in log if entry[0] == "unexpected"]
    assert unexpected == [], "\n".join(entry[3] for entry in unexpected[:3])
    kinds = Counter(entry[0] for entry in log)
    assert {uid for _, uid, *_ in log} == {uid for uid, _ in accounts}  # every user got work done

    engine = init_db(db_url)
    try:
        with session_scope(engine) as session:
            votes = {v.id: v for v in session.exec(select(Vote)).all()}
            sightings = {s.id: s for s in session.exec(select(Sighting).order_by(col(Sighting.id))).all()}
            problems = check_database(session) + check_files(session, store)
    finally:
        engine.dispose()

    # Every vote a user was told was stored is there, with the right voter and sighting, and no other.
    reported = {entry[3]: entry for entry in log if entry[0] == "vote"}
    assert set(reported) == set(votes)
    assert all((votes[vid].user_id, votes[vid].sighting_id) == (e[1], e[2]) for vid, e in reported.items())
    # A refused double vote really was a double vote.
    for _, uid, _name, sighting_id in (e for e in log if e[0] == "refused" and e[2] == "AlreadyVoted"):
        assert any(v.user_id == uid and v.sighting_id == sighting_id for v in votes.values())
    # Each decided sighting was applied by exactly one caller; the others by none.
    applied = Counter(entry[2] for entry in log if entry[0] in ("vote", "decide") and entry[4])
    for sighting_id, sighting in sightings.items():
        assert applied[sighting_id] == (1 if sighting.status == "decided" else 0), (sighting_id, sighting.status)
    assert problems == []

    statuses = Counter(s.status for s in sightings.values())
    backend = db_url.split(":")[0]
    print(f"\n{STRESS_SECONDS:.0f} s on {backend}: {dict(kinds)}; sightings {dict(statuses)}; {len(votes)} votes")
    assert len(votes) >= 20 and statuses["decided"] >= 3  # the run exercised the contended paths
