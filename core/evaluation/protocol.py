"""The evaluation protocol: reproducible identity folds, encounters kept whole, queries compared with their side.

Identities are sorted by the SHA-1 of their name and cut into ``folds`` contiguous blocks; in fold *k* the
*k*-th block is *novel* (all their photos are queries, none in the gallery), so every identity is novel
once and the folds give a mean and a spread. For every other identity its photos are grouped into
encounters (a manifest's ``encounter`` column, the file name's stem before ``_``, or each photo alone),
the encounters are ordered by their first path, and the 1st, 3rd, … go to the gallery, the rest to the
queries: near-duplicates of one encounter never sit on both sides. As in the app, a query of a known side
is compared with the gallery photos of that side and of unknown side only; a query whose individual has no
such photo counts as novel for that search. Splitting by position, not at random, keeps the split identical
on every machine. Beside the figures per photo come the figures per encounter: the queries of one encounter
(say a left and a right flank) ranked as one by :func:`core.engine.combine.combine`, as Identify does, since
capture–recapture counts encounters.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.catalogue.manifest import ManifestRow
from core.engine.combine import EncounterRanking, combine
from core.engine.index import GalleryIndex, GalleryPhoto
from core.engine.search import Engine, Identification
from core.engine.shortlist import ShortlistConf
from core.errors import ScuteError
from core.evaluation.machine import machine
from core.evaluation.metrics import auroc
from core.io import sha256_hex
from core.progress import StageProgress

log = logging.getLogger(__name__)

METHODS = ("confident", "wasserstein", "auc", "count")


ENCOUNTER_SOURCES = ("column", "name", "photo")


@dataclass
class Split:
    gallery: list[ManifestRow]
    queries: list[ManifestRow]
    novel: list[str]
    fold: int = 0
    folds: int = 4


def encounter_of(row: ManifestRow, source: str = "column") -> str:
    """Which encounter a photo belongs to: ``column`` the manifest's (each photo alone where it is empty),
    ``name`` the file name's stem before the first ``_`` (as in ``14_left.jpg``), ``photo`` each photo alone."""
    if source not in ENCOUNTER_SOURCES:
        raise ScuteError(f"Encounters come from one of {', '.join(ENCOUNTER_SOURCES)}, not {source!r}.")
    if source == "name":
        return Path(row.path).stem.split("_", 1)[0]
    if source == "column" and row.encounter:
        return row.encounter
    return row.path


