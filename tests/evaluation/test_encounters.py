"""Evaluation per encounter (issue 16): the photos of one encounter (left and right flank) ranked as one with
core.engine.combine, reported beside the per-photo figures; each photo compared with its own side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.catalogue.manifest import ManifestRow, read_manifest
from core.engine.index import GalleryPhoto
from core.engine.search import Candidate, Engine, Identification
from core.errors import ScuteError
from core.evaluation.folds import evaluate_folds
from core.evaluation.protocol import _encounter_groups, _encounter_tally, encounter_of, evaluate, protocol_split


def ranking(probabilities: dict[str, float], new: float) -> Identification:
    """A photo's ranking as the engine returns it: candidates best first, the rest of the gallery after them."""
    ordered = sorted(probabilities, key=lambda k: -probabilities[k])
    candidates = [
        Candidate(k, None, probabilities[k], 0.0, 0, 0, GalleryPhoto("0" * 64, k, Path(k)), np.zeros(0))
        for k in ordered
    ]
    return Identification(candidates, new, ordered, {k: 0.0 for k in ordered}, np.zeros(0), "confident")


def test_an_encounter_adds_up_the_evidence_of_its_flanks() -> None:
    """Nyala a's left flank alone ranks b first (weakly); its right flank ranks a first (strongly): one of two
    photos is right, the encounter is. An encounter of a novel individual stays one novel encounter."""
    left = ManifestRow("a/14_left.jpg", "a", "left")
    right = ManifestRow("a/14_right.jpg", "a", "right")
    novel_left = ManifestRow("n/3_left.jpg", "n", "left")
    novel_right = ManifestRow("n/3_right.jpg", "n", "right")
    per_photo = [
        (left, False, ranking({"b": 0.35, "a": 0.30, "c": 0.05}, 0.30), None),
        (right, False, ranking({"a": 0.80, "b": 0.05, "c": 0.05}, 0.10), None),
        (novel_left, True, ranking({"b": 0.10, "a": 0.05, "c": 0.05}, 0.80), None),
        (novel_right, True, ranking({"c": 0.10, "a": 0.05, "b": 0.05}, 0.80), None),
    ]
    groups = _encounter_groups(per_photo, "name")
    assert [[item[0].path for item in g] for g in groups] == [
        [left.path, right.path],
        [novel_left.path, novel_right.path],
    ]
    tally = _encounter_tally(groups, 2, 0.5).report("confident")
    assert (tally.top1, tally.known_queries, tally.novel_queries) == (1.0, 1, 1)
    assert tally.new_decision_accuracy == 1.0  # the known encounter is not "new", the novel one is
    by_photo = _encounter_tally(_encounter_groups(per_photo, "photo"), 2, 0.5).report("confident")
    assert (by_photo.top1, by_photo.known_queries, by_photo.novel_queries) == (0.5, 2, 2)


@pytest.fixture(scope="module")
def tiny_nyala(data_dir: Path) -> tuple[list[ManifestRow], Path]:
    """Three nyala, four encounters each (left + right flank): 24 photos."""
    root = data_dir / "nyala"
    every = read_manifest(root / "manifest.csv")
    identities = sorted({r.identity for r in every})[:3]
    rows = []
    for ident in identities:
        photos = sorted((r for r in every if r.identity == ident), key=lambda r: r.path)
        encounters = list(dict.fromkeys(encounter_of(r, "name") for r in photos))[:4]
        rows += [r for r in photos if encounter_of(r, "name") in encounters]
    return rows, root


def test_per_encounter_figures_beside_per_photo_on_a_tiny_manifest(tiny_nyala, tmp_path: Path) -> None:
    rows, root = tiny_nyala
    engine = Engine("sift", {"max_side": 256}, device="cpu", cache_dir=tmp_path)
    split = protocol_split(rows, 0, 3, encounters="name")
    report = evaluate(rows, root, engine, ("confident",), split=split, exhaustive=False, encounters="name")
    encounters = {(r.identity, encounter_of(r, "name")) for r in split.queries}
    assert report.encounters == len(encounters) < report.queries
    per_encounter = report.encounter_search
    assert per_encounter is not None and report.search is not None
    assert per_encounter.known_queries + per_encounter.novel_queries == len(encounters)
    assert per_encounter.novel_queries == len({e for e in encounters if e[0] in split.novel})
    assert "search (confident) per encounter" in report.table()

    # Each photo its own encounter: the combined ranking of one photo is that photo's ranking.
    alone = evaluate(rows, root, engine, ("confident",), split=split, exhaustive=False, encounters="photo")
    assert alone.encounters == alone.queries
    assert alone.encounter_search.top1 == pytest.approx(alone.search.top1)
    assert alone.encounter_search.top5 == pytest.approx(alone.search.top5)
    assert alone.encounter_search.new_decision_accuracy == pytest.approx(alone.search.new_decision_accuracy)

    folds = evaluate_folds(rows, root, engine, ("confident",), folds=3, encounters="name", exhaustive=False)
    mean, _spread = folds.summary["search (confident) per encounter"]["top1"]
    assert mean == pytest.approx(np.mean([f.encounter_search.top1 for f in folds.folds]))
    assert folds.protocol["encounters_per_fold"] == [f.encounters for f in folds.folds]

    # Only some folds, when the whole protocol does not fit the time at hand: the report says which.
    one = evaluate_folds(rows, root, engine, ("confident",), folds=3, encounters="name", exhaustive=False, only=[1])
    assert [f.novel_identities for f in one.folds] == [folds.folds[1].novel_identities]
    assert one.folds[0].encounter_search.top1 == pytest.approx(folds.folds[1].encounter_search.top1)
    assert one.protocol["folds_run"] == [1] and "fold 1 of 3 identity folds" in one.table()
    with pytest.raises(ScuteError, match="fold 3 is not one"):
        evaluate_folds(rows, root, engine, ("confident",), folds=3, exhaustive=False, only=[3])
