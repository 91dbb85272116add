"""The matching engine: photos in, ranked individuals out. No database, no Streamlit.

images (safe decoding) → features (extractors, cache) → matching (matchers) → orientation (turns) →
scoring (nulls, calibration) → index (the gallery in memory) → shortlist → search (:class:`Engine`).
"""
