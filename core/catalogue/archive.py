"""Catalogue ZIPs opened safely: size, member count, compression ratio and path checks before anything
is extracted; members with absolute paths, ``..``, links, special files, encryption or duplicates are
never extracted, and rows naming them are reported instead. A name stored twice is ambiguous (ZIP tools
disagree on which copy wins), so neither copy is imported, and the report says exactly that."""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.catalogue.format import INDIVIDUALS_NAME, MANIFEST_NAME
from core.engine.images import MAX_BYTES
from core.errors import ScuteError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_RATIO_FLOOR = 1 << 20  # members smaller than this cannot do harm whatever their ratio


class ArchiveError(ScuteError):
    """The ZIP cannot be imported at all (not a ZIP, too large, a zip bomb, no manifest)."""


@dataclass(frozen=True)
class ZipLimits:
    """What an imported ZIP may hold; the defaults admit a catalogue of some ten thousand field photos."""

    max_archive_bytes: int = 16 << 30
    max_members: int = 50_000
    max_total_bytes: int = 16 << 30  # sum of the members' uncompressed sizes
    max_member_bytes: int = MAX_BYTES  # the largest photo Scute accepts anyway
    max_csv_bytes: int = 64 << 20
    max_ratio: float = 100.0  # uncompressed / compressed, for members above 1 MiB

    def __post_init__(self) -> None:
        for name in ("max_archive_bytes", "max_members", "max_total_bytes", "max_member_bytes", "max_csv_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive")
        if not self.max_ratio >= 1:
            raise ValueError("max_ratio must be at least 1")


@dataclass(frozen=True)
class ImportProblem:
    """Something left out: ``where`` is e.g. ``manifest.csv line 7`` or ``archive member '../x.jpg'``.

    ``kind``: ``row`` (a manifest or individuals.csv row skipped), ``member`` (an archive entry never
    extracted) or ``warning`` (the row was imported, but not all of it).
    """

    where: str
    reason: str
    kind: str = "row"

    def __str__(self) -> str:
        return f"{'warning: ' if self.kind == 'warning' else ''}{self.where}: {self.reason}"


def _human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _member_name(raw: str) -> tuple[str | None, str]:
    """The normalised member name, or None and why it is unsafe (absolute, leaves the archive, …)."""
    if "\x00" in raw:
        return None, "its name contains a NUL character"
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None, "it has an absolute path"
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None, "its path leads out of the archive (..)"
    return "/".join(parts), ""


