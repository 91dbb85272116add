"""Command line for users, sightings, votes, curation and export: ``python -m core users|sightings|vote|curate|export``.

``register(subparsers)`` adds the five commands to the main parser; each leaf command stores its
handler as ``func``, a callable taking the parsed namespace and returning the exit status::

    args = parser.parse_args(argv)
    return args.func(args)

Errors a user can fix (:class:`~core.errors.ScuteError`, an unreachable database) print one line to
stderr and return 2, never a traceback. ``--user NAME`` names the acting account: the command line
does not ask for its password, because whoever can run it with this database URL can open the
database directly anyway; the name is role-checked and recorded in the audit log. Passwords for new
accounts come from ``--password-stdin`` (first line of standard input) or an interactive prompt, and
never from the command line itself (it would land in shell history and ``ps``).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session

from core.config import photo_store_dir
from core.errors import ScuteError
from core.review import curation, users
from core.review import sightings as review
from core.store import audit
from core.store.db import init_db, session_scope
from core.store.models import ROLES, SIGHTING_STATUSES, AuditLog, Individual, User

log = logging.getLogger(__name__)

__all__ = ["CliError", "open_database", "register"]

EXIT_ERROR = 2
Handler = Callable[[argparse.Namespace], int]


class CliError(ScuteError):
    """A command-line usage problem found after parsing (e.g. passwords that do not match)."""


# --- plumbing --------------------------------------------------------------------------------------


def _guarded(handler: Callable[[argparse.Namespace, Session], None]) -> Handler:
    """Open the database, run ``handler`` in one transaction, turn user errors into one line and exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            engine = open_database(args.db)
        except ScuteError as exc:
            return _fail(str(exc))
        try:
            with session_scope(engine) as session:
                handler(args, session)
        except ScuteError as exc:
            return _fail(str(exc))
        except OperationalError as exc:
            return _fail(f"The database refused the change: {_first_line(exc)}")
        finally:
            engine.dispose()
        return 0

    return run


