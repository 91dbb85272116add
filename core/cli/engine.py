"""``python -m core identify | evaluate``: rank the gallery for one photo; run the evaluation protocol."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from core.cli.common import (
    database,
    engine_options,
    engine_settings,
    make_engine,
    progress_bar,
    read_photo,
    settings,
)
from core.evaluation.protocol import ENCOUNTER_SOURCES, METHODS
from core.indexing.gallery import gallery_photos
from core.progress import Progress
from core.store.db import session_scope
from core.store.models import SIDES
from core.store.photos import PhotoStore


def cmd_identify(args: argparse.Namespace) -> int:
    from core.engine.images import load_image
    from core.io import sha256_hex

    data = read_photo(Path(args.photo))
    image = load_image(data)
    sha = sha256_hex(data)
    engine = make_engine(args)
    query = engine.query_views(image.pixels, sha)
    with database(settings(args).database_url) as db, session_scope(db) as session:
        photos = gallery_photos(session, PhotoStore(settings(args).photo_dir), args.side)
    index = engine.build_index(photos, None if args.json else progress_bar("preparing gallery"))
    # A photo already in the gallery would match itself perfectly: compare it with the others.
    result = engine.identify(query, index, top_k=args.top, exclude={sha})
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"{'rank':>4}  {'identity':<16} {'probability':>11} {'score':>7} {'matches':>7}  best photo")
    for rank, c in enumerate(result.candidates, 1):
        label = c.identity + (f" ({c.name})" if c.name else "")
        print(f"{rank:>4}  {label:<16} {c.probability:>10.1%} {c.score:>7.2f} {c.matches:>7}  {c.photo.path.name}")
    print(f"new individual: {result.new_individual_probability:.1%}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.catalogue.manifest import read_manifest
    from core.evaluation.folds import evaluate_folds
    from core.evaluation.protocol import subset_identities

    scoring = engine_settings(args).scoring
    methods = [scoring] + [m for m in METHODS if m != scoring]
    if args.root and len(args.manifest) > 1:
        print("--root applies to one manifest; give each catalogue its own folder instead.")
        return 2
    reports: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="scute-eval-") as tmp:
        engine = make_engine(args, Path(args.cache_dir) if args.cache_dir else Path(tmp))
        for name in args.manifest:
            manifest = Path(name)
            root = Path(args.root) if args.root else manifest.parent
            rows = read_manifest(manifest)
            if args.identities:
                rows = subset_identities(rows, args.identities)
            bars: dict[str, Progress] = {}

            def progress(stage: str, done: int, total: int, bars: dict[str, Progress] = bars) -> None:
                bars.setdefault(stage, progress_bar(stage))(done, total)

            report = evaluate_folds(
                rows,
                root,
                engine,
                methods,
                progress,
                folds=args.folds,
                encounters=args.encounters,
                sides=not args.every_side,
                fold_prior=args.fold_prior,
                exhaustive=not args.search_only,
                only=args.only_fold or (),
            )
            print(f"\n{root.name} ({manifest})")
            print(report.table())
            reports[root.name] = report.to_dict()
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2, default=str))
        print(f"full report written to {args.json}")
    return 0


def cmd_prior(args: argparse.Namespace) -> int:
    """Fit the null and calibration prior on labelled catalogues: one index per catalogue (no cross-species pairs)
    and side, the galleries the app searches (:func:`core.evaluation.protocol.side_galleries`)."""
    import dataclasses

    from core.catalogue.manifest import read_manifest
    from core.engine.index import fit_prior
    from core.evaluation.protocol import manifest_photo, protocol_split, side_galleries, side_indexes

    with tempfile.TemporaryDirectory(prefix="scute-prior-") as tmp:
        engine = (
            engine_settings(args)
            .replace(prior="none")
            .make_engine(Path(args.cache_dir) if args.cache_dir else Path(tmp))
        )
        engine.scoring = dataclasses.replace(
            engine.scoring, null_negatives=args.negatives, null_positives=args.positives
        )
        indexes, source = [], {"catalogues": [], "split": args.split}
        for manifest in args.manifest:
            path = Path(manifest)
            rows = read_manifest(path)
            if args.split == "gallery":
                rows = protocol_split(rows).gallery
            photos = [manifest_photo(path.parent, r) for r in rows]
            bars = {side: progress_bar(f"{path.parent.name} ({side})") for side in side_galleries(rows)}
            indexes += side_indexes(engine, rows, photos, lambda side, done, total, bars=bars: bars[side](done, total))
            source["catalogues"].append(
                {
                    "name": path.parent.name,
                    "photos": len(photos),
                    "identities": len({r.identity for r in rows}),
                    "galleries": sorted(bars),
                }
            )
        source.update(negatives_per_photo=args.negatives, positives_per_photo=args.positives)
        prior = fit_prior(indexes, METHODS, engine.signature, source)
    prior.save(Path(args.out))
    for method, p in prior.methods.items():
        null = f"null {p.null_mean:.3f} ± {p.null_std:.3f}"
        print(f"{method:<12} {null}; calibrator slope {p.slope:.3f} offset {p.offset:.3f}")
    print(f"prior for {prior.signature} written to {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add ``identify`` and ``evaluate`` to the main parser's subcommands."""
    p = sub.add_parser("identify", help="rank the gallery's individuals for one photo")
    p.add_argument("photo", help="the photo to identify")
    p.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in $SCUTE_HOME)")
    p.add_argument("--side", choices=SIDES, help="side of the head shown; compares with that side and unknown")
    p.add_argument("--top", type=int, default=5, help="how many candidates to show")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    engine_options(p)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("evaluate", help="run the evaluation protocol on labelled catalogues")
    p.add_argument(
        "--manifest",
        required=True,
        action="append",
        help="CSV with columns path,identity[,side][,encounter] (repeat for several catalogues: one report each)",
    )
    p.add_argument("--folds", type=int, default=4, help="identity folds: each identity is novel in one of them")
    p.add_argument(
        "--only-fold", type=int, action="append", metavar="K", help="run only fold K (repeat for several; from 0)"
    )
    p.add_argument(
        "--encounters",
        choices=ENCOUNTER_SOURCES,
        default="column",
        help="what keeps near-duplicates together: the manifest's encounter column (default), the file name "
        "before _ (e.g. 14_left.jpg), or each photo alone",
    )
    p.add_argument("--every-side", action="store_true", help="compare queries with every side, not their own")
    p.add_argument(
        "--fold-prior", action="store_true", help="fit the prior on each fold's gallery instead of the shipped one"
    )
    p.add_argument("--search-only", action="store_true", help="skip exhaustive matching: the app's search only")
    p.add_argument("--root", help="folder the manifest paths are relative to (default: the manifest's folder)")
    p.add_argument("--json", help="write the full report (settings, machine, every query) to this file")
    p.add_argument("--identities", type=int, help="use only the N identities with the fewest photos")
    p.add_argument("--cache-dir", help="reuse features from this folder (default: a fresh temporary one)")
    engine_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("prior", help="fit the null and calibration prior on labelled catalogues")
    p.add_argument("--manifest", required=True, action="append", help="CSV with path,identity (repeat per catalogue)")
    p.add_argument("--out", required=True, help="the prior file to write (JSON)")
    p.add_argument(
        "--split", choices=("all", "gallery"), default="all", help="gallery: only the evaluation protocol's gallery"
    )
    p.add_argument("--negatives", type=int, default=24, help="other-individual pairs sampled per photo")
    p.add_argument("--positives", type=int, default=4, help="same-individual pairs sampled per photo")
    p.add_argument("--cache-dir", help="reuse features and pairs from this folder")
    engine_options(p)
    p.set_defaults(func=cmd_prior)
