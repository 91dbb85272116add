"""``python -m core bench``: query latency, memory and accuracy of shortlist+rerank on large galleries.

There is no public turtle catalogue of 10,000 photos, so the benchmark grows one from the real photos:
the evaluation protocol's gallery half (known individuals only) is copied with identity-preserving
augmentations (small rotation, scale, shift and crop; brightness, contrast, colour cast, blur, noise,
JPEG quality), each copy keeping its individual's label. Copies are generated deterministically from the
seed into a cache folder (never the repository) and reused; galleries are nested (the 100-photo gallery
is inside the 1,000-photo one, which is inside the 10,000-photo one). Queries are real photos from the
protocol's query half, never augmented and never in the gallery, so a query can only be recognised by
the animal, not by a near-duplicate of itself.

For each gallery size it reports per-query latency of shortlist+rerank (image decoding and query
features included), LightGlue pairs per query, peak RSS and GPU memory, and top-1/top-5 accuracy of
shortlist+rerank against exhaustive matching on the same queries (exhaustive on a subset at large sizes).
It also measures the LightGlue stage alone (pairs per second, batched) and states the machine and settings.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from core.engine.features import FeatureCache, Features
from core.engine.matching import MatchResult
from core.engine.orientation import UPRIGHT, parse_turns
from core.engine.scoring import ScoringConf
from core.engine.search import Engine, GalleryIndex, GalleryPhoto, PairCache
from core.engine.shortlist import ShortlistConf, default_conf, shortlist_index
from core.engine.shortlist import identify as shortlist_identify
from core.evaluation.protocol import ManifestRow, protocol_split, read_manifest, subset_identities
from core.store.photos import sha256_hex

log = logging.getLogger(__name__)

#: Bump when the augmentation recipe changes, so cached copies made by the old one are not reused.
AUGMENT_VERSION = 1

Progress = Callable[[str, int, int], None]


def default_cache_dir() -> Path:
    """``$SCUTE_BENCH_CACHE``, else ``$XDG_CACHE_HOME/scute/bench`` (``~/.cache/scute/bench``)."""
    if os.environ.get("SCUTE_BENCH_CACHE"):
        return Path(os.environ["SCUTE_BENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "scute" / "bench"


def default_data_dir() -> Path:
    return Path(os.environ.get("SCUTE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "turtles"


@dataclass
class BenchConf:
    """Everything that defines a benchmark run; printed with the results."""

    manifest: Path = field(default_factory=lambda: default_data_dir() / "manifest.csv")
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
    cache_dir: Path = field(default_factory=default_cache_dir)
    shortlist: ShortlistConf | None = None  # None: the device's preset
    scoring: ScoringConf = field(default_factory=ScoringConf)
    throughput_pairs: int | None = None  # pairs timed for LightGlue alone (None: 4,096 on CUDA, 16 on a CPU; 0: skip)
    workers: int = 0  # processes that write augmented copies (0: one per core)
    turns: tuple[int, ...] = UPRIGHT  # quarter-turns each query is tried in (the published runs: upright only)

    def exhaustive_count(self, size: int) -> int:
        if self.exhaustive_queries is not None:
            return min(self.exhaustive_queries, self.queries)
        return self.queries if size <= 1000 else min(10, self.queries)


# --------------------------------------------------------------------------------------------------
# Augmented galleries


def augment(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One identity-preserving variant of a photo and the JPEG quality to save it with.

    Geometry stays small (±12°, ±10 % scale, ±5 % shift, crops keeping ≥ 85 % of each side), as between
    two photos of one encounter; photometry covers lighting, white balance, focus and sensor noise.
    """
    h, w = rgb.shape[:2]
    angle = rng.uniform(-12.0, 12.0)
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.05, 0.05, 2) * (w, h)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += shift
    out = cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    cw, ch = int(w * rng.uniform(0.85, 1.0)), int(h * rng.uniform(0.85, 1.0))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = out[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-25.0, 25.0)
    gains = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    mean = out.mean()
    out = ((out - mean) * contrast + mean + brightness) * gains
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.4:
        out = out + rng.normal(0.0, rng.uniform(2.0, 8.0), out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8), int(rng.integers(80, 96))