def open_database(url: str | None) -> Engine:
    """A migrated engine for ``url``; a database that cannot be opened raises :class:`CliError` (one line)."""
    try:
        return init_db(url)
    except (OperationalError, ArgumentError, OSError) as exc:
        raise CliError(f"Cannot open the database: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fail(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_ERROR


def _out(line: str = "") -> None:
    print(line)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(v) for v in header]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        _out("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def _actor(session: Session, args: argparse.Namespace) -> User:
    if not getattr(args, "user", None):
        raise CliError("Say who is acting with --user NAME.")
    return users.get_user(session, args.user)


def _individual_id(session: Session, code: str | None) -> int | None:
    if code is None:
        return None
    return review.get_individual(session, code).id


def _code(session: Session, individual_id: int | None) -> str:
    if individual_id is None:
        return ""
    individual = session.get(Individual, individual_id)
    return individual.code if individual is not None else f"#{individual_id}"


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError("--password-stdin was given but standard input is empty.")
        return line.rstrip("\r\n")
    try:
        first = getpass.getpass(f"Password for {args.name}: ")
        again = getpass.getpass("Repeat the password: ")
    except (EOFError, KeyboardInterrupt) as exc:
        raise CliError("No password was entered; nothing was changed.") from exc
    if again != first:
        raise CliError("The passwords do not match; nothing was changed.")
    return first


def _common(parser: argparse.ArgumentParser, *, user: str | None) -> None:
    parser.add_argument("--db", metavar="URL", help="database URL (default: $DATABASE_URL or the SQLite gallery)")
    if user is not None:
        parser.add_argument("--user", metavar="NAME", required=user == "required", help="the acting account")


def _leaf(
    parent: Any,
    name: str,
    handler: Callable[[argparse.Namespace, Session], None],
    help_text: str,
    *,
    user: str | None,
) -> argparse.ArgumentParser:
    parser = parent.add_parser(name, help=help_text, description=help_text)
    _common(parser, user=user)
    parser.set_defaults(func=_guarded(handler))
    return parser


# --- users -----------------------------------------------------------------------------------------


def _users_add(args: argparse.Namespace, session: Session) -> None:
    role = "admin" if args.admin else (args.role or "volunteer")
    actor = users.get_user(session, args.user) if args.user else None
    password = _read_password(args)
    user = users.create_user(session, args.name, password, role, actor=actor)
    _out(f"Added {user.role} {user.username!r}.")


def _users_list(args: argparse.Namespace, session: Session) -> None:
    rows = [
        (u.username, u.role, "active" if u.active else "disabled", u.created_at.strftime("%Y-%m-%d"))
        for u in users.list_users(session)
    ]
    _table(rows, ("user", "role", "state", "created"))


def _users_disable(args: argparse.Namespace, session: Session) -> None:
    user = users.disable_user(session, _actor(session, args), args.name)
    _out(f"Disabled {user.username!r}.")


def _users_enable(args: argparse.Namespace, session: Session) -> None:
    user = users.enable_user(session, _actor(session, args), args.name)
    _out(f"Enabled {user.username!r}.")


def _users_role(args: argparse.Namespace, session: Session) -> None:
    user = users.set_role(session, _actor(session, args), args.name, args.role)
    _out(f"{user.username!r} is now a {user.role}.")


def _users_passwd(args: argparse.Namespace, session: Session) -> None:
    actor = _actor(session, args)
    users.change_password(session, actor, args.name, _read_password(args))
    _out(f"Changed the password of {users.normalize_username(args.name)!r}.")


def _register_users(subparsers: Any) -> None:
    parser = subparsers.add_parser("users", help="manage accounts and roles", description="Manage accounts and roles.")
    commands = parser.add_subparsers(dest="users_command", metavar="COMMAND", required=True)

    add = _leaf(
        commands,
        "add",
        _users_add,
        "add an account; the very first one (an admin) needs no --user",
        user="optional",
    )
    add.add_argument("name", metavar="NAME")
    roles = add.add_mutually_exclusive_group()
    roles.add_argument("--admin", action="store_true", help="same as --role admin")
    roles.add_argument("--role", choices=ROLES, default=None, help="the new account's role (default: volunteer)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")

    _leaf(commands, "list", _users_list, "list the accounts", user=None)

    for name, handler, text in (
        ("disable", _users_disable, "disable an account (admins only); its history is kept"),
        ("enable", _users_enable, "enable a disabled account (admins only)"),
    ):
        _leaf(commands, name, handler, text, user="required").add_argument("name", metavar="NAME")

    role = _leaf(commands, "role", _users_role, "change an account's role (admins only)", user="required")
    role.add_argument("name", metavar="NAME")
    role.add_argument("role", choices=ROLES)

    passwd = _leaf(
        commands,
        "passwd",
        _users_passwd,
        "set a new password (your own, or anyone's as an admin)",
        user="required",
    )
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")


# --- sightings and votes ---------------------------------------------------------------------------


def _sightings_list(args: argparse.Namespace, session: Session) -> None:
    rows = []
    for sighting in review.list_sightings(session, args.status, limit=args.limit):
        counts = review.tally(session, sighting.id)  # type: ignore[arg-type]
        votes = sum(counts.proposals.values()) + counts.unsure
        rows.append(
            (
                sighting.id,
                sighting.status,
                sighting.created_at.strftime("%Y-%m-%d %H:%M"),
                _username(session, sighting.submitted_by),
                sighting.side,
                votes,
                (sighting.decision or "")
                + (f" {_code(session, sighting.decided_individual_id)}" if sighting.decision else ""),
            )
        )
    _table(rows, ("id", "status", "submitted", "by", "side", "votes", "decision"))


def _username(session: Session, user_id: int | None) -> str:
    if user_id is None:
        return ""
    user = session.get(User, user_id)
    return user.username if user is not None else f"#{user_id}"


def _sightings_show(args: argparse.Namespace, session: Session) -> None:
    detail = review.sighting_detail(session, args.sighting)
    s = detail.sighting
    by = _username(session, s.submitted_by)
    _out(f"Sighting {s.id}: {s.status}, photo {s.photo_id}, side {s.side}, by {by}")
    if s.taken_at is not None:
        _out(f"taken {s.taken_at:%Y-%m-%d %H:%M}")
    if s.latitude is not None and s.longitude is not None:
        _out(f"at {s.latitude:.5f}, {s.longitude:.5f}")
    if s.notes:
        _out(f"notes: {s.notes}")
    if s.new_individual_probability is not None:
        _out(f"new individual: {100 * s.new_individual_probability:.0f} %")
    _table(
        [
            (
                c.rank,
                c.code,
                _code(session, c.individual_id),
                f"{c.score:.4g}",
                _percent(c.probability),
                c.n_matches,
            )
            for c in detail.candidates
        ],
        ("rank", "code then", "code now", "score", "probability", "matches"),
    )
    _out("votes:")
    _table(
        [(_username(session, v.user_id), v.decision, _code(session, v.individual_id), v.comment) for v in detail.votes],
        ("user", "vote", "individual", "comment"),
    )
    if s.decision is not None:
        code, by = _code(session, s.decided_individual_id), _username(session, s.decided_by)
        _out(f"decided {s.decision} {code} by {by}")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f} %"


