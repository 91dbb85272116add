"""End to end in a real browser: ``streamlit run app.py`` on localhost, driven with Playwright in Chromium.

On a desktop: a volunteer signs in, uploads a turtle photo, sees the right individual among the candidates
with the match overlay and the confidence CDF, and proposes it; a second user confirms it on the Review page
and opens the individual by clicking its row in the gallery. On a 390×844 phone: a volunteer sends a turtle
the gallery does not know (the proposal starts from what the evidence says, and a "same as" against it asks
again), a reviewer agrees it is new, and the new individual is in the gallery with its date unknown. The first
load never shows Streamlit's raw page list. The app runs with a copy of the small real gallery
(``app_gallery``) and the small engine settings.

With ``SCUTE_SCREENSHOTS=1`` the tests also write screenshots of every page, desktop and phone, to
``docs/screenshots/`` (small PNGs, shown in the README); otherwise they write nothing into the repository.
They are skipped, saying why, only when Debian's Chromium or the ``playwright`` package is missing (never
``playwright install``: no download).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fixtures.appgallery import APP_ENV, IDENTITIES, PASSWORD, AppGallery, copy_home
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


DESKTOP = {"viewport": {"width": 1280, "height": 1000}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


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


def sign_out(page) -> None:
    open_sidebar(page)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)


def open_sidebar(page) -> None:
    """On a phone the sidebar (the menu) starts folded away behind a button."""
    expand = page.locator('[data-testid="stExpandSidebarButton"]')
    if expand.count() and expand.first.is_visible():
        expand.first.click()
        page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").wait_for(timeout=10_000)


def go(page, link: str, heading: str) -> None:
    open_sidebar(page)
    menu(page).filter(has_text=re.compile(rf"{link}$")).first.click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    settle(page)
    close_sidebar_on_a_phone(page)


def menu(page):
    """The entries of the app's menu in the sidebar (links drawn by app.py)."""
    return page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')


def close_sidebar_on_a_phone(page) -> None:
    """On a phone the open menu covers the page: fold it away, as a volunteer would after choosing."""
    if page.viewport_size["width"] >= 640:
        return
    sidebar = page.locator('[data-testid="stSidebar"]')
    if sidebar.get_attribute("data-collapsed") == "false":
        page.locator('[data-testid="stSidebarCollapseButton"] button').click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"stSidebar\"]').dataset.collapsed === 'true'",
            timeout=10_000,
        )
        page.wait_for_timeout(500)  # the sidebar slides away


def top(page) -> None:
    page.locator('[data-testid="stMain"]').evaluate("main => main.scrollTo(0, 0)")
    page.wait_for_timeout(300)


def shot(page, name: str) -> None:
    """What the screen shows now (the viewport: what a volunteer sees), as docs/screenshots/NAME."""
    if os.environ.get("SCUTE_SCREENSHOTS") != "1":
        return
    settle(page)
    page.wait_for_function("() => [...document.images].every(img => img.complete)", timeout=60_000)
    page.wait_for_timeout(1500 if page.locator('[data-testid="stDataFrame"]').count() else 600)  # tables draw late
    save_screenshot(page.screenshot(), name)


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


def visible(locator):
    """The elements of ``locator`` the page shows (the overlay is drawn twice: side by side and stacked)."""
    return locator.locator("visible=true")


def upload(page, photo: Path) -> None:
    """Upload ``photo`` on the Identify page and wait until it can be framed."""
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
    page.get_by_role("button", name="Find this turtle").wait_for(timeout=60_000)
    settle(page)


def upload_and_search(page, photo: Path) -> str:
    """Upload ``photo`` on the Identify page, search, and return the banner's text."""
    upload(page, photo)
    page.get_by_role("button", name="Find this turtle").click()
    return search_banner(page)


def search_banner(page) -> str:
    """Wait for the search's verdict and return its text."""
    banner = page.locator('[data-testid="stAlert"]').filter(
        has_text=re.compile("Most likely|Probably a new individual|No clear answer")
    )
    banner.first.wait_for(timeout=SEARCH_TIMEOUT_MS)
    settle(page)
    return banner.first.inner_text()


CROP_FRAME = "iframe[title='streamlit_cropper.st_cropper']"


def crop_canvas(page) -> tuple[dict, float, tuple[int, int]]:
    """The crop box's frame on the page: its box, the zoom that fits it in its column, and the canvas size."""
    frame = page.locator(CROP_FRAME).first
    frame.wait_for(timeout=60_000)
    canvas = page.frame_locator(CROP_FRAME).first.locator("canvas").first
    canvas.wait_for(timeout=60_000)
    size = canvas.evaluate("c => [c.width, c.height]")
    zoom = frame.evaluate("f => parseFloat(getComputedStyle(f).zoom) || 1")
    return frame.bounding_box(), zoom, (size[0], size[1])


