"""The compare view's data: the query and a candidate's photo at full resolution, their matches, and what each
photo is (file name, date, site), as one figure (``core.viz.compare``) for Identify and Review."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from sqlmodel import select

from core.engine.images import prepare
from core.service.app import App
from core.service.evidence import PhotoMatch
from core.store.fieldwork import Site
from core.store.models import Photo, Sighting
from core.viz.compare import FULL_SIDE, ComparePhoto, compare_figure, scaled_points


@dataclass(frozen=True)
class QueryPhoto:
    """The photo being identified, framed as it was searched, and its label."""

    source: Path | bytes
    crop: tuple[float, float, float, float] | None
    rotation: int
    label: str


def label(name: str, when: datetime | None, site: str | None) -> str:
    """ "IMG_0042.jpg · 3 May 2025 · Ras Baridi", saying so when a part is unknown."""
    day = f"{when:%d %b %Y}".lstrip("0") if when is not None else "date unknown"
    return " · ".join((name or "file name unknown", day, site or "site unknown"))


def photo_label(app: App, photo_id: int | None, fallback: str = "") -> str:
    """A stored photo's label: the name it was sent or imported as, its date (or its sighting's) and its site."""
    with app.session() as session:
        photo = session.get(Photo, photo_id) if photo_id is not None else None
        if photo is None:
            return label(fallback, None, None)
        when = photo.taken_at or session.exec(select(Sighting.taken_at).where(Sighting.photo_id == photo.id)).first()
        site = session.get(Site, photo.site_id) if photo.site_id is not None else None
        return label(photo.original_name, when, site.name if site is not None else None)


def figure(
    app: App, query: QueryPhoto, query_size: tuple[int, int], identity: str, chosen: PhotoMatch, max_matches: int = 40
) -> go.Figure:
    """Query and ``identity``'s photo side by side at up to :data:`FULL_SIDE` px, zoomed and panned together."""
    photo: Any = chosen.photo  # a GalleryPhoto (live search) or an EvidencePhoto (stored): path, crop, rotation
    query_image = prepare(query.source, crop=query.crop, rotation=query.rotation, max_side=FULL_SIDE)
    candidate_image = prepare(Path(photo.path), crop=photo.crop, rotation=photo.rotation, max_side=FULL_SIDE)
    match = chosen.match
    candidate_label = f"{identity} · {photo_label(app, photo.photo_id, Path(photo.path).name)}"
    return compare_figure(
        ComparePhoto(query_image, scaled_points(match.kpts0, query_size, query_image), query.label),
        ComparePhoto(candidate_image, scaled_points(match.kpts1, chosen.image_size, candidate_image), candidate_label),
        match.confidence,
        max_matches=max_matches,
    )


def stored_query(app: App, photo_id: int | None, path: Path, crop: Any, rotation: int) -> QueryPhoto:
    """A sighting's photo (Review) as the query, labelled from the database."""
    return QueryPhoto(path, crop, rotation, photo_label(app, photo_id, path.name))


def uploaded_query(
    name: str, data: bytes, crop: Any, rotation: int, when: datetime | None, site: str | None
) -> QueryPhoto:
    """A photo just uploaded on Identify as the query."""
    return QueryPhoto(data, crop, rotation, label(name, when, site))
