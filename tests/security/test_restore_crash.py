"""Crashes of ``restore`` and ``backup``: ``kill -9`` at moments spread over a measured run (issue 15).

* ``restore --force`` of an older backup over a live gallery, killed: the database holds the live gallery
  or the backup's, each complete (checksum of every row), never a mix or nothing; the photo files are
  unchanged, ``check`` is clean, the backup folder is unchanged and still restores.
* ``backup --out DIR`` refreshing the previous backup in DIR, killed: DIR holds the previous backup file
  for file (checksums) or the complete new one, and restores either way; the live gallery is unchanged.

Each run is ``python -m core restore|backup …`` (``core.cli.main``) in its own process, forked from a server
that has imported Scute once: a fresh interpreter needs several seconds on a busy 2-core machine, which
would make the kills land in Python's start-up instead of in the work. The kill moments are spread evenly
(with jitter) between the end of that start-up and the end of an uninterrupted run, both measured here.
The default run kills each command 3 times; ``-m slow`` runs 12 of each.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.photos import use_cheap_hashing
from fixtures.world import forkserver_context, make_world, snapshot
from PIL import Image

from core.store.db import init_db, session_scope
from core.store.gallery import add_photo
from core.store.integrity import check_database, check_files
from core.store.models import Individual
from core.store.photos import PhotoStore
from core.store.restore import read_manifest, restore

KILLED = -signal.SIGKILL
N_REAL_PHOTOS = 6
RUNS = [pytest.param(3, id="3-kills"), pytest.param(12, id="12-kills", marks=pytest.mark.slow)]


# --- the worker: the command line in a process of its own ----------------------------------------------


def _cli_worker(argv: list[str], kill_at: tuple[str, str, str] | None) -> None:
    """``kill_at`` = (module, function, "call" | "return"): SIGKILL this process there, the first time."""
    from core.cli import main

    if kill_at is not None:
        module, function, event = kill_at

        def profile(frame: Any, what: str, _arg: Any) -> None:
            if what == event and frame.f_code.co_name == function and frame.f_globals.get("__name__") == module:
                os.kill(os.getpid(), signal.SIGKILL)

        sys.setprofile(profile)
    os._exit(main(argv))


def _run(
    argv: list[str], kill_after: float | None = None, kill_at: tuple[str, str, str] | None = None
) -> tuple[int, float]:
    """Exit code (``KILLED`` when the kill came first) and seconds from start to exit."""
    process = forkserver_context().Process(target=_cli_worker, args=(argv, kill_at))
    started = time.perf_counter()
    process.start()
    if kill_after is not None:
        process.join(timeout=kill_after)
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=120)
    assert process.exitcode is not None, f"{argv[0]} hung"
    return process.exitcode, time.perf_counter() - started


def _work_window(argv: list[str], finished_argv: list[str]) -> tuple[float, float]:
    """When the work of ``finished_argv`` runs: after the start-up (measured with a run of ``argv`` that
    fails at its first check) and before the end of an uninterrupted run."""
    code, startup = _run(argv)
    assert code == 2  # the start-up run stops at its first check
    code, duration = _run(finished_argv)
    assert code == 0
    return 0.8 * startup, max(duration, startup + 0.05)


def _kill_at_random(
    run_once: Callable[[int, float], tuple[int, float, str]], window: tuple[float, float], kills: int, seed: int
) -> list[tuple[float, int, str]]:
    """Run until ``kills`` runs were killed, at moments spread evenly (with jitter) over the window; a run
    that finished before its moment (the machine got faster) shortens the window."""
    begin, end = window
    rng = random.Random(seed)
    outcomes: list[tuple[float, int, str]] = []
    killed = 0
    while killed < kills:
        assert len(outcomes) < 3 * kills, f"only {killed} of {kills} runs were killed: {outcomes}"
        moment = begin + (end - begin) * (killed + rng.random()) / kills
        code, elapsed, kind = run_once(len(outcomes), moment)
        outcomes.append((round(moment, 2), code, kind))
        if code == KILLED:
            killed += 1
        else:
            end = max(begin + 0.05, min(end, 0.9 * elapsed))
    return outcomes


# --- the gallery and what it looks like ----------------------------------------------------------------


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".tmp-")
    }


def _digest(url: str) -> str:
    """One checksum of every row of every table."""
    engine = init_db(url)
    try:
        return hashlib.sha256(repr(snapshot(engine)).encode()).hexdigest()
    finally:
        engine.dispose()


def _problems(url: str, home: Path) -> list[str]:
    engine = init_db(url)
    try:
        with session_scope(engine) as session:
            return check_database(session) + check_files(session, PhotoStore(home / "photos"))
    finally:
        engine.dispose()


def _add_real_photos(url: str, home: Path, paths: list[Path]) -> None:
    engine = init_db(url)
    try:
        with session_scope(engine) as session:
            individual = session.get(Individual, 1)
            for path in paths:
                width, height = Image.open(path).size
                add_photo(
                    session,
                    PhotoStore(home / "photos"),
                    path.read_bytes(),
                    suffix=".jpg",
                    individual=individual,
                    width=width,
                    height=height,
                )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def galleries(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    """``old``: a gallery and its backup; ``live``: the same gallery later (renamed, more real photos)."""
    use_cheap_hashing()
    base = tmp_path_factory.mktemp("galleries")
    photos = sorted((data_dir / "turtles" / "images").rglob("*.JPG"), key=lambda p: p.stat().st_size)
    home = base / "live"
    url = f"sqlite:///{home / 'gallery.db'}"
    engine = init_db(url)
    make_world(engine, PhotoStore(home / "photos"))
    engine.dispose()
    _add_real_photos(url, home, photos[: N_REAL_PHOTOS // 2])
    old_backup = base / "old-backup"
    assert _run(["backup", "--db", url, "--home", str(home), "--out", str(old_backup)])[0] == 0
    engine = init_db(url)
    with session_scope(engine) as session:
        session.get(Individual, 1).name = "renamed after the backup"
    engine.dispose()
    _add_real_photos(url, home, photos[N_REAL_PHOTOS // 2 : N_REAL_PHOTOS])
    live = {"db": _digest(url), "photos": _files(home / "photos")}
    assert len(live["photos"]) == 3 + N_REAL_PHOTOS
    scratch = base / "scratch"
    restore(old_backup, f"sqlite:///{scratch / 'gallery.db'}", home=scratch)
    old = _digest(f"sqlite:///{scratch / 'gallery.db'}")
    assert old != live["db"]
    return {
        "live_home": home,
        "live_url": url,
        "old_backup": old_backup,
        "old_backup_files": _files(old_backup),
        "live": live,
        "old": old,
    }


def _fresh_live_copy(galleries: dict[str, Any], where: Path) -> tuple[Path, str]:
    shutil.copytree(galleries["live_home"], where)
    return where, f"sqlite:///{where / 'gallery.db'}"


# --- restore ---------------------------------------------------------------------------------------------

RESTORE_POINTS = [  # (where the process dies, what the gallery must then be)
    (("core.store.backup", "copy_tree", "return"), "as it was"),  # photos copied, the database untouched
    (("shutil", "copyfileobj", "return"), "as it was"),  # the database copied beside (the photos were there)
    (("core.store.restore", "_verify_and_migrate", "call"), "as it was"),  # the new copy built, not checked
    (("core.store.restore", "_switch", "call"), "as it was"),  # checked and migrated, not switched
    (("core.store.restore", "_switch", "return"), "restored"),  # switched; dies before saying so
]


def _restore_argv(home: Path, url: str, source: Path) -> list[str]:
    return ["restore", "--force", "--from", str(source), "--db", url, "--home", str(home)]


def _judge_restore(galleries: dict[str, Any], home: Path, url: str, code: int, when: str) -> str:
    """The gallery is the one before or the backup's, complete; photos and the backup folder unchanged."""
    live, state = galleries["live"], _digest(url)
    assert state in (live["db"], galleries["old"]), f"killed {when}: the database is neither gallery"
    kind = "as it was" if state == live["db"] else "restored"
    assert code in (KILLED, 0) and (code == 0) <= (kind == "restored"), when
    assert _files(home / "photos") == live["photos"], when
    assert _problems(url, home) == [], when
    assert _files(galleries["old_backup"]) == galleries["old_backup_files"], when
    return kind


