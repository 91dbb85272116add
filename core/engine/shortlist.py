"""Shortlist then rerank: vote over every gallery descriptor cheaply, run LightGlue on the few that matter.

LightGlue costs about a second per pair on a laptop CPU and a few milliseconds on a GPU, so matching a
query against every photo of a large gallery takes minutes on a CPU and too long at 10,000 photos anywhere.
The shortlist ranks all individuals with one matrix product instead, in the spirit of HotSpotter's
one-vs-many voting (LNBNN, McCann & Lowe's local naive Bayes nearest neighbour):

* every gallery photo contributes its strongest ``gallery_descriptors`` ALIKED descriptors to one bank,
  an ``(N, P, D)`` tensor held in memory (on the GPU when there is one), built once per
  :class:`~core.engine.index.GalleryIndex`;
* for each of the query's strongest ``query_descriptors``, an exact blocked matrix product gives its best
  cosine similarity in every photo (``S``, query descriptors x photos) and, by maximum over photos, in
  every individual;
* each query descriptor votes for its best individual with the margin over the best *other* individual
  (the "name" normaliser of LNBNN): a descriptor that matches everybody (carapace texture, sand, the frame
  edge) is worth nothing. Taking the best other *individual*, not the (k+1)-th neighbour, keeps votes
  intact when a gallery holds many near-identical photos of one animal, which plain LNBNN cancels out;
* a photo's vote is the sum over query descriptors of how far its best similarity rises above the best
  similarity among other individuals: the photos of an individual that show what the query shows.

No approximate index is needed at these sizes: 10,000 photos x 256 descriptors is 2.6 M rows, one
half-precision product with 1,024 query descriptors on a GPU, and 1,000 photos is a fraction of a
second on two CPU cores.

Individuals are kept best first until they hold ``share`` of all votes (at least ``min_individuals``,
at most ``max_individuals``), and for each the ``photos_per_individual`` photos with most votes go to
LightGlue (``max_pairs`` in all). The reranked individuals are scored exactly as in exhaustive search;
those not reranked follow in shortlist order, so a ranking still lists every gallery individual.

With the engine's frame rule (``frame``, core.engine.framing) only the query's central keypoints vote: the herd and
the background at its edges would vote for whoever stood there too. The bank keeps every photo's strongest.

``rounds`` widen the search only where it is needed: while the best candidate's probability stays below
``stop_probability``, the next round's individuals (best voted first) on their next best-voted photos are
matched too. A query of a well-photographed animal is answered after the first round; an unsure one (a new
animal, or the right one voted third) gets the pairs that exhaustive search would have spent on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from core.engine.device import cpu_similarity_dtype
from core.engine.features import Features
from core.engine.framing import FrameConf, central
from core.engine.index import GalleryIndex
from core.engine.orientation import as_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShortlistConf:
    """Knobs of the shortlist; the presets in :data:`SHORTLIST_CONFS` were tuned on the turtle photos."""

    gallery_descriptors: int = 256  # strongest descriptors per gallery photo kept in the bank
    query_descriptors: int = 1024  # strongest query descriptors that vote
    share: float = 0.9  # keep individuals until they hold this share of all votes ...
    min_individuals: int = 5  # ... but at least this many ...
    max_individuals: int = 10  # ... and at most this many
    photos_per_individual: int = 3  # best-voted photos of each kept individual sent to LightGlue
    max_pairs: int = 30  # LightGlue pairs per query at most
    auto_min_photos: int = 200  # with ``shortlist=None`` smaller galleries are matched exhaustively
    block: int = 512  # photos per matrix-product block: bounds memory at query x block x P similarities
    #: Later rounds, each (individuals, photos per individual) counted from the best voted, matched in turn while
    #: the best probability stays below ``stop_probability``; ``max_pairs`` bounds all rounds together.
    rounds: tuple[tuple[int, int], ...] = ()
    stop_probability: float = 0.5
    #: Which of the query's keypoints vote: with the engine's frame rule (core.engine.framing) only central ones, so
    #: that the herd and the background at its edges vote for no one; gallery photos bank their strongest keypoints
    #: wherever they lie (a turtle's close-up has scutes at its edges). None: every keypoint votes.
    frame: FrameConf | None = None

    def __post_init__(self) -> None:
        for name in ("gallery_descriptors", "query_descriptors", "min_individuals", "block"):
            if getattr(self, name) < 1:
                raise ValueError(f"shortlist {name} must be at least 1")
        if self.max_individuals < self.min_individuals:
            raise ValueError("shortlist max_individuals must be at least min_individuals")
        if self.photos_per_individual < 1 or self.max_pairs < 1:
            raise ValueError("shortlist photos_per_individual and max_pairs must be at least 1")
        if not 0.0 < self.share <= 1.0:
            raise ValueError("shortlist share must be in (0, 1]")
        if any(len(r) != 2 or min(r) < 1 for r in self.rounds):
            raise ValueError("each shortlist round is (individuals, photos per individual), both at least 1")
        if not 0.0 < self.stop_probability <= 1.0:
            raise ValueError("shortlist stop_probability must be in (0, 1]")


#: Presets by device type, tuned with ``python -m core bench`` and ``python -m core evaluate`` on the turtle and
#: nyala photos (README, "Speed at scale" and "Accuracy on a laptop").
#: A 2-core CPU spends about 0.36 s per LightGlue pair at 1,024 keypoints (early stopping on) after 1.5 s on the
#: query's own features. It starts with the two best-voted individuals on their two best-voted photos and, while no
#: candidate reaches a probability of 0.5, widens to four individuals on two photos, then six on three (18 pairs
#: at most, whatever the gallery's size). Chosen on identity folds of both shared sets, each fold's choice made on
#: the other three (README, "The shortlist in rounds"): replayed on the same matches, four fixed pairs lost 10
#: (turtles) and 8 (nyala) points of top-1 against exhaustive search, the rounds 2 and 4.
#: The CPU's similarities go through the matrix product eight photos at a time: the (1,024 x 8 x 512) block fits in
#: 16 MiB, where 512 photos at a time wrote and re-read 1 GiB per block; 0.9 instead of 1.7 s for 1,000 photos in
#: float32 on two AMD EPYC cores, the same similarities.
#: A GPU matches 40 pairs in a few tens of milliseconds, so it looks at eight photos of each of five individuals.
SHORTLIST_CONFS: dict[str, ShortlistConf] = {
    "cpu": ShortlistConf(
        gallery_descriptors=512,
        query_descriptors=1024,
        min_individuals=2,
        max_individuals=2,
        photos_per_individual=2,
        max_pairs=18,
        auto_min_photos=0,
        rounds=((4, 2), (6, 3)),
        block=8,
    ),
    "cuda": ShortlistConf(min_individuals=5, max_individuals=5, photos_per_individual=8, max_pairs=40),
}


def default_conf(device: torch.device | str) -> ShortlistConf:
    return SHORTLIST_CONFS.get(torch.device(device).type, SHORTLIST_CONFS["cpu"])


def resolve(shortlist: ShortlistConf | bool | None, n_photos: int, device: torch.device | str) -> ShortlistConf | None:
    """The conf to use, or None for exhaustive matching.

    ``None`` decides by gallery size (small galleries are cheap to match exhaustively and gain nothing),
    ``True`` always shortlists with the device's preset, ``False`` never does, a conf always shortlists.
    """
    if shortlist is False:
        return None
    if isinstance(shortlist, ShortlistConf):
        return shortlist
    conf = default_conf(device)
    if shortlist is None and n_photos <= conf.auto_min_photos:
        return None
    return conf


@dataclass
class Shortlist:
    """What the shortlist decided for one query."""

    ranking: list[str]  # every gallery individual, best voted first
    votes: dict[str, float]  # individual -> votes
    individuals: list[str]  # the individuals sent to LightGlue, best first
    photos: list[int]  # indices into ``GalleryIndex.photos`` sent to LightGlue (the first round's until searched)
    photo_votes: np.ndarray  # (N,) votes per gallery photo
    seconds: float = 0.0
    #: Photos each later round would add (ShortlistConf.rounds), in order; a search empties the rounds it did not need
    later: list[list[int]] = field(default_factory=list)
    rounds_used: int = 1


def _strongest(features: Features, count: int, frame: FrameConf | None = None) -> np.ndarray:
    """Indices of the ``count`` keypoints with the highest detector score (stable, so ties are deterministic), among
    those inside ``frame`` where any are (a photo with keypoints at its edges only still votes with them)."""
    candidates = np.arange(len(features))
    if frame is not None:
        inside = np.flatnonzero(central(features, frame))
        candidates = inside if len(inside) else candidates
    if len(candidates) <= count:
        return candidates
    return np.sort(candidates[np.argsort(-features.scores[candidates], kind="stable")[:count]])


#: Gallery photos whose bank rows are gathered on the host before moving to the device together.
_BANK_CHUNK = 512


def _unit_rows(rows: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Rows normalised in float32 on the device, then stored in the working precision (half on a GPU)."""
    descriptors = torch.from_numpy(rows).to(device).float()
    return (descriptors / descriptors.norm(dim=2, keepdim=True).clamp(min=1e-6)).to(dtype)


