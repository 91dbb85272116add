"""Tests for core.shortlist: the descriptor bank, LNBNN votes, the adaptive cut, and Engine.identify's shortlist.

Synthetic galleries (random unit descriptors with planted per-individual patterns) check the logic exactly;
real turtle photos (ALIKED at 512 px / 512 keypoints, the suite's small settings) check that the votes
find the right individual; SIFT keeps the end-to-end comparison with exhaustive matching cheap.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from core.engine.device import cpu_similarity_dtype
from core.engine.features import Features
from core.engine.framing import CENTRED, FrameConf
from core.engine.index import GalleryIndex, GalleryPhoto
from core.engine.scoring import ScoringConf
from core.engine.search import Engine
from core.engine.shortlist import (
    SHORTLIST_CONFS,
    Shortlist,
    ShortlistConf,
    ShortlistIndex,
    _strongest,
    default_conf,
    resolve,
    shortlist_index,
)
from core.io import sha256_hex

DIM = 128


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _features(desc: np.ndarray, rng: np.random.Generator) -> Features:
    n = len(desc)
    return Features(
        rng.uniform(0, 500, (n, 2)).astype(np.float32),
        desc,
        rng.uniform(0.1, 1.0, n).astype(np.float32),
        (512, 384),
        "aliked",
        "synthetic",
    )


def _photo_of(pattern: np.ndarray, background: np.ndarray, rng: np.random.Generator, noise: float = 0.25) -> Features:
    """A photo of one individual: most of its pattern (noisy), shared texture, and clutter of its own."""
    seen = pattern[rng.permutation(len(pattern))[: int(0.7 * len(pattern))]]
    seen = seen + noise * rng.normal(size=seen.shape) / np.sqrt(DIM)
    texture = background[rng.permutation(len(background))[:60]] + 0.05 * rng.normal(size=(60, DIM))
    clutter = rng.normal(size=(80, DIM))
    return _features(_unit(np.concatenate([seen, texture, clutter])), rng)


@dataclasses.dataclass
class Synthetic:
    index: GalleryIndex
    patterns: dict[str, np.ndarray]
    background: np.ndarray
    rng: np.random.Generator

    def query(self, identity: str) -> Features:
        return _photo_of(self.patterns[identity], self.background, self.rng)


@pytest.fixture
def synthetic() -> Synthetic:
    """8 individuals with 1 to 6 photos each (imbalanced, as real catalogues are)."""
    rng = np.random.default_rng(7)
    background = _unit(rng.normal(size=(120, DIM)))  # sand and carapace texture every photo shows
    patterns: dict[str, np.ndarray] = {}
    photos: list[GalleryPhoto] = []
    features: list[Features] = []
    for k in range(8):
        ident = f"T-{k:02d}"
        patterns[ident] = _unit(rng.normal(size=(100, DIM)))
        for j in range(1 + k % 6):
            sha = f"{k:02d}{j:02d}" + "0" * 60
            photos.append(GalleryPhoto(sha, ident, Path(f"/nowhere/{ident}-{j}.jpg")))
            features.append(_photo_of(patterns[ident], background, rng))
    index = GalleryIndex(photos, features, {}, {}, ScoringConf())
    return Synthetic(index, patterns, background, rng)


CONF = ShortlistConf(gallery_descriptors=200, query_descriptors=200)


# --------------------------------------------------------------------------------------------------
# Configuration


def test_conf_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_individuals"):
        ShortlistConf(min_individuals=5, max_individuals=2)
    with pytest.raises(ValueError, match="share"):
        ShortlistConf(share=0.0)
    with pytest.raises(ValueError, match="query_descriptors"):
        ShortlistConf(query_descriptors=0)
    with pytest.raises(ValueError, match="max_pairs"):
        ShortlistConf(max_pairs=0)


def test_resolve_decides_by_gallery_size() -> None:
    conf = default_conf("cpu")
    assert resolve(None, conf.auto_min_photos, "cpu") is None  # small galleries: exhaustive
    assert resolve(None, conf.auto_min_photos + 1, "cpu") == conf
    assert resolve(False, 10**6, "cpu") is None
    assert resolve(True, 3, "cpu") == conf
    own = ShortlistConf(max_pairs=3)
    assert resolve(own, 3, "cpu") is own
    assert default_conf("cuda") == SHORTLIST_CONFS["cuda"]
    assert default_conf("mps") == SHORTLIST_CONFS["cpu"]


# --------------------------------------------------------------------------------------------------
# The bank and the votes


def test_bank_shapes_dtypes_and_strongest_descriptors(synthetic: Synthetic) -> None:
    conf = dataclasses.replace(CONF, gallery_descriptors=50)
    bank = ShortlistIndex.build(synthetic.index, conf, "cpu")
    n = len(synthetic.index.photos)
    assert bank.descriptors.shape == (n, 50, DIM)
    dtype = cpu_similarity_dtype()  # bfloat16 where this CPU multiplies it much faster
    assert bank.descriptors.dtype == dtype and bank.device.type == "cpu"
    tol = 1e-3 if dtype == torch.float32 else 1e-2
    assert torch.allclose(bank.descriptors.float().norm(dim=2), torch.ones(n, 50), atol=tol)
    assert bank.identities == synthetic.index.identities
    assert [bank.identities[i] for i in bank.identity_of] == [p.identity for p in synthetic.index.photos]
    # The strongest keypoints are kept (in their original order).
    f0 = synthetic.index.features[0]
    best = np.sort(np.argsort(-f0.scores, kind="stable")[:50])
    expected = torch.from_numpy(_unit(f0.descriptors[best].astype(np.float16).astype(np.float32)))
    assert torch.allclose(bank.descriptors[0].float(), expected, atol=tol)
    assert bank.nbytes == n * 50 * DIM * bank.descriptors.element_size()


def test_photo_with_few_keypoints_is_padded_without_changing_maxima(synthetic: Synthetic) -> None:
    index = synthetic.index
    small = dataclasses.replace(index.features[1], descriptors=index.features[1].descriptors[:7])
    small = dataclasses.replace(small, keypoints=small.keypoints[:7], scores=small.scores[:7])
    grown = GalleryIndex(index.photos[:1] + index.photos[1:2], [index.features[0], small], {}, {}, ScoringConf())
    bank = ShortlistIndex.build(grown, CONF, "cpu")
    assert bank.descriptors.shape[1] == CONF.gallery_descriptors
    q = synthetic.query(index.photos[1].identity)
    sim = bank.similarities(q)
    voting = np.sort(np.argsort(-q.scores, kind="stable")[: CONF.query_descriptors])
    qd = torch.from_numpy(_unit(q.descriptors[voting]))
    own = torch.from_numpy(_unit(small.descriptors.astype(np.float16).astype(np.float32)))
    expected = (qd @ own.T).amax(1)
    assert torch.allclose(sim[:, 1], expected, atol=1e-3 if bank.descriptors.dtype == torch.float32 else 1e-2)


def test_bfloat16_similarities_shortlist_as_float32_does(synthetic: Synthetic, monkeypatch) -> None:
    """On a CPU with bfloat16 units the bank is kept in bfloat16 (ten times faster on the 2-core Xeon); the
    shortlist must pick the same individuals and photos as in float32."""
    import core.engine.shortlist as shortlist_module

    fast = ShortlistIndex.build(synthetic.index, CONF, "cpu")
    monkeypatch.setattr(shortlist_module, "cpu_similarity_dtype", lambda: torch.float32)
    exact = ShortlistIndex.build(synthetic.index, CONF, "cpu")
    assert exact.descriptors.dtype == torch.float32
    for identity in synthetic.index.identities[:4]:
        q = synthetic.query(identity)
        a, b = fast.select(q), exact.select(q)
        assert a.individuals == b.individuals and sorted(a.photos) == sorted(b.photos)
        assert a.ranking[0] == b.ranking[0] == identity


def test_bank_is_built_once_per_index(synthetic: Synthetic) -> None:
    first = shortlist_index(synthetic.index, CONF, "cpu")
    assert shortlist_index(synthetic.index, CONF, "cpu") is first
    assert shortlist_index(synthetic.index, dataclasses.replace(CONF, share=0.5), "cpu") is not first


@pytest.mark.parametrize("ident", ["T-00", "T-03", "T-05", "T-07"])
def test_true_individual_gets_most_votes(synthetic: Synthetic, ident: str) -> None:
    bank = ShortlistIndex.build(synthetic.index, CONF, "cpu")
    short = bank.select(synthetic.query(ident))
    assert isinstance(short, Shortlist)
    assert short.ranking[0] == ident
    assert sorted(short.ranking) == synthetic.index.identities
    votes = [short.votes[i] for i in short.ranking]
    assert votes == sorted(votes, reverse=True) and all(v >= 0 for v in votes)
    assert short.votes[ident] > 0.5 * sum(votes)  # shared texture earns (almost) nothing
    # Its photos are the first sent to LightGlue, best voted first.
    own = [i for i, p in enumerate(synthetic.index.photos) if p.identity == ident]
    first = short.photos[: min(len(own), CONF.photos_per_individual)]
    assert set(first) <= set(own)
    assert short.photo_votes.shape == (len(synthetic.index.photos),)


def test_excluded_photos_take_no_part(synthetic: Synthetic) -> None:
    bank = ShortlistIndex.build(synthetic.index, CONF, "cpu")
    query = synthetic.query("T-05")
    own = [p for p in synthetic.index.photos if p.identity == "T-05"]
    short = bank.select(query, exclude={own[0].key, own[1].sha256})
    excluded = {i for i, p in enumerate(synthetic.index.photos) if p in own[:2]}
    assert not excluded & set(short.photos)
    assert short.photo_votes[list(excluded)].sum() == 0
    assert short.ranking[0] == "T-05"  # its other photos still find it
    # Excluding every photo of an individual removes it from the ranking.
    gone = bank.select(query, exclude={p.key for p in own})
    assert "T-05" not in gone.ranking and len(gone.ranking) == 7


def test_cut_honours_floor_cap_and_pair_budget(synthetic: Synthetic) -> None:
    query = synthetic.query("T-04")
    floor = ShortlistIndex.build(
        synthetic.index, dataclasses.replace(CONF, share=1e-6, min_individuals=2, max_individuals=8), "cpu"
    ).select(query)
    assert floor.individuals == floor.ranking[:2]
    cap = ShortlistIndex.build(
        synthetic.index, dataclasses.replace(CONF, share=1.0, min_individuals=1, max_individuals=3), "cpu"
    ).select(query)
    assert cap.individuals == cap.ranking[:3]
    budget = ShortlistIndex.build(
        synthetic.index, dataclasses.replace(CONF, photos_per_individual=4, max_pairs=5, max_individuals=8), "cpu"
    ).select(query)
    assert len(budget.photos) == 5 and len(set(budget.photos)) == 5
    # Every kept individual gets at most photos_per_individual photos, all of them its own.
    owners = [synthetic.index.photos[i].identity for i in budget.photos]
    assert owners[:4] == ["T-04"] * 4 and set(owners) <= set(budget.individuals)


def test_blocked_search_equals_one_block(synthetic: Synthetic) -> None:
    query = synthetic.query("T-02")
    whole = ShortlistIndex.build(synthetic.index, CONF, "cpu").select(query)
    blocked = ShortlistIndex.build(synthetic.index, dataclasses.replace(CONF, block=5), "cpu").select(query)
    assert blocked.ranking == whole.ranking and blocked.photos == whole.photos
    np.testing.assert_allclose(blocked.photo_votes, whole.photo_votes, rtol=1e-5, atol=1e-6)


def test_near_duplicates_do_not_cancel_votes(synthetic: Synthetic) -> None:
    """Plain LNBNN normalises by the (k+1)-th neighbour, which twenty copies of one photo would fill."""
    index = synthetic.index
    rng = np.random.default_rng(3)
    extra_photos, extra_features = [], []
    for j in range(20):
        f = index.features[0]
        noisy = _unit(f.descriptors + 0.01 * rng.normal(size=f.descriptors.shape))
        extra_photos.append(dataclasses.replace(index.photos[0], sha256=f"dup{j:02d}" + "0" * 59))
        extra_features.append(dataclasses.replace(f, descriptors=noisy))
    grown = GalleryIndex(index.photos + extra_photos, index.features + extra_features, {}, {}, ScoringConf())
    short = ShortlistIndex.build(grown, CONF, "cpu").select(synthetic.query(index.photos[0].identity))
    assert short.ranking[0] == index.photos[0].identity
    assert short.votes[short.ranking[0]] > 2 * short.votes[short.ranking[1]]


def test_empty_query_or_everything_excluded(synthetic: Synthetic) -> None:
    bank = ShortlistIndex.build(synthetic.index, CONF, "cpu")
    everything = {p.key for p in synthetic.index.photos}
    short = bank.select(synthetic.query("T-01"), exclude=everything)
    assert short.photos == [] and short.ranking == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_cpu(synthetic: Synthetic) -> None:
    query = synthetic.query("T-06")
    cpu = ShortlistIndex.build(synthetic.index, CONF, "cpu")
    gpu = ShortlistIndex.build(synthetic.index, CONF, "cuda")
    assert gpu.descriptors.dtype == torch.float16
    a, b = cpu.select(query), gpu.select(query)
    assert a.ranking[:3] == b.ranking[:3] and a.individuals == b.individuals
    np.testing.assert_allclose(a.photo_votes, b.photo_votes, rtol=0.05, atol=0.05)


# --------------------------------------------------------------------------------------------------
# Real turtle photos


@pytest.fixture(scope="module")
def turtle_features(turtle_manifest, aliked_extractor) -> tuple[GalleryIndex, list[tuple[str, Features]]]:
    """Four individuals, two gallery photos each (first by path) and one query each (the third)."""
    from core.engine.images import prepare

    by_id: dict[str, list[Path]] = {}
    for row in turtle_manifest:
        by_id.setdefault(str(row["identity"]), []).append(Path(row["path"]))
    chosen = sorted(i for i, ps in by_id.items() if len(ps) >= 3)[:4]
    photos, features, queries = [], [], []
    for ident in chosen:
        paths = sorted(by_id[ident])
        for path in paths[:2]:
            photos.append(GalleryPhoto(sha256_hex(path.read_bytes()), ident, path))
            features.append(aliked_extractor.extract(prepare(path, max_side=aliked_extractor.max_side)))
        queries.append((ident, aliked_extractor.extract(prepare(paths[2], max_side=aliked_extractor.max_side))))
    return GalleryIndex(photos, features, {}, {}, ScoringConf()), queries


def test_votes_find_the_turtle(turtle_features) -> None:
    index, queries = turtle_features
    bank = ShortlistIndex.build(index, ShortlistConf(gallery_descriptors=256, query_descriptors=512), "cpu")
    ranks = []
    for ident, query in queries:
        short = bank.select(query)
        ranks.append(short.ranking.index(ident))
        print(ident, short.ranking, [round(short.votes[i], 2) for i in short.ranking])
    # Clear cases: every query has its individual among the top two of four, most of them first.
    assert max(ranks) <= 1 and ranks.count(0) >= 3, ranks


def test_query_photo_in_the_gallery_finds_itself_unless_excluded(turtle_features) -> None:
    index, _ = turtle_features
    bank = ShortlistIndex.build(index, ShortlistConf(gallery_descriptors=256, query_descriptors=512), "cpu")
    query = index.features[4]
    assert bank.select(query).photos[0] == 4
    assert 4 not in bank.select(query, exclude={index.photos[4].sha256}).photos


# --------------------------------------------------------------------------------------------------
# Engine.identify with a shortlist (SIFT + mutual nearest neighbours: cheap enough for exhaustive search)


@pytest.fixture(scope="module")
def sift_gallery(turtle_manifest, tmp_path_factory) -> tuple[Engine, GalleryIndex, list[tuple[str, Path]]]:
    by_id: dict[str, list[Path]] = {}
    for row in turtle_manifest:
        by_id.setdefault(str(row["identity"]), []).append(Path(row["path"]))
    chosen = sorted(i for i, ps in by_id.items() if len(ps) >= 5)[:5]
    engine = Engine(
        "sift",
        {"max_side": 384, "max_keypoints": 384},
        scoring=ScoringConf(null_negatives=3, null_positives=1),
        device="cpu",
        cache_dir=tmp_path_factory.mktemp("sift-cache"),
    )
    photos, queries = [], []
    for ident in chosen:
        paths = sorted(by_id[ident])
        photos += [GalleryPhoto(sha256_hex(p.read_bytes()), ident, p) for p in paths[:4]]
        queries.append((ident, paths[4]))
    return engine, engine.build_index(photos), queries


def test_identify_without_cut_equals_exhaustive(sift_gallery) -> None:
    """A shortlist that keeps every photo must reproduce exhaustive matching exactly."""
    engine, index, queries = sift_gallery
    keep_all = ShortlistConf(min_individuals=20, max_individuals=20, photos_per_individual=50, max_pairs=1000)
    for _, path in queries:
        query = engine.features(path, sha256_hex(path.read_bytes()))
        full = engine.identify(query, index, shortlist=False)
        short = engine.identify(query, index, shortlist=keep_all)
        assert short.ranking == full.ranking
        assert short.scores == pytest.approx(full.scores)
        assert short.new_individual_probability == pytest.approx(full.new_individual_probability)
        assert [c.photo for c in short.candidates] == [c.photo for c in full.candidates]


def test_identify_with_small_shortlist(sift_gallery) -> None:
    engine, index, queries = sift_gallery
    conf = ShortlistConf(min_individuals=2, max_individuals=2, photos_per_individual=2, max_pairs=4)
    agree = 0
    for _, path in queries:
        sha = sha256_hex(path.read_bytes())
        query = engine.features(path, sha)
        full = engine.identify(query, index, shortlist=False)
        short = engine.identify(query, index, shortlist=conf)
        assert sorted(short.ranking) == sorted(full.ranking)  # every individual is still ranked
        assert len(short.candidates) <= 2  # only reranked individuals become candidates
        assert 0.0 <= short.new_individual_probability <= 1.0
        for c in short.candidates:  # a reranked individual's score is the exhaustive score of that photo
            assert c.score <= full.scores[c.identity] + 1e-9
        best, second = (full.scores[i] for i in full.ranking[:2])
        if best > second:  # exhaustive matching found a clear winner: the shortlist must keep it first
            assert short.ranking[0] == full.ranking[0]
            agree += 1
    assert agree >= 2  # SIFT at 384 px finds a clear winner for a few of the five queries only


def test_a_cpu_shortlists_every_gallery_and_a_gpu_matches_small_ones_exhaustively(sift_gallery, monkeypatch) -> None:
    """Matching all 16 photos of a small gallery took 25 s on two CPU cores: the CPU preset always shortlists."""
    from core.engine.shortlist import SHORTLIST_CONFS, resolve

    assert resolve(None, 16, "cpu") == SHORTLIST_CONFS["cpu"]
    assert resolve(None, 16, "cuda") is None
    assert resolve(None, 5000, "cuda") == SHORTLIST_CONFS["cuda"]
    assert resolve(False, 5000, "cpu") is None
    engine, index, queries = sift_gallery
    import core.engine.shortlist

    original = core.engine.shortlist.ShortlistIndex.select
    called = []

    def spy(self, *a, **k):
        called.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(core.engine.shortlist.ShortlistIndex, "select", spy)
    query = engine.features(queries[0][1], sha256_hex(queries[0][1].read_bytes()))
    pairs: list[tuple[int, int]] = []
    outcome = engine.search(query, index, progress=lambda done, total: pairs.append((done, total)))
    assert called and outcome.shortlist is not None
    assert len(outcome.results) == len(outcome.shortlist.photos) <= SHORTLIST_CONFS["cpu"].max_pairs
    # The progress follows the pairs matched, up to all of them.
    assert pairs[-1] == (len(outcome.results), len(outcome.results))
    assert [d for d, _ in pairs] == sorted(d for d, _ in pairs)


def test_rounds_are_validated() -> None:
    with pytest.raises(ValueError, match="round"):
        ShortlistConf(rounds=((0, 2),))
    with pytest.raises(ValueError, match="round"):
        ShortlistConf(rounds=((2,),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stop_probability"):
        ShortlistConf(stop_probability=0.0)


def test_later_rounds_add_the_next_best_voted_photos(synthetic: Synthetic) -> None:
    """Each round adds, individual by individual in vote order, the photos it names that earlier rounds did not
    match, within the pair budget."""
    conf = ShortlistConf(
        min_individuals=2, max_individuals=2, photos_per_individual=1, max_pairs=7, rounds=((3, 1), (4, 2))
    )
    bank = shortlist_index(synthetic.index, conf, "cpu")
    short = bank.select(synthetic.query("T-03"))
    ident_of = [p.identity for p in synthetic.index.photos]

    def best_voted(name: str, count: int) -> list[int]:
        members = [i for i, ident in enumerate(ident_of) if ident == name]
        return sorted(members, key=lambda i: (-short.photo_votes[i], i))[:count]

    top = short.ranking
    assert short.photos == best_voted(top[0], 1) + best_voted(top[1], 1)
    assert short.later[0] == best_voted(top[2], 1)
    second = [p for name in top[:4] for p in best_voted(name, 2) if p not in short.photos + short.later[0]]
    assert short.later[1] == second[: 7 - 3]  # the budget cuts the last round
    assert short.individuals == top[:2]
    added = bank.widen(short)
    assert added == best_voted(top[2], 1) and short.individuals == top[:3] and short.rounds_used == 2
    bank.widen(short)
    assert bank.widen(short) == [] and len(short.photos) == 7 and short.rounds_used == 3


def test_a_search_widens_only_while_no_candidate_is_sure(sift_gallery) -> None:
    """Sure after the first round: four pairs. Never sure: every round's pairs, scored as exhaustive search scores
    them, with the progress following the pairs of the rounds started so far."""
    engine, index, queries = sift_gallery
    rounds = ((3, 2), (4, 4))
    sure = ShortlistConf(
        min_individuals=2,
        max_individuals=2,
        photos_per_individual=2,
        max_pairs=16,
        rounds=rounds,
        stop_probability=1e-9,
    )
    never = dataclasses.replace(sure, stop_probability=1.0)
    query = engine.features(queries[0][1], sha256_hex(queries[0][1].read_bytes()))
    first = engine.search(query, index, shortlist=sure)
    assert len(first.results) == 4 and first.shortlist.rounds_used == 1 and first.shortlist.later == []
    pairs: list[tuple[int, int]] = []
    wide = engine.search(query, index, shortlist=never, progress=lambda done, total: pairs.append((done, total)))
    assert wide.shortlist.rounds_used == 3
    planned = shortlist_index(index, never, "cpu").select(query)
    every_round = planned.photos + [p for r in planned.later for p in r]
    assert sorted(wide.results) == sorted(every_round) and len(every_round) > 4
    assert set(wide.shortlist.photos) == set(every_round)
    full = engine.identify(query, index, shortlist=False)
    for c in wide.identification.candidates:  # scored exactly as exhaustive search scores that photo
        assert c.score <= full.scores[c.identity] + 1e-9
    assert pairs[-1] == (len(every_round), len(every_round))
    assert [d for d, _ in pairs] == sorted(d for d, _ in pairs)
    assert sorted({t for _, t in pairs}) == [4, 4 + len(planned.later[0]), len(every_round)]


def test_the_cpu_preset_widens_in_two_rounds_to_eighteen_pairs() -> None:
    cpu = SHORTLIST_CONFS["cpu"]
    assert (cpu.min_individuals, cpu.max_individuals, cpu.photos_per_individual) == (2, 2, 2)
    assert cpu.rounds == ((4, 2), (6, 3)) and cpu.max_pairs == 18 and cpu.stop_probability == 0.5
    assert SHORTLIST_CONFS["cuda"].rounds == ()


# --------------------------------------------------------------------------------------------------
# The frame rule: only central keypoints vote


def _framed_photo(centre: np.ndarray, edges: np.ndarray, rng: np.random.Generator) -> Features:
    """A 512 x 384 photo: ``centre`` descriptors on the animal in the middle, ``edges`` on its outer eighth."""
    middle = rng.uniform([160, 120], [352, 264], (len(centre), 2))
    rim = np.column_stack([rng.choice([8.0, 504.0], len(edges)), rng.uniform(0, 384, len(edges))])
    desc = _unit(
        np.concatenate([centre, edges]) + 0.1 * rng.normal(size=(len(centre) + len(edges), DIM)) / np.sqrt(DIM)
    )
    return Features(
        np.concatenate([middle, rim]).astype(np.float32),
        desc,
        np.full(len(desc), 0.5, np.float32),
        (512, 384),
        "aliked",
        "synthetic",
    )


def test_with_the_frame_rule_the_herd_at_the_edges_votes_for_no_one() -> None:
    """The query's animal (A) drank beside B's herd: the edges of A's query and of B's photo show the same animals.
    Every keypoint of the query voting, the herd carries B first; only its central keypoints voting, A's markings
    do (gallery photos bank every keypoint either way)."""
    rng = np.random.default_rng(5)
    pattern_a, pattern_b, herd = (_unit(rng.normal(size=(n, DIM))) for n in (60, 60, 150))
    photos = [
        GalleryPhoto("a" * 64, "A", Path("/nowhere/a.jpg")),
        GalleryPhoto("b" * 64, "B", Path("/nowhere/b.jpg")),
    ]
    features = [
        _framed_photo(pattern_a, _unit(rng.normal(size=(40, DIM))), rng),
        _framed_photo(pattern_b, herd, rng),
    ]
    index = GalleryIndex(photos, features, {}, {}, ScoringConf())
    query = _framed_photo(pattern_a[:30], herd, rng)
    every = ShortlistIndex.build(index, dataclasses.replace(CONF, min_individuals=1), "cpu")
    assert every.select(query).ranking[0] == "B"
    centred = ShortlistIndex.build(index, dataclasses.replace(CONF, min_individuals=1, frame=CENTRED), "cpu")
    assert centred.select(query).ranking[0] == "A"
    assert torch.equal(centred.descriptors, every.descriptors)  # the same bank: only the query's votes change
    # the strongest central keypoints; a photo with keypoints at its edges only still votes with them
    assert set(_strongest(query, 1000, CENTRED).tolist()) == set(range(30))
    rim_only = _framed_photo(np.zeros((0, DIM)), herd, rng)
    assert _strongest(rim_only, 100, CENTRED).tolist() == _strongest(rim_only, 100).tolist() and len(rim_only) == 150


def test_an_engine_votes_with_its_own_frame_rule(tmp_path: Path) -> None:
    aliked = Engine("aliked", {"max_side": 512, "max_keypoints": 512}, device="cpu", cache_dir=tmp_path)
    conf = aliked.shortlist_conf(None, 16)
    assert conf is not None and conf.frame == CENTRED == aliked.frame
    assert dataclasses.replace(conf, frame=None) == SHORTLIST_CONFS["cpu"]
    assert aliked.shortlist_conf(False, 16) is None
    own = ShortlistConf(max_pairs=3, frame=FrameConf(0.5))
    assert aliked.shortlist_conf(own, 16) is own  # a conf with its own rule keeps it
    sift = Engine("sift", {"max_side": 384, "max_keypoints": 384}, device="cpu", cache_dir=tmp_path)
    assert sift.shortlist_conf(None, 16) == SHORTLIST_CONFS["cpu"]  # every keypoint votes, as every match counts
