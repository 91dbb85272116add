"""Catalogue manifests: CSV files whose rows name a photo (``path``), who it shows (``identity``) and,
optionally, which ``side`` and at which ``encounter`` (a date or event id: the evaluation keeps an encounter's
near-duplicate photos on one side of its split) and, optionally, the tags of its individual (``flipper_tags``,
``pit_tags``, ``alternate_ids``, ``;``-separated). The import, the ZIP archives and the evaluation read them here."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from core.catalogue.format import TAG_COLUMNS, unescape_cell
from core.errors import ManifestError


@dataclass(frozen=True)
class ManifestRow:
    path: str
    identity: str
    side: str = "unknown"
    encounter: str = ""
    date: str = ""  # when the photo was taken (ISO 8601, column ``date`` or ``taken_at``), for photos without EXIF
    tags: tuple[tuple[str, str], ...] = ()  # (kind, value) from flipper_tags, pit_tags, alternate_ids; unchecked


def csv_rows(data: bytes, what: str, *, keep: frozenset[str] = frozenset()) -> tuple[list[str], list[dict[str, str]]]:
    """Header (lower case) and rows of CSV bytes; values are stripped except in the ``keep`` columns (free text).

    ``what`` names the file in messages ("The archive's manifest.csv").
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError(f"{what} is not UTF-8 text.") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [(f or "").strip().lower() for f in reader.fieldnames or []]
        rows = []
        for raw in reader:
            # Extra fields beyond the header come as a list under the key None: ignore them.
            row = {(k or "").strip().lower(): v or "" for k, v in raw.items() if k is not None}
            rows.append({k: v if k in keep else v.strip() for k, v in row.items()})
    except csv.Error as exc:  # e.g. a field over csv's size limit
        raise ManifestError(f"{what} cannot be read as CSV ({exc}).") from None
    return fields, rows


def parse_manifest(data: bytes, what: str) -> tuple[list[ManifestRow], list[dict[str, str]]]:
    """The rows, plus every column of each (for the extras a Scute export carries)."""
    fields, raw = csv_rows(data, what)
    if not {"path", "identity"} <= set(fields):
        raise ManifestError(f"{what} needs the columns path and identity (found: {', '.join(fields) or 'none'}).")
    rows = [
        ManifestRow(
            r.get("path", ""),
            r.get("identity", ""),
            r.get("side") or "unknown",
            r.get("encounter", ""),
            r.get("date") or r.get("taken_at", ""),
            _tags(r),
        )
        for r in raw
    ]
    return rows, raw


def _tags(row: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The row's individual's tags, ``;``-separated per column, as typed (the import checks them)."""
    return tuple(
        (kind, piece.strip())
        for column, kind in TAG_COLUMNS.items()
        for piece in unescape_cell(row.get(column, "")).split(";")
        if piece.strip()
    )


def read_manifest(manifest: Path) -> list[ManifestRow]:
    """Rows of a ``path,identity[,side]`` CSV file; a file without those columns is refused."""
    try:
        data = Path(manifest).read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"The manifest {manifest} does not exist.") from None
    except OSError as exc:
        raise ManifestError(f"The manifest {manifest} cannot be read ({exc.strerror or exc}).") from None
    return parse_manifest(data, f"The manifest {manifest}")[0]
