"""Which part of the gallery a search compares with: by default the encounter's species and the region of its site,
or everything when the volunteer switches "search everywhere" on.

Why: an Internet of Turtles hawksbill was searched against 28,599 candidates instead of the 2,482 at its location
(Wildbook #1025); fewer candidates mean a faster search and fewer look-alikes from the other side of the world.
The search keeps the individuals it cannot rule out (no species recorded, never seen anywhere known), so a gallery
whose individuals carry no species or places still finds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from core.review.sites import individuals_in, list_sites, list_species, regions, site_of
from core.service.app import App
from core.store.fieldwork import Encounter, Site


@dataclass(frozen=True)
class SearchScope:
    """A species and a region to search within; blank means any; ``everywhere`` ignores both."""

    species: str = ""
    region: str = ""
    everywhere: bool = False

    @property
    def filtered(self) -> bool:
        return not self.everywhere and bool(self.species.strip() or self.region.strip())

    def describe(self) -> str:
        """What the search compares with, in words ("Green turtle individuals seen in Red Sea")."""
        if not self.filtered:
            return "the whole gallery"
        who = f"{self.species.strip()} individuals" if self.species.strip() else "individuals"
        where = f" seen in {self.region.strip()}" if self.region.strip() else ""
        return f"{who}{where} (and those of unknown species or place)"


@dataclass(frozen=True)
class ScopeChoices:
    """What the scope widget offers."""

    species: list[str]
    regions: list[str]


def scope_choices(app: App) -> ScopeChoices:
    with app.session() as session:
        return ScopeChoices([s.name for s in list_species(session)], regions(session))


def region_of(session: Session, site_id: int | None, latitude: float | None, longitude: float | None) -> str:
    """The region of the site (given, else the one whose radius holds the coordinates), or ""."""
    site = session.get(Site, site_id) if site_id is not None else None
    if site is None:
        site = site_of(session, latitude, longitude)
    return site.region if site is not None else ""


def default_scope(
    app: App,
    *,
    encounter_id: int | None = None,
    species: str = "",
    site_id: int | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    user_id: int | None = None,
) -> SearchScope:
    """The encounter's species and the region of its site (or of where its photo was taken).

    Before an encounter exists (Identify searches first, the form comes after), ``user_id`` gives the species of
    that volunteer's latest encounter: most send one species after another.
    """
    with app.session() as session:
        if not species and encounter_id is None and user_id is not None:
            species = (
                session.exec(
                    select(Encounter.species)
                    .where(Encounter.submitted_by == user_id, Encounter.species != "")
                    .order_by(col(Encounter.id).desc())
                    .limit(1)
                ).first()
                or ""
            )
        encounter = session.get(Encounter, encounter_id) if encounter_id is not None else None
        if encounter is not None:
            species = species or encounter.species
            site_id = site_id if site_id is not None else encounter.site_id
            latitude = latitude if latitude is not None else encounter.latitude
            longitude = longitude if longitude is not None else encounter.longitude
        return SearchScope(species or "", region_of(session, site_id, latitude, longitude))


def allowed_individuals(app: App, scope: SearchScope | None) -> set[int] | None:
    """The individuals a search within ``scope`` compares with; None: every one."""
    if scope is None or not scope.filtered:
        return None
    with app.session() as session:
        return individuals_in(session, scope.species, scope.region, keep_unknown=True)


def site_names(app: App) -> dict[int, str]:
    """Site ids and names, for pickers."""
    with app.session() as session:
        return {s.id: s.name for s in list_sites(session) if s.id is not None}
