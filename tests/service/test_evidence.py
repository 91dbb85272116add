"""core.service.evidence: what a volunteer saw, stored with the sighting and read back exactly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from core.engine.matching import MatchResult
from core.service.evidence import FORMAT, Evidence, EvidenceCandidate, EvidencePhoto, from_bytes, to_bytes


def _match(seed: int, n: int, turn: int = 0, set_aside: int = 0) -> MatchResult:
    rng = np.random.default_rng(seed)
    confidence = np.sort(rng.random(n).astype(np.float32))[::-1]
    return MatchResult(
        rng.integers(0, 500, n),
        rng.integers(0, 500, n),
        confidence,
        rng.random((n, 2)).astype(np.float32) * 400,
        rng.random((n, 2)).astype(np.float32) * 300,
        500,
        480,
        turn=turn,
        shared_exposure=set_aside,
        outside_frame=2 * set_aside,
    )


def _evidence(tmp_path: Path) -> Evidence:
    candidates = [
        EvidenceCandidate(
            identity,
            name,
            probability,
            score,
            n,
            strong,
            EvidencePhoto(tmp_path / f"{identity}.jpg", crop, rotation, f"{i:064x}", i + 1),
            _match(i, n, turn, set_aside=7 * (1 - i)),
            (512, 384),
            1.5,
            2.0,
        )
        for i, (identity, name, probability, score, n, strong, crop, rotation, turn) in enumerate(
            [
                ("T-0001", "Donatello", 0.81, 42.0, 180, 60, (0.1, 0.2, 0.9, 0.8), 90, 180),
                ("T-0002", None, 0.04, 0.5, 12, 0, None, 0, 0),
            ]
        )
    ]
    return Evidence("confident", 0.8, (384, 512), 0.15, np.linspace(0, 1, 300, dtype=np.float32), candidates)


def test_evidence_reads_back_exactly(tmp_path: Path) -> None:
    evidence = _evidence(tmp_path)
    back = from_bytes(to_bytes(evidence), lambda sha: tmp_path / f"found-{sha[-1]}.jpg")
    assert back is not None
    assert (back.method, back.strong_confidence, back.query_size) == ("confident", 0.8, (384, 512))
    assert back.new_individual_probability == pytest.approx(0.15)
    assert np.allclose(back.null_confidences, evidence.null_confidences, atol=1e-3)  # kept in half precision
    for got, want in zip(back.candidates, evidence.candidates, strict=True):
        assert (got.identity, got.name, got.probability, got.score) == (
            want.identity,
            want.name,
            want.probability,
            want.score,
        )
        assert (got.matches, got.strong_matches, got.image_size) == (want.matches, want.strong_matches, want.image_size)
        assert (got.photo.crop, got.photo.rotation, got.photo.photo_id) == (
            want.photo.crop,
            want.photo.rotation,
            want.photo.photo_id,
        )
        assert got.photo.path == tmp_path / f"found-{want.photo.sha256[-1]}.jpg"  # found again by content
        for name in ("idx0", "idx1", "confidence", "kpts0", "kpts1"):
            assert np.array_equal(getattr(got.match, name), getattr(want.match, name))
        assert (got.match.turn, got.match.n0, got.match.n1) == (want.match.turn, 500, 480)
        assert (got.match.shared_exposure, got.match.outside_frame) == (
            want.match.shared_exposure,
            want.match.outside_frame,
        )
    assert back.candidates[0].match.outside_frame == 14  # the overlay's note on matches set aside survives storage
    shown = back.photo_matches("T-0001")
    assert len(shown) == 1 and shown[0].z == 42.0 and shown[0].image_size == (512, 384)
    assert back.null_stats(shown[0].photo) == (1.5, 2.0)
    assert back.photo_matches("T-0404") == [] and back.candidate("T-0002").name is None


def test_evidence_of_another_layout_is_not_misread(tmp_path: Path) -> None:
    payload = to_bytes(_evidence(tmp_path))
    with np.load(io.BytesIO(payload)) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta["format"] = FORMAT + 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    assert from_bytes(buffer.getvalue(), lambda sha: tmp_path) is None


def test_the_shown_photo_keeps_its_own_score_beside_the_individuals(tmp_path: Path) -> None:
    """An individual scores by its best photos' mean; the photo shown as evidence is explained by its own z-score,
    and evidence kept before the two were told apart (no ``photo_score``) reads its one score as both."""
    evidence = _evidence(tmp_path)
    evidence.candidates[0].photo_score = 55.0
    back = from_bytes(to_bytes(evidence), lambda sha: tmp_path)
    assert back is not None
    assert back.candidates[0].score == 42.0 and back.photo_matches("T-0001")[0].z == 55.0
    with np.load(io.BytesIO(to_bytes(evidence))) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    for c in meta["candidates"]:
        del c["photo_score"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    old = from_bytes(buffer.getvalue(), lambda sha: tmp_path)
    assert old is not None and old.photo_matches("T-0001")[0].z == 42.0


def test_evidence_stored_before_matches_were_set_aside_reads_as_none_set_aside(tmp_path: Path) -> None:
    payload = to_bytes(_evidence(tmp_path))
    with np.load(io.BytesIO(payload)) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    for candidate in meta["candidates"]:
        del candidate["shared_exposure"], candidate["outside_frame"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    back = from_bytes(buffer.getvalue(), lambda sha: tmp_path)
    assert back is not None
    assert [(c.match.shared_exposure, c.match.outside_frame) for c in back.candidates] == [(0, 0), (0, 0)]
