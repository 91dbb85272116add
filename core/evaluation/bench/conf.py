"""What defines a benchmark run; printed and saved with its results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.engine.gallery_features import DEFAULT_FEATURE_MEMORY_MIB
from core.engine.orientation import UPRIGHT
from core.engine.scoring import ScoringConf
from core.engine.shortlist import ShortlistConf


@dataclass
class BenchConf:
    """Everything that defines a benchmark run; printed with the results."""

    manifest: Path  # CSV path,identity of the real photos
    cache_dir: Path  # augmented photos, features and matches, reused between runs
    sizes: tuple[int, ...] = (100, 1000, 10_000)
    queries: int = 50
    exhaustive_queries: int | None = None  # None: every query up to 1,000 photos, 10 beyond
    device: str = "auto"
    extractor: str = "aliked"
    max_side: int = 1024
    keypoints: int = 1024
    batch_size: int | None = None  # LightGlue pairs per batch (None: the matcher's, 128 on CUDA and 1 on a CPU)
    seed: int = 0
    identities: int | None = None  # only the N identities with the fewest photos (small CI runs)
    shortlist: ShortlistConf | None = None  # None: the device's preset
    scoring: ScoringConf = field(default_factory=ScoringConf)
    throughput_pairs: int | None = None  # pairs timed for LightGlue alone (None: 4,096 on CUDA, 16 on a CPU; 0: skip)
    workers: int = 0  # processes that write augmented copies (0: one per core)
    turns: tuple[int, ...] = UPRIGHT  # quarter-turns each query is tried in (the published runs: upright only)
    feature_memory_mib: int = DEFAULT_FEATURE_MEMORY_MIB  # gallery features the index keeps in memory

    def exhaustive_count(self, size: int) -> int:
        if self.exhaustive_queries is not None:
            return min(self.exhaustive_queries, self.queries)
        return self.queries if size <= 1000 else min(10, self.queries)
