"""Review: work through the sightings waiting for your vote, oldest first, with the same evidence views.

Keyboard: 1-5 vote "same as" the candidate of that rank, N "new individual", U "unsure", J/K next and
previous sighting. Admins also see the conflicts and can decide any open sighting directly.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.service import browse, dashboard, review
from core.service.review import EncounterReview, ReviewItem
from core.viz import pictures
from ui import context as ctx
from ui.compare import compare_review
from ui.components import match_explorer, md, percent, photo_image, with_progress
from ui.encounter import evidence_text

POSITION = "review.position"
FLASH = "review.flash"
SEARCHES = "review.searches"
EVIDENCE = "review.evidence"
SHORTCUT_KEYS = ("1", "2", "3", "4", "5")


def _flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        kind, text = message
        (st.success if kind == "ok" else st.info)(
            text, icon=":material/check_circle:" if kind == "ok" else ":material/info:"
        )


def _summary(item: ReviewItem, voting: Callable[[], None] | None) -> None:
    detail, codes, users = item.detail, item.codes, item.users
    sighting, photo = detail.sighting, detail.photo
    left, right = st.columns([3, 2], gap="medium")
    with left:
        image = photo_image(str(item.photo_path), None, 0, 900)
        st.image(pictures.crop_preview(image, photo.crop), width="stretch")
        when = sighting.taken_at.strftime("%d %b %Y") if sighting.taken_at else "date unknown"
        latitude, longitude = item.place(ctx.require(), ctx.app().settings.volunteer_position_degrees)
        located = latitude is not None and longitude is not None
        place = f"{latitude:.5f}, {longitude:.5f}" if located else "place unknown"
        if latitude is not None and (latitude, longitude) != (sighting.latitude, sighting.longitude):
            place += " (rounded to about 11 km)"
        st.caption(
            f"Sighting #{sighting.id} · submitted by {md(users.get(sighting.submitted_by, '?'))} on "
            f"{sighting.created_at:%d %b %Y} · seen {when} · :material/location_on: {place} · side: {sighting.side}"
            + (f" · turned {photo.rotation}°" if photo.rotation else "")
        )
        if sighting.notes:
            st.text(f"Notes: {sighting.notes}")  # a volunteer's text: plain, so no URL in it becomes a link
    with right:
        st.markdown("**Candidates the submitter saw**")
        rows = [
            {
                "Rank": c.rank,
                "Individual": codes.get(c.individual_id, c.code)
                + (f" (was {c.code})" if c.code and not codes.get(c.individual_id, "").startswith(c.code) else ""),
                "Probability": percent(c.probability),
                "Matches": c.n_matches,
            }
            for c in detail.candidates
        ]
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch")
        st.caption(f"New individual: {percent(detail.sighting.new_individual_probability)}")
        st.markdown("**Votes so far**")
        if not detail.votes:
            st.caption("No votes yet.")
        for vote in detail.votes:
            what = {
                "same": f"same as {md(codes.get(vote.individual_id, vote.individual_id))}",
                "new": "new individual",
                "unsure": "unsure",
            }[vote.decision]
            st.markdown(f"- **{md(users.get(vote.user_id, '?'))}**: {what}")
            if vote.comment:  # plain text: Markdown would turn a URL in it into a link (a phishing aid)
                st.text(f"“{vote.comment}”")
        if voting is not None:
            voting()


def _evidence(item: ReviewItem, default_identity: str | None) -> None:
    """What the submitter saw, at once; a search against today's gallery only when the reviewer asks."""
    key = item.detail.sighting.id
    assert key is not None
    searches: dict[int, object] = st.session_state.setdefault(SEARCHES, {})
    live = searches.get(key)
    if live is not None:
        st.caption("Matched against today's gallery (the probabilities may differ from what the submitter saw).")
        result, query_image = live  # type: ignore[misc]
        match_explorer(result, query_image, key=f"review.{key}.live", default_identity=default_identity)
        compare_review(item, result, key=f"review.{key}.compare.live")
        return
    kept = None
    with ctx.guard("showing the matches the submitter saw"):
        kept = review.stored_evidence(item)
    if kept is not None:
        st.caption("The matches the submitter saw when they sent this sighting.")
        match_explorer(kept[0], kept[1], key=f"review.{key}.explore", default_identity=default_identity)
        compare_review(item, kept[0], key=f"review.{key}.compare")
    else:
        st.caption("This sighting was sent without a search, so there are no matches to show yet.")
    if st.button(
        "Search again against today's gallery",
        icon=":material/refresh:",
        key=f"review.{key}.again",
        help="Compares the photo with every photo the gallery holds now (this takes a while on a laptop).",
    ):
        _search_again(item)
        st.rerun()


