"""What Scute's web server answers (``streamlit run serve.py`` on localhost, driven over HTTP, Streamlit's
websocket and Debian's Chromium), and the HTTP guard's upload caps in-process.

Issue 15: finding 8 (no uploads before sign-in, capped uploads after), finding 10 (``/_stcore/metrics``
closed, frame-ancestors / X-Frame-Options), and the browser half of finding 7 (a copied session cookie
is useless after sign-out).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.cookiejar
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.browser import REPO, chromium, playwright_or_skip, streamlit_app
from fixtures.photos import CHEAP_HASHER, image_bytes

from core.review import users
from core.store.db import init_db, session_scope
from ui import context as ctx
from ui import upload_limits
from ui.http_guard import SECURITY_HEADERS, HttpGuard

sync_api = playwright_or_skip()
websockets = pytest.importorskip("websockets", reason="the websockets package speaks Streamlit's protocol")
forward_pb2 = pytest.importorskip("streamlit.proto.ForwardMsg_pb2")
back_pb2 = pytest.importorskip("streamlit.proto.BackMsg_pb2")

PASSWORD = "turtles are great"
PAGES = ("", "identify", "review", "gallery", "curate", "evaluate", "signin", "welcome")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``serve.py`` on a gallery with an admin and a volunteer (cheap hashes, so sign-in takes no time)."""
    tmp_path = tmp_path_factory.mktemp("served")
    home = tmp_path / "home"
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    with session_scope(engine) as session:
        original, users._HASHER = users._HASHER, CHEAP_HASHER
        try:
            admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
            users.create_user(session, "alice", PASSWORD, actor=admin)
        finally:
            users._HASHER = original
    engine.dispose()
    log = tmp_path / "streamlit.log"
    with streamlit_app(home, log, drop=("DATABASE_URL", "SCUTE_SESSION_SECRET"), script="serve.py") as url:
        yield url
    assert "Traceback" not in log.read_text(errors="replace")


def _run(coroutine):
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps an event loop in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_every_response_forbids_framing_and_metrics_are_closed(server: str) -> None:
    """Before: no frame-ancestors / X-Frame-Options, and ``/_stcore/metrics`` answered anyone."""
    for path in ("/", "/_stcore/health", "/_stcore/host-config", "/identify"):
        status, headers, _ = _get(server + path)
        assert status == 200, path
        for name, value in SECURITY_HEADERS:
            assert headers.get(name.lower()) == value, (path, name)
    for path in ("/_stcore/metrics", "/_stcore/metrics/"):
        status, headers, body = _get(server + path)
        assert status == 404 and b"streamlit" not in body.lower() and b"session" not in body.lower()
        assert headers.get("x-frame-options") == "DENY"


async def _anonymous_session(server: str) -> str:
    """Open Streamlit's websocket like a browser tab on the sign-in page; the session id it was given."""
    uri = server.replace("http://", "ws://") + "/_stcore/stream"
    async with websockets.connect(uri, subprotocols=["streamlit"], origin=server, max_size=None) as socket_:
        rerun = back_pb2.BackMsg()
        rerun.rerun_script.query_string = ""
        rerun.rerun_script.page_script_hash = ""
        await socket_.send(rerun.SerializeToString())
        session_id = ""
        while True:
            message = forward_pb2.ForwardMsg()
            message.ParseFromString(await asyncio.wait_for(socket_.recv(), timeout=120))
            if message.WhichOneof("type") == "new_session":
                session_id = message.new_session.initialize.session_id
            if message.WhichOneof("type") == "script_finished":
                break
        status = await asyncio.to_thread(_upload, server, session_id)  # while the tab is still open
    assert session_id
    return status


