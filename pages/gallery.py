"""Gallery: find an individual by code, name, species or last sighting; see its photos, history and map.

The open individual is kept in the address (``?individual=T-0042``), so a link can be shared.
"""

from __future__ import annotations

from datetime import UTC, datetime

import plotly.graph_objects as go
import streamlit as st

from core.service import browse
from core.service import tags as tag_service
from core.service.browse import Encounter, IndividualRow
from core.service.history import plural
from ui import context as ctx
from ui import places as places_ui
from ui.components import card_image, md, thumbnail_uri
from ui.follow import follow_button

STATUS_LABELS = {"active": "Active", "retired": "Retired", "merged": "Merged"}
SIDE_HEADINGS = {
    "left": "Left side",
    "right": "Right side",
    "top": "Top",
    "other": "Other views",
    "unknown": "Side not recorded",
}


def _filters(rows: list[IndividualRow]) -> list[IndividualRow]:
    text_col, status_col, species_col, region_col, since_col = st.columns([3, 2, 2, 2, 2])
    text = text_col.text_input(
        "Search code, name or tag", key="gallery.search", placeholder="e.g. T-0042, Donatello or a flipper tag"
    )
    statuses = status_col.multiselect(
        "Status", list(STATUS_LABELS), default=["active"], format_func=STATUS_LABELS.get, key="gallery.status"
    )
    species_options = sorted({r.species for r in rows if r.species})
    species = species_col.multiselect(
        "Species", species_options, key="gallery.species", disabled=not species_options, placeholder="All"
    )
    since = since_col.date_input("Seen since", value=None, key="gallery.since", format="DD/MM/YYYY")
    seen_since = datetime.combine(since, datetime.min.time(), tzinfo=UTC) if since else None
    with region_col:
        region = places_ui.region_filter("gallery.region")  # seen at a site of it (ui.places)
    tagged = tag_service.matching(ctx.app(), text)
    only = browse.seen_in(ctx.app(), region) if region else None
    return browse.filter_individuals(
        rows, text, species=species, statuses=statuses, seen_since=seen_since, tagged=tagged, only=only
    )


#: Rows of the list that get a thumbnail (each is a decoded photo the first time): filter to see the others'.
THUMBNAILS = 200
TABLE = "gallery.table"
PICKED = "gallery.picked"
TAG_VALUE = "gallery.tags.value"


def _table(rows: list[IndividualRow]) -> str | None:
    """The individuals as a table with a thumbnail each; clicking a row opens that individual (its code)."""
    store = ctx.app().store
    generation = st.session_state.get(f"{TABLE}.generation", 0)
    # What a phone shows without scrolling sideways comes first; columns nobody filled in are left out.
    columns = ["Photo", "Code", "Name", "Last seen", "Photos", "Status", "Species"]
    columns = [c for c in columns if c not in ("Name", "Species") or any(getattr(r, c.lower()) for r in rows)]
    event = st.dataframe(
        [
            {
                "Photo": thumbnail_uri(str(store.path(r.cover.path)), r.cover.crop, r.cover.rotation)
                if r.cover is not None and i < THUMBNAILS
                else None,
                "Code": r.code,
                "Name": r.name or "",
                "Last seen": f"{r.last_seen:%d %b %Y}" if r.last_seen else "date unknown",
                "Photos": r.photos,
                "Status": STATUS_LABELS.get(r.status, r.status) + (f" → {r.merged_into}" if r.merged_into else ""),
                "Species": r.species,
            }
            for i, r in enumerate(rows)
        ],
        column_order=columns,
        hide_index=True,
        width="stretch",
        row_height=64,
        height=min(460, 40 + 65 * max(1, len(rows))),
        column_config={"Photo": st.column_config.ImageColumn("Photo", width="small")},
        on_select="rerun",
        selection_mode="single-row",
        key=f"{TABLE}.{generation}",
    )
    picked = [rows[i].code for i in event.selection.rows if i < len(rows)]
    if picked != st.session_state.get(PICKED, []):  # the volunteer clicked a row (or cleared it)
        st.session_state[PICKED] = picked
        if picked:
            st.query_params["individual"] = picked[0]
        else:
            st.query_params.pop("individual", None)
    return picked[0] if picked else None


