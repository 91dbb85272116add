"""The protocol over every identity fold: one report per fold, each metric's mean and spread, and priors
fitted on a fold's gallery alone so that no figure is scored by a prior that saw its queries."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.catalogue.manifest import ManifestRow
from core.engine.index import GalleryPhoto, fit_prior
from core.engine.prior import Prior
from core.engine.search import Engine
from core.engine.shortlist import ShortlistConf
from core.errors import ScuteError
from core.evaluation.protocol import (
    METHODS,
    EvaluationReport,
    MethodReport,
    evaluate,
    manifest_photo,
    protocol_split,
    side_galleries,
    side_indexes,
)
from core.progress import StageProgress


@dataclass
class FoldsReport:
    """Every fold's report, and per row of the table (scoring methods and ``search``) each metric's mean and
    standard deviation over the folds."""

    folds: list[EvaluationReport]
    summary: dict[str, dict[str, tuple[float, float]]]
    protocol: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "summary": self.summary, "folds": [f.to_dict() for f in self.folds]}

    def table(self) -> str:
        metrics = ("top1", "top5", "novelty_auroc", "new_decision_accuracy")
        lines = [f"{'scoring':<34} " + " ".join(f"{m:>22}" for m in metrics)]
        for label, values in self.summary.items():
            cells = " ".join(f"{values[m][0]:>14.3f} ± {values[m][1]:<5.3f}" for m in metrics)
            lines.append(f"{label:<34} {cells}")
        lines.append(
            f"{self._folds_run()}; encounters from {self.protocol['encounters']}; "
            f"{self.protocol['sides']}; prior: {self.protocol['prior']}"
        )
        return "\n".join(lines)

    def _folds_run(self) -> str:
        total, run = self.protocol["folds"], self.protocol.get("folds_run", [])
        if not run or len(run) == total:
            return f"{total} identity folds"
        return f"fold {', '.join(map(str, run))} of {total} identity folds"


#: Other-individual and same-individual pairs per photo a fold's prior is fitted on (as the shipped prior).
FOLD_PRIOR_PAIRS = (24, 4)
SUMMARY_METRICS = ("top1", "top3", "top5", "novelty_auroc", "new_decision_accuracy")


def summarise(reports: Sequence[EvaluationReport]) -> dict[str, dict[str, tuple[float, float]]]:
    rows: dict[str, list[MethodReport]] = {}
    for report in reports:
        for method, m in report.methods.items():
            rows.setdefault(method, []).append(m)
        if report.search is not None:
            rows.setdefault(f"search ({report.default_method})", []).append(report.search)
        for method, m in report.encounter_methods.items():
            rows.setdefault(f"{method} per encounter", []).append(m)
        if report.encounter_search is not None:
            rows.setdefault(f"search ({report.default_method}) per encounter", []).append(report.encounter_search)
    return {
        label: {
            metric: (
                float(np.nanmean([getattr(m, metric) for m in ms])),
                float(np.nanstd([getattr(m, metric) for m in ms])),
            )
            for metric in SUMMARY_METRICS
        }
        for label, ms in rows.items()
    }


def evaluate_folds(
    rows: Sequence[ManifestRow],
    root: Path,
    engine: Engine,
    methods: Sequence[str] = METHODS,
    progress: StageProgress | None = None,
    *,
    folds: int = 4,
    encounters: str = "column",
    sides: bool = True,
    fold_prior: bool = False,
    shortlist: ShortlistConf | bool | None = None,
    exhaustive: bool = True,
    only: Sequence[int] = (),
) -> FoldsReport:
    """The protocol over every identity fold. ``fold_prior``: fit the null and calibration prior on each fold's
    gallery alone (its novel identities and queries never), so that no figure is scored by a prior that saw it.
    ``only``: run just these folds (when the whole protocol does not fit the time at hand); the report says which."""
    identities = len({r.identity for r in rows})
    if folds < 2 or identities < 2:
        raise ScuteError("The protocol needs two folds and two individuals at least: one fold new, the others known.")
    folds = min(folds, identities)
    wanted = sorted(set(only)) or list(range(folds))
    missing = [fold for fold in wanted if not 0 <= fold < folds]
    if missing:
        raise ScuteError(f"There are {folds} folds (0 to {folds - 1}); fold {missing[0]} is not one.")
    reports = []
    shipped = engine.prior
    with own_priors(engine, fold_prior):
        for done, fold in enumerate(wanted, start=1):
            split = protocol_split(rows, fold, folds, encounters)
            if fold_prior:
                engine.prior = fit_fold_prior(
                    engine, split.gallery, [manifest_photo(root, r) for r in split.gallery], methods
                )
            reports.append(
                evaluate(rows, root, engine, methods, progress, shortlist, exhaustive, split, sides, encounters)
            )
            if progress:
                progress("folds", done, len(wanted))
    protocol = {
        "folds": folds,
        "folds_run": wanted,
        "novel_identities": [r.novel_identities for r in reports],
        "encounters": {"column": "the manifest's encounter column", "name": "the file name before _"}.get(
            encounters, "each photo alone"
        ),
        "sides": "query compared with its own side and unknown" if sides else "every side",
        "prior": "fitted on each fold's gallery"
        if fold_prior
        else (dict(shipped.source, signature=shipped.signature) if shipped else "none: each gallery's sampled pairs"),
        "photos": len(rows),
        "encounters_per_fold": [r.encounters for r in reports],
        "identities": identities,
    }
    return FoldsReport(reports, summarise(reports), protocol)


@contextlib.contextmanager
def own_priors(engine: Engine, enabled: bool) -> Iterator[None]:
    """While the caller sets ``engine.prior`` per split (when ``enabled``), galleries sample no pairs of their own,
    as with a shipped prior; the engine's prior and scoring are given back afterwards whatever happens."""
    shipped, scoring = engine.prior, engine.scoring
    if enabled:
        engine.scoring = dataclasses.replace(scoring, null_negatives=0, null_positives=0)
    try:
        yield
    finally:
        engine.prior, engine.scoring = shipped, scoring


def fit_fold_prior(
    engine: Engine, rows: Sequence[ManifestRow], photos: Sequence[GalleryPhoto], methods: Sequence[str]
) -> Prior:
    """A prior from the fold's gallery alone (``rows`` and their ``photos``), fitted as the shipped one is: on the
    galleries the app searches per side (:func:`~core.evaluation.protocol.side_galleries`)."""
    scoring, (negatives, positives) = engine.scoring, FOLD_PRIOR_PAIRS
    engine.prior = None
    engine.scoring = dataclasses.replace(scoring, null_negatives=negatives, null_positives=positives)
    try:
        indexes = side_indexes(engine, rows, photos)
    finally:
        engine.scoring = scoring
    source = {
        "fold_gallery_photos": len(photos),
        "negatives_per_photo": negatives,
        "positives_per_photo": positives,
        "galleries": "one per side" if side_galleries(rows).keys() != {"all"} else "every photo",
    }
    return fit_prior(indexes, methods, engine.signature, source)
