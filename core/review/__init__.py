"""The people's side of the gallery: accounts and sign-in sessions, sightings and votes, admin curation."""
