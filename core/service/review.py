"""Review: the queue of sightings waiting for a vote, each with what the submitter saw, and the votes and
admin decisions that settle them. A photo joins the gallery only with usable features, computed before the
decision's transaction (core.indexing.searchable), so no writer waits for a decode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlmodel import Session, col, select

from core.catalogue.locations import DEFAULT_STEP
from core.indexing.searchable import with_gallery_features
from core.progress import StageProgress
from core.review import votes
from core.review.encounters import ShownRanking, cast_encounter_vote, decide_encounter, shown_ranking
from core.review.sightings import SightingDetail, list_sightings, review_queue, sighting_detail
from core.service.app import App
from core.service.browse import shown_position
from core.service.evidence import Evidence, stored
from core.service.history import usernames
from core.service.identify import SearchResult, find, query_image
from core.store.fieldwork import Encounter, Site
from core.store.models import Individual, Sighting, User
from core.viz.pictures import working_frame


@dataclass(frozen=True)
class ReviewItem:
    """One sighting as a reviewer sees it: the frozen candidates, the votes, and who is who."""

    detail: SightingDetail
    codes: dict[int, str]  # individual id -> "code name", for candidates and votes (merges followed)
    users: dict[int, str]  # user id -> name
    photo_path: Path
    evidence: Evidence | None  # what the submitter saw (None: sent without a search)

    def code(self, individual_id: int | None) -> str:
        """The individual's code alone ("?" when it is gone)."""
        return self.codes.get(individual_id, "?").split(" ")[0] if individual_id is not None else "?"

    def place(self, viewer: User, step: float = DEFAULT_STEP) -> tuple[float | None, float | None]:
        """Where the sighting was, as ``viewer`` may see it: its own submitter, reviewers and admins see the
        recorded position, other volunteers one rounded to ``step`` degrees (the deployment's
        ``volunteer_position_degrees``; :func:`core.service.browse.shown_position`)."""
        sighting = self.detail.sighting
        role = "admin" if viewer.id == sighting.submitted_by else viewer.role
        return shown_position(role, sighting.latitude, sighting.longitude, step)


@dataclass(frozen=True)
class EncounterReview:
    """An encounter of several photos as a reviewer sees it: each photo with its own evidence, and the combined
    ranking the submitter saw (core.engine.combine); one vote decides all its photos together."""

    encounter: Encounter
    items: list[ReviewItem]  # one per photo, in the order they were submitted
    combined: ShownRanking | None
    codes: dict[int, str]  # individual id -> "code name" for the combined ranking
    site: str  # the site's name, "" when none was given

    def code(self, individual_id: int | None) -> str:
        return self.codes.get(individual_id, "?").split(" ")[0] if individual_id is not None else "?"


@dataclass(frozen=True)
class Settled:
    """What a vote or decision did: stored only, decided (and for whom), or sent to an admin."""

    outcome: votes.VoteOutcome
    code: str  # the decided individual's code, when decided
    photos: int = 1  # how many photos the vote applied to (all of an encounter's)


def queue(app: App, user: User) -> list[int]:
    """Sightings waiting for this user's vote, oldest first; an encounter of several photos once (its first)."""
    with app.session() as session:
        return _one_per_encounter(review_queue(session, user, limit=None))


def _one_per_encounter(sightings: list[Sighting]) -> list[int]:
    seen: set[int | None] = set()
    kept = []
    for sighting in sightings:
        if sighting.id is None or (sighting.encounter_id is not None and sighting.encounter_id in seen):
            continue
        seen.add(sighting.encounter_id)
        kept.append(sighting.id)
    return kept


def _siblings(session: Session, sighting_id: int) -> list[int]:
    """The sightings of ``sighting_id``'s encounter, itself included, in the order they were submitted."""
    sighting = session.get(Sighting, sighting_id)
    if sighting is None or sighting.encounter_id is None:
        return [sighting_id]
    ids = session.exec(
        select(Sighting.id).where(Sighting.encounter_id == sighting.encounter_id).order_by(col(Sighting.id))
    ).all()
    return [i for i in ids if i is not None]


def encounter_review(app: App, sighting_id: int) -> EncounterReview | None:
    """The encounter ``sighting_id`` belongs to, when it has several photos (None: review it as one sighting)."""
    with app.session() as session:
        siblings = _siblings(session, sighting_id)
        sighting = session.get(Sighting, sighting_id)
        encounter = session.get(Encounter, sighting.encounter_id) if sighting is not None else None
        if len(siblings) < 2 or encounter is None:
            return None
        combined = shown_ranking(session, encounter.id)  # type: ignore[arg-type]
        codes = {}
        for row in combined.rows if combined else []:
            individual = session.get(Individual, row.individual_id)
            if individual is not None:
                codes[row.individual_id] = individual.code + (f" {individual.name}" if individual.name else "")
        site = session.get(Site, encounter.site_id) if encounter.site_id is not None else None
        session.expunge(encounter)
    return EncounterReview(encounter, [item(app, i) for i in siblings], combined, codes, site.name if site else "")


