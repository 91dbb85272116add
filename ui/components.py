"""Widgets shared by several pages: photos, candidate cards, the match explorer (overlay + CDF)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import streamlit as st

from core.errors import ScuteError
from core.progress import StageProgress
from core.service import identify
from core.service.evidence import Evidence
from core.service.identify import SearchResult
from core.viz import charts, overlay, pictures
from ui.context import app, guard

T = TypeVar("T")

CARD_WIDTH = 164  # two cards (plus the 1 rem gap) fit a 390 px phone screen
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md(text: object) -> str:
    """Escape user-typed text (names, notes, comments) so Markdown shows it literally, never as markup."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def percent(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    if 0 < value < 0.01:
        return "<1 %"
    if 0.99 < value < 1:
        return ">99 %"
    return f"{value:.0%}".replace("%", " %")


@st.cache_data(show_spinner=False, max_entries=1024)
def photo_image(path: str, crop: tuple[float, float, float, float] | None, rotation: int, max_side: int) -> np.ndarray:
    """A stored photo, cropped and turned as the engine sees it, small enough for a card."""
    pixels = pictures.thumbnail(Path(path), max_side * (2 if crop else 1))
    if crop is not None or rotation % 360:
        pixels = pictures.crop_and_rotate(pixels, crop, rotation)
    return pixels


@st.cache_data(show_spinner=False, max_entries=256)
def gallery_working_image(
    path: str, crop: tuple[float, float, float, float] | None, rotation: int, size: tuple[int, int]
) -> np.ndarray:
    """A gallery photo in the frame its keypoints live in (cached: the overlay redraws on every slider move)."""
    return pictures.working_frame(Path(path), crop, rotation, size)


#: What the bar says in each stage of a search (core.service.identify.search_index).
SEARCH_STAGES = {
    "gallery": "Preparing the gallery after a change (finding the keypoints of its new photos, once): "
    "photo {done} of {total}",
    "features": "Finding the keypoints of your photo…",
    "matching": "Comparing with the best-voted gallery photos: pair {done} of {total}",
    "widening": "No candidate is clear yet, so comparing with more gallery photos: pair {done} of {total}",
}


def with_progress(what: str, search: Callable[[StageProgress], T]) -> T | None:
    """Run a search under a status box whose bar follows each stage of the work; None after a failure."""
    result: T | None = None
    with st.status("Comparing with the gallery…", expanded=True) as status:
        st.caption(
            "Keep this page open until the search finishes: it runs for this page and stops if you leave. "
            "Your photos stay in the list either way."
        )
        bar = st.progress(0.0, text="Starting…")

        def stage_progress(stage: str, done: int, total: int) -> None:
            text = SEARCH_STAGES.get(stage, stage).format(done=done, total=total)
            bar.progress(min(1.0, done / max(1, total)), text=text)

        ok = False
        with guard(what):
            result = search(stage_progress)
            bar.progress(1.0, text="Matched")
            ok = True
        if ok:
            status.update(label="Search finished", state="complete", expanded=False)
        else:
            status.update(label="The search could not be finished", state="error", expanded=True)
    gallery_update_notice()
    return result


def gallery_update_notice() -> None:
    """Say when a search used the gallery as it was before a recent change (it is updated in the background)."""
    deployment = app()
    if deployment.gallery_updating:
        st.info(
            "The gallery is updating after a recent change (an import, a decision or a merge); this search used "
            "the previous version. Search again in a moment to include the newest photos.",
            icon=":material/sync:",
        )
    elif deployment.gallery_update_error:
        st.warning(
            "Updating the gallery after the last change failed, so searches use the version before it: "
            f"{deployment.gallery_update_error}. An admin can run `python -m core check`.",
            icon=":material/warning:",
        )


def run_search(
    source: bytes | Path,
    sha256: str,
    *,
    crop: tuple[float, float, float, float] | None,
    rotation: int,
    side: str,
    individuals: set[int] | None = None,
) -> SearchResult | None:
    """Prepare the gallery (only after it changed) and search (only among ``individuals`` when given: the species
    and region of ui.places.search_scope), with a progress display; None on failure."""
    return with_progress(
        "searching the gallery",
        lambda progress: identify.find(
            app(), source, sha256, crop=crop, rotation=rotation, side=side, progress=progress, individuals=individuals
        ),
    )


@st.cache_data(show_spinner=False, max_entries=512)
def card_image(path: str, crop: tuple[float, float, float, float] | None, rotation: int) -> np.ndarray:
    """A 4:3 tile of a gallery photo, so the cards of a row line up."""
    return pictures.cover(photo_image(path, crop, rotation, 480))


@st.cache_data(show_spinner=False, max_entries=4096)
def thumbnail_uri(path: str, crop: tuple[float, float, float, float] | None, rotation: int) -> str:
    """A 4:3 thumbnail of a stored photo as a data address, for the image column of a table."""
    return pictures.data_uri(pictures.cover(photo_image(path, crop, rotation, 120)))


