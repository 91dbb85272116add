"""Curate (admins): individuals, merges, photos, history with undo, import, export, user accounts, sites and species.

Every action goes through ``core.review.curation`` / ``core.review.users`` / ``core.catalogue``,
which check the role, record the change in the audit log and make merges, splits and moves undoable.
Over 500 lines because it holds seven tabs of a few widgets each, every one wired to a single service call;
one file per tab would scatter one page.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from core.service import accounts, browse, curation
from core.service import catalogue as catalogue_service
from core.service.accounts import ROLES
from core.service.browse import IndividualRow
from core.service.history import KIND_LABELS, plural
from ui import context as ctx
from ui import places as places_ui
from ui.components import md, photo_image

FLASH = "curate.flash"
LAST_ENTRY = "curate.last_entry"
KIND = "curate.history.kind"
SECTIONS = {
    "individuals": "Individuals",
    "merge": "Merge",
    "photos": "Photos",
    "history": "History & undo",
    "import": "Import",
    "export": "Export",
    "users": "Users",
    "places": "Sites & species",
}


def _flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message, icon=":material/check_circle:")
    last = st.session_state.get(LAST_ENTRY)
    if last and st.button(f"Undo that ({last[1]})", key="curate.undo_last", icon=":material/undo:"):
        entry = ctx.attempt("undoing", lambda: curation.undo(ctx.app(), ctx.require("admin"), last[0]))
        st.session_state.pop(LAST_ENTRY, None)
        if entry is not None:
            st.session_state[FLASH] = f"Undone: {last[1].rstrip('.')}."
            st.rerun()


def _done(entry, text: str, undoable: bool = True) -> None:
    """After a committed action: remember it for the flash message (and the quick undo), then rerun."""
    st.session_state[FLASH] = text
    if undoable and entry is not None and entry.action in curation.UNDOABLE:
        st.session_state[LAST_ENTRY] = (entry.id, text)
    else:
        st.session_state.pop(LAST_ENTRY, None)
    st.rerun()


def _active_rows(include_retired: bool = False) -> list[IndividualRow]:
    return browse.active_individuals(ctx.app(), include_retired=include_retired)


def _pick(label: str, rows: list[IndividualRow], key: str) -> IndividualRow | None:
    by_id = {r.id: r for r in rows}
    choice = st.selectbox(
        label,
        list(by_id),
        index=None,
        format_func=lambda i: (
            f"{by_id[i].label} ({plural(by_id[i].photos, 'photo')}{', retired' * (by_id[i].status == 'retired')})"
        ),
        placeholder="Choose by code or name",
        key=key,
    )
    return by_id.get(choice) if choice is not None else None


# --- sections --------------------------------------------------------------------------------------


def _individuals(user) -> None:
    row = _pick("Individual", _active_rows(include_retired=True), "curate.ind.pick")
    if row is None:
        return
    individual = curation.individual(ctx.app(), row.id)
    if individual is None:
        st.warning("That individual no longer exists.")
        return
    with st.form(f"curate.ind.form.{row.id}"):
        name = st.text_input("Name", value=individual.name or "", max_chars=200, key=f"curate.ind.name.{row.id}")
        code = st.text_input(
            "Code",
            value=individual.code,
            max_chars=64,
            key=f"curate.ind.code.{row.id}",
            help="Codes are written on field sheets: change them only to fix a mistake.",
        )
        species = st.text_input("Species", value=individual.species, max_chars=200, key=f"curate.ind.species.{row.id}")
        notes = st.text_area("Notes", value=individual.notes, max_chars=10_000, key=f"curate.ind.notes.{row.id}")
        save = st.form_submit_button("Save", key=f"curate.ind.save.{row.id}", type="primary")
    if save:
        entries = ctx.attempt(
            "saving the individual",
            lambda: curation.save_individual(
                ctx.app(), user, row.id, name=name, code=code, species=species, notes=notes
            ),
        )
        if entries is not None:
            if not entries:
                st.info("Nothing changed.")
            else:
                _done(entries[0] if len(entries) == 1 else None, f"Saved {md(code.strip())}.")
    if individual.status == "active":
        with st.expander("Retire this individual"):
            st.write(
                "A retired individual (dead, or gone from the area) stays in the gallery's records but is no "
                "longer searched. This can be undone."
            )
            sure = st.checkbox(f"Yes, retire {md(individual.code)}", key=f"curate.ind.retire_ok.{row.id}")
            if st.button("Retire", key=f"curate.ind.retire.{row.id}", disabled=not sure):
                entry = ctx.attempt("retiring", lambda: curation.retire(ctx.app(), user, row.id))
                if entry is not None:
                    _done(entry, f"Retired {md(individual.code)}.")


def _portrait(row: IndividualRow, key: str) -> None:
    """One side of the merge check: the individual's name, counts and photos."""
    with st.container(border=True):
        st.markdown(f"### {md(row.label)}")
        seen = f"{row.last_seen:%d %b %Y}" if row.last_seen else "date unknown"
        st.caption(f"{plural(row.photos, 'photo')} · last seen {seen}")
        photos = browse.gallery_photos_of(ctx.app(), row.id, in_gallery_only=True)
        store = ctx.app().store
        images = [photo_image(str(store.path(p.path)), p.crop, p.rotation, 320) for p in photos[:8]]
        if images:
            st.image(images, caption=[f"photo {p.id} · {p.side}" for p in photos[:8]], width=150)
        if len(photos) > 8:
            st.caption(f"… and {len(photos) - 8} more")


