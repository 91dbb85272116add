"""The follow / unfollow button on an individual's page: its next confirmed encounter reaches one's inbox."""

from __future__ import annotations

import streamlit as st

from core.service import inbox
from ui import context as ctx
from ui.components import md


def follow_button(individual_id: int, code: str, merged: bool) -> None:
    """One toggle-like button; a merged individual is followed through the one it was merged into."""
    user = ctx.current_user()
    if user is None or merged:
        return
    following = inbox.following(ctx.app(), user, individual_id)
    label = f"Unfollow {md(code)}" if following else f"Follow {md(code)}"
    help_text = (
        "You hear in your Inbox when it is seen again."
        if not following
        else f"You are following {md(code)}: each new confirmed encounter reaches your Inbox."
    )
    icon = ":material/notifications_off:" if following else ":material/notifications:"
    if st.button(label, key=f"follow.{individual_id}", icon=icon, help=help_text):
        done = ctx.attempt(
            "changing what you follow", lambda: inbox.set_following(ctx.app(), user, individual_id, not following)
        )
        if done is not None:
            st.rerun()
