"""Identify: upload photos, frame the head, search the gallery, look at the evidence, propose who it is.

Uploaded photos are kept in the session (not only in the upload widget), so a failed search, a wrong
crop or a refused submission never costs the volunteer their photo; they leave the list only when the
volunteer removes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

import numpy as np
import streamlit as st

from core.errors import ImageError, ScuteError
from core.service import identify
from core.service.identify import SIDE_CHOICES, SIDE_LABELS, SearchResult, Upload
from core.viz import pictures
from ui import context as ctx
from ui.compare import compare_upload
from ui.components import candidate_cards, match_explorer, md, percent, run_search, who_is_it
from ui.crop_box import compared_area, crop_box
from ui.encounter import encounter_section, sent_message
from ui.places import search_scope

ACCEPTED = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "heic", "heif"]
DRAFTS = "identify.drafts"
REJECTED = "identify.rejected"
UPLOADER = "identify.uploader_generation"
LAST_SIDE = "identify.last_side"
SCOPE = "identify.scope.individuals"  # who the searches compare with (None: everyone)


@dataclass
class Draft:
    """One uploaded photo and what the volunteer did with it so far."""

    upload: Upload
    side: str = "unknown"
    rotation: int = 0
    crop: tuple[float, float, float, float] | None = None
    result: SearchResult | None = None
    searched_with: tuple | None = None
    query_image: np.ndarray | None = field(default=None, repr=False)
    empty_gallery: bool = False
    sighting_id: int | None = None
    outcome: str = ""

    @property
    def settings(self) -> tuple:
        return (self.side, self.crop, self.rotation)


def _drafts() -> dict[str, Draft]:
    return st.session_state.setdefault(DRAFTS, {})


def _ingest(files: list) -> None:
    """Check each new file once; good ones join the list, bad ones get a message that stays visible."""
    drafts = _drafts()
    rejected: list[str] = st.session_state.setdefault(REJECTED, [])
    for file in files:
        data = file.getvalue()
        try:
            upload = identify.read_upload(file.name, data)
        except ImageError as exc:
            rejected.append(f"**{md(file.name)}**: {md(exc)}")
            continue
        if upload.sha256 not in drafts:
            drafts[upload.sha256] = Draft(upload, side=_remembered_side())


def _remembered_side() -> str:
    """The side chosen last in this session, else the side of the volunteer's latest sighting."""
    if LAST_SIDE not in st.session_state:
        st.session_state[LAST_SIDE] = identify.last_side(ctx.app(), ctx.require())
    return st.session_state[LAST_SIDE]


def _uploader() -> None:
    generation = st.session_state.setdefault(UPLOADER, 0)
    files = st.file_uploader(
        "Drop photos here, or browse (on a phone you can take a photo)",
        type=ACCEPTED,
        accept_multiple_files=True,
        key=f"identify.uploader.{generation}",
        help="JPEG, PNG, WebP, TIFF or HEIC, up to 50 MB each. Several photos at once are fine.",
    )
    with st.expander("Use this device's camera"):
        shot = st.camera_input("Take a photo", key=f"identify.camera.{generation}", label_visibility="collapsed")
    new = list(files or []) + ([shot] if shot is not None else [])
    if new:
        _ingest(new)
        st.session_state[UPLOADER] = generation + 1  # empty the widget: the photos now live in the list
        st.rerun()


def _show_rejected() -> None:
    rejected: list[str] = st.session_state.get(REJECTED, [])
    if not rejected:
        return
    for message in rejected:
        st.error(message, icon=":material/block:")
    if st.button("Dismiss these messages", key="identify.dismiss", type="tertiary"):
        st.session_state[REJECTED] = []
        st.rerun()


def _framing(draft: Draft, key: str) -> None:
    """Side, crop and rotation: a box dragged on the photo, and next to it what Scute will compare."""
    upload = draft.upload
    left, right = st.columns([3, 2], gap="medium")
    with left:
        draft.crop = crop_box(upload.preview, draft.crop, f"{key}.crop")  # first: "What Scute compares" shows it
        st.caption(
            f":material/calendar_month: {md(upload.taken_at_text)} · :material/location_on: {md(upload.place_text)} · "
            f"{upload.info.width}×{upload.info.height} {upload.info.format}"
        )
        if upload.info.latitude is not None and upload.info.longitude is not None:
            st.map({"lat": [upload.info.latitude], "lon": [upload.info.longitude]}, zoom=9, height=200)
    with right:
        draft.side = st.radio(
            "Which side of the head is shown?",
            SIDE_CHOICES,
            index=SIDE_CHOICES.index(draft.side),
            format_func=lambda s: SIDE_LABELS[s],
            key=f"{key}.side",
            horizontal=True,
        )
        st.caption(
            "Why it matters: a turtle's left and right scales are different patterns, so Scute compares your "
            "photo only with gallery photos of the same side. *Not sure* compares with every side (slower, and "
            "a little less sure)."
        )
        st.session_state[LAST_SIDE] = draft.side
        turns = st.container(horizontal=True, gap="small")
        if turns.button("90°", icon=":material/rotate_left:", key=f"{key}.rotl", help="Turn anticlockwise"):
            draft.rotation = (draft.rotation - 90) % 360
        if turns.button("90°", icon=":material/rotate_right:", key=f"{key}.rotr", help="Turn clockwise"):
            draft.rotation = (draft.rotation + 90) % 360
        if turns.button("Reset", key=f"{key}.rotreset", disabled=draft.rotation == 0):
            draft.rotation = 0
        compared = pictures.crop_and_rotate(upload.preview, draft.crop, draft.rotation)
        st.image(compared, caption="What Scute compares", width=260)


