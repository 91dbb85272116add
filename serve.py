"""Serve Scute: ``streamlit run serve.py`` (what a deployment runs; ``streamlit run app.py`` is for development).

The same app as ``app.py``, with :class:`ui.http_guard.HttpGuard` in front of Streamlit's web server:
security headers on every response, ``/_stcore/metrics`` closed, and uploads accepted only from signed-in
browser sessions, capped per session; the session cookie is set by the server, ``HttpOnly``. Streamlit
finds the ``app`` below and serves it through uvicorn with the settings of ``.streamlit/config.toml``.
"""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from ui import context
from ui.http_guard import HttpGuard

context.server_sets_cookie = True  # the guard answers /scute/session and sets the cookie HttpOnly
app = st.App(Path(__file__).resolve().parent / "app.py", middleware=[Middleware(HttpGuard)])
