"""core.review.tags: flipper tags, PIT tags and alternate ids on individuals; refusals change nothing;
merges hand tags to the survivor and their undo gives them back; each change is one audited sentence."""

from __future__ import annotations

import pytest
from fixtures.world import World, snapshot
from sqlalchemy.engine import Engine
from sqlmodel import select

from core.review import tags
from core.review.curation import merge, split, undo
from core.review.tags import TagError, add_tag, remove_tag, tags_of
from core.review.users import PermissionDenied
from core.service.history import audit_rows
from core.store.db import session_scope
from core.store.fieldwork import IndividualTag
from core.store.models import AuditLog, User

pytestmark = pytest.mark.usefixtures("cheap_hashing")


def _user(session, ident: int) -> User:
    return session.get(User, ident)


def _tags(engine: Engine, individual_id: int) -> list[tuple[str, str]]:
    with session_scope(engine) as session:
        return [(t.kind, t.value) for t in tags_of(session, individual_id)]


def test_add_list_remove_audited_with_sentences(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        add_tag(session, _user(session, world.carol), world.t1, "flipper", "  AB123 ")
        add_tag(session, _user(session, world.admin), "T-0001", "pit", "985141000123456")
        add_tag(session, _user(session, world.admin), world.t1, "alternate", "IoT-7781")
    assert _tags(engine, world.t1) == [("flipper", "AB123"), ("pit", "985141000123456"), ("alternate", "IoT-7781")]
    with session_scope(engine) as session:
        remove_tag(session, _user(session, world.carol), world.t1, "flipper", "ab123")  # case does not matter
    assert _tags(engine, world.t1) == [("pit", "985141000123456"), ("alternate", "IoT-7781")]
    with session_scope(engine) as session:
        actions = [e.action for e in session.exec(select(AuditLog).order_by(AuditLog.id)).all()]
        assert actions[-4:] == ["individual.tag_add"] * 3 + ["individual.tag_remove"]
        summaries = [r.summary for r in audit_rows(session, individual_id=world.t1)]
    assert summaries[0] == "Removed the flipper tag AB123 from T-0001."
    assert "Added the PIT tag 985141000123456 to T-0001." in summaries
    assert "Added the alternate id IoT-7781 to T-0001." in summaries


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("collar", "AB1", "not a kind of tag"),
        ("flipper", "", "is empty"),
        ("flipper", "   ", "is empty"),
        ("flipper", "x" * 129, "at most 128 characters"),
        ("flipper", "AB\n12", "control characters"),
        ("flipper", "AB\x0012", "control characters"),
        ("pit", "AB\ud80012", "broken Unicode"),
        ("pit", 12345, "must be text"),
        ("pit", "AB\u00ad12", "cannot be printed"),  # a soft hyphen: invisible on a field sheet
        ("alternate", "AB;12", "may not contain ';'"),
    ],
)
def test_bad_tags_are_refused_and_change_nothing(engine: Engine, world: World, kind, value, message) -> None:
    before = snapshot(engine)
    with pytest.raises(TagError, match=message), session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), world.t1, kind, value)
    assert snapshot(engine) == before


def test_a_duplicate_tag_names_the_individual_that_has_it(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), world.t1, "flipper", "AB123")
    before = snapshot(engine)
    with pytest.raises(TagError, match="flipper tag AB123 is on T-0001"), session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), world.t2, "flipper", "ab123")
    with pytest.raises(TagError, match="is already on T-0001"), session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), world.t1, "flipper", "AB123")
    assert snapshot(engine) == before
    with session_scope(engine) as session:  # the same number as another kind is another tag
        add_tag(session, _user(session, world.admin), world.t2, "pit", "AB123")
    assert _tags(engine, world.t2) == [("pit", "AB123")]


def test_who_may_edit_and_what_cannot_be_removed(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), world.t1, "flipper", "AB123")
    before = snapshot(engine)
    with pytest.raises(PermissionDenied), session_scope(engine) as session:
        add_tag(session, _user(session, world.alice), world.t1, "flipper", "ZZ1")  # a volunteer
    with pytest.raises(PermissionDenied), session_scope(engine) as session:
        remove_tag(session, _user(session, world.alice), world.t1, "flipper", "AB123")
    with pytest.raises(TagError, match="T-0002 has no flipper tag AB123"), session_scope(engine) as session:
        remove_tag(session, _user(session, world.admin), world.t2, "flipper", "AB123")
    with pytest.raises(TagError, match="no individual"), session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), "T-9999", "flipper", "ZZ1")
    assert snapshot(engine) == before