def _search(draft: Draft) -> None:
    draft.empty_gallery = False
    result = run_search(
        draft.upload.data,
        draft.upload.sha256,
        crop=draft.crop,
        rotation=draft.rotation,
        side=draft.side,
        individuals=st.session_state.get(SCOPE),
    )
    if result is None:  # run_search has said why; an empty gallery still lets a first sighting be sent
        draft.empty_gallery = identify.gallery_is_empty(ctx.app())
        return
    draft.result = result
    draft.searched_with = draft.settings
    with ctx.guard("preparing the match pictures"):
        draft.query_image = identify.query_image(ctx.app(), draft.upload.data, draft.crop, draft.rotation)


def _results(draft: Draft, key: str) -> None:
    result = draft.result
    assert result is not None
    if draft.searched_with != draft.settings:
        st.warning("You changed the side, crop or rotation since this search: search again to update it.")
    best = result.candidates[0] if result.candidates else None
    if best is not None and best.probability >= 0.5:
        name = f" · {md(best.name)}" if best.name else ""
        st.success(f"Most likely **{md(best.identity)}**{name} ({percent(best.probability)})")
    elif result.new_individual_probability >= 0.5:
        st.info(
            f"Probably a **new individual** ({percent(result.new_individual_probability)}): no candidate is convincing."
        )
    else:
        st.info("No clear answer: look at the matches of each candidate below before you propose.")
    candidate_cards(result)
    used_region = getattr(result, "used_region", None)  # the engine's localisation, where it has one
    chosen = compared_area(draft.upload.preview, result.crop, result.rotation, used_region, draft.crop, f"{key}.area")
    if chosen != draft.crop:  # "use this area as my crop": the box above shows it, ready to correct
        draft.crop = chosen
        st.rerun()
    if draft.query_image is not None:
        st.subheader("Why? The matched points")
        match_explorer(result, draft.query_image, key=f"{key}.explore", label_for=_labeller(result))
        compare_upload(result, draft.upload, key=f"{key}.compare", label_for=_labeller(result))


def _labeller(result: SearchResult):
    names = {c.identity: c.name for c in result.identification.candidates}

    def label(identity: str) -> str:
        return f"{identity} {names[identity]}" if names.get(identity) else identity

    return label


