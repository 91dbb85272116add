"""Operations commands: ``python -m core backup | restore | check`` (``--help`` on each).

Problems a user can fix raise :class:`~core.errors.ScuteError`, which ``core.cli.main`` prints as one
line (exit 2); ``check`` exits with 1 when it finds problems.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.cli.common import settings
from core.settings import Settings

__all__ = ["register"]


def _deployment(args: argparse.Namespace) -> Settings:
    """The settings, on ``--home`` when given (with its own SQLite file unless ``--db`` or ``DATABASE_URL``)."""
    return settings(args).with_home(Path(args.home)) if args.home else settings(args)


def cmd_backup(args: argparse.Namespace) -> int:
    from core.store.backup import backup

    deployment = _deployment(args)
    manifest = backup(
        deployment.database_url,
        Path(args.out),
        home=deployment.home,
        method=args.method,
        include_features=not args.no_features,
    )
    rows = sum(n for table, n in manifest.tables.items() if table != "alembic_version")
    print(
        f"Backup written to {Path(args.out).resolve()}: {manifest.method}, {rows} rows, {manifest.photos} photos, "
        f"{manifest.features} feature files."
    )
    if manifest.missing_photos:
        print(f"warning: {len(manifest.missing_photos)} photos of the database were missing from the photo store")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from core.store.restore import restore

    deployment = _deployment(args)
    manifest = restore(Path(args.source), deployment.database_url, home=deployment.home, force=args.force)
    print(f"Restored the backup of {manifest.created_at} ({manifest.method}, {manifest.photos} photos).")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from core.store.db import init_db, session_scope
    from core.store.integrity import (
        check_database,
        check_files,
        leftover_temporary_files,
        missing_gallery,
        remove_leftover_temporary_files,
    )
    from core.store.photos import PhotoStore

    deployment = _deployment(args)
    missing = missing_gallery(deployment.database_url)
    if missing:  # never create a schema here: an empty gallery after a failed restore is not "consistent"
        report = {"problems": [missing], "leftover_temporary_files": []}
        print(json.dumps(report, indent=2) if args.json else f"problem: {missing}\n1 problem found")
        return 1
    engine = init_db(deployment.database_url)
    try:
        with session_scope(engine) as session:
            problems = check_database(session)
            store = PhotoStore(deployment.photo_dir)
            problems += check_files(session, store, deployment.feature_dir, verify_hashes=not args.quick)
            problems += _searchability(session, deployment)
    finally:
        engine.dispose()
    leftovers = [p for root in (deployment.photo_dir, deployment.feature_dir) for p in leftover_temporary_files(root)]
    if args.remove_leftovers:
        removed = sum(remove_leftover_temporary_files(root) for root in (deployment.photo_dir, deployment.feature_dir))
        print(f"removed {removed} leftover temporary files older than an hour")
    if args.json:
        report: dict[str, Any] = {"problems": problems, "leftover_temporary_files": [str(p) for p in leftovers]}
        print(json.dumps(report, indent=2))
    else:
        for problem in problems:
            print(f"problem: {problem}")
        if leftovers:
            print(f"{len(leftovers)} leftover temporary files from interrupted writes (harmless)")
        print("gallery is consistent" if not problems else f"{len(problems)} problems found")
    return 1 if problems else 0


def _searchability(session: Any, deployment: Settings) -> list[str]:
    """Gallery photos that searches with the deployment's engine settings would leave out (core.indexing);
    notes that are no problem go to standard error."""
    from core.indexing.searchable import extractor_version, gallery_feature_problems

    engine = deployment.engine
    version = extractor_version(engine.extractor, engine.extractor_conf(), engine.device)
    found = gallery_feature_problems(session, version)
    for note in found.notes:
        print(f"note: {note}", file=sys.stderr)
    return found.problems


def register(subparsers: Any) -> None:
    """Add ``backup``, ``restore`` and ``check`` to ``python -m core``."""
    from core.store.backup import METHODS

    home_help = "data directory with photos/ and features/ (default: $SCUTE_HOME, else ./data)"
    p = subparsers.add_parser(
        "backup",
        help="consistent online copy of the database, photo store and feature cache",
        description="Copy the database (one consistent snapshot, safe while the app runs), then the photos "
        "and features, into DIR. The backup is written beside DIR and put in place whole, so an interrupted "
        "backup leaves the previous one in DIR. Running it again into the same DIR copies only new photos.",
    )
    p.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in $SCUTE_HOME)")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="backup folder (created when missing; it may hold only a backup)"
    )
    p.add_argument("--home", help=home_help)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="auto: SQLite backup API, or pg_dump when on PATH, else export",
    )
    p.add_argument("--no-features", action="store_true", help="skip the feature cache (recomputed when needed)")
    p.set_defaults(func=cmd_backup)

    p = subparsers.add_parser(
        "restore",
        help="bring back a backup made with `backup`",
        description="Restore the database, photos and features of a backup folder. Refuses a database that "
        "already holds data unless --force (which replaces everything in it, in one step, once the restored "
        "copy has been verified; an interrupted or refused restore changes nothing).",
    )
    p.add_argument("--db", help="SQLAlchemy URL to restore into (default: SQLite file in $SCUTE_HOME)")
    p.add_argument("--from", dest="source", required=True, metavar="DIR", help="the backup folder")
    p.add_argument("--home", help=home_help)
    p.add_argument("--force", action="store_true", help="replace a database that already holds data")
    p.set_defaults(func=cmd_restore)

    p = subparsers.add_parser(
        "check",
        help="check the gallery's consistency (database rules, photo files, feature files)",
        description="Exit status 0 when consistent, 1 when problems were found.",
    )
    p.add_argument("--db", help="SQLAlchemy URL (default: SQLite file in $SCUTE_HOME)")
    p.add_argument("--home", help=home_help)
    p.add_argument("--quick", action="store_true", help="check that photo files exist without re-hashing them")
    p.add_argument("--remove-leftovers", action="store_true", help="delete temporary files older than an hour")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=cmd_check)
