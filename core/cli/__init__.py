"""Command line: ``python -m core COMMAND`` (``--help`` on each); one module per group of commands.

engine (identify, evaluate) · catalogue (import, export) · accounts (users) · review (sightings, vote) ·
curate · sites, species (places) · ops (backup, restore, check) · bench. The settings are read once here
(``Settings.from_env``, ``--db`` winning over ``DATABASE_URL``) and handed to every command as ``args.settings``.

User mistakes (bad photos, missing files, empty gallery) print one clear line and exit with 2;
a traceback means a bug in Scute.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core.cli import accounts, bench, catalogue, curate, engine, ops, places, review, tags
from core.errors import ScuteError
from core.settings import Settings


def build_parser(home: Path | None = None) -> argparse.ArgumentParser:
    """``home``: the data directory the help names."""
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description=f"Scute: identify individual animals from photos. Data directory: {home or '$SCUTE_HOME'}",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)
    catalogue.register_import(sub)
    engine.register(sub)
    accounts.register(sub)
    review.register(sub)
    curate.register(sub)
    places.register(sub)
    tags.register(sub)
    catalogue.register_export(sub)
    ops.register(sub)
    bench.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = Settings.from_env()
    except ScuteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = build_parser(settings.home).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "db", None):
        settings = dataclasses.replace(settings, database_url=args.db)
    args.settings = settings
    try:
        return int(args.func(args) or 0)
    except ScuteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
