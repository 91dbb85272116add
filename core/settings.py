"""Every setting Scute takes from its environment, read once into frozen objects that are passed down.

The app (``ui.context``), the command line (``core.cli``) and the tests build one :class:`Settings`
with :meth:`Settings.from_env` (or by hand) and hand its parts to what needs them; no module below this
one reads ``os.environ``. That keeps a deployment's import, search and evaluation on the same settings,
and lets a test run two galleries side by side in one process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.catalogue.locations import DEFAULT_STEP
from core.engine.extractors import DEFAULT_EXTRACTOR, EXTRACTORS
from core.engine.gallery_features import DEFAULT_FEATURE_MEMORY_MIB
from core.engine.orientation import default_turns, parse_turns
from core.engine.scoring import PAIR_SCORES, ScoringConf
from core.errors import ScuteError
from core.review.rules import ReviewConfig

if TYPE_CHECKING:
    from core.engine.search import Engine

#: Where the shared test and benchmark photos live when ``SCUTE_DATA`` is not set: beside the checkout.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def _whole(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ScuteError(f"{name} must be a whole number, not {raw!r}.") from None
    if value <= 0:
        raise ScuteError(f"{name} must be positive, not {value}.")
    return value


def _switch(env: Mapping[str, str], name: str) -> bool | None:
    """``on``/``off`` (or yes/no, true/false, 1/0); None when unset or ``auto``."""
    raw = env.get(name, "").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in ("on", "yes", "true", "1"):
        return True
    if raw in ("off", "no", "false", "0"):
        return False
    raise ScuteError(f"{name} must be on, off or auto, not {raw!r}.")


def _degrees(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ScuteError(f"{name} must be a number of degrees, not {raw!r}.") from None
    if not 0 < value <= 10:
        raise ScuteError(f"{name} must be more than 0 and at most 10 degrees, not {raw}.")
    return value


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw).expanduser() if raw else None


@dataclass(frozen=True)
class EngineSettings:
    """The matching engine's configuration; ``None`` means the engine's own default for the device.

    Import, search and evaluation in one deployment must agree, so the app and the command line build
    their engines from the same object.
    """

    extractor: str = DEFAULT_EXTRACTOR
    max_side: int | None = None
    keypoints: int | None = None
    device: str = "auto"
    turns: tuple[int, ...] | None = None
    scoring: str = ScoringConf.method
    top_k: int = 5
    weights_dir: Path | None = None
    prior: str = "shipped"  # "shipped" (the one for these settings, if any), "none", or a prior file's path
    zoom: bool | None = None  # zoom to the animal (core.engine.localise); None: with a GPU yes, on a CPU no (time)
    feature_memory_mib: int = DEFAULT_FEATURE_MEMORY_MIB  # gallery features kept in memory (engine.gallery_features)

    def __post_init__(self) -> None:
        if self.extractor not in EXTRACTORS:
            raise ScuteError(f"The extractor must be one of {', '.join(sorted(EXTRACTORS))}, not {self.extractor!r}.")
        if self.scoring not in PAIR_SCORES:
            raise ScuteError(f"The scoring must be one of {', '.join(sorted(PAIR_SCORES))}, not {self.scoring!r}.")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EngineSettings:
        return cls(
            extractor=env.get("SCUTE_EXTRACTOR", "").strip() or DEFAULT_EXTRACTOR,
            max_side=_whole(env, "SCUTE_MAX_SIDE"),
            keypoints=_whole(env, "SCUTE_KEYPOINTS"),
            device=env.get("SCUTE_DEVICE", "").strip() or "auto",
            turns=parse_turns(env.get("SCUTE_TURNS")),
            scoring=env.get("SCUTE_SCORING", "").strip() or ScoringConf.method,
            top_k=_whole(env, "SCUTE_TOP_K") or 5,
            weights_dir=_path(env, "SCUTE_WEIGHTS_DIR"),
            prior=env.get("SCUTE_PRIOR", "").strip() or "shipped",
            zoom=_switch(env, "SCUTE_ZOOM"),
            feature_memory_mib=_whole(env, "SCUTE_FEATURE_MEMORY_MIB") or DEFAULT_FEATURE_MEMORY_MIB,
        )

    def replace(self, **changes: Any) -> EngineSettings:
        """A copy with the given fields changed; ``None`` values keep the current ones (command-line flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def extractor_conf(self) -> dict[str, Any] | None:
        conf: dict[str, Any] = {}
        if self.max_side:
            conf["max_side"] = self.max_side
        if self.keypoints:
            conf["max_keypoints"] = self.keypoints
        return conf or None

    def describe(self) -> str:
        """One line for the footer and the evaluation report: which engine answers."""
        from core.engine.device import pick_device

        device = pick_device(self.device)
        defaults = EXTRACTORS[self.extractor].defaults_for(device)
        side = self.max_side or defaults.get("max_side")
        keypoints = self.keypoints or defaults.get("max_keypoints")
        turns = self.turns or default_turns(device)
        tried = f", queries tried in {len(turns)} turns" if len(turns) > 1 else ""
        engine = f"{self.extractor}, {side} px, {keypoints} keypoints, {self.scoring} scoring{tried}"
        return f"{engine}, device {self.device}"

    def make_engine(self, cache_dir: Path) -> Engine:
        """Load the models (a second or two); the app keeps one per process."""
        from core.engine.device import pick_device
        from core.engine.localise import ZoomConf
        from core.engine.search import Engine

        zoom = self.zoom if self.zoom is not None else pick_device(self.device).type == "cuda"
        return Engine(
            self.extractor,
            self.extractor_conf(),
            scoring=ScoringConf(method=self.scoring),
            device=self.device,
            cache_dir=cache_dir,
            turns=self.turns,
            weights_dir=self.weights_dir,
            prior={"shipped": True, "none": False}.get(self.prior, Path(self.prior).expanduser()),
            zoom=ZoomConf() if zoom else None,
            feature_memory_mib=self.feature_memory_mib,
        )


def _review(env: Mapping[str, str]) -> ReviewConfig:
    defaults = ReviewConfig()
    try:
        return ReviewConfig(
            required_votes=int(env.get("SCUTE_REQUIRED_VOTES", defaults.required_votes)),
            allowed_dissent=int(env.get("SCUTE_ALLOWED_DISSENT", defaults.allowed_dissent)),
            code_pattern=env.get("SCUTE_CODE_PATTERN", defaults.code_pattern),
        )
    except ValueError as exc:
        raise ScuteError(f"The review settings in the environment are invalid: {exc}") from exc


@dataclass(frozen=True)
class Settings:
    """One deployment: where its data lives, which database, which engine, which review rules."""

    home: Path
    database_url: str
    engine: EngineSettings = field(default_factory=EngineSettings)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    session_secret: bytes | None = field(default=None, repr=False)  # None: a key file in ``home``
    data_dir: Path = DEFAULT_DATA_DIR  # the shared test and benchmark photos
    bench_cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "scute" / "bench")
    volunteer_position_degrees: float = DEFAULT_STEP  # volunteers see and export positions rounded to this

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, database_url: str | None = None) -> Settings:
        """Read ``SCUTE_*`` and ``DATABASE_URL``; an explicit ``database_url`` (``--db``) wins."""
        env = os.environ if environ is None else environ
        home = (_path(env, "SCUTE_HOME") or Path("data")).resolve()
        secret = env.get("SCUTE_SESSION_SECRET")
        cache_root = _path(env, "XDG_CACHE_HOME") or Path.home() / ".cache"
        return cls(
            home=home,
            database_url=database_url or env.get("DATABASE_URL") or sqlite_url(home),
            engine=EngineSettings.from_env(env),
            review=_review(env),
            session_secret=secret.encode() if secret is not None else None,
            data_dir=(_path(env, "SCUTE_DATA") or DEFAULT_DATA_DIR).resolve(),
            bench_cache=_path(env, "SCUTE_BENCH_CACHE") or cache_root / "scute" / "bench",
            volunteer_position_degrees=_degrees(env, "SCUTE_VOLUNTEER_POSITION_DEGREES", DEFAULT_STEP),
        )

    def with_home(self, home: Path, database_url: str | None = None) -> Settings:
        """The same deployment on another data directory (its own SQLite file unless a URL is given)."""
        home = Path(home).expanduser().resolve()
        url = database_url or (sqlite_url(home) if self.database_url == sqlite_url(self.home) else self.database_url)
        return dataclasses.replace(self, home=home, database_url=url)

    @property
    def photo_dir(self) -> Path:
        return self.home / "photos"

    @property
    def feature_dir(self) -> Path:
        return self.home / "features"


def sqlite_url(home: Path) -> str:
    """The default gallery: a SQLite file in the data directory."""
    return f"sqlite:///{Path(home) / 'gallery.db'}"
