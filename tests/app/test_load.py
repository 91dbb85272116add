"""Load: twenty browser-like sessions against ``streamlit run app.py`` on localhost.

Each session does what a browser does when a volunteer opens Scute: fetches the page and the health
endpoint over HTTP, opens Streamlit's websocket (``/_stcore/stream``), and asks for script runs (the
first page load, then reruns as if widgets were touched), waiting each time for the run to finish. The
test fails on any HTTP error, refused websocket, script error or unfinished run, and prints the latency
percentiles (HTTP and full page runs).

Lasts ``SCUTE_LOAD_SECONDS`` (default 10) after the server is up; for the full minute:
``SCUTE_LOAD_SECONDS=60 python -m pytest tests/app/test_load.py -s``.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fixtures.browser import REPO, streamlit_app
from fixtures.world import PASSWORD

from core.review.users import create_user
from core.store.db import init_db, session_scope

pytestmark = pytest.mark.usefixtures("cheap_hashing")

LOAD_SECONDS = float(os.environ.get("SCUTE_LOAD_SECONDS", "10"))
SESSIONS = 20

websockets = pytest.importorskip("websockets", reason="the websockets package is needed for the load test")
forward_pb2 = pytest.importorskip("streamlit.proto.ForwardMsg_pb2")
back_pb2 = pytest.importorskip("streamlit.proto.BackMsg_pb2")

if not (REPO / "app.py").is_file():
    pytest.skip("app.py does not exist yet", allow_module_level=True)


@pytest.fixture
def server(tmp_path: Path):
    """The app with a fresh gallery (one admin, so it opens on the sign-in page) on a free port."""
    home = tmp_path / "home"
    engine = init_db(f"sqlite:///{home / 'gallery.db'}")
    with session_scope(engine) as session:
        create_user(session, "admin", PASSWORD, "admin", actor=None)
    engine.dispose()
    try:
        with streamlit_app(home, tmp_path / "streamlit.log", drop=("DATABASE_URL",)) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


def _get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise AssertionError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - started


def _rerun() -> bytes:
    message = back_pb2.BackMsg()
    message.rerun_script.query_string = ""
    message.rerun_script.page_script_hash = ""
    return message.SerializeToString()


async def _session(base: str, deadline: float, stats: dict[str, list]) -> None:
    """One browser tab: page, health, websocket, then page runs until the deadline."""
    for path in ("/", "/_stcore/health"):
        stats["http"].append(await asyncio.to_thread(_get, base + path))
    uri = base.replace("http://", "ws://") + "/_stcore/stream"
    async with websockets.connect(uri, subprotocols=["streamlit"], origin=base, max_size=None) as socket_:
        while time.time() < deadline or not stats_for(stats, socket_):
            started = time.perf_counter()
            await socket_.send(_rerun())
            while True:
                raw = await asyncio.wait_for(socket_.recv(), timeout=240)
                message = forward_pb2.ForwardMsg()
                message.ParseFromString(raw)
                kind = message.WhichOneof("type")
                if kind == "delta" and message.delta.new_element.WhichOneof("type") == "exception":
                    stats["errors"].append(message.delta.new_element.exception.message)
                if kind == "script_finished":
                    if message.script_finished != forward_pb2.ForwardMsg.FINISHED_SUCCESSFULLY:
                        stats["errors"].append(f"script finished with status {message.script_finished}")
                    break
            stats["runs"].append(time.perf_counter() - started)
            stats["per_socket"].append(id(socket_))


def stats_for(stats: dict[str, list], socket_: object) -> bool:
    """Whether this session has completed at least one page run (each session must get one)."""
    return id(socket_) in stats["per_socket"]


async def _load(base: str, seconds: float, sessions: int = SESSIONS) -> dict[str, list]:
    stats: dict[str, list] = {"http": [], "runs": [], "errors": [], "per_socket": []}
    deadline = time.time() + seconds
    results = await asyncio.gather(*(_session(base, deadline, stats) for _ in range(sessions)), return_exceptions=True)
    stats["failures"] = [repr(r) for r in results if isinstance(r, BaseException)]
    return stats


def _percentiles(values: list[float]) -> str:
    p50, p95, p99 = np.percentile(np.asarray(values) * 1000, [50, 95, 99])
    return f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, max {max(values) * 1000:.0f} ms (n={len(values)})"


def test_twenty_sessions_at_once(server: str) -> None:
    warm = asyncio.run(_load(server, 0.0, sessions=1))  # the first run imports the engine: not what we measure
    assert warm["failures"] == [] and warm["errors"] == []
    stats = asyncio.run(_load(server, LOAD_SECONDS))
    assert stats["failures"] == []
    assert stats["errors"] == []
    assert len(set(stats["per_socket"])) == SESSIONS  # every session got its pages
    assert len(stats["http"]) == 2 * SESSIONS
    print(
        f"\n{SESSIONS} sessions for {LOAD_SECONDS:.0f} s: HTTP {_percentiles(stats['http'])}; "
        f"page runs {_percentiles(stats['runs'])}; {len(stats['runs']) / LOAD_SECONDS:.1f} runs/s"
    )
