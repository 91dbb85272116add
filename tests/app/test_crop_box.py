"""ui.crop_box: the crop box's geometry (the canvas reports and takes boxes in its pixels) and its sentence."""

from __future__ import annotations

import pytest

from ui import crop_box
from ui.crop_box import STROKE, area_sentence, box_for_crop, box_scale, crop_from_box

W, H = 520, 347


def bounding(box: dict, scale: tuple[float, float] = (1.0, 1.0)) -> dict:
    """What the canvas (fabric.js) reports for a box it was given and has stretched by ``scale``."""
    return {
        "left": box["left"],
        "top": box["top"],
        "width": (box["width"] + STROKE) * scale[0],
        "height": (box["height"] + STROKE) * scale[1],
    }


@pytest.mark.parametrize("crop", [None, (0.1, 0.2, 0.6, 0.9), (0.5, 0.05, 0.95, 0.5)])
def test_a_box_drawn_for_a_crop_reports_that_crop(crop):
    assert crop_from_box(bounding(box_for_crop(crop, W, H)), W, H) == crop


def test_a_box_the_volunteer_stretched_is_drawn_at_the_crop_it_gave():
    """The canvas resizes a box by stretching it and keeps the stretch when the box is given again."""
    drawn = box_for_crop(None, W, H)
    dragged = bounding(drawn, (0.6, 0.5))  # the bottom-right corner dragged to 60 %, 50 %
    crop = crop_from_box(dragged, W, H)
    assert crop == pytest.approx((0.0, 0.0, 0.6, 0.5), abs=0.01)
    scale = box_scale(dragged, drawn)
    assert scale == pytest.approx((0.6, 0.5))
    again = box_for_crop(crop, W, H, scale)  # drawn on the next run: still exactly the crop, not 0.36 x 0.25
    assert crop_from_box(bounding(again, scale), W, H) == pytest.approx(crop, abs=1e-3)


def test_edges_snap_to_the_border_and_the_whole_photo_is_no_crop():
    assert crop_from_box({"left": 3, "top": -4, "width": W, "height": H + 9}, W, H) is None
    assert crop_from_box({"left": 104, "top": 2, "width": 300, "height": 200}, W, H) == (0.2, 0.0, 0.777, 0.582)


def test_the_sentence_says_what_the_search_compared():
    assert area_sentence(None, None).startswith("Scute used the whole photo")
    assert area_sentence(None, (0.1, 0.1, 0.5, 0.5)) == "Scute used your crop: the marked area."
    assert area_sentence((0.2, 0.2, 0.4, 0.4), None) == "Scute zoomed in on the marked area of your photo."
    assert area_sentence((0.2, 0.2, 0.4, 0.4), (0.1, 0.1, 0.5, 0.5)).endswith("of your crop.")


def test_the_box_is_available_where_streamlit_cropper_is_installed():
    pytest.importorskip("streamlit_cropper")
    assert crop_box.box_available()


def test_without_the_component_the_sliders_set_the_crop_and_refuse_a_tiny_one(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(crop_box, "_cropper", None)  # as if streamlit-cropper were not installed

    def script():
        import numpy as np
        import streamlit as st

        from ui.crop_box import crop_box

        st.session_state["crop"] = crop_box(np.zeros((60, 80, 3), np.uint8), st.session_state.get("crop"), "t")

    at = AppTest.from_function(script).run()
    assert not at.exception and not at.toggle  # no "Adjust with sliders" switch: the sliders are all there is
    assert at.session_state["crop"] is None
    at.slider[0].set_value((10, 60)).run()
    assert at.session_state["crop"] == (0.1, 0.0, 0.6, 1.0)
    at.slider[1].set_value((20, 90)).run()  # the other slider next: both moves count
    assert at.session_state["crop"] == (0.1, 0.2, 0.6, 0.9)
    at.slider[1].set_value((50, 52)).run()  # too small: refused with a message, the crop kept
    assert at.warning and at.session_state["crop"] == (0.1, 0.2, 0.6, 0.9)
    at.session_state["crop"] = (0.25, 0.5, 0.75, 1.0)  # set elsewhere (the box, "use this area")
    at.run()
    assert [s.value for s in at.slider] == [(25, 75), (50, 100)] and at.session_state["crop"] == (0.25, 0.5, 0.75, 1.0)
