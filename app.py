"""Scute's web app: ``streamlit run app.py`` (then open http://localhost:8501).

Navigation, sign-in and the home dashboard live here; each other page is a file in ``pages/``. The
first start on an empty database asks for the first admin account in the browser. Which pages show
depends on the role: everyone identifies, reviews and browses the gallery; admins also curate and
evaluate (reviewers evaluate too).
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from core.errors import ScuteError
from core.service import accounts, dashboard, inbox
from core.service.accounts import User
from ui import context as ctx
from ui.components import md

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

ASSETS = Path(__file__).resolve().parent / "assets"

st.set_page_config(page_title="Scute · turtle identification", page_icon=str(ASSETS / "icon.svg"), layout="wide")


def _brand(subtitle: str) -> None:
    st.image(str(ASSETS / "logo.svg"), width=220)
    st.caption(subtitle)


def _notice() -> None:
    notice = st.session_state.pop(ctx.NOTICE_KEY, None)
    if notice:
        st.info(notice)


def first_admin_page() -> None:
    """First start: nobody has an account yet, so the person installing Scute becomes its admin."""
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        _brand("Identify individual sea turtles from photos of their head scales.")
        st.subheader("Welcome! Create the first admin account")
        st.write(
            "This gallery is new and has no accounts yet. The account you create now manages the gallery "
            "and the other users; you can add volunteers and reviewers afterwards."
        )
        with st.form("first-admin"):
            username = st.text_input("User name", key="setup.username", autocomplete="username")
            password = st.text_input("Password (at least 8 characters)", type="password", key="setup.password")
            repeat = st.text_input("Repeat the password", type="password", key="setup.repeat")
            submitted = st.form_submit_button(
                "Create admin account", key="setup.submit", type="primary", width="stretch"
            )
        if submitted:
            if password != repeat:
                st.error("The two passwords differ; please type them again.")
                return
            user = ctx.attempt(
                "creating the first account", lambda: accounts.create_first_admin(ctx.app(), username, password)
            )
            if user is not None:
                token = ctx.attempt("signing in", lambda: accounts.open_session(ctx.app(), user))
                if token is not None:
                    ctx.start_session(token)
                    st.rerun()


def sign_in_page() -> None:
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        _brand("Identify individual sea turtles from photos of their head scales.")
        _notice()
        with st.form("sign-in"):
            username = st.text_input("User name", key="signin.username", autocomplete="username")
            password = st.text_input("Password", type="password", key="signin.password")
            submitted = st.form_submit_button("Sign in", key="signin.submit", type="primary", width="stretch")
        if submitted:
            client = ctx.client_address()
            signed_in = ctx.attempt("signing in", lambda: accounts.sign_in(ctx.app(), username, password, client))
            if signed_in is not None:
                ctx.start_session(signed_in[1])
                st.rerun()
        st.caption("No account yet? Ask the project's coordinator to create one for you.")


def home_page() -> None:
    user = ctx.require()
    st.title(f"Hello, {md(user.username)}")
    counts, mine = dashboard.home(ctx.app(), user)
    cols = st.columns(4)
    cols[0].metric("Individuals", counts.individuals, border=True, help="Active individuals in the gallery")
    cols[1].metric("Gallery photos", counts.gallery_photos, border=True, help="Photos the search compares with")
    cols[2].metric("Waiting for your vote", counts.waiting_for_me, border=True)
    cols[3].metric(
        "Conflicts" if user.role == "admin" else "Pending review",
        counts.conflict if user.role == "admin" else counts.pending,
        border=True,
        help="Sightings whose votes disagree: an admin decides"
        if user.role == "admin"
        else "Sightings waiting for enough votes",
    )
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("What would you like to do?")
        st.page_link("pages/identify.py", label="Identify a turtle from your photos", icon=":material/photo_camera:")
        st.page_link(
            "pages/review.py",
            label=f"Review sightings ({counts.waiting_for_me} waiting)",
            icon=":material/how_to_vote:",
        )
        st.page_link("pages/gallery.py", label="Browse the gallery", icon=":material/photo_library:")
        if user.role == "admin":
            st.page_link("pages/curate.py", label="Curate the gallery, import, export, users", icon=":material/tune:")
        if counts.gallery_photos == 0:
            st.info(
                "The gallery is empty. "
                + (
                    "Import your catalogue on the Curate page, or submit a first sighting as a new individual."
                    if user.role == "admin"
                    else "Submit a first sighting as a new individual, or ask an admin to import the catalogue."
                )
            )
        _account(user)
        with st.expander("How does Scute work?"):
            st.markdown(
                "1. **Upload** a photo of a turtle's head, say which side it shows, and crop to the head.\n"
                "2. Scute finds the same scale corners in the gallery photos and **ranks the individuals**, "
                "with a probability for each and for *new individual*.\n"
                "3. Check the matched points and **propose** who it is. Two people must agree before the "
                "gallery changes."
            )
    with right:
        st.subheader("Your recent sightings")
        if not mine:
            st.caption("You have not submitted any sighting yet.")
        else:
            st.dataframe(
                [
                    {
                        "Sighting": f"#{row.id}",
                        "Submitted": row.created_at,
                        "Status": row.status,
                        "Individual": row.code or "",
                        "Votes": row.votes,
                    }
                    for row in mine
                ],
                hide_index=True,
                column_config={"Submitted": st.column_config.DatetimeColumn(format="D MMM YYYY, HH:mm")},
            )
    if user.role == "admin":  # where the data lives and how the engine runs is for admins only
        settings = ctx.app().settings
        st.caption(f"Data folder: {md(settings.home)} · engine: {md(settings.engine.describe())}")


def _account(user: User) -> None:
    """Change one's own password; the current one is asked first, and other sessions end."""
    with st.expander("My account"), st.form("account.password", clear_on_submit=True):
        current = st.text_input("Current password", type="password", key="account.current")
        new = st.text_input("New password (at least 8 characters)", type="password", key="account.new")
        repeat = st.text_input("Repeat the new password", type="password", key="account.repeat")
        if not st.form_submit_button("Change password", key="account.submit"):
            return
    if new != repeat:
        st.error("The two new passwords differ; please type them again.")
        return

    updated = ctx.attempt("changing your password", lambda: accounts.change_own_password(ctx.app(), user, current, new))
    token = (
        None if updated is None else ctx.attempt("signing in again", lambda: accounts.open_session(ctx.app(), updated))
    )
    if token is not None:
        ctx.start_session(token)  # the old token was bound to the old password
        st.success("Your password is changed. Other devices where you were signed in are signed out.")