def _report(session: Session, outcome: review.VoteOutcome, what: str) -> None:
    if outcome.applied:
        code = _code(session, outcome.individual_id)
        _out(f"{what}; sighting {outcome.sighting_id} is decided: {outcome.decision} {code}.")
    else:
        _out(f"{what}; sighting {outcome.sighting_id} is {outcome.status}.")


def _vote(args: argparse.Namespace, session: Session) -> None:
    actor = _actor(session, args)
    outcome = review.cast_vote(
        session,
        actor,
        args.sighting,
        args.decision,
        _individual_id(session, args.individual),
        args.comment,
        config=review.ReviewConfig.from_env(),
    )
    _report(session, outcome, "Vote stored")


def _sightings_decide(args: argparse.Namespace, session: Session) -> None:
    actor = _actor(session, args)
    outcome = review.decide(
        session,
        actor,
        args.sighting,
        args.decision,
        _individual_id(session, args.individual),
        config=review.ReviewConfig.from_env(),
    )
    _report(session, outcome, "Decided")


def _register_sightings(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sightings", help="list and inspect sightings", description="List and inspect sightings."
    )
    commands = parser.add_subparsers(dest="sightings_command", metavar="COMMAND", required=True)
    listing = _leaf(commands, "list", _sightings_list, "list sightings, oldest first", user=None)
    listing.add_argument("--status", choices=SIGHTING_STATUSES, help="only sightings with this status")
    listing.add_argument("--limit", type=int, default=None, metavar="N", help="at most N sightings")
    show = _leaf(commands, "show", _sightings_show, "show a sighting's candidates and votes", user=None)
    show.add_argument("sighting", type=int, metavar="SIGHTING")
    decide = _leaf(
        commands,
        "decide",
        _sightings_decide,
        "decide a pending or conflicting sighting (admins only)",
        user="required",
    )
    decide.add_argument("sighting", type=int, metavar="SIGHTING")
    decide.add_argument("decision", choices=("same", "new"))
    decide.add_argument("--individual", metavar="CODE", help="the individual, for 'same'")


def _register_vote(subparsers: Any) -> None:
    text = "vote on a sighting: same (with --individual CODE), new or unsure"
    vote = _leaf(subparsers, "vote", _vote, text, user="required")
    vote.add_argument("sighting", type=int, metavar="SIGHTING")
    vote.add_argument("decision", choices=("same", "new", "unsure"))
    vote.add_argument("--individual", metavar="CODE", help="the individual, for 'same'")
    vote.add_argument("--comment", default="", help="an optional comment for the other reviewers")


# --- curation --------------------------------------------------------------------------------------


def _done(entry: AuditLog, what: str) -> None:
    undo = f" (undo with: curate undo {entry.id})" if entry.action in curation.UNDOABLE else ""
    _out(f"{what}; audit entry {entry.id}{undo}.")