def _merge(user) -> None:
    st.write(
        "Merging moves every photo and sighting of the first individual to the second. The first code stays "
        "valid and points to the second. Compare the photos first; a merge can be undone."
    )
    rows = _active_rows(include_retired=True)
    left, right = st.columns(2, gap="large")
    with left:
        source = _pick("Merge this individual…", rows, "curate.merge.source")
    with right:
        target = _pick("…into this one", [r for r in rows if r.status == "active"], "curate.merge.target")
    if source is None or target is None:
        return
    if source.id == target.id:
        st.warning("Choose two different individuals.")
        return
    with left:
        _portrait(source, "source")
    with right:
        _portrait(target, "target")
    sure = st.checkbox(
        f"I have compared the photos: {md(source.code)} and {md(target.code)} are the same turtle.",
        key="curate.merge.ok",
    )
    if st.button(
        f"Merge {md(source.code)} into {md(target.code)}", key="curate.merge.go", type="primary", disabled=not sure
    ):
        entry = ctx.attempt("merging", lambda: curation.merge(ctx.app(), user, source.id, target.id))
        if entry is not None:
            _done(entry, f"Merged {md(source.code)} into {md(target.code)} ({plural(source.photos, 'photo')} moved).")


def _photos(user) -> None:
    row = _pick("Individual", _active_rows(include_retired=True), "curate.photos.pick")
    if row is None:
        return
    photos = browse.gallery_photos_of(ctx.app(), row.id)
    if not photos:
        st.info("This individual has no photos.")
        return
    store = ctx.app().store
    st.image(
        [photo_image(str(store.path(p.path)), p.crop, p.rotation, 320) for p in photos],
        caption=[f"photo {p.id} · {p.side}{'' if p.in_gallery else ' · removed'}" for p in photos],
        width=150,
    )
    labels = {p.id: f"photo {p.id} · {p.side}{'' if p.in_gallery else ' (removed from search)'}" for p in photos}
    chosen = st.multiselect("Photos to act on", list(labels), format_func=labels.get, key=f"curate.photos.sel.{row.id}")
    if not chosen:
        st.caption("Choose one or more photos above.")
        return
    split_tab, move_tab, remove_tab = st.columns(3, gap="medium")
    with split_tab.container(border=True):
        st.markdown("**Split off as a new individual**")
        name = st.text_input("Name of the new individual (optional)", key=f"curate.photos.newname.{row.id}")
        if st.button("Split off", key=f"curate.photos.split.{row.id}", disabled=len(chosen) == len(photos)):
            entry = ctx.attempt(
                "splitting", lambda: curation.split_off(ctx.app(), user, row.id, chosen, name.strip() or None)
            )
            if entry is not None:
                _done(
                    entry,
                    f"Split {plural(len(chosen), 'photo')} off {md(row.code)} into {md(entry.payload['target_code'])}.",
                )
        if len(chosen) == len(photos):
            st.caption("To move all photos, merge instead.")
    with move_tab.container(border=True):
        st.markdown("**Move to another individual**")
        others = [r for r in _active_rows() if r.id != row.id]
        target = _pick("Move to", others, f"curate.photos.moveto.{row.id}")
        if st.button("Move", key=f"curate.photos.move.{row.id}", disabled=target is None):
            assert target is not None
            entry = ctx.attempt(
                "moving photos", lambda: curation.move_photos(ctx.app(), user, row.id, chosen, target.id)
            )
            if entry is not None:
                _done(entry, f"Moved {plural(len(chosen), 'photo')} from {md(row.code)} to {md(target.code)}.")
    with remove_tab.container(border=True):
        st.markdown("**Remove from the search**")
        st.caption("The file and its history are kept; undo puts it back.")
        if st.button("Remove", key=f"curate.photos.remove.{row.id}"):
            searchable = {p.id for p in photos if p.in_gallery}
            entries = ctx.attempt(
                "removing photos",
                lambda: curation.remove_photos(ctx.app(), user, [pid for pid in chosen if pid in searchable]),
            )
            if entries is not None:
                _done(
                    entries[0] if len(entries) == 1 else None,
                    f"Removed {plural(len(entries), 'photo')} from the search.",
                )


