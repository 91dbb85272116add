"""Sites and species in the app (issue 16): an admin adds, changes and removes them in Curate → Sites & species; a
bad site is refused with the reason, keeps what was typed and changes nothing; the gallery filters by region;
the Curate export offers the species and region filters. AppTest on a copy of the real turtle gallery."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.appgallery import AppGallery, app_home, signed_in
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from core.store.db import init_db, session_scope
from core.store.fieldwork import Site, Species
from core.store.models import AuditLog, Individual, Photo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(app_gallery: AppGallery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return app_home(app_gallery, tmp_path / "home", monkeypatch)


def _stored(home: Path):
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    try:
        with session_scope(engine) as session:
            sites = [(s.name, s.region, s.latitude, s.longitude, s.radius_km) for s in session.exec(select(Site)).all()]
            species = [(s.name, s.scientific_name) for s in session.exec(select(Species)).all()]
            return sites, species, len(session.exec(select(AuditLog)).all())
    finally:
        engine.dispose()


def _submit(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception
    return at


def test_an_admin_manages_sites_and_species_and_bad_input_changes_nothing(home: Path) -> None:
    at = signed_in("admin")
    at.switch_page("pages/curate.py").run()
    at.segmented_control(key="curate.section").set_value("places").run()
    assert not at.exception, at.exception

    site_name = next(w for w in at.text_input if w.label == "Name")  # the site form's; the species form's is second
    site_name.input("Ras Baridi")
    next(w for w in at.text_input if w.label == "Region").input("Red Sea")
    numbers = {w.label: w for w in at.number_input}
    numbers["Latitude (°)"].set_value(24.27)
    numbers["Longitude (°)"].set_value(37.62)
    numbers["Radius (km)"].set_value(0.0)
    before = _stored(home)
    _submit(at, "Add site")
    assert [e.value for e in at.error] and "radius must be more than 0" in at.error[0].value
    assert _stored(home) == before
    assert next(w.value for w in at.text_input if w.label == "Name") == "Ras Baridi"  # what was typed stays

    {w.label: w for w in at.number_input}["Radius (km)"].set_value(5.0)
    _submit(at, "Add site")
    assert not at.error, [e.value for e in at.error]
    assert any("Added the site Ras Baridi" in s.value for s in at.success)
    sites, _, audits = _stored(home)
    assert sites == [("Ras Baridi", "Red Sea", 24.27, 37.62, 5.0)] and audits == before[2] + 1

    species_inputs = [w for w in at.text_input if w.label in ("Name", "Scientific name")]
    species_inputs[-2].input("Green turtle")
    species_inputs[-1].input("Chelonia mydas")
    _submit(at, "Add species")
    assert _stored(home)[1] == [("Green turtle", "Chelonia mydas")]

    # A second site of the same name is refused.
    inputs = [w for w in at.text_input if w.label == "Name"]
    inputs[0].input("ras baridi")
    _submit(at, "Add site")
    assert "already a site named “Ras Baridi”" in at.error[0].value
    assert len(_stored(home)[0]) == 1

    # Unused: it can be removed.
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    try:
        with session_scope(engine) as session:
            site_id = session.exec(select(Site.id)).one()
    finally:
        engine.dispose()
    at.selectbox(key="places.site.pick").set_value(site_id).run()
    remove = next(b for b in at.button if b.label.startswith("Remove Ras Baridi"))
    remove.click().run()
    assert _stored(home)[0] == []


def test_the_gallery_filters_by_region(home: Path) -> None:
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    try:
        with session_scope(engine) as session:
            site = Site(name="Ras Baridi", region="Red Sea", latitude=24.27, longitude=37.62, radius_km=5)
            session.add(site)
            session.flush()
            t019 = session.exec(select(Individual).where(Individual.code == "t019")).one()
            photo = session.exec(select(Photo).where(Photo.individual_id == t019.id)).first()
            photo.site_id = site.id
    finally:
        engine.dispose()
    at = signed_in("alice")
    at.switch_page("pages/gallery.py").run()
    everyone = " ".join(str(df.value) for df in at.dataframe)
    assert all(code in everyone for code in ("t006", "t019", "t002"))
    at.selectbox(key="gallery.region").set_value("Red Sea").run()
    assert not at.exception, at.exception
    shown = " ".join(str(df.value) for df in at.dataframe)
    assert "t019" in shown and "t006" not in shown and "t002" not in shown