def _search_again(item: ReviewItem) -> None:
    key = item.detail.sighting.id
    found = with_progress("searching the gallery", lambda progress: review.search_again(ctx.app(), item, progress))
    if found is not None:
        st.session_state.setdefault(SEARCHES, {})[key] = found


def _vote(sighting_id: int, decision: str, individual_id: int | None, comment: str, label: str) -> None:
    user = ctx.require()
    settled = ctx.attempt(
        "recording your vote", lambda: review.vote(ctx.app(), user, sighting_id, decision, individual_id, comment)
    )
    if settled is not None:
        what = f"encounter of sighting #{sighting_id} ({settled.photos} photos)" if settled.photos > 1 else ""
        text = f"Your vote on {what or f'sighting #{sighting_id}'} ({label}) is recorded."
        if settled.outcome.applied:
            photos = "its photos" if settled.photos > 1 else "the photo"
            text += f" That decided it: {photos} joined **{md(settled.code)}**."
        elif settled.outcome.status == "conflict":
            text += " The votes disagree, so an admin will decide."
        st.session_state[FLASH] = ("ok", text)
        st.session_state.get(SEARCHES, {}).pop(sighting_id, None)
        st.rerun()


def _vote_buttons(item: ReviewItem, key: str, choices: list[tuple[int, str]] | None = None) -> None:
    """``choices``: (individual id, label) best first; by default the sighting's own candidates."""
    detail, codes = item.detail, item.codes
    sighting_id = detail.sighting.id
    assert sighting_id is not None
    if choices is None:
        choices = [(c.individual_id, codes.get(c.individual_id, c.code)) for c in detail.candidates]
    st.markdown("**Your vote**")
    comment = st.text_input("Comment (optional)", key=f"{key}.comment", max_chars=2000)
    for i, (individual_id, label) in enumerate(choices[:5]):
        if st.button(
            f"Same as {md(label)}",
            key=f"{key}.same.{i + 1}",
            shortcut=SHORTCUT_KEYS[i],
            type="primary" if i == 0 else "secondary",
            width="stretch",
            help=f"Shortcut: {SHORTCUT_KEYS[i]}",
        ):
            _vote(sighting_id, "same", individual_id, comment, f"same as {label}")
    new_col, unsure_col = st.columns(2)
    if new_col.button("New individual", key=f"{key}.new", shortcut="N", width="stretch", help="Shortcut: N"):
        _vote(sighting_id, "new", None, comment, "new individual")
    if unsure_col.button("Unsure", key=f"{key}.unsure", shortcut="U", width="stretch", help="Shortcut: U"):
        _vote(sighting_id, "unsure", None, comment, "unsure")
    with st.expander("It is another individual"):
        others = browse.active_individuals(ctx.app())
        choice = st.selectbox(
            "Individual",
            [row.id for row in others],
            index=None,
            format_func=lambda i: next(r.label for r in others if r.id == i),
            placeholder="Choose by code or name",
            key=f"{key}.other",
        )
        if st.button("Vote for this individual", key=f"{key}.othervote", disabled=choice is None):
            label = next(r.code for r in others if r.id == choice)
            _vote(sighting_id, "same", choice, comment, f"same as {label}")