def _history(user) -> None:
    rows = curation.history(ctx.app(), limit=300)
    kinds = sorted({r.kind for r in rows})
    labels = {"all": "Everything", **KIND_LABELS}
    kind = st.segmented_control("Show", ["all", *kinds], default="all", format_func=labels.get, key=KIND, required=True)
    shown = [r for r in rows if kind in (None, "all") or r.kind == kind]
    st.dataframe(
        [
            {
                "#": r.id,
                "When": r.when,
                "Who": r.user,
                "What happened": r.summary,
                "Undone": f"by #{r.undone_by}" if r.undone_by else "",
            }
            for r in shown
        ],
        hide_index=True,
        width="stretch",
        height=360,
        column_config={"When": st.column_config.DatetimeColumn(format="D MMM YYYY, HH:mm")},
    )
    undoable = [r for r in rows if r.undoable]
    if not undoable:
        return
    by_id = {r.id: r for r in undoable}
    choice = st.selectbox(
        "Undo a change",
        list(by_id),
        index=None,
        format_func=lambda i: f"#{i} · {by_id[i].when:%d %b %H:%M} · {by_id[i].user}: {by_id[i].summary}",
        placeholder="Choose a merge, split, move, removal, rename, …",
        key="curate.history.undo_pick",
    )
    if st.button("Undo", key="curate.history.undo", disabled=choice is None):
        entry = ctx.attempt("undoing", lambda: curation.undo(ctx.app(), user, choice))
        if entry is not None:
            _done(entry, f"Undone change #{choice}.", undoable=False)


def _report(report) -> None:
    st.success(report.summary(), icon=":material/download_done:")
    if report.problems:
        with st.expander(f"{len(report.problems)} rows were skipped"):
            for problem in report.problems[:500]:
                text = (
                    str(problem)
                    if not hasattr(problem, "line")
                    else f"line {problem.line}: {problem.path}: {problem.reason}"
                )
                st.text(text)


def _import(user) -> None:
    st.caption(
        "Keep this page open while your files upload and until the import appears under *Imports* below. From "
        "then on it runs on the server: you may leave this page or close the tab, and come back to see how far "
        "it got. A stopped import can be resumed; photos already imported are recognised and skipped."
    )
    how = st.radio(
        "What do you have?",
        ["zip", "csv", "server"],
        format_func={
            "zip": "A ZIP with manifest.csv and the photos (e.g. a Scute export)",
            "csv": "A CSV manifest (path,identity[,side][,date]) and the photo files",
            "server": "A catalogue already on this server (path to a manifest.csv or a .zip)",
        }.get,
        key="curate.import.how",
    )
    app = ctx.app()
    if how == "zip":
        upload = st.file_uploader("Catalogue ZIP", type=["zip"], key="curate.import.zip")
        if st.button("Import", key="curate.import.zip.go", type="primary", disabled=upload is None):
            assert upload is not None
            ctx.attempt("starting the import", lambda: catalogue_service.start_zip_import(app, user, upload.getvalue()))
    elif how == "csv":
        manifest = st.file_uploader("Manifest (CSV)", type=["csv"], key="curate.import.csv")
        photos = st.file_uploader(
            "Photos named in the manifest",
            type=["jpg", "jpeg", "png", "webp", "tif", "tiff", "heic", "heif"],
            accept_multiple_files=True,
            key="curate.import.photos",
        )
        st.caption(
            "Photos are matched to the manifest's rows by file name (and by content where the manifest has a "
            "sha256 column). A row whose file name several different uploads share is skipped, never guessed."
        )
        if st.button("Import", key="curate.import.csv.go", type="primary", disabled=manifest is None or not photos):
            assert manifest is not None
            files = [(f.name, f.getvalue()) for f in photos or []]  # names may repeat (two cameras)
            ctx.attempt(
                "starting the import",
                lambda: catalogue_service.start_uploaded_import(app, user, manifest.getvalue(), files),
            )
    else:
        location = st.text_input(
            "Path on the server", key="curate.import.path", placeholder="/data/catalogue/manifest.csv"
        )
        if st.button("Import", key="curate.import.server.go", type="primary", disabled=not location.strip()):
            path = Path(location.strip()).expanduser()
            ctx.attempt("starting the import", lambda: catalogue_service.start_server_import(app, user, path))
    _import_jobs()


