"""Injection: SQL only through bound parameters, hostile text stored exactly (or refused the same way on every
backend), and uploaded file names that never become paths.

HTML/Markdown in names rendering as text is the app's job (see the app's own tests); here the core stores
such text verbatim, so the pages have the original to escape.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fixtures.photos import image_bytes
from fixtures.world import World, files_under, snapshot
from sqlalchemy import inspect
from sqlmodel import select

from core.errors import ScuteError
from core.io import sha256_hex
from core.review import curation
from core.review.individuals import next_code
from core.review.rules import ReviewError
from core.review.sightings import CandidateInput, submit_sighting
from core.review.votes import cast_vote
from core.safe_text import MAX_LABEL_LENGTH, TextError, check_text, upload_label
from core.store.db import session_scope
from core.store.gallery import get_or_create_individual
from core.store.models import Individual, Photo, Sighting, User, Vote
from core.store.photos import PhotoStore

pytestmark = pytest.mark.usefixtures("cheap_hashing")

CORE = Path(__file__).resolve().parents[2] / "core"
SQL_SINKS = {"text", "exec_driver_sql", "execute", "executescript", "executemany"}

HOSTILE = [
    "Robert'); DROP TABLE individual;--",
    "'; DELETE FROM vote WHERE '1'='1",
    'double "quotes" and \\backslash\\',
    "semi;colon; -- comment /* block */",
    "%s %(name)s :name ?1 $1 {n}",
    "<script>alert('x')</script>",
    "[click](javascript:alert(1)) **bold** <img src=x onerror=alert(1)>",
    "Ñandú 🐢 ウミガメ",
    "x" * 200,
]


# --- static: no string building in SQL --------------------------------------------------------------


def _dynamic_parts(node: ast.AST) -> list[str]:
    """Non-constant pieces of a SQL argument; module constants (UPPER_CASE names) are fine."""
    if isinstance(node, ast.Constant):
        return []
    if isinstance(node, ast.Name) and node.id.lstrip("_").isupper():
        return []
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Add | ast.Sub):
        if isinstance(node.op, ast.Add) and any(
            isinstance(side, ast.Constant) and isinstance(side.value, str) for side in (node.left, node.right)
        ):
            return [ast.unparse(node)]  # string concatenation
        return _dynamic_parts(node.left) + _dynamic_parts(node.right)
    if isinstance(node, ast.JoinedStr):
        return [part for value in node.values for part in _dynamic_parts(value)]
    if isinstance(node, ast.FormattedValue):
        return _dynamic_parts(node.value)
    return [ast.unparse(node)]


def _sql_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in SQL_SINKS:
            yield node


def test_sql_is_never_built_from_values() -> None:
    """Every text()/execute() in core gets either a query object or a literal whose only interpolations are
    module constants; values always travel as bound parameters."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in _sql_calls(tree):
            first = call.args[0]
            if isinstance(first, ast.JoinedStr | ast.BinOp) or (
                isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute) and first.func.attr == "format"
            ):
                dynamic = _dynamic_parts(first) if not isinstance(first, ast.Call) else [ast.unparse(first)]
                if dynamic:
                    offenders.append(f"{path.relative_to(CORE.parent)}:{call.lineno}: {', '.join(dynamic)}")
    assert offenders == []


def test_the_sql_lint_catches_string_building() -> None:
    """The check above is not vacuous: it flags each way of splicing a value into SQL."""
    bad = [
        "text(f\"SELECT * FROM photo WHERE path = '{path}'\")",
        'conn.exec_driver_sql("SELECT " + name)',
        'cur.execute("DELETE FROM vote WHERE id = {}".format(vote_id))',
    ]
    good = ["text('SELECT 1')", 'conn.exec_driver_sql(f"PRAGMA busy_timeout = {TIMEOUT_S * 1000}")', "s.execute(q)"]
    for source in bad:
        call = next(_sql_calls(ast.parse(source)))
        first = call.args[0]
        assert isinstance(first, ast.JoinedStr | ast.BinOp | ast.Call) and (
            isinstance(first, ast.Call) or _dynamic_parts(first)
        ), source
    for source in good:
        call = next(_sql_calls(ast.parse(source)))
        assert not isinstance(call.args[0], ast.JoinedStr | ast.BinOp) or not _dynamic_parts(call.args[0])


