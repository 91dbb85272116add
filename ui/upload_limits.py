"""How much one browser tab may keep in uploads, and what to tell the volunteer when it is reached.

Streamlit keeps every file a tab uploads in server memory until the tab's session ends (ten minutes after
it closes), even after the page has taken the photo into its own list. ``serve.py``'s guard refuses
uploads beyond these caps (``ui.http_guard``); Streamlit's upload widget can only say "status code 413",
so every signed-in page also says it in words once the cap is reached (:func:`notice`).
"""

from __future__ import annotations

MAX_SESSION_FILES = 60
"""Uploaded files one browser tab may keep (the Identify list of a long day in the field)."""
MAX_SESSION_BYTES = 600 * 1024 * 1024
"""Bytes one browser tab may keep in uploads."""


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.0f} MB"


def kept(session_id: str | None) -> tuple[int, int]:
    """Files and bytes Streamlit keeps in memory for this browser session (all its uploads so far)."""
    from streamlit.runtime import Runtime

    if session_id is None or not Runtime.exists():
        return 0, 0
    manager = Runtime.instance().uploaded_file_mgr
    storage = getattr(manager, "file_storage", {}).get(session_id, {})
    return len(storage), sum(len(rec.data) for rec in list(storage.values()))


def refusal(
    files: int,
    size: int,
    incoming: int = 0,
    max_files: int | None = None,
    max_bytes: int | None = None,
) -> str | None:
    """Why one more upload of ``incoming`` bytes is refused, or None when it fits (caps default to this module's)."""
    max_files = MAX_SESSION_FILES if max_files is None else max_files
    max_bytes = MAX_SESSION_BYTES if max_bytes is None else max_bytes
    if files < max_files and size + incoming <= max_bytes:
        return None
    return (
        f"This tab already keeps {files} uploaded files ({_mb(size)}); at most {max_files} files or "
        f"{_mb(max_bytes)} are kept. Sign out and in again to upload more."
    )


def notice(session_id: str | None) -> str | None:
    """The refusal a further upload from this tab would get (so the page can say it before the widget fails)."""
    files, size = kept(session_id)
    return refusal(files, size, incoming=1)
