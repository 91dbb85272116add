"""core.settings: every setting read once from the environment, with clear messages for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ScuteError
from core.review.rules import ReviewConfig
from core.settings import EngineSettings, Settings, sqlite_url


def test_the_footer_says_how_queries_are_matched():
    cpu = EngineSettings(device="cpu")
    assert cpu.describe() == "aliked, 1024 px, 1024 keypoints, confident scoring, device cpu"
    turning = EngineSettings.from_env({"SCUTE_TURNS": "all", "SCUTE_DEVICE": "cpu"})
    assert "confident scoring, queries tried in 4 turns, device cpu" in turning.describe()


def test_engine_settings_come_from_the_environment():
    assert EngineSettings.from_env({}) == EngineSettings()
    small = EngineSettings.from_env(
        {"SCUTE_EXTRACTOR": "sift", "SCUTE_MAX_SIDE": "512", "SCUTE_KEYPOINTS": " 256 ", "SCUTE_TOP_K": "3"}
    )
    assert (small.extractor, small.max_side, small.keypoints, small.top_k) == ("sift", 512, 256, 3)
    assert small.extractor_conf() == {"max_side": 512, "max_keypoints": 256}
    assert EngineSettings().extractor_conf() is None
    assert EngineSettings(max_side=512, device="cpu").describe().startswith("aliked, 512 px, 1024 keypoints")
    assert EngineSettings.from_env({}).prior == "shipped"
    assert EngineSettings.from_env({"SCUTE_PRIOR": " none "}).prior == "none"
    with pytest.raises(ScuteError, match="SCUTE_MAX_SIDE must be a whole number"):
        EngineSettings.from_env({"SCUTE_MAX_SIDE": "big"})
    with pytest.raises(ScuteError, match="SCUTE_KEYPOINTS must be positive"):
        EngineSettings.from_env({"SCUTE_KEYPOINTS": "0"})
    with pytest.raises(ScuteError, match="extractor must be one of"):
        EngineSettings.from_env({"SCUTE_EXTRACTOR": "orb"})


def test_zooming_to_the_animal_is_a_setting_with_the_devices_default(tmp_path: Path):
    from core.engine.localise import ZoomConf

    assert EngineSettings.from_env({}).zoom is None  # with a GPU yes, on a CPU no (its 10-second search)
    assert EngineSettings(extractor="sift", device="cpu").make_engine(tmp_path).zoom is None
    assert EngineSettings(extractor="sift", device="cpu", zoom=True).make_engine(tmp_path).zoom == ZoomConf()
    assert EngineSettings.from_env({"SCUTE_ZOOM": " On "}).zoom is True
    assert EngineSettings.from_env({"SCUTE_ZOOM": "off"}).zoom is False
    assert EngineSettings.from_env({"SCUTE_ZOOM": "auto"}).zoom is None
    with pytest.raises(ScuteError, match="SCUTE_ZOOM must be on, off or auto"):
        EngineSettings.from_env({"SCUTE_ZOOM": "maybe"})


def test_review_settings_come_from_the_environment():
    env = {"SCUTE_REQUIRED_VOTES": "3", "SCUTE_ALLOWED_DISSENT": "1", "SCUTE_CODE_PATTERN": "CC-{n:05d}"}
    assert Settings.from_env(env).review == ReviewConfig(3, 1, "CC-{n:05d}")
    assert Settings.from_env({}).review == ReviewConfig(2, 0, "T-{n:04d}")
    with pytest.raises(ScuteError, match="review settings"):
        Settings.from_env({"SCUTE_REQUIRED_VOTES": "two"})


def test_the_deployment_lives_in_one_folder(tmp_path: Path):
    settings = Settings.from_env({"SCUTE_HOME": str(tmp_path / "home")})
    assert settings.home == (tmp_path / "home").resolve()
    assert settings.database_url == sqlite_url(settings.home)
    assert (settings.photo_dir, settings.feature_dir) == (settings.home / "photos", settings.home / "features")
    url = "postgresql+psycopg://scute@db/scute"
    assert Settings.from_env({"DATABASE_URL": url}).database_url == url
    assert Settings.from_env({"DATABASE_URL": url}, database_url="sqlite:///x.db").database_url == "sqlite:///x.db"
    moved = settings.with_home(tmp_path / "other")
    assert moved.database_url == sqlite_url((tmp_path / "other").resolve())  # its own SQLite file follows
    assert Settings.from_env({"DATABASE_URL": url}).with_home(tmp_path / "other").database_url == url
    assert Settings.from_env({"SCUTE_SESSION_SECRET": "s" * 32}).session_secret == b"s" * 32
