"""Figures and pictures for people: match overlays, confidence CDFs, ROC curves, histograms, thumbnails."""