def _proposal(draft: Draft, key: str) -> None:
    """The volunteer's proposal: same as a candidate, another individual, new, or unsure."""
    user = ctx.require()
    result = draft.result
    choices = identify.proposal_choices(ctx.app(), result)
    inputs, individuals = choices.candidates, choices.individuals
    codes = {row.id: row.label for row in individuals}
    new_p = result.new_individual_probability if result is not None else None
    st.subheader("Your proposal")
    with st.form(f"{key}.form", border=True):
        choice, other = who_is_it(
            inputs,
            individuals,
            new_p,
            key,
            help="Pre-selected: what the evidence supports, or “not sure” when nothing is convincing.",
        )
        exif_day = draft.upload.info.taken_at.date() if draft.upload.info.taken_at else None
        seen = st.date_input(
            "Date seen", value=exif_day, max_value=date.today(), key=f"{key}.date", format="DD/MM/YYYY"
        )
        notes = st.text_area("Notes (place, behaviour, tags…)", key=f"{key}.notes", max_chars=10_000)
        comment = st.text_input("Comment for the reviewers", key=f"{key}.comment", max_chars=2000)
        sent = st.form_submit_button("Send for review", key=f"{key}.send", type="primary", icon=":material/send:")
    pending = f"{key}.confirming"
    if sent:
        st.session_state.pop(pending, None)
    elif st.session_state.get(pending) is None or choice is None:
        return
    kind, individual_id = choice
    if kind == "other":
        if other is None:
            st.error("Choose the individual you recognise, or pick another answer.")
            return
        kind, individual_id = "same", other
    if not sent and st.session_state[pending][:2] != (kind, individual_id):
        return  # asked about another answer than the one in the form now
    reason = identify.needs_confirmation(inputs, new_p, kind, individual_id)
    if reason is not None and st.session_state.get(pending) != (kind, individual_id, "confirmed"):
        st.session_state[pending] = (kind, individual_id, "asked")
        label = codes.get(individual_id, str(individual_id))
        st.warning(
            f"{md(reason)}. Send “same as {md(label)}” anyway? A wrong match mixes two turtles' histories; "
            "if you are not sure, choose *I'm not sure* and let the reviewers look.",
            icon=":material/help:",
        )
        yes, no = st.columns(2)
        if yes.button(f"Yes, it is {md(label)}", key=f"{key}.confirm", type="primary", width="stretch"):
            st.session_state[pending] = (kind, individual_id, "confirmed")
            st.rerun()
        if no.button("No, let me change it", key=f"{key}.cancel", width="stretch"):
            st.session_state.pop(pending, None)
            st.rerun()
        return
    st.session_state.pop(pending, None)
    taken_at = None
    if seen is not None:
        exif = draft.upload.info.taken_at
        taken_at = datetime.combine(seen, exif.time() if exif else time(12, 0), tzinfo=UTC)
    submission = ctx.attempt(
        "sending your sighting",
        lambda: identify.send(
            ctx.app(),
            user,
            draft.upload,
            result,
            proposal=kind,
            individual_id=individual_id,
            comment=comment,
            notes=notes,
            side=draft.side,
            crop=draft.crop,
            rotation=draft.rotation,
            taken_at=taken_at,
        ),
    )
    if submission is None:  # the message says why; the photo stays in the list
        return
    draft.sighting_id = submission.sighting.id
    outcome = submission.outcome
    if not submission.created:
        draft.outcome = f"This photo was already submitted as sighting #{submission.sighting.id}; your vote was added."
    elif outcome is not None and outcome.applied:
        draft.outcome = "Your vote was enough to decide it: the photo is now in the gallery."
    else:
        draft.outcome = "It now waits for other people to confirm it on the Review page."
    st.rerun()


def _draft_view(sha: str, draft: Draft, *, alone: bool = True) -> None:
    """One photo's framing, search and evidence; its own proposal only when it is not part of an encounter."""
    key = f"identify.{sha[:16]}"
    if draft.sighting_id is not None:
        st.success(f"Sent for review as sighting #{draft.sighting_id}. {draft.outcome}", icon=":material/check_circle:")
        st.image(pictures.crop_and_rotate(draft.upload.preview, draft.crop, draft.rotation), width=320)
        if st.button("Remove from this list", key=f"{key}.done"):
            del _drafts()[sha]
            st.rerun()
        return
    _framing(draft, key)
    search_col, remove_col = st.columns([3, 1])
    if search_col.button(
        "Find this turtle", icon=":material/search:", key=f"{key}.search", type="primary", width="stretch"
    ):
        _search(draft)
    if remove_col.button("Remove photo", key=f"{key}.remove", type="tertiary", width="stretch"):
        del _drafts()[sha]
        st.rerun()
    if draft.result is not None:
        _results(draft, key)
    if not alone:
        st.caption("The proposal for all photos together is below the photos.")
    elif draft.result is not None or draft.empty_gallery:
        if draft.empty_gallery and draft.result is None:
            st.info("The gallery is still empty, so there is nothing to compare with: send it as a new individual.")
        _proposal(draft, key)


def main() -> None:
    ctx.require()
    st.title("Identify a turtle")
    st.write(
        "Upload photos of one turtle's head. For each photo, say which side it shows and crop to the head: "
        "Scute then ranks the known individuals and shows you why. Several photos of one turtle seen once "
        "(left and right side, say) are one encounter: their evidence adds up."
    )
    _uploader()
    _show_rejected()
    drafts = _drafts()
    if not drafts:
        st.caption("Tip: sharp photos where the head's scales are visible work best; one photo per side.")
        return
    first = next(iter(drafts.values())).upload.info
    st.session_state[SCOPE] = search_scope(first.latitude, first.longitude)  # species and region (ui.places)
    sent_message()
    open_drafts = [d for d in drafts.values() if d.sighting_id is None]
    together = len(open_drafts) > 1 and st.toggle(
        "These photos show one animal, seen once (one encounter)",
        value=True,
        key="identify.together",
        help="Then each photo is compared with the same side in the gallery, the evidence of all photos adds up, "
        "and you send one proposal for all of them. Turn it off to send each photo on its own.",
    )
    names = [f"Photo {i + 1} · {md(d.upload.name[:24])}" for i, d in enumerate(drafts.values())]
    containers = st.tabs(names) if len(drafts) > 1 else [st.container()]
    for container, (sha, draft) in zip(containers, list(drafts.items()), strict=True):
        with container:
            try:
                _draft_view(sha, draft, alone=not together)
            except ScuteError as exc:
                st.error(str(exc), icon=":material/warning:")
    if together:
        with ctx.guard("combining the photos"):
            encounter_section(open_drafts, _search)


main()
