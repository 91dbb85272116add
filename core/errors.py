"""One exception family whose messages are written for volunteers, not developers.

The command line and the app show ``str(error)`` as it is, so every message must say what went
wrong and what to do, without jargon or a traceback.
"""


class ScuteError(Exception):
    """Base for every error a user can cause and fix."""


class ImageError(ScuteError):
    """The file is not a photo Scute can read (corrupt, truncated, empty, too large, unknown format)."""


class NoKeypointsError(ScuteError):
    """The photo holds too little texture to match (blank, blurred, tiny crop)."""


class EmptyGalleryError(ScuteError):
    """There is nothing to compare against yet."""


class ManifestError(ScuteError):
    """A catalogue manifest cannot be read at all (missing file, missing columns)."""
