"""The figures an evaluation reports: how often the right individual ranks first, and how well new
individuals are told from known ones (ROC and its area)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import mannwhitneyu


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Area under the ROC curve (positives should score higher; ties count half); nan without both classes."""
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    return float(mannwhitneyu(positives, negatives).statistic / (len(positives) * len(negatives)))


def roc_curve(positives: Sequence[float], negatives: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """False- and true-positive rates over every threshold, and :func:`auroc`: ``(fpr, tpr, auc)``."""
    pos = np.asarray(positives, dtype=np.float64).reshape(-1)
    neg = np.asarray(negatives, dtype=np.float64).reshape(-1)
    if pos.size == 0 or neg.size == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan")
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    tpr = np.concatenate([[0.0], [(pos >= t).mean() for t in thresholds]])
    fpr = np.concatenate([[0.0], [(neg >= t).mean() for t in thresholds]])
    return fpr, tpr, auroc(list(pos), list(neg))


def rank_of(identity: str, ranking: Sequence[str]) -> int:
    """0-based rank of ``identity`` in ``ranking``; past the end when it is not there."""
    return ranking.index(identity) if identity in ranking else len(ranking)