def _upload(server: str, session_id: str) -> tuple[int, str]:
    """PUT one photo to Streamlit's upload endpoint, with the XSRF cookie and header a browser would send."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(server + "/_stcore/health", timeout=60).read()
    xsrf = next(cookie.value for cookie in jar if cookie.name == "_streamlit_xsrf")
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="turtle.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + image_bytes(64)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{server}/_stcore/upload_file/{session_id}/{uuid.uuid4()}",
        data=body,
        method="PUT",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Xsrftoken": xsrf},
    )
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_an_anonymous_tab_cannot_upload_anything(server: str) -> None:
    """Before: any open tab, even the sign-in page with no upload widget, could make the server keep files."""
    status, text = _run(_anonymous_session(server))
    assert (status, text) == (403, "Please sign in before uploading photos.")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium(sync_api) as launched:
        yield launched


def _settle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(300)


@pytest.mark.slow  # a guard, not a regression: the pages already stop before any widget (about 20 s)
def test_no_page_offers_an_upload_before_sign_in(server: str, browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        for path in PAGES:
            page.goto(f"{server}/{path}")
            page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
            _settle(page)
            assert page.locator('input[type="file"]').count() == 0, path
            assert page.locator('[data-testid="stFileUploader"]').count() == 0, path
    finally:
        context.close()


def test_a_signed_in_volunteer_uploads_and_a_copied_cookie_dies_at_sign_out(
    server: str, browser, tmp_path: Path
) -> None:
    """Uploads still work for a signed-in volunteer; the session cookie is HttpOnly (before: readable by page
    scripts) and, copied, signs nobody in after sign-out (before: it worked for up to 24 hours)."""
    context = browser.new_context()
    page = context.new_page()
    photo = tmp_path / "turtle.png"
    photo.write_bytes(image_bytes(400))
    try:
        page.goto(server)
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Hello, alice").wait_for(timeout=60_000)
        _settle(page)
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Identify", exact=True).click()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
        page.get_by_role("button", name="Find this turtle").wait_for(timeout=60_000)  # the photo was accepted
        _settle(page)
        cookies = [c for c in context.cookies() if c["name"] == ctx.COOKIE_NAME]
        assert len(cookies) == 1 and cookies[0]["value"]
        assert cookies[0]["httpOnly"] is True and cookies[0]["sameSite"] == "Strict"  # set by the server
        assert ctx.COOKIE_NAME not in page.evaluate("document.cookie")  # so no page script can read it
        page.goto(server)  # a new page load: the cookie still keeps the volunteer signed in
        page.get_by_role("heading", name="Hello, alice").wait_for(timeout=60_000)
        _settle(page)
        page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
    finally:
        context.close()
    thief = browser.new_context()
    thief.add_cookies([{k: cookies[0][k] for k in ("name", "value", "domain", "path")}])
    page = thief.new_page()
    try:
        page.goto(server)
        page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
        _settle(page)
        assert page.get_by_role("heading", name="Hello, alice").count() == 0
    finally:
        thief.close()


# --- the caps, in-process ------------------------------------------------------------------------------


def _put(guard: HttpGuard, session_id: str, size: int) -> tuple[int, bytes]:
    """One upload request through the guard; (status, body)."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "PUT",
        "path": f"/_stcore/upload_file/{session_id}/{uuid.uuid4()}",
        "headers": [(b"content-length", str(size).encode())],
    }
    _run(guard(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_signed_in_session_keeps_a_limited_number_and_size_of_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a signed-in session could keep uploading until the server ran out of memory."""
    kept: dict[str, list[int]] = {"s-1": [], "s-2": []}

    async def streamlit_upload_handler(scope, receive, send) -> None:  # what Streamlit does: keep the file
        session_id = scope["path"].split("/")[3]
        kept[session_id].append(int(dict(scope["headers"])[b"content-length"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = HttpGuard(
        streamlit_upload_handler,
        max_session_files=3,
        max_session_bytes=10_000,
        kept_uploads=lambda sid: (len(kept[sid]), sum(kept[sid])),
    )
    monkeypatch.setattr(ctx, "_signed_in_sessions", {"s-1": 1, "s-2": 2})
    assert [_put(guard, "s-1", 1_000)[0] for _ in range(4)] == [204, 204, 204, 413]  # the fourth file
    status, body = _put(guard, "s-1", 10)
    assert status == 413 and b"already keeps 3 uploaded files" in body and b"at most 3 files" in body
    assert _put(guard, "s-2", 9_000)[0] == 204
    assert _put(guard, "s-2", 1_001)[0] == 413  # over the bytes
    assert _put(guard, "s-3", 10)[0] == 403  # not signed in
    assert len(kept["s-1"]) == 3 and sum(kept["s-2"]) == 9_000


def test_the_cap_is_explained_in_words() -> None:
    """Streamlit's upload widget shows only "status code 413"; the page says why, and what to do."""
    assert upload_limits.refusal(59, 10, incoming=5) is None
    assert upload_limits.refusal(60, 10) == (
        "This tab already keeps 60 uploaded files (0 MB); at most 60 files or 600 MB are kept. "
        "Sign out and in again to upload more."
    )
    assert upload_limits.refusal(1, 599 * 1024 * 1024, incoming=2 * 1024 * 1024) is not None
    assert upload_limits.notice(None) is None  # no tab, nothing kept


@pytest.mark.slow  # its own server with a one-file cap (about 40 s)
def test_a_tab_at_its_cap_is_told_why_on_the_page(tmp_path: Path, browser) -> None:
    """Streamlit's widget says only "status code 413": the sidebar says what the cap is and what to do."""
    home = tmp_path / "home"
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    original, users._HASHER = users._HASHER, CHEAP_HASHER
    try:
        with session_scope(engine) as session:
            admin = users.create_user(session, "admin", PASSWORD, "admin", actor=None)
            users.create_user(session, "alice", PASSWORD, actor=admin)
    finally:
        users._HASHER = original
        engine.dispose()
    serve_small = tmp_path / "serve_one_file.py"
    serve_small.write_text(
        "import streamlit as st\nfrom starlette.middleware import Middleware\n"
        "from ui import context, upload_limits\nfrom ui.http_guard import HttpGuard\n"
        "context.server_sets_cookie = True\nupload_limits.MAX_SESSION_FILES = 1\n"
        f"app = st.App({str(REPO / 'app.py')!r}, middleware=[Middleware(HttpGuard)])\n"
    )
    photos = [tmp_path / f"turtle{i}.png" for i in (1, 2)]
    for i, photo in enumerate(photos):
        photo.write_bytes(image_bytes(300 + i))
    with streamlit_app(home, tmp_path / "streamlit.log", drop=("DATABASE_URL",), script=str(serve_small)) as url:
        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(url)
            page.get_by_label("User name").fill("alice")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Hello, alice").wait_for(timeout=60_000)
            page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Identify", exact=True).click()
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photos[0]))
            page.get_by_role("button", name="Find this turtle").wait_for(timeout=60_000)
            _settle(page)
            sidebar = page.locator('[data-testid="stSidebar"]')
            assert "at most 1 files" in sidebar.inner_text() and "Sign out and in again" in sidebar.inner_text()
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photos[1]))
            page.get_by_text("status code 413").wait_for(timeout=60_000)  # refused by the server
        finally:
            context.close()