def _admin_decision(item: ReviewItem, key: str) -> None:
    """Admins settle a conflict (or any open sighting) directly; the decision changes the gallery at once."""
    user = ctx.require("admin")
    detail = item.detail
    sighting_id = detail.sighting.id
    assert sighting_id is not None
    with st.expander("Decide now (admin)", expanded=detail.sighting.status == "conflict"):
        active = browse.active_individuals(ctx.app())
        options: list[tuple[str, int | None]] = [("same", row.id) for row in active] + [("new", None)]
        labels = {row.id: row.label for row in active}
        default = next(
            (
                i
                for i, (_, ident) in enumerate(options)
                if detail.candidates and ident == detail.candidates[0].individual_id
            ),
            0,
        )
        choice = st.selectbox(
            "Decision",
            options,
            index=default,
            format_func=lambda o: f"Same as {labels.get(o[1], o[1])}" if o[0] == "same" else "A new individual",
            key=f"{key}.decision",
        )
        if st.button("Decide", key=f"{key}.decide", type="primary"):
            settled = ctx.attempt(
                "deciding the sighting", lambda: review.decide(ctx.app(), user, sighting_id, choice[0], choice[1])
            )
            if settled is not None:
                st.session_state[FLASH] = (
                    "ok",
                    f"Sighting #{sighting_id} decided: the photo joined **{md(settled.code)}**.",
                )
                st.rerun()


def _evidence_llr(value: float | None) -> str:
    return evidence_text(value)  # the same words as Identify's


def _encounter(found: EncounterReview, *, can_vote: bool, admin: bool) -> None:
    """An encounter of several photos: the combined ranking, one vote for all photos, each photo's evidence."""
    encounter, first = found.encounter, found.items[0]
    key = f"review.{first.detail.sighting.id}"
    when = encounter.taken_at.strftime("%d %b %Y") if encounter.taken_at else "date unknown"
    facts = [f"Encounter #{encounter.id}", f"{len(found.items)} photos", f"seen {when}"]
    facts += [
        f"{label}: {value}"
        for label, value in (
            ("site", found.site),
            ("observer", encounter.observer),
            ("species", encounter.species),
            ("tags", ", ".join(encounter.tag_list)),
        )
        if value
    ]
    st.caption(" · ".join(md(fact) for fact in facts))
    if encounter.notes:
        st.text(f"Notes: {encounter.notes}")  # a volunteer's text: plain
    left, right = st.columns([3, 2], gap="medium")
    sides = [item.detail.sighting.side for item in found.items]
    with left:
        st.markdown("**Combined ranking the submitter saw** (every photo compared with the same side)")
        combined = found.combined
        if combined is None or not combined.rows:
            st.caption("Sent without a combined search: see each photo's candidates below.")
        else:
            st.dataframe(
                [
                    {
                        "Individual": found.codes.get(r.individual_id, "?"),
                        "Probability": percent(r.probability),
                        "Evidence (all photos)": _evidence_llr(r.log_likelihood_ratio),
                    }
                    | {f"Photo {i + 1} ({sides[i]})": _evidence_llr(v) for i, v in enumerate(r.per_photo[: len(sides)])}
                    for r in combined.rows
                ],
                hide_index=True,
                width="stretch",
            )
            st.caption(
                f"New individual: {percent(combined.new_individual_probability)}. Evidence is the log-likelihood "
                "ratio against a new individual: the photos' evidence adds up."
            )
    with right:
        if can_vote:
            choices = [
                (r.individual_id, found.codes.get(r.individual_id, "?"))
                for r in (found.combined.rows if found.combined else [])
            ]
            _vote_buttons(first, key, choices or None)
            st.caption("Your vote applies to every photo of this encounter.")
    st.session_state.setdefault(EVIDENCE, True)
    show = st.toggle("Show the matched points", key=EVIDENCE)
    for tab, item in zip(st.tabs([f"Photo {i + 1}: {side}" for i, side in enumerate(sides)]), found.items, strict=True):
        with tab:
            _summary(item, None)
            if show:
                _evidence(
                    item,
                    found.code(found.combined.rows[0].individual_id)
                    if found.combined and found.combined.rows
                    else None,
                )
    if admin and any(item.detail.sighting.status in ("pending", "conflict") for item in found.items):
        _admin_decision(first, key)


