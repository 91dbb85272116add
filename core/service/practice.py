"""Practice mode: a volunteer identifies an encounter whose answer is known and is told the right one at once.

New volunteers learn what a match looks like fastest with feedback on real cases (Zooniverse's most asked-for
training aid). A question is a decided sighting someone else sent; the search is the one its submitter saw
(``sighting_evidence``) while every candidate in it is still in the gallery as it was, otherwise the photo is
searched again (never against itself). Nothing that names the answer is shown before the volunteer answers: no
file name, no code, no notes, no votes. Answers are kept (``practice_answer``) so that admins see how often each
volunteer agrees with the decided answer.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import case
from sqlmodel import Session, col, func, select

from core.errors import ScuteError
from core.progress import StageProgress
from core.review.users import acting_user
from core.service import review
from core.service.app import App
from core.service.evidence import Evidence
from core.service.identify import SearchResult
from core.store.feedback import PracticeAnswer
from core.store.gallery import resolve_merged
from core.store.models import Individual, Photo, Sighting, User, Vote

NEW = "new"  # the answer "a new individual" (codes never equal it: they come from a pattern like T-0001)


class PracticeError(ScuteError):
    """A practice answer that cannot be taken (unknown question, own sighting, unknown individual)."""


@dataclass(frozen=True)
class Question:
    """What the volunteer sees before answering: the photo and its side, nothing that names the animal."""

    sighting_id: int
    photo_path: Path
    crop: tuple[float, float, float, float] | None
    rotation: int
    side: str


@dataclass(frozen=True)
class Search:
    """The candidates to choose from and the picture their matches are drawn on."""

    result: SearchResult | Evidence
    query_image: np.ndarray
    stored: bool  # True: the submitter's own search, reused; False: searched again now

    @property
    def choices(self) -> list[str]:
        return [c.identity for c in self.result.candidates]


@dataclass(frozen=True)
class Feedback:
    correct: bool
    right: str  # the right code, or NEW
    explanation: str


@dataclass(frozen=True)
class Agreement:
    """One volunteer's practice record, for admins."""

    username: str
    answers: int
    correct: int
    last: datetime | None

    @property
    def rate(self) -> float:
        return self.correct / self.answers if self.answers else float("nan")


def _questions(session: Session, user: User) -> list[int]:
    query = select(Sighting.id).where(
        Sighting.status == "decided",
        col(Sighting.decided_individual_id).is_not(None),
        Sighting.submitted_by != user.id,
        col(Sighting.id).not_in(select(Vote.sighting_id).where(Vote.user_id == user.id)),  # they know the answer
    )
    return [i for i in session.exec(query.order_by(col(Sighting.id))).all() if i is not None]


def next_question(app: App, user: User, skip: Collection[int] = (), seed: int | None = None) -> Question | None:
    """A decided sighting this user neither sent nor voted on, not answered yet (else any); None when none."""
    with app.session() as session:
        pool = _questions(session, user)
        answered = set(session.exec(select(PracticeAnswer.sighting_id).where(PracticeAnswer.user_id == user.id)).all())
        fresh = [i for i in pool if i not in answered and i not in skip]
        candidates = fresh or [i for i in pool if i not in skip] or pool
        if not candidates:
            return None
        sighting = session.get(Sighting, random.Random(seed).choice(candidates))
        photo = session.get(Photo, sighting.photo_id)  # type: ignore[union-attr]
        assert sighting is not None and photo is not None
        return Question(sighting.id, app.store.path(photo.path), photo.crop, photo.rotation, sighting.side)  # type: ignore[arg-type]


def _unchanged(session: Session, evidence: Evidence) -> bool:
    """Whether every candidate of the stored search is still an active individual with its best photo in its
    gallery: then the stored ranking is what a search today would be asked to choose from."""
    for candidate in evidence.candidates:
        individual = session.exec(select(Individual).where(Individual.code == candidate.identity)).first()
        photo = session.get(Photo, candidate.photo.photo_id) if candidate.photo.photo_id is not None else None
        if individual is None or individual.status != "active" or photo is None:
            return False
        if photo.individual_id != individual.id or not photo.in_gallery:
            return False
    return True


