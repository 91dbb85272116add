"""Feedback in a real browser (Debian's Chromium): the Inbox shows a decision, Practice gives feedback, and
Review's compare view draws both photos with linked axes.

alice's sighting of t006 was confirmed by bob (written into the gallery copy beforehand, with the search she
saw); a second sighting of hers waits for review. On a desktop and on a 390×844 phone: alice's menu says
"Inbox (1 new)" and the Inbox page shows "confirmed as t006"; the admin practises on the decided sighting and is
told the answer. On the desktop bob opens the compare view of the waiting sighting. With
``SCUTE_SCREENSHOTS=1`` the pages are saved to ``docs/screenshots/`` (desktop-/phone-inbox, -practice,
desktop-compare).
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
from fixtures.feedback import decided_sighting, keep_evidence

from core.store.db import init_db

sync_api = playwright_or_skip()

TIMEOUT_MS = 120_000
SCREENSHOTS = REPO / "docs" / "screenshots"
DESKTOP = {"viewport": {"width": 1280, "height": 1000}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
WAITING = "images/t006/WyYFDfbwGZ.JPG"  # a photo of t006 that is not in the gallery


@pytest.fixture
def server(app_gallery: AppGallery, data_dir: Path, tmp_path: Path) -> Iterator[str]:
    home = copy_home(app_gallery, tmp_path / "home")
    db = init_db(f"sqlite:///{home / 'gallery.db'}")
    keep_evidence(db, home, decided_sighting(db, home, app_gallery))
    waiting = decided_sighting(db, home, app_gallery, confirm=False, photo=data_dir / "turtles" / WAITING)
    keep_evidence(db, home, waiting)
    db.dispose()
    log = tmp_path / "streamlit.log"
    with streamlit_app(home, log, APP_ENV, drop=("DATABASE_URL", "SCUTE_REQUIRED_VOTES", "SCUTE_TOP_K")) as url:
        yield url
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


def menu(page):
    return page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')


def go(page, link: str, heading: str) -> None:
    expand = page.locator('[data-testid="stExpandSidebarButton"]')
    if expand.count() and expand.first.is_visible():  # a phone: the menu is folded away
        expand.first.click()
        page.wait_for_timeout(500)
    menu(page).filter(has_text=re.compile(link)).first.click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    settle(page)
    if page.viewport_size["width"] < 640 and page.locator('[data-testid="stSidebarCollapseButton"] button').count():
        page.locator('[data-testid="stSidebarCollapseButton"] button').first.click()
        page.wait_for_timeout(600)


def shot(png: bytes, name: str) -> None:
    """With SCUTE_SCREENSHOTS=1, NAME in docs/screenshots/, reduced to a palette until under 200 KB."""
    if os.environ.get("SCUTE_SCREENSHOTS") != "1":
        return
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    width = min(image.width, 1100)
    while True:
        scaled = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        scaled.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= 200_000 or width <= 480:
            break
        width = int(width * 0.85)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / name).write_bytes(buffer.getvalue())


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_inbox_shows_the_decision_and_practice_gives_feedback(server: str, device: str) -> None:
    with chromium(sync_api) as browser:
        context = browser.new_context(**(DESKTOP if device == "desktop" else PHONE))
        page = context.new_page()
        sign_in(page, server, "alice")
        assert menu(page).filter(has_text="Inbox (1 new)").count() == 1
        go(page, r"Inbox", "Inbox")
        assert page.get_by_text("Your encounter of 2025-04-12 was confirmed as t006.").count() == 1
        assert page.get_by_text("1 unread").count() == 1
        shot(page.screenshot(), f"{device}-inbox.png")
        page.get_by_role("button", name="Mark all read").click()
        page.get_by_text("Nothing unread.").wait_for(timeout=60_000)
        context.close()

        context = browser.new_context(**(DESKTOP if device == "desktop" else PHONE))
        page = context.new_page()
        sign_in(page, server, "admin")
        go(page, r"Practice$", "Practice")
        main = page.locator('[data-testid="stMain"]')
        assert main.get_by_text("t006").count() == 0  # nothing gives the answer away before searching
        page.get_by_role("button", name="Search the gallery").click()
        settle(page)
        page.get_by_text("t019 (5 %)").click()
        settle(page)
        page.get_by_role("button", name="Check my answer").click()
        page.get_by_text(re.compile("Not quite: you chose t019, the answer is t006")).wait_for(timeout=60_000)
        settle(page)
        page.get_by_text(re.compile("Not quite")).scroll_into_view_if_needed()
        shot(page.screenshot(), f"{device}-practice.png")
        assert page.get_by_text("Practice results (admins)").count() == 1
        context.close()


def test_review_compare_view_links_both_photos(server: str) -> None:
    with chromium(sync_api) as browser:
        page = browser.new_page(**DESKTOP)
        sign_in(page, server, "bob")
        go(page, r"Review", "Review")
        page.get_by_text("Compare side by side at full resolution").first.click()
        toggle = page.get_by_text("Show the comparison").first
        switch = page.locator('label:has-text("Show the comparison") input[type="checkbox"]').first
        toggle.click()
        for _ in range(3):  # on a busy machine a click that lands during a rerun can be lost: the switch says so
            settle(page)
            if switch.is_checked():
                break
            toggle.click()
        assert switch.is_checked()
        # The comparison is the figure with photos in it (Review's other charts have none); plotly draws them a
        # moment after the chart appears.
        chart = page.locator('[data-testid="stPlotlyChart"]:has(image)').last
        chart.wait_for(timeout=90_000)
        images = chart.locator("image")
        assert images.count() == 2  # both photos drawn in the figure
        titles = chart.locator(".annotation-text").evaluate_all("nodes => nodes.map(n => n.textContent)")
        assert titles[0] == "WyYFDfbwGZ.JPG · 12 Apr 2025 · site unknown"  # file name, date and site
        assert titles[1].startswith("t006 · ")
        chart.scroll_into_view_if_needed()
        shot(chart.screenshot(), "desktop-compare.png")
