"""The GLM baseline: logistic regression on band amplitude and phase features of the same window.

Fitted inside the recipe (not a registered model kind): per window, for every LFP channel and
band, the mean Hilbert amplitude and the mean cos / sin of the phase over the prediction bin's
samples (:func:`ephys.pipelines.lfp.sequence.bin_samples`), standardised with the training windows'
statistics (``StandardScaler``) and fed to ``sklearn.linear_model.LogisticRegression`` with
balanced class weights. cos/sin of the phase make a von Mises-shaped phase tuning log-linear,
the classical spike-phase GLM.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import EphysError

__all__ = ["glm_feature_columns", "glm_features", "fit_glm"]

_KINDS = ("amplitude", "phase_cos", "phase_sin")


def glm_feature_columns(channels: list[dict], drop_band: str | None = None) -> list[int]:
    """Indices of the input channels the GLM reads (amplitude and phase), without ``drop_band``.

    Raises
    ------
    EphysError
        The dataset has no amplitude or phase input (prepare it with ``inputs`` amplitude/phase).
    """
    cols = [i for i, c in enumerate(channels) if c["kind"] in _KINDS and c["band"] != drop_band]
    if not cols:
        raise EphysError("the GLM needs amplitude or phase inputs; prepare with inputs amplitude,phase")
    return cols


def glm_features(windows: np.ndarray, bin_slice: slice, rows: np.ndarray | None = None,
                 cols: list[int] | None = None, chunk: int = 4096) -> np.ndarray:
    """(n_windows, n_time, C) windows (a memmap is read ``chunk`` windows at a time) -> (n, C')
    float64: the mean over the prediction bin's samples ``bin_slice``, of the windows ``rows``
    (default all) and the input channels ``cols`` (default all)."""
    n = windows.shape[0] if rows is None else len(rows)
    out = np.empty((n, windows.shape[2] if cols is None else len(cols)), dtype=np.float64)
    for k in range(0, n, chunk):
        w = windows[k:k + chunk] if rows is None else windows[rows[k:k + chunk]]
        w = np.asarray(w[:, bin_slice, :], dtype=np.float64)
        out[k:k + chunk] = (w if cols is None else w[:, :, cols]).mean(axis=1)
    return out


def fit_glm(X: np.ndarray, y: np.ndarray, seed: int = 0, C: float = 1.0):
    """Fit ``StandardScaler -> LogisticRegression(class_weight="balanced")`` on training windows.

    Returns the fitted sklearn ``Pipeline`` (``predict_proba(X)[:, 1]`` = P(spike)).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=2000,
                                                               random_state=seed))
    return model.fit(X, y)