def _sighting(sighting_id: int, *, can_vote: bool, admin: bool) -> None:
    found = review.encounter_review(ctx.app(), sighting_id)
    if found is not None:
        _encounter(found, can_vote=can_vote, admin=admin)
        return
    item = review.item(ctx.app(), sighting_id)
    detail, codes = item.detail, item.codes
    key = f"review.{sighting_id}"
    _summary(item, (lambda: _vote_buttons(item, key)) if can_vote else None)
    proposal = next((v for v in detail.votes if v.user_id == detail.sighting.submitted_by), None)
    default_code = None
    if proposal is not None and proposal.individual_id is not None:
        default_code = codes.get(proposal.individual_id, "").split(" ")[0] or None
    elif detail.candidates:
        default_code = codes.get(detail.candidates[0].individual_id, "").split(" ")[0] or None
    st.session_state.setdefault(EVIDENCE, True)  # on by default; a reviewer on a slow line can turn it off
    if st.toggle("Show the matched points", key=EVIDENCE):
        st.subheader("Evidence")
        _evidence(item, default_code)
    if admin and detail.sighting.status in ("pending", "conflict"):
        _admin_decision(item, key)


def _queue(user) -> None:
    queue = review.queue(ctx.app(), user)
    if not queue:
        st.success("Nothing is waiting for your vote. Thank you!", icon=":material/celebration:")
        return
    position = min(int(st.session_state.get(POSITION, 0)), len(queue) - 1)
    nav_prev, label, nav_next = st.columns([1, 3, 1], vertical_alignment="center")
    if nav_prev.button(
        "Previous",
        icon=":material/arrow_back:",
        key="review.prev",
        shortcut="K",
        disabled=position == 0,
        width="stretch",
    ):
        position -= 1
    if nav_next.button(
        "Next",
        icon=":material/arrow_forward:",
        icon_position="right",
        key="review.next",
        shortcut="J",
        disabled=position >= len(queue) - 1,
        width="stretch",
    ):
        position += 1
    st.session_state[POSITION] = position
    label.markdown(
        f"<div style='text-align:center'>Sighting <b>{position + 1}</b> of <b>{len(queue)}</b> waiting for you "
        "(oldest first)</div>",
        unsafe_allow_html=True,
    )
    _sighting(queue[position], can_vote=True, admin=user.role == "admin")


def _conflicts(user) -> None:
    conflicts = review.conflicts(ctx.app())
    if not conflicts:
        st.success("No conflicts.", icon=":material/celebration:")
        return
    chosen = st.selectbox(
        "Conflict",
        conflicts,
        format_func=lambda i: f"Sighting #{i}",
        key="review.conflict",
    )
    voted = any(v.user_id == user.id for v in review.item(ctx.app(), chosen).detail.votes)
    _sighting(chosen, can_vote=not voted, admin=True)


def _decided() -> None:
    rows = dashboard.decided_sightings(ctx.app())
    if not rows:
        st.caption("No sighting has been decided yet.")
        return
    st.caption("Click a row to open the sighting with its photo, votes and evidence.")
    event = st.dataframe(
        [
            {
                "Sighting": f"#{r.id}",
                "Submitted": r.created_at,
                "By": r.submitted_by,
                "Decision": r.decision,
                "Individual": r.code or "",
                "Votes": r.votes,
            }
            for r in rows
        ],
        hide_index=True,
        column_config={"Submitted": st.column_config.DatetimeColumn(format="D MMM YYYY, HH:mm")},
        on_select="rerun",
        selection_mode="single-row",
        key="review.decided",
    )
    picked = [rows[i].id for i in event.selection.rows if i < len(rows)]
    if picked:
        st.subheader(f"Sighting #{picked[0]}")
        _sighting(picked[0], can_vote=False, admin=False)


def main() -> None:
    user = ctx.require()
    st.title("Review sightings")
    _flash()
    counts = dashboard.counts(ctx.app(), user)
    cols = st.columns(3)
    cols[0].metric("Waiting for your vote", counts.waiting_for_me, border=True)
    cols[1].metric("Pending in total", counts.pending, border=True)
    cols[2].metric("Conflicts (admin decides)", counts.conflict, border=True)
    st.caption("Shortcuts: 1–5 same as candidate · N new individual · U unsure · J next · K previous")
    views = {"queue": "Waiting for you", "decided": "Recently decided"}
    if user.role == "admin":
        views = {"queue": "Waiting for you", "conflicts": "Conflicts", "decided": "Recently decided"}
    view = st.segmented_control(
        "Show",
        list(views),
        default="queue",
        format_func=views.get,
        key="review.view",
        required=True,
        label_visibility="collapsed",
    )
    if view == "conflicts":
        _conflicts(user)
    elif view == "decided":
        _decided()
    else:
        _queue(user)


main()