def drag_crop_corner(page, to: tuple[float, float], start: tuple[float, float] = (1.0, 1.0)) -> None:
    """Select the crop box, then drag its bottom-right corner from ``start`` to ``to`` (fractions of the photo)."""
    box, zoom, (width, height) = crop_canvas(page)

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + zoom * x, box["y"] + zoom * y

    page.mouse.click(*at(start[0] * width / 2, start[1] * height / 2))  # the handles appear once it is selected
    page.wait_for_timeout(200)
    page.mouse.move(*at(min(start[0] * width, width - 2), min(start[1] * height, height - 2)))
    page.mouse.down()
    page.mouse.move(*at(to[0] * width, to[1] * height), steps=6)
    page.mouse.up()
    settle(page)


def drawn_crop_box(page) -> tuple[float, float]:
    """Where the yellow box's right and bottom edges are drawn, in fractions of the photo (found by colour)."""
    from PIL import Image

    box, zoom, (width, height) = crop_canvas(page)
    picture = Image.open(io.BytesIO(page.locator(CROP_FRAME).first.screenshot())).convert("RGB")
    scale = picture.width / box["width"]  # the device's pixels per CSS pixel
    pixels = np.asarray(picture).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    yellow = (r > 200) & (g > 170) & (r - b > 100)  # the box's #facc15, also where the canvas blends its edge
    columns, rows = np.nonzero(yellow.sum(axis=0) >= 5)[0], np.nonzero(yellow.sum(axis=1) >= 5)[0]
    return (columns.max() + 1) / (width * zoom * scale), (rows.max() + 1) / (height * zoom * scale)


def image_shape(locator) -> float:
    return locator.locator("img").first.evaluate("img => img.naturalWidth / img.naturalHeight")


def proposal_radios(page):
    return page.get_by_role("radiogroup").filter(has_text="I'm not sure").first.get_by_role("radio")


def checked_proposal(page) -> str:
    radios = proposal_radios(page)
    labels = [radios.nth(i).evaluate("r => r.closest('label').innerText") for i in range(radios.count())]
    return next(label for i, label in enumerate(labels) if radios.nth(i).is_checked())


def click_table_row(page, table, row: int, row_height: int = 64) -> None:
    """Click the selection box of ``row`` (0-based) in a Streamlit table, a canvas without per-row elements."""
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    header = 36  # the grid's header row
    page.mouse.click(box["x"] + 18, box["y"] + header + row * row_height + row_height / 2)


def test_first_load_shows_no_raw_page_list(server: str, browser):
    """Issue 17: for 2-3 s the first load showed Streamlit's page list ("app, curate, evaluate, …")."""
    page = browser.new_page(**DESKTOP)
    # Remember every navigation list the page ever shows, even for a moment, from the very first paint.
    page.add_init_script(
        """
        window.__navSeen = [];
        new MutationObserver(() => {
          for (const nav of document.querySelectorAll('[data-testid="stSidebarNav"]')) {
            window.__navSeen.push(nav.innerText);
          }
        }).observe(document, {childList: true, subtree: true});
        """
    )
    page.goto(server)
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
    settle(page)
    assert page.evaluate("window.__navSeen") == []
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Hello, alice").wait_for(timeout=60_000)
    settle(page)
    assert page.evaluate("window.__navSeen") == []  # signed in: the app's own menu, never the raw list
    entries = menu(page)
    labels = [entries.nth(i).inner_text().strip() for i in range(entries.count())]
    names = ["Home", "Identify", "Review", "Gallery", "Inbox", "Practice"]
    assert len(labels) == len(names) and all(text.endswith(name) for text, name in zip(labels, names, strict=True)), (
        labels
    )
    page.close()


