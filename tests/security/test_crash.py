"""Crashes: ``kill -9`` of a worker in the middle of the catalogue import or of applying a decision, then a restart.

The import runs as ``python -m core import`` (its ``main``) in a forked worker, killed (SIGKILL) at chosen
dangerous points (a photo or feature file written under its temporary name but not renamed, renamed but
its row not committed, between rows) and at random moments. Each restart resumes; the end state (rows,
photo files, feature files) equals that of one uninterrupted import, and no photo, feature file or row is
half-written. A worker killed while a vote's decision is being applied leaves the sighting as it was.

Workers come from a fork server that has imported Scute once, so each kill and restart costs milliseconds
rather than the seconds of a fresh interpreter.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fixtures.photos import image_bytes, use_cheap_hashing
from fixtures.world import World, forkserver_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import select

from core.engine.features import FeatureCache, Features
from core.io import sha256_hex
from core.review.sightings import CandidateInput, submit_sighting
from core.review.votes import cast_vote
from core.store.db import init_db, make_engine, session_scope
from core.store.integrity import check_database, check_files, leftover_temporary_files
from core.store.models import AuditLog, FeatureRecord, Individual, Photo, Sighting, User, Vote
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

KILLED = -signal.SIGKILL
N_PHOTOS = 10


# --- a small catalogue with enough texture for SIFT --------------------------------------------------------


def _textured(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    big = cv2.resize(small, (192, 144), interpolation=cv2.INTER_CUBIC)
    path = Image.fromarray(big)
    import io

    buffer = io.BytesIO()
    path.save(buffer, "JPEG" if seed % 2 else "PNG", quality=92)
    return buffer.getvalue()


def _catalogue(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(N_PHOTOS):
        name = f"t{i % 4}/photo{i}.{'jpg' if i % 2 else 'png'}"
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(_textured(i))
        rows.append({"path": name, "identity": f"T-{i % 4:04d}", "side": "left" if i % 3 else ""})
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    rows.insert(3, {"path": "broken.jpg", "identity": "T-0001", "side": ""})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "identity", "side"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


# --- the worker ------------------------------------------------------------------------------------------


def _suicide() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill_point(spec: tuple[Any, ...]) -> None:
    """Arrange for this process to SIGKILL itself at the n-th occurrence of one event."""
    kind = spec[0]
    if kind == "replace":  # ("replace", ".npz" or ".png"/".jpg", n, "before" | "after")
        _, suffix, n, when = spec
        real_replace = os.replace
        count = [0]

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if str(dst).endswith(suffix):
                count[0] += 1
                if count[0] == n and when == "before":
                    _suicide()
                real_replace(src, dst, *args, **kwargs)
                if count[0] == n and when == "after":
                    _suicide()
                return
            real_replace(src, dst, *args, **kwargs)

        os.replace = replace  # type: ignore[assignment]
    elif kind in ("before_commit", "after_commit"):
        _, n = spec
        count = [0]

        def hook(session: Any) -> None:
            count[0] += 1
            if count[0] == n:
                _suicide()

        event.listen(OrmSession, kind, hook)


def _import_worker(db_url: str, home: str, manifest: str, spec: tuple[Any, ...] | None) -> None:
    os.environ["SCUTE_HOME"] = home
    cv2.setNumThreads(1)
    if spec is not None:
        _install_kill_point(spec)
    from core.cli import main

    code = main(
        [
            "import",
            "--db",
            db_url,
            "--manifest",
            manifest,
            "--extractor",
            "sift",
            "--max-side",
            "160",
            "--device",
            "cpu",
        ]
    )
    os._exit(code)


def _run_import(db_url: str, home: Path, manifest: Path, spec=None, kill_after: float | None = None) -> int:
    process = forkserver_context().Process(target=_import_worker, args=(db_url, str(home), str(manifest), spec))
    process.start()
    if kill_after is not None:
        process.join(timeout=kill_after)
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=120)
    assert process.exitcode is not None, "the import worker hung"
    return process.exitcode


# --- comparing end states ---------------------------------------------------------------------------------


def _state(db_url: str, home: Path) -> dict[str, Any]:
    """Everything the import leaves behind, by natural keys (ids may differ between runs on PostgreSQL)."""
    engine = init_db(db_url)
    try:
        with session_scope(engine) as session:
            codes = {i.id: i.code for i in session.exec(select(Individual)).all()}
            individuals = sorted((i.code, i.name, i.status) for i in session.exec(select(Individual)).all())
            photos = {p.id: p for p in session.exec(select(Photo)).all()}
            photo_rows = sorted(
                (p.sha256, p.path, codes.get(p.individual_id), p.side, p.width, p.height, p.original_name, p.in_gallery)
                for p in photos.values()
            )
            features = sorted(
                (photos[f.photo_id].sha256, f.extractor, f.version, f.path, f.n_keypoints)
                for f in session.exec(select(FeatureRecord)).all()
            )
            problems = check_database(session) + check_files(session, PhotoStore(home / "photos"), home / "features")
    finally:
        engine.dispose()
    store_files = _final_files(home / "photos")
    feature_files = _final_files(home / "features")
    arrays = {}
    for relpath in feature_files:
        loaded = Features.load(home / "features" / relpath)
        arrays[relpath] = (loaded.keypoints.tobytes(), loaded.descriptors.tobytes(), loaded.image_size)
    return {
        "individuals": individuals,
        "photos": photo_rows,
        "features": features,
        "store": {rel: sha256_hex((home / "photos" / rel).read_bytes()) for rel in store_files},
        "feature_arrays": arrays,
        "problems": problems,
    }


def _final_files(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def _check_no_half_written(home: Path) -> None:
    """Every photo file's content matches its name; every feature file loads; only temporaries may be partial."""
    for rel in _final_files(home / "photos"):
        assert sha256_hex((home / "photos" / rel).read_bytes()) == Path(rel).name.split(".")[0], rel
    for rel in _final_files(home / "features"):
        Features.load(home / "features" / rel)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any], float]:
    """One uninterrupted import on SQLite: the end state every interrupted one must reach."""
    base = tmp_path_factory.mktemp("reference")
    manifest = _catalogue(base / "catalogue")
    home = base / "home"
    url = f"sqlite:///{base / 'gallery.db'}"
    _run_import(url, home, manifest)  # warms the fork server
    for path in (base / "gallery.db", home):
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()
    started = time.perf_counter()
    assert _run_import(url, home, manifest) == 0
    duration = time.perf_counter() - started
    state = _state(url, home)
    assert len(state["photos"]) == N_PHOTOS and len(state["features"]) == N_PHOTOS
    assert state["problems"] == []
    return base, manifest, state, duration


