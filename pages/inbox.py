"""Inbox: what became of one's encounters, of what one proposed, and of the individuals one follows."""

from __future__ import annotations

import streamlit as st

from core.service import inbox
from core.service.inbox import Message
from ui import context as ctx
from ui.components import card_image, md

KIND_ICONS = {
    "confirmed": ":material/verified:",
    "new_individual": ":material/new_releases:",
    "conflict": ":material/gavel:",
    "proposal": ":material/how_to_vote:",
    "seen_again": ":material/visibility:",
}


def _message(message: Message) -> None:
    with st.container(border=True):
        head = st.container(horizontal=True, vertical_alignment="center")
        head.markdown(f"{KIND_ICONS.get(message.kind, ':material/mail:')} " + ("" if message.read else "**New** · "))
        head.caption(f"{message.when:%d %b %Y, %H:%M} UTC")
        text = md(message.text)
        st.markdown(text if message.read else f"**{text}**")
        links = st.container(horizontal=True, vertical_alignment="center")
        if message.code:
            links.page_link(
                "pages/gallery.py",
                label=f"Open {md(message.code)} in the gallery",
                icon=":material/photo_library:",
                query_params={"individual": message.code},
            )
        if not message.read and links.button("Mark read", key=f"inbox.read.{message.id}", type="tertiary"):
            ctx.attempt("marking the message read", lambda: inbox.mark_read(ctx.app(), ctx.require(), [message.id]))
            st.rerun()
        if message.photos:
            with st.expander(f"The encounter's photos ({len(message.photos)})"):
                st.image([card_image(str(path), crop, rotation) for path, crop, rotation in message.photos], width=200)


def main() -> None:
    user = ctx.require()
    st.title("Inbox")
    unread_only = st.toggle("Unread only", key="inbox.unread_only")
    found = inbox.messages(ctx.app(), user, unread_only=unread_only)
    unread = inbox.unread(ctx.app(), user)
    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.caption(f"{unread} unread" if unread else "Nothing unread.")
    if unread and bar.button("Mark all read", key="inbox.read_all", icon=":material/done_all:"):
        ctx.attempt("marking your messages read", lambda: inbox.mark_read(ctx.app(), user))
        st.rerun()
    if not found:
        st.info(
            "No messages yet. When a sighting you sent or voted on is decided, or an individual you follow is seen "
            "again, you will read it here. Follow an individual from its page in the Gallery."
        )
    for message in found:
        _message(message)


main()