def conflicts(app: App) -> list[int]:
    with app.session() as session:
        return [s.id for s in list_sightings(session, "conflict") if s.id is not None]


def item(app: App, sighting_id: int) -> ReviewItem:
    """The sighting with what a reviewer needs; its position as recorded (pages show :meth:`ReviewItem.place`)."""
    with app.session() as session:
        detail = sighting_detail(session, sighting_id)
        ids = {c.individual_id for c in detail.candidates} | {v.individual_id for v in detail.votes if v.individual_id}
        codes = {}
        for ident in ids:
            individual = session.get(Individual, ident)
            if individual is not None:
                codes[ident] = individual.code + (f" {individual.name}" if individual.name else "")
        kept = stored(session, app.store, sighting_id)
        return ReviewItem(detail, codes, usernames(session), app.store.path(detail.photo.path), kept)


def _code(session: Session, individual_id: int | None) -> str:
    individual = session.get(Individual, individual_id) if individual_id is not None else None
    return individual.code if individual is not None else "?"


def _settled(session: Session, outcomes: list[votes.VoteOutcome]) -> Settled:
    """An encounter's outcome: its photos are decided together, so the first stands for all."""
    applied = next((o for o in outcomes if o.applied), outcomes[0])
    return Settled(applied, _code(session, applied.individual_id), len(outcomes))


def vote(
    app: App, user: User, sighting_id: int, decision: str, individual_id: int | None, comment: str = ""
) -> Settled:
    """Record the vote (on every photo of the sighting's encounter); when it decides, the photo joins the gallery
    (refused, with the sighting left pending, when searches could not use it:
    :class:`~core.indexing.searchable.UnsearchablePhoto`)."""

    def work(session: Session, hook: votes.GalleryHook) -> Settled:
        sighting = session.get(Sighting, sighting_id)
        if sighting is not None and len(_siblings(session, sighting_id)) > 1:  # the encounter decides together
            outcomes = cast_encounter_vote(
                session,
                user,
                sighting.encounter_id,  # type: ignore[arg-type]
                decision,
                individual_id,
                comment,
                config=app.settings.review,
                on_gallery_change=hook,
            )
            return _settled(session, outcomes)
        outcome = votes.cast_vote(
            session,
            user,
            sighting_id,
            decision,
            individual_id,
            comment,
            config=app.settings.review,
            on_gallery_change=hook,
        )
        return Settled(outcome, _code(session, outcome.individual_id))

    result = with_gallery_features(app.db, app.store, app.engine, work)
    app.gallery_changed()
    return result


def decide(app: App, user: User, sighting_id: int, decision: str, individual_id: int | None) -> Settled:
    """An admin settles a sighting directly; the decision changes the gallery at once (as :func:`vote`)."""

    def work(session: Session, hook: votes.GalleryHook) -> Settled:
        sighting = session.get(Sighting, sighting_id)
        if sighting is not None and len(_siblings(session, sighting_id)) > 1:
            outcomes = decide_encounter(
                session,
                user,
                sighting.encounter_id,  # type: ignore[arg-type]
                decision,
                individual_id,
                config=app.settings.review,
                on_gallery_change=hook,
            )
            return _settled(session, outcomes)
        outcome = votes.decide(
            session, user, sighting_id, decision, individual_id, config=app.settings.review, on_gallery_change=hook
        )
        return Settled(outcome, _code(session, outcome.individual_id))

    result = with_gallery_features(app.db, app.store, app.engine, work)
    app.gallery_changed()
    return result


def stored_evidence(review: ReviewItem) -> tuple[Evidence, np.ndarray] | None:
    """What the submitter saw, and the picture its matches are drawn on; no model is loaded, nothing matched."""
    if review.evidence is None:
        return None
    photo = review.detail.photo
    return review.evidence, working_frame(review.photo_path, photo.crop, photo.rotation, review.evidence.query_size)


def search_again(
    app: App, review: ReviewItem, progress: StageProgress | None = None
) -> tuple[SearchResult, np.ndarray]:
    """The sighting's photo searched against today's gallery, and the picture its matches are drawn on."""
    photo = review.detail.photo
    result = find(
        app,
        review.photo_path,
        photo.sha256,
        crop=photo.crop,
        rotation=photo.rotation,
        side=review.detail.sighting.side,
        progress=progress,
    )
    return result, query_image(app, review.photo_path, photo.crop, photo.rotation)