def test_restore_killed_at_dangerous_points_leaves_the_gallery_whole(galleries: dict[str, Any], tmp_path: Path) -> None:
    for i, (point, expected) in enumerate(RESTORE_POINTS):
        home, url = _fresh_live_copy(galleries, tmp_path / f"point{i}")
        code, _ = _run(_restore_argv(home, url, galleries["old_backup"]), kill_at=point)
        assert code == KILLED, f"{point} was never reached"
        assert _judge_restore(galleries, home, url, code, f"at {point}") == expected, point
        # the next restore completes and removes what the killed one left beside the database
        assert _run(_restore_argv(home, url, galleries["old_backup"]))[0] == 0, point
        assert _digest(url) == galleries["old"], point
        assert [p.name for p in home.iterdir() if p.name.startswith(".tmp-")] == [], point


@pytest.mark.parametrize("kills", RUNS)
def test_restore_killed_at_random_moments_leaves_the_gallery_whole(
    galleries: dict[str, Any], tmp_path: Path, kills: int
) -> None:
    old_backup = galleries["old_backup"]
    home, url = _fresh_live_copy(galleries, tmp_path / "measured")
    window = _work_window(_restore_argv(home, url, tmp_path / "no-backup"), _restore_argv(home, url, old_backup))
    assert _digest(url) == galleries["old"]

    def run_once(i: int, moment: float) -> tuple[int, float, str]:
        nonlocal home, url
        home, url = _fresh_live_copy(galleries, tmp_path / f"run{i}")
        code, elapsed = _run(_restore_argv(home, url, old_backup), kill_after=moment)
        return code, elapsed, _judge_restore(galleries, home, url, code, f"at {moment:.2f}s")

    outcomes = _kill_at_random(run_once, window, kills, 15 + kills)
    print(f"restore: work from {window[0]:.2f}s to {window[1]:.2f}s; (kill moment, exit code, gallery): {outcomes}")
    # the last interrupted gallery: restoring the backup still works, and leaves nothing temporary behind
    assert _run(_restore_argv(home, url, old_backup))[0] == 0
    assert _digest(url) == galleries["old"]
    assert [p.name for p in home.iterdir() if p.name.startswith(".tmp-")] == []


