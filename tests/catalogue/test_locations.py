"""core.catalogue.locations and the exports' positions (issue 16, location privacy): a volunteer's export holds
positions rounded to the deployment's setting and says so, an admin's holds them exact and says so; Darwin Core
names the site as ``locality``/``locationID``; an export can keep to a species and region. Values, not columns."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from fixtures.photos import image_bytes
from sqlalchemy.engine import Engine
from sqlmodel import select

from core import cli
from core.catalogue.exporter import ExportError, export_catalogue
from core.catalogue.locations import EXACT, Locations, for_role, rounded
from core.review.sites import add_site
from core.review.users import create_user
from core.service.app import App
from core.service.browse import shown_position
from core.service.catalogue import export_tables_zip
from core.settings import Settings
from core.store.db import session_scope
from core.store.gallery import add_photo, get_or_create_individual
from core.store.models import User
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

PASSWORD = "correct horse battery"
NEST = (24.27134, 37.62891)  # on Ras Baridi's beach
REEF = (-4.31372, 39.57018)  # near Diani, no site given: found by nothing but its coordinates


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def home(tmp_path: Path, engine: Engine, db_url: str) -> Path:
    """A gallery: T-0001 (green turtle) photographed on Ras Baridi's beach, T-0002 (hawksbill) near Diani."""
    store = PhotoStore(tmp_path / "home" / "photos")
    with session_scope(engine) as session:
        admin = create_user(session, "admin", PASSWORD, "admin", actor=None)
        create_user(session, "vol", PASSWORD, "volunteer", actor=admin)
        create_user(session, "rev", PASSWORD, "reviewer", actor=admin)
        site = add_site(session, admin, "Ras Baridi", region="Red Sea", latitude=24.27, longitude=37.62, radius_km=5)
        green, _ = get_or_create_individual(session, "T-0001")
        green.species = "Green turtle"
        hawksbill, _ = get_or_create_individual(session, "T-0002")
        hawksbill.species = "Hawksbill"
        nest, _ = add_photo(
            session,
            store,
            image_bytes(1),
            suffix=".png",
            individual=green,
            width=32,
            height=24,
            latitude=NEST[0],
            longitude=NEST[1],
        )
        nest.site_id = site.id
        add_photo(
            session,
            store,
            image_bytes(2),
            suffix=".png",
            individual=hawksbill,
            width=32,
            height=24,
            latitude=REEF[0],
            longitude=REEF[1],
        )
    return tmp_path / "home"


def test_rounding_and_the_darwin_core_words_for_it() -> None:
    assert rounded(*NEST, 0.1) == (24.3, 37.6)
    assert rounded(*REEF, 0.5) == (-4.5, 39.5)
    assert for_role("admin") is EXACT and for_role("reviewer", 0.5) is EXACT
    assert for_role("volunteer", 0.5) == Locations(0.5) and for_role("") == Locations(0.1)
    assert Locations(0.1).place(*NEST) == (24.3, 37.6) and EXACT.place(*NEST) == NEST
    assert Locations(0.1).place(None, 37.6) == (None, None)
    assert Locations(0.1).darwin_core(True) == {
        "coordinateUncertaintyInMeters": 7872,
        "coordinatePrecision": 0.1,
        "informationWithheld": "exact coordinates withheld; rounded to 0.1 degrees",
    }
    assert set(EXACT.darwin_core(True).values()) == {""}
    with pytest.raises(ValueError, match="more than 0 and at most 10"):
        Locations(0)
    # The Gallery's map follows the setting too.
    assert shown_position("volunteer", *NEST, 0.5) == (24.5, 37.5)
    assert shown_position("admin", *NEST, 0.5) == NEST


