"""Catalogues in and out from the browser: uploaded ZIPs and CSVs, a catalogue already on the server, and
downloads of the tables and photos."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from core.catalogue.exporter import export_catalogue, write_individual_zip
from core.catalogue.format import CATALOGUE_ZIP
from core.catalogue.importer import ImportReport, RowProblem, import_rows
from core.catalogue.locations import for_role
from core.catalogue.manifest import parse_manifest, read_manifest
from core.catalogue.uploads import match_rows, uploads_of
from core.catalogue.zip_import import ZipImportReport, import_zip
from core.errors import ManifestError, ScuteError
from core.progress import Progress, StageProgress
from core.review.sites import individuals_in
from core.service.app import App
from core.service.jobs import Job
from core.store.models import User

UploadedFiles = Sequence[tuple[str, bytes]] | Mapping[str, bytes]
"""The browser's uploads as (name, bytes) pairs, in upload order: several may share a name (two cameras)."""


def import_zip_upload(app: App, user: User, data: bytes, progress: Progress | None = None) -> ZipImportReport:
    """Import a catalogue ZIP uploaded in the browser (checked before anything is extracted)."""
    with tempfile.TemporaryDirectory(prefix="scute-upload-") as tmp:
        path = Path(tmp) / "catalogue.zip"
        path.write_bytes(data)
        report = import_zip(app.db, app.store, app.engine, path, actor=user, progress=progress, work_dir=Path(tmp))
    app.gallery_changed()
    return report


def import_uploaded_catalogue(
    app: App,
    user: User,
    manifest: bytes,
    photos: UploadedFiles,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a CSV manifest whose photos were uploaded alongside it; see :func:`_import_uploaded`."""
    with tempfile.TemporaryDirectory(prefix="scute-upload-") as tmp:
        report = _import_uploaded(app, user, manifest, photos, Path(tmp), progress)
    app.gallery_changed()
    return report


def _import_uploaded(
    app: App, user: User, manifest: bytes, photos: UploadedFiles, workdir: Path, progress: Progress | None
) -> ImportReport:
    """Each manifest row gets the upload it means (:func:`core.catalogue.uploads.match_rows`: by path and
    content, never by a shared file name alone); rows without one are reported and skipped.

    Uploads are written under their SHA-256, never under their names; the name the photographer gave the
    file is kept as the photo's original name. The import is audited under ``user``.
    """
    rows, raw = parse_manifest(manifest, "The manifest")
    if not rows:
        raise ManifestError("The manifest has no rows.")
    uploads = uploads_of(photos)
    matched, unmatched = match_rows(rows, raw, uploads)
    folder = workdir / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for item in matched:
        dest = folder / item.upload.sha256
        if not dest.exists():
            dest.write_bytes(item.upload.data)
    report = import_rows(
        app.db,
        app.store,
        app.engine,
        [replace(item.row, path=item.upload.sha256) for item in matched],  # side, encounter and date travel along
        folder,
        progress,
        lines=[item.line for item in matched],
        original_names=[item.upload.name for item in matched],
        actor=user,
        source=f"uploaded manifest ({len(rows)} rows, {len(uploads)} files)",
        skipped=[RowProblem(item.line, item.path, item.reason) for item in unmatched],
    )
    report.problems.sort(key=lambda problem: problem.line)
    return report


def import_from_server(
    app: App, user: User, path: Path, progress: Progress | None = None
) -> ImportReport | ZipImportReport:
    """Import a catalogue that already lies on the server: a ZIP, or a manifest whose paths are relative to it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ScuteError(f"There is no file at {path}.")
    if path.suffix.lower() == ".zip":
        report: ImportReport | ZipImportReport = import_zip(
            app.db, app.store, app.engine, path, actor=user, progress=progress
        )
    else:
        report = import_rows(
            app.db, app.store, app.engine, read_manifest(path), path.parent, progress, actor=user, source=str(path)
        )
    app.gallery_changed()
    return report


def prepare_gallery(app: App, progress: Progress | None = None) -> None:
    """Build the search index now if none exists yet, so the first volunteer after an import does not wait.

    Later imports are picked up by the background update that the import started.
    """
    app.indexes.get(app.engine, app.db, app.store, None, progress)


def occasions_problem(occasions: str) -> str | None:
    """Why the sampling occasions typed on the Export page cannot be used, or None."""
    from core.catalogue.analysis import parse_occasions

    try:
        parse_occasions(occasions)
    except ScuteError as exc:
        return str(exc)
    return None


def export_tables_zip(
    app: App, occasions: str = "", *, viewer: User | None = None, species: str = "", region: str = ""
) -> tuple[bytes, str]:
    """Every CSV table of :func:`core.catalogue.exporter.export_catalogue` in one ZIP, and the export's summary;
    with sampling ``occasions`` (``2024-06-01..2024-06-30, …``) the encounter histories too (CSV and MARK).

    Positions are exact for a reviewer or admin ``viewer`` and rounded to the deployment's setting for anyone else
    (no viewer included); ``species`` / ``region`` keep the analysis tables to those individuals. The README in the
    ZIP says which.
    """
    from core.catalogue.analysis import parse_occasions

    ranges = parse_occasions(occasions) if occasions.strip() else []
    locations = for_role(viewer.role if viewer is not None else "", app.settings.volunteer_position_degrees)
    with app.session() as session:
        only = individuals_in(session, species or None, region or None)
    scope = " in ".join(part for part in (species.strip(), region.strip()) if part)
    with tempfile.TemporaryDirectory(prefix="scute-export-") as tmp:
        report = export_catalogue(
            app.db, app.store, Path(tmp), occasions=ranges, locations=locations, individuals=only, scope=scope
        )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(report.files):
                if path.suffix in (".csv", ".inp", ".txt"):
                    bundle.write(path, arcname=path.name)
    return buffer.getvalue(), report.summary()


def export_photos_zip(app: App, code: str | None = None) -> bytes:
    """The catalogue with its photos as an importable ZIP: all of it, or one individual's (``code``)."""
    with tempfile.TemporaryDirectory(prefix="scute-export-") as tmp:
        if code is not None:
            dest = Path(tmp) / "individual.zip"
            write_individual_zip(app.db, app.store, code, dest)
            return dest.read_bytes()
        export_catalogue(app.db, app.store, Path(tmp), photos=True)
        return (Path(tmp) / CATALOGUE_ZIP).read_bytes()


# --- imports as background jobs (core.service.jobs): the admin may leave the page while they run ---------


def _job_folder(app: App) -> Path:
    root = app.settings.home / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="import-", dir=root))


