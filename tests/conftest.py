"""Shared fixtures: the team's test photos (never copied into the repo) and models loaded once per session."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from support_db import db_url, engine  # noqa: F401  (the database fixtures of every test module)

REPO = Path(__file__).resolve().parents[1]

#: Small settings so that the whole suite stays fast on a 2-core CPU.
SMALL_ALIKED_CONF = {"max_side": 512, "max_keypoints": 512}

_CACHE_ENV = ("TORCH_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE")


def pytest_configure(config: pytest.Config) -> None:
    """Point every model cache at an empty folder and switch hubs offline before anything is imported.

    Weights must come from the installed wheel: if some code tried to fetch them instead, it finds no
    cached copy and (with sockets blocked by pytest-socket) fails loudly rather than passing on a
    developer machine that happens to have a warm ``~/.cache``.
    """
    cache = tempfile.mkdtemp(prefix="scute-test-cache-")
    config._scute_saved_env = {k: os.environ.get(k) for k in _CACHE_ENV}  # type: ignore[attr-defined]
    config._scute_cache_dir = cache  # type: ignore[attr-defined]
    os.environ["TORCH_HOME"] = os.path.join(cache, "torch")
    os.environ["XDG_CACHE_HOME"] = cache
    os.environ["HF_HUB_OFFLINE"] = "1"


def pytest_unconfigure(config: pytest.Config) -> None:
    for key, value in getattr(config, "_scute_saved_env", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    cache = getattr(config, "_scute_cache_dir", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def store(tmp_path: Path):
    """An empty content-addressed photo store in the test's own folder."""
    from core.store.photos import PhotoStore

    return PhotoStore(tmp_path / "photos")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared test photos: ``$SCUTE_DATA`` or ``<repo>/../shared/data``; tests skip without them."""
    path = Path(os.environ.get("SCUTE_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"test data not found at {path} (set SCUTE_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def turtle_manifest(data_dir: Path) -> list[dict[str, object]]:
    """Rows of ``turtles/manifest.csv``: ``{"path": absolute Path, "identity": str}``."""
    manifest = data_dir / "turtles" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"turtle manifest not found at {manifest}")
    with manifest.open(newline="") as fh:
        rows = [{"path": data_dir / "turtles" / row["path"], "identity": row["identity"]} for row in csv.DictReader(fh)]
    if not rows:
        pytest.skip(f"turtle manifest {manifest} is empty")
    return rows


@pytest.fixture(scope="session")
def aliked_extractor():
    """ALIKED on the CPU at 512 px / 512 keypoints, loaded once for the whole session."""
    from core.engine.features import make_extractor

    return make_extractor("aliked", dict(SMALL_ALIKED_CONF), device="cpu")


@pytest.fixture(scope="session")
def lightglue_matcher():
    """LightGlue for ALIKED features on the CPU, loaded once for the whole session."""
    from core.engine.matching import LightGlueMatcher

    return LightGlueMatcher({"features": "aliked"}, device="cpu")


@pytest.fixture(scope="session")
def app_gallery(turtle_manifest: list[dict[str, object]], data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small real turtle gallery with accounts for the app tests (``tests/_appgallery.py``), built once."""
    from _appgallery import build_template

    return build_template(tmp_path_factory.mktemp("app-gallery") / "home", turtle_manifest, data_dir / "turtles")
