"""The places and species a project works with, kept by admins, and the filters built on them.

Why: matching a photo against every animal the project ever saw wastes time and invites false matches; a turtle
photographed on one island is searched against the individuals of its species seen in that region (Wildbook
#1025). Sites name the places (a centre and a radius, grouped into regions); species name what is identified.

Every change checks that the acting user is an active admin, runs as a serialised writer and adds one audit entry
(``site.create`` / ``site.edit`` / ``site.remove``, ``species.…``). Bad input raises :class:`PlaceError` and
changes nothing. A site that encounters or photos refer to cannot be removed (the message says what uses it);
neither can a species that individuals or encounters are recorded as. Renaming a species renames it on those
individuals and encounters too, so a filter by species keeps finding them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func
from sqlmodel import Session, col, select

from core.errors import ScuteError
from core.review.users import acting_user
from core.safe_text import check_text
from core.store.audit import lock_for_write, record
from core.store.fieldwork import Encounter, Site, Species
from core.store.models import Individual, Photo, Sighting, User

log = logging.getLogger(__name__)

__all__ = [
    "EARTH_RADIUS_KM",
    "MAX_RADIUS_KM",
    "PlaceError",
    "add_site",
    "add_species",
    "distance_km",
    "edit_site",
    "edit_species",
    "get_site",
    "get_species",
    "individuals_in",
    "list_sites",
    "list_species",
    "regions",
    "remove_site",
    "remove_species",
    "site_of",
]

EARTH_RADIUS_KM = 6371.0
MAX_RADIUS_KM = 20_000.0
"""Half the Earth's circumference, rounded: a larger radius would contain every point anyway."""
MAX_NAME = 120
MAX_SCIENTIFIC_NAME = 200


class PlaceError(ScuteError):
    """A site or species change that cannot be carried out as asked; nothing was changed."""


# --- checks ----------------------------------------------------------------------------------------


def _admin(session: Session, user: User, action: str) -> User:
    lock_for_write(session)
    return acting_user(session, user, "admin", action=action)


