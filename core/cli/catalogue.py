"""``python -m core import | export``: catalogues in (CSV manifest with photos, or a ZIP) and out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as SqlEngine
from sqlalchemy.exc import OperationalError

from core.catalogue.locations import Locations
from core.cli.common import (
    add_database_options,
    database,
    engine_options,
    fail,
    first_line,
    make_engine,
    open_database,
    progress_bar,
    say,
    settings,
)
from core.errors import ScuteError
from core.store.db import session_scope
from core.store.photos import PhotoStore


def cmd_import(args: argparse.Namespace) -> int:
    from core.catalogue.importer import import_rows
    from core.catalogue.manifest import read_manifest

    if args.zip:
        return _import_zip(args)
    manifest = Path(args.manifest)
    root = Path(args.root) if args.root else manifest.parent
    rows = read_manifest(manifest)
    engine = make_engine(args)
    with database(settings(args).database_url) as db:
        report = import_rows(db, PhotoStore(settings(args).photo_dir), engine, rows, root, progress_bar("importing"))
    for problem in report.problems:
        print(f"line {problem.line}: {problem.path}: {problem.reason}", file=sys.stderr)
    print(report.summary())
    return 0


def _import_zip(args: argparse.Namespace) -> int:
    """A catalogue ZIP (see core.catalogue.zip_import); the archive is checked before the models are loaded."""
    from core.catalogue.archive import open_archive
    from core.catalogue.zip_import import import_archive

    if args.root:
        raise ScuteError("--root only applies to --manifest; a ZIP's paths are relative to its manifest.csv.")
    with open_archive(Path(args.zip)) as archive, database(settings(args).database_url) as db:
        store = PhotoStore(settings(args).photo_dir)
        report = import_archive(db, store, make_engine(args), archive, progress=progress_bar("importing"))
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(report.summary())
    return 0


def _export(args: argparse.Namespace) -> int:
    """Reads in one transaction of its own (see :func:`core.catalogue.exporter.export_catalogue`).

    Hence not ``_guarded``.
    """
    from core.catalogue.analysis import parse_occasions
    from core.catalogue.exporter import export_catalogue

    try:
        occasions = parse_occasions(args.occasions) if args.occasions else []
        engine = open_database(settings(args).database_url)
    except ScuteError as exc:
        return fail(str(exc))
    try:
        locations, only = _export_scope(args, engine)
        report = export_catalogue(
            engine,
            PhotoStore(settings(args).photo_dir),
            Path(args.out),
            photos=args.photos,
            per_individual=args.per_individual,
            occasions=occasions,
            locations=locations,
            individuals=only,
            scope=" in ".join(part for part in (args.species, args.region) if part),
        )
    except ScuteError as exc:
        return fail(str(exc))
    except OperationalError as exc:
        return fail(f"The database could not be read: {first_line(exc)}")
    finally:
        engine.dispose()
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    say(report.summary())
    for path in report.files:
        say(f"  {path.name}" if path.parent == report.out_dir else f"  {path.relative_to(report.out_dir)}")
    if report.histories is not None:
        h = report.histories
        say(
            f"Encounter histories: {_count(len(h.histories), 'individual')} over "
            f"{_count(len(h.occasions), 'occasion')}; left out: {_count(h.undated, 'encounter')} without a date "
            f"and {h.outside} outside every occasion."
        )
    return 0


def _export_scope(args: argparse.Namespace, engine: SqlEngine) -> tuple[Locations, set[int] | None]:
    """Positions exact, or rounded when the export is for a volunteer (``--user``) or asked so (``--rounded``);
    and the individuals of ``--species`` seen in ``--region`` (None: all)."""
    from core.catalogue.locations import EXACT, for_role
    from core.review.sites import individuals_in
    from core.review.users import get_user

    step = settings(args).volunteer_position_degrees
    with session_scope(engine) as session:
        role = get_user(session, args.user).role if args.user else "admin"
        only = individuals_in(session, args.species or None, args.region or None)
    locations = Locations(step) if args.rounded else for_role(role, step)
    return (locations if not locations.exact else EXACT), only


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def register_export(subparsers: Any) -> None:
    """Add ``export`` to the main parser's subcommands."""
    text = (
        "export individuals, photos, encounters and the review history as CSV files "
        "(and with --photos a catalogue.zip that import --zip reads back)"
    )
    parser = subparsers.add_parser("export", help=text, description=text)
    add_database_options(parser, user=None)
    parser.add_argument("--out", metavar="DIR", required=True, help="folder to write into (created if missing)")
    parser.add_argument(
        "--photos", action="store_true", help="also write catalogue.zip: a folder of photos per individual"
    )
    parser.add_argument(
        "--per-individual", action="store_true", help="also write individuals/<code>.zip, one ZIP per individual"
    )
    parser.add_argument(
        "--occasions",
        metavar="RANGES",
        help="sampling occasions for capture–recapture histories (encounter_histories.csv and MARK's .inp), "
        "e.g. '2024-06-01..2024-06-30,2024-07-01..2024-07-31'",
    )
    parser.add_argument(
        "--user", metavar="NAME", help="the account the export is for: a volunteer's gets rounded positions"
    )
    parser.add_argument(
        "--rounded",
        action="store_true",
        help="round positions as volunteers see them (SCUTE_VOLUNTEER_POSITION_DEGREES)",
    )
    parser.add_argument("--species", default="", help="only individuals of this species (analysis tables)")
    parser.add_argument("--region", default="", help="only individuals seen at a site of this region (analysis tables)")
    parser.set_defaults(func=_export)


def register_import(sub: Any) -> None:
    """Add ``import`` to the main parser's subcommands."""
    p = sub.add_parser("import", help="import a catalogue: a CSV manifest (path,identity[,side]) with photos, or a ZIP")
    p.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in $SCUTE_HOME)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV with columns path,identity[,side][,date] (ISO dates, e.g. 2024-06-01)")
    source.add_argument("--zip", help="ZIP with manifest.csv and the photos (e.g. catalogue.zip from export)")
    p.add_argument("--root", help="folder the manifest paths are relative to (default: the manifest's folder)")
    engine_options(p)
    p.set_defaults(func=cmd_import)