def search(app: App, question: Question, progress: StageProgress | None = None) -> Search:
    """The stored search when the gallery around it has not changed, else a new one (the photo never meets itself)."""
    item = review.item(app, question.sighting_id)
    kept = review.stored_evidence(item)
    if kept is not None and kept[0].candidates:
        with app.session() as session:
            if _unchanged(session, kept[0]):
                return Search(kept[0], kept[1], stored=True)
    result, image = review.search_again(app, item, progress)
    return Search(result, image, stored=False)


def _ordinal(rank: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(rank, f"{rank}th")


def _right_answer(session: Session, sighting: Sighting, shown: Sequence[str]) -> tuple[Individual, bool]:
    """The individual the photo belongs to now (merges followed), and whether "new" was the right answer:
    the right individual is not among the choices and had no other photo the search could have found."""
    decided = session.get(Individual, sighting.decided_individual_id)
    if decided is None:
        raise PracticeError("This practice photo's answer is no longer in the gallery; please take another.")
    right = resolve_merged(session, decided)
    others = session.exec(
        select(func.count())
        .select_from(Photo)
        .where(Photo.individual_id == right.id, col(Photo.in_gallery).is_(True), Photo.id != sighting.photo_id)
    ).one()
    return right, right.code not in shown and (sighting.decision == NEW or others == 0)


def answer(app: App, user: User, sighting_id: int, chosen: str, shown: Sequence[str]) -> Feedback:
    """Check ``chosen`` (a code among ``shown``, or :data:`NEW`), keep the answer and explain the right one."""
    with app.session() as session:
        actor = acting_user(session, user, action="practise")
        sighting = session.get(Sighting, sighting_id)
        if sighting is None or sighting.status != "decided":
            raise PracticeError(f"There is no decided sighting {sighting_id} to practise on.")
        if sighting.submitted_by == actor.id:
            raise PracticeError("This is your own sighting; practice uses other people's.")
        if chosen != NEW and chosen not in shown:
            raise PracticeError(f"{chosen!r} is not one of the choices; pick a candidate or 'new individual'.")
        right, new_was_right = _right_answer(session, sighting, shown)
        picked = None
        if chosen != NEW:
            named = session.exec(select(Individual).where(Individual.code == chosen)).first()
            if named is None:
                raise PracticeError(f"There is no individual {chosen} any more; please take another photo.")
            picked = resolve_merged(session, named)
        correct = new_was_right if chosen == NEW else (picked is not None and picked.id == right.id)
        session.add(
            PracticeAnswer(
                user_id=actor.id,  # type: ignore[arg-type]
                sighting_id=sighting_id,
                answer_individual_id=picked.id if picked is not None else None,
                answered_new=chosen == NEW,
                correct=correct,
            )
        )
        return Feedback(correct, NEW if new_was_right else right.code, _explain(right, new_was_right, shown))


def _explain(right: Individual, new_was_right: bool, shown: Sequence[str]) -> str:
    if new_was_right:
        return (
            "This animal was not in the gallery yet when the photo was searched: it was recorded as a new "
            f"individual, now {right.code}. When no candidate shares the pattern of scales, 'new individual' is "
            "the answer."
        )
    where = (
        f"the search ranked it {_ordinal(list(shown).index(right.code) + 1)}"
        if right.code in shown
        else "it was not among the search's top candidates"
    )
    return f"This is {right.code}, as decided in review; {where}. Compare its matched scale corners with yours."


def agreement(app: App, user: User) -> list[Agreement]:
    """Each volunteer's answers and how many agreed with the decided answer (admins only), most answers first."""
    with app.session() as session:
        acting_user(session, user, "admin", action="see practice results")
        rows = session.exec(
            select(
                User.username,
                func.count(col(PracticeAnswer.id)),
                func.sum(case((col(PracticeAnswer.correct), 1), else_=0)),
                func.max(PracticeAnswer.created_at),
            )
            .join(User, col(User.id) == PracticeAnswer.user_id)
            .group_by(User.username)
        ).all()
        result = [Agreement(name, int(n), int(ok or 0), last) for name, n, ok, last in rows]
        return sorted(result, key=lambda a: (-a.answers, a.username))