def _text(value: object, what: str, max_length: int, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise PlaceError(f"The {what} must be text, not {type(value).__name__}.")
    text = value.strip()
    if required and not text:
        raise PlaceError(f"The {what} is empty; please give one.")
    try:
        check_text(text, what, max_length=max_length)
    except ScuteError as exc:
        raise PlaceError(str(exc)) from None
    return text


def _number(value: object, what: str) -> float | None:
    """``value`` as a finite float (None stays None); text such as "12.5" is accepted, "abc" or NaN are not."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise PlaceError(f"The {what} must be a number, not {value!r}.")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PlaceError(f"The {what} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise PlaceError(f"The {what} must be a finite number, not {value!r}.")
    return number


def _position(latitude: object, longitude: object) -> tuple[float | None, float | None]:
    lat, lon = _number(latitude, "latitude"), _number(longitude, "longitude")
    if (lat is None) != (lon is None):
        raise PlaceError("Give both the latitude and the longitude of the site, or neither.")
    if lat is not None and not -90 <= lat <= 90:
        raise PlaceError(f"The latitude must be between -90 and 90 degrees, not {lat:g}.")
    if lon is not None and not -180 <= lon <= 180:
        raise PlaceError(f"The longitude must be between -180 and 180 degrees, not {lon:g}.")
    return lat, lon


def _radius(value: object) -> float | None:
    radius = _number(value, "radius")
    if radius is not None and not 0 < radius <= MAX_RADIUS_KM:
        raise PlaceError(f"The radius must be more than 0 and at most {MAX_RADIUS_KM:g} km, not {radius:g}.")
    return radius


P = TypeVar("P", Site, Species)


def _same_name(model: type[Site] | type[Species], name: str) -> Any:
    return func.lower(col(model.name)) == name.lower()


def _unique(session: Session, model: type[Site] | type[Species], name: str, own_id: int | None, what: str) -> None:
    query = select(model).where(_same_name(model, name))
    clash = next((row for row in session.exec(query).all() if row.id != own_id), None)
    if clash is not None:
        raise PlaceError(f"There is already a {what} named “{clash.name}”; names must be unique.")


def _site_fields(site: Site) -> dict[str, Any]:
    return {
        "name": site.name,
        "region": site.region,
        "latitude": site.latitude,
        "longitude": site.longitude,
        "radius_km": site.radius_km,
    }


def _species_fields(species: Species) -> dict[str, Any]:
    return {"name": species.name, "scientific_name": species.scientific_name}


# --- sites ---------------------------------------------------------------------------------------------


def _place(session: Session, model: type[P], ref: Any, noun: str, possessive: str, where: str) -> P:
    """A site or species by id (int) or name (any case), the one lookup behind get_site and get_species."""
    if isinstance(ref, model):
        ref = ref.id if ref.id is not None else ref.name
    if isinstance(ref, bool):
        raise PlaceError(f"{ref!r} is not a {possessive} id or name.")
    if isinstance(ref, int):
        found = session.get(model, ref)
        if found is None:
            raise PlaceError(f"There is no {noun} with id {ref}.")
        return found
    name = str(ref).strip()
    found = session.exec(select(model).where(_same_name(model, name))).first() if name else None
    if found is None:
        raise PlaceError(f"There is no {noun} named “{name}”{where}.")
    return found


def get_site(session: Session, ref: int | str | Site) -> Site:
    """The site with this id (int) or name (str, any case); raises :class:`PlaceError` when unknown."""
    return _place(session, Site, ref, "site", "site's", "")


def list_sites(session: Session) -> list[Site]:
    return list(session.exec(select(Site).order_by(col(Site.region), col(Site.name))).all())


def regions(session: Session) -> list[str]:
    """The regions that sites belong to, sorted, without blanks."""
    return sorted({site.region for site in list_sites(session) if site.region})


def add_site(
    session: Session,
    user: User,
    name: str,
    *,
    region: str = "",
    latitude: object = None,
    longitude: object = None,
    radius_km: object = None,
) -> Site:
    """Add a site; a centre and a radius let :func:`site_of` recognise coordinates that belong to it."""
    actor = _admin(session, user, "add sites")
    site = Site(
        name=_text(name, "site name", MAX_NAME, required=True), region=_text(region, "region", MAX_NAME, required=False)
    )
    site.latitude, site.longitude = _position(latitude, longitude)
    site.radius_km = _radius(radius_km)
    _unique(session, Site, site.name, None, "site")
    session.add(site)
    session.flush()
    record(session, actor, "site.create", ("site", site.id), before=None, after=_site_fields(site))
    log.info("%s added the site %r", actor.username, site.name)
    return site


_UNCHANGED: Any = object()


def edit_site(
    session: Session,
    user: User,
    ref: int | str | Site,
    *,
    name: object = _UNCHANGED,
    region: object = _UNCHANGED,
    latitude: object = _UNCHANGED,
    longitude: object = _UNCHANGED,
    radius_km: object = _UNCHANGED,
) -> Site:
    """Rename a site or change its region, centre or radius; fields not given stay as they are."""
    actor = _admin(session, user, "change sites")
    site = get_site(session, ref)
    before = _site_fields(site)
    new_name = site.name if name is _UNCHANGED else _text(name, "site name", MAX_NAME, required=True)
    new_region = site.region if region is _UNCHANGED else _text(region, "region", MAX_NAME, required=False)
    lat, lon = _position(
        site.latitude if latitude is _UNCHANGED else latitude, site.longitude if longitude is _UNCHANGED else longitude
    )
    radius = _radius(site.radius_km if radius_km is _UNCHANGED else radius_km)
    _unique(session, Site, new_name, site.id, "site")
    after = {"name": new_name, "region": new_region, "latitude": lat, "longitude": lon, "radius_km": radius}
    if after == before:
        raise PlaceError(f"The site “{site.name}” already reads like that; nothing to change.")
    site.name, site.region, site.latitude, site.longitude, site.radius_km = (new_name, new_region, lat, lon, radius)
    session.add(site)
    session.flush()
    record(session, actor, "site.edit", ("site", site.id), before=before, after=after)
    return site


def site_uses(session: Session, site_id: int) -> tuple[int, int]:
    """How many encounters and photos refer to the site."""
    encounters = session.exec(select(func.count()).select_from(Encounter).where(Encounter.site_id == site_id)).one()
    photos = session.exec(select(func.count()).select_from(Photo).where(Photo.site_id == site_id)).one()
    return int(encounters), int(photos)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def remove_site(session: Session, user: User, ref: int | str | Site) -> None:
    """Remove a site nothing refers to; one in use stays, and the message says what uses it."""
    actor = _admin(session, user, "remove sites")
    site = get_site(session, ref)
    encounters, photos = site_uses(session, site.id)  # type: ignore[arg-type]
    if encounters or photos:
        parts = [_plural(encounters, "encounter") if encounters else "", _plural(photos, "photo") if photos else ""]
        raise PlaceError(
            f"The site “{site.name}” cannot be removed: {' and '.join(p for p in parts if p)} refer to it. "
            "Rename it instead, or move them to another site first."
        )
    before = _site_fields(site)
    record(session, actor, "site.remove", ("site", site.id), before=before, after=None)
    session.delete(site)
    session.flush()
    log.info("%s removed the site %r", actor.username, before["name"])


# --- species ---------------------------------------------------------------------------------------


def get_species(session: Session, ref: int | str | Species) -> Species:
    """The species with this id (int) or name (str, any case); raises :class:`PlaceError` when unknown."""
    return _place(session, Species, ref, "species", "species'", " in the species list")


def list_species(session: Session) -> list[Species]:
    return list(session.exec(select(Species).order_by(col(Species.name))).all())


def add_species(session: Session, user: User, name: str, scientific_name: str = "") -> Species:
    actor = _admin(session, user, "add species")
    species = Species(
        name=_text(name, "species name", MAX_NAME, required=True),
        scientific_name=_text(scientific_name, "scientific name", MAX_SCIENTIFIC_NAME, required=False),
    )
    _unique(session, Species, species.name, None, "species")
    session.add(species)
    session.flush()
    record(session, actor, "species.create", ("species", species.id), before=None, after=_species_fields(species))
    return species


def _species_users(session: Session, name: str) -> tuple[list[Individual], list[Encounter]]:
    individuals = session.exec(select(Individual).where(Individual.species == name)).all()
    encounters = session.exec(select(Encounter).where(Encounter.species == name)).all()
    return list(individuals), list(encounters)


def edit_species(
    session: Session,
    user: User,
    ref: int | str | Species,
    *,
    name: object = _UNCHANGED,
    scientific_name: object = _UNCHANGED,
) -> Species:
    """Rename a species (the individuals and encounters recorded as it follow) or change its scientific name."""
    actor = _admin(session, user, "change species")
    species = get_species(session, ref)
    before = _species_fields(species)
    new_name = species.name if name is _UNCHANGED else _text(name, "species name", MAX_NAME, required=True)
    new_scientific = (
        species.scientific_name
        if scientific_name is _UNCHANGED
        else _text(scientific_name, "scientific name", MAX_SCIENTIFIC_NAME, required=False)
    )
    _unique(session, Species, new_name, species.id, "species")
    after = {"name": new_name, "scientific_name": new_scientific}
    if after == before:
        raise PlaceError(f"The species “{species.name}” already reads like that; nothing to change.")
    individuals, encounters = _species_users(session, species.name) if new_name != species.name else ([], [])
    for row in [*individuals, *encounters]:
        row.species = new_name
        session.add(row)
    species.name, species.scientific_name = new_name, new_scientific
    session.add(species)
    session.flush()
    record(
        session,
        actor,
        "species.edit",
        ("species", species.id),
        before=before,
        after=after,
        individuals=[i.id for i in individuals],
        extra={"individuals_renamed": len(individuals), "encounters_renamed": len(encounters)},
    )
    return species


def remove_species(session: Session, user: User, ref: int | str | Species) -> None:
    """Remove a species nobody is recorded as; one in use stays, and the message says what uses it."""
    actor = _admin(session, user, "remove species")
    species = get_species(session, ref)
    individuals, encounters = _species_users(session, species.name)
    if individuals or encounters:
        parts = [
            _plural(len(individuals), "individual") if individuals else "",
            _plural(len(encounters), "encounter") if encounters else "",
        ]
        raise PlaceError(
            f"The species “{species.name}” cannot be removed: {' and '.join(p for p in parts if p)} "
            "are recorded as it. Rename it instead, or change them first."
        )
    before = _species_fields(species)
    record(session, actor, "species.remove", ("species", species.id), before=before, after=None)
    session.delete(species)
    session.flush()


# --- where things are --------------------------------------------------------------------------------


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class _Circle:
    site_id: int
    region: str
    latitude: float
    longitude: float
    radius_km: float


def _circles(sites: Iterable[Site]) -> list[_Circle]:
    return [
        _Circle(s.id, s.region, s.latitude, s.longitude, s.radius_km)  # type: ignore[arg-type]
        for s in sites
        if s.id is not None and s.latitude is not None and s.longitude is not None and s.radius_km
    ]


def _nearest(circles: Iterable[_Circle], latitude: float, longitude: float) -> _Circle | None:
    best: tuple[float, int, _Circle] | None = None
    for circle in circles:
        distance = distance_km(latitude, longitude, circle.latitude, circle.longitude)
        if distance <= circle.radius_km and (best is None or (distance, circle.site_id) < best[:2]):
            best = (distance, circle.site_id, circle)
    return best[2] if best is not None else None


def site_of(session: Session, latitude: float | None, longitude: float | None) -> Site | None:
    """The nearest site whose radius contains the point (ties: the older site), or None."""
    if latitude is None or longitude is None:
        return None
    circle = _nearest(_circles(list_sites(session)), latitude, longitude)
    return session.get(Site, circle.site_id) if circle is not None else None


def _same(a: str | None, b: str) -> bool:
    return (a or "").strip().casefold() == b.strip().casefold()


def individuals_in(
    session: Session, species: str | None = None, region: str | None = None, *, keep_unknown: bool = False
) -> set[int] | None:
    """Ids of the individuals of ``species`` that were seen in ``region``; None when neither is given (no filter).

    Seen in a region means: one of its photos has a site of the region (``Photo.site_id``), or came in with an
    encounter at such a site, or was taken (photo, sighting or encounter coordinates) inside such a site's radius.
    ``keep_unknown`` also keeps individuals that cannot be ruled out: no species recorded, or no place known at
    all. A search uses it (better one candidate too many than the right one missing); a gallery filter does not.
    """
    species = (species or "").strip() or None
    region = (region or "").strip() or None
    if species is None and region is None:
        return None
    individuals = session.exec(select(Individual.id, Individual.species)).all()
    chosen = {ident for ident, _ in individuals if ident is not None}
    if species is not None:
        chosen = {
            ident
            for ident, kind in individuals
            if ident in chosen and (_same(kind, species) or (keep_unknown and not (kind or "").strip()))
        }
    if region is not None:
        seen, placed = _seen_in_region(session, region)
        chosen &= seen | ((chosen - placed) if keep_unknown else set())
    return chosen


def _seen_in_region(session: Session, region: str) -> tuple[set[int], set[int]]:
    """(individuals seen in ``region``, individuals seen anywhere known): through photos, sightings, encounters."""
    sites = list_sites(session)
    in_region = {s.id for s in sites if _same(s.region, region)}
    circles = [c for c in _circles(sites) if c.site_id in in_region]
    rows = session.exec(
        select(
            Photo.individual_id,
            Photo.site_id,
            Photo.latitude,
            Photo.longitude,
            Sighting.latitude,
            Sighting.longitude,
            Encounter.site_id,
            Encounter.latitude,
            Encounter.longitude,
        )
        .outerjoin(Sighting, col(Sighting.photo_id) == col(Photo.id))
        .outerjoin(Encounter, col(Encounter.id) == col(Sighting.encounter_id))
        .where(col(Photo.individual_id).is_not(None))
    ).all()
    seen: set[int] = set()
    placed: set[int] = set()
    for owner, photo_site, p_lat, p_lon, s_lat, s_lon, e_site, e_lat, e_lon in rows:
        points = [
            (lat, lon)
            for lat, lon in ((p_lat, p_lon), (s_lat, s_lon), (e_lat, e_lon))
            if lat is not None and lon is not None
        ]
        if photo_site is not None or e_site is not None or points:
            placed.add(owner)
        at_site = photo_site in in_region or e_site in in_region
        if at_site or any(_nearest(circles, lat, lon) is not None for lat, lon in points):
            seen.add(owner)
    return seen, placed
