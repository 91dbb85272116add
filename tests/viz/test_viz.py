"""core.viz: match overlays, confidence CDFs, ROC curves, histograms and small images, checked by value."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.engine.matching import MatchResult
from core.evaluation.metrics import auroc, roc_curve
from core.viz import charts, overlay, pictures


def match(points0, points1, confidence, n0: int = 50, n1: int = 50) -> MatchResult:
    k = len(confidence)
    return MatchResult(
        idx0=np.arange(k),
        idx1=np.arange(k),
        confidence=np.asarray(confidence, dtype=np.float32),
        kpts0=np.asarray(points0, dtype=np.float32).reshape(k, 2),
        kpts1=np.asarray(points1, dtype=np.float32).reshape(k, 2),
        n0=n0,
        n1=n1,
    )


def grey(h: int, w: int, value: int = 90) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


# --- colours and overlays --------------------------------------------------------------------------


def test_confidence_colours_run_from_red_through_amber_to_green():
    colours = overlay.confidence_colours(np.array([0.0, 0.5, 1.0, -3.0, 7.0]))
    assert colours.dtype == np.uint8 and colours.shape == (5, 3)
    assert colours[0].tolist() == [220, 38, 38]
    assert colours[1].tolist() == [245, 158, 11]
    assert colours[2].tolist() == [22, 163, 74]
    assert colours[3].tolist() == colours[0].tolist() and colours[4].tolist() == colours[2].tolist()  # clipped
    ramp = overlay.confidence_colours(np.linspace(0, 0.5, 11))
    assert np.all(np.diff(ramp[:, 1].astype(int)) >= 0)  # more green as confidence grows
    assert overlay.confidence_colours(np.zeros(0)).shape == (0, 3)


def test_overlay_places_both_photos_side_by_side_at_one_height():
    query, gallery = grey(100, 200, 40), grey(300, 300, 200)
    drawn = overlay.match_overlay(query, gallery, match(np.zeros((0, 2)), np.zeros((0, 2)), []), height=150, gap=10)
    assert drawn.image.shape == (150, 300 + 10 + 150, 3) and drawn.image.dtype == np.uint8
    assert (drawn.shown, drawn.total) == (0, 0)
    assert np.all(drawn.image[:, :300] == 40)
    assert np.all(drawn.image[:, 300:310] == 255)  # the white gap
    assert np.all(drawn.image[:, 310:] == 200)


def test_overlay_draws_lines_between_scaled_keypoints_and_respects_the_threshold():
    query, gallery = grey(200, 200), grey(200, 200)
    # Keypoints live in a 100x100 working frame; the photos are shown at 200x200.
    m = match([[20, 50], [80, 80]], [[20, 50], [80, 80]], [0.95, 0.3])
    drawn = overlay.match_overlay(
        query,
        gallery,
        m,
        query_size=(100, 100),
        gallery_size=(100, 100),
        threshold=0.5,
        height=200,
        gap=0,
        line_opacity=1.0,
    )
    assert (drawn.shown, drawn.total) == (1, 2)
    image = drawn.image.astype(int)
    green = [22, 163, 74]
    # The confident match: (40, 100) on the left to (240, 100) on the right, a horizontal green line.
    assert np.abs(image[100, 140] - green).sum() < 40
    assert np.abs(image[100, 40] - green).sum() < 40 and np.abs(image[100, 240] - green).sum() < 40
    # The weak one (below the threshold) is not drawn: its keypoint at (160, 160) stays grey.
    assert image[160, 160].tolist() == [90, 90, 90]

    everything = overlay.match_overlay(
        query, gallery, m, query_size=(100, 100), gallery_size=(100, 100), threshold=0.0, height=200, gap=0
    )
    assert everything.shown == 2 and not np.array_equal(everything.image[160, 160], [90, 90, 90])


def test_overlay_keeps_the_most_confident_lines_when_capped():
    k = 10
    points = np.stack([np.full(k, 10.0), np.linspace(5, 95, k)], axis=1)
    confidence = np.linspace(0.1, 1.0, k)
    drawn = overlay.match_overlay(grey(100, 100), grey(100, 100), match(points, points, confidence), max_lines=3)
    assert (drawn.shown, drawn.total) == (3, 10)
    with pytest.raises(ValueError, match="RGB"):
        overlay.match_overlay(np.zeros((10, 10), np.float32), grey(10, 10), match(points, points, confidence))
    with pytest.raises(ValueError, match="height"):
        overlay.match_overlay(grey(100, 100), grey(100, 100), match(points, points, confidence), height=8)


def test_stacked_overlay_puts_the_query_above_at_one_width_for_phones():
    query, gallery = grey(100, 200, 40), grey(300, 300, 200)
    m = match([[100, 50]], [[150, 150]], [0.9])
    drawn = overlay.match_overlay(query, gallery, m, layout="stacked", width=300, gap=10, line_opacity=1.0)
    # 200x100 -> 300x150 on top, the white gap, then 300x300 -> 300x300 below.
    assert drawn.image.shape == (150 + 10 + 300, 300, 3) and drawn.shown == 1
    assert np.all(drawn.image[:5, :5] == 40) and np.all(drawn.image[150:160, :5] == 255)
    green = np.array([22, 163, 74])
    # The line runs from (150, 75) on the query down to (150, 160 + 150) on the gallery photo: vertical, green.
    assert np.abs(drawn.image[230, 150].astype(int) - green).sum() < 60
    with pytest.raises(ValueError, match="layout"):
        overlay.match_overlay(query, gallery, m, layout="diagonal")


def test_overlay_lines_are_thick_enough_to_see_when_the_browser_shrinks_them():
    query = gallery = grey(560, 560)
    m = match([[100, 280]], [[100, 280]], [0.95])
    drawn = overlay.match_overlay(query, gallery, m, height=560, gap=0, line_opacity=1.0)
    column = drawn.image[:, 400].astype(int)  # across the horizontal line from (100, 280) to (660, 280)
    coloured = np.flatnonzero(np.abs(column - [90, 90, 90]).sum(axis=1) > 60)
    assert coloured.size >= 3  # a 1-pixel line disappears when a 1,120 px picture is shown 400 px wide


def test_overlay_zooms_to_the_matched_region():
    query = grey(400, 400)
    query[100:140, 100:140] = 250  # a bright patch where the matches are
    m = match([[110, 110], [130, 130]], [[110, 110], [130, 130]], [0.9, 0.8])
    whole = overlay.match_overlay(query, query, m, height=200, gap=0)
    zoomed = overlay.match_overlay(query, query, m, height=200, gap=0, zoom=True)
    bright = lambda image: np.count_nonzero(image[:, :, 0] > 200)  # noqa: E731
    assert bright(zoomed.image) > 4 * bright(whole.image)  # the patch fills much more of the picture
    assert zoomed.shown == whole.shown == 2
    assert overlay.zoom_box(np.array([[110.0, 110.0], [130.0, 130.0]]), (400, 400)) == (60, 60, 180, 180)
    assert overlay.zoom_box(np.zeros((0, 2)), (400, 300)) == (0, 0, 400, 300)


def test_overlay_legend_names_the_colours():
    query = grey(100, 100)
    m = match([[50, 50]], [[50, 50]], [0.9])
    plain = overlay.match_overlay(query, query, m, height=100, gap=0)
    with_key = overlay.match_overlay(query, query, m, height=100, gap=0, legend=True)
    assert with_key.image.shape[1] == plain.image.shape[1] and with_key.image.shape[0] > plain.image.shape[0]
    band = with_key.image[100:]
    assert np.any(np.all(band == [220, 38, 38], axis=2)) and np.any(np.all(band == [22, 163, 74], axis=2))
    assert np.any(band.sum(axis=2) < 200)  # the words, in dark ink


def test_colour_legend_is_a_strip_from_red_to_green():
    legend = overlay.colour_legend(width=50, height=4)
    assert legend.shape == (4, 50, 3)
    assert legend[0, 0].tolist() == [220, 38, 38] and legend[3, 49].tolist() == [22, 163, 74]


# --- CDF and explanation ---------------------------------------------------------------------------


def test_empirical_cdf_counts_the_share_at_or_below_each_point():
    grid, y = charts.empirical_cdf(np.array([0.2, 0.4, 0.4, 0.9]), np.array([0.0, 0.2, 0.4, 0.5, 1.0]))
    assert grid.tolist() == [0.0, 0.2, 0.4, 0.5, 1.0]
    assert y.tolist() == [0.0, 0.25, 0.75, 0.75, 1.0]
    _, empty = charts.empirical_cdf(np.zeros(0))
    assert empty.shape == (101,) and not empty.any()


def test_cdf_figure_has_the_null_the_others_and_the_candidate_last():
    null = np.random.default_rng(0).uniform(0.0, 0.5, 1000)
    candidate = charts.Curve("T-0042 Donatello", np.array([0.9, 0.95, 0.3, 0.85]))
    others = [charts.Curve("T-0007", np.array([0.2, 0.3])), charts.Curve("<b>x</b>", np.array([0.1]))]
    fig = charts.cdf_figure(candidate, null, others, threshold=0.8)
    names = [trace.name for trace in fig.data]
    assert names[0].startswith("non-matching pairs (null, 1,000 matches)")
    assert names[1:] == ["T-0007 (2 matches)", "&lt;b&gt;x&lt;/b&gt; (1 matches)", "T-0042 Donatello (4 matches)"]
    last = fig.data[-1]
    x, y = np.asarray(last.x), np.asarray(last.y)
    assert y[np.searchsorted(x, 0.5)] == pytest.approx(0.25)  # one of four matches is at or below 0.5
    assert "&lt;b&gt;" in fig.data[2].hovertemplate  # user-typed names never become markup
    assert [shape.x0 for shape in fig.layout.shapes] == [0.8]
    # The legend sits above the plot: below it, a phone's wrapped legend ran into the axis title.
    assert fig.layout.legend.yanchor == "bottom" and fig.layout.legend.y > 1


def test_score_sentence_states_the_evidence_in_the_method_units():
    sentence = charts.score_sentence(
        "T-0042",
        method="confident",
        z=8.42,
        probability=0.64,
        matches=57,
        strong_matches=31,
        null_mean=2.0,
        threshold=0.8,
    )
    assert sentence.startswith("T-0042: 31 of 57 matches are at least 80% confident")
    assert "about 2.0" in sentence and "8.4 standard deviations above" in sentence and sentence.endswith("64%.")
    capped = charts.score_sentence(
        "T-1", method="count", z=300.0, probability=None, matches=5, strong_matches=0, null_mean=3, threshold=0.8
    )
    assert "more than 20 standard deviations" in capped and capped.endswith("get.")
    weak = charts.score_sentence(
        "T-2", method="wasserstein", z=0.3, probability=0.01, matches=9, strong_matches=0, null_mean=1, threshold=0.8
    )
    assert "close to the null" in weak and "no better than chance" in weak


def test_plain_sentence_speaks_of_points_and_chance_not_statistics():
    sentence = charts.plain_sentence(
        "T-0042", method="confident", z=8.42, probability=0.64, matches=57, strong_matches=31, null_mean=2.0
    )
    assert sentence == (
        "T-0042: 31 of the 57 points that match are strong matches. Photos of two different animals have about 2: "
        "this is far more than chance gives, so Scute gives it 64%."
    )
    weak = charts.plain_sentence(
        "T-1", method="count", z=0.2, probability=None, matches=1, strong_matches=0, null_mean=3.0
    )
    assert (
        weak == "T-1: 1 point matches. Photos of two different animals match about 3: this is about what chance gives."
    )
    sure = charts.plain_sentence(
        "T-2", method="confident", z=40.0, probability=0.9996, matches=226, strong_matches=171, null_mean=0.4
    )
    assert "have fewer than one:" in sure and sure.endswith("Scute gives it >99%.")  # not "about 0", not "100%"
    for text in (sentence, weak, sure):
        assert "standard deviation" not in text and "null" not in text


# --- evaluation figures ----------------------------------------------------------------------------


def test_roc_curve_area_matches_the_rank_statistic():
    fpr, tpr, auc = roc_curve([0.9, 0.8, 0.7], [0.1, 0.2])
    assert auc == 1.0 and fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    assert roc_curve([0.1], [0.9])[2] == 0.0
    assert roc_curve([0.5, 0.5], [0.5])[2] == pytest.approx(0.5)  # ties count half
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1, 1, 200), rng.normal(0, 1, 150)
    assert roc_curve(pos, neg)[2] == pytest.approx(auroc(list(pos), list(neg)), abs=1e-9)
    assert np.isnan(roc_curve([], [0.3])[2])


def test_roc_figure_reports_the_auroc():
    fig = charts.roc_figure([0.9, 0.7], [0.8, 0.1])
    assert fig.layout.title.text == "Known vs new individual · AUROC 0.750"
    assert fig.data[0].name == "chance" and fig.data[1].name == "Scute (AUROC 0.750)"


def test_histograms_share_bins_and_show_shares():
    fig = charts.histogram_figure({"same": [3.0, 4.0, 5.0, 5.0], "different": [0.0, 0.1, np.nan]}, bins=5)
    same, different = fig.data
    assert np.asarray(same.x).tolist() == np.asarray(different.x).tolist()
    assert sum(same.y) == pytest.approx(1.0) and sum(different.y) == pytest.approx(1.0)
    assert same.name == "same (4)" and different.name == "different (2)"  # nan left out
    assert charts.histogram_figure({"only": [2.0, 2.0]}).data[0].y.sum() == pytest.approx(1.0)


# --- small images ----------------------------------------------------------------------------------


def test_cover_crops_to_the_aspect_around_the_centre():
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, 200] = 255
    tile = pictures.cover(wide, 4 / 3)
    assert tile.shape == (100, 133, 3) and int(tile[0, :, 0].argmax()) == 200 - (400 - 133) // 2
    assert pictures.cover(np.zeros((400, 100, 3), np.uint8), 1.0).shape == (100, 100, 3)


def test_placeholder_and_crop_preview():
    tile = pictures.placeholder(120, 90, "?")
    assert tile.shape == (90, 120, 3) and tile[0, 0].tolist() == [238, 246, 245]
    assert (tile != tile[0, 0]).any()  # the mark is drawn
    photo = grey(100, 200, 200)
    preview = pictures.crop_preview(photo, (0.25, 0.2, 0.75, 0.8))
    assert preview[50, 100].tolist() == [200, 200, 200]  # inside the crop: untouched
    assert preview[5, 5].tolist() == [70, 70, 70]  # outside: dimmed
    assert np.array_equal(pictures.crop_preview(photo, None), photo)


def test_thumbnail_is_small_and_upright(tmp_path: Path):
    pixels = np.zeros((300, 600, 3), np.uint8)
    pixels[:, :300] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90° clockwise
    path = tmp_path / "turned.jpg"
    Image.fromarray(pixels).save(path, format="JPEG", exif=exif, quality=95)
    thumb = pictures.thumbnail(path, 120)
    assert thumb.shape == (120, 60, 3)  # upright: portrait
    assert thumb[5, 30, 0] > 200 and thumb[-5, 30, 0] < 60  # red (the old left half) is now on top


def test_png_bytes_round_trip():
    image = np.random.default_rng(2).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(pictures.png_bytes(image)))), image)


# --- the region the engine used, back in the photo ---------------------------------------------------


def _marked_photo() -> np.ndarray:
    """A 200 x 300 photo with one white block over x 150-210, y 40-90 (x 0.5-0.7, y 0.2-0.45)."""
    photo = grey(200, 300, 20)
    photo[40:90, 150:210] = 255
    return photo


def _block(image: np.ndarray) -> tuple[float, float, float, float]:
    """The white block's bounding box in fractions of ``image``."""
    rows, cols = np.nonzero(image[:, :, 0] == 255)
    h, w = image.shape[:2]
    return cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h


