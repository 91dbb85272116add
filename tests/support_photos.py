"""Helpers most test modules share: a small noisy photo and cheap password hashing.

Not a test module itself (pytest only collects ``test_*.py``); import the fixtures by name.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from argon2 import PasswordHasher
from PIL import Image

from core.review import users

CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (32, 24), exif: Image.Exif | None = None) -> bytes:
    """A small noisy photo of ``size`` (width, height), different for every seed."""
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


def use_cheap_hashing() -> None:
    """argon2 at its cheapest, for worker processes only (in the test process use the fixture)."""
    users._HASHER = CHEAP_HASHER


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its cheapest: these tests are not about password strength (test_users checks the real one)."""
    monkeypatch.setattr(users, "_HASHER", CHEAP_HASHER)
