"""``python -m core sites …`` and ``species …``: admins keep the list of sites (named places with a radius, grouped
into regions) and species that encounters, searches, the gallery and exports filter by."""

from __future__ import annotations

import argparse
from typing import Any

from sqlmodel import Session

from core.cli.common import acting_user, add_command, print_table, say
from core.review import sites


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _sites_add(args: argparse.Namespace, session: Session) -> None:
    site = sites.add_site(
        session,
        acting_user(session, args),
        args.name,
        region=args.region,
        latitude=args.latitude,
        longitude=args.longitude,
        radius_km=args.radius,
    )
    say(f"Added the site “{site.name}” (id {site.id}).")


def _sites_edit(args: argparse.Namespace, session: Session) -> None:
    changes = {
        key: value
        for key, value in (
            ("name", args.rename),
            ("region", args.region),
            ("latitude", args.latitude),
            ("longitude", args.longitude),
            ("radius_km", args.radius),
        )
        if value is not None
    }
    site = sites.edit_site(session, acting_user(session, args), _ref(args.site), **changes)
    say(f"Changed the site “{site.name}” (id {site.id}).")


def _sites_remove(args: argparse.Namespace, session: Session) -> None:
    name = sites.get_site(session, _ref(args.site)).name
    sites.remove_site(session, acting_user(session, args), _ref(args.site))
    say(f"Removed the site “{name}”.")


def _sites_list(args: argparse.Namespace, session: Session) -> None:
    print_table(
        [
            (s.id, s.name, s.region, _number(s.latitude), _number(s.longitude), _number(s.radius_km))
            for s in sites.list_sites(session)
        ],
        ("id", "name", "region", "latitude", "longitude", "radius km"),
    )


def _species_add(args: argparse.Namespace, session: Session) -> None:
    species = sites.add_species(session, acting_user(session, args), args.name, args.scientific_name)
    say(f"Added the species “{species.name}” (id {species.id}).")


def _species_edit(args: argparse.Namespace, session: Session) -> None:
    changes = {
        key: value
        for key, value in (("name", args.rename), ("scientific_name", args.scientific_name))
        if value is not None
    }
    species = sites.edit_species(session, acting_user(session, args), _ref(args.species), **changes)
    say(f"Changed the species “{species.name}” (id {species.id}).")


def _species_remove(args: argparse.Namespace, session: Session) -> None:
    name = sites.get_species(session, _ref(args.species)).name
    sites.remove_species(session, acting_user(session, args), _ref(args.species))
    say(f"Removed the species “{name}”.")


def _species_list(args: argparse.Namespace, session: Session) -> None:
    print_table(
        [(s.id, s.name, s.scientific_name) for s in sites.list_species(session)], ("id", "name", "scientific name")
    )


def _ref(text: str) -> int | str:
    """A site or species given by id (digits) or by name."""
    return int(text) if text.strip().isdigit() else text


_ABOUT = (
    "Admins keep the list of sites (named places with a centre and a radius, grouped into regions) and of species; "
    "Identify searches within the encounter's species and region, and the gallery and exports filter by them."
)


def register(subparsers: Any) -> None:
    """Add ``sites`` and ``species`` to the main parser's subcommands."""
    parser = subparsers.add_parser("sites", help="list and manage sites (admins)", description=_ABOUT)
    commands = parser.add_subparsers(dest="sites_command", metavar="COMMAND", required=True)
    add = add_command(commands, "add", _sites_add, "add a site", user="required")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--region", default="", help="the region it belongs to (searches and filters use it)")
    add.add_argument("--latitude", "--lat", type=float, help="centre, decimal degrees")
    add.add_argument("--longitude", "--lon", type=float, help="centre, decimal degrees")
    add.add_argument("--radius", type=float, metavar="KM", help="coordinates this close to the centre belong to it")
    edit = add_command(
        commands, "edit", _sites_edit, "rename a site or change its region, centre or radius", user="required"
    )
    edit.add_argument("site", metavar="NAME_OR_ID")
    edit.add_argument("--rename", metavar="NEW_NAME")
    edit.add_argument("--region")
    edit.add_argument("--latitude", "--lat", type=float)
    edit.add_argument("--longitude", "--lon", type=float)
    edit.add_argument("--radius", type=float, metavar="KM")
    remove = add_command(commands, "remove", _sites_remove, "remove a site nothing refers to", user="required")
    remove.add_argument("site", metavar="NAME_OR_ID")
    add_command(commands, "list", _sites_list, "list the sites", user=None)

    parser = subparsers.add_parser("species", help="list and manage the species list (admins)", description=_ABOUT)
    commands = parser.add_subparsers(dest="species_command", metavar="COMMAND", required=True)
    add = add_command(commands, "add", _species_add, "add a species", user="required")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--scientific-name", default="", help='e.g. "Chelonia mydas"')
    edit = add_command(
        commands,
        "edit",
        _species_edit,
        "rename a species (its individuals follow) or set its scientific name",
        user="required",
    )
    edit.add_argument("species", metavar="NAME_OR_ID")
    edit.add_argument("--rename", metavar="NEW_NAME")
    edit.add_argument("--scientific-name")
    remove = add_command(commands, "remove", _species_remove, "remove a species nobody is recorded as", user="required")
    remove.add_argument("species", metavar="NAME_OR_ID")
    add_command(commands, "list", _species_list, "list the species", user=None)
