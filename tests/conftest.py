"""Test-wide set-up: model caches pointed at an empty folder, and the shared fixtures of ``tests/fixtures``."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

pytest_plugins = [
    "fixtures.data",
    "fixtures.db",
    "fixtures.models",
    "fixtures.photos",
    "fixtures.world",
    "fixtures.appgallery",
]

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
