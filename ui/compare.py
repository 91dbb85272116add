"""The "Compare at full resolution" expander of Identify and Review: query and one candidate side by side,
zoomed and panned together (``core.viz.compare``). Built only when asked for: decoding two full photos takes a
moment, and most searches are settled from the match explorer above it."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.service import compare
from core.service.compare import QueryPhoto
from core.service.evidence import Evidence
from core.service.identify import SearchResult, Upload
from core.service.review import ReviewItem
from ui import context as ctx
from ui.components import md


def compare_view(
    result: SearchResult | Evidence,
    query: QueryPhoto,
    *,
    key: str,
    label_for: Callable[[str], str] | None = None,
) -> None:
    """An expander with a candidate picker and the linked side-by-side figure."""
    options = [c.identity for c in result.candidates]
    if not options:
        return
    with st.expander("Compare side by side at full resolution", icon=":material/compare:"):
        identity = st.selectbox(
            "Candidate", options, key=f"{key}.who", format_func=lambda i: md(label_for(i) if label_for else i)
        )
        if not identity or not st.toggle("Show the comparison", key=f"{key}.show"):
            st.caption("Both photos at full resolution; zoom in one (drag a box, or scroll) and the other follows.")
            return
        matches = result.photo_matches(identity)  # only now: a candidate off the shortlist is matched on demand
        if not matches:
            st.caption(f"{md(identity)} has no photo in the gallery to compare with.")
            return
        index = 0
        if len(matches) > 1:
            index = st.selectbox(
                f"Photo of {md(identity)}",
                range(len(matches)),
                format_func=lambda i: f"Photo {i + 1} of {len(matches)} · {matches[i].match.n_matches} matches",
                key=f"{key}.photo",
            )
        figure = None
        with ctx.guard("drawing the comparison"):
            figure = compare.figure(ctx.app(), query, result.query_size, identity, matches[int(index)])
        if figure is not None:
            st.plotly_chart(figure, key=f"{key}.figure", config={"scrollZoom": True, "displaylogo": False})
            st.caption(
                "The numbered points are the same matches on both photos (green: confident, red: unsure); the "
                "candidate is scaled and shifted so that they line up. Double-click to zoom out."
            )


def compare_review(item: ReviewItem, result: SearchResult | Evidence, *, key: str) -> None:
    """Review's compare view: the sighting's photo against a candidate of the stored or repeated search."""
    photo = item.detail.photo
    query = compare.stored_query(ctx.app(), photo.id, item.photo_path, photo.crop, photo.rotation)
    compare_view(result, query, key=key)


def compare_upload(result: SearchResult, upload: Upload, *, key: str, label_for: Callable[[str], str]) -> None:
    """Identify's compare view: the uploaded photo, framed as it was searched, against a candidate."""
    query = compare.uploaded_query(upload.name, upload.data, result.crop, result.rotation, upload.info.taken_at, None)
    compare_view(result, query, key=key, label_for=label_for)
