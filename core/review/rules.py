"""The review rules: how many concordant votes decide (:class:`ReviewConfig`), the code pattern of new
individuals, and the errors a submission, vote or decision can meet."""

from __future__ import annotations

import logging
import re
import string
from dataclasses import dataclass

from core.errors import ScuteError
from core.store.gallery import normalize_code

log = logging.getLogger(__name__)

#: Limits on what people type, in characters.
MAX_NAME_LENGTH = 200
MAX_NOTES_LENGTH = 10_000
MAX_COMMENT_LENGTH = 2000


class ReviewError(ScuteError):
    """A submission, vote or decision that cannot be carried out as asked."""


class AlreadyVoted(ReviewError):
    """The user has already voted on this sighting (one vote per user and sighting)."""


class AlreadyDecided(ReviewError):
    """The sighting was decided already; nothing was changed."""


class AlreadyInGallery(ReviewError):
    """The submitted photo is already a gallery photo of an individual."""


@dataclass(frozen=True)
class ReviewConfig:
    """The consensus rule and the code pattern; every process deciding on one database should agree.

    A sighting is decided when the leading proposal ("same as X" or "new") has ``required_votes``
    votes from distinct users, strictly more than any other, and the votes for other proposals number
    at most ``allowed_dissent``; more dissent than that makes it a conflict for an admin. "Unsure"
    votes are stored but count for nothing.
    """

    required_votes: int = 2
    allowed_dissent: int = 0
    code_pattern: str = "T-{n:04d}"

    def __post_init__(self) -> None:
        if isinstance(self.required_votes, bool) or not isinstance(self.required_votes, int):
            raise ValueError(f"required_votes must be an integer, got {self.required_votes!r}")
        if self.required_votes < 1:
            raise ValueError(f"required_votes must be at least 1, got {self.required_votes}")
        if isinstance(self.allowed_dissent, bool) or not isinstance(self.allowed_dissent, int):
            raise ValueError(f"allowed_dissent must be an integer, got {self.allowed_dissent!r}")
        if self.allowed_dissent < 0:
            raise ValueError(f"allowed_dissent must be >= 0, got {self.allowed_dissent}")
        CodePattern(self.code_pattern)  # validates


class CodePattern:
    """A ``str.format`` pattern with exactly one integer field ``n``, e.g. ``T-{n:04d}``."""

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str):
            raise ValueError(f"code pattern must be text, got {type(pattern).__name__}")
        try:
            parts = list(string.Formatter().parse(pattern))
        except ValueError as exc:
            raise ValueError(f"code pattern {pattern!r} is not a valid format string: {exc}") from exc
        fields = [name for _, name, _, _ in parts if name is not None]
        if fields != ["n"]:
            raise ValueError(f"code pattern must contain exactly one field {{n}}, e.g. 'T-{{n:04d}}'; got {pattern!r}")
        self.pattern = pattern
        self.prefix = parts[0][0]
        self.regex = re.compile("".join(re.escape(lit) + (r"(\d+)" if name else "") for lit, name, _, _ in parts))
        for n in (1, 10, 255, 12345):
            try:
                sample = self.format(n)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"code pattern {pattern!r} cannot format a number: {exc}") from exc
            if self.number(sample) != n:
                raise ValueError(f"code pattern {pattern!r} makes codes that cannot be read back ({sample!r})")

    def format(self, n: int) -> str:
        return normalize_code(self.pattern.format(n=n))

    def number(self, code: str) -> int | None:
        match = self.regex.fullmatch(code)
        return int(match.group(1)) if match else None