KILL_POINTS = [  # in this order each one fires on the first rows the previous runs left undone
    ("replace", ".npz", 1, "before"),  # a feature file written under its temporary name, not renamed
    ("replace", ".png", 1, "before"),  # a photo written under its temporary name, not renamed
    ("before_commit", 2),  # photo stored and its row staged; the commit never happens
    ("replace", ".jpg", 1, "after"),  # a photo file in place, its row never committed
    ("replace", ".npz", 1, "after"),  # a feature file in place, its row never committed
    ("after_commit", 2),  # between two rows
]


def test_import_killed_at_dangerous_points_resumes_to_the_same_state(
    db_url: str, tmp_path: Path, reference: tuple[Path, Path, dict[str, Any], float]
) -> None:
    _, manifest, expected, _ = reference
    home = tmp_path / "home"
    for spec in KILL_POINTS:
        assert _run_import(db_url, home, manifest, spec) == KILLED, f"kill point {spec} was never reached"
        _check_no_half_written(home)
    assert leftover_temporary_files(home)  # the kills did leave temporaries behind ...
    assert _run_import(db_url, home, manifest) == 0
    state = _state(db_url, home)
    assert state == expected  # ... which nothing mistook for data
    assert _run_import(db_url, home, manifest) == 0  # and once more: idempotent
    assert _state(db_url, home) == expected


