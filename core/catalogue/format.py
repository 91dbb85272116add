"""The catalogue's files: their names and columns, and CSV cells that no spreadsheet runs as a formula.

Text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or carriage
return) are written with a leading apostrophe, and so is text that starts with an apostrophe, so that
import can strip exactly one again. Every exported CSV is written so, ``manifest.csv`` included (its
``original_name`` is whatever name a volunteer's file had, and its ``identity`` any code): the imports
strip the apostrophe from identities and original names, so an unzipped ``manifest.csv`` is still a
plain manifest for ``python -m core import --manifest``. :func:`csv_bytes` is the one writer of such CSV,
for the Evaluate page's download too.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

MANIFEST_NAME = "manifest.csv"
INDIVIDUALS_NAME = "individuals.csv"
CATALOGUE_ZIP = "catalogue.zip"
MANIFEST_COLUMNS = (
    "path",
    "identity",
    "side",
    "sha256",
    "taken_at",
    "latitude",
    "longitude",
    "crop",
    "rotation",
    "original_name",
)
INDIVIDUAL_COLUMNS = (
    "code",
    "name",
    "species",
    "status",
    "merged_into",
    "notes",
    "photos",
    "first_seen",
    "last_seen",
    "created_at",
    "flipper_tags",
    "pit_tags",
    "alternate_ids",
)
TAG_COLUMNS: dict[str, str] = {"flipper_tags": "flipper", "pit_tags": "pit", "alternate_ids": "alternate"}
"""Optional columns of ``individuals.csv``: an individual's tags of one kind, separated by ``;``."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_cell(text: str) -> str:
    """Neutralise spreadsheet formulas: ``=1+1`` is written ``'=1+1``; see the module docstring."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def unescape_cell(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def cell(value: Any, escape: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return escape_cell(text) if escape else text


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="seconds")


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]], *, escape: bool = True) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([cell(value, escape) for value in row])
    return buffer.getvalue().encode("utf-8")


def crop_text(crop: tuple[float, float, float, float] | None) -> str:
    return "" if crop is None else " ".join(repr(float(v)) for v in crop)
