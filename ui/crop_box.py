"""The volunteer's crop: a box dragged on the photo, or two range sliders where the box cannot be used.

The box is the ``streamlit-cropper`` component (a maintained canvas with handles that works with the mouse
and with touch). It is drawn on the photo *before* it is turned, because that is what a crop means
(``core.engine.images.crop_and_rotate`` crops first, then turns), so a crop keeps its meaning whatever
rotation the volunteer picks afterwards. The component's own ``st_cropper`` sends the photo as a PNG on
every rerun of the page; the component is given a small JPEG instead (about a tenth of the bytes, which
matters on a phone). Narrow columns zoom the canvas out so it fits a 390 px phone screen.
"""

from __future__ import annotations

import re

import numpy as np
import streamlit as st
from PIL import Image

from core.viz import pictures

try:  # the component declared by streamlit-cropper (its frontend ships in the wheel: nothing is downloaded)
    from streamlit_cropper import _component_func as _cropper
except ImportError:  # without the package the sliders still do the job
    _cropper = None

Crop = tuple[float, float, float, float]

FULL: Crop = (0.0, 0.0, 1.0, 1.0)
#: The canvas is at most this wide and high (CSS pixels); narrower columns zoom it out.
CANVAS_W, CANVAS_H = 520, 440
#: Zoom levels tried, largest first, so the canvas fits the column it is in.
ZOOMS = tuple(round(z, 2) for z in np.arange(0.95, 0.39, -0.05))
STROKE = 3  # thick enough to stay a clear yellow line when a phone zooms the canvas out
BOX_COLOUR = "#facc15"  # the crop colour of pictures.crop_preview
MIN_SPAN = 0.05  # a crop keeps at least 5 % of the photo in each direction
SNAP = 0.01  # an edge within 1 % of the photo's border is on the border


def box_available() -> bool:
    return _cropper is not None


def crop_box(preview: np.ndarray, crop: Crop | None, key: str) -> Crop | None:
    """The photo with its crop, which the volunteer can change; returns the crop (``None``: the whole photo)."""
    sliders = not box_available()
    if box_available():
        sliders = st.toggle(
            "Adjust with sliders",
            key=f"{key}.sliders",
            help="If the box does not show or is hard to drag on your screen, set the crop's edges with sliders.",
        )
    return _sliders(preview, crop, key) if sliders else _box(preview, crop, key)


def crop_from_box(coords: dict, width: int, height: int) -> Crop | None:
    """The crop for a box the canvas reported (its bounding box in canvas pixels, stroke included)."""
    left, top = float(coords["left"]), float(coords["top"])
    right, bottom = left + float(coords["width"]), top + float(coords["height"])
    x0, x1 = sorted((_edge(left / width), _edge(right / width)))
    y0, y1 = sorted((_edge(top / height), _edge(bottom / height)))
    crop = (x0, y0, x1, y1)
    return None if crop == FULL else crop


def box_for_crop(
    crop: Crop | None, width: int, height: int, scale: tuple[float, float] = (1.0, 1.0)
) -> dict[str, float]:
    """The box to draw for ``crop``: its bounding box, stroke included, lies on the crop's edges.

    ``scale`` is the stretch the canvas keeps on the box from the volunteer's drags (it resizes a box by
    scaling it, and later sizes are scaled again), so the size given is divided by it.
    """
    x0, y0, x1, y1 = crop or FULL
    sx, sy = scale
    return {
        "left": x0 * width,
        "top": y0 * height,
        "width": max(1.0, (x1 - x0) * width / sx - STROKE),
        "height": max(1.0, (y1 - y0) * height / sy - STROKE),
    }


def box_scale(coords: dict, drawn: dict) -> tuple[float, float]:
    """The stretch of a box the canvas reported, against the box it was last given (``drawn``)."""
    return (
        float(coords["width"]) / (float(drawn["width"]) + STROKE),
        float(coords["height"]) / (float(drawn["height"]) + STROKE),
    )


def _edge(value: float) -> float:
    value = min(max(value, 0.0), 1.0)
    if value < SNAP:
        return 0.0
    if value > 1 - SNAP:
        return 1.0
    return round(value, 3)


def _too_small(crop: Crop | None) -> bool:
    return crop is not None and (crop[2] - crop[0] < MIN_SPAN or crop[3] - crop[1] < MIN_SPAN)


