"""core.service: what the pages show (summaries, history, evaluation tables), without Streamlit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtures.photos import image_bytes

from core.evaluation.protocol import EvaluationReport, QueryOutcome
from core.review import curation, users
from core.review.rules import ReviewConfig
from core.review.sightings import submit_sighting
from core.service.browse import encounters, filter_individuals, individual_rows
from core.service.dashboard import dashboard
from core.service.evaluation import report_csv, slowest_queries, wrongest_queries
from core.service.history import audit_rows
from core.store.db import init_db, session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path):
    engine = init_db(f"sqlite:///{tmp_path / 'gallery.db'}")
    yield engine
    engine.dispose()


def add(session, store: PhotoStore, code: str, seed: int, side: str = "unknown", taken_at=None):
    individual, _ = get_or_create_individual(session, code)
    photo, _ = add_photo(
        session,
        store,
        image_bytes(seed),
        suffix=".png",
        individual=individual,
        side=side,
        width=48,
        height=40,
        taken_at=taken_at,
    )
    return individual, photo


# --- summaries -------------------------------------------------------------------------------------


def test_individual_rows_filters_and_encounters(db, store: PhotoStore):
    old = datetime(2020, 6, 1, tzinfo=UTC)
    with session_scope(db) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = users.create_user(session, "alice", PASSWORD, actor=admin)
        add(session, store, "T-0001", 1, taken_at=old)
        add(session, store, "T-0002", 2)
        curation.rename(session, admin, "T-0002", "Raphael")
        submission = submit_sighting(
            session,
            store,
            alice,
            image_bytes(3),
            candidates=[],
            new_individual_probability=0.9,
            proposal="new",
            config=ReviewConfig(required_votes=1),
            original_name="../../etc/passwd",
        )
        new_id = submission.sighting.decided_individual_id
    with session_scope(db) as session:
        rows = individual_rows(session)
        history = encounters(session, new_id)
        counts = dashboard(session, alice)
    by_code = {r.code: r for r in rows}
    assert sorted(by_code) == ["T-0001", "T-0002", "T-0003"]
    assert by_code["T-0001"].last_seen == old and by_code["T-0002"].label == "T-0002 · Raphael"
    assert [r.code for r in filter_individuals(rows, "raph")] == ["T-0002"]
    assert [r.code for r in filter_individuals(rows, "t-000", statuses=["active"])] == [
        "T-0001",
        "T-0002",
        "T-0003",
    ]
    recent = filter_individuals(rows, seen_since=datetime.now(UTC) - timedelta(days=1))
    assert [r.code for r in recent] == ["T-0002", "T-0003"]
    assert [(e.source, e.dated_by) for e in history] == [(f"sighting #{submission.sighting.id} by alice", "upload")]
    assert (counts.individuals, counts.gallery_photos, counts.decided, counts.my_sightings) == (3, 3, 1, 1)


def test_audit_rows_summarise_and_know_what_can_be_undone(db, store: PhotoStore):
    with session_scope(db) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        a, _ = add(session, store, "T-1", 1)
        b, _ = add(session, store, "T-2", 2)
        merge = curation.merge(session, admin, a.id, b.id)
    with session_scope(db) as session:
        rows = {r.id: r for r in audit_rows(session)}
    assert rows[merge.id].summary == "merged T-1 into T-2 (1 photos)"
    assert rows[merge.id].undoable and rows[merge.id].user == "admin"
    with session_scope(db) as session:
        undo = curation.undo(session, admin, merge.id)
    with session_scope(db) as session:
        rows = {r.id: r for r in audit_rows(session, individual_id=a.id)}
    assert not rows[merge.id].undoable and rows[merge.id].undone_by == undo.id
    assert undo.id in rows and not rows[undo.id].undoable  # an undo is not itself undone from here


def test_slowest_and_wrongest_queries():
    def outcome(path, identity, novel, ranking, best, new, seconds):
        return QueryOutcome(path, identity, novel, ranking, best, new, seconds)

    detail = [
        outcome("a.jpg", "T-1", False, ["T-1", "T-2"], 0.9, 0.05, 1.0),  # right
        outcome("b.jpg", "T-1", False, ["T-2", "T-1"], 0.6, 0.1, 3.0),  # second
        outcome("c.jpg", "T-2", False, ["T-1", "T-3", "T-2"], 0.7, 0.1, 2.0),  # third: worse
        outcome("d.jpg", "T-9", True, ["T-1"], 0.8, 0.1, 0.5),  # a new turtle taken as known
        outcome("e.jpg", "T-9", True, ["T-1"], 0.1, 0.8, 0.4),  # a new turtle recognised as new
    ]
    report = EvaluationReport({}, "confident", 2, 5, ["T-9"], 1.0, 3.0, 0.1, 1.0, {}, {}, detail)
    assert [q.path for q in slowest_queries(report, 2)] == ["b.jpg", "c.jpg"]
    assert [q.path for q in wrongest_queries(report)] == ["c.jpg", "b.jpg", "d.jpg"]
    csv_text = report_csv(report).decode()
    assert csv_text.splitlines()[0].startswith("path,identity,novel,top5")
    assert "c.jpg,T-2,False,T-1 T-3 T-2,0.7000,0.1000,2.000" in csv_text


def test_query_scores_give_the_right_and_the_best_wrong_individuals_score_of_known_queries():
    """What the Evaluate page's score histogram shows when the gallery samples no pairs (the shipped prior)."""
    from core.service.evaluation import query_scores

    detail = [
        QueryOutcome("a.jpg", "T-1", False, ["T-1"], 0.9, 0.05, 1.0, 12.5, 1.5),
        QueryOutcome("b.jpg", "T-2", False, ["T-1"], 0.4, 0.5, 1.0, 0.5, 3.0),
        QueryOutcome("c.jpg", "T-9", True, ["T-1"], 0.2, 0.8, 1.0, None, 2.0),  # novel: no right individual
        QueryOutcome("d.jpg", "T-1", False, ["T-1"], 0.9, 0.05, 1.0),  # shortlist only: no exhaustive scores
    ]
    report = EvaluationReport({}, "confident", 2, 4, ["T-9"], 1.0, 3.0, 0.1, 1.0, {}, {}, detail)
    right, wrong = query_scores(report)
    assert right.tolist() == [12.5, 0.5] and wrong.tolist() == [1.5, 3.0]
