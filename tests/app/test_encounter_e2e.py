"""Acceptance test of issue 16 in a real browser (Debian's Chromium): one encounter of two photos.

A volunteer uploads the left and the right photo of one turtle as one encounter; each photo is searched only
against gallery photos of its side, and the combined ranking puts the right individual first with more evidence
than either photo alone (the numbers on the page are read and compared). A second user confirms the encounter
with one vote, both photos join the individual, and the submitter's inbox says so.

The shared turtle photos carry no side labels, so the gallery copy gives each individual's first photo the left
side and its second the right side; t006's other photos WyYFDfbwGZ and dFJLspgzYe then match it on those sides
(measured at the app's 512 px settings: ln LR +1.8 and +4.4, combined +6.2).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.appgallery import APP_ENV, PASSWORD, AppGallery, copy_home
from fixtures.browser import REPO, chromium, playwright_or_skip, streamlit_app
from sqlmodel import col, select

from core.store.db import init_db, session_scope
from core.store.models import Individual, Photo, Sighting

sync_api = playwright_or_skip()

TIMEOUT_MS = 240_000  # two searches on two loaded CPU cores
LEFT, RIGHT = "images/t006/WyYFDfbwGZ.JPG", "images/t006/dFJLspgzYe.jpg"


def _sided(home: Path) -> None:
    """Each individual's first gallery photo shows its left side, its second its right side."""
    db = init_db(f"sqlite:///{home / 'gallery.db'}")
    with session_scope(db) as session:
        seen: dict[int | None, int] = {}
        for photo in session.exec(select(Photo).order_by(col(Photo.individual_id), col(Photo.id))).all():
            photo.side = ("left", "right")[min(seen.get(photo.individual_id, 0), 1)]
            seen[photo.individual_id] = seen.get(photo.individual_id, 0) + 1
            session.add(photo)
    db.dispose()


@pytest.fixture
def sided_server(app_gallery: AppGallery, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    home = copy_home(app_gallery, tmp_path / "home")
    _sided(home)
    log = tmp_path / "streamlit.log"
    with streamlit_app(home, log, APP_ENV, drop=("DATABASE_URL", "SCUTE_REQUIRED_VOTES", "SCUTE_TOP_K")) as url:
        yield url, home
    server_log = log.read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-4000:]


def settle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)


def sign_in(page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=f"Hello, {name}").wait_for(timeout=60_000)
    settle(page)


def sign_out(page) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)


def go(page, link: str, heading: str) -> None:
    menu = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    menu.filter(has_text=re.compile(link)).first.click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    settle(page)


def shot(page, locator, name: str) -> None:
    """With SCUTE_SCREENSHOTS=1, the screen around ``locator`` as docs/screenshots/NAME (under 200 KB)."""
    if os.environ.get("SCUTE_SCREENSHOTS") != "1":
        return
    from PIL import Image

    locator.scroll_into_view_if_needed()
    settle(page)
    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    width = min(image.width, 1100)
    while True:
        scaled = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        scaled.quantize(colors=128).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= 200_000 or width <= 480:
            break
        width = int(width * 0.85)
    (REPO / "docs" / "screenshots" / name).write_bytes(buffer.getvalue())


def cells_of(row) -> list[str]:
    return [cell.inner_text().strip() for cell in row.locator("th, td").all()]


def test_left_and_right_photo_as_one_encounter_confirmed_and_told(sided_server, browser_page, data_dir: Path):
    url, home = sided_server
    page = browser_page
    turtles = data_dir / "turtles"

    sign_in(page, url, "alice")
    go(page, "Identify", "Identify a turtle")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([turtles / LEFT, turtles / RIGHT])
    page.get_by_text("These photos show one animal").wait_for(timeout=60_000)
    settle(page)
    for tab, side in ((1, "Left side of the head"), (2, "Right side of the head")):
        page.get_by_role("tab", name=re.compile(f"^Photo {tab}")).click()
        page.get_by_text(side, exact=True).locator("visible=true").first.click()  # the open tab's side
        settle(page)
    page.get_by_role("button", name="Find this turtle in every photo").click()
    verdict = page.locator('[data-testid="stAlert"]').filter(has_text="All photos together").first
    verdict.wait_for(timeout=TIMEOUT_MS)
    settle(page)
    banner = verdict.inner_text()
    assert "most likely t006" in banner

    # The combined ranking: t006 first, its evidence from both photos above what either photo gives alone.
    table = page.locator('[data-testid="stTable"]').filter(has_text="Evidence, all photos").first
    table.wait_for(timeout=60_000)
    header = cells_of(table.locator("thead tr").first)
    first = cells_of(table.locator("tbody tr").first)
    cells = dict(zip(header[::-1], first[::-1], strict=False))  # from the right: an index column may lead
    assert cells.get("Individual", "").startswith("t006"), (header, first)
    combined = float(cells["Evidence, all photos"])
    left, right = float(cells["Photo 1 (left)"]), float(cells["Photo 2 (right)"])
    assert left > 0 and right > 0 and combined == pytest.approx(left + right, abs=0.11)
    assert combined > max(left, right)
    shot(page, verdict, "desktop-identify-encounter.png")
    probability = cells["Probability"]
    assert probability.startswith((">99", "9")), probability

    page.get_by_role("button", name="Send the encounter (2 photos) for review").click()
    page.get_by_text("Sent for review as encounter #").first.wait_for(timeout=60_000)
    settle(page)
    sign_out(page)

    # A second user confirms the encounter with one vote: both photos are decided together.
    sign_in(page, url, "bob")
    go(page, "Review", "Review sightings")
    page.get_by_text("Encounter #", exact=False).first.wait_for(timeout=60_000)
    shot(page, page.get_by_text("Combined ranking the submitter saw").first, "desktop-review-encounter.png")
    page.get_by_role("button", name="Same as t006").first.click()
    page.get_by_text("That decided it").wait_for(timeout=60_000)
    settle(page)
    assert "its photos joined" in page.get_by_text("That decided it").inner_text()
    sign_out(page)

    db = init_db(f"sqlite:///{home / 'gallery.db'}")
    with session_scope(db) as session:
        t006 = session.exec(select(Individual.id).where(Individual.code == "t006")).one()
        sightings = session.exec(select(Sighting).order_by(col(Sighting.id))).all()
        assert [(s.side, s.status, s.decided_individual_id) for s in sightings] == [
            ("left", "decided", t006),
            ("right", "decided", t006),
        ]
        assert len({s.encounter_id for s in sightings}) == 1
    db.dispose()

    # The submitter's inbox tells her.
    sign_in(page, url, "alice")
    go(page, r"^.*Inbox", "Inbox")
    assert page.get_by_text(re.compile("was confirmed as t006")).count() >= 1


@pytest.fixture
def browser_page() -> Iterator[object]:
    with chromium(sync_api) as launched:
        page = launched.new_page(viewport={"width": 1280, "height": 1000})
        yield page
        page.close()
