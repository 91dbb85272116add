"""The audit log as people read it: who did what, to which individual, and whether it can be undone.

Each entry becomes one plain sentence ("Merged T-1 into T-2 (3 photos moved).") rather than its action name
and fields, so a volunteer or an admin can read a history without knowing how it is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.review.curation import UNDOABLE
from core.store.audit import entries_for_individual
from core.store.models import AuditLog, Individual, User

#: What each kind of entry is, in a word or two, for a "What" column and a filter.
ACTION_LABELS: dict[str, str] = {
    "individual.rename": "Rename",
    "individual.notes": "Notes",
    "individual.species": "Species",
    "individual.retire": "Retire",
    "individual.merge": "Merge",
    "individual.split": "Split",
    "individual.tag_add": "Tag added",
    "individual.tag_remove": "Tag removed",
    "photo.move": "Move photo",
    "photo.remove": "Remove photo",
    "sighting.submit": "Sighting sent",
    "sighting.vote": "Vote",
    "sighting.conflict": "Conflict",
    "sighting.decide": "Decision",
    "encounter.create": "Encounter sent",
    "individual.follow": "Follow",
    "individual.unfollow": "Unfollow",
    "user.create": "New account",
    "user.role": "Role",
    "user.enable": "Account enabled",
    "user.disable": "Account disabled",
    "user.password": "Password",
    "catalogue.import": "Import",
    "site.create": "New site",
    "site.edit": "Site changed",
    "site.remove": "Site removed",
    "species.create": "New species",
    "species.edit": "Species changed",
    "species.remove": "Species removed",
}

#: The groups the Curate page filters by (the first part of an action's name).
KIND_LABELS: dict[str, str] = {
    "individual": "Individuals",
    "photo": "Photos",
    "sighting": "Sightings",
    "encounter": "Encounters",
    "user": "Accounts",
    "catalogue": "Imports",
    "site": "Sites",
    "species": "Species list",
}


@dataclass(frozen=True)
class AuditRow:
    id: int
    when: datetime
    user: str
    action: str  # as stored, e.g. "individual.merge.undo" (for filters)
    target: str
    summary: str  # one sentence, e.g. "Undid change #12: merged T-1 into T-2 (3 photos moved)."
    undoable: bool
    undone_by: int | None

    @property
    def label(self) -> str:
        """The kind of change in a word or two ("Merge", "Merge undone")."""
        return action_label(self.action)

    @property
    def kind(self) -> str:
        return self.action.split(".")[0]


def action_label(action: str) -> str:
    if action.endswith(".undo"):
        return f"{ACTION_LABELS.get(action[: -len('.undo')], 'Change')} undone"
    return ACTION_LABELS.get(action, action.replace(".", " ").replace("_", " ").capitalize())


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 photo``, ``3 photos``: the number with the right form of the word."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _share(probability: float) -> str:
    """As the candidate cards say it: an estimate is never a flat 100 % or 0 %."""
    return ">99%" if probability > 0.99 else "<1%" if probability < 0.01 else f"{probability:.0%}"


def _quoted(text: object) -> str:
    return f"“{text}”"


class _Names:
    """Codes of individuals and user names, looked up once per page of the log."""

    def __init__(self, codes: Mapping[int, str], users: Mapping[int, str]) -> None:
        self.codes, self.users = codes, users

    def code(self, individual_id: Any, fallback: str = "an individual no longer in the gallery") -> str:
        return self.codes.get(individual_id, fallback) if individual_id is not None else "no individual"

    def user(self, user_id: Any) -> str:
        return self.users.get(user_id, f"account {user_id}")


def _rename(entry: AuditLog, names: _Names) -> str:
    before, after = entry.payload.get("before") or {}, entry.payload.get("after") or {}
    parts = []
    if before.get("code") != after.get("code"):
        parts.append(f"changed the code {before.get('code')} to {after.get('code')}")
    old, new = before.get("name"), after.get("name")
    code = after.get("code") or names.code(entry.target_id)
    if old != new:
        if not new:
            parts.append(f"removed the name {_quoted(old)} of {code}")
        elif not old:
            parts.append(f"named {code} {_quoted(new)}")
        else:
            parts.append(f"renamed {code} from {_quoted(old)} to {_quoted(new)}")
    return " and ".join(parts) or f"saved {code} unchanged"


def _species(entry: AuditLog, names: _Names) -> str:
    species = (entry.payload.get("after") or {}).get("species")
    code = names.code(entry.target_id)
    return f"set the species of {code} to {_quoted(species)}" if species else f"cleared the species of {code}"


def _merge(entry: AuditLog, names: _Names) -> str:
    p = entry.payload
    moved = plural(len(p.get("photo_ids", [])), "photo")
    tags = f" and {plural(len(p['tag_ids']), 'tag')}" if p.get("tag_ids") else ""
    return f"merged {p.get('source_code')} into {p.get('target_code')} ({moved}{tags} moved)"


def _split(entry: AuditLog, names: _Names) -> str:
    p = entry.payload
    new = " (a new individual)" if p.get("created") else ""
    origin = names.code(p.get("source_id"))
    return f"split {plural(len(p.get('photo_ids', [])), 'photo')} off {origin} into {p.get('target_code')}{new}"


_TAG_WORDS = {"flipper": "flipper tag", "pit": "PIT tag", "alternate": "alternate id"}


def _tag(entry: AuditLog, names: _Names) -> str:
    added = entry.action == "individual.tag_add"
    tag = entry.payload.get("after" if added else "before") or {}
    what = f"the {_TAG_WORDS.get(tag.get('kind'), 'tag')} {tag.get('value')}"
    code = names.code(entry.target_id)
    return f"added {what} to {code}" if added else f"removed {what} from {code}"


def _move(entry: AuditLog, names: _Names) -> str:
    before, after = entry.payload.get("before") or {}, entry.payload.get("after") or {}
    origin = before.get("individual_id")
    start = f" from {names.code(origin)}" if origin is not None else ""
    return f"moved photo {entry.target_id}{start} to {names.code(after.get('individual_id'))}"


def _submit(entry: AuditLog, names: _Names) -> str:
    after = entry.payload.get("after") or {}
    candidates = after.get("candidates") or []
    side = after.get("side")
    where = f", {side} side" if side and side != "unknown" else ""
    best = ""
    if candidates:
        _rank, code, probability = candidates[0]
        best = f"; best candidate {code} at {_share(probability)}" if isinstance(probability, int | float) else ""
    return f"sent sighting #{entry.target_id} (photo {after.get('photo_id')}{where}{best})"


def _encounter(entry: AuditLog, names: _Names) -> str:
    after = entry.payload.get("after") or {}
    sightings = after.get("sightings") or []
    sides = [side for side in after.get("sides") or [] if side and side != "unknown"]
    where = f"; {', '.join(sides)}" if sides else ""
    listed = ", ".join(f"#{s}" for s in sightings)
    rows = (entry.payload.get("combined") or {}).get("rows") or []
    best = f"; best together {names.code(rows[0][0])} at {_share(rows[0][1])}" if rows else ""
    return f"sent encounter #{entry.target_id} with {plural(len(sightings), 'photo')} (sightings {listed}{where}{best})"


def _decision_words(decision: Any, individual: str) -> str:
    if decision == "same":
        return f"same as {individual}"
    if decision == "new":
        return "a new individual"
    return "unsure"


def _vote(entry: AuditLog, names: _Names) -> str:
    after = entry.payload.get("after") or {}
    words = _decision_words(after.get("decision"), names.code(after.get("individual_id")))
    return f"voted {_quoted(words)} on sighting #{entry.target_id}"


def _decide(entry: AuditLog, names: _Names) -> str:
    p = entry.payload
    code = p.get("code")
    outcome = f"the photo joined {code}" if p.get("decision") == "same" else f"a new individual, {code}"
    how = {"consensus": "the votes agreed", "admin": "an admin decided"}.get(p.get("how"), str(p.get("how")))
    return f"decided sighting #{entry.target_id}: {outcome} ({how})"


def _import(entry: AuditLog, names: _Names) -> str:
    after = entry.payload.get("after") or {}
    source = after.get("archive") or after.get("source")
    what = f"the catalogue {_quoted(source)}" if source else "a catalogue"
    stopped = " (stopped before the end)" if after.get("stopped") else ""
    return (
        f"imported {what}{stopped}: {plural(int(after.get('added') or 0), 'photo')} added, "
        f"{plural(int(after.get('individuals_created') or 0), 'new individual')}, "
        f"{plural(int(after.get('skipped') or 0), 'row')} skipped"
        + (f", {plural(int(after['tags_added']), 'tag')} added" if after.get("tags_added") else "")
    )


def _user_sentence(verb: str) -> Callable[[AuditLog, _Names], str]:
    def sentence(entry: AuditLog, names: _Names) -> str:
        return verb.format(user=names.user(entry.target_id), **(entry.payload.get("after") or {}))

    return sentence


def _user_role(entry: AuditLog, names: _Names) -> str:
    before, after = entry.payload.get("before") or {}, entry.payload.get("after") or {}
    return f"changed the role of {names.user(entry.target_id)} from {before.get('role')} to {after.get('role')}"


def _place_words(fields: Mapping[str, Any]) -> str:
    """A site's or species' recorded fields in words: "“Ras Baridi” (Red Sea, 24.27, 37.62, 5 km)"."""
    details = [str(fields[key]) for key in ("region", "scientific_name") if fields.get(key)]
    if fields.get("latitude") is not None and fields.get("longitude") is not None:
        details.append(f"{fields['latitude']:g}, {fields['longitude']:g}")
    if fields.get("radius_km") is not None:
        details.append(f"{fields['radius_km']:g} km")
    return _quoted(fields.get("name")) + (f" ({', '.join(details)})" if details else "")


def _place_edit(what: str) -> Callable[[AuditLog, _Names], str]:
    def sentence(entry: AuditLog, names: _Names) -> str:
        before, after = entry.payload.get("before") or {}, entry.payload.get("after") or {}
        renamed = entry.payload.get("individuals_renamed")
        follow = f"; {plural(int(renamed), 'individual')} renamed with it" if renamed else ""
        return f"changed the {what} {_place_words(before)} to {_place_words(after)}{follow}"

    return sentence


_SENTENCES: dict[str, Callable[[AuditLog, _Names], str]] = {
    "individual.rename": _rename,
    "individual.notes": lambda e, n: f"edited the notes of {n.code(e.target_id)}",
    "individual.species": _species,
    "individual.retire": lambda e, n: f"retired {n.code(e.target_id)}",
    "individual.merge": _merge,
    "individual.split": _split,
    "individual.tag_add": _tag,
    "individual.tag_remove": _tag,
    "photo.move": _move,
    "photo.remove": lambda e, n: f"removed photo {e.target_id} from the search",
    "sighting.submit": _submit,
    "sighting.vote": _vote,
    "sighting.conflict": lambda e, n: f"sighting #{e.target_id} got conflicting votes, so an admin decides",
    "sighting.decide": _decide,
    "encounter.create": _encounter,
    "individual.follow": lambda e, n: f"started following {n.code(e.target_id)}",
    "individual.unfollow": lambda e, n: f"stopped following {n.code(e.target_id)}",
    "user.create": lambda e, n: "created the account {username} ({role})".format(
        **{"username": "?", "role": "?", **(e.payload.get("after") or {})}
    ),
    "user.role": _user_role,
    "user.enable": _user_sentence("enabled the account {user}"),
    "user.disable": _user_sentence("disabled the account {user}"),
    "user.password": _user_sentence("set a new password for {user}"),
    "catalogue.import": _import,
    "site.create": lambda e, n: f"added the site {_place_words(e.payload.get('after') or {})}",
    "site.edit": _place_edit("site"),
    "site.remove": lambda e, n: f"removed the site {_place_words(e.payload.get('before') or {})}",
    "species.create": lambda e, n: f"added the species {_place_words(e.payload.get('after') or {})}",
    "species.edit": _place_edit("species"),
    "species.remove": lambda e, n: f"removed the species {_place_words(e.payload.get('before') or {})}",
}


def _clause(entry: AuditLog, names: _Names) -> str:
    """What the entry did, as a clause starting with a verb in lower case (no full stop)."""
    sentence = _SENTENCES.get(entry.action)
    if sentence is None:
        return f"{action_label(entry.action).lower()} on {entry.target_type} {entry.target_id}"
    try:
        return sentence(entry, names)
    except (AttributeError, KeyError, TypeError, ValueError):  # an old entry of another shape: still say something
        return f"{action_label(entry.action).lower()} on {entry.target_type} {entry.target_id}"


def describe(entry: AuditLog, names: _Names, reverted: Mapping[int, AuditLog] | None = None) -> str:
    """One sentence for one entry, starting with a capital and ending with a full stop."""
    if entry.action.endswith(".undo"):
        original = (reverted or {}).get(entry.reverts_id) if entry.reverts_id is not None else None
        what = f": {_clause(original, names)}" if original is not None else ""
        text = f"undid change #{entry.reverts_id}{what}"
    else:
        text = _clause(entry, names)
    return text[:1].upper() + text[1:] + "."


def _target_label(entry: AuditLog, names: _Names) -> str:
    if entry.target_type == "individual" and entry.target_id is not None:
        return f"individual {names.code(entry.target_id, str(entry.target_id))}"
    if entry.target_type == "sighting":
        return f"sighting #{entry.target_id}"
    if entry.target_type == "user":
        return f"account {names.user(entry.target_id)}"
    if entry.target_id is None:
        return entry.target_type
    return f"{entry.target_type} {entry.target_id}"


def audit_rows(
    session: Session, *, individual_id: int | None = None, user_id: int | None = None, limit: int = 100
) -> list[AuditRow]:
    """Newest first, with who did it, a one-sentence summary, and whether it can still be undone."""
    if individual_id is not None:
        entries = list(entries_for_individual(session, individual_id, newest_first=True, limit=limit))
    else:
        query = select(AuditLog).order_by(col(AuditLog.created_at).desc(), col(AuditLog.id).desc()).limit(limit)
        if user_id is not None:
            query = query.where(AuditLog.user_id == user_id)
        entries = list(session.exec(query).all())
    ids = [e.id for e in entries]
    undone = dict(session.exec(select(AuditLog.reverts_id, AuditLog.id).where(col(AuditLog.reverts_id).in_(ids))).all())
    reverted_ids = [e.reverts_id for e in entries if e.reverts_id is not None]
    reverted = {e.id: e for e in session.exec(select(AuditLog).where(col(AuditLog.id).in_(reverted_ids))).all()}
    users = usernames(session)
    names = _Names(individual_codes(session), users)
    return [
        AuditRow(
            id=e.id,  # type: ignore[arg-type]
            when=e.created_at,
            user=users.get(e.user_id, "system") if e.user_id is not None else "system",
            action=e.action,
            target=_target_label(e, names),
            summary=describe(e, names, reverted),  # type: ignore[arg-type]
            undoable=e.action in UNDOABLE and e.id not in undone,
            undone_by=undone.get(e.id),
        )
        for e in entries
    ]


def usernames(session: Session) -> dict[int, str]:
    return {u.id: u.username for u in session.exec(select(User)).all() if u.id is not None}


def individual_codes(session: Session) -> dict[int, str]:
    return {i.id: i.code for i in session.exec(select(Individual)).all() if i.id is not None}
