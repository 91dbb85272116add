"""The evaluation protocol: a fixed, reproducible split and the metrics volunteers care about.

Identities are sorted by the SHA-1 of their name; the first quarter (rounded) is *novel* (all
their photos are queries, none in the gallery). For every other identity its photos are sorted by
path, the 1st, 3rd, … go to the gallery and the rest are queries. Splitting by position within
the path order, not at random, keeps the split identical on every machine.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.catalogue.manifest import ManifestRow
from core.engine.index import GalleryIndex, GalleryPhoto
from core.engine.search import Engine
from core.errors import ScuteError
from core.evaluation.machine import machine
from core.evaluation.metrics import auroc
from core.io import sha256_hex
from core.progress import StageProgress

log = logging.getLogger(__name__)

METHODS = ("confident", "wasserstein", "auc", "count")


@dataclass
class Split:
    gallery: list[ManifestRow]
    queries: list[ManifestRow]
    novel: list[str]


def protocol_split(rows: Sequence[ManifestRow]) -> Split:
    identities = sorted({r.identity for r in rows}, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    novel = identities[: round(len(identities) / 4)]
    gallery: list[ManifestRow] = []
    queries: list[ManifestRow] = []
    for ident in identities:
        photos = sorted((r for r in rows if r.identity == ident), key=lambda r: r.path)
        if ident in novel:
            queries += photos
        else:
            gallery += photos[0::2]
            queries += photos[1::2]
    return Split(gallery, queries, novel)


def subset_identities(rows: Sequence[ManifestRow], count: int) -> list[ManifestRow]:
    """The ``count`` identities with the fewest photos (ties by name): a small, cheap, honest subset."""
    sizes: dict[str, int] = {}
    for r in rows:
        sizes[r.identity] = sizes.get(r.identity, 0) + 1
    keep = set(sorted(sizes, key=lambda i: (sizes[i], i))[:count])
    return [r for r in rows if r.identity in keep]


@dataclass
class MethodReport:
    method: str
    top1: float
    top3: float
    top5: float
    novelty_auroc: float
    new_decision_accuracy: float
    known_queries: int
    novel_queries: int


@dataclass
class QueryOutcome:
    path: str
    identity: str
    novel: bool
    ranking: list[str]
    best_probability: float
    new_individual_probability: float
    seconds: float


@dataclass
class EvaluationReport:
    methods: dict[str, MethodReport]
    default_method: str
    gallery_photos: int
    queries: int
    novel_identities: list[str]
    latency_median_s: float
    latency_p95_s: float
    extraction_s_per_photo: float
    index_build_s: float
    settings: dict[str, Any]
    machine: dict[str, Any]
    queries_detail: list[QueryOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        lines = [
            f"{'scoring':<12} {'top-1':>6} {'top-3':>6} {'top-5':>6} {'novelty AUROC':>14} {'new-decision acc':>17}"
        ]
        for m in self.methods.values():
            lines.append(
                f"{m.method:<12} {m.top1:>6.3f} {m.top3:>6.3f} {m.top5:>6.3f} {m.novelty_auroc:>14.3f} "
                f"{m.new_decision_accuracy:>17.3f}"
            )
        lines.append(
            f"gallery {self.gallery_photos} photos, {self.queries} queries "
            f"(novel identities: {', '.join(self.novel_identities)}); "
            f"query latency median {self.latency_median_s:.2f} s, p95 {self.latency_p95_s:.2f} s; "
            f"extraction {self.extraction_s_per_photo:.2f} s/photo; device {self.settings.get('device')}; "
            f"turns tried {self.settings.get('turns', [0])}"
        )
        return "\n".join(lines)


def manifest_photo(root: Path, row: ManifestRow) -> GalleryPhoto:
    path = (root / row.path).resolve()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScuteError(f"Cannot read {row.path}: {exc.strerror or exc}.") from None
    return GalleryPhoto(sha256=sha256_hex(data), identity=row.identity, path=path)


def evaluate(
    rows: Sequence[ManifestRow],
    root: Path,
    engine: Engine,
    methods: Sequence[str] = METHODS,
    progress: StageProgress | None = None,
) -> EvaluationReport:
    """Run the protocol once; every scoring method ranks the same match results."""
    split = protocol_split(rows)
    gallery = [manifest_photo(root, r) for r in split.gallery]
    queries = [(r, manifest_photo(root, r)) for r in split.queries]
    t0 = time.perf_counter()
    index: GalleryIndex = engine.build_index(gallery, lambda i, n: progress and progress("gallery", i, n))
    index_build_s = time.perf_counter() - t0

    novel = set(split.novel)
    hits = {m: np.zeros(3) for m in methods}
    best_known: dict[str, list[float]] = {m: [] for m in methods}
    best_novel: dict[str, list[float]] = {m: [] for m in methods}
    decisions: dict[str, list[bool]] = {m: [] for m in methods}
    latencies: list[float] = []
    extraction: list[float] = []
    details: list[QueryOutcome] = []
    for qi, (row, photo) in enumerate(queries):
        start = time.perf_counter()
        views = engine.photo_views(photo)
        extracted = time.perf_counter()
        results = engine.match_gallery(views, index)
        outcomes = {m: engine.rank(results, index, method=m) for m in methods}
        latencies.append(time.perf_counter() - start)
        extraction.append(extracted - start)
        for m, out in outcomes.items():
            best_p = out.candidates[0].probability
            if row.identity in novel:
                best_novel[m].append(best_p)
            else:
                rank = out.ranking.index(row.identity) if row.identity in out.ranking else len(out.ranking)
                hits[m] += [rank < 1, rank < 3, rank < 5]
                best_known[m].append(best_p)
            predicted_new = out.new_individual_probability >= 0.5
            decisions[m].append(predicted_new == (row.identity in novel))
        first = outcomes[methods[0]]
        details.append(
            QueryOutcome(
                row.path,
                row.identity,
                row.identity in novel,
                first.ranking[:5],
                first.candidates[0].probability,
                first.new_individual_probability,
                latencies[-1],
            )
        )
        if progress:
            progress("queries", qi + 1, len(queries))

    known = max(1, sum(1 for r, _ in queries if r.identity not in novel))
    reports = {
        m: MethodReport(
            m,
            float(hits[m][0] / known),
            float(hits[m][1] / known),
            float(hits[m][2] / known),
            auroc(best_known[m], best_novel[m]),
            float(np.mean(decisions[m])) if decisions[m] else float("nan"),
            len(best_known[m]),
            len(best_novel[m]),
        )
        for m in methods
    }
    settings = {
        "extractor": engine.extractor.name,
        "extractor_conf": engine.extractor.conf,
        "matcher": engine.matcher.name,
        "matcher_conf": engine.matcher.conf,
        "scoring": asdict(engine.scoring),
        "device": str(engine.device),
        "turns": list(engine.turns),
    }
    return EvaluationReport(
        methods=reports,
        default_method=methods[0],
        gallery_photos=len(gallery),
        queries=len(queries),
        novel_identities=sorted(novel),
        latency_median_s=float(np.median(latencies)) if latencies else float("nan"),
        latency_p95_s=float(np.percentile(latencies, 95)) if latencies else float("nan"),
        extraction_s_per_photo=float(np.mean(extraction)) if extraction else float("nan"),
        index_build_s=index_build_s,
        settings=settings,
        machine=machine(engine.device),
        queries_detail=details,
    )