def _then_prepare(app: App, report: ImportReport | ZipImportReport, progress: StageProgress) -> None:
    """After the rows: the search index, so the first volunteer does not wait for it either."""
    if getattr(report, "added", 0):
        prepare_gallery(app, lambda done, total: progress("preparing", done, total))


def start_zip_import(app: App, user: User, data: bytes) -> Job:
    folder = _job_folder(app)
    (folder / "catalogue.zip").write_bytes(data)

    def work(progress: StageProgress) -> ZipImportReport:
        report = import_zip(
            app.db,
            app.store,
            app.engine,
            folder / "catalogue.zip",
            actor=user,
            progress=lambda done, total: progress("importing", done, total),
            work_dir=folder,
        )
        app.gallery_changed()
        _then_prepare(app, report, progress)
        return report

    return app.jobs.start("Catalogue ZIP", user.username, work, folder)


def start_uploaded_import(app: App, user: User, manifest: bytes, photos: UploadedFiles) -> Job:
    folder = _job_folder(app)
    rows, _ = parse_manifest(manifest, "The manifest")  # a malformed manifest is refused before the job starts
    if not rows:
        raise ManifestError("The manifest has no rows.")

    def work(progress: StageProgress) -> ImportReport:
        report = _import_uploaded(
            app, user, manifest, photos, folder, lambda done, total: progress("importing", done, total)
        )
        app.gallery_changed()
        _then_prepare(app, report, progress)
        return report

    return app.jobs.start(f"CSV manifest, {len(rows)} rows", user.username, work, folder)


def start_server_import(app: App, user: User, path: Path) -> Job:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ScuteError(f"There is no file at {path}.")

    def work(progress: StageProgress) -> ImportReport | ZipImportReport:
        report = import_from_server(app, user, path, lambda done, total: progress("importing", done, total))
        _then_prepare(app, report, progress)
        return report

    return app.jobs.start(str(path), user.username, work)


def import_jobs(app: App) -> list[Job]:
    return app.jobs.all()


def stop_import(app: App, job_id: int) -> None:
    job = app.jobs.get(job_id)
    if job is not None:
        job.stop()


def resume_import(app: App, job_id: int) -> Job:
    return app.jobs.resume(job_id)