def _box(preview: np.ndarray, crop: Crop | None, key: str) -> Crop | None:
    image = Image.fromarray(pictures.as_rgb(preview, "preview"))
    image.thumbnail((CANVAS_W, CANVAS_H), Image.Resampling.LANCZOS)
    width, height = image.size
    widget, memory = f"{key}.box", f"{key}.box_state"
    # The box's last report is read before the box is drawn, so it is drawn where the volunteer left it.
    reported = (st.session_state.get(widget) or {}).get("coords")
    state = st.session_state.get(memory) or {}
    scale = state.get("scale", (1.0, 1.0)) if reported else (1.0, 1.0)  # no report yet: a new canvas
    if reported and reported != state.get("seen") and state.get("drawn"):
        scale = box_scale(reported, state["drawn"])
        dragged = crop_from_box(reported, width, height)
        if _too_small(dragged):
            st.warning("That box is very small; keep at least 5 % of the photo in each direction.")
        else:
            crop = dragged
    box = box_for_crop(crop, width, height, scale)
    st.session_state[memory] = {"seen": reported, "scale": scale, "drawn": box}
    name = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    _zoom_to_fit(width)
    with st.container(key=f"cropbox-{name}"):
        _cropper(
            canvasWidth=width,
            canvasHeight=height,
            realtimeUpdate=True,
            strokeWidth=STROKE,
            rectLeft=box["left"],
            rectTop=box["top"],
            rectWidth=box["width"],
            rectHeight=box["height"],
            boxColor=BOX_COLOUR,
            imageData=pictures.data_uri(np.asarray(image), quality=85),
            lockAspect=False,
            key=widget,
            default=None,
        )
    st.caption(
        ":material/crop: Tap the yellow box, then drag its corners to frame the head, or drag inside it to move it."
    )
    return crop


def _zoom_to_fit(width: int) -> None:
    """CSS that zooms the canvas out step by step while its column is narrower than it (phones, tablets)."""
    scope = "[class*='st-key-cropbox-']"
    rules = [f"{scope} {{ container-type: inline-size; }}", f"{scope} iframe {{ width: 100% !important; }}"]
    previous = 1.0
    for zoom in ZOOMS:
        rules.append(f"@container (max-width: {int(width * previous) - 1}px) {{ {scope} iframe {{ zoom: {zoom}; }} }}")
        previous = zoom
    st.html("<style>" + "\n".join(rules) + "</style>")


def _sliders(preview: np.ndarray, crop: Crop | None, key: str) -> Crop | None:
    """The fallback: the photo with the crop marked, and one range slider per direction."""
    st.image(pictures.crop_preview(preview, crop), width="stretch")
    x0, y0, x1, y1 = crop or FULL
    # New sliders (new keys) only when the crop was set elsewhere (the box, "use this area"), so they show it;
    # a crop the sliders set themselves keeps them, or the next move of the other slider would be lost.
    memory = f"{key}.sliders_state"
    state = st.session_state.get(memory) or {"crop": crop, "version": 0}
    if state["crop"] != crop:
        state = {"crop": crop, "version": state["version"] + 1}
    version = state["version"]
    xs = st.slider(
        "Crop: left and right edge",
        0,
        100,
        (round(x0 * 100), round(x1 * 100)),
        format="%d%%",
        key=f"{key}.cropx.{version}",
    )
    ys = st.slider(
        "Crop: top and bottom edge",
        0,
        100,
        (round(y0 * 100), round(y1 * 100)),
        format="%d%%",
        key=f"{key}.cropy.{version}",
    )
    result = crop  # untouched: kept as it is (the box may have set it more finely than 1 %)
    if (xs[0], xs[1], ys[0], ys[1]) != tuple(round(v * 100) for v in (x0, x1, y0, y1)):
        moved = (xs[0] / 100, ys[0] / 100, xs[1] / 100, ys[1] / 100)
        if _too_small(moved):
            st.warning("The crop is very small; keep at least 5 % in each direction.")
        else:
            result = None if moved == FULL else moved
    st.session_state[memory] = {"crop": result, "version": version}
    return result


def area_sentence(used_region: Crop | None, crop: Crop | None) -> str:
    """One plain sentence on which part of the photo the engine compared."""
    if used_region is not None:
        return "Scute zoomed in on the marked area" + (" of your crop." if crop is not None else " of your photo.")
    if crop is not None:
        return "Scute used your crop: the marked area."
    return "Scute used the whole photo. If the head is small in it, crop to the head and search again."


def compared_area(
    preview: np.ndarray,
    searched_crop: Crop | None,
    rotation: int,
    used_region: Crop | None,
    crop: Crop | None,
    key: str,
) -> Crop | None:
    """The photo with the part the engine compared marked; returns the crop, changed if the volunteer takes it.

    ``used_region`` is where the engine looked, in its query image (after ``searched_crop`` and ``rotation``);
    ``None`` when it used all of it.
    """
    area = searched_crop
    if used_region is not None:
        area = pictures.region_in_photo(used_region, searched_crop, rotation)
    picture, words = st.columns([1, 2], gap="medium", vertical_alignment="center")
    picture.image(pictures.crop_preview(preview, area), caption="What Scute compared", width=260)
    words.markdown(area_sentence(used_region, searched_crop))
    if used_region is not None and area != crop:
        words.caption("If the marked area is not the head, take it as your crop, correct it above and search again.")
        if words.button("Use this area as my crop", key=f"{key}.use", icon=":material/crop:"):
            return None if area == FULL else area
    return crop
