"""Files written all or nothing, and content hashes: one implementation for every writer in Scute.

A crash (or ``kill -9``) while writing leaves either the old file or none, never half of one: data goes
to a temporary file beside the target (named with :data:`TEMP_PREFIX`, so ``check`` can find leftovers),
is flushed and fsynced, renamed over the target, and the rename itself is made durable by syncing the
folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: Temporary files of atomic writes start with this; ``core.store.integrity`` reports old ones.
TEMP_PREFIX = ".tmp-"
#: Photos and feature files are meant to be read by other tools of the same project too.
SHARED_FILE_MODE = 0o644
#: The gallery database, the photo store and backups hold personal data and password hashes: owner only.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = SHARED_FILE_MODE) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` only when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, *, mode: int = SHARED_FILE_MODE) -> None:
    """Replace ``path`` with ``data``, all or nothing."""
    with atomic_output(path, mode=mode) as handle:
        handle.write(data)


def write_once(path: Path, data: bytes, *, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` unless it exists; whether this call created it.

    The data is written under a temporary name and hard-linked into place, which fails if the name
    exists: no reader ever sees half a file, and of two processes racing, exactly one wins.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def atomic_copy(source: Path, dest: Path, *, mode: int = SHARED_FILE_MODE) -> None:
    """Copy ``source`` over ``dest``, all or nothing."""
    with atomic_output(dest, mode=mode) as handle, Path(source).open("rb") as original:
        shutil.copyfileobj(original, handle, _CHUNK)


def publish(part: Path, dest: Path) -> None:
    """Make a finished temporary file (written by another library: SQLite, pg_dump) the real ``dest``."""
    with Path(part).open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(part, dest)
    fsync_dir(Path(dest).parent)


def fsync_dir(directory: Path) -> None:
    """Persist a rename inside ``directory``; not possible on every platform, hence best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> Path:
    """``mkdir -p`` where every folder it creates is owner-only (``mkdir``'s own mode is subject to umask)."""
    path = Path(path)
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # made meanwhile by another writer; leave its mode alone
            continue
        os.chmod(folder, PRIVATE_DIR_MODE)
    return path


def sha256_hex(data: bytes) -> str:
    """The content address of ``data`` (lowercase hex)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The content address of a file, read in chunks so large files cost little memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