#: What an import job's bar says in each stage.
JOB_STAGES = {
    "waiting": "Starting…",
    "importing": "Importing: {done} of {total} rows (reading each photo and finding its keypoints)",
    "preparing": "Preparing the gallery for searching (each new photo's keypoints are indexed once, so that "
    "searches compare with it): photo {done} of {total}",
}


def _import_jobs() -> None:
    """Every import this app is running or has run; refreshed each second while one runs."""
    if any(job.running for job in catalogue_service.import_jobs(ctx.app())):
        _live_import_jobs()
    else:
        _import_job_list()


@st.fragment(run_every=1.0)
def _live_import_jobs() -> None:
    if not any(job.running for job in catalogue_service.import_jobs(ctx.app())):
        st.rerun()  # the last one finished: show the results, and stop refreshing
    _import_job_list()


def _import_job_list() -> None:
    jobs = catalogue_service.import_jobs(ctx.app())
    if not jobs:
        return
    st.subheader("Imports")
    for job in jobs[:5]:
        with st.container(border=True):
            st.markdown(f"**#{job.id} · {md(job.label)}** · started by {md(job.user)} at {job.started:%H:%M:%S} UTC")
            if job.running:
                text = JOB_STAGES.get(job.stage, job.stage).format(done=job.done, total=job.total)
                st.progress(job.fraction, text=text)
                if st.button("Stop", key=f"curate.import.stop.{job.id}"):
                    catalogue_service.stop_import(ctx.app(), job.id)
            elif job.state == "finished":
                _report(job.result)
                st.success("The gallery is ready for searching.", icon=":material/check_circle:")
            else:
                what = "was stopped" if job.state == "stopped" else f"failed: {job.error}"
                st.warning(f"This import {what} after {job.done} of {job.total} rows.", icon=":material/pause:")
                if st.button("Resume", key=f"curate.import.resume.{job.id}") and _resume(job.id):
                    st.rerun()


def _resume(job_id: int) -> bool:
    return ctx.attempt("resuming the import", lambda: catalogue_service.resume_import(ctx.app(), job_id)) is not None


def _export(user) -> None:
    st.write("Download the catalogue and its history as CSV (for spreadsheets and capture–recapture software).")
    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    app = ctx.app()

    occasions = st.text_input(
        "Sampling occasions for capture–recapture (optional)",
        key="curate.export.occasions",
        placeholder="2024-06-01..2024-06-30, 2024-07-01..2024-07-31",
        help="Date ranges, in order and not overlapping. The tables then include each individual's encounter "
        "history over these occasions, as CSV and as MARK's .inp file.",
    )
    problem = catalogue_service.occasions_problem(occasions) if occasions.strip() else None
    if problem:
        st.error(problem)
        occasions = ""

    left, right = st.columns(2)
    with left:
        species = places_ui.species_filter("curate.export.species")
    with right:
        region = places_ui.region_filter("curate.export.region")

    def tables() -> bytes:
        return catalogue_service.export_tables_zip(app, occasions, viewer=user, species=species, region=region)[0]

    def catalogue() -> bytes:
        return catalogue_service.export_photos_zip(app)

    st.download_button(
        "Tables: individuals, encounters, Darwin Core occurrences, sightings, votes, audit"
        + (", encounter histories" if occasions.strip() else "")
        + " (CSV in a ZIP)",
        tables,
        file_name=f"scute-tables-{stamp}.zip",
        mime="application/zip",
        key="curate.export.tables",
        icon=":material/table:",
        on_click="ignore",
    )
    st.download_button(
        "Whole catalogue with photos (ZIP, re-importable)",
        catalogue,
        file_name=f"scute-catalogue-{stamp}.zip",
        mime="application/zip",
        key="curate.export.catalogue",
        icon=":material/folder_zip:",
        on_click="ignore",
    )
    row = _pick("One individual's photos", _active_rows(include_retired=True), "curate.export.pick")
    if row is not None:

        def one() -> bytes:
            return catalogue_service.export_photos_zip(app, code=row.code)

        st.download_button(
            f"Photos of {md(row.code)} (ZIP)",
            one,
            file_name=f"scute-{row.code}-{stamp}.zip",
            mime="application/zip",
            key="curate.export.one",
            icon=":material/photo_library:",
            on_click="ignore",
        )


