"""Streamlit helpers shared by ``app.py`` and ``pages/``: sessions, cached resources, shared widgets.

Only UI lives here; every computation goes through ``core`` (mostly ``core.service.appstate``).
"""
