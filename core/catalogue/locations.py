"""Where animals were seen, as each reader may know it: exact for reviewers and admins, rounded for everyone else.

Why: the nesting beach of an endangered turtle is worth protecting from the wrong visitors; a volunteer needs to know
the animal lives around an island, not the stretch of sand (issue 16). The step (0.1° by default, about 11 km) is a
deployment setting (``SCUTE_VOLUNTEER_POSITION_DEGREES``, read in ``core.settings``). Every export says which
positions it holds, in its README and in the Darwin Core columns ``coordinatePrecision``,
``coordinateUncertaintyInMeters`` and ``informationWithheld``, so an analyst never mistakes a rounded position for
a precise one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine as SqlEngine
from sqlmodel import Session, select

from core.store.fieldwork import Encounter, Site
from core.store.models import AuditLog, Photo, Sighting

__all__ = [
    "DEFAULT_STEP",
    "EXACT",
    "PRECISE_ROLES",
    "README_NAME",
    "Locations",
    "Places",
    "for_role",
    "protect",
    "read_places",
    "readme",
    "rounded",
]

README_NAME = "README.txt"

DEFAULT_STEP = 0.1
"""Degrees volunteers' positions are rounded to: about 11 km north–south."""
PRECISE_ROLES = ("reviewer", "admin")
"""Roles trusted with the recorded positions."""
_METRES_PER_DEGREE = 111_320.0


def rounded(latitude: float, longitude: float, step: float) -> tuple[float, float]:
    """The centre of the ``step``-degree cell that holds the point (4 decimals, so 0.1 prints as 0.1)."""
    return round(round(latitude / step) * step, 4), round(round(longitude / step) * step, 4)


@dataclass(frozen=True)
class Locations:
    """How positions are given: exactly (``step`` None) or rounded to ``step`` degrees."""

    step: float | None = None

    def __post_init__(self) -> None:
        if self.step is not None and not (math.isfinite(self.step) and 0 < self.step <= 10):
            raise ValueError(f"the rounding of positions must be more than 0 and at most 10 degrees, not {self.step}")

    @property
    def exact(self) -> bool:
        return self.step is None

    def place(self, latitude: float | None, longitude: float | None) -> tuple[float | None, float | None]:
        """The position as this policy gives it; an incomplete one is no position at all."""
        if latitude is None or longitude is None:
            return None, None
        return (latitude, longitude) if self.step is None else rounded(latitude, longitude, self.step)

    def describe(self) -> str:
        """One line for an export's README."""
        if self.step is None:
            return "Coordinates: exact, as recorded (this export is for reviewers and admins; do not publish it)."
        km = self.step * _METRES_PER_DEGREE / 1000
        return (
            f"Coordinates: rounded to {self.step:g} degrees (about {km:.0f} km) to protect where the animals live; "
            "the recorded positions are withheld."
        )

    def darwin_core(self, located: bool) -> dict[str, Any]:
        """The Darwin Core columns that say how precise a row's position is."""
        if not located:
            return {"coordinateUncertaintyInMeters": "", "coordinatePrecision": "", "informationWithheld": ""}
        if self.step is None:
            return {"coordinateUncertaintyInMeters": "", "coordinatePrecision": "", "informationWithheld": ""}
        # Half the cell's diagonal at the equator: no point of the cell is further from the given centre.
        uncertainty = round(self.step * _METRES_PER_DEGREE * math.sqrt(2) / 2)
        return {
            "coordinateUncertaintyInMeters": uncertainty,
            "coordinatePrecision": self.step,
            "informationWithheld": f"exact coordinates withheld; rounded to {self.step:g} degrees",
        }


EXACT = Locations()


def for_role(role: str, step: float = DEFAULT_STEP) -> Locations:
    """Exact for reviewers and admins, rounded to ``step`` for volunteers (and anyone else)."""
    return EXACT if role in PRECISE_ROLES else Locations(step)


def protect(
    photos: Iterable[Photo], sightings: Iterable[Sighting], audit: Iterable[AuditLog], locations: Locations
) -> None:
    """Round the positions of an export's rows (detached copies, never written back), audit payloads included."""
    if locations.exact:
        return
    for row in [*photos, *sightings]:
        row.latitude, row.longitude = locations.place(row.latitude, row.longitude)
    for entry in audit:
        payload = dict(entry.payload or {})
        for part in ("before", "after"):
            fields = payload.get(part)
            if isinstance(fields, dict) and ("latitude" in fields or "longitude" in fields):
                latitude, longitude = locations.place(fields.get("latitude"), fields.get("longitude"))
                payload[part] = {**fields, "latitude": latitude, "longitude": longitude}
        entry.payload = payload


@dataclass(frozen=True)
class Places:
    """The named sites, and the site of each encounter, for the ``locality`` of exported rows."""

    sites: dict[int, str] = field(default_factory=dict)
    encounter_sites: dict[int, int] = field(default_factory=dict)

    def site_of(self, photo: Photo, sighting: Sighting | None) -> tuple[int | None, str]:
        """The photo's own site, else its encounter's: (id, name), or (None, "")."""
        site_id = photo.site_id
        if site_id is None and sighting is not None and sighting.encounter_id is not None:
            site_id = self.encounter_sites.get(sighting.encounter_id)
        if site_id is None or site_id not in self.sites:
            return None, ""
        return site_id, self.sites[site_id]


def read_places(db: SqlEngine) -> Places:
    with Session(db) as session:
        sites = {s.id: s.name for s in session.exec(select(Site)).all() if s.id is not None}
        rows = session.exec(select(Encounter.id, Encounter.site_id)).all()
        return Places(sites, {e: site for e, site in rows if e is not None and site is not None})


def readme(locations: Locations, scope: str = "") -> str:
    """What an export holds, for the person who opens it: positions, and which individuals."""
    which = (
        f"Individuals: {scope} (individuals, encounters, occurrences and histories tables)."
        if scope
        else ("Individuals: all.")
    )
    return "\n".join(["Scute catalogue export", "", locations.describe(), which, ""])
