"""Content-addressed photo storage: a photo's file name is the SHA-256 of its bytes.

Identical uploads share one file, a file never changes once written, and names come only from the
hash and an allow-listed suffix, never from what the uploader called the file. Files are 0600 and
folders 0700: volunteers' photos carry locations and faces, and other accounts on the server need none.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from core.io import PRIVATE_FILE_MODE, atomic_write, make_private_dir, sha256_file, sha256_hex

log = logging.getLogger(__name__)

ALLOWED_SUFFIXES: frozenset[str] = frozenset({".jpg", ".png", ".webp", ".tif", ".heic"})
"""Suffixes the caller may choose, from the image format it detected in the bytes."""

#: The suffix a stored photo gets for each image format that :mod:`core.engine.images` detects.
SUFFIX_FOR_FORMAT: dict[str, str] = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "HEIF": ".heic"}

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def check_suffix(suffix: str) -> str:
    """Return ``suffix`` if it is on the allow-list, else raise ValueError (no case folding, no aliases)."""
    if suffix not in ALLOWED_SUFFIXES:
        raise ValueError(f"suffix {suffix!r} is not one of {sorted(ALLOWED_SUFFIXES)}")
    return suffix


@dataclass(frozen=True)
class StoredPhoto:
    """Where ``put`` left the bytes; ``created`` is False when the same content was already stored."""

    sha256: str
    relpath: str
    created: bool


class PhotoStore:
    """Photos under ``root/ab/cd/<sha256><suffix>``; two directory levels keep directories small."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"PhotoStore({str(self.root)!r})"

    @staticmethod
    def relpath_for(sha256: str, suffix: str) -> str:
        """The relative path (POSIX separators, as stored in the database) for a hash and suffix."""
        if not _SHA256_RE.fullmatch(sha256):
            raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}{check_suffix(suffix)}"

    def put(self, data: bytes, suffix: str) -> StoredPhoto:
        """Store ``data`` unless the same content is already there; atomic, so never half-written."""
        if not data:
            raise ValueError("refusing to store an empty photo")
        sha = sha256_hex(data)
        relpath = self.relpath_for(sha, suffix)
        dest = self.path(relpath)
        if dest.is_file():
            if dest.stat().st_size == len(data):
                return StoredPhoto(sha, relpath, created=False)
            # Same name, wrong size: damaged on disk (not by us: we replace atomically). Repair it.
            log.warning("Stored photo %s has the wrong size; rewriting it", relpath)
        make_private_dir(dest.parent)
        atomic_write(dest, data, mode=PRIVATE_FILE_MODE)
        log.debug("Stored photo %s (%d bytes)", relpath, len(data))
        return StoredPhoto(sha, relpath, created=True)

    def path(self, relpath: str) -> Path:
        """Absolute path of a stored file; refuses absolute paths and anything resolving outside root."""
        if not relpath or "\x00" in relpath:
            raise ValueError(f"invalid photo path {relpath!r}")
        candidate = Path(relpath)
        if candidate.is_absolute() or candidate.drive:
            raise ValueError(f"photo path must be relative to the store: {relpath!r}")
        resolved = (self.root / candidate).resolve()
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise ValueError(f"photo path escapes the store: {relpath!r}")
        return resolved

    def exists(self, relpath: str) -> bool:
        return self.path(relpath).is_file()

    def verify(self, relpath: str, sha256: str) -> bool:
        """True when the file exists and its bytes still hash to ``sha256`` (detects bit rot, tampering)."""
        try:
            return sha256_file(self.path(relpath)) == sha256.lower()
        except FileNotFoundError:
            return False
