"""Pictures that explain a match, for people: ``overlay`` (matched points drawn between two photos),
``charts`` (confidence CDF against the null, the score in one sentence, ROC and histograms) and
``pictures`` (thumbnails, crop previews, tiles). Images are numpy RGB arrays and figures are plotly
objects, so the app, a notebook and the tests all use the same code; nothing here imports Streamlit.
"""
