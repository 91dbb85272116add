"""``python -m core bench``: the speed benchmark of :mod:`core.evaluation.bench`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.cli.common import settings
from core.engine.orientation import UPRIGHT, parse_turns
from core.engine.scoring import ScoringConf
from core.engine.shortlist import default_conf
from core.evaluation.bench.conf import BenchConf
from core.evaluation.bench.report import BenchReport
from core.evaluation.bench.runner import Bench
from core.progress import StageProgress


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = BenchConf(Path(), Path())  # for the defaults
    p.add_argument("--gallery-size", type=int, nargs="+", default=list(d.sizes), help="gallery sizes, in photos")
    p.add_argument("--queries", type=int, default=d.queries, help="real query photos per size")
    p.add_argument(
        "--exhaustive-queries",
        type=int,
        default=None,
        help="queries also matched exhaustively (default: all up to 1,000 photos, 10 beyond)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--manifest", type=Path, default=None, help="CSV path,identity of the real photos")
    p.add_argument("--extractor", default=d.extractor, choices=["aliked", "disk", "sift"])
    p.add_argument("--max-side", type=int, default=d.max_side, help="working resolution, long side in pixels")
    p.add_argument("--keypoints", type=int, default=d.keypoints, help="keypoint budget per photo")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="LightGlue pairs per batch")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the augmentations")
    p.add_argument("--identities", type=int, help="use only the N identities with the fewest photos")
    p.add_argument("--cache-dir", type=Path, default=None, help="augmented photos, features, matches")
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


def conf_from_args(args: argparse.Namespace, manifest: Path, cache_dir: Path) -> BenchConf:
    """``manifest`` and ``cache_dir``: where the settings put them, unless ``--manifest``/``--cache-dir`` say."""
    conf = BenchConf(
        manifest=args.manifest or manifest,
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
        cache_dir=args.cache_dir or cache_dir,
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
        from core.engine.device import pick_device

        conf.shortlist = replace(default_conf(pick_device(args.device)), **overrides)
    return conf


def _bars() -> StageProgress:
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
    conf = conf_from_args(args, settings(args).data_dir / "turtles" / "manifest.csv", settings(args).bench_cache)

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
