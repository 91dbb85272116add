"""core.io: the one atomic write, the write-once file and content hashes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from core import io


def test_atomic_write_replaces_a_file_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a" / "b.bin"
    io.atomic_write(target, b"first")
    assert target.read_bytes() == b"first" and stat.S_IMODE(target.stat().st_mode) == io.SHARED_FILE_MODE

    def crash(*args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(io.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        io.atomic_write(target, b"second")
    monkeypatch.undo()
    assert target.read_bytes() == b"first"  # the old content survives
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.bin"]  # and no temporary file is left


def test_an_error_inside_atomic_output_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "c.bin"
    io.atomic_write(target, b"kept")
    with pytest.raises(ValueError), io.atomic_output(target) as handle:
        handle.write(b"half of a new")
        raise ValueError("the writer failed half-way")
    assert target.read_bytes() == b"kept" and os.listdir(tmp_path) == ["c.bin"]


def test_write_once_has_exactly_one_winner(tmp_path: Path) -> None:
    target = tmp_path / "key"
    won: list[bool] = []
    threads = [
        threading.Thread(target=lambda i=i: won.append(io.write_once(target, bytes([i]) * 32))) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert won.count(True) == 1 and len(won) == 8
    content = target.read_bytes()
    assert len(content) == 32 and len(set(content)) == 1  # one writer's bytes, whole
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["key"]


def test_publish_and_hashes(tmp_path: Path) -> None:
    part = tmp_path / "dump.part"
    part.write_bytes(b"x" * 3_000_000)
    io.publish(part, tmp_path / "dump")
    assert not part.exists()
    assert io.sha256_file(tmp_path / "dump") == io.sha256_hex(b"x" * 3_000_000)
    copy = tmp_path / "copy"
    io.atomic_copy(tmp_path / "dump", copy)
    assert copy.read_bytes() == (tmp_path / "dump").read_bytes()
