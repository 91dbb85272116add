"""Checks for free text that users type (names, codes, notes, comments) and for uploaded file names.

Why: PostgreSQL refuses NUL characters in text and every driver refuses lone surrogates (a browser can
send both), so without a check such input fails deep inside the database driver with a traceback on
PostgreSQL while SQLite silently stores it. Control characters in names also break CSV exports and
terminal output. Refusing them up front gives the same clear error on every backend.

Uploaded file names are only ever labels: :func:`upload_label` keeps the last path component, drops
control characters and caps the length, so a name like ``../../etc/passwd`` is stored as ``passwd``
and never used as a path (the photo store names files by their SHA-256).
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import ScuteError

__all__ = ["MAX_LABEL_LENGTH", "TextError", "check_text", "upload_label"]

MAX_LABEL_LENGTH = 200
"""Longest stored upload file name; longer names are cut (they are labels, not identifiers)."""

# Multi-line text: C0 controls except tab/newline/carriage return, DEL, C1 controls, bidi overrides.
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# One-line text (names, codes): also no line breaks of any kind (\n, \r, \u2028, \u2029) and no tab.
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class TextError(ScuteError, ValueError):
    """Text that cannot be stored (control characters, broken Unicode, too long).

    Also a ValueError, so code that already turns ValueError into its own error keeps working.
    """


def check_text(value: object, what: str, *, max_length: int | None = None, multiline: bool = False) -> str:
    """Return ``value`` unchanged if it is storable text; raise :class:`TextError` with a clear message.

    One-line text (names, codes) may not contain any control character; multi-line text (notes,
    comments) may contain tabs and line breaks. Lone surrogates (broken Unicode) are refused.
    """
    if not isinstance(value, str):
        raise TextError(f"The {what} must be text, not {type(value).__name__}.")
    if max_length is not None and len(value) > max_length:
        raise TextError(f"The {what} is too long: at most {max_length} characters.")
    pattern = _CONTROL_MULTILINE if multiline else _CONTROL_ONE_LINE
    if pattern.search(value):
        allowed = " (tabs and line breaks are fine)" if multiline else ""
        raise TextError(f"The {what} contains control characters; please remove them{allowed}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TextError(f"The {what} contains broken Unicode characters; please retype it.") from None
    return value


def upload_label(name: object) -> str:
    """A safe display label for an uploaded file's name: last component, printable, at most 200 characters.

    Never raises: a useless name becomes ``""``. The result is metadata only, never a path.
    """
    if not isinstance(name, str):
        return ""
    name = name.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates become U+FFFD
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C" or ch == " ")
    name = name.strip().strip(".").strip()  # "..", "." and trailing dots mean nothing as a label
    return name[:MAX_LABEL_LENGTH]
