"""Held-out units (one animal): does an LFP -> spiking map learnt on some units predict another?

For a single recording whose units all share the same LFP windows (``lfp-ratgps``), each unit in
turn is held out. On every blocked time fold (the same folds as the per-unit cross-validation:
:func:`ephys.pipelines.core.validation.blocked_time_folds` on the prediction-bin times, with
training windows closer than one window length to the test block dropped) the GLM baseline's
model (:mod:`ephys.pipelines.lfp.glm`: standardised band amplitude and phase features of the
window's prediction bin -> logistic regression with balanced classes) is fitted on the *other*
units' spiking in the training blocks only, and scored on the held-out unit's spikes in the test
block. No time block and no spike of the held-out unit is on the training side, so the number
measures whether the LFP -> spiking map generalises across units (a shared, e.g. population-rate
or phase, code), not how well one unit's own history is fitted.

The other units' targets are pooled: every (window, unit) pair of the training blocks is one
example (equivalently, each window enters once as "spike" weighted by the number of other units
that fired in its bin and once as "no spike" weighted by the number that did not); the two
classes are then re-weighted to equal total weight (the ``class_weight="balanced"`` of the
per-unit GLM). The decision threshold (Youden, :func:`ephys.pipelines.lfp.metrics.youden_threshold`)
is fitted on the training side's pooled predictions. Metrics per held-out unit and pooled over
all held-out units' test windows: :func:`ephys.pipelines.lfp.metrics.spike_metrics`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.datasets import load_dataset
from ..core.errors import EphysError
from ..core.validation import blocked_time_folds
from .glm import glm_feature_columns, glm_features
from .metrics import spike_metrics, youden_threshold
from .sequence import WINDOWS, bin_samples, load_index

__all__ = ["held_out_units"]


def _fit_weighted(X, n_pos, n_other, seed: int, C: float = 1.0):
    """Logistic regression on windows with ``n_pos`` of ``n_other`` units firing: each window twice
    (y=1 with weight n_pos, y=0 with weight n_other - n_pos), classes balanced by total weight."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    w1, w0 = n_pos.astype(np.float64), (n_other - n_pos).astype(np.float64)
    if w1.sum() == 0 or w0.sum() == 0:
        return None
    keep1, keep0 = w1 > 0, w0 > 0
    Xs = np.concatenate([X[keep1], X[keep0]])
    y = np.concatenate([np.ones(keep1.sum(), int), np.zeros(keep0.sum(), int)])
    w = np.concatenate([w1[keep1] / w1.sum(), w0[keep0] / w0.sum()]) * (y.size / 2)
    scaler = StandardScaler().fit(X)  # training windows only
    lr = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(scaler.transform(Xs), y, sample_weight=w)
    return lambda Z: lr.predict_proba(scaler.transform(Z))[:, 1]


def held_out_units(prepared: str | Path, *, n_folds: int = 5, seed: int = 0, min_units: int = 2, log=print) -> dict:
    """Held-out-unit evaluation of the GLM on a prepared single-recording LFP folder (see the
    module docstring).

    Parameters
    ----------
    prepared : folder written by :func:`ephys.pipelines.lfp.sequence.prepare_lfp` with one recording
    n_folds : blocked time folds (gap = one window)
    min_units : units needed (the held-out one + at least one to train on)

    Returns
    -------
    dict: ``what``, ``model`` (``glm``), ``scheme``, ``n_folds``, ``per_unit`` (held-out unit ->
    :func:`spike_metrics` dict, plus ``trained_on`` = the other units), ``pooled`` (all held-out
    units' test windows), and the flat pooled ``roc_auc``, ``pr_auc``, ``positive_rate``.
    ``{"skipped": reason}`` when the folder has several recordings or fewer than ``min_units`` units.

    Raises
    ------
    EphysError
        Not a prepared folder; units whose windows differ (not one shared recording).
    """
    from sklearn.metrics import roc_auc_score

    prepared = Path(prepared)
    index = load_index(prepared)
    if len(index["recordings"]) != 1:
        return {"skipped": f"{len(index['recordings'])} recordings: held-out units are for one animal"}
    units = sorted(index["units"])
    if len(units) < min_units:
        return {"skipped": f"{len(units)} unit(s): need at least {min_units}"}
    windows = np.load(prepared / WINDOWS, mmap_mode="r")
    rows = t = None
    Y = []
    for u in units:
        smp = load_dataset(prepared / index["units"][u]["dataset"]).manifest["samples"]
        r = np.array([s["row"] for s in smp], dtype=np.int64)
        if rows is None:
            rows, t = r, np.array([s["t_s"] for s in smp], dtype=np.float64)
        elif not np.array_equal(r, rows):
            raise EphysError(f"unit {u} has other windows than {units[0]}: not one shared recording", prepared)
        Y.append(np.array([s["label"] == "spike" for s in smp], dtype=np.int64))
    Y = np.stack(Y, axis=1)  # (n_windows, n_units)
    cols = glm_feature_columns(index["channels"])
    X = glm_features(windows, bin_samples(index), rows=rows, cols=cols)
    folds = blocked_time_folds(t, n_folds=n_folds, gap=float(index["window_s"]))
    p_oof = np.full(Y.shape, np.nan)
    thr_oof = np.full(Y.shape, np.nan)
    for j, u in enumerate(units):
        others = [k for k in range(len(units)) if k != j]
        for f in folds:
            n_pos = Y[f.train][:, others].sum(axis=1)
            model = _fit_weighted(X[f.train], n_pos, len(others), seed)
            if model is None:
                continue
            p_train = model(X[f.train])
            # the threshold from the training side's pooled (window, other unit) pairs
            thr = youden_threshold(np.concatenate([Y[f.train][:, k] for k in others]), np.tile(p_train, len(others)))
            p_oof[f.test, j] = model(X[f.test])
            thr_oof[f.test, j] = thr
        ok = ~np.isnan(p_oof[:, j])
        auc = roc_auc_score(Y[ok, j], p_oof[ok, j]) if np.unique(Y[ok, j]).size == 2 else float("nan")
        log(f"held-out unit {u}: GLM trained on the {len(others)} other unit(s), ROC-AUC {auc:.3f}")
    rec = index["recordings"][0]["name"]
    per_unit, ys, ps, ths, ts, ks = {}, [], [], [], [], []
    for j, u in enumerate(units):
        ok = ~np.isnan(p_oof[:, j])
        key = f"{rec}/{u}"
        m = spike_metrics(Y[ok, j], p_oof[ok, j], thr_oof[ok, j], t[ok], np.full(ok.sum(), key))
        per_unit[key] = {**m, "trained_on": [x for x in units if x != u]}
        ys.append(Y[ok, j]), ps.append(p_oof[ok, j]), ths.append(thr_oof[ok, j]), ts.append(t[ok])
        ks.append(np.full(ok.sum(), key))
    pooled = spike_metrics(np.concatenate(ys), np.concatenate(ps), np.concatenate(ths), np.concatenate(ts),
                           np.concatenate(ks))
    return {"what": "GLM trained on the other units' spiking in the training time blocks, scored on the held-out "
                    "unit's spikes in the test blocks (generalisation across units)",
            "model": "glm", "scheme": "blocked", "n_folds": n_folds, "gap_s": float(index["window_s"]),
            "roc_auc": pooled["roc_auc"], "pr_auc": pooled["pr_auc"], "positive_rate": pooled["positive_rate"],
            "pooled": pooled, "per_unit": per_unit}