def _member_kind_problem(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if mode and stat.S_ISLNK(mode):
        return "it is a symbolic link"
    if mode and stat.S_IFMT(mode) and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return "it is not a regular file"
    if info.flag_bits & 0x1:
        return "it is encrypted"
    return ""


class CatalogueArchive:
    """An opened, checked catalogue ZIP. Use :func:`open_archive`; members are read only by checked names."""

    def __init__(self, path: Path, limits: ZipLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or ZipLimits()
        self.members: dict[str, zipfile.ZipInfo] = {}
        self.unsafe: dict[str, str] = {}  # normalised (or raw) name -> why it is not extracted
        self.problems: list[ImportProblem] = []
        self._zip = self._open()
        try:
            self._check()
            self.base, self.manifest_name = self._find_manifest()
        except BaseException:
            self._zip.close()
            raise
        individuals = posixpath.join(self.base, INDIVIDUALS_NAME) if self.base else INDIVIDUALS_NAME
        self.individuals_name: str | None = individuals if individuals in self.members else None

    def _open(self) -> zipfile.ZipFile:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise ArchiveError(f"The archive {self.path} does not exist.") from None
        except OSError as exc:
            raise ArchiveError(f"Cannot read {self.path}: {exc.strerror or exc}.") from None
        if not self.path.is_file():
            raise ArchiveError(f"{self.path} is not a file.")
        if size > self.limits.max_archive_bytes:
            raise ArchiveError(
                f"The archive {self.path.name} is {_human(size)}, more than the "
                f"{_human(self.limits.max_archive_bytes)} Scute imports in one go; split it."
            )
        try:
            return zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError):
            raise ArchiveError(f"{self.path.name} is not a ZIP archive (or it is damaged).") from None
        except OSError as exc:
            raise ArchiveError(f"Cannot read {self.path}: {exc.strerror or exc}.") from None

    def _check(self) -> None:
        infos = self._zip.infolist()
        limits = self.limits
        if len(infos) > limits.max_members:
            raise ArchiveError(
                f"The archive holds {len(infos)} entries, more than the {limits.max_members} allowed; split it."
            )
        total = sum(info.file_size for info in infos)
        if total > limits.max_total_bytes:
            raise ArchiveError(
                f"The archive would unpack to {_human(total)}, more than the "
                f"{_human(limits.max_total_bytes)} allowed; split it."
            )
        for info in infos:
            if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                raise ArchiveError(
                    f"The archive member {info.filename[:80]!r} expands {ratio:.0f} times (more than "
                    f"{limits.max_ratio:.0f}); this looks like a zip bomb and nothing was imported."
                )
        copies = Counter(name for info in infos if not info.is_dir() and (name := _member_name(info.filename)[0]))
        for info in infos:
            name, reason = _member_name(info.filename)
            if name is None:
                self._skip(info.filename, reason)
                continue
            if info.is_dir() or not name:
                continue
            if copies[name] > 1:
                # ZIP tools disagree on which copy wins (the first, the last, or ask): none is taken as meant.
                if name not in self.unsafe:
                    self._skip(name, f"it appears {copies[name]} times in the archive, so no copy of it is imported")
                continue
            reason = _member_kind_problem(info)
            if not reason and info.file_size > max(limits.max_member_bytes, limits.max_csv_bytes):
                reason = f"it is larger than {_human(max(limits.max_member_bytes, limits.max_csv_bytes))}"
            if reason:
                self._skip(name, reason)
                continue
            self.members[name] = info

    def _skip(self, name: str, reason: str) -> None:
        self.unsafe.setdefault(name, reason)
        self.problems.append(ImportProblem(f"archive member {name[:200]!r}", f"not extracted: {reason}", "member"))
        log.warning("Archive member %r not extracted: %s", name[:200], reason)

    def _find_manifest(self) -> tuple[str, str]:
        if MANIFEST_NAME in self.members:
            return "", MANIFEST_NAME
        nested = sorted(n for n in self.members if n.count("/") == 1 and n.endswith("/" + MANIFEST_NAME))
        if len(nested) == 1:
            return nested[0].rsplit("/", 1)[0], nested[0]
        if nested:
            raise ArchiveError(
                f"The archive holds several manifests ({', '.join(nested[:5])}); import them one at a time."
            )
        refused = sorted(n for n in self.unsafe if n.count("/") <= 1 and posixpath.basename(n) == MANIFEST_NAME)
        if refused:
            raise ArchiveError(f"The archive's {refused[0][:200]} cannot be used: {self.unsafe[refused[0]]}.")
        raise ArchiveError(
            f"The archive has no {MANIFEST_NAME} (columns path,identity[,side]) at its top or in one top folder."
        )

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> CatalogueArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, manifest_path: str) -> tuple[str | None, str]:
        """The member a manifest path names (relative to the manifest), or None and why not."""
        if not manifest_path.strip():
            return None, "the path is empty"
        name, reason = _member_name(posixpath.join(self.base, manifest_path) if self.base else manifest_path)
        if name is None:
            return None, f"the path is not allowed: {reason}"
        if name in self.members:
            return name, ""
        if name in self.unsafe:
            return None, f"the file was not extracted: {self.unsafe[name]}"
        return None, "the file is not in the archive"

    def read(self, name: str, limit: int) -> bytes:
        """A member's bytes, never more than ``limit`` and never more than its header declares."""
        info = self.members[name]
        if info.file_size > limit:
            raise ScuteError(f"it is larger than {_human(limit)}")
        buffer = bytearray()
        try:
            with self._zip.open(info) as handle:
                while chunk := handle.read(_CHUNK):
                    buffer += chunk
                    if len(buffer) > min(limit, info.file_size):
                        raise ScuteError("it holds more data than the archive declares")
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
            raise ScuteError(f"it is damaged in the archive ({exc})") from None
        except OSError as exc:
            raise ScuteError(f"it cannot be read from the archive ({exc.strerror or exc})") from None
        return bytes(buffer)

    def extract(self, name: str, root: Path, limit: int) -> Path:
        """Write one checked member under ``root`` (a private, fresh folder) by its checked name."""
        data = self.read(name, limit)
        dest = root.joinpath(*name.split("/"))
        if not dest.resolve().is_relative_to(root.resolve()):  # pragma: no cover - names are checked
            raise ScuteError("the path leads out of the archive")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "xb") as handle:
                handle.write(data)
        except FileExistsError:
            pass  # named twice in this chunk of the manifest: already there
        except OSError as exc:
            raise ScuteError(f"it cannot be unpacked ({exc.strerror or exc})") from None
        return dest


@contextlib.contextmanager
def open_archive(path: Path, limits: ZipLimits | None = None) -> Iterator[CatalogueArchive]:
    """Open and check a catalogue ZIP; raises :class:`ArchiveError` before anything is written."""
    archive = CatalogueArchive(path, limits)
    try:
        yield archive
    finally:
        archive.close()
