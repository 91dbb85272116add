"""Tables analysts load as they are: Darwin Core occurrences for biodiversity portals (GBIF, OBIS) and
capture–recapture encounter histories (MARK's ``.inp``, and the same as CSV for RMark or R's ``marked``).

Each identified gallery photo is one :class:`Encounter` (the photo-ID record). Sampling occasions are the
date ranges the coordinator chooses, since field seasons rarely fall on calendar months.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from core.catalogue.locations import EXACT, Locations
from core.errors import ScuteError

DARWIN_CORE_COLUMNS = (
    "occurrenceID",
    "basisOfRecord",
    "eventDate",
    "decimalLatitude",
    "decimalLongitude",
    "geodeticDatum",
    "coordinateUncertaintyInMeters",
    "coordinatePrecision",
    "informationWithheld",
    "locality",
    "locationID",
    "scientificName",
    "organismID",
    "organismName",
    "recordedBy",
    "occurrenceRemarks",
    "associatedMedia",
)

_RANGE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})\s*(?:\.\.|/)\s*(\d{4}-\d{2}-\d{2})\s*$")


class OccasionError(ScuteError):
    """The sampling occasions cannot be read (format, order, overlap)."""


@dataclass(frozen=True)
class Encounter:
    """One identified gallery photo, as the exports see it."""

    photo_id: int
    individual: str
    name: str
    species: str
    when: datetime | None
    latitude: float | None
    longitude: float | None
    side: str
    observer: str
    sha256: str
    site: str = ""  # the named site it was seen at, if any
    site_id: int | None = None


def parse_occasions(text: str) -> list[tuple[date, date]]:
    """``2024-06-01..2024-06-30, 2024-07-01..2024-07-31`` (or ``/`` between the dates): inclusive ranges in
    order, none overlapping. A clear message names the part that cannot be read."""
    occasions: list[tuple[date, date]] = []
    for part in (p for p in re.split(r"[,;\n]", text) if p.strip()):
        match = _RANGE.match(part)
        if not match:
            raise OccasionError(f"Cannot read the occasion {part.strip()!r}: write it as 2024-06-01..2024-06-30.")
        try:
            start, end = (date.fromisoformat(match.group(k)) for k in (1, 2))
        except ValueError:
            raise OccasionError(f"The occasion {part.strip()!r} names a day that does not exist.") from None
        if end < start:
            raise OccasionError(f"The occasion {part.strip()!r} ends before it starts.")
        if occasions and start <= occasions[-1][1]:
            raise OccasionError(
                f"The occasion {part.strip()!r} starts before the previous one ends: list them in order, "
                "without overlaps."
            )
        occasions.append((start, end))
    if not occasions:
        raise OccasionError("Give at least one sampling occasion, e.g. 2024-06-01..2024-06-30.")
    return occasions


def darwin_core_rows(encounters: Sequence[Encounter], locations: Locations = EXACT) -> list[list[Any]]:
    """One occurrence per encounter; the photo's SHA-256 makes the occurrenceID stable across exports.

    The positions are given as the encounters hold them; ``locations`` says how precise they are (rounded ones
    carry their precision, uncertainty and what was withheld). A named site is the ``locality``.
    """
    rows = []
    for e in encounters:
        located = e.latitude is not None and e.longitude is not None
        precision = locations.darwin_core(located)
        rows.append(
            [
                f"scute:photo:{e.sha256}",
                "HumanObservation",
                e.when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if e.when else "",
                e.latitude if located else "",
                e.longitude if located else "",
                "EPSG:4326" if located else "",
                precision["coordinateUncertaintyInMeters"],
                precision["coordinatePrecision"],
                precision["informationWithheld"],
                e.site,
                f"scute:site:{e.site_id}" if e.site_id is not None else "",
                e.species,
                e.individual,
                e.name,
                e.observer,
                f"{e.side} side photographed" if e.side not in ("", "unknown") else "",
                e.sha256,
            ]
        )
    return rows


@dataclass
class EncounterHistories:
    """Per individual, 1 where it was photographed during an occasion; what could not be placed, counted."""

    occasions: list[tuple[date, date]]
    histories: dict[str, list[int]]
    undated: int  # encounters without a date
    outside: int  # dated encounters between or beyond the occasions

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        header = ["individual", *(f"{start.isoformat()}..{end.isoformat()}" for start, end in self.occasions)]
        return header, [[code, *history] for code, history in self.histories.items()]

    def mark_inp(self) -> str:
        """MARK's input: one line per individual, the history as 0/1 characters, a group count of 1, and the
        code as a comment (MARK ignores ``/* … */``)."""
        lines = [f"/* {code} */ {''.join(map(str, h))} 1;" for code, h in self.histories.items() if any(h)]
        return "\n".join(lines) + ("\n" if lines else "")


def encounter_histories(encounters: Sequence[Encounter], occasions: Sequence[tuple[date, date]]) -> EncounterHistories:
    """Capture histories over ``occasions`` (dates in UTC); individuals never seen in any occasion are left
    out, as capture–recapture counts only animals caught at least once."""
    histories: dict[str, list[int]] = {}
    undated = outside = 0
    for e in sorted(encounters, key=lambda e: e.individual):
        if e.when is None:
            undated += 1
            continue
        day = e.when.astimezone(UTC).date()
        slot = next((k for k, (start, end) in enumerate(occasions) if start <= day <= end), None)
        if slot is None:
            outside += 1
            continue
        histories.setdefault(e.individual, [0] * len(occasions))[slot] = 1
    return EncounterHistories(list(occasions), histories, undated, outside)