@pytest.mark.parametrize("rotation", [0, 90, 180, 270, -90])
@pytest.mark.parametrize("crop", [None, (0.4, 0.1, 0.9, 0.6)])
def test_region_of_the_query_image_maps_back_to_the_block_in_the_photo(crop, rotation):
    query = pictures.crop_and_rotate(_marked_photo(), crop, rotation)
    back = pictures.region_in_photo(_block(query), crop, rotation)
    assert back == pytest.approx((0.5, 0.2, 0.7, 0.45), abs=1e-3)
    # the crop it gives frames the same block when used as the volunteer's crop (then turned as before)
    reframed = pictures.crop_and_rotate(_marked_photo(), back, rotation)
    assert (reframed[:, :, 0] == 255).all()


def test_region_in_photo_by_value_for_a_quarter_turn_and_a_crop():
    # The query is the photo's right half turned clockwise: its top-left quarter is the half's bottom-left.
    assert pictures.region_in_photo((0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 1.0), 90) == (0.5, 0.5, 0.75, 1.0)
    assert pictures.region_in_photo((0.0, 0.0, 1.0, 1.0), (0.1, 0.2, 0.3, 0.4), 270) == (0.1, 0.2, 0.3, 0.4)
    assert pictures.region_in_photo((-0.2, 0.1, 1.3, 0.6), None, 0) == (0.0, 0.1, 1.0, 0.6)  # clamped to the photo
