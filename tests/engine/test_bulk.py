"""Batched extraction (issue 13): photos of different sizes batched through ALIKED, and the bulk pipeline
(:func:`core.engine.bulk.extract_stream`), give each photo the features it gets alone; memory stays bounded.

Runs ALIKED on the CPU on small synthetic scenes (a second or two); batching is forced on the CPU
(``extractor.batch``), since CI has no GPU.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import cv2
import numpy as np
import pytest
import torch

from core.engine.bulk import DecodedPhoto, cached_stream, extract_stream
from core.engine.extractors import AlikedExtractor
from core.engine.features import FeatureCache, Features
from core.errors import NoKeypointsError, ScuteError

#: Three sizes that ALIKED pads to the same 96 x 128 input, and one portrait that it pads differently.
SIZES = ((100, 70), (110, 80), (120, 90), (70, 100))


def textured(width: int, height: int, seed: int) -> np.ndarray:
    """A busy RGB scene (filled circles and boxes, mild noise) with plenty of corners."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 110, np.uint8)
    for _ in range(60):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y, size = int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(4, 30))
        cv2.circle(img, (x, y), size // 2, colour, -1) if rng.random() < 0.5 else cv2.rectangle(
            img, (x, y), (x + size, y + size), colour, -1
        )
    noisy = cv2.GaussianBlur(img, (3, 3), 0) + rng.normal(0, 4, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return [textured(w, h, seed=k) for k, (w, h) in enumerate(SIZES)]


@pytest.fixture(scope="module")
def alone(aliked_extractor: AlikedExtractor, scenes: list[np.ndarray]) -> list[Features]:
    """Each scene extracted on its own."""
    return [aliked_extractor.extract(image) for image in scenes]


@pytest.fixture
def batched(aliked_extractor: AlikedExtractor) -> Iterator[AlikedExtractor]:
    """The session's extractor with batches of 4 on the CPU, and a count of its dense-network calls."""
    model, calls = aliked_extractor.model, []
    dense = model.extract_dense_map

    def counted(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(tuple(images.shape))
        return dense(images)

    model.extract_dense_map = counted  # type: ignore[method-assign]
    aliked_extractor.batch, aliked_extractor.dense_calls = 4, calls  # type: ignore[attr-defined]
    try:
        yield aliked_extractor
    finally:
        del model.extract_dense_map
        aliked_extractor.batch = 1
        del aliked_extractor.dense_calls  # type: ignore[attr-defined]


def assert_same(alone: Features, other: Features) -> None:
    """Equal up to float rounding (a batch may take another convolution kernel): same points, same order."""
    assert other.image_size == alone.image_size
    assert len(other) == len(alone) > 20
    np.testing.assert_allclose(other.keypoints, alone.keypoints, atol=1e-3)
    np.testing.assert_allclose(other.descriptors, alone.descriptors, atol=1e-4)
    np.testing.assert_allclose(other.scores, alone.scores, atol=1e-4)


def test_one_photo_gets_exactly_what_kornia_gives(
    aliked_extractor: AlikedExtractor, scenes: list[np.ndarray], alone: list[Features]
) -> None:
    """The extractor pads and cuts out the maps itself now; alone, a photo's features must not change by one
    bit (the shipped prior is tied to the extractor's version, so the features behind it must stay put)."""
    image, mine = scenes[1], alone[1]
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        (ref,) = aliked_extractor.model(tensor)
    assert np.array_equal(mine.keypoints, ref.keypoints.numpy())
    assert np.array_equal(mine.descriptors, ref.descriptors.numpy())
    assert np.array_equal(mine.scores, ref.keypoint_scores.numpy())


def test_channels_last_gives_the_features_of_kornias_own_memory_order(
    aliked_extractor: AlikedExtractor, scenes: list[np.ndarray], alone: list[Features]
) -> None:
    """The network runs channels-last on every device (44 % faster on two CPU cores); the features must be those
    of kornia's default memory order up to float rounding: the same points (ties in the top-k may list them in
    another order), the same descriptors and scores."""
    plain = copy.deepcopy(aliked_extractor.model).to(memory_format=torch.contiguous_format)
    first_conv = next(m for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous()
    mine_conv = next(m for m in aliked_extractor.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert mine_conv.weight.is_contiguous(memory_format=torch.channels_last) and not mine_conv.weight.is_contiguous()
    for image, mine in zip(scenes, alone, strict=True):
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            (ref,) = plain(tensor)
        ours, theirs = np.lexsort(mine.keypoints.T), np.lexsort(ref.keypoints.numpy().T)
        assert len(ours) == len(theirs) > 20
        np.testing.assert_allclose(mine.keypoints[ours], ref.keypoints.numpy()[theirs], atol=1e-3)
        np.testing.assert_allclose(mine.descriptors[ours], ref.descriptors.numpy()[theirs], atol=1e-4)
        np.testing.assert_allclose(mine.scores[ours], ref.keypoint_scores.numpy()[theirs], atol=1e-4)


def test_photos_of_different_sizes_share_a_batch(
    batched: AlikedExtractor, scenes: list[np.ndarray], alone: list[Features]
) -> None:
    together = batched.extract_many(scenes)
    # Before, only equal sizes were batched: four network calls for these four photos; now two.
    assert sorted(batched.dense_calls) == [(1, 3, 128, 96), (3, 3, 96, 128)]  # type: ignore[attr-defined]
    for a, t in zip(alone, together, strict=True):
        assert isinstance(t, Features)
        assert_same(a, t)


def test_extract_stream_gives_every_photo_its_features_with_bounded_memory(
    batched: AlikedExtractor, scenes: list[np.ndarray], alone: list[Features]
) -> None:
    blank = np.full((80, 110, 3), 128, np.uint8)
    photos = [*scenes, blank]
    lock, waiting, most = threading.Lock(), set(), [0]
    results: dict[int, Features | ScuteError] = {}

    def load(i: int) -> np.ndarray:
        with lock:
            waiting.add(i)
            most[0] = max(most[0], len(waiting))
        return photos[i]

    def keep(i: int, result: Features | ScuteError) -> None:
        assert i not in results
        results[i] = result
        with lock:
            waiting.discard(i)

    window = 3
    extract_stream(batched, len(photos), load, keep, workers=2, window=window)
    assert sorted(results) == list(range(len(photos)))
    assert isinstance(results[4], NoKeypointsError)
    for i, features in enumerate(alone):
        assert isinstance(results[i], Features)
        assert_same(features, results[i])  # type: ignore[arg-type]
    # Decoded photos waiting for the network: the window plus the batches handed to it (2 of at most 4).
    assert most[0] <= window + 2 * batched.batch


def test_extract_stream_on_a_cpu_is_the_one_by_one_path(
    aliked_extractor: AlikedExtractor, scenes: list[np.ndarray], alone: list[Features]
) -> None:
    assert aliked_extractor.batch == 1
    results: dict[int, Features | ScuteError] = {}
    extract_stream(aliked_extractor, 2, lambda i: scenes[i], results.__setitem__, workers=2)
    for i in range(2):
        streamed = results[i]
        assert isinstance(streamed, Features)
        assert np.array_equal(streamed.keypoints, alone[i].keypoints)
        assert np.array_equal(streamed.descriptors, alone[i].descriptors)


def test_cached_stream_extracts_only_what_the_cache_lacks_and_keeps_it_as_get_or_extract_does(
    aliked_extractor: AlikedExtractor, scenes: list[np.ndarray], tmp_path: Path
) -> None:
    cache, one_by_one = FeatureCache(tmp_path / "bulk"), FeatureCache(tmp_path / "one-by-one")
    photos = [DecodedPhoto(scene, f"{k:064x}", rotation=90 * k) for k, scene in enumerate(scenes)]
    network: list[int] = []
    extract = aliked_extractor.extract_staged

    def counted(images: list[np.ndarray]) -> list[Features | ScuteError]:
        network.append(len(images))
        return extract(images)

    for expected in (len(photos), 0):  # the second run finds every photo cached
        results: dict[int, Features | ScuteError] = {}
        network.clear()
        with patch.object(aliked_extractor, "extract_staged", counted):
            cached_stream(aliked_extractor, cache, len(photos), photos.__getitem__, results.__setitem__, workers=2)
        assert sum(network) == expected
        for i, photo in enumerate(photos):
            single = one_by_one.get_or_extract(aliked_extractor, photo.pixels, photo.sha256, rotation=photo.rotation)
            streamed = results[i]
            assert isinstance(streamed, Features) and cache.path(single.version, photo.key).exists()
            assert np.array_equal(streamed.keypoints, single.keypoints)
            assert np.array_equal(streamed.descriptors, single.descriptors)  # half precision, as cached


def test_cached_stream_decodes_one_photo_ahead_on_a_cpu(
    aliked_extractor: AlikedExtractor, scenes: list[np.ndarray], tmp_path: Path
) -> None:
    """More decoding threads than one take a 2-core laptop's cores from the network's own threads."""
    assert aliked_extractor.device.type == "cpu"
    photos = [DecodedPhoto(scene, f"{k:064x}") for k, scene in enumerate(scenes * 2)]
    active, most = [0], [0]
    lock = threading.Lock()

    def load(i: int) -> DecodedPhoto:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return photos[i]

    results: dict[int, Features | ScuteError] = {}
    cached_stream(aliked_extractor, FeatureCache(tmp_path), len(photos), load, results.__setitem__)
    assert most[0] == 1 and sorted(results) == list(range(len(photos)))
    assert all(isinstance(r, Features) for r in results.values())
