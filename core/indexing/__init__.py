"""Keeps the engine's view of the gallery in step with the database: gallery rows become
:class:`~core.engine.index.GalleryPhoto`, photos entering the gallery get their features, and indexes are
rebuilt when the gallery changes.

The one layer that knows both the store and the engine, so neither has to know the other.
"""
