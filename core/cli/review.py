"""``python -m core sightings | vote``: list and inspect sightings, vote on them, decide them (admins)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

from sqlmodel import Session

from core.cli.common import acting_user, add_command, code_of, individual_id_of, print_table, say, settings, username_of
from core.review import sightings, votes
from core.store.models import SIGHTING_STATUSES

T = TypeVar("T")


def _sightings_list(args: argparse.Namespace, session: Session) -> None:
    rows = []
    for sighting in sightings.list_sightings(session, args.status, limit=args.limit):
        counts = votes.tally(session, sighting.id)  # type: ignore[arg-type]
        cast = sum(counts.proposals.values()) + counts.unsure
        rows.append(
            (
                sighting.id,
                sighting.status,
                sighting.created_at.strftime("%Y-%m-%d %H:%M"),
                username_of(session, sighting.submitted_by),
                sighting.side,
                cast,
                (sighting.decision or "")
                + (f" {code_of(session, sighting.decided_individual_id)}" if sighting.decision else ""),
            )
        )
    print_table(rows, ("id", "status", "submitted", "by", "side", "votes", "decision"))


def _sightings_show(args: argparse.Namespace, session: Session) -> None:
    detail = sightings.sighting_detail(session, args.sighting)
    s = detail.sighting
    by = username_of(session, s.submitted_by)
    say(f"Sighting {s.id}: {s.status}, photo {s.photo_id}, side {s.side}, by {by}")
    if s.taken_at is not None:
        say(f"taken {s.taken_at:%Y-%m-%d %H:%M}")
    if s.latitude is not None and s.longitude is not None:
        say(f"at {s.latitude:.5f}, {s.longitude:.5f}")
    if s.notes:
        say(f"notes: {s.notes}")
    if s.new_individual_probability is not None:
        say(f"new individual: {100 * s.new_individual_probability:.0f} %")
    print_table(
        [
            (
                c.rank,
                c.code,
                code_of(session, c.individual_id),
                f"{c.score:.4g}",
                _percent(c.probability),
                c.n_matches,
            )
            for c in detail.candidates
        ],
        ("rank", "code then", "code now", "score", "probability", "matches"),
    )
    say("votes:")
    print_table(
        [
            (username_of(session, v.user_id), v.decision, code_of(session, v.individual_id), v.comment)
            for v in detail.votes
        ],
        ("user", "vote", "individual", "comment"),
    )
    if s.decision is not None:
        code, by = code_of(session, s.decided_individual_id), username_of(session, s.decided_by)
        say(f"decided {s.decision} {code} by {by}")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f} %"


def _report(session: Session, outcome: votes.VoteOutcome, what: str) -> None:
    if outcome.applied:
        code = code_of(session, outcome.individual_id)
        say(f"{what}; sighting {outcome.sighting_id} is decided: {outcome.decision} {code}.")
    else:
        say(f"{what}; sighting {outcome.sighting_id} is {outcome.status}.")


def _with_features(args: argparse.Namespace, session: Session, work: Callable[[votes.GalleryHook], T]) -> T:
    """Run a vote or decision so that a photo joins the gallery only with usable features, computed outside the
    write lock (core.indexing.searchable); the models are loaded only when a photo joins."""
    from core.indexing.searchable import with_gallery_features_in
    from core.store.photos import PhotoStore

    deployment = settings(args)
    engines: list[Any] = []

    def engine() -> Any:
        if not engines:
            engines.append(deployment.engine.make_engine(deployment.home))
        return engines[0]

    return with_gallery_features_in(session, PhotoStore(deployment.photo_dir), engine, work)


def _vote(args: argparse.Namespace, session: Session) -> None:
    actor = acting_user(session, args)
    individual_id = individual_id_of(session, args.individual)
    outcome = _with_features(
        args,
        session,
        lambda hook: votes.cast_vote(
            session,
            actor,
            args.sighting,
            args.decision,
            individual_id,
            args.comment,
            config=settings(args).review,
            on_gallery_change=hook,
        ),
    )
    _report(session, outcome, "Vote stored")


def _sightings_decide(args: argparse.Namespace, session: Session) -> None:
    actor = acting_user(session, args)
    individual_id = individual_id_of(session, args.individual)
    outcome = _with_features(
        args,
        session,
        lambda hook: votes.decide(
            session,
            actor,
            args.sighting,
            args.decision,
            individual_id,
            config=settings(args).review,
            on_gallery_change=hook,
        ),
    )
    _report(session, outcome, "Decided")


def _register_sightings(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sightings", help="list and inspect sightings", description="List and inspect sightings."
    )
    commands = parser.add_subparsers(dest="sightings_command", metavar="COMMAND", required=True)
    listing = add_command(commands, "list", _sightings_list, "list sightings, oldest first", user=None)
    listing.add_argument("--status", choices=SIGHTING_STATUSES, help="only sightings with this status")
    listing.add_argument("--limit", type=int, default=None, metavar="N", help="at most N sightings")
    show = add_command(commands, "show", _sightings_show, "show a sighting's candidates and votes", user=None)
    show.add_argument("sighting", type=int, metavar="SIGHTING")
    decide = add_command(
        commands,
        "decide",
        _sightings_decide,
        "decide a pending or conflicting sighting (admins only)",
        user="required",
    )
    decide.add_argument("sighting", type=int, metavar="SIGHTING")
    decide.add_argument("decision", choices=("same", "new"))
    decide.add_argument("--individual", metavar="CODE", help="the individual, for 'same'")


def _register_vote(subparsers: Any) -> None:
    text = "vote on a sighting: same (with --individual CODE), new or unsure"
    vote = add_command(subparsers, "vote", _vote, text, user="required")
    vote.add_argument("sighting", type=int, metavar="SIGHTING")
    vote.add_argument("decision", choices=("same", "new", "unsure"))
    vote.add_argument("--individual", metavar="CODE", help="the individual, for 'same'")
    vote.add_argument("--comment", default="", help="an optional comment for the other reviewers")


def register(subparsers: Any) -> None:
    """Add ``sightings`` and ``vote`` to the main parser's subcommands."""
    _register_sightings(subparsers)
    _register_vote(subparsers)
