"""Identify with several photos of one animal: each photo searched against its own side, one combined ranking
(core.engine.combine), and one proposal for the whole encounter.

The page searches each photo as before (:func:`core.service.identify.find`); this module combines the results,
says what the volunteer may choose, and sends the encounter (:func:`core.review.encounters.submit_encounter`)
with every photo's evidence kept for Review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlmodel import Session

from core.engine.combine import EncounterRanking, combine
from core.indexing.searchable import with_gallery_features
from core.review.encounters import (
    CombinedInput,
    EncounterFields,
    EncounterPhoto,
    EncounterSubmission,
    ShownRanking,
    submit_encounter,
)
from core.review.sites import list_sites, list_species, site_of
from core.review.votes import GalleryHook
from core.service.app import App
from core.service.evidence import keep
from core.service.identify import SearchResult, Upload, candidate_inputs, individual_id_for_photo
from core.store.models import User


@dataclass(frozen=True)
class PhotoDraft:
    """One photo of the encounter as the volunteer framed and searched it."""

    upload: Upload
    result: SearchResult | None
    side: str = "unknown"
    crop: tuple[float, float, float, float] | None = None
    rotation: int = 0


@dataclass(frozen=True)
class Choice:
    """A candidate of the combined ranking as the proposal form offers it."""

    individual_id: int
    probability: float


@dataclass(frozen=True)
class Places:
    """The sites and species a volunteer can choose from (empty when none are kept, or sites are not set up)."""

    sites: list[tuple[int, str]]  # (id, "name (region)")
    species: list[str]


def combined(app: App, results: Sequence[SearchResult | None]) -> EncounterRanking:
    """The encounter's ranking from each photo's search (each compared with gallery photos of its own side)."""
    identifications = [r.identification if r is not None else None for r in results]
    return combine(identifications, app.engine.scoring.new_prior, top_k=app.settings.engine.top_k)


def _shown(session: Session, ranking: EncounterRanking) -> ShownRanking:
    rows = []
    for candidate in ranking.candidates:
        shown = next((e.candidate for e in candidate.evidence if e.candidate is not None), None)
        photo_id = shown.photo.photo_id if shown is not None else None
        individual_id = individual_id_for_photo(session, photo_id) if photo_id is not None else None
        if individual_id is None or any(r.individual_id == individual_id for r in rows):
            continue
        per_photo = tuple(e.log_likelihood_ratio if e.compared else None for e in candidate.evidence)
        probability = min(max(candidate.probability, 0.0), 1.0)
        rows.append(CombinedInput(individual_id, probability, candidate.log_likelihood_ratio, per_photo))
    return ShownRanking(rows, min(max(ranking.new_individual_probability, 0.0), 1.0))


def choices(app: App, ranking: EncounterRanking | None) -> tuple[list[Choice], float | None]:
    """The combined candidates as individual ids with their probabilities, and the new-individual probability."""
    if ranking is None:
        return [], None
    with app.session() as session:
        shown = _shown(session, ranking)
    return [Choice(r.individual_id, r.probability) for r in shown.rows], shown.new_individual_probability


def places(app: App) -> Places:
    """The sites and species admins keep (core.review.sites)."""
    with app.session() as session:
        sites = [(s.id, s.name + (f" ({s.region})" if s.region else "")) for s in list_sites(session) if s.id]
        species = [s.name for s in list_species(session)]
    return Places(sites, species)


def send(
    app: App,
    user: User,
    photos: Sequence[PhotoDraft],
    fields: EncounterFields,
    *,
    proposal: str | None,
    individual_id: int | None = None,
    comment: str = "",
) -> EncounterSubmission:
    """Store the encounter with one sighting per photo; the proposal is the volunteer's vote on each photo."""
    ranking = combined(app, [p.result for p in photos]) if any(p.result is not None for p in photos) else None

    def work(session: Session, hook: GalleryHook) -> EncounterSubmission:
        inputs = [
            EncounterPhoto(
                data=p.upload.data,
                side=p.side,
                candidates=candidate_inputs(session, p.result) if p.result is not None else [],
                new_individual_probability=None
                if p.result is None
                else min(max(p.result.new_individual_probability, 0.0), 1.0),
                crop=p.crop,
                rotation=p.rotation,
                original_name=p.upload.name.replace("\\", "/").rsplit("/", 1)[-1][:200],
            )
            for p in photos
        ]
        done = submit_encounter(
            session,
            app.store,
            user,
            _with_site(session, fields),
            inputs,
            proposal=proposal,
            proposed_individual_id=individual_id if proposal == "same" else None,
            comment=comment,
            combined=_shown(session, ranking) if ranking is not None and len(photos) > 1 else None,
            config=app.settings.review,
            on_gallery_change=hook,
        )
        for photo, submission in zip(photos, done.submissions, strict=True):
            if photo.result is not None and submission.created and submission.sighting.id is not None:
                keep(session, submission.sighting.id, photo.result.evidence(), photo.result.engine_version)
        return done

    done = with_gallery_features(app.db, app.store, app.engine, work)
    if any(s.outcome is not None and s.outcome.applied for s in done.submissions):
        app.gallery_changed()
    return done


def _with_site(session: Session, fields: EncounterFields) -> EncounterFields:
    """No site chosen but coordinates given: the site whose radius holds them (core.review.sites.site_of)."""
    if fields.site_id is not None or fields.latitude is None or fields.longitude is None:
        return fields
    try:
        site = site_of(session, float(fields.latitude), float(fields.longitude))
    except (TypeError, ValueError):
        return fields  # check_encounter says what is wrong with them
    if site is None:
        return fields
    return replace(fields, site_id=site.id)
