"""``python -m core tags``: an individual's flipper tags, PIT tags and alternate ids (add, remove, list)."""

from __future__ import annotations

import argparse
from typing import Any

from sqlmodel import Session

from core.cli.common import acting_user, add_command, print_table, say
from core.review import individuals, tags


def _add(args: argparse.Namespace, session: Session) -> None:
    entry = tags.add_tag(session, acting_user(session, args), args.individual, args.kind, args.value)
    after = entry.payload["after"]
    say(f"Added the {tags.KIND_LABELS[after['kind']]} {after['value']} to {args.individual}; audit entry {entry.id}.")


def _remove(args: argparse.Namespace, session: Session) -> None:
    entry = tags.remove_tag(session, acting_user(session, args), args.individual, args.kind, args.value)
    before = entry.payload["before"]
    what = f"the {tags.KIND_LABELS[before['kind']]} {before['value']}"
    say(f"Removed {what} from {args.individual}; audit entry {entry.id}.")


def _list(args: argparse.Namespace, session: Session) -> None:
    individual = individuals.get_individual(session, args.individual)
    rows = tags.tags_of(session, individual.id)  # type: ignore[arg-type]
    if not rows:
        say(f"{individual.code} has no tags.")
        return
    print_table([(t.kind, t.value) for t in rows], ("kind", "value"))


def register(subparsers: Any) -> None:
    """Add ``tags`` to the main parser's subcommands."""
    parser = subparsers.add_parser(
        "tags",
        help="flipper tags, PIT tags and alternate ids of individuals",
        description="Flipper tags, PIT tags and alternate ids of individuals (reviewers and admins edit them).",
    )
    commands = parser.add_subparsers(dest="tags_command", metavar="COMMAND", required=True)
    for name, handler, text in (
        ("add", _add, "give an individual a tag (refused if any individual has it)"),
        ("remove", _remove, "take a tag off an individual"),
    ):
        command = add_command(commands, name, handler, text, user="required")
        command.add_argument("individual", metavar="CODE")
        command.add_argument("kind", metavar="KIND", choices=tags.TAG_KINDS, help=", ".join(tags.TAG_KINDS))
        command.add_argument("value", metavar="VALUE", help="the tag number or id")
    listing = add_command(commands, "list", _list, "an individual's tags", user=None)
    listing.add_argument("individual", metavar="CODE")