def _augment_job(job: tuple[str, str, list[tuple[str, int]], int, int]) -> list[tuple[str, str]]:
    """Write the missing augmented copies of one source photo (in a worker process), decoding it once.

    Returns each copy's path and content hash.
    """
    from core.engine.images import prepare

    source, sha, copies, seed, max_side = job
    cv2.setNumThreads(1)  # one process per core already
    rgb: np.ndarray | None = None
    out: list[tuple[str, str]] = []
    for dest, copy in copies:
        path = Path(dest)
        if not path.exists():
            if rgb is None:
                rgb = prepare(Path(source), max_side=max_side)
            # The copy depends on the source's content, the copy number and the seed, not on run order.
            rng = np.random.default_rng([seed, copy, int(sha[:15], 16)])
            pixels, quality = augment(rgb, rng)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"could not encode {dest}")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, path)
        out.append((dest, sha256_hex(path.read_bytes())))
    return out


def _path_order(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()


def grow_gallery(
    base: Sequence[GalleryPhoto],
    size: int,
    conf: BenchConf,
    progress: Progress | None = None,
) -> list[GalleryPhoto]:
    """``size`` photos: the real ones first (in a fixed pseudo-random order), then augmented copies.

    Copy ``k`` of every real photo comes before copy ``k + 1`` of any, so smaller galleries are subsets
    of larger ones and every individual grows in proportion.
    """
    base = sorted(base, key=lambda p: _path_order(p.path.name))
    if size <= len(base):
        return list(base[:size])
    folder = conf.cache_dir / "augmented" / f"v{AUGMENT_VERSION}-seed{conf.seed}-{conf.max_side}px"
    order: list[tuple[str, str]] = []  # (dest, identity) in gallery order
    by_source: dict[int, list[tuple[str, int]]] = {}
    for n in range(size - len(base)):
        copy, k = 1 + n // len(base), n % len(base)
        photo = base[k]
        dest = str(folder / photo.identity / f"{photo.path.stem}-{photo.sha256[:8]}-{copy:04d}.jpg")
        order.append((dest, photo.identity))
        by_source.setdefault(k, []).append((dest, copy))
    jobs = [(str(base[k].path), base[k].sha256, copies, conf.seed, conf.max_side) for k, copies in by_source.items()]
    workers = min(conf.workers or os.cpu_count() or 1, len(jobs))
    done: dict[str, str] = {}
    # Clean workers, never forked ones: a fork of a process that has run torch (its OpenMP pool, or a CUDA
    # context) can hang in the child before it does any work.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context) if workers > 1 else None
    try:
        results = pool.map(_augment_job, jobs) if pool else map(_augment_job, jobs)
        for result in results:
            done.update(result)
            if progress:
                progress("augmenting", len(done), len(order))
    finally:
        if pool:
            pool.shutdown()
    return list(base) + [GalleryPhoto(done[dest], identity, Path(dest)) for dest, identity in order]


class MemoryFeatureCache(FeatureCache):
    """The on-disk feature cache plus one in-memory copy of every entry read or written during a size.

    ``Engine.build_index`` reads every gallery photo's features again: with this layer it gets the very
    objects the benchmark already holds instead of a second copy. With ``half`` the descriptors stay in
    half precision, exactly what the disk cache stores, which halves the gallery's memory (LightGlue
    converts them to its own precision anyway).
    """

    def __init__(self, root: Path, half: bool) -> None:
        super().__init__(root)
        self.half = half
        self.memory: dict[tuple[str, str], Features] = {}

    def get(self, version: str, key: str) -> Features | None:
        hit = self.memory.get((version, key))
        if hit is None:
            hit = super().get(version, key)
            if hit is not None:
                if self.half:
                    hit.descriptors = hit.descriptors.astype(np.float16)
                self.memory[(version, key)] = hit
        return hit

    def forget(self) -> None:
        self.memory.clear()


# --------------------------------------------------------------------------------------------------
# Measurement helpers


def _status_kib(field_name: str) -> int | None:
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def reset_peak_rss() -> None:
    """Reset the kernel's high-water mark (Linux), so each gallery size reports its own peak."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_rss_gib() -> float:
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: the process-lifetime peak
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**30, 1)
        if hasattr(os, "sysconf")
        else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _timer(out: dict[str, float], name: str, device: torch.device) -> Iterator[None]:
    _sync(device)
    start = time.perf_counter()
    yield
    _sync(device)
    out[name] = out.get(name, 0.0) + time.perf_counter() - start


def _rank_of(identity: str, ranking: Sequence[str]) -> int:
    return ranking.index(identity) if identity in ranking else len(ranking)


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class QueryRecord:
    path: str
    identity: str
    seconds: float
    stages: dict[str, float]
    pairs: int
    shortlisted: list[str]
    ranking: list[str]  # shortlist+rerank, top 5
    rank: int  # of the true identity, 0-based
    exhaustive_ranking: list[str] | None = None
    exhaustive_rank: int | None = None
    exhaustive_seconds: float | None = None


@dataclass
class SizeReport:
    gallery_photos: int
    individuals: int
    augmented_photos: int
    queries: int
    exhaustive_queries: int
    build_seconds: dict[str, float]
    latency_median_s: float
    latency_p95_s: float
    stage_median_s: dict[str, float]
    pairs_median: float
    pairs_max: int
    top1: float
    top5: float
    shortlist_recall: float  # true individual among those sent to LightGlue
    subset_top1: float  # shortlist+rerank on the exhaustive subset ...
    subset_top5: float
    exhaustive_top1: float  # ... and exhaustive matching on the same queries
    exhaustive_top5: float
    top1_agreement: float  # same first individual as exhaustive, on the subset
    exhaustive_latency_median_s: float | None
    peak_rss_gib: float
    peak_gpu_gib: float | None
    shortlist_bank_mib: float
    records: list[QueryRecord] = field(default_factory=list)


@dataclass
class BenchReport:
    machine: dict[str, Any]
    settings: dict[str, Any]
    throughput: dict[str, Any] | None
    sizes: list[SizeReport]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        m, s = self.machine, self.settings
        lines = [
            f"machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
            f"GPU: {m.get('gpu') or 'none'}; load average {m.get('load_average')}",
            f"device {s['device']}; {s['extractor']} {s['max_side']} px / {s['keypoints']} keypoints; "
            f"LightGlue batch {s['batch_size']}, {'fp16' if s['half'] else 'fp32'}; scoring {s['scoring']}; "
            f"seed {s['seed']}",
            f"shortlist: {s['shortlist']}",
        ]
        if self.throughput:
            t = self.throughput
            lines.append(
                f"LightGlue stage: {t['pairs_per_s']:.0f} pairs/s ({t['pairs']} pairs at {t['keypoints']} keypoints, "
                f"batch {t['batch_size']}, {'fp16' if t['half'] else 'fp32'})"
            )
        head = (
            f"{'photos':>7} {'ids':>4} {'queries':>7} {'median s':>9} {'p95 s':>7} {'pairs':>6} "
            f"{'top-1':>6} {'top-5':>6} {'exh. top-1':>10} {'exh. top-5':>10} {'on':>4} "
            f"{'RSS GiB':>8} {'GPU GiB':>8}"
        )
        lines.append(head)
        for r in self.sizes:
            gpu = f"{r.peak_gpu_gib:.2f}" if r.peak_gpu_gib is not None else "-"
            lines.append(
                f"{r.gallery_photos:>7} {r.individuals:>4} {r.queries:>7} {r.latency_median_s:>9.3f} "
                f"{r.latency_p95_s:>7.3f} {r.pairs_median:>6.0f} {r.top1:>6.3f} {r.top5:>6.3f} "
                f"{r.exhaustive_top1:>10.3f} {r.exhaustive_top5:>10.3f} {r.exhaustive_queries:>4} "
                f"{r.peak_rss_gib:>8.2f} {gpu:>8}"
            )
        lines.append(
            "top-1/top-5: shortlist+rerank on all queries; exh.: exhaustive matching on the first 'on' queries "
            "(shortlist+rerank on those same queries: "
            + ", ".join(f"{r.gallery_photos}: {r.subset_top1:.3f}/{r.subset_top5:.3f}" for r in self.sizes)
            + ")"
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    """One engine, its caches in ``conf.cache_dir``, and the real photos split by the evaluation protocol."""

    def __init__(self, conf: BenchConf, progress: Progress | None = None) -> None:
        self.conf = conf
        self.progress = progress
        self.engine = Engine(
            conf.extractor,
            {"max_side": conf.max_side, "max_keypoints": conf.keypoints},
            {"batch_size": conf.batch_size} if conf.batch_size and conf.extractor in ("aliked", "disk") else None,
            scoring=conf.scoring,
            device=conf.device,
            cache_dir=conf.cache_dir / "engine",
            turns=conf.turns,
        )
        self.device = self.engine.device
        self.batch = getattr(self.engine.matcher, "batch_size", 1)  # what the matcher uses
        on_gpu = self.device.type == "cuda"
        self.throughput_pairs = conf.throughput_pairs if conf.throughput_pairs is not None else 4096 if on_gpu else 16
        half = self.engine.matcher.name == "lightglue"
        self.cache = self.engine.feature_cache = MemoryFeatureCache(conf.cache_dir / "engine" / "features", half)
        self.shortlist = conf.shortlist or default_conf(self.device)
        self.query_pairs = PairCache(conf.cache_dir / "engine" / "query-matches", self.engine.pair_cache.root.name)
        rows = read_manifest(conf.manifest)
        if conf.identities:
            rows = subset_identities(rows, conf.identities)
        split = protocol_split(rows)
        root = conf.manifest.parent
        self.base = [self._photo(root, r) for r in split.gallery]
        known = {p.identity for p in self.base}
        queries = [r for r in split.queries if r.identity in known]
        queries.sort(key=lambda r: _path_order(r.path))
        self.queries = [(r, root / r.path) for r in queries[: conf.queries]]

    @staticmethod
    def _photo(root: Path, row: ManifestRow) -> GalleryPhoto:
        path = root / row.path
        return GalleryPhoto(sha256_hex(path.read_bytes()), row.identity, path)

    def _tick(self, stage: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(stage, done, total)

    def features(self, photos: Sequence[GalleryPhoto]) -> list[Features]:
        """Gallery features from the cache, extracting the missing ones while threads decode the next photos."""
        from core.engine.images import prepare

        engine, cache = self.engine, self.engine.feature_cache
        version = engine.extractor.version
        out: list[Features | None] = [cache.get(version, p.key) for p in photos]
        missing = [i for i, f in enumerate(out) if f is None]
        max_side = engine.extractor.max_side

        def load(i: int) -> np.ndarray:
            return prepare(photos[i].path, max_side=max_side)

        with ThreadPoolExecutor(4) as pool:
            window = 16
            pending = {i: pool.submit(load, i) for i in missing[:window]}
            for n, i in enumerate(missing):
                if n + window < len(missing):
                    j = missing[n + window]
                    pending[j] = pool.submit(load, j)
                cache.put(engine.extractor.extract(pending.pop(i).result()), photos[i].key)
                out[i] = cache.get(version, photos[i].key)
                self._tick("features", n + 1, len(missing))
        assert all(f is not None for f in out)
        return out  # type: ignore[return-value]

    def throughput(self, features: Sequence[Features]) -> dict[str, Any] | None:
        """LightGlue alone: one query against ``throughput_pairs`` gallery photos, batched (after a warm-up)."""
        n = self.throughput_pairs
        if n <= 0 or len(features) < 2 or self.engine.matcher.name != "lightglue":
            return None
        query, gallery = features[0], list(features[1:])
        gallery = (gallery * (1 + n // len(gallery)))[:n]
        matcher = self.engine.matcher
        matcher.match_many(query, gallery[: min(len(gallery), 2 * self.batch)])
        timing: dict[str, float] = {}
        with _timer(timing, "match", self.device):
            matcher.match_many(query, gallery)
        return {
            "pairs": n,
            "keypoints": len(query),
            "batch_size": self.batch,
            "half": bool(getattr(matcher, "half", False)),
            "seconds": timing["match"],
            "pairs_per_s": n / timing["match"],
        }

    def _exhaustive(self, views: Sequence[Features], qkey: str, index: GalleryIndex) -> list[MatchResult]:
        """Every gallery photo in every turn of the query, as :meth:`Engine.match_gallery` does."""
        turns = self.engine.turns[: len(views)]
        tries = [
            self._exhaustive_view(view, qkey if turn == 0 else f"{qkey}-{turn}", index)
            for view, turn in zip(views, turns, strict=True)
        ]
        return self.engine.best_of_turns(views, tries)

    def _exhaustive_view(self, query: Features, qkey: str, index: GalleryIndex) -> list[MatchResult]:
        """Every gallery photo, with results cached by (query, photo) so that reruns only match new photos."""
        results: list[MatchResult | None] = []
        todo: list[int] = []
        for i, (photo, f) in enumerate(zip(index.photos, index.features, strict=True)):
            cached = self.query_pairs.get(qkey, photo.key)
            if cached is None:
                todo.append(i)
                results.append(None)
            else:
                results.append(MatchResult.from_indices(query, f, *cached))
        step = max(self.batch * 4, 64)
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            for i, r in zip(
                chunk, self.engine.matcher.match_many(query, [index.features[i] for i in chunk]), strict=True
            ):
                self.query_pairs.put(qkey, index.photos[i].key, r)
                results[i] = r
        return [r for r in results if r is not None]

    def run_size(self, size: int) -> SizeReport:
        from core.engine.images import prepare

        conf, engine = self.conf, self.engine
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        build: dict[str, float] = {}
        start = time.perf_counter()
        photos = grow_gallery(self.base, size, conf, self._tick)
        build["augment"] = time.perf_counter() - start
        start = time.perf_counter()
        self.features(photos)
        build["features"] = time.perf_counter() - start
        # build_index finds every photo's features in memory and matches only the null pairs not cached on disk.
        start = time.perf_counter()
        index = engine.build_index(photos, lambda d, t: self._tick("null pairs", d, t))
        self.cache.forget()  # the index holds the features now
        build["null_pairs"] = time.perf_counter() - start
        index.model(engine.scoring.method)
        bank = shortlist_index(index, self.shortlist, self.device)
        build["shortlist_bank"] = bank.build_seconds

        # Warm-up (kernels, allocator, lazy imports) on one query, not counted.
        def views(path: Path) -> list[Features]:
            return [engine.extractor.extract(prepare(path, rotation=t, max_side=conf.max_side)) for t in engine.turns]

        shortlist_identify(engine, views(self.queries[0][1]), index, self.shortlist)

        records: list[QueryRecord] = []
        n_exh = conf.exhaustive_count(size)
        for qi, (row, path) in enumerate(self.queries):
            stages: dict[str, float] = {}
            with _timer(stages, "total", self.device):
                with _timer(stages, "features", self.device):
                    query = views(path)
                identification, short = shortlist_identify(engine, query, index, self.shortlist)
            stages["shortlist"] = short.seconds
            stages["rerank"] = stages["total"] - stages["features"] - short.seconds
            record = QueryRecord(
                str(row.path),
                row.identity,
                stages["total"],
                stages,
                len(short.photos),
                short.individuals,
                identification.ranking[:5],
                _rank_of(row.identity, identification.ranking),
            )
            if qi < n_exh:
                qkey = sha256_hex(path.read_bytes())
                t0 = time.perf_counter()
                exhaustive = engine.rank(self._exhaustive(query, qkey, index), index)
                record.exhaustive_seconds = time.perf_counter() - t0
                record.exhaustive_ranking = exhaustive.ranking[:5]
                record.exhaustive_rank = _rank_of(row.identity, exhaustive.ranking)
            records.append(record)
            self._tick(f"queries ({size} photos)", qi + 1, len(self.queries))

        report = self._summarise(size, photos, index, bank.nbytes, build, records)
        index.shortlists.clear()
        del index, bank
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return report

    def _summarise(
        self,
        size: int,
        photos: Sequence[GalleryPhoto],
        index: GalleryIndex,
        bank_bytes: int,
        build: dict[str, float],
        records: list[QueryRecord],
    ) -> SizeReport:
        def frac(values: Sequence[bool]) -> float:
            return float(np.mean(values)) if values else float("nan")

        lat = [r.seconds for r in records]
        subset = [r for r in records if r.exhaustive_rank is not None]
        exh_lat = [r.exhaustive_seconds for r in subset if r.exhaustive_seconds is not None]
        return SizeReport(
            gallery_photos=len(photos),
            individuals=len(index.identities),
            augmented_photos=max(0, len(photos) - len(self.base)),
            queries=len(records),
            exhaustive_queries=len(subset),
            build_seconds={k: round(v, 3) for k, v in build.items()},
            latency_median_s=float(np.median(lat)),
            latency_p95_s=float(np.percentile(lat, 95)),
            stage_median_s={k: float(np.median([r.stages[k] for r in records])) for k in records[0].stages},
            pairs_median=float(np.median([r.pairs for r in records])),
            pairs_max=max(r.pairs for r in records),
            top1=frac([r.rank < 1 for r in records]),
            top5=frac([r.rank < 5 for r in records]),
            shortlist_recall=frac([r.identity in r.shortlisted for r in records]),
            subset_top1=frac([r.rank < 1 for r in subset]),
            subset_top5=frac([r.rank < 5 for r in subset]),
            exhaustive_top1=frac([r.exhaustive_rank is not None and r.exhaustive_rank < 1 for r in subset]),
            exhaustive_top5=frac([r.exhaustive_rank is not None and r.exhaustive_rank < 5 for r in subset]),
            top1_agreement=frac(
                [bool(r.exhaustive_ranking) and r.ranking[:1] == r.exhaustive_ranking[:1] for r in subset]
            ),
            exhaustive_latency_median_s=statistics.median(exh_lat) if exh_lat else None,
            peak_rss_gib=peak_rss_gib(),
            peak_gpu_gib=torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None,
            shortlist_bank_mib=bank_bytes / 2**20,
            records=records,
        )

    def settings(self) -> dict[str, Any]:
        c = self.conf
        return {
            "device": str(self.device),
            "extractor": c.extractor,
            "max_side": c.max_side,
            "keypoints": c.keypoints,
            "batch_size": self.batch,
            "half": bool(getattr(self.engine.matcher, "half", False)),
            "scoring": asdict(c.scoring),
            "shortlist": asdict(self.shortlist),
            "seed": c.seed,
            "queries": c.queries,
            "identities": c.identities,
            "manifest": str(c.manifest),
            "cache_dir": str(c.cache_dir),
            "augment_version": AUGMENT_VERSION,
            "matcher_conf": self.engine.matcher.conf,
        }

    def run(self, on_size: Callable[[BenchReport], None] | None = None) -> BenchReport:
        """Every size in increasing order; ``on_size`` sees the report so far after each (to save partial runs)."""
        report = BenchReport(machine(), self.settings(), None, [])
        if not self.queries:
            raise ValueError("no query photos: the manifest needs identities with at least two photos")
        for size in sorted(self.conf.sizes):
            if report.throughput is None and self.throughput_pairs:
                first = grow_gallery(self.base, min(size, len(self.base)), self.conf)
                report.throughput = self.throughput(self.features(first))
                self.cache.forget()
            report.sizes.append(self.run_size(size))
            report.machine["load_average"] = machine().get("load_average")
            if on_size:
                on_size(report)
        return report


# --------------------------------------------------------------------------------------------------
# Command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = BenchConf()
    p.add_argument("--gallery-size", type=int, nargs="+", default=list(d.sizes), help="gallery sizes, in photos")
    p.add_argument("--queries", type=int, default=d.queries, help="real query photos per size")
    p.add_argument(
        "--exhaustive-queries",
        type=int,
        default=None,
        help="queries also matched exhaustively (default: all up to 1,000 photos, 10 beyond)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--manifest", type=Path, default=d.manifest, help="CSV path,identity of the real photos")
    p.add_argument("--extractor", default=d.extractor, choices=["aliked", "disk", "sift"])
    p.add_argument("--max-side", type=int, default=d.max_side, help="working resolution, long side in pixels")
    p.add_argument("--keypoints", type=int, default=d.keypoints, help="keypoint budget per photo")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="LightGlue pairs per batch")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the augmentations")
    p.add_argument("--identities", type=int, help="use only the N identities with the fewest photos")
    p.add_argument("--cache-dir", type=Path, default=d.cache_dir, help="augmented photos, features, matches")
    p.add_argument(
        "--throughput-pairs",
        type=int,
        default=d.throughput_pairs,
        help="pairs timed for LightGlue alone (default: 4096 on CUDA, 16 on a CPU)",
    )
    p.add_argument(
        "--null-negatives", type=int, default=d.scoring.null_negatives, help="null pairs per photo (other individuals)"
    )
    p.add_argument(
        "--null-positives", type=int, default=d.scoring.null_positives, help="calibration pairs per photo (same one)"
    )
    p.add_argument("--photos-per-individual", type=int, help="shortlist: photos of each kept individual matched")
    p.add_argument("--max-pairs", type=int, help="shortlist: LightGlue pairs per query at most")
    p.add_argument("--turns", default="none", help="turns each query is tried in: none, all or degrees like 0,180")
    p.add_argument("--json", help="write the full report (settings, machine, every query) to this file")


def conf_from_args(args: argparse.Namespace) -> BenchConf:
    conf = BenchConf(
        manifest=args.manifest,
        sizes=tuple(args.gallery_size),
        queries=args.queries,
        exhaustive_queries=args.exhaustive_queries,
        device=args.device,
        extractor=args.extractor,
        max_side=args.max_side,
        keypoints=args.keypoints,
        batch_size=args.batch_size,
        seed=args.seed,
        identities=args.identities,
        cache_dir=args.cache_dir,
        throughput_pairs=args.throughput_pairs,
        scoring=replace(ScoringConf(), null_negatives=args.null_negatives, null_positives=args.null_positives),
        turns=parse_turns(args.turns) or UPRIGHT,
    )
    overrides = {
        k: v
        for k, v in (("photos_per_individual", args.photos_per_individual), ("max_pairs", args.max_pairs))
        if v is not None
    }
    if overrides:
        from core.engine.features import pick_device

        conf.shortlist = replace(default_conf(pick_device(args.device)), **overrides)
    return conf


def _bars() -> Progress:
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None and done >= total:  # a stage that had nothing to do (or its closing call)
            return
        if bar is None:
            bar = bars[stage] = tqdm(desc=stage, total=total, unit="step", leave=False, file=sys.stderr)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            bars.pop(stage)

    return update


def cmd_bench(args: argparse.Namespace) -> int:
    conf = conf_from_args(args)

    def save(report: BenchReport) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(report.to_dict(), indent=2, default=str))

    report = Bench(conf, _bars()).run(save)
    print(report.table())
    if args.json:
        print(f"full report written to {args.json}")
    return 0


def register(sub: Any) -> None:
    """Add ``bench`` to ``python -m core``'s subcommands."""
    p = sub.add_parser("bench", help="benchmark shortlist+rerank on augmented galleries of 100 to 10,000 photos")
    add_arguments(p)
    p.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m core.bench``: the same as ``python -m core bench``, without the database modules."""
    parser = argparse.ArgumentParser(prog="python -m core.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    return cmd_bench(args)


if __name__ == "__main__":
    sys.exit(main())
