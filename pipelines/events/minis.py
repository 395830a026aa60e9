"""``ephys reproduce minis``: the window classifier on miniML's real granule-cell windows.

Windows (``../shared/data/minis/*.h5``, O'Neill et al. 2025): scores 0 / 1 windows are kept
(2 = exclude is dropped), each window min-max scaled and flipped so events point up (the
recording's events are inward currents). They overlap in time, so cross-validation is in
contiguous blocks of ``raw_indices`` (:func:`ephys.pipelines.core.validation.blocked_time_folds`,
a gap of one window on both sides of each test block), never random. Each fold is trained with
the core's ``train()`` (validation for early stopping: the last 20 % of the fold's training
windows in time); we report pooled out-of-fold accuracy beside the majority-class baseline of
each test block, and ROC-AUC.

The real ABF is analysed with ``ephys events detect`` (models of the ``events-sim`` run, which
are trained on mEPSC-like traces at the ABF's 20 kHz), see :mod:`.apply`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.atomic import write_json
from ..core.errors import EphysError
from .readers import read_miniml_h5
from .windows import LABEL_NAMES, WINDOW, write_window_dataset

__all__ = ["minis_dataset", "run_minis"]

#: sampling rate of miniML's granule-cell example recording (its paper: 50 kHz acquisition)
MINIS_FS_HZ = 50_000.0


def _scaled(x: np.ndarray, sign: float) -> np.ndarray:
    y = sign * np.asarray(x, dtype=np.float64)
    lo = y.min(axis=1, keepdims=True)
    rng = np.ptp(y, axis=1, keepdims=True)
    return (np.where(rng > 0, (y - lo) / np.where(rng > 0, rng, 1), 0.0)).astype(np.float32)[..., None]


def minis_dataset(h5: str | Path, out: str | Path, polarity: str = "negative") -> tuple[dict, np.ndarray]:
    """Prepare the labelled windows (scores 0/1) as an ``event_window`` dataset sorted by
    ``raw_indices``; returns (manifest, raw_indices of the kept windows)."""
    w = read_miniml_h5(h5)
    if w.x.shape[1] != WINDOW:
        raise EphysError(f"field events: windows of {w.x.shape[1]} samples, expected {WINDOW}", h5)
    keep = np.flatnonzero(w.scores != 2)
    keep = keep[np.argsort(w.raw_indices[keep], kind="stable")]
    if keep.size < 10:
        raise EphysError(f"only {keep.size} windows scored 0 or 1", h5)
    x = _scaled(w.x[keep], 1.0 if polarity == "positive" else -1.0)
    labels = [LABEL_NAMES[int(s)] for s in w.scores[keep]]
    group = (w.cell_label[0] if w.cell_label else Path(h5).stem)
    groups = [group] * keep.size
    ids = [f"w{int(i):04d}" for i in keep]
    man = write_window_dataset(out, x, labels, groups, w.raw_indices[keep] / MINIS_FS_HZ, MINIS_FS_HZ,
                               provenance={"source": str(h5), "kept_scores": [0, 1], "polarity": polarity},
                               ids=ids)
    return man, w.raw_indices[keep]


def run_minis(data: str | Path, out: str | Path, *, seed: int = 0, epochs: int = 15, cv_folds: int = 5,
              log=print, abf: str | Path | None = None) -> dict:
    """The ``minis`` recipe (module docstring); returns the metrics dict."""
    from sklearn.metrics import roc_auc_score

    from ..core import validation
    from ..core.datasets import load_dataset
    from ..core.models import load_keras_model
    from ..core.training import TrainConfig, train as core_train

    data, out = Path(data), Path(out)
    h5 = data if data.is_file() else next(iter(sorted(data.glob("*.h5"))), None)
    if h5 is None:
        raise EphysError("no miniML .h5 windows file here", data)
    man, raw = minis_dataset(h5, out / "windows")
    ds = load_dataset(out / "windows")
    y = ds.y(np.arange(len(ds.ids)))
    folds = validation.blocked_time_folds(raw.astype(np.float64), n_folds=cv_folds, gap=float(WINDOW),
                                          prefix="block")
    oof = np.full(y.size, np.nan)
    fold_rows = []
    for f in folds:
        cut = int(round(0.8 * f.train.size))
        fit, val = f.train[:cut], f.train[cut:]  # time order: validation = the latest training windows
        cfg = TrainConfig(model="cnn_bilstm", data=str(out / "windows"), epochs=epochs, batch_size=32, lr=2e-3,
                          seed=seed, patience=4, dropout=0.2, out=str(out / "runs" / f.name), split=f.name,
                          hparams={"width": 16, "lstm": 16})
        run = core_train(cfg, split_ids=validation.fold_split_ids(ds.ids, fit, val, f.test), log=log)
        model = load_keras_model(run / "model.keras")
        p = model.predict(ds.load(f.test), verbose=0)[:, 1]
        oof[f.test] = p
        yt = y[f.test]
        acc = float(np.mean((p > 0.5) == yt))
        maj_class = int(np.bincount(y[f.train], minlength=2).argmax())
        fold_rows.append({"fold": f.name, "held_out": f.held_out, "n_test": int(f.test.size),
                          "accuracy": acc, "majority_baseline": float(np.mean(yt == maj_class)),
                          "roc_auc": float(roc_auc_score(yt, p)) if len(set(yt)) == 2 else None})
        log(f"{f.name}: accuracy {acc:.3f} (majority {fold_rows[-1]['majority_baseline']:.3f}), n={f.test.size}")
    pred = oof > 0.5
    maj = sum(r["majority_baseline"] * r["n_test"] for r in fold_rows) / y.size
    metrics = {"n_windows": int(y.size), "class_counts": man["class_counts"], "cv": f"{cv_folds} blocked folds of raw_indices, gap {WINDOW} samples",
               "accuracy": float(np.mean(pred == y)), "majority_baseline": float(maj),
               "balanced_accuracy": float(0.5 * (np.mean(pred[y == 1]) + np.mean(~pred[y == 0]))),
               "roc_auc": float(roc_auc_score(y, oof)), "folds": fold_rows,
               "reference": {"miniml_paper": {"accuracy": 0.979, "roc_auc": 0.998,
                                              "note": "O'Neill et al. 2025, their own held-out windows (larger training set)"}}}
    write_json(out / "metrics.json", metrics)
    return metrics