def test_import_killed_at_random_moments_resumes_to_the_same_state(
    tmp_path: Path, reference: tuple[Path, Path, dict[str, Any], float]
) -> None:
    _, manifest, expected, duration = reference
    url = f"sqlite:///{tmp_path / 'gallery.db'}"
    home = tmp_path / "home"
    rng = random.Random(20240517)
    outcomes = []
    for _ in range(5):
        outcomes.append(_run_import(url, home, manifest, kill_after=rng.uniform(0.05, duration)))
        _check_no_half_written(home)
    assert KILLED in outcomes
    assert _run_import(url, home, manifest) == 0
    assert _state(url, home) == expected


# --- a decision interrupted while it is applied ------------------------------------------------------------


def _vote_worker(db_url: str, store_root: str, voter: str, sighting_id: int, individual_id: int) -> None:
    use_cheap_hashing()
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        user = session.exec(select(User).where(User.username == voter)).one()
        cast_vote(session, user, sighting_id, "same", individual_id, on_gallery_change=lambda photo: _suicide())
    os._exit(0)


def test_kill_while_a_decision_is_applied_leaves_the_sighting_pending(
    db_url: str, engine, store: PhotoStore, world: World
) -> None:
    with session_scope(engine) as session:
        submission = submit_sighting(
            session,
            store,
            session.get(User, world.alice),
            image_bytes(1234),
            candidates=[CandidateInput(world.t1, 1, 0.9)],
            new_individual_probability=0.1,
            proposal="same",
            proposed_individual_id=world.t1,
        )
    sighting_id = submission.sighting.id
    process = forkserver_context().Process(
        target=_vote_worker, args=(db_url, str(store.root), "bob", sighting_id, world.t1), daemon=True
    )
    process.start()
    process.join(timeout=60)
    assert process.exitcode == KILLED  # died inside the transaction that applied the decision
    with session_scope(engine) as session:
        sighting = session.get(Sighting, sighting_id)
        assert (sighting.status, sighting.decided_individual_id) == ("pending", None)
        assert session.get(Photo, submission.photo.id).in_gallery is False
        assert [v.user_id for v in session.exec(select(Vote).where(Vote.sighting_id == sighting_id))] == [world.alice]
    with session_scope(engine) as session:  # the restart: bob votes again and the decision applies once
        outcome = cast_vote(session, session.get(User, world.bob), sighting_id, "same", world.t1)
    assert outcome.applied and outcome.status == "decided"
    with session_scope(engine) as session:
        decisions = session.exec(select(AuditLog).where(AuditLog.action == "sighting.decide")).all()
        assert [d.target_id for d in decisions] == [sighting_id]
        assert check_database(session) == []


# --- damaged feature cache entries are detected and rebuilt ----------------------------------------------


def _features(seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    return Features(
        keypoints=rng.random((50, 2), dtype=np.float32) * 100,
        descriptors=rng.random((50, 128), dtype=np.float32),
        scores=rng.random(50, dtype=np.float32),
        image_size=(160, 120),
        extractor="stub",
        version="stub-v1",
    )


class _CountingExtractor:
    """The part of an Extractor that FeatureCache.get_or_extract uses, counting its work."""

    version = "stub-v1"
    max_side = 160

    def __init__(self) -> None:
        self.calls = 0

    def extract(self, rgb: np.ndarray) -> Features:
        self.calls += 1
        return _features()


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_any_damaged_cache_entry_is_rebuilt_never_raised(
    tmp_path: Path, flips: list[tuple[int, int]], cut: int | None
) -> None:
    """Flipped bytes or a cut anywhere in an entry: the cache returns the exact features or rebuilds them."""
    cache = FeatureCache(tmp_path / "features")
    key = sha256_hex(b"photo")
    path = cache.put(_features(), key)
    data = bytearray(path.read_bytes())
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        del data[cut % len(data) :]
    path.write_bytes(bytes(data))
    extractor = _CountingExtractor()
    got = cache.get_or_extract(extractor, np.zeros((120, 160, 3), np.uint8), key)  # type: ignore[arg-type]
    reference = _features()
    assert np.array_equal(got.keypoints, reference.keypoints)
    assert np.array_equal(got.descriptors, reference.descriptors.astype(np.float16).astype(np.float32))
    assert extractor.calls in (0, 1)
    assert cache.get("stub-v1", key) is not None  # rebuilt (or intact) on disk
