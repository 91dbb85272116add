"""End to end in a real browser: ``streamlit run app.py`` on localhost, driven with Playwright in Chromium.

A volunteer signs in, uploads a turtle photo, sees the right individual among the candidates with the
match overlay and the confidence CDF, and proposes it; a second user signs in, confirms it on the
Review page, and finds the photo in the gallery. The app runs with a copy of the small real gallery
(``app_gallery``) and the small engine settings.

With ``SCUTE_SCREENSHOTS=1`` the test also writes the README's screenshots to ``docs/screenshots/``
(small PNGs); otherwise it writes nothing into the repository. It is skipped, saying why, only when
Debian's Chromium or the ``playwright`` package is missing (never ``playwright install``: no download).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.appgallery import APP_ENV, PASSWORD, AppGallery, copy_home
from fixtures.browser import REPO, chromium, playwright_or_skip, streamlit_app

SCREENSHOTS = REPO / "docs" / "screenshots"
MAX_SCREENSHOT_BYTES = 200_000
SEARCH_TIMEOUT_MS = 240_000  # loaded two-core machines; a search usually takes seconds

sync_api = playwright_or_skip()


@pytest.fixture
def server(app_gallery: AppGallery, tmp_path: Path) -> Iterator[str]:
    """The app on a free localhost port, with its own copy of the gallery; stopped after the test."""
    home = copy_home(app_gallery, tmp_path / "home")
    log = tmp_path / "streamlit.log"
    with streamlit_app(home, log, APP_ENV, drop=("DATABASE_URL", "SCUTE_REQUIRED_VOTES", "SCUTE_TOP_K")) as url:
        yield url
    server_log = log.read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-4000:]


@pytest.fixture
def browser() -> Iterator[object]:
    with chromium(sync_api) as launched:
        yield launched


def settle(page) -> None:
    """Wait until Streamlit has finished running the script (its status widget disappears)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=SEARCH_TIMEOUT_MS
    )
    page.wait_for_timeout(300)


def sign_in(page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=f"Hello, {name}").wait_for(timeout=60_000)
    settle(page)


def go(page, link: str, heading: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=link).click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    settle(page)


def save_screenshot(png: bytes, name: str) -> None:
    """Write a README screenshot, shrunk and reduced to a palette until it is under 200 KB."""
    if os.environ.get("SCUTE_SCREENSHOTS") != "1":
        return
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    width = min(image.width, 1100)
    while True:
        scaled = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        scaled.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
            buffer, format="PNG", optimize=True
        )
        if buffer.tell() <= MAX_SCREENSHOT_BYTES or width <= 480:
            break
        width = int(width * 0.85)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / name).write_bytes(buffer.getvalue())


def region(page, top, bottom) -> bytes:
    """A screenshot from the top of one element to the bottom of another, over the main column."""
    first, last = top.bounding_box(), bottom.bounding_box()
    main = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()
    y0, y1 = first["y"] - 8, last["y"] + last["height"] + 8
    return page.screenshot(clip={"x": main["x"], "y": y0, "width": main["width"], "height": y1 - y0})


def test_volunteer_identifies_reviewer_confirms_gallery_shows_it(server: str, browser, app_gallery: AppGallery):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    expected = app_gallery.query_identity

    # A volunteer identifies a photo.
    sign_in(page, server, "alice")
    go(page, "Identify", "Identify a turtle")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(app_gallery.query))
    find = page.get_by_role("button", name="Find this turtle")
    find.wait_for(timeout=60_000)
    settle(page)
    find.click()
    verdict = page.get_by_text("Most likely")
    verdict.wait_for(timeout=SEARCH_TIMEOUT_MS)
    settle(page)
    assert expected in verdict.inner_text()
    cards = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="New individual").first
    assert f"1. {expected}" in cards.inner_text()

    overlay = page.locator('[data-testid="stImage"]').filter(has_text="matches shown").first
    overlay.scroll_into_view_if_needed()
    assert overlay.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.scroll_into_view_if_needed()
    chart.locator(".main-svg").first.wait_for(timeout=60_000)
    traces = chart.locator(".scatterlayer .trace").count()
    assert traces >= 2  # the candidate's curve and the null (plus the other candidates)
    explanation = page.get_by_text("standard deviations").first
    assert expected in explanation.inner_text()

    verdict.scroll_into_view_if_needed()
    save_screenshot(region(page, verdict, cards), "identify-result.png")
    overlay.scroll_into_view_if_needed()
    save_screenshot(overlay.screenshot(), "match-overlay.png")
    evidence = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="What the numbers say").last
    evidence.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    save_screenshot(evidence.screenshot(), "confidence-cdf.png")

    # The best candidate is proposed by default.
    proposal = page.get_by_role("radiogroup").filter(has_text="Same as").first
    assert proposal.get_by_role("radio").first.is_checked()
    page.get_by_role("button", name="Send for review").click()
    page.get_by_text("Sent for review as sighting #1").wait_for(timeout=60_000)
    settle(page)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)

    # A second user confirms it on the Review page.
    sign_in(page, server, "bob")
    go(page, "Review", "Review sightings")
    page.get_by_text("Sighting 1 of 1 waiting for you").wait_for(timeout=60_000)
    vote = page.get_by_role("button", name=f"Same as {expected}")
    vote.wait_for(timeout=SEARCH_TIMEOUT_MS)
    page.locator('[data-testid="stImage"]').filter(has_text="matches shown").first.wait_for(timeout=SEARCH_TIMEOUT_MS)
    settle(page)
    page.locator('[data-testid="stMain"]').evaluate("main => main.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    save_screenshot(page.screenshot(), "review-queue.png")
    vote.click()
    page.get_by_text("That decided it").wait_for(timeout=60_000)
    settle(page)

    # The photo is in the gallery now, credited to the sighting.
    go(page, "Gallery", "Gallery")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Open an individual").click()
    page.get_by_role("option", name=expected, exact=True).click()
    page.get_by_role("heading", name=expected).first.wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_text("sighting #1 by alice").count() == 1
    photos = page.locator('[data-testid="stMetric"]').filter(has_text="Photos in the gallery")
    assert photos.inner_text().strip().endswith("3")
    page.close()