def _menu(pages: dict[str, list[st.Page]]) -> None:
    """The app's own menu. config.toml turns Streamlit's page list off: on the first load it flashed the raw
    file names of pages/ ("app, curate, evaluate, …") before sign-in."""
    with st.sidebar:
        for section, entries in pages.items():
            st.caption(section)
            for entry in entries:
                st.page_link(entry, label=entry.title, icon=entry.icon)


def _sidebar(user: User) -> None:
    with st.sidebar:
        st.markdown(f"**{md(user.username)}**  \n{ctx.ROLE_LABELS.get(user.role, user.role)}")
        if st.button("Sign out", key="auth.signout", icon=":material/logout:", width="stretch"):
            ctx.sign_out("You are signed out.")
            st.rerun()
        upload_notice = ctx.upload_notice()  # the upload widget itself can only say "status code 413"
        if upload_notice:
            st.warning(upload_notice, icon=":material/upload_file:")
        ctx.sync_cookie()


def _inbox_title(user: User) -> str:
    """The menu label, with the number of unread messages so nobody has to open the page to know."""
    unread = inbox.unread(ctx.app(), user)
    return f"Inbox ({unread} new)" if unread else "Inbox"


def main() -> None:
    try:
        user = ctx.current_user()
        has_accounts = user is not None or accounts.has_accounts(ctx.app())
    except ScuteError as exc:
        st.error(f"Scute cannot open its database: {exc}")
        st.stop()
    if user is None:
        page = (
            st.Page(sign_in_page, title="Sign in", icon=":material/login:", url_path="signin", default=True)
            if has_accounts
            else st.Page(
                first_admin_page, title="Welcome", icon=":material/waving_hand:", url_path="welcome", default=True
            )
        )
        ctx.sync_cookie()
        st.navigation([page], position="hidden").run()
        return

    home = st.Page(home_page, title="Home", icon=":material/home:", default=True)
    pages: dict[str, list[st.Page]] = {
        "Scute": [
            home,
            st.Page("pages/identify.py", title="Identify", icon=":material/photo_camera:"),
            st.Page("pages/review.py", title="Review", icon=":material/how_to_vote:"),
            st.Page("pages/gallery.py", title="Gallery", icon=":material/photo_library:"),
            st.Page("pages/inbox.py", title=_inbox_title(user), icon=":material/inbox:", url_path="inbox"),
            st.Page("pages/practice.py", title="Practice", icon=":material/school:"),
        ]
    }
    admin_pages = []
    if user.role == "admin":
        admin_pages.append(st.Page("pages/curate.py", title="Curate", icon=":material/tune:"))
    if user.role in ("admin", "reviewer"):
        admin_pages.append(st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"))
    if admin_pages:
        pages["Manage"] = admin_pages
    st.logo(str(ASSETS / "logo.svg"), icon_image=str(ASSETS / "icon.svg"), size="large")
    navigation = st.navigation(pages, position="hidden")
    _menu(pages)
    _sidebar(user)
    navigation.run()


main()