def candidate_cards(result: SearchResult | Evidence) -> None:
    """The top candidates as cards (photo, code, name, probability, matches) and a 'new individual' card."""
    # Fixed-width cards in a wrapping row: one line on a laptop, two per line on a phone.
    row = st.container(horizontal=True, gap="small", wrap=True)
    for rank, c in enumerate(result.candidates, start=1):
        with row.container(border=True, width=CARD_WIDTH):
            st.image(card_image(str(c.photo.path), c.photo.crop, c.photo.rotation), width="stretch")
            st.markdown(f"**{rank}. {md(c.identity)}**  \n{md(c.name) if c.name else '&nbsp;'}")
            st.metric("Probability", percent(c.probability), label_visibility="collapsed")
            st.caption(f"{c.matches} matches · {c.strong_matches} strong")
    with row.container(border=True, width=CARD_WIDTH):
        st.image(pictures.placeholder(480, 360, "?"), width="stretch")
        st.markdown("**New individual**  \nnot in the gallery")
        st.metric("Probability", percent(result.new_individual_probability), label_visibility="collapsed")
        st.caption("none of these is convincing")


def match_explorer(
    result: SearchResult | Evidence,
    query_image: np.ndarray,
    *,
    key: str,
    default_identity: str | None = None,
    label_for: Callable[[str], str] | None = None,
) -> None:
    """Why Scute thinks so: pick a candidate and one of its photos, see the matches and the CDF.

    ``result`` is a live search or the evidence stored with a sighting (``core.service.evidence``).
    """
    label_for = label_for or (lambda ident: ident)
    options = [c.identity for c in result.candidates]
    if default_identity and default_identity not in options and result.candidate(default_identity):
        options.append(default_identity)
    if not options:
        st.info("There is no candidate to look at.")
        return
    identity = st.segmented_control(
        "Look closer at",
        options,
        default=default_identity if default_identity in options else options[0],
        format_func=lambda ident: md(label_for(ident)),  # option labels render Markdown
        key=f"{key}.identity",
        required=True,
    )
    identity = identity or options[0]
    matches = result.photo_matches(identity)
    candidate = result.candidate(identity)
    if not matches:
        st.info(f"{md(identity)} has no photo in the gallery to compare with.")
        return
    photo_col, threshold_col = st.columns(2, gap="medium")
    with photo_col:
        choice = 0
        if len(matches) > 1:
            choice = st.selectbox(
                f"Photo of {md(identity)}",
                range(len(matches)),
                format_func=lambda i: (
                    f"Photo {i + 1} of {len(matches)}{' (best)' if i == 0 else ''} · "
                    f"{matches[i].match.n_matches} matches"
                ),
                key=f"{key}.{identity}.photo",
            )
        else:
            st.caption(f"{md(identity)} has one photo to compare with.")
        options = st.container(horizontal=True, gap="medium")
        strongest = options.toggle(
            f"Only the strongest {STRONGEST}",
            value=True,
            key=f"{key}.strongest",
            help="Fewer lines are easier to follow; turn off to see every match above the confidence below.",
        )
        zoom = options.toggle(
            "Zoom to the matched region",
            value=False,
            key=f"{key}.zoom",
            help="Cut both photos to where the drawn matches are.",
        )
    chosen = matches[int(choice)]
    with threshold_col:
        threshold = st.slider(
            "Show matches with confidence of at least",
            0.0,
            1.0,
            0.5,
            0.05,
            key=f"{key}.threshold",
            help="Each line joins the same point on both photos; green lines are the most confident.",
        )
    with guard("drawing the matches"):
        gallery = gallery_working_image(
            str(chosen.photo.path), chosen.photo.crop, chosen.photo.rotation, chosen.image_size
        )
        drawn = {
            layout: overlay.match_overlay(
                query_image,
                gallery,
                chosen.match,
                query_size=result.query_size,
                gallery_size=chosen.image_size,
                threshold=threshold,
                height=560,
                width=720,
                layout=layout,
                max_lines=STRONGEST if strongest else 200,
                zoom=zoom,
                legend=True,
            )
            for layout in ("side", "stacked")
        }
        turned = (
            f" Your photo matched best turned {chosen.match.turn}° clockwise: it may be sideways or upside down "
            "(the rotation control above fixes that for the gallery)."
            if chosen.match.turn
            else ""
        )
        shared = (
            f" {chosen.match.shared_exposure} exact matches are not drawn or counted: the two photos look cut from one "
            "frame (they share background, not markings)."
            if chosen.match.shared_exposure
            else ""
        )
        edges = (
            f" {chosen.match.outside_frame} matches near the edge of either photo are not drawn or counted: only the "
            "middle, where the animal is framed, is compared (crop the photo around the animal)."
            if chosen.match.outside_frame
            else ""
        )
        where = {"side": "(left)", "stacked": "(top)"}
        other = {"side": "(right)", "stacked": "(below)"}
        # Both pictures are sent; the page's width picks one (two photos side by side are tiny on a phone).
        narrow_screen_css()
        for layout, picture in drawn.items():
            with st.container(key=f"overlay-{layout}-{key}".replace(".", "-")):
                st.image(
                    picture.image,
                    caption=(
                        f"Your photo {where[layout]} and {md(label_for(identity))} {other[layout]}: "
                        f"{picture.shown} of {picture.total} matches shown"
                        + (f" (the strongest {STRONGEST})" if strongest and picture.shown == STRONGEST else "")
                        + f". Each line joins the same point on both photos.{turned}{shared}{edges}"
                    ),
                    width="stretch",
                )
    text_col, chart_col = st.columns([2, 3], gap="medium")
    null_mean, _ = result.null_stats(chosen.photo)
    threshold_strong = result.strong_confidence
    strong = int(np.count_nonzero(chosen.match.confidence >= threshold_strong))
    probability = candidate.probability if candidate is not None else None
    with text_col:
        st.markdown("**What the numbers say**")
        st.markdown(
            md(
                charts.plain_sentence(
                    label_for(identity),
                    method=result.method,
                    z=chosen.z,
                    probability=probability,
                    matches=chosen.match.n_matches,
                    strong_matches=strong,
                    null_mean=null_mean,
                )
            )
        )
        st.caption(
            "The chart shows how confident the matches are. A true match keeps its curve low and to the right "
            "of the grey dashed line (pairs of different animals); a wrong candidate follows that line."
        )
        with st.expander("Details", icon=":material/query_stats:"):
            st.markdown(
                md(
                    charts.score_sentence(
                        label_for(identity),
                        method=result.method,
                        z=chosen.z,
                        probability=probability,
                        matches=chosen.match.n_matches,
                        strong_matches=strong,
                        null_mean=null_mean,
                        threshold=threshold_strong,
                    )
                )
            )
            st.caption(
                f"Scoring: {md(result.method)}; a match counts as strong from confidence {threshold_strong:.2f}. "
                "Standard deviations are counted from the scores of this photo against other individuals."
            )
    with chart_col:
        others = [
            charts.Curve(label_for(c.identity), c.confidences) for c in result.candidates if c.identity != identity
        ][:4]
        figure = charts.cdf_figure(
            charts.Curve(label_for(identity), chosen.match.confidence),
            result.null_confidences,
            others,
            threshold=threshold_strong,
        )
        st.plotly_chart(figure, key=f"{key}.cdf", config={"displayModeBar": False})


