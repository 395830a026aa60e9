"""The GLM baseline: logistic regression on band amplitude and phase features of the same window.

Fitted inside the recipe (not a registered model kind): per window, for every LFP channel and
band, the mean Hilbert amplitude and the mean cos / sin of the phase over the prediction bin's
samples (the last ``feature_samples`` of the window), standardised with the training windows'
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


def glm_features(windows: np.ndarray, feature_samples: int) -> np.ndarray:
    """(n, n_time, C) windows -> (n, C) mean over the last ``feature_samples`` samples, float64."""
    return np.asarray(windows[:, -int(feature_samples):, :], dtype=np.float64).mean(axis=1)


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