def _users(user) -> None:
    people = accounts.accounts(ctx.app())
    st.dataframe(
        [{"User": a.username, "Role": a.role, "Active": a.active, "Since": a.created_at} for a in people],
        hide_index=True,
        width="stretch",
        column_config={"Since": st.column_config.DateColumn(format="D MMM YYYY")},
    )
    add, manage = st.columns(2, gap="large")
    with add, st.form("curate.users.add", clear_on_submit=True):
        st.markdown("**Add an account**")
        name = st.text_input("User name", key="curate.users.name")
        role = st.selectbox("Role", ROLES, key="curate.users.role")
        password = st.text_input("First password (tell them to change it)", type="password", key="curate.users.pw")
        if st.form_submit_button("Add account", key="curate.users.add.submit", type="primary"):
            created = ctx.attempt(
                "adding the account", lambda: accounts.add_account(ctx.app(), user, name, password, role)
            )
            if created is not None:
                _done(None, f"Added {md(created.username)} ({created.role}).", undoable=False)
    with manage:
        st.markdown("**Change an account**")
        by_name = {a.username: a for a in people}
        chosen = st.selectbox(
            "Account", list(by_name), index=None, key="curate.users.pick", placeholder="Choose an account"
        )
        if chosen is None:
            return
        account = by_name[chosen]
        new_role = st.selectbox("Role", ROLES, index=ROLES.index(account.role), key=f"curate.users.newrole.{chosen}")
        _account_button(
            "Change role",
            f"curate.users.setrole.{chosen}",
            lambda: accounts.set_role(ctx.app(), user, chosen, new_role),
            f"{md(chosen)} is now {new_role}.",
            disabled=new_role == account.role,
        )
        if account.active:
            _account_button(
                "Disable account",
                f"curate.users.disable.{chosen}",
                lambda: accounts.set_active(ctx.app(), user, chosen, False),
                f"Disabled {md(chosen)}; they are signed out.",
                disabled=account.id == user.id,
            )
        else:
            _account_button(
                "Enable account",
                f"curate.users.enable.{chosen}",
                lambda: accounts.set_active(ctx.app(), user, chosen, True),
                f"Enabled {md(chosen)}.",
            )
        new_password = st.text_input("New password", type="password", key=f"curate.users.newpw.{chosen}")
        _account_button(
            "Set password",
            f"curate.users.setpw.{chosen}",
            lambda: accounts.set_password(ctx.app(), user, chosen, new_password),
            f"New password set for {md(chosen)}; their sessions have ended.",
            disabled=not new_password,
        )


def _account_button(label: str, key: str, action, message: str, *, disabled: bool = False) -> None:
    if st.button(label, key=key, disabled=disabled) and ctx.attempt(label.lower(), action) is not None:
        _done(None, message, undoable=False)


def main() -> None:
    user = ctx.require("admin")
    st.title("Curate the gallery")
    _flash()
    section = st.segmented_control(
        "Section", list(SECTIONS), default="individuals", format_func=SECTIONS.get, key="curate.section", required=True
    )
    {
        "individuals": _individuals,
        "merge": _merge,
        "photos": _photos,
        "history": _history,
        "import": _import,
        "export": _export,
        "users": _users,
        "places": places_ui.sites_and_species,
    }[section or "individuals"](user)


main()
