"""Catalogue exchange: manifests, hardened archives, import into the gallery and export out of it."""
