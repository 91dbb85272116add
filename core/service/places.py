"""Sites and species as the Curate page manages them (core.review.sites does the checks and the audit)."""

from __future__ import annotations

from dataclasses import dataclass

from core.review import sites
from core.service.app import App
from core.store.models import User


@dataclass(frozen=True)
class SiteRow:
    id: int
    name: str
    region: str
    latitude: float | None
    longitude: float | None
    radius_km: float | None
    encounters: int
    photos: int

    @property
    def label(self) -> str:
        return f"{self.name} ({self.region})" if self.region else self.name


@dataclass(frozen=True)
class SpeciesRow:
    id: int
    name: str
    scientific_name: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.scientific_name})" if self.scientific_name else self.name


def site_rows(app: App) -> list[SiteRow]:
    with app.session() as session:
        rows = []
        for s in sites.list_sites(session):
            encounters, photos = sites.site_uses(session, s.id)  # type: ignore[arg-type]
            rows.append(SiteRow(s.id, s.name, s.region, s.latitude, s.longitude, s.radius_km, encounters, photos))  # type: ignore[arg-type]
        return rows


def species_rows(app: App) -> list[SpeciesRow]:
    with app.session() as session:
        return [SpeciesRow(s.id, s.name, s.scientific_name) for s in sites.list_species(session)]  # type: ignore[arg-type]


def regions(app: App) -> list[str]:
    with app.session() as session:
        return sites.regions(session)


def add_site(
    app: App,
    user: User,
    name: str,
    region: str,
    latitude: float | None,
    longitude: float | None,
    radius_km: float | None,
) -> str:
    with app.session() as session:
        site = sites.add_site(
            session, user, name, region=region, latitude=latitude, longitude=longitude, radius_km=radius_km
        )
        return site.name


def edit_site(
    app: App,
    user: User,
    site_id: int,
    name: str,
    region: str,
    latitude: float | None,
    longitude: float | None,
    radius_km: float | None,
) -> str:
    with app.session() as session:
        site = sites.edit_site(
            session,
            user,
            site_id,
            name=name,
            region=region,
            latitude=latitude,
            longitude=longitude,
            radius_km=radius_km,
        )
        return site.name


def remove_site(app: App, user: User, site_id: int) -> None:
    with app.session() as session:
        sites.remove_site(session, user, site_id)


def add_species(app: App, user: User, name: str, scientific_name: str) -> str:
    with app.session() as session:
        return sites.add_species(session, user, name, scientific_name).name


def edit_species(app: App, user: User, species_id: int, name: str, scientific_name: str) -> str:
    with app.session() as session:
        return sites.edit_species(session, user, species_id, name=name, scientific_name=scientific_name).name


def remove_species(app: App, user: User, species_id: int) -> None:
    with app.session() as session:
        sites.remove_species(session, user, species_id)
