"""The speed benchmark (``python -m core bench``): query latency, memory and accuracy of shortlist+rerank
on large galleries.

There is no public turtle catalogue of 10,000 photos, so the benchmark grows one from the real photos:
the evaluation protocol's gallery half (known individuals only) is copied with identity-preserving
augmentations (small rotation, scale, shift and crop; brightness, contrast, colour cast, blur, noise,
JPEG quality), each copy keeping its individual's label. Copies are generated deterministically from the
seed into a cache folder (never the repository) and reused; galleries are nested (the 100-photo gallery
is inside the 1,000-photo one, which is inside the 10,000-photo one). Queries are real photos from the
protocol's query half, never augmented and never in the gallery, so a query can only be recognised by
the animal, not by a near-duplicate of itself.

For each gallery size it reports per-query latency of shortlist+rerank (image decoding and query
features included), LightGlue pairs per query, peak RSS and GPU memory, and top-1/top-5 accuracy of
shortlist+rerank against exhaustive matching on the same queries (exhaustive on a subset at large sizes).
It also measures the LightGlue stage alone (pairs per second, batched) and states the machine and settings.



``conf`` (what a run is) → ``augment`` (galleries grown from real photos) → ``runner`` (the measurements)
→ ``report`` (what it prints and writes).
"""
