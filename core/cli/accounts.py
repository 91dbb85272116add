"""``python -m core users``: accounts and roles.

Passwords for new accounts come from ``--password-stdin`` (first line of standard input) or an
interactive prompt, and never from the command line itself (it would land in shell history and ``ps``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from sqlmodel import Session

from core.cli.common import CliError, acting_user, add_command, print_table, say
from core.review import throttle, users
from core.store.models import ROLES


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


def _users_add(args: argparse.Namespace, session: Session) -> None:
    role = "admin" if args.admin else (args.role or "volunteer")
    actor = users.get_user(session, args.user) if args.user else None
    password = _read_password(args)
    user = users.create_user(session, args.name, password, role, actor=actor)
    say(f"Added {user.role} {user.username!r}.")


def _users_list(args: argparse.Namespace, session: Session) -> None:
    rows = [
        (u.username, u.role, "active" if u.active else "disabled", u.created_at.strftime("%Y-%m-%d"))
        for u in users.list_users(session)
    ]
    print_table(rows, ("user", "role", "state", "created"))


def _users_disable(args: argparse.Namespace, session: Session) -> None:
    user = users.disable_user(session, acting_user(session, args), args.name)
    say(f"Disabled {user.username!r}.")


def _users_enable(args: argparse.Namespace, session: Session) -> None:
    user = users.enable_user(session, acting_user(session, args), args.name)
    say(f"Enabled {user.username!r}.")


def _users_role(args: argparse.Namespace, session: Session) -> None:
    user = users.set_role(session, acting_user(session, args), args.name, args.role)
    say(f"{user.username!r} is now a {user.role}.")


def _users_passwd(args: argparse.Namespace, session: Session) -> None:
    actor = acting_user(session, args)
    users.change_password(session, actor, args.name, _read_password(args))
    say(f"Changed the password of {users.normalize_username(args.name)!r}.")


def _users_unlock(args: argparse.Namespace, session: Session) -> None:
    cleared = throttle.clear_account(session, acting_user(session, args), args.name)
    name = users.normalize_username(args.name)
    say(f"{name!r} may sign in again at once." if cleared else f"{name!r} had no failed sign-ins to forget.")


def register(subparsers: Any) -> None:
    """Add ``users`` to the main parser's subcommands."""
    parser = subparsers.add_parser("users", help="manage accounts and roles", description="Manage accounts and roles.")
    commands = parser.add_subparsers(dest="users_command", metavar="COMMAND", required=True)

    add = add_command(
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

    add_command(commands, "list", _users_list, "list the accounts", user=None)

    for name, handler, text in (
        ("disable", _users_disable, "disable an account (admins only); its history is kept"),
        ("enable", _users_enable, "enable a disabled account (admins only)"),
        ("unlock", _users_unlock, "forget an account's failed sign-ins, so it may sign in at once (admins only)"),
    ):
        add_command(commands, name, handler, text, user="required").add_argument("name", metavar="NAME")

    role = add_command(commands, "role", _users_role, "change an account's role (admins only)", user="required")
    role.add_argument("name", metavar="NAME")
    role.add_argument("role", choices=ROLES)

    passwd = add_command(
        commands,
        "passwd",
        _users_passwd,
        "set a new password (your own, or anyone's as an admin)",
        user="required",
    )
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
