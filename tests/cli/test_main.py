"""``python -m core`` (core/__main__.py) as a shell runs it: output piped into a reader that stops early.

Issue 15: ``python -m core sightings show 1 | head`` printed a BrokenPipeError traceback. A real process, a
real pipe whose reader has gone, a real SQLite gallery with a sighting on a real turtle photo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.review.sightings import submit_sighting
from core.review.users import create_user
from core.store.db import init_db, session_scope
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def gallery_with_a_sighting(tmp_path: Path, turtle_manifest: list[dict[str, object]]) -> tuple[Path, int]:
    home = tmp_path / "home"
    db = init_db(f"sqlite:///{home / 'gallery.db'}")
    with session_scope(db) as session:
        admin = create_user(session, "vera", "correct horse battery", "admin", actor=None)
        submission = submit_sighting(
            session,
            PhotoStore(home / "photos"),
            admin,
            Path(str(turtle_manifest[0]["path"])).read_bytes(),
            candidates=[],
            new_individual_probability=None,
            notes="seen at the reef\n" * 50,
        )
        sighting = submission.sighting.id
    db.dispose()
    return home, sighting  # type: ignore[return-value]


def test_a_reader_that_stops_early_ends_the_command_quietly(
    gallery_with_a_sighting: tuple[Path, int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (a new one takes 20 s to import torch here): stdout is a pipe whose reader is gone."""
    from core.__main__ import BROKEN_PIPE_STATUS, run

    home, sighting = gallery_with_a_sighting
    monkeypatch.setenv("SCUTE_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "argv", ["core", "sightings", "show", str(sighting)])
    assert run() == 0 and f"Sighting {sighting}: pending" in capsys.readouterr().out

    read, write = os.pipe()
    os.close(read)  # `| head -0`: the reader has gone before the command writes a byte
    with capsys.disabled(), os.fdopen(write, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        assert run() == BROKEN_PIPE_STATUS == 141  # what a shell reports for a program ended by SIGPIPE
        pipe.write("more output after the reader left\n")  # goes nowhere, raises nothing
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_reader_that_stops_early_ends_the_process_quietly(gallery_with_a_sighting: tuple[Path, int]) -> None:
    """The same with a real ``python -m core`` process, whose interpreter flushes stdout once more at exit."""
    home, sighting = gallery_with_a_sighting
    env = {**os.environ, "SCUTE_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("DATABASE_URL", None)
    read, write = os.pipe()
    os.close(read)
    try:
        command = [sys.executable, "-m", "core", "sightings", "show", str(sighting)]
        cut = subprocess.run(command, env=env, cwd=home, stdout=write, stderr=subprocess.PIPE, timeout=300)
    finally:
        os.close(write)
    stderr = cut.stderr.decode()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr and "Exception ignored" not in stderr, stderr
    assert cut.returncode == 141
