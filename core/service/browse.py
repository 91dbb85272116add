"""Browsing the gallery: individuals with their counts and last sighting, one individual's photos and history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from core.catalogue.locations import DEFAULT_STEP, PRECISE_ROLES, for_role
from core.review.sites import individuals_in
from core.service.app import App
from core.service.history import AuditRow, audit_rows, usernames
from core.store.models import Individual, Photo, Sighting


@dataclass(frozen=True)
class CoverPhoto:
    """The photo that stands for an individual in a list: its stored path (relative to the store) and framing."""

    path: str
    crop: tuple[float, float, float, float] | None
    rotation: int


@dataclass(frozen=True)
class IndividualRow:
    id: int
    code: str
    name: str | None
    species: str
    status: str
    photos: int
    last_seen: datetime | None  # None: no photo of it carries a date (an import time is not a sighting date)
    merged_into: str | None
    cover: CoverPhoto | None = None

    @property
    def label(self) -> str:
        return f"{self.code} · {self.name}" if self.name else self.code


def _sighting_dates(session: Session) -> dict[int, datetime]:
    """The date each sighted photo was seen, as its volunteer gave it (photo id -> date)."""
    rows = session.exec(select(Sighting.photo_id, Sighting.taken_at).where(col(Sighting.taken_at).is_not(None))).all()
    return {photo_id: taken for photo_id, taken in rows if taken is not None}


def individual_rows(session: Session, *, include_merged: bool = False) -> list[IndividualRow]:
    """Every individual with its photo count, a cover photo and the date it was last seen.

    The date is the photo's own (EXIF) or the one given with its sighting; a photo with neither leaves the
    date unknown rather than passing off the day it was imported as the day the animal was seen.
    """
    individuals = session.exec(select(Individual).order_by(col(Individual.code))).all()
    by_id = {i.id: i for i in individuals}
    counts: dict[int, int] = defaultdict(int)
    last: dict[int, datetime] = {}
    covers: dict[int, CoverPhoto] = {}
    sighted = _sighting_dates(session)
    photos = session.exec(select(Photo).where(col(Photo.individual_id).is_not(None)).order_by(col(Photo.id))).all()
    for photo in photos:
        if not photo.in_gallery:
            continue
        individual_id: int = photo.individual_id  # type: ignore[assignment]
        counts[individual_id] += 1
        covers.setdefault(individual_id, CoverPhoto(photo.path, photo.crop, photo.rotation))  # type: ignore[arg-type]
        seen = photo.taken_at or sighted.get(photo.id)  # type: ignore[arg-type]
        if seen is not None and (individual_id not in last or seen > last[individual_id]):
            last[individual_id] = seen
    rows = []
    for ind in individuals:
        if ind.status == "merged" and not include_merged:
            continue
        target = by_id.get(ind.merged_into_id) if ind.merged_into_id else None
        rows.append(
            IndividualRow(
                id=ind.id,  # type: ignore[arg-type]
                code=ind.code,
                name=ind.name,
                species=ind.species or "",
                status=ind.status,
                photos=counts.get(ind.id, 0),  # type: ignore[arg-type]
                last_seen=last.get(ind.id),  # type: ignore[arg-type]
                merged_into=target.code if target is not None else None,
                cover=covers.get(ind.id),  # type: ignore[arg-type]
            )
        )
    return rows


def filter_individuals(
    rows: Iterable[IndividualRow],
    text: str = "",
    *,
    species: Sequence[str] = (),
    statuses: Sequence[str] = (),
    seen_since: datetime | None = None,
    tagged: Collection[int] = (),
    only: set[int] | None = None,
) -> list[IndividualRow]:
    """Case-insensitive search in code and name, plus species, status and last-seen filters.

    ``tagged``: individuals whose tag numbers or alternate ids match ``text`` (:func:`core.service.tags.matching`).
    ``only``: just these individuals (e.g. those :func:`seen_in` a region), None: any.
    """
    needle = text.strip().lower()
    out = []
    for row in rows:
        if only is not None and row.id not in only:
            continue
        if (
            needle
            and needle not in row.code.lower()
            and needle not in (row.name or "").lower()
            and row.id not in tagged
        ):
            continue
        if species and row.species not in species:
            continue
        if statuses and row.status not in statuses:
            continue
        if seen_since is not None:
            if row.last_seen is None:
                continue
            since = seen_since if seen_since.tzinfo else seen_since.replace(tzinfo=UTC)
            if row.last_seen < since:
                continue
        out.append(row)
    return out


@dataclass(frozen=True)
class Encounter:
    """One photo of an individual as an entry of its history."""

    photo_id: int
    when: datetime | None  # None: the date is unknown (no EXIF date, none given with a sighting)
    dated_by: str  # "photo" (EXIF date), "sighting" (the date its volunteer gave) or "unknown"
    side: str
    latitude: float | None
    longitude: float | None
    source: str  # "imported" or "sighting #12 by alice"
    in_gallery: bool


#: Volunteers see positions rounded to this many degrees by default (about 11 km): where an animal lives, not the
#: beach it nests on (the deployment's setting: ``Settings.volunteer_position_degrees``). Reviewers and admins, who
#: are trusted with the data, see the recorded position.
VOLUNTEER_POSITION_DEGREES = DEFAULT_STEP
PRECISE_POSITION_ROLES = PRECISE_ROLES


def shown_position(
    role: str, latitude: float | None, longitude: float | None, step: float = DEFAULT_STEP
) -> tuple[float | None, float | None]:
    """The position a user of ``role`` may see: recorded for reviewers and admins, rounded to ``step`` for others."""
    return for_role(role, step).place(latitude, longitude)


def encounters(
    session: Session, individual_id: int, viewer_role: str = "volunteer", step: float = DEFAULT_STEP
) -> list[Encounter]:
    """The individual's photos in time order, each with where it came from, for the timeline and the map;
    positions as ``viewer_role`` may see them (:func:`shown_position`)."""
    photos = session.exec(select(Photo).where(Photo.individual_id == individual_id).order_by(col(Photo.id))).all()
    sightings = {
        s.photo_id: s
        for s in session.exec(select(Sighting).where(col(Sighting.photo_id).in_([p.id for p in photos]))).all()
    }
    users = usernames(session)
    out = []
    for photo in photos:
        sighting = sightings.get(photo.id)  # type: ignore[arg-type]
        latitude = photo.latitude if photo.latitude is not None else (sighting.latitude if sighting else None)
        longitude = photo.longitude if photo.longitude is not None else (sighting.longitude if sighting else None)
        latitude, longitude = shown_position(viewer_role, latitude, longitude, step)
        sighting_date = sighting.taken_at if sighting else None
        out.append(
            Encounter(
                photo_id=photo.id,  # type: ignore[arg-type]
                when=photo.taken_at or sighting_date,
                dated_by="photo" if photo.taken_at else ("sighting" if sighting_date else "unknown"),
                side=photo.side,
                latitude=latitude,
                longitude=longitude,
                source=_source(sighting, users),
                in_gallery=photo.in_gallery,
            )
        )
    # Dated photos in time order, then the undated ones in the order they arrived.
    return sorted(out, key=lambda e: (e.when is None, e.when or datetime.min.replace(tzinfo=UTC), e.photo_id))


def _source(sighting: Sighting | None, users: Mapping[int, str]) -> str:
    if sighting is None:
        return "imported"
    return f"sighting #{sighting.id} by {users.get(sighting.submitted_by, '?')}"


def photos_of(session: Session, individual_id: int, *, in_gallery_only: bool = False) -> list[Photo]:
    query = select(Photo).where(Photo.individual_id == individual_id).order_by(col(Photo.side), col(Photo.id))
    if in_gallery_only:
        query = query.where(col(Photo.in_gallery).is_(True))
    return list(session.exec(query).all())


# --- what the Gallery page calls -------------------------------------------------------------------


def seen_in(app: App, region: str = "", species: str = "") -> set[int] | None:
    """The individuals of ``species`` seen in ``region`` (core.review.sites.individuals_in); None: no filter."""
    with app.session() as session:
        return individuals_in(session, species or None, region or None)


def all_individuals(app: App, *, include_merged: bool = False) -> list[IndividualRow]:
    with app.session() as session:
        return individual_rows(session, include_merged=include_merged)


def active_individuals(app: App, *, include_retired: bool = False) -> list[IndividualRow]:
    """Individuals a photo can be given to (and, with ``include_retired``, those curation can still edit)."""
    return [
        row for row in all_individuals(app) if row.status == "active" or (include_retired and row.status == "retired")
    ]


@dataclass(frozen=True)
class IndividualPage:
    """Everything the Gallery page shows about one individual."""

    individual: Individual
    merged_into: str | None
    encounters: list[Encounter]
    photos: list[Photo]
    history: list[AuditRow]


def individual_page(app: App, individual_id: int, viewer_role: str = "volunteer") -> IndividualPage | None:
    with app.session() as session:
        individual = session.get(Individual, individual_id)
        if individual is None:
            return None
        target = session.get(Individual, individual.merged_into_id) if individual.merged_into_id else None
        return IndividualPage(
            individual,
            target.code if target is not None else None,
            encounters(session, individual_id, viewer_role, app.settings.volunteer_position_degrees),
            photos_of(session, individual_id),
            audit_rows(session, individual_id=individual_id, limit=50),
        )


def gallery_photos_of(app: App, individual_id: int, *, in_gallery_only: bool = False) -> list[Photo]:
    with app.session() as session:
        return photos_of(session, individual_id, in_gallery_only=in_gallery_only)
