"""What a benchmark run found: per query, per gallery size, and the table it prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
