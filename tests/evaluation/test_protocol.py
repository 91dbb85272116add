"""The evaluation protocol: the split rules, manifest reading, and a reduced run on real turtle photos."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures.models import SMALL_ALIKED_CONF

from core.catalogue.manifest import ManifestRow, read_manifest
from core.engine.localise import ZoomConf
from core.errors import ManifestError, ScuteError
from core.evaluation.folds import evaluate_folds
from core.evaluation.metrics import auroc
from core.evaluation.protocol import (
    METHODS,
    encounter_of,
    evaluate,
    fold_identities,
    protocol_split,
    subset_identities,
)


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


def test_every_identity_is_novel_in_exactly_one_fold() -> None:
    rows = _rows({f"id{k}": 4 for k in range(13)})
    novel = [fold_identities(rows, fold, 4) for fold in range(4)]
    assert sorted(i for fold in novel for i in fold) == sorted({r.identity for r in rows})
    assert [len(fold) for fold in novel] == [3, 4, 3, 3]  # contiguous blocks; fold 0 is the old first quarter
    for fold in range(4):
        split = protocol_split(rows, fold, 4)
        assert split.novel == novel[fold] and split.fold == fold
        assert not {r.identity for r in split.gallery} & set(split.novel)
        assert len(split.gallery) + len(split.queries) == len(rows)


def test_an_encounter_never_sits_on_both_sides_of_the_split() -> None:
    """Nyala-style names: 14_left.jpg and 14_right.jpg are one encounter; a manifest column names others."""
    rows = [
        ManifestRow(f"n{k}/{enc}_{side}.jpg", f"n{k}", side)
        for k in range(6)
        for enc in (3, 14, 27, 328, 400)
        for side in ("left", "right")
    ]
    for fold in range(3):
        split = protocol_split(rows, fold, 3, encounters="name")
        gallery = {(r.identity, encounter_of(r, "name")) for r in split.gallery}
        queries = {(r.identity, encounter_of(r, "name")) for r in split.queries if r.identity not in split.novel}
        assert gallery and queries and not gallery & queries
        # Encounters in order of their first path alternate: 14, 27, 328, 3_, 400 -> 14, 328, 400 in the gallery.
        kept = sorted(enc for ident, enc in gallery if ident == next(iter(gallery))[0])
        assert kept == ["14", "328", "400"]
    # Without encounters, the two flanks of one encounter would land on both sides.
    split = protocol_split(rows, 0, 3, encounters="photo")
    gallery = {(r.identity, encounter_of(r, "name")) for r in split.gallery}
    assert gallery & {(r.identity, encounter_of(r, "name")) for r in split.queries}
    # A manifest's encounter column wins over the file name; an empty one keeps the photo alone.
    dated = [ManifestRow("a/1.jpg", "a", encounter="2024-06-01"), ManifestRow("a/2.jpg", "a", encounter="2024-06-01")]
    assert {encounter_of(r) for r in dated} == {"2024-06-01"}
    assert encounter_of(ManifestRow("a/3_x.jpg", "a")) == "a/3_x.jpg"
    with pytest.raises(ScuteError, match="Encounters come from"):
        encounter_of(dated[0], "date")


def test_manifest_encounter_column_is_read(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,identity,side,encounter\na.jpg,t1,left,2024-06-01\nb.jpg,t1,,\n")
    assert read_manifest(manifest) == [
        ManifestRow("a.jpg", "t1", "left", "2024-06-01"),
        ManifestRow("b.jpg", "t1", "unknown", ""),
    ]


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


@pytest.mark.slow  # about 3 minutes of ALIKED on two cores; the nyala protocol test below stays in the default run
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


@pytest.mark.slow  # about 3 minutes of ALIKED on two cores; the nyala protocol test below stays in the default run
def test_reduced_evaluation_identifies_turtles(reduced_report) -> None:
    """Small settings and three known individuals: the default scoring still finds most of them."""
    _, report, _ = reduced_report
    default = report.methods[report.default_method]
    assert default.top1 >= 0.6
    assert default.novelty_auroc > 0.5
    # What distribution scoring is for: telling a new individual from a known one better than counting does.
    assert default.novelty_auroc > report.methods["count"].novelty_auroc


def test_queries_are_compared_with_their_own_side_and_folds_summarised(data_dir: Path, tmp_path: Path) -> None:
    """Nyala flanks: a right-flank query of an individual whose gallery holds only left flanks is new to its
    search (as in the app); the folds give one report each and a mean and spread per metric."""
    from core.engine.search import Engine

    root = data_dir / "nyala"
    every = read_manifest(root / "manifest.csv")
    identities = sorted({r.identity for r in every})[:3]
    rows = [r for r in every if r.identity in identities]
    kept = []
    for ident in identities:  # four encounters each; in the last one's gallery (1st, 3rd) only left flanks
        photos = sorted((r for r in rows if r.identity == ident), key=lambda r: r.path)
        encounters = list(dict.fromkeys(encounter_of(r, "name") for r in photos))[:4]
        kept += [
            r
            for r in photos
            if encounter_of(r, "name") in encounters
            and (encounters.index(encounter_of(r, "name")) % 2 == 1 or r.side == "left" or ident != identities[-1])
        ]
    rows = kept
    engine = Engine("sift", {"max_side": 256}, device="cpu", cache_dir=tmp_path)
    split = protocol_split(rows, 0, 3, encounters="name")
    report = evaluate(rows, root, engine, ("confident",), split=split, exhaustive=False)
    sides = {(r.identity, r.side) for r in split.gallery}
    expected_novel = sum(1 for r in split.queries if (r.identity, r.side) not in sides and r.side != "unknown")
    assert report.settings["split"]["novel_queries"] == expected_novel
    assert expected_novel > len([r for r in split.queries if r.identity in split.novel])  # sides add novel queries
    assert all(q.first_pass_ranking is None and q.first_pass_probability is None for q in report.queries_detail)
    zooming = Engine(
        "sift", {"max_side": 256}, device="cpu", cache_dir=tmp_path, zoom=ZoomConf(confident=1.1, min_points=1)
    )
    zoomed_report = evaluate(rows, root, zooming, ("confident",), split=split, exhaustive=False)
    assert zoomed_report.settings["zoom"]["only_if_surer"] is True and report.settings["zoom"] is None
    zoomed = zoomed_report.queries_detail
    firsts = [q for q in zoomed if q.first_pass_ranking is not None]  # what the zoom changed stays in the report
    assert firsts and all(q.first_pass_probability is not None for q in firsts)
    assert all(0.0 <= q.first_pass_probability <= 1.0 and len(q.first_pass_ranking) <= 5 for q in firsts)
    assert all(q.zoomed_ranking is not None and q.zoomed_probability is not None for q in firsts)
    assert all(q.zoomed_ranking is None for q in zoomed if q.first_pass_ranking is None)
    # The zoomed answer was kept only where it was at least as sure (ZoomConf.only_if_surer).
    for q in firsts:
        assert q.best_probability == pytest.approx(max(q.first_pass_probability, q.zoomed_probability))
        kept = q.zoomed_ranking if q.zoomed_probability >= q.first_pass_probability else q.first_pass_ranking
        assert q.ranking == kept
    every_side = evaluate(rows, root, engine, ("confident",), split=split, exhaustive=False, sides=False)
    assert every_side.settings["split"]["novel_queries"] == len([r for r in split.queries if r.identity in split.novel])

    folds = evaluate_folds(rows, root, engine, ("confident",), folds=3, encounters="name", exhaustive=False)
    assert len(folds.folds) == 3
    assert sorted(i for f in folds.protocol["novel_identities"] for i in f) == identities
    mean, spread = folds.summary["search (confident)"]["top1"]
    tops = [f.search.top1 for f in folds.folds]
    assert mean == pytest.approx(sum(tops) / 3) and spread == pytest.approx(float(np.std(tops)))
    assert "3 identity folds" in folds.table() and "file name" in folds.table()


def test_a_small_gallery_draw_keeps_encounters_apart_and_adds_unseen_individuals() -> None:
    from core.evaluation.small_gallery import small_gallery_split

    rows = [
        ManifestRow(f"n{k}/{enc}_{side}.jpg", f"n{k}", side)
        for k in range(10)
        for enc in range(1, 8)
        for side in ("left", "right")
    ]
    draws = [small_gallery_split(rows, draw, individuals=4, photos=4, encounters="name") for draw in range(3)]
    for split in draws:
        chosen = {r.identity for r in split.gallery}
        assert len(chosen) == 4 and all(sum(r.identity == i for r in split.gallery) == 4 for i in chosen)
        gallery_encounters = {(r.identity, encounter_of(r, "name")) for r in split.gallery}
        assert len(gallery_encounters) == 16  # one photo per encounter while there are enough encounters
        assert not gallery_encounters & {(r.identity, encounter_of(r, "name")) for r in split.queries}
        assert len(split.novel) == 4 and not set(split.novel) & chosen
        assert sum(r.identity in split.novel for r in split.queries) == 16
    assert len({tuple(sorted({r.identity for r in s.gallery})) for s in draws}) > 1  # draws differ, reproducibly
    again = small_gallery_split(rows, 1, individuals=4, photos=4, encounters="name")
    assert again.gallery == draws[1].gallery and again.queries == draws[1].queries


def test_own_priors_sample_no_pairs_and_give_the_engine_back(tmp_path: Path) -> None:
    from core.engine.search import Engine
    from core.evaluation.folds import own_priors

    engine = Engine("sift", {"max_side": 256}, device="cpu", cache_dir=tmp_path)
    prior, scoring = engine.prior, engine.scoring
    with pytest.raises(RuntimeError), own_priors(engine, True):
        assert (engine.scoring.null_negatives, engine.scoring.null_positives) == (0, 0)
        engine.prior = "fitted on a fold"  # type: ignore[assignment]
        raise RuntimeError("a fold failed")
    assert engine.prior is prior and engine.scoring is scoring
    with own_priors(engine, False):
        assert engine.scoring is scoring  # the engine's own sampling, untouched


def test_side_galleries_are_what_a_query_of_each_side_is_compared_with() -> None:
    from core.evaluation.protocol import side_galleries

    rows = [
        ManifestRow("a/1_left.jpg", "a", "left"),
        ManifestRow("a/1_right.jpg", "a", "right"),
        ManifestRow("b/2.jpg", "b", "unknown"),
        ManifestRow("b/3_left.jpg", "b", "left"),
    ]
    assert side_galleries(rows) == {"left": [0, 2, 3], "right": [1, 2]}
    assert side_galleries([ManifestRow("a/1.jpg", "a"), ManifestRow("b/1.jpg", "b")]) == {"all": [0, 1]}


def test_a_fold_prior_is_fitted_on_each_sides_gallery_as_the_app_searches(data_dir: Path, tmp_path: Path) -> None:
    """Nyala flanks: a prior's sampled partners come from the query's own side (a left flank never matches a right
    one, so "same individual" pairs across flanks would look like strangers and flatten the calibrator)."""
    from core.engine.search import Engine
    from core.evaluation.folds import FOLD_PRIOR_PAIRS, fit_fold_prior
    from core.evaluation.protocol import manifest_photo, side_indexes

    root = data_dir / "nyala"
    every = read_manifest(root / "manifest.csv")
    identities = sorted({r.identity for r in every})[:3]
    rows = [r for r in every if r.identity in identities][:18]
    photos = [manifest_photo(root, r) for r in rows]
    engine = Engine("sift", {"max_side": 192, "max_keypoints": 256}, device="cpu", cache_dir=tmp_path, prior=False)
    side_of = {p.key: r.side for r, p in zip(rows, photos, strict=True)}
    indexes = side_indexes(engine, rows, photos)
    assert [{side_of[p.key] for p in index.photos} for index in indexes] == [{"left"}, {"right"}]
    assert sum(len(index.photos) for index in indexes) == len(rows)

    prior = fit_fold_prior(engine, rows, photos, ("confident",))
    assert prior.source["galleries"] == "one per side"
    assert (prior.source["negatives_per_photo"], prior.source["positives_per_photo"]) == FOLD_PRIOR_PAIRS
    # The same photos fitted as one gallery give another calibrator: the partners differ.
    unsided = [dataclasses.replace(r, side="unknown") for r in rows]
    mixed = fit_fold_prior(engine, unsided, photos, ("confident",))
    assert mixed.source["galleries"] == "every photo"
    assert (mixed.methods["confident"].slope, mixed.methods["confident"].offset) != (
        prior.methods["confident"].slope,
        prior.methods["confident"].offset,
    )
