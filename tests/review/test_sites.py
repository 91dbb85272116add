"""core.review.sites: admins keep sites and species; every bad input is refused with a clear message and changes
nothing; ``site_of`` and ``individuals_in`` by value; the ``sites`` / ``species`` command line."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fixtures.photos import image_bytes
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from core import cli
from core.review.rules import ReviewConfig
from core.review.sightings import submit_sighting
from core.review.sites import (
    PlaceError,
    add_site,
    add_species,
    distance_km,
    edit_site,
    edit_species,
    individuals_in,
    remove_site,
    remove_species,
    site_of,
)
from core.review.users import PermissionDenied, create_user
from core.service.history import audit_rows
from core.store.db import session_scope
from core.store.fieldwork import Encounter, Site, Species
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import AuditLog, Individual, Photo, Sighting, User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"


@dataclass
class World:
    admin: int
    vol: int
    rev: int
    beach: int  # "Ras Baridi", Red Sea, 24.27 N 37.62 E, 5 km
    reef: int  # "Farasan", Red Sea, 16.70 N 42.10 E, 20 km
    cove: int  # "Diani", Kenya, -4.30 N 39.58 E, 10 km


def _admin(session: Session, world: World) -> User:
    return session.get(User, world.admin)  # type: ignore[return-value]


@pytest.fixture
def world(engine: Engine) -> World:
    with session_scope(engine) as session:
        admin = create_user(session, "admin", PASSWORD, "admin", actor=None)
        vol = create_user(session, "vol", PASSWORD, "volunteer", actor=admin)
        rev = create_user(session, "rev", PASSWORD, "reviewer", actor=admin)
        beach = add_site(session, admin, "Ras Baridi", region="Red Sea", latitude=24.27, longitude=37.62, radius_km=5)
        reef = add_site(session, admin, "Farasan", region="Red Sea", latitude=16.70, longitude=42.10, radius_km=20)
        cove = add_site(session, admin, "Diani", region="Kenya", latitude=-4.30, longitude=39.58, radius_km=10)
        add_species(session, admin, "Green turtle", "Chelonia mydas")
        return World(admin.id, vol.id, rev.id, beach.id, reef.id, cove.id)  # type: ignore[arg-type]


def _state(engine: Engine) -> tuple:
    """Everything a site or species change may touch, to show that a refused one touched nothing."""
    with session_scope(engine) as session:
        return (
            [(s.id, s.name, s.region, s.latitude, s.longitude, s.radius_km) for s in session.exec(select(Site)).all()],
            [(s.id, s.name, s.scientific_name) for s in session.exec(select(Species)).all()],
            [(i.id, i.species) for i in session.exec(select(Individual)).all()],
            [(e.id, e.species, e.site_id) for e in session.exec(select(Encounter)).all()],
            len(session.exec(select(AuditLog)).all()),
        )


def _refused(engine: Engine, world: World, action, message: str, error: type[Exception] = PlaceError) -> None:
    before = _state(engine)
    with pytest.raises(error, match=message), session_scope(engine) as session:
        action(session, _admin(session, world))
    assert _state(engine) == before


# --- who may -------------------------------------------------------------------------------------------


ACTIONS = {
    "add site": lambda s, u, w: add_site(s, u, "New beach"),
    "edit site": lambda s, u, w: edit_site(s, u, w.beach, name="Renamed"),
    "remove site": lambda s, u, w: remove_site(s, u, w.cove),
    "add species": lambda s, u, w: add_species(s, u, "Hawksbill"),
    "edit species": lambda s, u, w: edit_species(s, u, "Green turtle", scientific_name="x"),
    "remove species": lambda s, u, w: remove_species(s, u, "Green turtle"),
}


def test_only_admins_change_sites_and_species(engine: Engine, world: World) -> None:
    before = _state(engine)
    for who in ("vol", "rev"):
        for what, action in ACTIONS.items():
            with pytest.raises(PermissionDenied, match="only a admin may"), session_scope(engine) as session:
                action(session, session.get(User, getattr(world, who)), world)
            assert _state(engine) == before, (who, what)


# --- sites ---------------------------------------------------------------------------------------------


def test_add_site_stores_it_and_audits_it_in_words(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        site = add_site(
            session, _admin(session, world), "  Watamu ", region="Kenya", latitude="-3.35", longitude=40.02, radius_km=8
        )
        site_id = site.id
    with session_scope(engine) as session:
        site = session.get(Site, site_id)
        assert (site.name, site.region, site.latitude, site.longitude, site.radius_km) == (
            "Watamu",
            "Kenya",
            -3.35,
            40.02,
            8,
        )
        entry = session.exec(select(AuditLog).order_by(col(AuditLog.id).desc())).first()
        assert (entry.action, entry.target_type, entry.target_id, entry.user_id) == (
            "site.create",
            "site",
            site_id,
            world.admin,
        )
        summary = audit_rows(session, limit=1)[0].summary
    assert summary == "Added the site “Watamu” (Kenya, -3.35, 40.02, 8 km)."


BAD_NEW_SITES = [
    ({"name": ""}, "site name is empty"),
    ({"name": "   "}, "site name is empty"),
    ({"name": "ras baridi"}, "already a site named “Ras Baridi”"),
    ({"name": "Bad\x00name"}, "control characters"),
    ({"name": "x" * 121}, "too long: at most 120"),
    ({"latitude": 90.5, "longitude": 10}, "latitude must be between -90 and 90 degrees, not 90.5"),
    ({"latitude": -91, "longitude": 10}, "latitude must be between -90 and 90"),
    ({"latitude": 10, "longitude": 180.01}, "longitude must be between -180 and 180 degrees, not 180.01"),
    ({"latitude": 10, "longitude": -181}, "longitude must be between -180 and 180"),
    ({"latitude": 10}, "both the latitude and the longitude"),
    ({"longitude": 10}, "both the latitude and the longitude"),
    ({"latitude": float("nan"), "longitude": 10}, "latitude must be a finite number"),
    ({"latitude": "north", "longitude": 10}, "latitude must be a number, not 'north'"),
    ({"latitude": True, "longitude": 10}, "latitude must be a number"),
    ({"radius_km": 0}, "radius must be more than 0"),
    ({"radius_km": -2}, "radius must be more than 0 and at most 20000 km, not -2"),
    ({"radius_km": 20001}, "radius must be more than 0"),
    ({"radius_km": float("inf")}, "radius must be a finite number"),
    ({"region": "Red\nSea"}, "region contains control characters"),
]


def test_add_site_refuses_bad_input_and_changes_nothing(engine: Engine, world: World) -> None:
    for fields, message in BAD_NEW_SITES:
        values = {"name": "New beach", **fields}
        name = values.pop("name")
        _refused(engine, world, lambda s, u, name=name, values=values: add_site(s, u, name, **values), message)


def test_edit_site_renames_and_moves_it(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        edit_site(session, _admin(session, world), "ras baridi", name="Ras Baridi North", radius_km=7.5)
    with session_scope(engine) as session:
        site = session.get(Site, world.beach)
        assert (site.name, site.region, site.latitude, site.longitude, site.radius_km) == (
            "Ras Baridi North",
            "Red Sea",
            24.27,
            37.62,
            7.5,
        )
        assert audit_rows(session, limit=1)[0].summary == (
            "Changed the site “Ras Baridi” (Red Sea, 24.27, 37.62, 5 km) to "
            "“Ras Baridi North” (Red Sea, 24.27, 37.62, 7.5 km)."
        )


BAD_SITE_EDITS = [
    ("beach", {"name": "Farasan"}, "already a site named “Farasan”"),
    ("beach", {"name": ""}, "site name is empty"),
    ("beach", {"latitude": 100}, "latitude must be between -90 and 90"),
    ("beach", {"latitude": None}, "both the latitude and the longitude"),
    ("beach", {"radius_km": 0}, "radius must be more than 0"),
    ("beach", {"name": "Ras Baridi"}, "already reads like that; nothing to change"),
    (999, {"name": "Nowhere"}, "no site with id 999"),
    ("Atlantis", {"name": "Nowhere"}, "no site named “Atlantis”"),
]


def test_edit_site_refuses_bad_input_and_changes_nothing(engine: Engine, world: World) -> None:
    for ref, fields, message in BAD_SITE_EDITS:
        site = world.beach if ref == "beach" else ref
        _refused(engine, world, lambda s, u, site=site, fields=fields: edit_site(s, u, site, **fields), message)


def _photo_at(session: Session, store: PhotoStore, seed: int, individual: Individual, **where) -> Photo:
    photo, _ = add_photo(
        session, store, image_bytes(seed), suffix=".png", individual=individual, width=32, height=24, **where
    )
    return photo


def test_a_site_in_use_cannot_be_removed_and_the_message_says_by_what(
    engine: Engine, world: World, store: PhotoStore
) -> None:
    with session_scope(engine) as session:
        individual, _ = get_or_create_individual(session, "T-0001")
        photo = _photo_at(session, store, 1, individual)
        photo.site_id = world.beach
        session.add(Encounter(submitted_by=world.vol, site_id=world.reef))
        session.add(Encounter(submitted_by=world.vol, site_id=world.reef))
        session.add(Encounter(submitted_by=world.vol, site_id=world.beach))
    _refused(
        engine,
        world,
        lambda s, u: remove_site(s, u, world.beach),
        "“Ras Baridi” cannot be removed: 1 encounter and 1 photo refer to it",
    )
    _refused(
        engine, world, lambda s, u: remove_site(s, u, "Farasan"), "“Farasan” cannot be removed: 2 encounters refer"
    )
    with session_scope(engine) as session:
        remove_site(session, _admin(session, world), "Diani")
    with session_scope(engine) as session:
        assert session.get(Site, world.cove) is None
        assert audit_rows(session, limit=1)[0].summary == "Removed the site “Diani” (Kenya, -4.3, 39.58, 10 km)."


# --- species -------------------------------------------------------------------------------------------


BAD_NEW_SPECIES = [
    ("", "", "species name is empty"),
    ("GREEN TURTLE", "", "already a species named “Green turtle”"),
    ("Hawksbill", "Eretmochelys\x07imbricata", "scientific name contains control characters"),
    ("Hawksbill", "x" * 201, "too long: at most 200"),
]


def test_add_species_refuses_bad_input_and_changes_nothing(engine: Engine, world: World) -> None:
    for name, scientific, message in BAD_NEW_SPECIES:
        _refused(engine, world, lambda s, u, n=name, sc=scientific: add_species(s, u, n, sc), message)


def test_species_in_use_cannot_be_removed_and_a_rename_carries_its_individuals(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        individual, _ = get_or_create_individual(session, "T-0001")
        individual.species = "Green turtle"
        session.add(Encounter(submitted_by=world.vol, species="Green turtle"))
        add_species(session, _admin(session, world), "Hawksbill", "Eretmochelys imbricata")
    _refused(
        engine,
        world,
        lambda s, u: remove_species(s, u, "green turtle"),
        "“Green turtle” cannot be removed: 1 individual and 1 encounter are recorded as it",
    )
    _refused(
        engine, world, lambda s, u: edit_species(s, u, "Green turtle", name="hawksbill"), "already a species named"
    )
    _refused(engine, world, lambda s, u: edit_species(s, u, "Loggerhead", name="x"), "no species named “Loggerhead”")
    with session_scope(engine) as session:
        edit_species(session, _admin(session, world), "Green turtle", name="Green sea turtle")
    with session_scope(engine) as session:
        assert [i.species for i in session.exec(select(Individual)).all()] == ["Green sea turtle"]
        assert [e.species for e in session.exec(select(Encounter)).all()] == ["Green sea turtle"]
        assert audit_rows(session, limit=1)[0].summary == (
            "Changed the species “Green turtle” (Chelonia mydas) to “Green sea turtle” (Chelonia mydas); "
            "1 individual renamed with it."
        )
        remove_species(session, _admin(session, world), "Hawksbill")
    with session_scope(engine) as session:
        assert [s.name for s in session.exec(select(Species)).all()] == ["Green sea turtle"]


# --- where things are ------------------------------------------------------------------------------------


def test_distance_and_site_of_pick_the_nearest_site_whose_radius_holds_the_point(engine: Engine, world: World) -> None:
    assert distance_km(0, 0, 0, 1) == pytest.approx(111.19, abs=0.01)
    with session_scope(engine) as session:
        # A big site overlapping Ras Baridi: the point 1 km from Ras Baridi's centre belongs to the nearer centre.
        add_site(
            session,
            _admin(session, world),
            "Yanbu coast",
            region="Red Sea",
            latitude=24.40,
            longitude=37.70,
            radius_km=50,
        )
        assert site_of(session, 24.279, 37.62).name == "Ras Baridi"
        assert site_of(session, 24.45, 37.72).name == "Yanbu coast"
        assert site_of(session, 24.27 + 0.05, 37.62).name == "Yanbu coast"  # 5.6 km from Ras Baridi: outside its 5 km
        assert site_of(session, -4.30, 39.58 + 0.089).name == "Diani"  # 9.9 km east of Diani's centre
        assert site_of(session, -4.30, 39.58 + 0.092) is None  # 10.2 km: outside
        assert site_of(session, None, 39.58) is None


def test_individuals_in_filters_by_species_and_by_region_through_sites_encounters_and_coordinates(
    engine: Engine, world: World, store: PhotoStore
) -> None:
    with session_scope(engine) as session:
        admin, vol = _admin(session, world), session.get(User, world.vol)
        ids = {}
        for code, species in [
            ("T-1", "Green turtle"),
            ("T-2", "Hawksbill"),
            ("T-3", "green turtle"),
            ("T-4", ""),
            ("T-5", "Green turtle"),
        ]:
            individual, _ = get_or_create_individual(session, code)
            individual.species = species
            ids[code] = individual
        _photo_at(session, store, 1, ids["T-1"]).site_id = world.beach  # Red Sea by the photo's site
        _photo_at(session, store, 2, ids["T-2"], latitude=16.75, longitude=42.05)  # inside Farasan by coordinates
        _photo_at(session, store, 3, ids["T-3"], latitude=-4.30, longitude=39.60)  # Kenya by coordinates
        _photo_at(session, store, 4, ids["T-4"])  # nowhere known
        submission = submit_sighting(  # T-5: a sighting whose encounter was at Farasan
            session,
            store,
            vol,
            image_bytes(5),
            candidates=[],
            new_individual_probability=None,
            proposal="same",
            proposed_individual_id=ids["T-5"].id,
            config=ReviewConfig(required_votes=1),
        )
        assert submission.outcome is not None and submission.outcome.applied
        session.get(Encounter, session.get(Sighting, submission.sighting.id).encounter_id).site_id = world.reef
        session.flush()
        number = {code: individual.id for code, individual in ids.items()}
        del admin

        def codes(found: set[int] | None) -> set[str] | None:
            return None if found is None else {c for c, i in number.items() if i in found}

        assert individuals_in(session) is None
        assert individuals_in(session, species="  ", region="") is None
        assert codes(individuals_in(session, species="Green turtle")) == {"T-1", "T-3", "T-5"}
        assert codes(individuals_in(session, species="Loggerhead")) == set()
        assert codes(individuals_in(session, region="red sea")) == {"T-1", "T-2", "T-5"}
        assert codes(individuals_in(session, region="Kenya")) == {"T-3"}
        assert codes(individuals_in(session, species="Green turtle", region="Red Sea")) == {"T-1", "T-5"}
        assert codes(individuals_in(session, region="Atlantis")) == set()
        # A search keeps those it cannot rule out: T-4 has no species and no known place.
        assert codes(individuals_in(session, species="Green turtle", keep_unknown=True)) == {"T-1", "T-3", "T-4", "T-5"}
        assert codes(individuals_in(session, region="Kenya", keep_unknown=True)) == {"T-3", "T-4"}
        assert codes(individuals_in(session, species="Hawksbill", region="Red Sea", keep_unknown=True)) == {
            "T-2",
            "T-4",
        }


# --- command line --------------------------------------------------------------------------------------


def test_cli_sites_and_species(db_url: str, engine: Engine, world: World, capsys) -> None:
    base = ["--db", db_url, "--user", "admin"]
    assert (
        cli.main(
            ["sites", "add", "Watamu", "--region", "Kenya", "--lat", "-3.35", "--lon", "40.02", "--radius", "8", *base]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("Added the site “Watamu” (id ")
    assert cli.main(["sites", "list", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "region", "latitude", "longitude", "radius", "km"]
    assert [line.split()[1] for line in lines[1:]] == ["Diani", "Watamu", "Farasan", "Ras"]
    assert lines[2].split()[2:] == ["Kenya", "-3.35", "40.02", "8"]

    before = _state(engine)
    assert cli.main(["sites", "add", "Far", "--lat", "95", "--lon", "0", "--radius", "1", *base]) == 2
    err = capsys.readouterr().err
    assert err == "error: The latitude must be between -90 and 90 degrees, not 95.\n"
    assert cli.main(["sites", "add", "Watamu", *base[:2], "--user", "vol"]) == 2
    assert "only a admin may add sites" in capsys.readouterr().err
    assert cli.main(["sites", "add", "WATAMU", *base]) == 2
    assert "already a site named “Watamu”" in capsys.readouterr().err
    assert _state(engine) == before

    assert cli.main(["sites", "edit", "Watamu", "--rename", "Watamu Bay", "--radius", "9", *base]) == 0
    assert cli.main(["sites", "remove", "Watamu Bay", *base]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Removed the site “Watamu Bay”."

    assert cli.main(["species", "add", "Hawksbill", "--scientific-name", "Eretmochelys imbricata", *base]) == 0
    assert cli.main(["species", "list", "--db", db_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out[2:]] == ["Green", "Hawksbill"]
    assert cli.main(["species", "remove", "Loggerhead", *base]) == 2
    assert "no species named “Loggerhead”" in capsys.readouterr().err
    assert cli.main(["species", "remove", "hawksbill", *base]) == 0
    with session_scope(engine) as session:
        assert [s.name for s in session.exec(select(Species)).all()] == ["Green turtle"]
