"""core.viz.compare and core.service.compare: linked axes, both photos present at full resolution, the same
numbered matches on both, the candidate placed so that its matches land on the query's, labels on each photo."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.engine.matching import MatchResult
from core.service import compare
from core.service.app import App
from core.service.evidence import EvidencePhoto, PhotoMatch
from core.settings import EngineSettings, Settings, sqlite_url
from core.store.db import init_db
from core.store.fieldwork import Site
from core.store.gallery import add_photo, get_or_create_individual
from core.viz.compare import ComparePhoto, compare_figure, placement

RNG = np.random.default_rng(7)


def _decoded(source: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))


def _pair(matches: int) -> tuple[ComparePhoto, ComparePhoto, np.ndarray]:
    """A query of 400x300 and a candidate twice as large, shifted: candidate point = (query point - (5, 7)) / 0.5."""
    query_points = RNG.uniform(10, 290, size=(matches, 2))
    candidate_points = (query_points - np.array([5.0, 7.0])) / 0.5
    query = ComparePhoto(RNG.integers(0, 255, (300, 400, 3), dtype=np.uint8), query_points, "q.jpg · 3 May 2025")
    candidate = ComparePhoto(RNG.integers(0, 255, (600, 800, 3), dtype=np.uint8), candidate_points, "T-1 · c.jpg")
    return query, candidate, np.linspace(0.2, 0.95, matches)


def test_axes_are_linked_and_the_matches_line_up() -> None:
    query, candidate, confidence = _pair(30)
    figure = compare_figure(query, candidate, confidence, max_matches=10)
    layout = figure.layout
    assert (layout.xaxis2.matches, layout.yaxis2.matches, layout.yaxis.scaleanchor) == ("x", "y", "x")
    assert [(i.xref, i.yref) for i in layout.images] == [("x", "y"), ("x2", "y2")]
    assert [_decoded(i.source).size for i in layout.images] == [(400, 300), (800, 600)]  # not downscaled
    q_trace, c_trace = figure.data
    assert (len(q_trace.x), len(c_trace.x)) == (10, 10)  # the 10 most confident of 30
    assert list(q_trace.text) == list(c_trace.text) == [str(i) for i in range(1, 11)]
    assert q_trace.hovertext[0] == c_trace.hovertext[0] == "match 1: confidence 0.95"  # the most confident first
    # the candidate was halved and shifted by (5, 7): each match sits at the same place on both subplots
    np.testing.assert_allclose(c_trace.x, q_trace.x, atol=1e-6)
    np.testing.assert_allclose(c_trace.y, q_trace.y, atol=1e-6)
    assert (layout.images[1].x, layout.images[1].y) == pytest.approx((5.0, 7.0))
    assert (layout.images[1].sizex, layout.images[1].sizey) == pytest.approx((400.0, 300.0))
    assert [a.text for a in layout.annotations] == ["q.jpg · 3 May 2025", "T-1 · c.jpg"]
    assert layout.height == int(560 * 307 / 405 + 40)  # the panels fit the photos: no empty bands above, below


def test_labels_are_plain_text() -> None:
    query, candidate, confidence = _pair(3)
    hostile = ComparePhoto(query.image, query.points, "<a href='javascript:alert(1)'>x</a>.jpg")
    titles = [a.text for a in compare_figure(hostile, candidate, confidence).layout.annotations]
    assert titles[0] == "‹a href='javascript:alert(1)'›x‹/a›.jpg"


def test_too_few_matches_give_both_photos_the_same_height() -> None:
    query, candidate, confidence = _pair(2)
    figure = compare_figure(query, candidate, confidence)
    image = figure.layout.images[1]
    assert (image.x, image.y, image.sizey, image.sizex) == pytest.approx((0.0, 0.0, 300.0, 400.0))
    assert len(figure.data[0].x) == 2
    assert placement(np.zeros((5, 2)), np.zeros((5, 2)), 300, 600) == (0.5, 0.0, 0.0)  # degenerate: same height


def test_real_photos_at_full_resolution_with_name_date_and_site(tmp_path: Path, data_dir: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(
        home=home,
        database_url=sqlite_url(home),
        engine=EngineSettings(extractor="sift", max_side=256, device="cpu"),
        session_secret=b"k" * 32,
    )
    init_db(settings.database_url).dispose()
    app = App(settings)
    query_file, gallery_file = sorted((data_dir / "turtles" / "images" / "t006").glob("*.jpg"))[:2]
    with app.session() as session:
        site = Site(name="Ras Baridi", region="Red Sea", latitude=24.27, longitude=37.62, radius_km=5)
        session.add(site)
        session.flush()
        individual, _ = get_or_create_individual(session, "T-0006")
        photo, _ = add_photo(
            session,
            app.store,
            gallery_file.read_bytes(),
            suffix=".jpg",
            individual=individual,
            original_name=gallery_file.name,
            width=Image.open(gallery_file).size[0],
            height=Image.open(gallery_file).size[1],
            taken_at=datetime(2024, 7, 9, tzinfo=UTC),
        )
        photo.site_id = site.id
        session.add(photo)
        session.flush()
        shown = EvidencePhoto(app.store.path(photo.path), None, 0, photo.sha256, photo.id)
    points = RNG.uniform(20, 480, size=(8, 2)).astype(np.float32)
    match = MatchResult(np.arange(8), np.arange(8), np.full(8, 0.9, np.float32), points, points, n0=500, n1=500)
    query = compare.uploaded_query(query_file.name, query_file.read_bytes(), None, 0, None, None)
    figure = compare.figure(app, query, (512, 384), "T-0006", PhotoMatch(shown, match, 3.0, (512, 386)))
    sizes = [_decoded(i.source).size for i in figure.layout.images]
    assert sizes == [Image.open(query_file).size, Image.open(gallery_file).size]  # full resolution (under 2400)
    assert [a.text for a in figure.layout.annotations] == [
        f"{query_file.name} · date unknown · site unknown",
        f"T-0006 · {gallery_file.name} · 9 Jul 2024 · Ras Baridi",
    ]
    # keypoints of the 512 px working image land on the same spots of the full photos
    width = Image.open(query_file).size[0]
    np.testing.assert_allclose(sorted(figure.data[0].x), sorted(points[:, 0] * width / 512), rtol=1e-5)
