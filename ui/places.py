"""Widgets for sites and species: the Curate section that manages them, and the search-scope switch on Identify.

Every change goes through ``core.service.places`` (checks, audit); a refused one shows why and keeps what was typed.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.service import places, scope
from core.service.scope import SearchScope
from ui import context as ctx
from ui.components import md

FLASH = "places.flash"


def _number(label: str, value: float | None, key: str, **limits: float) -> float | None:
    return st.number_input(label, value=value, key=key, format="%.5f", placeholder="none", **limits)


def _do(what: str, action: Callable[[], object], message: str) -> None:
    if ctx.attempt(what, action) is not None:
        st.session_state[FLASH] = message
        st.rerun()


def sites_and_species(user) -> None:
    """Curate → Sites & species (admins): add, change and remove sites and species."""
    app = ctx.app()
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message, icon=":material/check_circle:")
    st.write(
        "Sites are the places animals are photographed: a centre and a radius say which coordinates belong to a "
        "site, and the region groups sites. Identify searches the individuals of the encounter's species seen in "
        "its region first; the gallery, the map and exports filter by them."
    )
    rows = places.site_rows(app)
    st.subheader("Sites")
    if rows:
        st.dataframe(
            [
                {
                    "Name": r.name,
                    "Region": r.region,
                    "Latitude": r.latitude,
                    "Longitude": r.longitude,
                    "Radius (km)": r.radius_km,
                    "Encounters": r.encounters,
                    "Photos": r.photos,
                }
                for r in rows
            ],
            hide_index=True,
        )
    by_id = {r.id: r for r in rows}
    choice = st.selectbox(
        "Site",
        [None, *by_id],
        format_func=lambda i: "New site" if i is None else by_id[i].label,
        key="places.site.pick",
    )
    site = by_id.get(choice) if choice is not None else None
    key = f"places.site.{choice or 'new'}"
    with st.form(key):
        name = st.text_input("Name", value=site.name if site else "", max_chars=120)
        region = st.text_input("Region", value=site.region if site else "", max_chars=120)
        left, middle, right = st.columns(3)
        with left:
            latitude = _number("Latitude (°)", site.latitude if site else None, f"{key}.lat")
        with middle:
            longitude = _number("Longitude (°)", site.longitude if site else None, f"{key}.lon")
        with right:
            radius = _number("Radius (km)", site.radius_km if site else None, f"{key}.radius")
        saved = st.form_submit_button("Add site" if site is None else "Save changes")
    if saved and site is None:
        _do(
            "adding the site",
            lambda: places.add_site(app, user, name, region, latitude, longitude, radius),
            f"Added the site {md(name.strip())}.",
        )
    elif saved and site is not None:
        _do(
            "changing the site",
            lambda: places.edit_site(app, user, site.id, name, region, latitude, longitude, radius),
            f"Saved the site {md(name.strip())}.",
        )
    if site is not None:
        used = site.encounters + site.photos
        if st.button(
            f"Remove {site.name}",
            key=f"{key}.remove",
            disabled=used > 0,
            help="Sites that encounters or photos refer to stay; rename them instead." if used else None,
        ):
            _do("removing the site", lambda: places.remove_site(app, user, site.id), f"Removed {md(site.name)}.")

    st.subheader("Species")
    species = places.species_rows(app)
    if species:
        st.dataframe(
            [{"Name": s.name, "Scientific name": s.scientific_name} for s in species],
            hide_index=True,
        )
    names = {s.id: s for s in species}
    picked = st.selectbox(
        "Species",
        [None, *names],
        format_func=lambda i: "New species" if i is None else names[i].label,
        key="places.species.pick",
    )
    kind = names.get(picked) if picked is not None else None
    key = f"places.species.{picked or 'new'}"
    with st.form(key):
        name = st.text_input("Name", value=kind.name if kind else "", max_chars=120)
        scientific = st.text_input("Scientific name", value=kind.scientific_name if kind else "", max_chars=200)
        saved = st.form_submit_button("Add species" if kind is None else "Save changes")
    if saved and kind is None:
        _do(
            "adding the species",
            lambda: places.add_species(app, user, name, scientific),
            f"Added the species {md(name.strip())}.",
        )
    elif saved and kind is not None:
        _do(
            "changing the species",
            lambda: places.edit_species(app, user, kind.id, name, scientific),
            f"Saved the species {md(name.strip())}.",
        )
    if kind is not None and st.button(f"Remove {kind.name}", key=f"{key}.remove"):
        _do("removing the species", lambda: places.remove_species(app, user, kind.id), f"Removed {md(kind.name)}.")


def search_scope(
    latitude: float | None = None, longitude: float | None = None, key: str = "identify.scope"
) -> set[int] | None:
    """Identify's "where to search": a species and a region (by default the region of the site where the photo was
    taken, and the species of the volunteer's latest encounter, or the only one the project keeps), with a switch to
    search everywhere.

    Returns the individuals a search compares with (core.service.scope.allowed_individuals; None: all).
    """
    app = ctx.app()
    choices = scope.scope_choices(app)
    if not choices.species and not choices.regions:
        return None  # no sites or species kept: nothing to restrict by
    default = scope.default_scope(app, latitude=latitude, longitude=longitude, user_id=ctx.require().id)
    species_default = default.species or (choices.species[0] if len(choices.species) == 1 else "")
    with st.expander("Where to search", expanded=False):
        left, right = st.columns(2)
        species_options = ["", *choices.species]
        region_options = ["", *choices.regions]
        species = left.selectbox(
            "Species",
            species_options,
            index=species_options.index(species_default) if species_default in species_options else 0,
            format_func=lambda s: s or "Any species",
            key=f"{key}.species",
        )
        region = right.selectbox(
            "Region",
            region_options,
            index=region_options.index(default.region) if default.region in region_options else 0,
            format_func=lambda r: r or "Any region",
            key=f"{key}.region",
        )
        everywhere = st.toggle(
            "Search everywhere",
            value=False,
            key=f"{key}.everywhere",
            help="Off: only individuals of this species seen in this region (and those of unknown species or place) "
            "are compared. On: the whole gallery. Search again after changing this.",
        )
    chosen = SearchScope(species or "", region or "", everywhere)
    st.caption(f"Searches compare with {md(chosen.describe())}.")
    return scope.allowed_individuals(app, chosen)


def region_filter(key: str) -> str:
    """A region picker for the gallery, the map and exports ("" = every region)."""
    choices = scope.scope_choices(ctx.app()).regions
    if not choices:
        return ""
    return st.selectbox("Region", ["", *choices], format_func=lambda r: r or "Every region", key=key) or ""


def species_filter(key: str) -> str:
    """A species picker from the species list ("" = every species)."""
    choices = scope.scope_choices(ctx.app()).species
    if not choices:
        return ""
    return st.selectbox("Species", ["", *choices], format_func=lambda s: s or "Every species", key=key) or ""
