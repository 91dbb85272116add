"""Which uploaded file a manifest row means, when the photos come as loose browser uploads.

Why: two cameras both write ``IMG_0001.JPG``. Matching by file name alone filed one camera's photo under
the other's individual. A row is matched to the uploads whose path agrees with the row's path (the same
file name, and where both carry folders, the same folders from the end: ``cam1/IMG_0001.JPG`` is not
``cam2/IMG_0001.JPG``; a folder upload may add a top folder). A ``sha256`` column narrows the match to that
content. Uploads with the same content are one photo whatever their names. When the best match still
leaves several different photos, the row is refused with the reason and the ways out; it is never guessed.

Names are labels only: nothing here touches the disk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.catalogue.manifest import ManifestRow
from core.io import sha256_hex

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its name as the browser sent it (may hold folders), its bytes and their SHA-256."""

    name: str
    data: bytes
    sha256: str

    @property
    def parts(self) -> tuple[str, ...]:
        return path_parts(self.name)


@dataclass(frozen=True)
class Matched:
    """A manifest row (``line`` in the CSV, header = 1) and the upload it means."""

    line: int
    row: ManifestRow
    upload: Upload


@dataclass(frozen=True)
class Unmatched:
    line: int
    path: str
    reason: str


def path_parts(name: str) -> tuple[str, ...]:
    """``"a\\b/./c.jpg"`` → ``("a", "b", "c.jpg")``: folders and file name, without empty, ``.`` or ``..`` parts."""
    return tuple(part for part in name.replace("\\", "/").split("/") if part not in ("", ".", ".."))


def uploads_of(files: Iterable[tuple[str, bytes]] | Mapping[str, bytes]) -> list[Upload]:
    """The uploads as :class:`Upload`, in the order given (a mapping's items, or (name, bytes) pairs)."""
    pairs = files.items() if isinstance(files, Mapping) else files
    return [Upload(str(name), bytes(data), sha256_hex(bytes(data))) for name, data in pairs]


def _common_tail(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _compatible(row: Sequence[str], upload: Sequence[str]) -> int:
    """How many trailing parts agree (0: not the same file): one path must end with the whole of the other."""
    tail = _common_tail(row, upload)
    return tail if tail and tail == min(len(row), len(upload)) else 0


def match_rows(
    rows: Sequence[ManifestRow], raw_rows: Sequence[Mapping[str, str]], uploads: Sequence[Upload]
) -> tuple[list[Matched], list[Unmatched]]:
    """Each row's upload, or why it has none; see the module docstring. ``raw_rows``: every column of each row."""
    by_name: dict[str, list[Upload]] = {}
    for upload in uploads:
        if upload.parts:
            by_name.setdefault(upload.parts[-1], []).append(upload)
    matched: list[Matched] = []
    unmatched: list[Unmatched] = []
    for index, row in enumerate(rows):
        line = index + 2
        found, reason = _match(row, raw_rows[index] if index < len(raw_rows) else {}, by_name)
        if found is None:
            unmatched.append(Unmatched(line, row.path, reason))
        else:
            matched.append(Matched(line, row, found))
    return matched, unmatched


def _match(row: ManifestRow, raw: Mapping[str, str], by_name: Mapping[str, list[Upload]]) -> tuple[Upload | None, str]:
    parts = path_parts(row.path)
    if not parts:
        return None, "the path is empty"
    named = by_name.get(parts[-1], [])
    scored = [(_compatible(parts, upload.parts), upload) for upload in named]
    scored = [(score, upload) for score, upload in scored if score]
    if not scored:
        if named:
            return None, f"the uploaded files named {parts[-1]} are in other folders ({_folders(named)})"
        return None, "the photo was not among the uploaded files"
    best = max(score for score, _ in scored)
    candidates = [upload for score, upload in scored if score == best]
    sha = (raw.get("sha256") or "").strip().lower()
    if sha:
        if not _SHA256_RE.fullmatch(sha):
            return None, f"sha256 is not a SHA-256 checksum: {sha[:70]!r}"
        candidates = [upload for upload in candidates if upload.sha256 == sha]
        if not candidates:
            return None, f"no uploaded file named {parts[-1]} has the sha256 the manifest gives"
    contents = {upload.sha256 for upload in candidates}
    if len(contents) > 1:
        return None, (
            f"{len(candidates)} different uploaded photos are named {parts[-1]} ({_folders(candidates)}) and "
            "this row does not say which one it means: give the files different names, add a sha256 column "
            "to the manifest, or import a ZIP (it keeps the folders)"
        )
    return candidates[0], ""


def _folders(uploads: Sequence[Upload]) -> str:
    names = ["/".join(upload.parts) for upload in uploads[:4]]
    return ", ".join(names) + (", …" if len(uploads) > 4 else "")
