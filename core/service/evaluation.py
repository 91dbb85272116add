"""Evaluating the engine on this gallery: its photos as a manifest, the protocol's run, and what to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlmodel import Session

from core.catalogue.format import csv_bytes
from core.catalogue.manifest import ManifestRow
from core.engine.index import GalleryIndex
from core.evaluation.protocol import (
    METHODS,
    EvaluationReport,
    QueryOutcome,
    evaluate,
    manifest_photo,
    protocol_split,
)
from core.progress import StageProgress
from core.service.app import App
from core.service.identify import SearchResult, search_index
from core.store.gallery import gallery_entries
from core.store.photos import PhotoStore

#: gallery_manifest gives absolute paths, so the manifest's root is the file system's.
ROOT = Path("/")


def gallery_manifest(session: Session, store: PhotoStore, identities: Sequence[str] = ()) -> list[ManifestRow]:
    """The current gallery as manifest rows (absolute paths), optionally only some identities."""
    keep = set(identities)
    return [
        ManifestRow(str(e.path), e.individual_code, e.side)
        for e in gallery_entries(session, store, None)
        if not keep or e.individual_code in keep
    ]


def gallery_photo_labels(session: Session, store: PhotoStore) -> dict[str, str]:
    """``"photo 12 (T-0042)"`` by stored path: stored files are named by hash, which means nothing to people."""
    return {str(e.path): f"photo {e.photo_id} ({e.individual_code})" for e in gallery_entries(session, store, None)}


def pair_scores(index: GalleryIndex, method: str) -> tuple[np.ndarray, np.ndarray]:
    """z-scores of the gallery's sampled same-individual and different-individual pairs."""
    null, _ = index.model(method)
    same = [null.z(k, null.score(c)) for k, arrays in index.positives.items() for c in arrays]
    different = [null.z(k, null.score(c)) for k, arrays in index.negatives.items() for c in arrays]
    return np.asarray(same, dtype=np.float64), np.asarray(different, dtype=np.float64)


def query_scores(report: EvaluationReport) -> tuple[np.ndarray, np.ndarray]:
    """Per known query: the right individual's z-score and the best wrong one's (from exhaustive matching).

    What the pair histogram shows when the gallery samples no pairs of its own (it uses the shipped prior).
    """
    known = [q for q in report.queries_detail if not q.novel and q.true_score is not None]
    right = [q.true_score for q in known if q.true_score is not None]
    wrong = [q.best_other_score for q in known if q.best_other_score is not None]
    return np.asarray(right, dtype=np.float64), np.asarray(wrong, dtype=np.float64)


def slowest_queries(report: EvaluationReport, n: int = 5) -> list[QueryOutcome]:
    return sorted(report.queries_detail, key=lambda q: -q.seconds)[:n]


def wrongest_queries(report: EvaluationReport, n: int = 5) -> list[QueryOutcome]:
    """Known queries whose individual ranked lowest, then novel queries given the highest confidence."""

    def badness(q: QueryOutcome) -> tuple[int, float]:
        if q.novel:
            return (0, q.best_probability)
        rank = q.ranking.index(q.identity) if q.identity in q.ranking else len(q.ranking) + 1
        return (rank, 1.0 - q.best_probability) if rank > 0 else (0, -1.0)

    wrong = [
        q
        for q in report.queries_detail
        if (q.novel and q.new_individual_probability < 0.5)
        or (not q.novel and (not q.ranking or q.ranking[0] != q.identity))
    ]
    return sorted(wrong, key=badness, reverse=True)[:n]


def report_csv(report: EvaluationReport) -> bytes:
    """Every query of an evaluation as CSV, for a spreadsheet: codes and paths escaped as in every export."""
    header = ["path", "identity", "novel", "top5", "best_probability", "new_individual_probability", "seconds"]
    rows = [
        [
            q.path,
            q.identity,
            str(q.novel),
            " ".join(q.ranking),
            f"{q.best_probability:.4f}",
            f"{q.new_individual_probability:.4f}",
            f"{q.seconds:.3f}",
        ]
        for q in report.queries_detail
    ]
    return csv_bytes(header, rows)


# --- what the Evaluate page calls ------------------------------------------------------------------


def current_manifest(app: App) -> list[ManifestRow]:
    with app.session() as session:
        return gallery_manifest(session, app.store)


def photo_labels(app: App) -> dict[str, str]:
    with app.session() as session:
        return gallery_photo_labels(session, app.store)


def run(app: App, rows: Sequence[ManifestRow], progress: StageProgress | None = None) -> EvaluationReport:
    """The protocol on ``rows`` with the deployment's engine; its scoring first, the others beside it."""
    method = app.settings.engine.scoring
    methods = [method] + [m for m in METHODS if m != method]
    return evaluate(rows, ROOT, app.engine, methods, progress)


def evaluation_index(app: App, rows: Sequence[ManifestRow]) -> GalleryIndex:
    """The protocol's gallery as an index (features and pairs are cached, so this is quick after a run)."""
    split = protocol_split(rows)
    return app.engine.build_index([manifest_photo(ROOT, r) for r in split.gallery])


def explain_query(app: App, index: GalleryIndex, row: ManifestRow) -> tuple[SearchResult, np.ndarray]:
    """One query of an evaluation searched again, with the picture its matches are drawn on."""
    from core.service.identify import working_image

    query = manifest_photo(ROOT, row)
    engine = app.engine
    result = search_index(engine, index, query.path, query.sha256, top_k=app.settings.engine.top_k)
    return result, working_image(engine, query.path)