def _curate_rename(args: argparse.Namespace, session: Session) -> None:
    entry = curation.rename(session, _actor(session, args), args.individual, args.name, code=args.code)
    _done(entry, f"Renamed {args.individual}")


def _curate_notes(args: argparse.Namespace, session: Session) -> None:
    entry = curation.edit_notes(session, _actor(session, args), args.individual, args.notes)
    _done(entry, f"Notes of {args.individual} replaced")


def _curate_species(args: argparse.Namespace, session: Session) -> None:
    entry = curation.set_species(session, _actor(session, args), args.individual, args.species)
    _done(entry, f"Species of {args.individual} set")


def _curate_merge(args: argparse.Namespace, session: Session) -> None:
    entry = curation.merge(session, _actor(session, args), args.source, args.target)
    n = len(entry.payload.get("photo_ids", []))
    _done(entry, f"Merged {args.source} into {entry.payload['target_code']} ({n} photos moved)")


def _curate_split(args: argparse.Namespace, session: Session) -> None:
    entry = curation.split(
        session,
        _actor(session, args),
        args.source,
        args.photos,
        into=args.into,
        name=args.name,
        config=review.ReviewConfig.from_env(),
    )
    _done(entry, f"Split {len(args.photos)} photos of {args.source} into {entry.payload['target_code']}")


def _curate_move(args: argparse.Namespace, session: Session) -> None:
    entry = curation.move_photo(session, _actor(session, args), args.photo, args.target)
    _done(entry, f"Moved photo {args.photo} to {_code(session, entry.payload['after']['individual_id'])}")


def _curate_remove(args: argparse.Namespace, session: Session) -> None:
    entry = curation.remove_photo(session, _actor(session, args), args.photo)
    _done(entry, f"Removed photo {args.photo} from the gallery (file and history kept)")


def _curate_retire(args: argparse.Namespace, session: Session) -> None:
    entry = curation.retire(session, _actor(session, args), args.individual)
    _done(entry, f"Retired {args.individual}")


def _curate_undo(args: argparse.Namespace, session: Session) -> None:
    entry = curation.undo(session, _actor(session, args), args.entry)
    _out(f"Undid audit entry {args.entry} ({entry.action.removesuffix('.undo')}); audit entry {entry.id}.")


def _curate_history(args: argparse.Namespace, session: Session) -> None:
    if (args.individual is None) == (args.by is None):
        raise CliError("Give exactly one of --individual CODE or --by NAME.")
    if args.individual is not None:
        ident = review.get_individual(session, args.individual).id
        entries = audit.entries_for_individual(session, ident, limit=args.limit, newest_first=True)  # type: ignore[arg-type]
    else:
        user = users.get_user(session, args.by)
        entries = audit.entries_for_user(session, user.id, limit=args.limit, newest_first=True)  # type: ignore[arg-type]
    _table(
        [
            (
                e.id,
                e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                _username(session, e.user_id) or "system",
                e.action,
                f"{e.target_type} {e.target_id}",
                _summary(e.payload),
            )
            for e in entries
        ],
        ("entry", "when (UTC)", "user", "action", "target", "change"),
    )


def _summary(payload: dict[str, Any]) -> str:
    before, after = payload.get("before"), payload.get("after")
    if before is None and after is None:
        return ""
    return f"{before} -> {after}"


