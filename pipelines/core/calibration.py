"""Post-hoc decisions on a two-class model's output, fitted on training-side data only.

- :func:`youden_threshold`: the decision threshold on P(second class) maximising sensitivity +
  specificity - 1 on training-side labels (Youden 1950, Cancer 3:32);
- :func:`prior_shift`: a class-balanced model's P(second class) mapped back to a given class prior
  (the prior-shift correction of Saerens, Latinne & Decaestecker 2002, Neural Comput 14:21).

The cross-validation of :func:`ephys.pipelines.core.crossval.cross_validate_models` applies both
per fold (options ``threshold="youden"`` and ``prior_shift=True``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["youden_threshold", "prior_shift"]


def youden_threshold(y, p) -> float:
    """Threshold on ``p`` maximising sensitivity + specificity - 1 on (training) labels ``y``.

    Parameters
    ----------
    y : (n,) int 0/1 labels; p : (n,) float scores (P(second class))

    Returns
    -------
    float, at most 1.0; 0.5 when ``y`` has a single class.
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(y).astype(int)
    if np.unique(y).size < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    k = int(np.argmax(tpr - fpr))
    return float(min(thr[k], 1.0))


def prior_shift(p: np.ndarray, threshold: float, positive_rate: float) -> tuple[np.ndarray, float]:
    """Map a class-balanced model's P(second class) back to the prior ``positive_rate``.

    A model fitted with balanced class weights outputs the posterior under a prior of 0.5. Adding
    ``log(pi / (1 - pi))`` to its log-odds, ``pi`` the positive rate of the training samples
    (before any subsampling), gives the posterior under the training prior (Saerens, Latinne &
    Decaestecker 2002, Neural Comput 14:21). Monotone, so a ROC-AUC and a decision at the mapped
    threshold are unchanged; outputs of models fitted on different data become comparable
    probabilities. ``p`` (n,) float in [0, 1] (clipped to [1e-7, 1 - 1e-7]); returns
    (mapped p as float64, mapped threshold).
    """
    eps = 1e-7
    pi = float(np.clip(positive_rate, eps, 1 - eps))
    shift = np.log(pi / (1 - pi))

    def f(v):
        v = np.clip(np.asarray(v, dtype=np.float64), eps, 1 - eps)
        return 1.0 / (1.0 + np.exp(-(np.log(v / (1 - v)) + shift)))

    return f(p), float(f(threshold))
