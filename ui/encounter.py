"""Identify's encounter section: several photos of one animal searched, ranked together and sent as one encounter.

Each photo keeps its own framing, search and evidence on its tab (pages/identify.py); this section searches
the photos not searched yet, shows the combined ranking with each photo's evidence beside it
(core.engine.combine through core.service.encounter), and sends one proposal for the whole encounter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

import streamlit as st

from core.service import encounter, identify
from core.service.encounter import EncounterFields, EncounterRanking
from core.service.identify import SearchResult, Upload
from ui import context as ctx
from ui.components import md, percent, who_is_it

KEY = "identify.encounter"


class Photo(Protocol):
    upload: Upload
    side: str
    crop: tuple[float, float, float, float] | None
    rotation: int
    result: SearchResult | None
    searched_with: tuple | None
    sighting_id: int | None
    outcome: str

    @property
    def settings(self) -> tuple: ...


def evidence_text(value: float | None) -> str:
    """A log-likelihood ratio as shown: signed, one decimal; a photo that was not compared says so. Below -100 the
    value is only the floor of a probability that underflowed, so it is shown as a bound."""
    if value is None:
        return "not compared"
    return "≤ -100" if value <= -100 else f"{value:+.1f}"


def encounter_section(photos: Sequence[Photo], search: Callable[[Any], None]) -> None:
    """Search every photo, show the combined ranking, and send one proposal for the encounter."""
    st.subheader("One encounter: all photos together")
    waiting = [p for p in photos if p.result is None or p.searched_with != p.settings]
    if st.button(
        "Find this turtle in every photo",
        icon=":material/search:",
        key=f"{KEY}.search",
        type="primary" if waiting else "secondary",
        disabled=not waiting,
        help="Searches each photo not searched yet (or changed since), each against the same side in the gallery.",
    ):
        for photo in waiting:
            search(photo)
        st.rerun()
    results = [p.result for p in photos]
    ranking = encounter.combined(ctx.app(), results) if any(r is not None for r in results) else None
    if ranking is not None:
        _ranking(ranking, photos)
    elif waiting:
        st.caption("Search the photos to see who this is; you can also send them without a search.")
    _form(photos, ranking)


def _ranking(ranking: EncounterRanking, photos: Sequence[Photo]) -> None:
    best = ranking.candidates[0] if ranking.candidates else None
    if best is not None and best.probability >= identify.CONVINCING:
        name = f" · {md(best.name)}" if best.name else ""
        st.success(f"All photos together: most likely **{md(best.identity)}**{name} ({percent(best.probability)})")
    elif ranking.new_individual_probability >= identify.CONVINCING:
        st.info(f"All photos together: probably a **new individual** ({percent(ranking.new_individual_probability)})")
    else:
        st.info("All photos together: no clear answer. Look at each photo's matches before you propose.")
    labels = [f"Photo {i + 1} ({p.side})" for i, p in enumerate(photos)]
    rows = [
        {
            "Individual": md(c.identity + (f" {c.name}" if c.name else "")),  # st.table's cells are Markdown
            "Probability": md(percent(c.probability)),  # ">99 %" would be a quote
            "Evidence, all photos": evidence_text(c.log_likelihood_ratio),
        }
        | {
            label: evidence_text(e.log_likelihood_ratio if e.compared else None)
            for label, e in zip(labels, c.evidence, strict=True)
        }
        for c in ranking.candidates
    ]
    st.table(rows)
    st.caption(
        f"New individual: {percent(ranking.new_individual_probability)}. Evidence is the log-likelihood ratio "
        "against a new individual (above 0: for this individual); each photo is compared only with gallery "
        "photos of its side, and the photos' evidence adds up."
    )


def _form(photos: Sequence[Photo], ranking: EncounterRanking | None) -> None:
    app = ctx.app()
    user = ctx.require()
    choices, new_p = encounter.choices(app, ranking)
    individuals = identify.proposal_choices(app, None).individuals
    places = encounter.places(app)
    exif = next((p.upload.info.taken_at for p in photos if p.upload.info.taken_at), None)

    st.subheader("Your proposal for the encounter")
    with st.form(f"{KEY}.form", border=True):
        choice, other = who_is_it(choices, individuals, new_p, KEY)
        left, right = st.columns(2)
        seen = left.date_input(
            "Date seen", value=exif.date() if exif else None, max_value=date.today(), key=f"{KEY}.date"
        )
        site = right.selectbox(
            "Site",
            [s for s, _ in places.sites],
            index=None,
            format_func=dict(places.sites).get,
            placeholder="From the photos' location" if places.sites else "No sites kept yet",
            key=f"{KEY}.site",
        )
        observer = left.text_input("Observer", key=f"{KEY}.observer", max_chars=200, placeholder="If not you")
        species = right.selectbox(
            "Species",
            places.species,
            index=None,
            placeholder="Choose" if places.species else "No species kept yet",
            key=f"{KEY}.species",
        )
        tags = st.text_input("Tags (separated by commas, up to 20)", key=f"{KEY}.tags")
        notes = st.text_area("Notes (behaviour, condition…)", key=f"{KEY}.notes", max_chars=10_000)
        comment = st.text_input("Comment for the reviewers", key=f"{KEY}.comment", max_chars=2000)
        sent = st.form_submit_button(
            f"Send the encounter ({len(photos)} photos) for review", type="primary", icon=":material/send:"
        )
    if not sent or choice is None:
        return
    kind, individual_id = choice
    if kind == "other":
        if other is None:
            st.error("Choose the individual you recognise, or pick another answer.")
            return
        kind, individual_id = "same", other
    taken_at = datetime.combine(seen, exif.time() if exif else time(12, 0), tzinfo=UTC) if seen else None
    fields = EncounterFields(
        taken_at=taken_at,
        site_id=site,
        latitude=next((p.upload.info.latitude for p in photos if p.upload.info.latitude is not None), None),
        longitude=next((p.upload.info.longitude for p in photos if p.upload.info.longitude is not None), None),
        observer=observer,
        species=species or "",
        notes=notes,
        tags=tags.split(","),
    )
    drafts = [encounter.PhotoDraft(p.upload, p.result, p.side, p.crop, p.rotation) for p in photos]
    done = ctx.attempt(
        "sending your encounter",
        lambda: encounter.send(app, user, drafts, fields, proposal=kind, individual_id=individual_id, comment=comment),
    )
    if done is None:  # the message says why; every photo stays in the list
        return
    decided = any(s.outcome is not None and s.outcome.applied for s in done.submissions)
    ids = ", ".join(f"#{s.sighting.id}" for s in done.submissions)
    for photo, submission in zip(photos, done.submissions, strict=True):
        photo.sighting_id = submission.sighting.id
        photo.outcome = f"Part of encounter #{done.encounter.id} (sightings {ids}). " + (
            "Your vote was enough to decide it." if decided else "It now waits for review."
        )
    st.session_state[f"{KEY}.sent"] = (
        f"Sent for review as encounter #{done.encounter.id} with {len(photos)} photos (sightings {ids}). "
        + ("Your vote was enough to decide it." if decided else "It now waits for other people to confirm it.")
    )
    st.rerun()


def sent_message() -> None:
    """The confirmation of the last encounter sent, once."""
    message = st.session_state.pop(f"{KEY}.sent", None)
    if message:
        st.success(message, icon=":material/check_circle:")