def _unit(desc: torch.Tensor) -> torch.Tensor:
    return desc / desc.norm(dim=1, keepdim=True).clamp(min=1e-6)


@dataclass
class ShortlistIndex:
    """Every gallery photo's strongest descriptors in one tensor, with the individual of each photo."""

    #: (N, P, D) unit length; float16 on CUDA, bfloat16 or float32 on a CPU (device.cpu_similarity_dtype)
    descriptors: torch.Tensor
    identity_of: np.ndarray  # (N,) int64 photo -> individual index
    identities: list[str]
    keys: list[str]  # photo keys, to honour ``exclude``
    sha256: list[str]
    conf: ShortlistConf
    build_seconds: float = 0.0
    _identity_t: torch.Tensor | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return self.descriptors.device

    @property
    def nbytes(self) -> int:
        return self.descriptors.element_size() * self.descriptors.nelement()

    @classmethod
    def build(cls, index: GalleryIndex, conf: ShortlistConf, device: torch.device | str) -> ShortlistIndex:
        start = time.perf_counter()
        device = torch.device(device)
        dtype = torch.float16 if device.type == "cuda" else cpu_similarity_dtype()
        identities = sorted({p.identity for p in index.photos})
        ident_idx = {ident: i for i, ident in enumerate(identities)}
        # One pass over the gallery's features (each may be read from the cache: gallery_features), in chunks
        # moved to the device as they fill, so the host never holds the whole bank.
        per_photo, used = conf.gallery_descriptors, 1
        chunks: list[torch.Tensor] = []
        chunk: list[np.ndarray] = []
        for features in index.features:
            keep = _strongest(features, per_photo)
            rows = np.zeros((per_photo, features.descriptors.shape[1]), dtype=np.float16)
            if len(keep):
                # A photo with fewer keypoints repeats its last one: a maximum over its rows is unchanged.
                used = max(used, len(keep))
                keep = np.concatenate([keep, np.full(per_photo - len(keep), keep[-1])])
                rows[:] = features.descriptors[keep]
            chunk.append(rows)
            if len(chunk) == _BANK_CHUNK:
                chunks.append(_unit_rows(np.stack(chunk), device, dtype))
                chunk = []
        if chunk:
            chunks.append(_unit_rows(np.stack(chunk), device, dtype))
        empty = torch.zeros((0, used, 0), dtype=dtype, device=device)
        descriptors = torch.cat(chunks)[:, :used] if chunks else empty
        identity_of = np.array([ident_idx[p.identity] for p in index.photos], dtype=np.int64)
        built = cls(
            descriptors, identity_of, identities, [p.key for p in index.photos], [p.sha256 for p in index.photos], conf
        )
        built._identity_t = torch.from_numpy(identity_of).to(device)
        built.build_seconds = time.perf_counter() - start
        log.info(
            "shortlist bank: %d photos x %d descriptors (%.0f MiB on %s) in %.2f s",
            len(index.photos),
            per_photo,
            built.nbytes / 2**20,
            device,
            built.build_seconds,
        )
        return built

    @torch.inference_mode()
    def similarities(self, query: Features) -> torch.Tensor:
        """``S``: best cosine similarity of each voting query descriptor in each photo, (Q, N) float32."""
        keep = _strongest(query, self.conf.query_descriptors, self.conf.frame)
        q = _unit(torch.from_numpy(np.asarray(query.descriptors[keep], dtype=np.float32)).to(self.device))
        q = q.to(self.descriptors.dtype)
        n, p, d = self.descriptors.shape
        out = torch.empty((len(keep), n), dtype=torch.float32, device=self.device)
        for start in range(0, n, self.conf.block):
            block = self.descriptors[start : start + self.conf.block]
            sim = (q @ block.reshape(-1, d).T).reshape(len(keep), block.shape[0], p)
            out[:, start : start + block.shape[0]] = sim.amax(dim=2).float()
        return out

    @torch.inference_mode()
    def votes(self, query: Features, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Votes per individual and per photo; ``excluded`` photos (a bool mask) take no part."""
        n_photos, n_ident = len(self.identity_of), len(self.identities)
        if n_photos == 0 or len(query) == 0 or excluded.all():
            return np.zeros(n_ident), np.zeros(n_photos)
        sim = self.similarities(query)  # (Q, N)
        if excluded.any():
            sim[:, torch.from_numpy(excluded).to(self.device)] = -2.0  # below any cosine similarity
        ident = self._identity_t
        assert ident is not None
        per_ident = torch.full((sim.shape[0], n_ident), -2.0, device=self.device)
        per_ident.scatter_reduce_(1, ident[None, :].expand_as(sim), sim, reduce="amax")
        if n_ident > 1:
            top = per_ident.topk(2, dim=1)
            best, second, winner = top.values[:, 0], top.values[:, 1].clamp(min=-1.0), top.indices[:, 0]
        else:
            best, winner = per_ident[:, 0], torch.zeros(sim.shape[0], dtype=torch.long, device=self.device)
            second = torch.full_like(best, -1.0)
        ident_votes = torch.zeros(n_ident, device=self.device).index_add_(0, winner, best - second)
        # The bar a photo must clear for descriptor i: the best similarity among *other* individuals.
        bar = torch.where(ident[None, :] == winner[:, None], second[:, None], best[:, None])
        photo_votes = (sim - bar).clamp(min=0.0).sum(dim=0)
        return ident_votes.double().cpu().numpy(), photo_votes.double().cpu().numpy()

    def excluded_mask(self, exclude: Iterable[str]) -> np.ndarray:
        excluded = set(exclude)
        return np.array([k in excluded or s in excluded for k, s in zip(self.keys, self.sha256, strict=True)])

    def select(self, query: Features | Sequence[Features], exclude: Iterable[str] = ()) -> Shortlist:
        """Rank every individual by votes and pick the photos that LightGlue should see.

        With several views of the query (its turns, core.engine.orientation) each individual and photo keeps the
        votes of the view that suits it best.
        """
        start = time.perf_counter()
        conf = self.conf
        excluded = self.excluded_mask(exclude)
        views = as_views(query)
        ident_votes, photo_votes = self.votes(views[0], excluded)
        for view in views[1:]:
            more_ident, more_photo = self.votes(view, excluded)
            ident_votes, photo_votes = np.maximum(ident_votes, more_ident), np.maximum(photo_votes, more_photo)
        present = np.zeros(len(self.identities), dtype=bool)
        present[self.identity_of[~excluded]] = True
        order = [i for i in sorted(range(len(self.identities)), key=lambda i: (-ident_votes[i], self.identities[i]))]
        order = [i for i in order if present[i]]
        total = float(ident_votes[order].sum()) if order else 0.0
        kept: list[int] = []
        held = 0.0
        for i in order:
            if len(kept) >= conf.max_individuals:
                break
            if len(kept) >= conf.min_individuals and total > 0 and held >= conf.share * total:
                break
            kept.append(i)
            held += float(ident_votes[i])
        best_photos: dict[int, np.ndarray] = {}

        def voted(i: int, count: int) -> list[int]:
            """The ``count`` best-voted photos of individual ``i`` (ties by gallery order)."""
            if i not in best_photos:
                members = np.flatnonzero((self.identity_of == i) & ~excluded)
                best_photos[i] = members[np.lexsort((members, -photo_votes[members]))]
            return [int(p) for p in best_photos[i][:count]]

        photos = [p for i in kept for p in voted(i, conf.photos_per_individual)][: conf.max_pairs]
        chosen, later = set(photos), []
        for n_individuals, per_individual in conf.rounds:
            added = [p for i in order[:n_individuals] for p in voted(i, per_individual) if p not in chosen]
            added = added[: max(0, conf.max_pairs - len(chosen))]
            chosen.update(added)
            if added:
                later.append(added)
        ranking = [self.identities[i] for i in order]
        return Shortlist(
            ranking=ranking,
            votes={self.identities[i]: float(ident_votes[i]) for i in order},
            individuals=self._individuals_of(ranking, photos),
            photos=photos,
            photo_votes=photo_votes,
            seconds=time.perf_counter() - start,
            later=later,
        )

    def _individuals_of(self, ranking: Sequence[str], photos: Sequence[int]) -> list[str]:
        """The individuals that ``photos`` show, in ``ranking``'s (vote) order."""
        shown = {self.identities[i] for i in self.identity_of[list(photos)].tolist()} if len(photos) else set()
        return [name for name in ranking if name in shown]

    def widen(self, short: Shortlist) -> list[int]:
        """Move the next round's photos into ``short`` (photos, individuals) and return them; [] when none is left."""
        if not short.later:
            return []
        added = short.later.pop(0)
        short.photos = short.photos + added
        short.individuals = self._individuals_of(short.ranking, short.photos)
        short.rounds_used += 1
        return added


def shortlist_index(index: GalleryIndex, conf: ShortlistConf, device: torch.device | str) -> ShortlistIndex:
    """The bank of ``index`` for ``conf`` and ``device``, built on first use and kept with the index."""
    cache: dict = index.shortlists
    key = (conf, str(torch.device(device)))
    if key not in cache:
        cache[key] = ShortlistIndex.build(index, conf, device)
    return cache[key]