def test_volunteer_identifies_reviewer_confirms_gallery_shows_it(server: str, browser, app_gallery: AppGallery):
    page = browser.new_page(**DESKTOP)
    expected = app_gallery.query_identity

    # A volunteer identifies a photo.
    sign_in(page, server, "alice")
    shot(page, "desktop-home.png")
    go(page, "Identify", "Identify a turtle")
    banner = upload_and_search(page, app_gallery.query)
    assert banner.startswith("Most likely") and expected in banner
    verdict = page.get_by_text("Most likely")
    cards = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="New individual").first
    assert f"1. {expected}" in cards.inner_text()

    overlay = visible(page.locator('[data-testid="stImage"]').filter(has_text="matches shown")).first
    overlay.scroll_into_view_if_needed()
    assert overlay.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert "Your photo (left)" in overlay.inner_text()  # side by side on a desktop
    assert "(the strongest 30)" in overlay.inner_text()  # the default: only the strongest lines
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.scroll_into_view_if_needed()
    chart.locator(".main-svg").first.wait_for(timeout=60_000)
    traces = chart.locator(".scatterlayer .trace").count()
    assert traces >= 2  # the candidate's curve and the null (plus the other candidates)
    explanation = page.get_by_text("than chance gives").first
    assert expected in explanation.inner_text() and "standard deviations" not in explanation.inner_text()

    verdict.scroll_into_view_if_needed()
    save_screenshot(region(page, verdict, cards), "identify-result.png")
    overlay.scroll_into_view_if_needed()
    save_screenshot(overlay.screenshot(), "match-overlay.png")
    evidence = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="What the numbers say").last
    evidence.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    save_screenshot(evidence.screenshot(), "confidence-cdf.png")

    # The crop is a box dragged on the photo (issue 17.3): a smaller box changes what Scute compares, and the
    # part the search compared is shown and said (the whole photo here).
    assert page.get_by_text("Scute used the whole photo").count() + page.get_by_text("Scute zoomed in").count() == 1
    compares = page.locator('[data-testid="stImage"]').filter(has_text="What Scute compares").first
    compares.scroll_into_view_if_needed()
    before = image_shape(compares)
    drag_crop_corner(page, (0.6, 0.5))
    page.get_by_text("since this search").first.wait_for(timeout=60_000)
    assert image_shape(compares) == pytest.approx(before * 0.6 / 0.5, rel=0.05)
    assert drawn_crop_box(page) == pytest.approx((0.6, 0.5), abs=0.03)  # and the box stays where it was left
    page.locator(CROP_FRAME).first.scroll_into_view_if_needed()
    shot(page, "desktop-identify-framing.png")
    drag_crop_corner(page, (1.0, 1.0), start=(0.6, 0.5))  # back to the whole photo: as searched, nothing to redo
    page.get_by_text("since this search").wait_for(state="detached", timeout=60_000)
    assert image_shape(compares) == pytest.approx(before, rel=0.02)
    compared = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="What Scute compared").last
    compared.scroll_into_view_if_needed()
    save_screenshot(compared.screenshot(), "identify-compared.png")

    # The evidence is convincing, so the best candidate is proposed by default.
    assert checked_proposal(page).startswith(f"Same as {expected}")
    send = page.get_by_role("button", name="Send for review")
    send.scroll_into_view_if_needed()
    shot(page, "desktop-identify-proposal.png")
    send.click()
    page.get_by_text("Sent for review as sighting #1").wait_for(timeout=60_000)
    settle(page)
    sign_out(page)

    # A second user confirms it on the Review page.
    sign_in(page, server, "bob")
    go(page, "Review", "Review sightings")
    page.get_by_text("Sighting 1 of 1 waiting for you").wait_for(timeout=60_000)
    vote = page.get_by_role("button", name=f"Same as {expected}")
    vote.wait_for(timeout=SEARCH_TIMEOUT_MS)
    page.locator('[data-testid="stImage"]').filter(has_text="matches shown").first.wait_for(timeout=SEARCH_TIMEOUT_MS)
    settle(page)
    top(page)
    save_screenshot(page.screenshot(), "review-queue.png")
    vote.click()
    page.get_by_text("That decided it").wait_for(timeout=60_000)
    settle(page)

    # The decided sighting can be opened from "Recently decided".
    page.get_by_text("Recently decided", exact=True).click()
    settle(page)
    click_table_row(page, page.locator('[data-testid="stDataFrame"]').first, 0, row_height=35)
    page.get_by_role("heading", name="Sighting #1").wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_text("Sighting #1 · submitted by alice").count() == 1

    # The photo is in the gallery now, credited to the sighting: click the individual's row to open it.
    go(page, "Gallery", "Gallery")
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    shot(page, "desktop-gallery.png")
    codes = sorted(code for _, code in app_gallery.gallery_rows)
    click_table_row(page, table, sorted(set(codes)).index(expected))
    page.get_by_role("heading", name=expected).first.wait_for(timeout=60_000)
    settle(page)
    assert expected in page.url
    assert page.get_by_text("sighting #1 by alice").count() == 1
    photos = page.locator('[data-testid="stMetric"]').filter(has_text="Photos in the gallery")
    assert photos.inner_text().strip().endswith("3")
    shot(page, "desktop-gallery-individual.png")
    sign_out(page)

    # The admin's pages: the audit log reads as sentences; Evaluate says what it will do.
    sign_in(page, server, "admin")
    go(page, "Curate", "Curate the gallery")
    page.get_by_text("History & undo", exact=True).click()
    settle(page)
    shot(page, "desktop-curate-history.png")
    go(page, "Evaluate", "Evaluate on this gallery")
    shot(page, "desktop-evaluate.png")
    page.close()