def _register_curate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "curate", help="curate the gallery (admins only)", description="Curate the gallery (admins only)."
    )
    commands = parser.add_subparsers(dest="curate_command", metavar="COMMAND", required=True)

    rename = _leaf(
        commands, "rename", _curate_rename, "set an individual's name (and optionally code)", user="required"
    )
    rename.add_argument("individual", metavar="CODE")
    rename.add_argument("name", metavar="NAME", nargs="?", default=None, help="new name; leave out to clear it")
    rename.add_argument("--code", metavar="NEW_CODE", help="also change the code")

    notes = _leaf(commands, "notes", _curate_notes, "replace an individual's notes", user="required")
    notes.add_argument("individual", metavar="CODE")
    notes.add_argument("notes", metavar="TEXT")

    species = _leaf(commands, "species", _curate_species, "set an individual's species", user="required")
    species.add_argument("individual", metavar="CODE")
    species.add_argument("species", metavar="SPECIES", help='e.g. "Chelonia mydas"; "" clears it')

    merge = _leaf(commands, "merge", _curate_merge, "merge SOURCE into TARGET (undoable)", user="required")
    merge.add_argument("source", metavar="SOURCE")
    merge.add_argument("target", metavar="TARGET")

    split = _leaf(
        commands,
        "split",
        _curate_split,
        "move photos of SOURCE to a new or another individual (undoable)",
        user="required",
    )
    split.add_argument("source", metavar="SOURCE")
    split.add_argument("photos", metavar="PHOTO_ID", type=int, nargs="+")
    split.add_argument("--into", metavar="CODE", help="an existing individual (default: a new one with the next code)")
    split.add_argument("--name", help="name of the new individual")

    move = _leaf(commands, "move", _curate_move, "move one photo to another individual (undoable)", user="required")
    move.add_argument("photo", metavar="PHOTO_ID", type=int)
    move.add_argument("target", metavar="CODE")

    remove = _leaf(
        commands,
        "remove",
        _curate_remove,
        "take a photo out of the gallery; file and history are kept",
        user="required",
    )
    remove.add_argument("photo", metavar="PHOTO_ID", type=int)

    retire = _leaf(commands, "retire", _curate_retire, "retire an individual (no longer searched)", user="required")
    retire.add_argument("individual", metavar="CODE")

    undo = _leaf(commands, "undo", _curate_undo, "undo a curation action by its audit entry", user="required")
    undo.add_argument("entry", metavar="ENTRY_ID", type=int)

    history = _leaf(commands, "history", _curate_history, "show the audit log of an individual or a user", user=None)
    history.add_argument("--individual", metavar="CODE", help="everything that concerned this individual")
    history.add_argument("--by", metavar="NAME", help="everything this user did")
    history.add_argument("--limit", metavar="N", type=int, default=50, help="newest N entries (default 50)")


# --- export ----------------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    """Reads in one transaction of its own (see :func:`core.catalogue.exchange.export_catalogue`).

    Hence not ``_guarded``.
    """
    from core.catalogue.exchange import export_catalogue
    from core.store.photos import PhotoStore

    try:
        engine = open_database(args.db)
    except ScuteError as exc:
        return _fail(str(exc))
    try:
        report = export_catalogue(
            engine,
            PhotoStore(photo_store_dir()),
            Path(args.out),
            photos=args.photos,
            per_individual=args.per_individual,
        )
    except ScuteError as exc:
        return _fail(str(exc))
    except OperationalError as exc:
        return _fail(f"The database could not be read: {_first_line(exc)}")
    finally:
        engine.dispose()
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    _out(report.summary())
    for path in report.files:
        _out(f"  {path.name}" if path.parent == report.out_dir else f"  {path.relative_to(report.out_dir)}")
    return 0


def _register_export(subparsers: Any) -> None:
    text = (
        "export individuals, photos, encounters and the review history as CSV files "
        "(and with --photos a catalogue.zip that import --zip reads back)"
    )
    parser = subparsers.add_parser("export", help=text, description=text)
    _common(parser, user=None)
    parser.add_argument("--out", metavar="DIR", required=True, help="folder to write into (created if missing)")
    parser.add_argument(
        "--photos", action="store_true", help="also write catalogue.zip: a folder of photos per individual"
    )
    parser.add_argument(
        "--per-individual", action="store_true", help="also write individuals/<code>.zip, one ZIP per individual"
    )
    parser.set_defaults(func=_export)


def register(subparsers: Any) -> None:
    """Add ``users``, ``sightings``, ``vote``, ``curate`` and ``export`` to the main parser's subcommands."""
    _register_users(subparsers)
    _register_sightings(subparsers)
    _register_vote(subparsers)
    _register_curate(subparsers)
    _register_export(subparsers)
