"""``python -m core curate``: admins rename, merge, split, move, remove, retire and undo; the audit history."""

from __future__ import annotations

import argparse
from typing import Any

from sqlmodel import Session

from core.cli.common import CliError, acting_user, add_command, code_of, print_table, say, settings, username_of
from core.review import curation, individuals, users
from core.store import audit
from core.store.models import AuditLog


def _done(entry: AuditLog, what: str) -> None:
    undo = f" (undo with: curate undo {entry.id})" if entry.action in curation.UNDOABLE else ""
    say(f"{what}; audit entry {entry.id}{undo}.")


def _curate_rename(args: argparse.Namespace, session: Session) -> None:
    entry = curation.rename(session, acting_user(session, args), args.individual, args.name, code=args.code)
    _done(entry, f"Renamed {args.individual}")


def _curate_notes(args: argparse.Namespace, session: Session) -> None:
    entry = curation.edit_notes(session, acting_user(session, args), args.individual, args.notes)
    _done(entry, f"Notes of {args.individual} replaced")


def _curate_species(args: argparse.Namespace, session: Session) -> None:
    entry = curation.set_species(session, acting_user(session, args), args.individual, args.species)
    _done(entry, f"Species of {args.individual} set")


def _curate_merge(args: argparse.Namespace, session: Session) -> None:
    entry = curation.merge(session, acting_user(session, args), args.source, args.target)
    n = len(entry.payload.get("photo_ids", []))
    _done(entry, f"Merged {args.source} into {entry.payload['target_code']} ({n} photos moved)")


def _curate_split(args: argparse.Namespace, session: Session) -> None:
    entry = curation.split(
        session,
        acting_user(session, args),
        args.source,
        args.photos,
        into=args.into,
        name=args.name,
        config=settings(args).review,
    )
    _done(entry, f"Split {len(args.photos)} photos of {args.source} into {entry.payload['target_code']}")


def _curate_move(args: argparse.Namespace, session: Session) -> None:
    entry = curation.move_photo(session, acting_user(session, args), args.photo, args.target)
    _done(entry, f"Moved photo {args.photo} to {code_of(session, entry.payload['after']['individual_id'])}")


def _curate_remove(args: argparse.Namespace, session: Session) -> None:
    entry = curation.remove_photo(session, acting_user(session, args), args.photo)
    _done(entry, f"Removed photo {args.photo} from the gallery (file and history kept)")


def _curate_retire(args: argparse.Namespace, session: Session) -> None:
    entry = curation.retire(session, acting_user(session, args), args.individual)
    _done(entry, f"Retired {args.individual}")


def _curate_undo(args: argparse.Namespace, session: Session) -> None:
    entry = curation.undo(session, acting_user(session, args), args.entry)
    say(f"Undid audit entry {args.entry} ({entry.action.removesuffix('.undo')}); audit entry {entry.id}.")


def _curate_history(args: argparse.Namespace, session: Session) -> None:
    if (args.individual is None) == (args.by is None):
        raise CliError("Give exactly one of --individual CODE or --by NAME.")
    if args.individual is not None:
        ident = individuals.get_individual(session, args.individual).id
        entries = audit.entries_for_individual(session, ident, limit=args.limit, newest_first=True)  # type: ignore[arg-type]
    else:
        user = users.get_user(session, args.by)
        entries = audit.entries_for_user(session, user.id, limit=args.limit, newest_first=True)  # type: ignore[arg-type]
    print_table(
        [
            (
                e.id,
                e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                username_of(session, e.user_id) or "system",
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


def register(subparsers: Any) -> None:
    """Add ``curate`` to the main parser's subcommands."""
    parser = subparsers.add_parser(
        "curate", help="curate the gallery (admins only)", description="Curate the gallery (admins only)."
    )
    commands = parser.add_subparsers(dest="curate_command", metavar="COMMAND", required=True)

    rename = add_command(
        commands, "rename", _curate_rename, "set an individual's name (and optionally code)", user="required"
    )
    rename.add_argument("individual", metavar="CODE")
    rename.add_argument("name", metavar="NAME", nargs="?", default=None, help="new name; leave out to clear it")
    rename.add_argument("--code", metavar="NEW_CODE", help="also change the code")

    notes = add_command(commands, "notes", _curate_notes, "replace an individual's notes", user="required")
    notes.add_argument("individual", metavar="CODE")
    notes.add_argument("notes", metavar="TEXT")

    species = add_command(commands, "species", _curate_species, "set an individual's species", user="required")
    species.add_argument("individual", metavar="CODE")
    species.add_argument("species", metavar="SPECIES", help='e.g. "Chelonia mydas"; "" clears it')

    merge = add_command(commands, "merge", _curate_merge, "merge SOURCE into TARGET (undoable)", user="required")
    merge.add_argument("source", metavar="SOURCE")
    merge.add_argument("target", metavar="TARGET")

    split = add_command(
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

    move = add_command(
        commands, "move", _curate_move, "move one photo to another individual (undoable)", user="required"
    )
    move.add_argument("photo", metavar="PHOTO_ID", type=int)
    move.add_argument("target", metavar="CODE")

    remove = add_command(
        commands,
        "remove",
        _curate_remove,
        "take a photo out of the gallery; file and history are kept",
        user="required",
    )
    remove.add_argument("photo", metavar="PHOTO_ID", type=int)

    retire = add_command(
        commands, "retire", _curate_retire, "retire an individual (no longer searched)", user="required"
    )
    retire.add_argument("individual", metavar="CODE")

    undo = add_command(commands, "undo", _curate_undo, "undo a curation action by its audit entry", user="required")
    undo.add_argument("entry", metavar="ENTRY_ID", type=int)

    history = add_command(
        commands, "history", _curate_history, "show the audit log of an individual or a user", user=None
    )
    history.add_argument("--individual", metavar="CODE", help="everything that concerned this individual")
    history.add_argument("--by", metavar="NAME", help="everything this user did")
    history.add_argument("--limit", metavar="N", type=int, default=50, help="newest N entries (default 50)")