# --- hostile text is data --------------------------------------------------------------------------------


def test_hostile_text_round_trips_exactly_everywhere(engine, store: PhotoStore, world: World) -> None:
    """Names, codes, notes, comments and catalogue identities with quotes, semicolons, SQL, placeholders and
    markup are stored and read back byte for byte; the schema is untouched."""
    tables = set(inspect(engine).get_table_names())
    for i, hostile in enumerate(HOSTILE):
        code = f"{i}-{hostile}"[:64]
        with session_scope(engine) as session:
            admin = session.get(User, world.admin)
            curation.rename(session, admin, world.t1, hostile)
            curation.edit_notes(session, admin, world.t1, hostile + "\nsecond line")
            curation.rename(session, admin, world.t2, None, code=code)
            _, created = get_or_create_individual(session, f"imp{i}-{hostile}"[:64], hostile)
            assert created
        with session_scope(engine) as session:
            submission = submit_sighting(
                session,
                store,
                session.get(User, world.alice),
                image_bytes(500 + i),
                candidates=[CandidateInput(world.t1, 1, 0.5)],
                new_individual_probability=0.1,
                proposal="same",
                proposed_individual_id=world.t1,
                comment=hostile,
                notes=hostile,
            )
        with session_scope(engine) as session:
            cast_vote(session, session.get(User, world.bob), submission.sighting.id, "unsure", comment=hostile)
        with session_scope(engine) as session:
            t1 = session.get(Individual, world.t1)
            assert (t1.name, t1.notes) == (hostile, hostile + "\nsecond line")
            assert session.get(Individual, world.t2).code == code
            imported = session.exec(select(Individual.name).where(Individual.code == f"imp{i}-{hostile}"[:64])).one()
            assert imported == hostile
            assert session.get(Sighting, submission.sighting.id).notes == hostile
            comments = session.exec(select(Vote.comment).where(Vote.sighting_id == submission.sighting.id)).all()
            assert comments == [hostile, hostile]
    with session_scope(engine) as session:
        assert len(session.exec(select(Individual)).all()) == 2 + len(HOSTILE)
        assert len(session.exec(select(Vote)).all()) == 2 * len(HOSTILE)
    assert set(inspect(engine).get_table_names()) == tables


def test_like_wildcards_in_code_patterns_are_literal(engine, world: World) -> None:
    """next_code filters codes with LIKE; '%' and '_' in a pattern's prefix must not match other codes."""
    with session_scope(engine) as session:
        get_or_create_individual(session, "AB-0042")
        get_or_create_individual(session, "A_-0007")
        assert next_code(session, "A_-{n:04d}") == "A_-0008"
        assert next_code(session, "A%-{n:04d}") == "A%-0001"


BAD_TEXT = ["nul\x00byte", "escape \x1b[31m", "bell\x07", "lone surrogate \ud800", "bidi \u202eevil"]


def test_unstorable_text_is_refused_the_same_way_on_every_backend(engine, store: PhotoStore, world: World) -> None:
    """Regression: PostgreSQL's driver refused NUL (and every driver lone surrogates) with a traceback deep in
    the commit, while SQLite stored them; now each entry point refuses with a clear ScuteError, nothing stored."""
    before = snapshot(engine)
    for bad in BAD_TEXT:
        attempts = {
            "rename": lambda s, bad=bad: curation.rename(s, s.get(User, world.admin), world.t1, bad),
            "notes": lambda s, bad=bad: curation.edit_notes(s, s.get(User, world.admin), world.t1, bad),
            "code": lambda s, bad=bad: curation.rename(s, s.get(User, world.admin), world.t1, None, code="T-" + bad),
            "split name": lambda s, bad=bad: curation.split(
                s, s.get(User, world.admin), world.t1, world.photos[:1], name=bad
            ),
            "import identity": lambda s, bad=bad: get_or_create_individual(s, "T-" + bad),
            "import name": lambda s, bad=bad: get_or_create_individual(s, "T-0100", bad),
            "sighting notes": lambda s, bad=bad: submit_sighting(
                s,
                store,
                s.get(User, world.alice),
                image_bytes(600),
                candidates=[],
                new_individual_probability=None,
                notes=bad,
            ),
            "proposal comment": lambda s, bad=bad: submit_sighting(
                s,
                store,
                s.get(User, world.alice),
                image_bytes(601),
                candidates=[],
                new_individual_probability=None,
                proposal="new",
                comment=bad,
            ),
        }
        for what, attempt in attempts.items():
            with pytest.raises(ScuteError) as caught, session_scope(engine) as session:
                attempt(session)
            assert isinstance(caught.value, TextError | ReviewError | curation.CurationError), (what, bad)
            message = str(caught.value)
            assert "control characters" in message or "broken Unicode" in message, (what, bad, message)
    assert snapshot(engine) == before


