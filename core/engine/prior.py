"""The null and the calibrator fitted once on labelled photos, shipped with the code, used by every gallery.

A gallery used to fit its own null and calibrator from sampled pairs of its photos: about 17 LightGlue
pairs per photo, a second each on a laptop CPU, so a 16-photo import took a quarter of an hour and a
1,000-photo catalogue five hours before its first search. A new project's small gallery also had too few
pairs to calibrate at all: a fifth photo of a known turtle came first at 8 % while "new individual" got 90 %.

A :class:`Prior` is fitted with ``python -m core prior`` on labelled photos of several species (the shared
turtle and nyala photos for the priors in ``core/engine/priors/``), for exactly one extractor, matcher and
set of turns (its :func:`signature`), since the number of strong matches depends on all three, and for one
rule of scoring an individual from its photos, since the calibrator is fitted on that score. With a prior
a gallery needs no pairs of its own; pairs a deployment does sample still refine each photo's null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ScuteError
from core.io import atomic_write

#: The priors that ship with Scute, one file per signature.
PRIOR_DIR = Path(__file__).with_name("priors")
#: Null confidences kept for the app's plots: quantiles of every non-matching pair's confidences.
NULL_QUANTILES = 201


def signature(
    extractor_version: str, matcher_version: str, turns: Sequence[int], individual_photos: int, frame: str = ""
) -> str:
    """What a prior is valid for: the extractor and matcher settings, the turns a query is tried in, how many
    best photos score an individual (``ScoringConf.individual_photos``) and which matches count (``frame``: a
    :class:`~core.engine.framing.FrameConf` tag, empty when every match does)."""
    sig = f"{extractor_version}+{matcher_version}+turns-{'-'.join(str(t) for t in turns)}+best-{individual_photos}"
    return f"{sig}+{frame}" if frame else sig


@dataclass(frozen=True)
class MethodPrior:
    """The pooled null and the calibrator of one scoring method."""

    null_mean: float
    null_std: float
    slope: float
    offset: float
    null_profile: tuple[float, ...] | None = None  # ``wasserstein``: the mean sorted-confidence profile


@dataclass(frozen=True)
class Prior:
    signature: str
    methods: Mapping[str, MethodPrior]
    null_confidences: tuple[float, ...] = ()  # quantiles of non-matching confidences, for the plots
    source: Mapping[str, Any] = field(default_factory=dict)  # what it was fitted on, for the record

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "methods": {m: asdict(p) for m, p in self.methods.items()},
            "null_confidences": list(self.null_confidences),
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prior:
        try:
            methods = {}
            for name, raw in data["methods"].items():
                profile = raw.get("null_profile")
                methods[str(name)] = MethodPrior(
                    float(raw["null_mean"]),
                    float(raw["null_std"]),
                    float(raw["slope"]),
                    float(raw["offset"]),
                    tuple(float(v) for v in profile) if profile is not None else None,
                )
            return cls(
                str(data["signature"]),
                methods,
                tuple(float(v) for v in data.get("null_confidences", ())),
                dict(data.get("source", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ScuteError(f"This prior file is not valid: {exc!r}.") from None

    def save(self, path: Path) -> None:
        atomic_write(Path(path), (json.dumps(self.to_dict(), indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> Prior:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ScuteError(f"Cannot read the prior {path}: {exc}") from None
        return cls.from_dict(data)


def shipped(sig: str, directory: Path = PRIOR_DIR) -> Prior | None:
    """The prior that ships for these settings, or None (the gallery then samples pairs of its own)."""
    for path in sorted(Path(directory).glob("*.json")):
        prior = Prior.load(path)
        if prior.signature == sig:
            return prior
    return None


def null_quantiles(arrays: Sequence[np.ndarray], count: int = NULL_QUANTILES) -> tuple[float, ...]:
    """A fixed-size picture of all non-matching confidences (the plots need a distribution, not every value)."""
    values = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays]) if arrays else np.zeros(0)
    if values.size == 0:
        return ()
    return tuple(round(float(v), 5) for v in np.quantile(values, np.linspace(0.0, 1.0, count)))
