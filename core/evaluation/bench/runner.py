"""The benchmark itself: grow each gallery, build its index, time real queries, compare with exhaustive search."""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.catalogue.manifest import ManifestRow, read_manifest
from core.engine.bulk import extract_stream
from core.engine.features import Features
from core.engine.index import GalleryIndex, GalleryPhoto, PairCache
from core.engine.matching import MatchResult
from core.engine.search import Engine
from core.engine.shortlist import default_conf, shortlist_index
from core.errors import ScuteError
from core.evaluation.bench.augment import AUGMENT_VERSION, _path_order, grow_gallery
from core.evaluation.bench.conf import BenchConf
from core.evaluation.bench.report import BenchReport, QueryRecord, SizeReport
from core.evaluation.machine import machine, peak_rss_gib, reset_peak_rss
from core.evaluation.metrics import rank_of
from core.evaluation.protocol import protocol_split, subset_identities
from core.io import sha256_hex
from core.progress import StageProgress


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


class Bench:
    """One engine, its caches in ``conf.cache_dir``, and the real photos split by the evaluation protocol."""

    def __init__(self, conf: BenchConf, progress: StageProgress | None = None) -> None:
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
            feature_memory_mib=conf.feature_memory_mib,
        )
        self.device = self.engine.device
        self.extracted = 0  # photos whose features the last gallery build had to extract
        self.batch = getattr(self.engine.matcher, "batch_size", 1)  # what the matcher uses
        on_gpu = self.device.type == "cuda"
        self.throughput_pairs = conf.throughput_pairs if conf.throughput_pairs is not None else 4096 if on_gpu else 16
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

    def features(self, photos: Sequence[GalleryPhoto]) -> None:
        """Every gallery photo's features in the on-disk cache (as an import leaves them): the missing ones
        through :func:`core.engine.bulk.extract_stream` (decoding threads ahead of the network by a bounded
        window, batches of one network shape on a GPU). Nothing is kept: the index reads what it needs."""
        from core.engine.images import prepare

        engine, cache = self.engine, self.engine.feature_cache
        version = engine.extractor.version
        missing = [i for i, p in enumerate(photos) if not cache.path(version, p.key).exists()]
        self.extracted = len(missing)
        max_side = engine.extractor.max_side

        def load(j: int) -> np.ndarray:
            # Through the app's decoding workers and their budgets, as an imported photo would be.
            return prepare(photos[missing[j]].path, max_side=max_side)

        written: list[tuple[int, Future[Path]]] = []
        with ThreadPoolExecutor(4) as writers:  # each cache file is fsync'd: writes wait on the disk, not on us

            def keep(j: int, result: Features | ScuteError) -> None:
                if isinstance(result, Exception):
                    raise result
                i = missing[j]
                written.append((i, writers.submit(cache.put, result, photos[i].key)))
                if len(written) % 64 == 0 or len(written) == len(missing):
                    self._tick("features", len(written), len(missing))

            extract_stream(engine.extractor, len(missing), load, keep)
            for _, future in written:
                future.result()

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
        return self.engine.best_of_turns(views, tries, [f.image_size for f in index.features])

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
        build["photos_extracted"] = float(self.extracted)
        if self.extracted:
            build["extraction_photos_per_s"] = self.extracted / build["features"]
        # build_index reads every photo's cached features once (keeping what fits its memory budget) and
        # matches only the null pairs not cached on disk.
        start = time.perf_counter()
        index = engine.build_index(photos, lambda d, t: self._tick("null pairs", d, t))
        build["null_pairs"] = time.perf_counter() - start
        index.model(engine.scoring.method)
        bank_conf = engine.shortlist_conf(self.shortlist, len(index.photos))  # as the searches below resolve it
        assert bank_conf is not None  # a conf always shortlists
        bank = shortlist_index(index, bank_conf, self.device)
        build["shortlist_bank"] = bank.build_seconds

        # Warm-up (kernels, allocator, lazy imports) on one query, not counted.
        def views(path: Path) -> list[Features]:
            return [engine.extractor.extract(prepare(path, rotation=t, max_side=conf.max_side)) for t in engine.turns]

        engine.search(views(self.queries[0][1]), index, shortlist=self.shortlist)

        records: list[QueryRecord] = []
        n_exh = conf.exhaustive_count(size)
        for qi, (row, path) in enumerate(self.queries):
            stages: dict[str, float] = {}
            with _timer(stages, "total", self.device):
                with _timer(stages, "features", self.device):
                    query = views(path)
                outcome = engine.search(query, index, shortlist=self.shortlist)
                identification, short = outcome.identification, outcome.shortlist
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
                rank_of(row.identity, identification.ranking),
            )
            if qi < n_exh:
                qkey = sha256_hex(path.read_bytes())
                t0 = time.perf_counter()
                exhaustive = engine.rank(self._exhaustive(query, qkey, index), index)
                record.exhaustive_seconds = time.perf_counter() - t0
                record.exhaustive_ranking = exhaustive.ranking[:5]
                record.exhaustive_rank = rank_of(row.identity, exhaustive.ranking)
            records.append(record)
            self._tick(f"queries ({size} photos)", qi + 1, len(self.queries))

        # A reviewer confirms one more photo: the background work that makes it searchable (its features, the
        # next index version reusing every other photo, and the shortlist's bank). Measured last and dropped,
        # so that no query saw it.
        row, path = self.queries[-1]
        confirmed = GalleryPhoto(sha256_hex(path.read_bytes()), row.identity, path)
        engine.feature_cache.path(engine.extractor.version, confirmed.key).unlink(missing_ok=True)  # a new photo
        start = time.perf_counter()
        grown = engine.build_index([*photos, confirmed], previous=index)
        build["add_one_photo"] = time.perf_counter() - start
        del grown
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
            "scoring": asdict(self.engine.scoring),
            "prior": self.engine.prior.signature if self.engine.prior else None,
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
                self.features(first)
                report.throughput = self.throughput([self.engine.photo_features(p) for p in first])
            report.sizes.append(self.run_size(size))
            report.machine["load_average"] = machine().get("load_average")
            if on_size:
                on_size(report)
        return report
