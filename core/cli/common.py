"""Plumbing every command shares: opening the database, one transaction per command, one-line errors,
tables, progress bars and the engine options.

Errors a user can fix (:class:`~core.errors.ScuteError`, an unreachable database) print one line to
stderr and return 2, never a traceback. ``--user NAME`` names the acting account: the command line
does not ask for its password, because whoever can run it with this database URL can open the
database directly anyway; the name is role-checked and recorded in the audit log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session

from core.engine.extractors import EXTRACTORS
from core.engine.search import Engine as SearchEngine
from core.errors import ScuteError
from core.evaluation.protocol import METHODS
from core.progress import Progress
from core.review import individuals, users
from core.settings import EngineSettings, Settings
from core.store.db import init_db, session_scope
from core.store.models import Individual, User

log = logging.getLogger(__name__)

EXIT_ERROR = 2
Handler = Callable[[argparse.Namespace], int]


class CliError(ScuteError):
    """A command-line usage problem found after parsing (e.g. passwords that do not match)."""


def settings(args: argparse.Namespace) -> Settings:
    """The deployment's settings, read once by ``main`` (``--db`` wins over ``DATABASE_URL``)."""
    return args.settings


def guarded(handler: Callable[[argparse.Namespace, Session], None]) -> Handler:
    """Open the database, run ``handler`` in one transaction, turn user errors into one line and exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            engine = open_database(settings(args).database_url)
        except ScuteError as exc:
            return fail(str(exc))
        try:
            with session_scope(engine) as session:
                handler(args, session)
        except ScuteError as exc:
            return fail(str(exc))
        except OperationalError as exc:
            return fail(f"The database refused the change: {first_line(exc)}")
        finally:
            engine.dispose()
        return 0

    return run


def open_database(url: str) -> Engine:
    """A migrated engine for ``url``; a database that cannot be opened raises :class:`CliError` (one line)."""
    try:
        return init_db(url)
    except (OperationalError, ArgumentError, OSError) as exc:
        raise CliError(f"Cannot open the database: {first_line(exc)}") from None


@contextmanager
def database(url: str) -> Iterator[Engine]:
    """:func:`open_database` for one command, its connections closed when the command ends."""
    engine = open_database(url)
    try:
        yield engine
    finally:
        engine.dispose()


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fail(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


def say(line: str = "") -> None:
    print(line)


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(v) for v in header]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        say("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def acting_user(session: Session, args: argparse.Namespace) -> User:
    if not getattr(args, "user", None):
        raise CliError("Say who is acting with --user NAME.")
    return users.get_user(session, args.user)


def individual_id_of(session: Session, code: str | None) -> int | None:
    if code is None:
        return None
    return individuals.get_individual(session, code).id


def code_of(session: Session, individual_id: int | None) -> str:
    if individual_id is None:
        return ""
    individual = session.get(Individual, individual_id)
    return individual.code if individual is not None else f"#{individual_id}"


def username_of(session: Session, user_id: int | None) -> str:
    if user_id is None:
        return ""
    user = session.get(User, user_id)
    return user.username if user is not None else f"#{user_id}"


def add_database_options(parser: argparse.ArgumentParser, *, user: str | None) -> None:
    parser.add_argument("--db", metavar="URL", help="database URL (default: $DATABASE_URL or the SQLite gallery)")
    if user is not None:
        parser.add_argument("--user", metavar="NAME", required=user == "required", help="the acting account")


def add_command(
    parent: Any,
    name: str,
    handler: Callable[[argparse.Namespace, Session], None],
    help_text: str,
    *,
    user: str | None,
) -> argparse.ArgumentParser:
    parser = parent.add_parser(name, help=help_text, description=help_text)
    add_database_options(parser, user=user)
    parser.set_defaults(func=guarded(handler))
    return parser


def engine_options(parser: argparse.ArgumentParser) -> None:
    """``--extractor``, ``--max-side`` …: each overrides the deployment's setting (``SCUTE_*``) for one command."""
    group = parser.add_argument_group("engine settings (import and identify must agree)")
    group.add_argument("--extractor", choices=sorted(EXTRACTORS), default=None)
    group.add_argument("--max-side", type=int, default=None, help="working resolution, long side in pixels")
    group.add_argument("--keypoints", type=int, default=None, help="keypoint budget per photo")
    group.add_argument("--device", default=None, help="auto (CUDA when present), cpu or cuda")
    group.add_argument("--scoring", choices=METHODS, default=None)
    group.add_argument(
        "--turns",
        help="quarter-turns each query is tried in: all, none or degrees such as 0,180 "
        "(default: all on a GPU, none on a CPU, or $SCUTE_TURNS)",
    )
    group.add_argument(
        "--prior",
        help="null and calibration prior: shipped (default, or $SCUTE_PRIOR), none, or a file from `core prior`",
    )


def engine_settings(args: argparse.Namespace) -> EngineSettings:
    """The deployment's engine settings with this command's ``engine_options`` applied."""
    from core.engine.orientation import parse_turns

    return settings(args).engine.replace(
        extractor=args.extractor,
        max_side=args.max_side,
        keypoints=args.keypoints,
        device=args.device,
        scoring=args.scoring,
        turns=parse_turns(args.turns),
        prior=args.prior,
    )


def make_engine(args: argparse.Namespace, cache_dir: Path | None = None) -> SearchEngine:
    """Load the models for this command; features are cached under ``cache_dir`` (default: the data folder)."""
    return engine_settings(args).make_engine(cache_dir or settings(args).home)


def progress_bar(desc: str) -> Progress:
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


def read_photo(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ScuteError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise ScuteError(f"{path} is a folder, not a photo.") from None
    except OSError as exc:
        raise ScuteError(f"Cannot read {path}: {exc.strerror or exc}.") from None