def test_merge_moves_tags_to_the_survivor_and_undo_gives_them_back(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        admin = _user(session, world.admin)
        add_tag(session, admin, world.t1, "flipper", "AB123")
        add_tag(session, admin, world.t1, "alternate", "IoT-1")
        add_tag(session, admin, world.t2, "pit", "P-9")
        merged = merge(session, admin, world.t1, world.t2).id
    assert _tags(engine, world.t1) == []
    assert _tags(engine, world.t2) == [("flipper", "AB123"), ("pit", "P-9"), ("alternate", "IoT-1")]
    with session_scope(engine) as session:
        assert audit_rows(session, individual_id=world.t2)[0].summary == (
            "Merged T-0001 into T-0002 (2 photos and 2 tags moved)."
        )
    before = snapshot(engine)
    with pytest.raises(TagError, match="T-0001 was merged into T-0002"), session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), world.t1, "flipper", "NEW1")
    assert snapshot(engine) == before
    with session_scope(engine) as session:  # one of the moved tags is taken off the survivor meanwhile
        remove_tag(session, _user(session, world.admin), world.t2, "alternate", "IoT-1")
        undo(session, _user(session, world.admin), merged)
    assert _tags(engine, world.t1) == [("flipper", "AB123")]
    assert _tags(engine, world.t2) == [("pit", "P-9")]


def test_split_leaves_tags_on_the_individual_split_from(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), world.t1, "flipper", "AB123")
        split(session, _user(session, world.admin), world.t1, [world.photos[0]])
        assert len(session.exec(select(IndividualTag)).all()) == 1
    assert _tags(engine, world.t1) == [("flipper", "AB123")]


def test_search_and_duplicates_of_an_import(engine: Engine, world: World) -> None:
    with session_scope(engine) as session:
        add_tag(session, _user(session, world.admin), world.t1, "pit", "985141000123456")
        add_tag(session, _user(session, world.admin), world.t2, "flipper", "AB123")
    with session_scope(engine) as session:
        assert tags.individuals_tagged(session, "1000123") == {world.t1}
        assert tags.individuals_tagged(session, "ab1") == {world.t2}
        assert tags.individuals_tagged(session, "  ") == set()
        assert tags.tags_by_individual(session) == {
            world.t1: {"pit": ["985141000123456"]},
            world.t2: {"flipper": ["AB123"]},
        }
        assert tags.duplicate_in(session, [("flipper", "ab123", "T-0002")]) is None
        assert tags.duplicate_in(session, [("pit", "Z", "T-0003"), ("flipper", "ab123", "T-0001")]) == (
            1,
            "the flipper tag ab123 is already on T-0002",
        )
        assert tags.duplicate_in(session, [("pit", "X1", "T-0005"), ("pit", "x1", "T-0006")]) == (
            1,
            "the PIT tag x1 is also given to T-0005",
        )
        assert tags.split_cell(" AB1 ;; ab2;") == ["AB1", "ab2"]


def test_cli_tags_add_list_remove(db_url: str, engine: Engine, world: World, capsys) -> None:
    from core import cli

    assert cli.main(["tags", "add", "T-0001", "flipper", " AB123 ", "--user", "carol", "--db", db_url]) == 0
    assert "Added the flipper tag AB123 to T-0001" in capsys.readouterr().out
    assert cli.main(["tags", "add", "T-0002", "flipper", "ab123", "--user", "admin", "--db", db_url]) == 2
    assert "error: The flipper tag AB123 is on T-0001" in capsys.readouterr().err
    assert cli.main(["tags", "add", "T-0002", "pit", "P1", "--user", "alice", "--db", db_url]) == 2  # a volunteer
    assert capsys.readouterr().err.startswith("error: ")
    assert cli.main(["tags", "list", "T-0001", "--db", db_url]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["flipper", "AB123"]
    assert cli.main(["tags", "remove", "T-0001", "flipper", "AB123", "--user", "carol", "--db", db_url]) == 0
    assert cli.main(["tags", "list", "T-0001", "--db", db_url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "T-0001 has no tags."
    assert _tags(engine, world.t1) == []
