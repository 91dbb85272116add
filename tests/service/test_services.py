"""core.service: what the pages show (summaries, history, evaluation tables), without Streamlit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtures.photos import image_bytes

from core.evaluation.protocol import EvaluationReport, QueryOutcome
from core.review import curation, users
from core.review.rules import ReviewConfig
from core.review.sightings import sighting_detail, submit_sighting
from core.service.browse import encounters, filter_individuals, individual_rows
from core.service.dashboard import dashboard
from core.service.evaluation import report_csv, slowest_queries, wrongest_queries
from core.service.history import audit_rows
from core.store.db import init_db, session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import Individual
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
    # T-0002 and T-0003 have no dated photo: "date unknown", so not "seen since" any day (not their import day).
    assert by_code["T-0002"].last_seen is None and by_code["T-0003"].last_seen is None
    assert filter_individuals(rows, seen_since=datetime.now(UTC) - timedelta(days=1)) == []
    assert [r.code for r in filter_individuals(rows, seen_since=datetime(2020, 1, 1, tzinfo=UTC))] == ["T-0001"]
    assert [(e.source, e.dated_by, e.when) for e in history] == [
        (f"sighting #{submission.sighting.id} by alice", "unknown", None)
    ]
    assert by_code["T-0001"].cover is not None and by_code["T-0001"].cover.path.endswith(".png")
    assert (counts.individuals, counts.gallery_photos, counts.decided, counts.my_sightings) == (3, 3, 1, 1)


def test_audit_rows_summarise_and_know_what_can_be_undone(db, store: PhotoStore):
    with session_scope(db) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        a, _ = add(session, store, "T-1", 1)
        b, _ = add(session, store, "T-2", 2)
        merge = curation.merge(session, admin, a.id, b.id)
    with session_scope(db) as session:
        rows = {r.id: r for r in audit_rows(session)}
    assert rows[merge.id].summary == "Merged T-1 into T-2 (1 photo moved)."
    assert rows[merge.id].label == "Merge"
    assert rows[merge.id].undoable and rows[merge.id].user == "admin"
    with session_scope(db) as session:
        undo = curation.undo(session, admin, merge.id)
    with session_scope(db) as session:
        rows = {r.id: r for r in audit_rows(session, individual_id=a.id)}
    assert not rows[merge.id].undoable and rows[merge.id].undone_by == undo.id
    assert undo.id in rows and not rows[undo.id].undoable  # an undo is not itself undone from here
    assert rows[undo.id].summary == f"Undid change #{merge.id}: merged T-1 into T-2 (1 photo moved)."
    assert rows[undo.id].label == "Merge undone"


def test_audit_entries_read_as_sentences_not_action_names_and_fields(db, store: PhotoStore):
    """Issue 17: the log said "individual.merge.undo" and "status: 'merged' → 'active'; merged_into_…"."""
    with session_scope(db) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        bob = users.create_user(session, "bob", PASSWORD, actor=admin)
        a, photo = add(session, store, "T-1", 1)
        b, _ = add(session, store, "T-2", 2)
        add(session, store, "T-2", 3)
        named = curation.rename(session, admin, a.id, "Donatello")
        renamed = curation.rename(session, admin, a.id, "Leo")
        moved = curation.move_photo(session, admin, photo.id, b.id)
        split = curation.split(session, admin, b.id, [photo.id])
        users.set_role(session, admin, "bob", "reviewer")
        submission = submit_sighting(
            session,
            store,
            bob,
            image_bytes(9),
            candidates=[],
            new_individual_probability=0.9,
            proposal="new",
            config=ReviewConfig(required_votes=1),
        )
    with session_scope(db) as session:
        rows = {r.id: r for r in audit_rows(session)}
    sentences = {r.action: r.summary for r in reversed(list(rows.values()))}  # the newest of each kind
    assert rows[named.id].summary == "Named T-1 “Donatello”."
    assert rows[renamed.id].summary == "Renamed T-1 from “Donatello” to “Leo”."
    assert rows[moved.id].summary == f"Moved photo {photo.id} from T-1 to T-2."
    new_code = split.payload["target_code"]
    assert rows[split.id].summary == f"Split 1 photo off T-2 into {new_code} (a new individual)."
    assert sentences["user.role"] == "Changed the role of bob from volunteer to reviewer."
    assert {"Created the account admin (admin).", "Created the account bob (volunteer)."} <= {
        r.summary for r in rows.values()
    }
    sighting = submission.sighting.id
    assert sentences["sighting.vote"] == f"Voted “a new individual” on sighting #{sighting}."
    decided = submission.sighting.decided_individual_id
    with session_scope(db) as session:
        code = session.get(Individual, decided).code
    assert sentences["sighting.decide"] == f"Decided sighting #{sighting}: a new individual, {code} (the votes agreed)."
    for row in rows.values():  # every one a sentence: a capital, a full stop, no stored names or field dumps
        assert row.summary[0].isupper() and row.summary.endswith(".") and not row.summary.endswith(".."), row
        assert "_id" not in row.summary and "'" not in row.summary and row.action not in row.summary, row


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


# --- the proposal a volunteer starts from ------------------------------------------------------------


def _candidates(*probabilities: float) -> list:
    from core.review.sightings import CandidateInput

    return [
        CandidateInput(individual_id=10 + rank, rank=rank + 1, score=1.0, probability=p, n_matches=20)
        for rank, p in enumerate(probabilities)
    ]


def test_the_default_proposal_follows_the_evidence():
    """Issue 17: with "Probably a new individual (81 %)" on the banner, "Same as <top> (11 %)" was pre-selected."""
    from core.service.identify import suggested_proposal

    assert suggested_proposal(_candidates(0.11, 0.05), 0.81) == ("new", None)
    assert suggested_proposal(_candidates(0.64, 0.2), 0.16) == ("same", 10)
    assert suggested_proposal(_candidates(0.35, 0.3), 0.35) == ("unsure", None)  # nothing convincing
    assert suggested_proposal(_candidates(0.5), 0.5) == ("same", 10)  # the banner's "Most likely" from 50 %
    assert suggested_proposal([], None) == ("new", None)  # an empty gallery: a first sighting is new
    assert suggested_proposal([], 0.2) == ("unsure", None)


def test_a_same_as_against_the_evidence_asks_for_confirmation():
    from core.service.identify import needs_confirmation

    candidates = _candidates(0.11, 0.05)
    reason = needs_confirmation(candidates, 0.81, "same", 10)
    assert reason == "Scute thinks this is probably a new individual (81%)"
    assert needs_confirmation(_candidates(0.64, 0.2), 0.16, "same", 10) is None  # what the evidence says
    assert needs_confirmation(_candidates(0.64, 0.2), 0.16, "same", 11) == (
        "Scute gives this individual only 20%, less than its best candidate"
    )
    assert needs_confirmation(_candidates(0.35, 0.3), 0.35, "same", 10) == (
        "Scute gives this individual only 35%: the matches are not convincing"
    )
    assert needs_confirmation(_candidates(0.64), 0.16, "same", 99) == (
        "Scute did not rank this individual among its candidates"
    )
    for proposal in ("new", "unsure"):
        assert needs_confirmation(candidates, 0.81, proposal, None) is None
    assert needs_confirmation([], None, "same", 10) is None  # no search: nothing to go against


def test_volunteers_see_positions_coarsened_reviewers_and_admins_as_recorded(db, store: PhotoStore):
    """Issue 16: where an endangered animal was seen is not shown exactly to every volunteer."""
    from core.service.browse import shown_position
    from core.service.review import ReviewItem

    assert shown_position("admin", 37.71234, 20.98765) == (37.71234, 20.98765)
    assert shown_position("reviewer", 37.71234, 20.98765) == (37.71234, 20.98765)
    assert shown_position("volunteer", 37.71234, 20.98765) == (37.7, 21.0)
    assert shown_position("volunteer", -0.04, -179.96) == (-0.0, -180.0)
    assert shown_position("volunteer", None, 20.9) == (None, None)
    with session_scope(db) as session:
        admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
        alice = users.create_user(session, "alice", PASSWORD, actor=admin)
        bob = users.create_user(session, "bob", PASSWORD, actor=admin)
        carol = users.create_user(session, "carol", PASSWORD, "reviewer", actor=admin)
        individual, _ = get_or_create_individual(session, "T-0001")
        add_photo(
            session,
            store,
            image_bytes(5),
            suffix=".png",
            individual=individual,
            width=48,
            height=40,
            latitude=37.71234,
            longitude=20.98765,
        )
        submission = submit_sighting(
            session,
            store,
            alice,
            image_bytes(6),
            candidates=[],
            new_individual_probability=0.9,
            proposal="new",
            latitude=37.71234,
            longitude=20.98765,
        )
        people = {u.username: u for u in (admin, alice, bob, carol)}
        for u in people.values():
            session.expunge(u)
        sighting_id = submission.sighting.id
        individual_id = individual.id
    with session_scope(db) as session:
        as_volunteer = encounters(session, individual_id, "volunteer")
        as_reviewer = encounters(session, individual_id, "reviewer")
        detail = sighting_detail(session, sighting_id)
    assert [(e.latitude, e.longitude) for e in as_volunteer] == [(37.7, 21.0)]
    assert [(e.latitude, e.longitude) for e in as_reviewer] == [(37.71234, 20.98765)]
    item = ReviewItem(detail, {}, {}, Path("unused"), None)
    assert item.place(people["bob"]) == (37.7, 21.0)  # another volunteer
    assert item.place(people["alice"]) == (37.71234, 20.98765)  # her own sighting
    assert item.place(people["carol"]) == (37.71234, 20.98765)


def test_the_search_bar_says_when_the_shortlist_widens() -> None:
    """The engine reports pairs of the rounds started so far: 1-4 of 4, then 5-8 of 8. The bar says "matching"
    for the first round and "widening" after it, so a bar that has more to do says why."""
    from core.service.identify import matching_progress

    heard: list[tuple[str, int, int]] = []
    report = matching_progress(lambda stage, done, total: heard.append((stage, done, total)))
    assert report is not None and matching_progress(None) is None
    for done, total in [(1, 4), (4, 4), (5, 8), (8, 8), (14, 18)]:
        report(done, total)
    assert heard == [
        ("matching", 1, 4),
        ("matching", 4, 4),
        ("widening", 5, 8),
        ("widening", 8, 8),
        ("widening", 14, 18),
    ]


def test_every_search_stage_has_words_for_the_bar() -> None:
    pytest.importorskip("streamlit")
    from ui.components import SEARCH_STAGES

    assert {"gallery", "features", "matching", "widening"} <= set(SEARCH_STAGES)
    assert "more gallery photos" in SEARCH_STAGES["widening"].format(done=5, total=8)