def test_a_volunteers_export_is_rounded_and_an_admins_exact_and_each_says_which(
    home: Path, db_url: str, engine: Engine
) -> None:
    app = App(Settings(home=home, database_url=db_url, volunteer_position_degrees=0.1))
    try:
        with app.session() as session:
            users = {u.username: u for u in session.exec(select(User)).all()}
        exported = {}
        for name in ("admin", "rev", "vol"):
            data, _ = export_tables_zip(app, viewer=users[name])
            exported[name] = zipfile.ZipFile(io.BytesIO(data))
        anonymous, _ = export_tables_zip(app)
    finally:
        app.db.dispose()

    for name, expected in (("admin", [NEST, REEF]), ("rev", [NEST, REEF]), ("vol", [(24.3, 37.6), (-4.3, 39.6)])):
        bundle = exported[name]
        encounters = _rows(bundle.read("encounters.csv").decode())
        assert [(float(e["latitude"]), float(e["longitude"])) for e in encounters] == expected, name
        photos = _rows(bundle.read("photos.csv").decode())
        assert sorted((float(p["latitude"]), float(p["longitude"])) for p in photos) == sorted(expected), name
        occurrences = _rows(bundle.read("occurrences_dwc.csv").decode())
        assert [(float(o["decimalLatitude"]), float(o["decimalLongitude"])) for o in occurrences] == expected
        assert [(o["locality"], o["locationID"][:11]) for o in occurrences] == [("Ras Baridi", "scute:site:"), ("", "")]
        readme = bundle.read("README.txt").decode()
        if name == "vol":
            assert "Coordinates: rounded to 0.1 degrees (about 11 km)" in readme
            assert [o["coordinatePrecision"] for o in occurrences] == ["0.1", "0.1"]
            assert [o["coordinateUncertaintyInMeters"] for o in occurrences] == ["7872", "7872"]
            assert occurrences[0]["informationWithheld"] == "exact coordinates withheld; rounded to 0.1 degrees"
            # The site's centre in the audit log is rounded too.
            audit = bundle.read("audit.csv").decode()
            created = next(json.loads(a["payload"]) for a in _rows(audit) if a["action"] == "site.create")
            assert (created["after"]["latitude"], created["after"]["longitude"]) == (24.3, 37.6)
            assert "24.27" not in audit and "37.62" not in audit
        else:
            assert "Coordinates: exact, as recorded" in readme
            assert {o["coordinatePrecision"] for o in occurrences} == {""}
            assert {o["informationWithheld"] for o in occurrences} == {""}
        assert "Individuals: all." in readme
    # No viewer named: rounded, the safe default.
    assert "rounded to 0.1 degrees" in zipfile.ZipFile(io.BytesIO(anonymous)).read("README.txt").decode()


def test_an_export_keeps_to_a_species_and_region_and_a_rounded_one_holds_no_photo_files(
    home: Path, db_url: str, engine: Engine, tmp_path: Path, capsys
) -> None:
    app = App(Settings(home=home, database_url=db_url, volunteer_position_degrees=0.5))
    try:
        with app.session() as session:
            admin = session.exec(select(User).where(User.username == "admin")).one()
        data, _ = export_tables_zip(app, viewer=admin, region="Red Sea")
        bundle = zipfile.ZipFile(io.BytesIO(data))
        assert [e["individual"] for e in _rows(bundle.read("encounters.csv").decode())] == ["T-0001"]
        assert [o["organismID"] for o in _rows(bundle.read("occurrences_dwc.csv").decode())] == ["T-0001"]
        assert [i["code"] for i in _rows(bundle.read("individuals.csv").decode())] == ["T-0001"]
        assert "Individuals: Red Sea (individuals, encounters" in bundle.read("README.txt").decode()
        data, _ = export_tables_zip(app, viewer=admin, species="Hawksbill", region="Red Sea")
        assert _rows(zipfile.ZipFile(io.BytesIO(data)).read("encounters.csv").decode()) == []
    finally:
        app.db.dispose()

    with pytest.raises(ExportError, match="cannot hold photo files"):
        export_catalogue(engine, PhotoStore(home / "photos"), tmp_path / "x", photos=True, locations=Locations(0.1))
    assert not (tmp_path / "x").exists()

    # The command line: a volunteer's export is rounded (to the setting), an operator's exact.
    out = tmp_path / "cli"
    assert cli.main(["export", "--out", str(out), "--db", db_url, "--user", "vol", "--species", "Hawksbill"]) == 0
    assert [(e["latitude"], e["longitude"]) for e in _rows((out / "encounters.csv").read_text())] == [("-4.3", "39.6")]
    assert "README.txt" in capsys.readouterr().out
    assert cli.main(["export", "--out", str(out), "--db", db_url]) == 0
    assert [(float(e["latitude"]), float(e["longitude"])) for e in _rows((out / "encounters.csv").read_text())] == [
        NEST,
        REEF,
    ]
    assert (out / "README.txt").read_text().splitlines()[2].startswith("Coordinates: exact")
    assert cli.main(["export", "--out", str(out), "--db", db_url, "--user", "nobody"]) == 2
    assert "nobody" in capsys.readouterr().err


def test_the_rounding_is_a_setting_and_a_bad_one_is_refused_clearly(tmp_path: Path) -> None:
    from core.errors import ScuteError

    env = {"SCUTE_HOME": str(tmp_path)}
    assert Settings.from_env(env).volunteer_position_degrees == 0.1
    assert Settings.from_env({**env, "SCUTE_VOLUNTEER_POSITION_DEGREES": "0.5"}).volunteer_position_degrees == 0.5
    for bad, message in (("abc", "must be a number of degrees, not 'abc'"), ("0", "more than 0 and at most 10")):
        with pytest.raises(ScuteError, match=message):
            Settings.from_env({**env, "SCUTE_VOLUNTEER_POSITION_DEGREES": bad})
