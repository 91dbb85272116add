"""The evaluation protocol: the split rules, manifest reading, and a reduced run on real turtle photos."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
from fixtures.models import SMALL_ALIKED_CONF

from core.catalogue.manifest import ManifestRow, read_manifest
from core.errors import ManifestError
from core.evaluation.metrics import auroc
from core.evaluation.protocol import METHODS, evaluate, protocol_split, subset_identities


def _rows(sizes: dict[str, int]) -> list[ManifestRow]:
    return [ManifestRow(f"{ident}/{i:02d}.jpg", ident) for ident, n in sizes.items() for i in range(n)]


def test_split_makes_the_first_quarter_by_sha1_novel_and_alternates_the_rest() -> None:
    sizes = {f"id{k}": 3 + k for k in range(8)}
    rows = _rows(sizes)
    split = protocol_split(list(reversed(rows)))  # input order must not matter
    by_hash = sorted(sizes, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    assert split.novel == by_hash[:2]
    for ident, _n in sizes.items():
        gallery = [r.path for r in split.gallery if r.identity == ident]
        queries = [r.path for r in split.queries if r.identity == ident]
        paths = sorted(r.path for r in rows if r.identity == ident)
        if ident in split.novel:
            assert gallery == [] and sorted(queries) == paths
        else:
            assert gallery == paths[0::2] and sorted(queries) == paths[1::2]
    assert len(split.gallery) + len(split.queries) == len(rows)


def test_subset_keeps_the_identities_with_fewest_photos() -> None:
    rows = _rows({"a": 5, "b": 2, "c": 9, "d": 2})
    kept = subset_identities(rows, 2)
    assert {r.identity for r in kept} == {"b", "d"}
    assert len(kept) == 4


def test_auroc_values() -> None:
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auroc([0.1], [0.9]) == 0.0
    assert auroc([0.5, 0.5], [0.5]) == 0.5
    assert math.isnan(auroc([], [0.3]))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"file,who\na.jpg,t1\n", "needs the columns path and identity"),
        (b"path,identity\n\xff\xfe\x00bad,t1\n", "not UTF-8"),
    ],
)
def test_bad_manifests_raise_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(manifest)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")


def test_manifest_side_defaults_to_unknown(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("Path, Identity ,side\na.jpg,t1,left\nb.jpg,t2,\n")
    assert read_manifest(manifest) == [ManifestRow("a.jpg", "t1", "left"), ManifestRow("b.jpg", "t2", "unknown")]


@pytest.fixture(scope="module")
def reduced_report(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The protocol on the four smallest identities, their first 8 photos each, at the small CPU settings."""
    from core.engine.search import Engine

    root = data_dir / "turtles"
    rows = sorted(subset_identities(read_manifest(root / "manifest.csv"), 4), key=lambda r: r.path)
    rows = [r for r in rows if sum(1 for o in rows if o.identity == r.identity and o.path < r.path) < 8]
    engine = Engine("aliked", dict(SMALL_ALIKED_CONF), device="cpu", cache_dir=tmp_path_factory.mktemp("eval"))
    stages: dict[str, int] = {}
    report = evaluate(rows, root, engine, METHODS, lambda stage, done, total: stages.__setitem__(stage, done))
    return rows, report, stages


def test_reduced_evaluation_reports_every_method_on_the_same_queries(reduced_report) -> None:
    rows, report, stages = reduced_report
    split = protocol_split(rows)
    novel_queries = sum(1 for r in split.queries if r.identity in split.novel)
    assert report.gallery_photos == len(split.gallery)
    assert report.queries == len(split.queries) == stages["queries"]
    assert report.novel_identities == split.novel
    assert set(report.methods) == set(METHODS)
    for m in report.methods.values():
        assert m.known_queries == len(split.queries) - novel_queries
        assert m.novel_queries == novel_queries
        assert 0.0 <= m.top1 <= m.top3 <= m.top5 <= 1.0
        assert 0.0 <= m.novelty_auroc <= 1.0
        assert 0.0 <= m.new_decision_accuracy <= 1.0
    assert len(report.queries_detail) == report.queries
    assert report.latency_median_s <= report.latency_p95_s
    assert report.extraction_s_per_photo > 0
    assert report.settings["extractor_conf"]["max_side"] == SMALL_ALIKED_CONF["max_side"]
    assert report.machine["device"] == "cpu"
    assert "top-1" in report.table()


def test_reduced_evaluation_identifies_turtles(reduced_report) -> None:
    """Small settings and three known individuals: the default scoring still finds most of them."""
    _, report, _ = reduced_report
    default = report.methods[report.default_method]
    assert default.top1 >= 0.6
    assert default.novelty_auroc > 0.5
    # What distribution scoring is for: telling a new individual from a known one better than counting does.
    assert default.novelty_auroc > report.methods["count"].novelty_auroc