#: Lines the match overlay shows by default.
STRONGEST = 30
#: Below this page width the overlay's photos are stacked instead of side by side.
NARROW_PX = 640


def narrow_screen_css() -> None:
    """Show each overlay's stacked picture on narrow screens and its side-by-side picture on wide ones."""
    st.html(
        "<style>"
        f"@media (max-width: {NARROW_PX}px) {{ [class*='st-key-overlay-side-'] {{ display: none; }} }}"
        f"@media (min-width: {NARROW_PX + 1}px) {{ [class*='st-key-overlay-stacked-'] {{ display: none; }} }}"
        "</style>"
    )


def show_scute_error(exc: ScuteError) -> None:
    st.error(str(exc), icon=":material/warning:")


def who_is_it(
    inputs: list, individuals: list, new_probability: float | None, key: str, help: str | None = None
) -> tuple[tuple[str, int | None], int | None]:
    """The "Who is it?" choice of Identify's forms (one photo or an encounter), pre-selected from the evidence,
    and the individual picked when the answer is "another individual"; call it inside the form."""
    codes = {row.id: row.label for row in individuals}
    probabilities = {c.individual_id: c.probability for c in inputs}
    options: list[tuple[str, int | None]] = [("same", c.individual_id) for c in inputs]
    if individuals:
        options.append(("other", None))
    options += [("new", None), ("unsure", None)]
    suggested = identify.suggested_proposal(inputs, new_probability)
    choice = st.radio(
        "Who is it?",
        options,
        index=options.index(suggested) if suggested in options else len(options) - 1,
        format_func=lambda option: proposal_label(option, codes, probabilities, new_probability),
        key=f"{key}.choice",
        help=help,
    )
    other = None
    if individuals:
        other = st.selectbox(
            "If another individual: which one?",
            [row.id for row in individuals],
            index=None,
            format_func=lambda i: codes.get(i, str(i)),
            placeholder="Choose by code or name",
            key=f"{key}.other",
        )
    return choice, other


def proposal_label(
    option: tuple[str, int | None], codes: dict, probabilities: dict, new_probability: float | None
) -> str:
    """How a proposal choice reads in Identify's forms (one photo or an encounter), with its probability."""
    kind, ident = option
    if kind == "same":
        return f"Same as {md(codes.get(ident, ident))} ({percent(probabilities.get(ident))})"
    if kind == "other":
        return "Another individual I recognise…"
    if kind == "new":
        suffix = f" ({percent(new_probability)})" if new_probability is not None else ""
        return "None of these: a new individual" + suffix
    return "I'm not sure"
