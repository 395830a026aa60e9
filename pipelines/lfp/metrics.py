"""Spike-prediction metrics per unit and pooled (held-out windows only).

- ROC-AUC and PR-AUC (average precision, ``sklearn.metrics.average_precision_score``) with the
  positive rate beside it (a PR-AUC equal to the positive rate is chance);
- sensitivity, specificity and balanced accuracy at a threshold fitted on the training side of
  the fold (:func:`youden_threshold`, from :mod:`ephys.pipelines.core.calibration`: the ROC point
  maximising sensitivity + specificity - 1, Youden 1950);
- accuracy, only beside the majority-class baseline (predict "no spike" always);
- ``rate_correlation``: Pearson correlation of predicted and observed rates in 100 ms bins
  (Rasch et al. 2008, J Neurophysiol 99:1461): per recording and unit, the prediction bins are
  grouped by ``floor(t_s / 0.1 s)``; the predicted rate is the sum of P(spike) over a group, the
  observed rate the number of bins with a spike.
"""

from __future__ import annotations

import numpy as np

from ..core.calibration import youden_threshold

__all__ = ["youden_threshold", "spike_metrics", "rate_correlation"]


def rate_correlation(y, p, t_s, keys, rate_bin_s: float = 0.1) -> float | None:
    """Pearson r of predicted (sum of p) and observed (sum of y) counts in ``rate_bin_s`` bins,
    bins taken separately per ``keys`` (recording/unit); None when either side is constant."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    b = np.floor(np.asarray(t_s, dtype=np.float64) / rate_bin_s + 1e-9).astype(np.int64)
    k = np.asarray(keys).astype(str)
    _, inv = np.unique(np.char.add(np.char.add(k, "|"), b.astype(str)), return_inverse=True)
    obs = np.bincount(inv, weights=y)
    pred = np.bincount(inv, weights=p)
    if obs.size < 3 or obs.std() == 0 or pred.std() == 0:
        return None
    return float(np.corrcoef(obs, pred)[0, 1])


def spike_metrics(y, p, threshold, t_s, keys, rate_bin_s: float = 0.1) -> dict:
    """All metrics of held-out windows.

    Parameters
    ----------
    y : (n,) int 0/1, spike in the prediction bin
    p : (n,) float, predicted P(spike)
    threshold : float or (n,) float, the training-fold threshold of each window's model
    t_s : (n,) float, prediction-bin start, s
    keys : (n,) str, recording/unit of each window (rate bins never mix them)

    Returns
    -------
    dict: ``roc_auc``, ``pr_auc``, ``positive_rate``, ``balanced_accuracy``, ``sensitivity``,
    ``specificity``, ``accuracy``, ``majority_baseline_accuracy``, ``rate_correlation``, ``n``,
    ``n_positive`` (AUCs are None when only one class is present).
    """
    from sklearn import metrics as skm

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= np.asarray(threshold, dtype=np.float64)).astype(int)
    both = np.unique(y).size == 2
    pos, neg = y == 1, y == 0
    sens = float(pred[pos].mean()) if pos.any() else None
    spec = float(1 - pred[neg].mean()) if neg.any() else None
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else None,
        "pr_auc": float(skm.average_precision_score(y, p)) if both else None,
        "positive_rate": float(y.mean()) if y.size else None,
        "balanced_accuracy": (sens + spec) / 2 if sens is not None and spec is not None else None,
        "sensitivity": sens,
        "specificity": spec,
        "accuracy": float((pred == y).mean()) if y.size else None,
        "majority_baseline_accuracy": float(max(y.mean(), 1 - y.mean())) if y.size else None,
        "rate_correlation": rate_correlation(y, p, t_s, keys, rate_bin_s),
        "n": int(y.size),
        "n_positive": int(pos.sum()),
    }
