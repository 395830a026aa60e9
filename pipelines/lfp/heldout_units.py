"""Held-out units (one animal): does an LFP -> spiking map learnt on some units predict another?

For a single recording whose units all share the same LFP windows (``lfp-ratgps``), each unit in
turn is held out. On every blocked time fold (the same folds as the per-unit cross-validation:
:func:`ephys.pipelines.core.validation.blocked_time_folds` on the prediction-bin times, with
training windows closer than one window length to the test block dropped) the GLM baseline's
model (the registered ``glm``, :mod:`ephys.pipelines.lfp.glm`: standardised band amplitude and
phase features of the window's prediction bin -> logistic regression) is fitted on the *other*
units' spiking in the training blocks only (``--hparam train_on=other_units``), and scored on the
held-out unit's spikes in the test block. The folds, the fits and the pooling are the core's
(:func:`ephys.pipelines.core.crossval.cross_validate_models`; run folders under
``OUT/runs/<unit>/glm-other-units/``). No time block and no spike of the held-out unit is on the training side, so the number
measures whether the LFP -> spiking map generalises across units (a shared, e.g. population-rate
or phase, code), not how well one unit's own history is fitted.

The other units' targets are pooled: every (window, unit) pair of the training blocks is one
example (equivalently, each window enters once as "spike" weighted by the number of other units
that fired in its bin and once as "no spike" weighted by the number that did not); the two
classes are then re-weighted to equal total weight (the ``class_weight="balanced"`` of the
per-unit GLM). The decision threshold (Youden, :func:`ephys.pipelines.core.calibration.youden_threshold`)
is fitted on the training side's pooled (window, other unit) pairs by the trainer. Metrics per held-out unit and pooled over
all held-out units' test windows: :func:`ephys.pipelines.lfp.metrics.spike_metrics`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.crossval import CVModel, cross_validate_models
from ..core.datasets import load_dataset
from ..core.errors import EphysError
from .metrics import spike_metrics
from .sequence import load_index

__all__ = ["held_out_units"]

#: the CV model name, and the run folders' (``OUT/runs/<unit>/glm-other-units/<fold>``)
MODEL_NAME = "glm-other-units"


def held_out_units(prepared: str | Path, *, n_folds: int = 5, seed: int = 0, min_units: int = 2,
                   out: str | Path | None = None, log=print) -> dict:
    """Held-out-unit evaluation of the GLM on a prepared single-recording LFP folder (see the
    module docstring).

    Parameters
    ----------
    prepared : folder written by :func:`ephys.pipelines.lfp.sequence.prepare_lfp` with one recording
    n_folds : blocked time folds (gap = one window)
    min_units : units needed (the held-out one + at least one to train on)
    out : the run folders go to ``OUT/runs/`` (default: beside ``prepared``)

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
    from ..core.training import TrainConfig

    prepared = Path(prepared)
    index = load_index(prepared)
    if len(index["recordings"]) != 1:
        return {"skipped": f"{len(index['recordings'])} recordings: held-out units are for one animal"}
    units = sorted(index["units"])
    if len(units) < min_units:
        return {"skipped": f"{len(units)} unit(s): need at least {min_units}"}
    datasets = [load_dataset(prepared / index["units"][u]["dataset"]) for u in units]
    rows0 = [s["row"] for s in datasets[0].manifest["samples"]]
    for u, ds in zip(units[1:], datasets[1:]):
        if [s["row"] for s in ds.manifest["samples"]] != rows0:
            raise EphysError(f"unit {u} has other windows than {units[0]}: not one shared recording", prepared)
    model = CVModel(MODEL_NAME, TrainConfig(model="glm", seed=seed, hparams={"train_on": "other_units"}))
    res = cross_validate_models(datasets, [model], Path(out) if out is not None else prepared.parent, scheme="blocked",
                                n_folds=n_folds, seed=seed, names=units, threshold="run", log=log)
    held = res.held_out[MODEL_NAME]
    rec = index["recordings"][0]["name"]
    t_all = np.array([s["t_s"] for s in datasets[0].manifest["samples"]], dtype=np.float64)
    per_unit, ys, ps, ths, ts, ks = {}, [], [], [], [], []
    for j, u in enumerate(units):
        sel = held.dataset == j
        order = np.argsort(held.index[sel], kind="stable")  # time order, as one out-of-fold column
        y, p, thr = held.y[sel][order], held.p[sel][order], held.threshold[sel][order]
        t = t_all[held.index[sel][order]]
        key = f"{rec}/{u}"
        m = spike_metrics(y, p, thr, t, np.full(y.size, key))
        per_unit[key] = {**m, "trained_on": [x for x in units if x != u]}
        ys.append(y), ps.append(p), ths.append(thr), ts.append(t), ks.append(np.full(y.size, key))
    pooled = spike_metrics(np.concatenate(ys), np.concatenate(ps), np.concatenate(ths), np.concatenate(ts),
                           np.concatenate(ks))
    return {"what": "GLM trained on the other units' spiking in the training time blocks, scored on the held-out "
                    "unit's spikes in the test blocks (generalisation across units)",
            "model": "glm", "scheme": "blocked", "n_folds": n_folds, "gap_s": float(index["window_s"]),
            "roc_auc": pooled["roc_auc"], "pr_auc": pooled["pr_auc"], "positive_rate": pooled["positive_rate"],
            "pooled": pooled, "per_unit": per_unit}
