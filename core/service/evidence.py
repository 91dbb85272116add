"""The evidence a volunteer saw, kept with their sighting: Review shows it at once and never matches again.

A search's top candidates are stored with the match of each one's best photo (matched keypoints and
confidences), the null each score was read against and the sample of non-matching confidences the CDF
plots, compressed into one row of ``sighting_evidence``. :class:`Evidence` answers the same questions as
a live search (``core.service.identify.SearchResult``: candidates, their matches, the null), so the
match explorer draws either; the probabilities are the ones the volunteer saw, not a new search's.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, select

from core.engine.matching import MatchResult
from core.store.models import Photo, SightingEvidence
from core.store.photos import PhotoStore

#: Bump when the stored layout changes; older rows are then read as "no evidence" (search again instead).
FORMAT = 1


@dataclass
class PhotoMatch:
    """One gallery photo's match with the query, scored against that photo's own null."""

    photo: Any  # a GalleryPhoto (live search) or an EvidencePhoto (stored): path, crop and rotation
    match: MatchResult
    z: float
    image_size: tuple[int, int]  # (W, H) of the working image the gallery keypoints live in


@dataclass(frozen=True)
class EvidencePhoto:
    """A candidate's best gallery photo, as the cards and the overlay need it."""

    path: Path
    crop: tuple[float, float, float, float] | None
    rotation: int
    sha256: str
    photo_id: int | None


@dataclass
class EvidenceCandidate:
    identity: str
    name: str | None
    probability: float
    score: float
    matches: int
    strong_matches: int
    photo: EvidencePhoto
    match: MatchResult
    image_size: tuple[int, int]  # (W, H) of the working image the gallery keypoints live in
    null_mean: float
    null_spread: float
    photo_score: float | None = None  # the shown photo's own z-score; None: ``score`` (kept before 3 Dec 2026)

    @property
    def confidences(self) -> np.ndarray:
        return self.match.confidence

    @property
    def photo_z(self) -> float:
        """The shown photo's z-score (``score`` is the individual's, from its best photos)."""
        return self.score if self.photo_score is None else self.photo_score


@dataclass
class Evidence:
    """A search as the submitter saw it; the same reading interface as ``SearchResult``."""

    method: str
    strong_confidence: float
    query_size: tuple[int, int]
    new_individual_probability: float
    null_confidences: np.ndarray
    candidates: list[EvidenceCandidate] = field(default_factory=list)

    def candidate(self, identity: str) -> EvidenceCandidate | None:
        return next((c for c in self.candidates if c.identity == identity), None)

    def photo_matches(self, identity: str) -> list[PhotoMatch]:
        """The candidate's best photo with its match (the only one kept)."""
        c = self.candidate(identity)
        return [] if c is None else [PhotoMatch(c.photo, c.match, c.photo_z, c.image_size)]

    def null_stats(self, photo: EvidencePhoto) -> tuple[float, float]:
        c = next((c for c in self.candidates if c.photo == photo), None)
        return (c.null_mean, c.null_spread) if c is not None else (float("nan"), float("nan"))


_MATCH_ARRAYS = ("idx0", "idx1", "confidence", "kpts0", "kpts1")


def to_bytes(evidence: Evidence) -> bytes:
    meta: dict[str, Any] = {
        "format": FORMAT,
        "method": evidence.method,
        "strong_confidence": evidence.strong_confidence,
        "query_size": list(evidence.query_size),
        "new_individual_probability": evidence.new_individual_probability,
        "candidates": [
            {
                "identity": c.identity,
                "name": c.name,
                "probability": c.probability,
                "score": c.score,
                "photo_score": c.photo_z,
                "matches": c.matches,
                "strong_matches": c.strong_matches,
                "sha256": c.photo.sha256,
                "photo_id": c.photo.photo_id,
                "crop": list(c.photo.crop) if c.photo.crop else None,
                "rotation": c.photo.rotation,
                "image_size": list(c.image_size),
                "null_mean": c.null_mean,
                "null_spread": c.null_spread,
                "turn": c.match.turn,
                "n0": c.match.n0,
                "n1": c.match.n1,
                "shared_exposure": c.match.shared_exposure,
                "outside_frame": c.match.outside_frame,
            }
            for c in evidence.candidates
        ],
    }
    arrays: dict[str, Any] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        "null": evidence.null_confidences.astype(np.float16),
    }
    for i, c in enumerate(evidence.candidates):
        for name in _MATCH_ARRAYS:
            arrays[f"c{i}_{name}"] = getattr(c.match, name)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def from_bytes(payload: bytes, path_of: Callable[[str], Path]) -> Evidence | None:
    """The stored evidence; ``path_of`` finds a gallery photo's file by its SHA-256.

    None when the row is of an older layout (the reviewer can still search again).
    """
    with np.load(io.BytesIO(payload), allow_pickle=False) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        if meta.get("format") != FORMAT:
            return None
        candidates = []
        for i, c in enumerate(meta["candidates"]):
            arrays = {name: data[f"c{i}_{name}"] for name in _MATCH_ARRAYS}
            # Rows stored before the counts were recorded (same FORMAT) set nothing aside.
            set_aside = {why: int(c.get(why, 0)) for why in ("shared_exposure", "outside_frame")}
            match = MatchResult(**arrays, n0=int(c["n0"]), n1=int(c["n1"]), turn=int(c["turn"]), **set_aside)
            photo = EvidencePhoto(
                path_of(c["sha256"]),
                tuple(c["crop"]) if c["crop"] else None,  # type: ignore[arg-type]
                int(c["rotation"]),
                c["sha256"],
                c["photo_id"],
            )
            candidates.append(
                EvidenceCandidate(
                    c["identity"],
                    c["name"],
                    float(c["probability"]),
                    float(c["score"]),
                    int(c["matches"]),
                    int(c["strong_matches"]),
                    photo,
                    match,
                    (int(c["image_size"][0]), int(c["image_size"][1])),
                    float(c["null_mean"]),
                    float(c["null_spread"]),
                    float(c["photo_score"]) if c.get("photo_score") is not None else None,
                )
            )
        return Evidence(
            meta["method"],
            float(meta["strong_confidence"]),
            (int(meta["query_size"][0]), int(meta["query_size"][1])),
            float(meta["new_individual_probability"]),
            data["null"].astype(np.float32),
            candidates,
        )


def keep(session: Session, sighting_id: int, evidence: Evidence, engine_version: str) -> None:
    """Store what the submitter saw with their (new) sighting, in the caller's transaction."""
    session.add(SightingEvidence(sighting_id=sighting_id, engine_version=engine_version, payload=to_bytes(evidence)))


def stored(session: Session, store: PhotoStore, sighting_id: int) -> Evidence | None:
    """The evidence kept with a sighting, or None (submitted without a search, or before evidence was kept)."""
    row = session.exec(select(SightingEvidence).where(SightingEvidence.sighting_id == sighting_id)).first()
    if row is None:
        return None

    def path_of(sha256: str) -> Path:
        photo = session.exec(select(Photo).where(Photo.sha256 == sha256)).first()
        return store.path(photo.path) if photo is not None else Path()

    return from_bytes(row.payload, path_of)
