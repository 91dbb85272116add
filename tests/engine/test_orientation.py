"""Queries tried in quarter-turns: an upside-down or sideways photo still finds its turtle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures.models import SMALL_ALIKED_CONF

from core.engine.images import prepare
from core.engine.index import GalleryPhoto
from core.engine.orientation import QUARTER_TURNS, UPRIGHT, default_turns, parse_turns, strongest, to_given_frame
from core.engine.search import Engine
from core.errors import ScuteError
from core.io import sha256_hex
from core.settings import Settings


@pytest.mark.parametrize("turn", QUARTER_TURNS)
def test_points_of_a_turned_image_land_on_the_same_pixel_of_the_photo(turn: int) -> None:
    width, height = 7, 4
    photo = np.zeros((height, width), dtype=int)
    rng = np.random.default_rng(turn)
    flat = rng.choice(width * height, 5, replace=False)
    xs, ys = flat % width, flat // width
    photo[ys, xs] = np.arange(1, 6)
    turned = np.rot90(photo, -turn // 90)  # clockwise, as core.images turns a photo
    found = np.array([np.argwhere(turned == v)[0][::-1] for v in range(1, 6)], dtype=np.float32) + 0.5
    back = to_given_frame(found, turn, (turned.shape[1], turned.shape[0]))
    np.testing.assert_allclose(back, np.stack([xs, ys], axis=1) + 0.5)


def test_turns_parse_and_refuse_nonsense() -> None:
    assert parse_turns("all") == QUARTER_TURNS
    assert parse_turns("none") == UPRIGHT
    assert parse_turns("180") == (0, 180)  # the photo as given is always tried
    assert parse_turns(" 270, 90 ") == (0, 90, 270)
    assert parse_turns([-90]) == (0, 270)
    assert parse_turns("") is None and parse_turns(None) is None
    for bad in ("45", "upside", "0,a"):
        with pytest.raises(ScuteError, match="Turns must be"):
            parse_turns(bad)
    assert default_turns("cpu") == UPRIGHT
    assert default_turns("cuda") == QUARTER_TURNS
    assert Settings.from_env({"SCUTE_TURNS": "0,180"}).engine.turns == (0, 180)


def test_the_try_with_most_strong_matches_wins_and_ties_keep_the_photo_as_given() -> None:
    weak_many = np.array([0.5, 0.6, 0.7, 0.79, 0.79], np.float32)
    strong_few = np.array([0.9, 0.85], np.float32)
    assert strongest([weak_many, strong_few], 0.8) == 1
    assert strongest([strong_few, strong_few.copy()], 0.8) == 0
    assert strongest([np.zeros(0, np.float32), np.array([0.3], np.float32)], 0.8) == 1  # then total confidence


@pytest.fixture(scope="module")
def turned_gallery(turtle_manifest, tmp_path_factory):
    """Four photos of two turtles; the engine tries every quarter-turn of each query."""
    chosen: list[dict] = []
    for identity in sorted({r["identity"] for r in turtle_manifest})[:2]:
        chosen += sorted((r for r in turtle_manifest if r["identity"] == identity), key=lambda r: str(r["path"]))[:2]
    photos = [GalleryPhoto(sha256_hex(Path(r["path"]).read_bytes()), r["identity"], Path(r["path"])) for r in chosen]
    cache = tmp_path_factory.mktemp("turns")
    turning = Engine(extractor_conf=dict(SMALL_ALIKED_CONF), device="cpu", cache_dir=cache, turns="all")
    upright = Engine(extractor_conf=dict(SMALL_ALIKED_CONF), device="cpu", cache_dir=cache, turns="none")
    return turning, upright, photos, turning.build_index(photos), upright.build_index(photos)


@pytest.mark.parametrize("quarter_turns", [2, 1])
def test_a_photo_taken_upside_down_or_sideways_finds_its_turtle(turned_gallery, quarter_turns: int) -> None:
    turning, upright, photos, index, upright_index = turned_gallery
    target = photos[0]
    pixels = prepare(target.path, max_side=SMALL_ALIKED_CONF["max_side"])
    given = np.ascontiguousarray(np.rot90(pixels, -quarter_turns))  # as a camera held the wrong way saves it
    sha = sha256_hex(given.tobytes())

    views = turning.query_views(given, sha)
    found = turning.identify(views, index, shortlist=False)
    assert found.ranking[0] == target.identity
    best = found.candidates[0]
    assert best.photo.key == target.key
    assert best.match.turn == (4 - quarter_turns) * 90 % 360  # turned back to how the gallery has it
    # The matches are reported on the photo as given: each lands where the turn put the gallery point.
    gx, gy = best.match.kpts1[:, 0], best.match.kpts1[:, 1]
    gw, gh = pixels.shape[1], pixels.shape[0]
    expected = np.stack([gh - gy, gx], axis=1) if quarter_turns == 1 else np.stack([gw - gx, gh - gy], axis=1)
    strong = best.match.confidence >= turning.scoring.threshold
    assert strong.sum() >= 50
    error = np.linalg.norm(best.match.kpts0[strong] - expected[strong], axis=1)
    assert np.median(error) < 3.0

    # Upright only, the same photo has far fewer strong matches with itself: ALIKED is not rotation invariant.
    as_given = upright.match_gallery(upright.query_views(given, sha), upright_index)
    same = next(r for r, p in zip(as_given, upright_index.photos, strict=True) if p.key == target.key)
    assert np.count_nonzero(same.confidence >= upright.scoring.threshold) < 0.2 * strong.sum()


def test_null_pairs_take_the_best_turn_like_queries(turned_gallery) -> None:
    """Four tries give chance four chances: the null must see them too, or every query would look strong."""
    turning, _upright, photos, index, upright_index = turned_gallery
    threshold = turning.scoring.threshold
    compared, turned_strong, upright_strong = 0, 0, 0
    for key, arrays in index.negatives.items():
        for turned_conf, upright_conf in zip(arrays, upright_index.negatives[key], strict=True):
            turned_strong += np.count_nonzero(turned_conf >= threshold)
            upright_strong += np.count_nonzero(upright_conf >= threshold)
            assert np.count_nonzero(turned_conf >= threshold) >= np.count_nonzero(upright_conf >= threshold)
            compared += 1
    assert compared == 4 * 2  # each photo against the other turtle's two
    assert turned_strong > upright_strong  # the best of four tries finds more chance matches than one
    # ...and the turned pairs were matched once and cached: a rebuild matches nothing new.
    calls = []
    original = turning.matcher.match_many
    turning.matcher.match_many = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        turning.build_index(photos)
    finally:
        turning.matcher.match_many = original
    assert calls == []


def test_the_shortlist_votes_with_every_turn_and_reranks_in_the_best(turned_gallery) -> None:
    from core.engine.shortlist import ShortlistConf

    turning, upright, photos, index, upright_index = turned_gallery
    target = photos[2]
    pixels = prepare(target.path, max_side=SMALL_ALIKED_CONF["max_side"])
    given = np.ascontiguousarray(np.rot90(pixels, 2))
    sha = sha256_hex(given.tobytes())
    conf = ShortlistConf(min_individuals=1, max_individuals=1, photos_per_individual=1, max_pairs=1)

    outcome = turning.search(turning.query_views(given, sha), index, shortlist=conf)
    found, short = outcome.identification, outcome.shortlist
    assert short.individuals == [target.identity] and short.photos == [index.photos.index(target)]
    assert found.candidates[0].photo.key == target.key and found.candidates[0].match.turn == 180

    # Upright, the same photo's descriptors find their turtle far less often (measured 23 votes against 199).
    upright_short = upright.search(upright.query_views(given, sha), upright_index, shortlist=conf).shortlist
    assert short.votes[target.identity] > 4 * upright_short.votes[target.identity]
