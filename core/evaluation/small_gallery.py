"""A new project's first gallery (a few individuals, a few photos each): is the first answer right and sure
enough to act on, and does an unseen individual read as new? The prior must carry these galleries."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.catalogue.manifest import ManifestRow
from core.engine.search import Engine
from core.engine.shortlist import ShortlistConf
from core.evaluation.folds import fit_fold_prior, own_priors
from core.evaluation.protocol import METHODS, Split, encounter_of, evaluate, manifest_photo
from core.progress import StageProgress


@dataclass
class SmallGalleryReport:
    """A new project's first gallery: how often the answer is right *and* sure enough to act on."""

    draws: int
    known_queries: int
    novel_queries: int
    known_right_and_sure: float  # share of known queries ranked first with probability >= 0.5
    novel_said_new: float  # share of unseen individuals' queries with "new" >= 0.5
    known_top1: float
    outcomes: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def small_gallery_split(
    rows: Sequence[ManifestRow], draw: int, individuals: int = 4, photos: int = 4, encounters: str = "column"
) -> Split:
    """Draw ``draw`` of a new project's gallery: ``individuals`` individuals with ``photos`` photos each (one
    per encounter where there are enough), their other photos as queries, and as many unseen individuals'
    photos as novel queries. Identities rotate through the SHA-1 order, so every draw is reproducible."""
    order = sorted({r.identity for r in rows}, key=lambda s: hashlib.sha1(f"{draw}:{s}".encode()).hexdigest())
    by_identity = {i: sorted((r for r in rows if r.identity == i), key=lambda r: r.path) for i in order}
    eligible = [i for i in order if len({encounter_of(r, encounters) for r in by_identity[i]}) > 1]
    chosen, unseen = eligible[:individuals], [i for i in order if i not in eligible[:individuals]][:individuals]
    gallery: list[ManifestRow] = []
    queries: list[ManifestRow] = []
    for ident in chosen:
        groups: dict[str, list[ManifestRow]] = {}
        for r in by_identity[ident]:
            groups.setdefault(encounter_of(r, encounters), []).append(r)
        firsts = [g[0] for g in groups.values()][:photos]  # one photo per encounter first
        held = [r for g in groups.values() for r in g if r not in firsts]
        picked = (firsts + held)[:photos]
        used = {encounter_of(r, encounters) for r in picked}
        gallery += picked
        queries += [r for r in by_identity[ident] if encounter_of(r, encounters) not in used]
    for ident in unseen:
        queries += by_identity[ident][:photos]
    return Split(gallery, queries, unseen, draw, 0)


def evaluate_small_galleries(
    rows: Sequence[ManifestRow],
    root: Path,
    engine: Engine,
    draws: int = 10,
    individuals: int = 4,
    photos: int = 4,
    encounters: str = "column",
    fold_prior: bool = False,
    progress: StageProgress | None = None,
    shortlist: ShortlistConf | bool | None = None,
) -> SmallGalleryReport:
    """Several small galleries, each searched as the app does (own side, the engine's default search).
    ``fold_prior``: a prior fitted on the identities the draw does not use, so none of its photos shaped it."""
    outcomes: list[dict[str, Any]] = []
    with own_priors(engine, fold_prior):
        for draw in range(draws):
            split = small_gallery_split(rows, draw, individuals, photos, encounters)
            if fold_prior:
                used = {r.identity for r in split.gallery} | set(split.novel)
                rest = [r for r in rows if r.identity not in used]
                engine.prior = fit_fold_prior(engine, rest, [manifest_photo(root, r) for r in rest], METHODS)
            report = evaluate(
                rows, root, engine, (engine.scoring.method,), shortlist=shortlist, exhaustive=False, split=split
            )
            for q in report.queries_detail:
                outcomes.append(
                    {
                        "draw": draw,
                        "path": q.path,
                        "novel": q.novel,
                        "first": q.ranking[0] == q.identity if q.ranking else False,
                        "best_probability": q.best_probability,
                        "new_probability": q.new_individual_probability,
                    }
                )
            if progress:
                progress("draws", draw + 1, draws)
    known = [o for o in outcomes if not o["novel"]]
    novel = [o for o in outcomes if o["novel"]]
    return SmallGalleryReport(
        draws,
        len(known),
        len(novel),
        float(np.mean([o["first"] and o["best_probability"] >= 0.5 for o in known])) if known else float("nan"),
        float(np.mean([o["new_probability"] >= 0.5 for o in novel])) if novel else float("nan"),
        float(np.mean([o["first"] for o in known])) if known else float("nan"),
        outcomes,
    )
