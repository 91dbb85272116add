"""Command line: ``python -m core import | identify | evaluate | bench …`` (``--help`` on each).

User mistakes (bad photos, missing files, empty gallery) print one clear line and exit with 2;
a traceback means a bug in Scute.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from core.cli.ops import register as register_ops_commands
from core.cli.review import register as register_review_commands
from core.config import database_url, photo_store_dir, scute_home
from core.engine.features import DEFAULT_EXTRACTOR, EXTRACTORS
from core.engine.scoring import ScoringConf
from core.errors import ScuteError
from core.evaluation.bench import register as register_bench_command
from core.evaluation.protocol import METHODS
from core.store.models import SIDES

log = logging.getLogger("scute")


def _engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine settings (import and identify must agree)")
    group.add_argument("--extractor", choices=sorted(EXTRACTORS), default=DEFAULT_EXTRACTOR)
    group.add_argument("--max-side", type=int, default=None, help="working resolution, long side in pixels")
    group.add_argument("--keypoints", type=int, default=None, help="keypoint budget per photo")
    group.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    group.add_argument("--scoring", choices=METHODS, default=ScoringConf.method)
    group.add_argument(
        "--turns",
        help="quarter-turns each query is tried in: all, none or degrees such as 0,180 "
        "(default: all on a GPU, none on a CPU, or $SCUTE_TURNS)",
    )


def _make_engine(args: argparse.Namespace, cache_dir: Path | None = None):
    from core.engine.search import Engine

    conf = {}
    if args.max_side:
        conf["max_side"] = args.max_side
    if args.keypoints:
        conf["max_keypoints"] = args.keypoints
    return Engine(
        args.extractor,
        conf or None,
        scoring=ScoringConf(method=args.scoring),
        device=args.device,
        cache_dir=cache_dir,
        turns=args.turns,
    )


def _progress_bar(desc: str) -> Callable[[int, int], None]:
    """A tqdm bar on stderr, opened at the first step of real work (an empty job prints nothing)."""
    from tqdm import tqdm

    bars: list[tqdm] = []

    def update(done: int, total: int) -> None:
        if not bars:
            if done >= total:
                return
            bars.append(tqdm(desc=desc, total=total, unit="step", leave=False))
        bar = bars[0]
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_import(args: argparse.Namespace) -> int:
    from core.catalogue.importer import import_rows
    from core.cli.review import open_database
    from core.evaluation.protocol import read_manifest
    from core.store.photos import PhotoStore

    if args.zip:
        return _import_zip(args)
    manifest = Path(args.manifest)
    root = Path(args.root) if args.root else manifest.parent
    rows = read_manifest(manifest)
    db = open_database(database_url(args.db))
    engine = _make_engine(args)
    report = import_rows(db, PhotoStore(photo_store_dir()), engine, rows, root, _progress_bar("importing"))
    for problem in report.problems:
        print(f"line {problem.line}: {problem.path}: {problem.reason}", file=sys.stderr)
    print(report.summary())
    return 0


def _import_zip(args: argparse.Namespace) -> int:
    """A catalogue ZIP (see core.exchange); the archive is checked before the models are loaded."""
    from core.catalogue.exchange import import_archive, open_archive
    from core.cli.review import open_database
    from core.store.photos import PhotoStore

    if args.root:
        raise ScuteError("--root only applies to --manifest; a ZIP's paths are relative to its manifest.csv.")
    with open_archive(Path(args.zip)) as archive:
        db = open_database(database_url(args.db))
        store = PhotoStore(photo_store_dir())
        report = import_archive(db, store, _make_engine(args), archive, progress=_progress_bar("importing"))
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(report.summary())
    return 0


def _gallery_photos(db_url: str, side: str | None):
    from core.cli.review import open_database
    from core.engine.search import GalleryPhoto
    from core.store.db import session_scope
    from core.store.gallery import gallery_entries
    from core.store.photos import PhotoStore

    with session_scope(open_database(db_url)) as session:
        entries = gallery_entries(session, PhotoStore(photo_store_dir()), side)
    return [
        GalleryPhoto(e.sha256, e.individual_code, e.path, e.crop, e.rotation, e.photo_id, e.individual_name)
        for e in entries
    ]


def cmd_identify(args: argparse.Namespace) -> int:
    from core.engine.images import load_image
    from core.store.photos import sha256_hex

    data = _read_photo(Path(args.photo))
    image = load_image(data)
    sha = sha256_hex(data)
    engine = _make_engine(args)
    query = engine.query_views(image.pixels, sha)
    photos = _gallery_photos(database_url(args.db), args.side)
    index = engine.build_index(photos, None if args.json else _progress_bar("preparing gallery"))
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


def _read_photo(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ScuteError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise ScuteError(f"{path} is a folder, not a photo.") from None
    except OSError as exc:
        raise ScuteError(f"Cannot read {path}: {exc.strerror or exc}.") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.evaluation.protocol import evaluate, read_manifest, subset_identities

    manifest = Path(args.manifest)
    root = Path(args.root) if args.root else manifest.parent
    rows = read_manifest(manifest)
    if args.identities:
        rows = subset_identities(rows, args.identities)
    methods = [args.scoring] + [m for m in METHODS if m != args.scoring]
    with tempfile.TemporaryDirectory(prefix="scute-eval-") as tmp:
        engine = _make_engine(args, Path(args.cache_dir) if args.cache_dir else Path(tmp))
        bars: dict[str, Callable[[int, int], None]] = {}

        def progress(stage: str, done: int, total: int) -> None:
            bars.setdefault(stage, _progress_bar(stage))(done, total)

        report = evaluate(rows, root, engine, methods, progress)
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2, default=str))
        print(f"full report written to {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description=f"Scute: identify individual animals from photos. Data directory: {scute_home()}",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import a catalogue: a CSV manifest (path,identity[,side]) with photos, or a ZIP")
    p.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in $SCUTE_HOME)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV with columns path,identity[,side]")
    source.add_argument("--zip", help="ZIP with manifest.csv and the photos (e.g. catalogue.zip from export)")
    p.add_argument("--root", help="folder the manifest paths are relative to (default: the manifest's folder)")
    _engine_options(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("identify", help="rank the gallery's individuals for one photo")
    p.add_argument("photo", help="the photo to identify")
    p.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in $SCUTE_HOME)")
    p.add_argument("--side", choices=SIDES, help="side of the head shown; compares with that side and unknown")
    p.add_argument("--top", type=int, default=5, help="how many candidates to show")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _engine_options(p)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("evaluate", help="run the evaluation protocol on a labelled catalogue")
    p.add_argument("--manifest", required=True, help="CSV with columns path,identity")
    p.add_argument("--root", help="folder the manifest paths are relative to (default: the manifest's folder)")
    p.add_argument("--json", help="write the full report (settings, machine, every query) to this file")
    p.add_argument("--identities", type=int, help="use only the N identities with the fewest photos")
    p.add_argument("--cache-dir", help="reuse features from this folder (default: a fresh temporary one)")
    _engine_options(p)
    p.set_defaults(func=cmd_evaluate)

    register_review_commands(sub)
    register_ops_commands(sub)
    register_bench_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except ScuteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
