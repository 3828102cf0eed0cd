"""Evaluation metrics: ROC AUC (rank formula, O(n log n)) and log loss."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney rank formula.

    With R the ranks of the scores (1-based, ties get their average rank), n1
    positives and n0 negatives: AUC = (sum of R over positives - n1(n1+1)/2) / (n1 n0),
    the probability that a random positive scores above a random negative,
    ties counting one half. NaN when only one class is present.
    """
    y = np.asarray(y).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    pos = y > 0.5
    n1 = int(pos.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)  # average ranks for ties, float64
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy -[y log p + (1-y) log(1-p)], p clipped to [eps, 1-eps] (float64)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), eps, 1.0 - eps)
    if y.size == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))
