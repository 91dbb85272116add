"""core.store: content addressing, atomic writes, path containment, verification."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fixtures.photos import image_bytes

import core.io
from core.store.photos import PhotoStore, StoredPhoto


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(("fmt", "suffix"), [("PNG", ".png"), ("JPEG", ".jpg")])
def test_put_is_content_addressed(store: PhotoStore, fmt: str, suffix: str) -> None:
    data = image_bytes(1, fmt)
    sha = hashlib.sha256(data).hexdigest()
    stored = store.put(data, suffix)
    assert stored == StoredPhoto(sha256=sha, relpath=f"{sha[:2]}/{sha[2:4]}/{sha}{suffix}", created=True)
    path = store.root / sha[:2] / sha[2:4] / f"{sha}{suffix}"
    assert path.read_bytes() == data
    assert store.path(stored.relpath) == path
    assert files_under(store.root) == [path]
    assert path.stat().st_mode & 0o777 == 0o600  # issue 15: owner only, files and the folders made for them
    assert {p.stat().st_mode & 0o777 for p in (path.parent, path.parent.parent)} == {0o700}


def test_same_content_is_not_rewritten(store: PhotoStore, monkeypatch) -> None:
    data = image_bytes(2)
    first = store.put(data, ".png")
    path = store.path(first.relpath)
    mtime = path.stat().st_mtime_ns

    def no_write(*args, **kwargs):
        raise AssertionError("an existing photo must not be rewritten")

    monkeypatch.setattr(core.io.os, "replace", no_write)
    second = store.put(data, ".png")
    assert second == StoredPhoto(first.sha256, first.relpath, created=False)
    assert path.stat().st_mtime_ns == mtime
    assert files_under(store.root) == [path]


def test_different_content_gets_different_files(store: PhotoStore) -> None:
    a = store.put(image_bytes(3), ".png")
    b = store.put(image_bytes(4), ".png")
    assert a.sha256 != b.sha256
    assert len(files_under(store.root)) == 2


def test_damaged_file_is_repaired(store: PhotoStore) -> None:
    data = image_bytes(5)
    stored = store.put(data, ".png")
    path = store.path(stored.relpath)
    path.write_bytes(data[: len(data) // 2])  # truncated by something outside Scute
    again = store.put(data, ".png")
    assert again.created is True
    assert path.read_bytes() == data


@pytest.mark.parametrize("suffix", ["", "png", ".JPG", ".jpeg", ".exe", ".png/../../x", "/../x.png", ".png\x00"])
def test_put_rejects_suffix_outside_allow_list(store: PhotoStore, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        store.put(image_bytes(6), suffix)
    assert files_under(store.root) == []


def test_put_rejects_empty_data(store: PhotoStore) -> None:
    with pytest.raises(ValueError, match="empty"):
        store.put(b"", ".png")
    assert files_under(store.root) == []


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_crash_mid_write_leaves_no_file(store: PhotoStore, monkeypatch, failing: str) -> None:
    """A failure before the rename leaves neither the photo nor the temporary file behind."""

    def crash(*args, **kwargs):
        raise OSError("disk pulled out")

    monkeypatch.setattr(core.io.os, failing, crash)
    data = image_bytes(7)
    with pytest.raises(OSError, match="disk pulled out"):
        store.put(data, ".png")
    assert files_under(store.root) == []
    monkeypatch.undo()
    stored = store.put(data, ".png")  # and the next try works normally
    assert stored.created is True
    assert files_under(store.root) == [store.path(stored.relpath)]


def test_crash_does_not_damage_existing_copy(store: PhotoStore, monkeypatch) -> None:
    data = image_bytes(8)
    stored = store.put(data, ".png")
    path = store.path(stored.relpath)
    path.write_bytes(b"short")  # damaged, so put will rewrite it

    def crash(*args, **kwargs):
        raise OSError("crash")

    monkeypatch.setattr(core.io.os, "replace", crash)
    with pytest.raises(OSError, match="crash"):
        store.put(data, ".png")
    assert path.read_bytes() == b"short"  # untouched: the new bytes never half-overwrote it
    assert files_under(store.root) == [path]


@pytest.mark.parametrize(
    "relpath",
    ["../outside.png", "ab/../../outside.png", "ab/cd/../../../x", "/etc/passwd", "", ".", "ab/..", "a\x00b"],
)
def test_path_refuses_escape(store: PhotoStore, relpath: str) -> None:
    with pytest.raises(ValueError):
        store.path(relpath)


def test_path_refuses_symlink_out_of_root(store: PhotoStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    store.root.mkdir(parents=True)
    (store.root / "ab").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes"):
        store.path("ab/secret.png")


def test_path_allows_normal_relative_paths(store: PhotoStore) -> None:
    assert store.path("ab/cd/file.png") == store.root / "ab" / "cd" / "file.png"
    assert store.path("ab/./cd/../cd/file.png") == store.root / "ab" / "cd" / "file.png"


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = PhotoStore(Path("rel-photos"))
    assert store.root == tmp_path / "rel-photos"
    stored = store.put(image_bytes(9), ".png")
    monkeypatch.chdir("/")
    assert store.path(stored.relpath).is_file()


def test_verify(store: PhotoStore) -> None:
    data = image_bytes(10)
    stored = store.put(data, ".png")
    assert store.verify(stored.relpath, stored.sha256) is True
    assert store.verify(stored.relpath, stored.sha256.upper()) is True
    assert store.verify(stored.relpath, "0" * 64) is False
    path = store.path(stored.relpath)
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    assert store.verify(stored.relpath, stored.sha256) is False
    os.remove(path)
    assert store.verify(stored.relpath, stored.sha256) is False
    with pytest.raises(ValueError):
        store.verify("../x", stored.sha256)


def test_relpath_for_rejects_bad_hash() -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        PhotoStore.relpath_for("../" + "a" * 61, ".png")
    with pytest.raises(ValueError, match="SHA-256"):
        PhotoStore.relpath_for("A" * 64, ".png")