def test_phone_volunteer_sends_a_new_turtle_and_a_reviewer_agrees(
    server: str, browser, turtle_manifest: list[dict[str, object]]
):
    strangers = sorted(Path(r["path"]) for r in turtle_manifest if r["identity"] not in IDENTITIES)  # type: ignore[arg-type]
    stranger = strangers[0]  # a turtle the gallery does not know, in a photo without a date
    page = browser.new_page(**PHONE)

    sign_in(page, server, "alice")
    shot(page, "phone-home.png")
    go(page, "Identify", "Identify a turtle")
    shot(page, "phone-identify.png")
    # The crop box fits a phone's screen: its column is narrower than the canvas, so the canvas is zoomed out.
    upload(page, stranger)
    box, zoom, (width, _) = crop_canvas(page)
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and width * zoom <= box["width"]
    page.get_by_text("Adjust with sliders").first.evaluate(
        "e => { e.scrollIntoView({block: 'start'}); document.querySelector('[data-testid=stMain]').scrollBy(0, -60); }"
    )
    shot(page, "phone-identify-framing.png")
    page.get_by_role("button", name="Find this turtle").click()
    banner = search_banner(page)
    page.get_by_text(banner[:12]).first.evaluate(
        "e => { e.scrollIntoView({block: 'start'}); document.querySelector('[data-testid=stMain]').scrollBy(0, -90); }"
    )
    shot(page, "phone-identify-result.png")
    page.get_by_text("What Scute compared").first.evaluate("e => { e.scrollIntoView({block: 'center'}); }")
    shot(page, "phone-identify-compared.png")

    # On a phone the two photos of the overlay are stacked, not squeezed side by side.
    overlay = visible(page.locator('[data-testid="stImage"]').filter(has_text="matches shown")).first
    overlay.scroll_into_view_if_needed()
    assert "Your photo (top)" in overlay.inner_text()
    assert overlay.bounding_box()["width"] <= 390
    shot(page, "phone-match-overlay.png")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.scroll_into_view_if_needed()
    chart.locator(".main-svg").first.wait_for(timeout=60_000)
    shot(page, "phone-confidence-cdf.png")

    # The proposal starts from the evidence: "same as" only when the banner says "Most likely".
    default = checked_proposal(page)
    if banner.startswith("Most likely"):
        assert default.startswith("Same as")
    else:
        assert default.startswith("None of these" if banner.startswith("Probably a new") else "I'm not sure")
    # "Same as" the second candidate goes against the evidence: it is asked again, and can be taken back.
    same_as = page.get_by_role("radio", name=re.compile("^Same as"))
    assert same_as.count() >= 2
    same_as.nth(1).check(force=True)  # the round button drawn over the input takes the tap
    page.get_by_role("button", name="Send for review").click()
    page.get_by_text("anyway?").wait_for(timeout=60_000)
    page.get_by_text("anyway?").scroll_into_view_if_needed()
    shot(page, "phone-identify-confirm.png")
    page.get_by_role("button", name="No, let me change it").click()
    settle(page)
    page.get_by_text("anyway?").wait_for(state="detached", timeout=60_000)  # taken back: nothing was sent
    page.get_by_role("radio", name=re.compile("^None of these")).check(force=True)
    page.get_by_role("button", name="Send for review").click()
    page.get_by_text("Sent for review as sighting #1").wait_for(timeout=60_000)
    settle(page)
    sign_out(page)

    sign_in(page, server, "bob")
    go(page, "Review", "Review sightings")
    page.get_by_text("Sighting 1 of 1 waiting for you").wait_for(timeout=60_000)
    settle(page)
    top(page)
    shot(page, "phone-review.png")
    page.get_by_role("button", name="New individual").click()
    page.get_by_text("That decided it").wait_for(timeout=60_000)
    settle(page)

    go(page, "Gallery", "Gallery")
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    shot(page, "phone-gallery.png")
    click_table_row(page, table, 0)  # "T-0001", the new one, sorts before the imported t002…t019
    page.get_by_role("heading", name="T-0001").first.wait_for(timeout=60_000)
    settle(page)
    # The photo has no date of its own and none was given: shown as unknown, not as the day it was sent.
    metrics = page.locator('[data-testid="stMetric"]')
    assert metrics.filter(has_text="First seen").inner_text().strip().endswith("date unknown")
    assert metrics.filter(has_text="Last seen").inner_text().strip().endswith("date unknown")
    top(page)
    shot(page, "phone-gallery-individual.png")
    sign_out(page)
    page.close()