def test_check_text_accepts_ordinary_multiline_text() -> None:
    assert check_text("line one\n\tline two\r\n", "notes", multiline=True) == "line one\n\tline two\r\n"
    assert check_text("Ñandú 🐢", "name") == "Ñandú 🐢"
    with pytest.raises(TextError, match="control characters"):
        check_text("two\nlines", "name")
    with pytest.raises(TextError, match="too long"):
        check_text("x" * 11, "name", max_length=10)


# --- uploaded file names are labels, never paths --------------------------------------------------------

UPLOAD_NAMES = [
    "../../../../tmp/evil.png",
    "/etc/passwd",
    "..\\..\\windows\\evil.png",
    "photos/../../outside.png",
    "evil\x00.png",
    "..",
    "CON",
    "\u202egnp.exe",
    "a" * 5000 + ".png",
    "new\nline.png",
]


def test_uploaded_file_names_never_reach_the_file_system(
    engine, store: PhotoStore, world: World, tmp_path: Path
) -> None:
    """The store names a file by its SHA-256 only; what the browser called it is kept as a short label."""
    store_prefix = str(store.root.relative_to(tmp_path))
    for i, name in enumerate(UPLOAD_NAMES):
        data = image_bytes(700 + i)
        before = _files_except_database(tmp_path)
        with session_scope(engine) as session:
            submission = submit_sighting(
                session,
                store,
                session.get(User, world.alice),
                data,
                candidates=[],
                new_individual_probability=None,
                original_name=name,
            )
        after = _files_except_database(tmp_path)
        sha = sha256_hex(data)
        assert set(after) - set(before) == {f"{store_prefix}/{sha[:2]}/{sha[2:4]}/{sha}.png"}, name
        assert {k: v for k, v in after.items() if k in before} == before
        with session_scope(engine) as session:
            photo = session.get(Photo, submission.photo.id)
        assert photo.path == f"{sha[:2]}/{sha[2:4]}/{sha}.png"
        assert photo.original_name == upload_label(name)
        assert "/" not in photo.original_name and "\\" not in photo.original_name
        assert photo.original_name.isprintable() and len(photo.original_name) <= MAX_LABEL_LENGTH


def _files_except_database(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in files_under(root).items() if not k.startswith("gallery.db")}


def test_upload_label() -> None:
    assert upload_label("../../etc/passwd") == "passwd"
    assert upload_label("C:\\Users\\me\\turtle.JPG") == "turtle.JPG"
    assert upload_label("..") == ""
    assert upload_label("evil\x00name.png") == "evilname.png"
    assert upload_label("\u202egnp.exe") == "gnp.exe"
    assert upload_label("bad \ud800 unicode.png") == "bad ? unicode.png"
    assert upload_label(None) == ""
    assert len(upload_label("a" * 1000)) == MAX_LABEL_LENGTH


def test_stored_paths_from_the_database_cannot_escape_the_store(tmp_path: Path) -> None:
    """Even a tampered photo row cannot make the store read or write outside its folder."""
    store = PhotoStore(tmp_path / "photos")
    for relpath in ("../../etc/passwd", "/etc/passwd", "ab/../../x.png", "", "a\x00b"):
        with pytest.raises(ValueError):
            store.path(relpath)
    with pytest.raises(ValueError):
        store.put(b"data", "/../../x")
    assert isinstance(ScuteError("x"), Exception)