def fold_identities(rows: Sequence[ManifestRow], fold: int, folds: int) -> list[str]:
    """The novel identities of ``fold``: its contiguous block of the identities sorted by SHA-1."""
    if not 0 <= fold < folds:
        raise ScuteError(f"Fold {fold} does not exist: there are {folds} (0 to {folds - 1}).")
    identities = sorted({r.identity for r in rows}, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    bounds = [int(k * len(identities) / folds + 0.5) for k in range(folds + 1)]
    return identities[bounds[fold] : bounds[fold + 1]]


def protocol_split(rows: Sequence[ManifestRow], fold: int = 0, folds: int = 4, encounters: str = "column") -> Split:
    novel = fold_identities(rows, fold, folds)
    gallery: list[ManifestRow] = []
    queries: list[ManifestRow] = []
    for ident in sorted({r.identity for r in rows}, key=lambda s: hashlib.sha1(s.encode()).hexdigest()):
        photos = sorted((r for r in rows if r.identity == ident), key=lambda r: r.path)
        if ident in novel:
            queries += photos
            continue
        groups: dict[str, list[ManifestRow]] = {}
        for r in photos:  # in path order, so each encounter is ordered by its first path
            groups.setdefault(encounter_of(r, encounters), []).append(r)
        for i, group in enumerate(groups.values()):
            (gallery if i % 2 == 0 else queries).extend(group)
    return Split(gallery, queries, novel, fold, folds)


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
    true_score: float | None = None  # exhaustive search: z-score of the right individual (known queries)
    best_other_score: float | None = None  # ... and of the best-scoring wrong one
    #: Where the search zoomed to the animal (core.engine.localise), both passes, whichever answer it kept.
    first_pass_ranking: list[str] | None = None
    first_pass_probability: float | None = None
    zoomed_ranking: list[str] | None = None
    zoomed_probability: float | None = None


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
    search: MethodReport | None = None  # the app's search (shortlisted where it would be), default scoring
    exhaustive_latency_median_s: float = float("nan")
    # Per encounter: its photos' rankings (each against its own side) combined (core.engine.combine), for the
    # default scoring exhaustively and for the app's search; ``encounters`` counts them, known and novel.
    encounter_methods: dict[str, MethodReport] = field(default_factory=dict)
    encounter_search: MethodReport | None = None
    encounters: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        lines = [
            f"{'scoring':<12} {'top-1':>6} {'top-3':>6} {'top-5':>6} {'novelty AUROC':>14} {'new-decision acc':>17}"
        ]
        labelled = [(m.method, m) for m in self.methods.values()]
        labelled += [(f"search ({self.search.method})", self.search)] if self.search else []
        labelled += [(f"{m.method} per encounter", m) for m in self.encounter_methods.values()]
        if self.encounter_search:
            labelled.append((f"search ({self.encounter_search.method}) per encounter", self.encounter_search))
        for label, m in labelled:
            lines.append(
                f"{label:<12} {m.top1:>6.3f} {m.top3:>6.3f} {m.top5:>6.3f} {m.novelty_auroc:>14.3f} "
                f"{m.new_decision_accuracy:>17.3f}"
            )
        lines.append(
            f"gallery {self.gallery_photos} photos, {self.queries} queries in {self.encounters} encounters "
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


class _Tally:
    """Hits, best probabilities and new/known decisions of one way of ranking, over all queries."""

    def __init__(self) -> None:
        self.hits = np.zeros(3)
        self.best_known: list[float] = []
        self.best_novel: list[float] = []
        self.decisions: list[bool] = []

    def add(self, outcome: Identification | EncounterRanking, identity: str, novel: bool) -> None:
        best_p = outcome.candidates[0].probability
        if novel:
            self.best_novel.append(best_p)
        else:
            rank = outcome.ranking.index(identity) if identity in outcome.ranking else len(outcome.ranking)
            self.hits += [rank < 1, rank < 3, rank < 5]
            self.best_known.append(best_p)
        self.decisions.append((outcome.new_individual_probability >= 0.5) == novel)

    def report(self, method: str) -> MethodReport:
        known = max(1, len(self.best_known))
        return MethodReport(
            method,
            float(self.hits[0] / known),
            float(self.hits[1] / known),
            float(self.hits[2] / known),
            auroc(self.best_known, self.best_novel),
            float(np.mean(self.decisions)) if self.decisions else float("nan"),
            len(self.best_known),
            len(self.best_novel),
        )


def evaluate(
    rows: Sequence[ManifestRow],
    root: Path,
    engine: Engine,
    methods: Sequence[str] = METHODS,
    progress: StageProgress | None = None,
    shortlist: ShortlistConf | bool | None = None,
    exhaustive: bool = True,
    split: Split | None = None,
    sides: bool = True,
    encounters: str = "column",
) -> EvaluationReport:
    """Run the protocol once (``split``: fold 0 of the default split); every scoring method ranks the same
    exhaustive match results.

    The search the app runs (shortlisted where the engine would shortlist, ``shortlist`` as in
    :meth:`Engine.search`) is reported beside them as ``search``, on the same queries. ``exhaustive=False``
    skips the exhaustive matching (hours on a CPU for a large gallery) and reports the search alone.
    ``sides``: a query of a known side is compared with that side and unknown, as the app does.
    ``encounters``: how queries group into encounters (:func:`encounter_of`) for the per-encounter figures,
    where each encounter's photos (say its left and right) are ranked as one (:func:`core.engine.combine.combine`).
    """
    split = split or protocol_split(rows)
    gallery = [manifest_photo(root, r) for r in split.gallery]
    queries = [(r, manifest_photo(root, r)) for r in split.queries]
    t0 = time.perf_counter()
    index: GalleryIndex = engine.build_index(gallery, lambda i, n: progress and progress("gallery", i, n))
    side_indexes = _side_indexes(engine, split.gallery, gallery, index) if sides else {}
    index_build_s = time.perf_counter() - t0

    tallies = {m: _Tally() for m in methods}
    searched = _Tally()
    latencies: list[float] = []
    search_latencies: list[float] = []
    extraction: list[float] = []
    details: list[QueryOutcome] = []
    novel_queries = 0
    per_photo: list[tuple[ManifestRow, bool, Identification, Identification | None]] = []
    for qi, (row, photo) in enumerate(queries):
        searched_index = side_indexes.get(row.side, index)
        if not searched_index.photos:  # no gallery photo of this side at all: compare with every side
            searched_index = index
        is_novel = row.identity not in {p.identity for p in searched_index.photos}
        novel_queries += is_novel
        start = time.perf_counter()
        views = engine.photo_views(photo)
        extracted = time.perf_counter()
        # The app's search, zoomed to the animal where the engine would (core.engine.localise).
        outcome = engine.search_photo(photo.path, photo.sha256, searched_index, method=methods[0], shortlist=shortlist)
        deployed, (first, zoomed) = outcome.identification, outcome.zoom_passes()
        search_latencies.append(time.perf_counter() - start)
        searched.add(deployed, row.identity, is_novel)
        extraction.append(extracted - start)
        scores: dict[str, float] = {}
        others: list[float] = []
        if exhaustive:
            start_exhaustive = time.perf_counter()
            results = engine.match_gallery(views, searched_index)
            outcomes = {m: engine.rank(results, searched_index, method=m) for m in methods}
            latencies.append(extracted - start + time.perf_counter() - start_exhaustive)
            for m, out in outcomes.items():
                tallies[m].add(out, row.identity, is_novel)
            scores = outcomes[methods[0]].scores
            others = [z for ident, z in scores.items() if ident != row.identity]
        per_photo.append((row, is_novel, deployed, outcomes[methods[0]] if exhaustive else None))
        details.append(
            QueryOutcome(
                row.path,
                row.identity,
                is_novel,
                deployed.ranking[:5],
                deployed.candidates[0].probability,
                deployed.new_individual_probability,
                search_latencies[-1],
                scores.get(row.identity),
                max(others) if others else None,
                first.ranking[:5] if first else None,
                first.best_probability if first else None,
                zoomed.ranking[:5] if zoomed else None,
                zoomed.best_probability if zoomed else None,
            )
        )
        if progress:
            progress("queries", qi + 1, len(queries))

    reports = {m: tallies[m].report(m) for m in methods} if exhaustive else {}
    groups = _encounter_groups(per_photo, encounters)
    new_prior = engine.scoring.new_prior
    settings = {
        "extractor": engine.extractor.name,
        "extractor_conf": engine.extractor.conf,
        "matcher": engine.matcher.name,
        "matcher_conf": engine.matcher.conf,
        "scoring": asdict(engine.scoring),
        "device": str(engine.device),
        "turns": list(engine.turns),
        "zoom": asdict(engine.zoom) if engine.zoom else None,
        "frame": engine.frame.tag if engine.frame else None,
        "prior": dict(engine.prior.source, signature=engine.prior.signature) if engine.prior else None,
        "shortlist": str(shortlist) if shortlist is not None else "the engine's default for the device",
        "split": {
            "fold": split.fold,
            "folds": split.folds,
            "sides": "query compared with its own side and unknown" if sides else "every side",
            "novel_queries": novel_queries,
            "known_queries": len(queries) - novel_queries,
        },
    }
    return EvaluationReport(
        methods=reports,
        default_method=methods[0],
        gallery_photos=len(gallery),
        queries=len(queries),
        novel_identities=sorted(split.novel),
        latency_median_s=float(np.median(search_latencies)) if search_latencies else float("nan"),
        latency_p95_s=float(np.percentile(search_latencies, 95)) if search_latencies else float("nan"),
        search=searched.report(methods[0]),
        exhaustive_latency_median_s=float(np.median(latencies)) if latencies else float("nan"),
        extraction_s_per_photo=float(np.mean(extraction)) if extraction else float("nan"),
        index_build_s=index_build_s,
        settings=settings,
        machine=machine(engine.device),
        queries_detail=details,
        encounter_methods={methods[0]: _encounter_tally(groups, 3, new_prior).report(methods[0])} if exhaustive else {},
        encounter_search=_encounter_tally(groups, 2, new_prior).report(methods[0]),
        encounters=len(groups),
    )


_PerPhoto = tuple[ManifestRow, bool, Identification, Identification | None]


def _encounter_groups(per_photo: Sequence[_PerPhoto], source: str) -> list[list[_PerPhoto]]:
    """The queries grouped by identity and encounter (:func:`encounter_of`), in the order they came."""
    groups: dict[tuple[str, str], list[_PerPhoto]] = {}
    for item in per_photo:
        groups.setdefault((item[0].identity, encounter_of(item[0], source)), []).append(item)
    return list(groups.values())


def _encounter_tally(groups: Sequence[Sequence[_PerPhoto]], which: int, new_prior: float) -> _Tally:
    """Each encounter's photos ranked as one (``which``: 2 the app's search, 3 the exhaustive ranking); an
    encounter is novel when none of its photos' searches had its individual (on that photo's side)."""
    tally = _Tally()
    for group in groups:
        combined = combine([item[which] for item in group], new_prior)
        tally.add(combined, group[0][0].identity, all(item[1] for item in group))
    return tally


def side_galleries(rows: Sequence[ManifestRow]) -> dict[str, list[int]]:
    """The rows a query of each known side is compared with, as the app's per-side indexes hold them: that side's
    and the unknown side's; ``{"all": every row}`` when no side is known.

    A prior fitted on these galleries samples the pairs a search compares: fitted on every side at once, half of
    a nyala's "same individual" partners were its other flank, which never matches, so a right answer looked
    no likelier than a stranger."""
    sides = sorted({r.side for r in rows} - {"unknown"})
    if not sides:
        return {"all": list(range(len(rows)))}
    return {side: [i for i, r in enumerate(rows) if r.side in (side, "unknown")] for side in sides}


def side_indexes(
    engine: Engine,
    rows: Sequence[ManifestRow],
    photos: Sequence[GalleryPhoto],
    progress: Callable[[str, int, int], object] | None = None,
    previous: GalleryIndex | None = None,
) -> list[GalleryIndex]:
    """One index per :func:`side_galleries` gallery of ``rows`` (``photos`` in the same order), as the app builds
    them; ``progress(side, done, total)`` per index."""
    return [
        engine.build_index(
            [photos[i] for i in at], (lambda d, n, s=side: progress(s, d, n)) if progress else None, previous
        )
        for side, at in side_galleries(rows).items()
    ]


def _side_indexes(
    engine: Engine, rows: Sequence[ManifestRow], photos: Sequence[GalleryPhoto], index: GalleryIndex
) -> dict[str, GalleryIndex]:
    """Per known side, the gallery photos of that side and of unknown side (features reused from ``index``)."""
    galleries = side_galleries(rows)
    if "all" in galleries:
        return {}
    return dict(zip(galleries, side_indexes(engine, rows, photos, previous=index), strict=True))