def _close() -> None:
    """Back to the list: forget the open individual and the table's selection."""
    st.query_params.pop("individual", None)
    st.session_state[PICKED] = []
    st.session_state[f"{TABLE}.generation"] = st.session_state.get(f"{TABLE}.generation", 0) + 1


def _day(when: datetime | None) -> str:
    return f"{when:%d %b %Y}" if when is not None else "date unknown"


def _timeline(encounters: list[Encounter]) -> go.Figure:
    dated = [e for e in encounters if e.when is not None]
    fig = go.Figure(
        go.Scatter(
            x=[e.when for e in dated],
            y=[e.side for e in dated],
            mode="markers",
            marker={"size": 14, "color": ["#0f766e" if e.in_gallery else "#9ca3af" for e in dated]},
            text=[f"photo {e.photo_id} · {e.source} · date from the {e.dated_by}" for e in dated],
            hovertemplate="%{x|%d %b %Y}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        height=220,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        yaxis={"title": "side", "type": "category"},
        xaxis={"title": "date"},
        template="plotly_white",
    )
    return fig


def _tags(individual_id: int, code: str, merged: bool) -> None:
    """Flipper and PIT tags and other catalogues' ids; reviewers and admins add and remove them."""
    rows = tag_service.tags_of(ctx.app(), individual_id)
    if rows:
        st.markdown("**Tags:** " + " · ".join(f"{md(r.label)} `{md(r.value)}`" for r in rows))
    user = ctx.current_user()
    if merged or user is None or not tag_service.can_edit(user.role):
        return
    with st.expander(f"Tags and alternate ids of {md(code)}", expanded=False):
        with st.form("gallery.tags.add", border=False):  # a refused tag stays typed, to be corrected
            kind_col, value_col = st.columns([1, 2])
            kind = kind_col.selectbox(
                "Kind", tag_service.TAG_KINDS, format_func=tag_service.KIND_LABELS.get, key="gallery.tags.kind"
            )
            value = value_col.text_input("Number or id", max_chars=128, placeholder="e.g. AB1234", key=TAG_VALUE)
            added = st.form_submit_button("Add tag", icon=":material/sell:", key="gallery.tags.add") and ctx.attempt(
                "adding the tag", lambda: tag_service.add(ctx.app(), user, individual_id, kind, value)
            )
        if added:
            st.session_state.pop(TAG_VALUE, None)
            st.rerun()
        if rows:
            picked = st.selectbox(
                "Remove a tag", rows, format_func=lambda r: f"{r.label} {r.value}", key="gallery.tags.pick"
            )
            if st.button("Remove tag", icon=":material/delete:", key="gallery.tags.remove") and picked is not None:
                removed = ctx.attempt(
                    "removing the tag",
                    lambda: tag_service.remove(ctx.app(), user, individual_id, picked.kind, picked.value),
                )
                if removed:
                    st.rerun()


def _individual(individual_id: int) -> None:
    user = ctx.current_user()
    page = browse.individual_page(ctx.app(), individual_id, user.role if user is not None else "volunteer")
    if page is None:
        st.warning("That individual no longer exists.")
        return
    individual, encounters, photos, history = page.individual, page.encounters, page.photos, page.history
    title = md(individual.code) + (f" · {md(individual.name)}" if individual.name else "")
    st.header(title, divider="gray")
    status_colour = {"active": "green", "retired": "gray", "merged": "orange"}.get(individual.status, "gray")
    st.badge(STATUS_LABELS.get(individual.status, individual.status), color=status_colour)
    follow_button(individual.id, individual.code, individual.status == "merged")  # type: ignore[arg-type]
    if page.merged_into is not None:
        st.info(f"{md(individual.code)} was merged into {md(page.merged_into)}; its photos are there now.")
    in_gallery = [e for e in encounters if e.in_gallery]
    dated = [e for e in encounters if e.when is not None]
    cols = st.columns(3)
    cols[0].metric("Photos in the gallery", len(in_gallery), border=True)
    cols[1].metric("First seen", _day(dated[0].when) if dated else "date unknown", border=True)
    cols[2].metric("Last seen", _day(dated[-1].when) if dated else "date unknown", border=True)
    if len(dated) < len(encounters):
        undated = len(encounters) - len(dated)
        st.caption(
            f"{plural(undated, 'photo')} of {md(individual.code)} {'has' if undated == 1 else 'have'} no date "
            "(no date in the photo, none given when it was sent or imported), so "
            f"{'it is' if undated == 1 else 'they are'} not on the timeline."
        )
    if individual.species:
        st.caption(f"Species: {md(individual.species)}")
    if individual.notes:
        st.markdown(f"**Notes:** {md(individual.notes)}")
    _tags(individual.id, individual.code, individual.status == "merged")  # type: ignore[arg-type]

    st.subheader("Photos")
    store = ctx.app().store
    sources = {e.photo_id: e for e in encounters}
    by_side: dict[str, list] = {}
    for photo in photos:
        by_side.setdefault(photo.side, []).append(photo)
    if not photos:
        st.caption("No photos.")
    for side, side_photos in by_side.items():
        st.markdown(f"**{SIDE_HEADINGS.get(side, side)}** ({len(side_photos)})")
        images, captions = [], []
        for photo in side_photos:
            images.append(card_image(str(store.path(photo.path)), photo.crop, photo.rotation))
            encounter = sources.get(photo.id)  # type: ignore[arg-type]
            when = _day(encounter.when) if encounter else "date unknown"
            origin = encounter.source if encounter else ""
            flag = "" if photo.in_gallery else " · removed from search"
            captions.append(f"photo {photo.id} · {when} · {md(origin)}{flag}")
        st.image(images, caption=captions, width=220)

    st.subheader("History")
    if dated:
        st.plotly_chart(_timeline(encounters), key="gallery.timeline", config={"displayModeBar": False})
    located = [e for e in encounters if e.latitude is not None and e.longitude is not None]
    if located:
        st.map({"lat": [e.latitude for e in located], "lon": [e.longitude for e in located]}, zoom=9, height=320)
        if user is None or user.role not in browse.PRECISE_POSITION_ROLES:
            step = ctx.app().settings.volunteer_position_degrees
            st.caption(
                f"Positions are rounded to {step:g}° (about {step * 111:.0f} km) for volunteers, to protect where the "
                "animals live; reviewers and admins see them as recorded."
            )
    else:
        st.caption("No photo of this individual carries a GPS position, so there is no map.")
    if history:
        with st.expander(f"Changes to {md(individual.code)} ({len(history)})"):
            st.dataframe(
                [{"When": h.when, "Who": h.user, "What happened": h.summary} for h in history],
                hide_index=True,
                width="stretch",
                column_config={
                    "When": st.column_config.DatetimeColumn(format="D MMM YYYY, HH:mm"),
                    "What happened": st.column_config.TextColumn(width="large"),
                },
            )


def main() -> None:
    ctx.require()
    st.title("Gallery")
    rows = browse.all_individuals(ctx.app(), include_merged=True)
    if not rows:
        st.info("The gallery is empty. Admins can import a catalogue on the Curate page.")
        return
    by_code = {r.code: r for r in rows}
    requested = st.query_params.get("individual")
    if requested in by_code:
        back = st.container(horizontal=True, vertical_alignment="center")
        if back.button("All individuals", icon=":material/arrow_back:", key="gallery.back", type="tertiary"):
            _close()
            st.rerun()
        back.caption("The address of this page opens this individual: share it.")
        _individual(by_code[requested].id)
        return
    if requested:
        st.warning(f"There is no individual {md(requested)}; here are all of them.")
        st.query_params.pop("individual", None)
    shown = _filters(rows)
    st.caption(f"{len(shown)} of {len(rows)} individuals · click a row to see its photos and history")
    if _table(shown) is not None:
        st.rerun()  # the address now names the individual: show it


main()