# --- backup ----------------------------------------------------------------------------------------------

BACKUP_POINTS = [  # (where the process dies, what the backup folder must then hold)
    (("core.store.backup", "_link_tree", "return"), "previous"),  # the previous photos linked beside
    (("core.store.backup", "_backup_sqlite", "return"), "previous"),  # the new database copied beside
    (("core.store.backup", "_write_backup", "return"), "previous"),  # the new backup complete, not in place
    (("core.store.backup", "_exchange", "return"), "new"),  # in place; the previous one not yet deleted
]


def _backup_argv(galleries: dict[str, Any], out: Path) -> list[str]:
    return ["backup", "--db", galleries["live_url"], "--home", str(galleries["live_home"]), "--out", str(out)]


def _previous_backup(galleries: dict[str, Any], where: Path) -> Path:
    shutil.copytree(galleries["old_backup"], where)
    return where


def _judge_backup(galleries: dict[str, Any], out: Path, code: int, when: str) -> str:
    """The folder holds the previous backup file for file, or a complete new one; either restores."""
    live = galleries["live"]
    if _files(out) == galleries["old_backup_files"]:
        kind = "previous"
    else:
        manifest = read_manifest(out)  # complete, or this raises
        assert _files(out / "photos") == live["photos"], when
        assert manifest.photos == len(live["photos"]), when
        kind = "new"
    assert code in (KILLED, 0) and (code == 0) <= (kind == "new"), when
    leftovers = {p.name for p in out.parent.iterdir()} - {out.name}
    assert all(name.startswith(".tmp-") for name in leftovers), when
    target = out.parent / "restored"
    restore(out, f"sqlite:///{target / 'gallery.db'}", home=target)
    assert _digest(f"sqlite:///{target / 'gallery.db'}") == (live["db"] if kind == "new" else galleries["old"]), when
    assert _problems(f"sqlite:///{target / 'gallery.db'}", target) == [], when
    shutil.rmtree(target)
    assert _digest(galleries["live_url"]) == live["db"], when
    assert _files(galleries["live_home"] / "photos") == live["photos"], when
    return kind


def test_backup_killed_at_dangerous_points_leaves_a_whole_backup(galleries: dict[str, Any], tmp_path: Path) -> None:
    for i, (point, expected) in enumerate(BACKUP_POINTS):
        out = _previous_backup(galleries, tmp_path / f"point{i}" / "nightly")
        code, _ = _run(_backup_argv(galleries, out), kill_at=point)
        assert code == KILLED, f"{point} was never reached"
        assert _judge_backup(galleries, out, code, f"at {point}") == expected, point


@pytest.mark.parametrize("kills", RUNS)
def test_backup_killed_at_random_moments_leaves_a_whole_backup(
    galleries: dict[str, Any], tmp_path: Path, kills: int
) -> None:
    foreign = tmp_path / "not-a-backup"
    (foreign / "notes").mkdir(parents=True)  # refused at once: measures the start-up
    measured = _previous_backup(galleries, tmp_path / "measured" / "nightly")
    window = _work_window(_backup_argv(galleries, foreign), _backup_argv(galleries, measured))
    assert _judge_backup(galleries, measured, 0, "uninterrupted") == "new"
    out = measured

    def run_once(i: int, moment: float) -> tuple[int, float, str]:
        nonlocal out
        out = _previous_backup(galleries, tmp_path / f"run{i}" / "nightly")
        code, elapsed = _run(_backup_argv(galleries, out), kill_after=moment)
        return code, elapsed, _judge_backup(galleries, out, code, f"at {moment:.2f}s")

    outcomes = _kill_at_random(run_once, window, kills, 25 + kills)
    print(f"backup: work from {window[0]:.2f}s to {window[1]:.2f}s; (kill moment, exit code, folder): {outcomes}")
    # the next backup into the last folder completes and clears what the killed one left beside it
    assert _run(_backup_argv(galleries, out))[0] == 0
    assert _judge_backup(galleries, out, 0, "afterwards") == "new"
    assert [p.name for p in out.parent.iterdir()] == ["nightly"]
