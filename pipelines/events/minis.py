"""``ephys reproduce minis``: the window classifier on miniML's real granule-cell windows.

Windows (``../shared/data/minis/*.h5``, O'Neill et al. 2025): scores 0 / 1 windows are kept
(2 = exclude is dropped), each window min-max scaled and flipped so events point up (the
recording's events are inward currents). They overlap in time, so cross-validation is in
contiguous blocks of ``raw_indices`` (:func:`ephys.pipelines.core.validation.blocked_time_folds`,
a gap of one window on both sides of each test block), never random. Each fold is trained by
:func:`ephys.pipelines.core.crossval.train_fold` and the folds pooled by
:func:`~ephys.pipelines.core.crossval.aggregate` (``OUT/runs/metrics.json``; the same two steps
as ``ephys train --fold K`` / ``ephys aggregate``), validation for early stopping being the last
20 % of the fold's training windows in time; we report pooled out-of-fold accuracy beside the majority-class baseline of
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

    from ..core import crossval
    from ..core.datasets import load_dataset
    from ..core.training import TrainConfig

    data, out = Path(data), Path(out)
    h5 = data if data.is_file() else next(iter(sorted(data.glob("*.h5"))), None)
    if h5 is None:
        raise EphysError("no miniML .h5 windows file here", data)
    man, raw = minis_dataset(h5, out / "windows")
    ds = load_dataset(out / "windows")
    y = ds.y(np.arange(len(ds.ids)))
    # one code path with `ephys train --fold K` + `ephys aggregate`: blocked folds of t_s =
    # raw_indices / fs with a gap of one window (the manifest's window_s); validation for early
    # stopping = the latest 20 % of each fold's training windows
    cv_dir = out / "runs"
    plan = crossval.plan_folds(ds, "blocked", n_folds=cv_folds, seed=seed)
    for k, f in enumerate(plan.folds):
        cfg = TrainConfig(model="cnn_bilstm", data=str(out / "windows"), epochs=epochs, batch_size=32, lr=2e-3,
                          seed=seed, patience=4, dropout=0.2, out=str(cv_dir), hparams={"width": 16, "lstm": 16})
        crossval.train_fold(cfg, fold=k, scheme="blocked", n_folds=cv_folds, log=log)
    pooled = crossval.aggregate([cv_dir], cv_dir)
    pos = {sid: i for i, sid in enumerate(ds.ids)}
    oof = np.full(y.size, np.nan)
    import csv

    with open(cv_dir / "predictions.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            oof[pos[row["id"]]] = float(row["p_event"])
    fold_rows = [{"fold": r["fold"], "held_out": r["held_out"], "n_test": r["n_test"], "accuracy": r["accuracy"],
                  "majority_baseline": r["majority_baseline_accuracy"], "roc_auc": r["roc_auc_ovr"]}
                 for r in pooled["per_fold"]]
    for r in fold_rows:
        log(f"{r['fold']}: accuracy {r['accuracy']:.3f} (majority {r['majority_baseline']:.3f}), n={r['n_test']}")
    pred = oof > 0.5
    maj = sum(r["majority_baseline"] * r["n_test"] for r in fold_rows) / y.size
    metrics = {"n_windows": int(y.size), "class_counts": man["class_counts"], "cv": f"{cv_folds} blocked folds of raw_indices, gap {WINDOW} samples",
               "accuracy": float(np.mean(pred == y)), "majority_baseline": float(maj),
               "balanced_accuracy": float(0.5 * (np.mean(pred[y == 1]) + np.mean(~pred[y == 0]))),
               "roc_auc": float(roc_auc_score(y, oof)), "folds": fold_rows,
               "reference": {"miniml_paper": {"accuracy": 0.979, "roc_auc": 0.998,
                                              "note": "O'Neill et al. 2025, their own held-out windows (larger training set)"}}}
    write_json(out / "metrics.json", metrics)
    _write_page(out, metrics)
    return metrics


def _write_page(out: Path, m: dict) -> Path:
    """``OUT/report.html``: pooled out-of-fold accuracy beside the majority baseline, every fold, miniML's
    published numbers (shared page builder); the cross-validation page is ``OUT/runs/report.html``."""
    from ..core.page import Card, Cards, Page, Table, Text, format_number as fmt

    ref = m["reference"]["miniml_paper"]
    page = Page("The window classifier on miniML's scored windows", kicker="ephys reproduce minis",
                pills=[f"{m['n_windows']} windows", m["cv"]])
    page.section("Summary", Cards([
        Card("accuracy (out of fold)", fmt(m["accuracy"]), f"majority baseline {fmt(m['majority_baseline'])}"),
        Card("balanced accuracy", fmt(m["balanced_accuracy"])),
        Card("ROC-AUC", fmt(m["roc_auc"]), f"miniML's paper: {fmt(ref['roc_auc'])}"),
    ]), Text(f"miniML reports accuracy {fmt(ref['accuracy'])} and ROC-AUC {fmt(ref['roc_auc'])}: {ref['note']}. "
             "The folds here are contiguous blocks of raw_indices with a gap of one window, so overlapping "
             "windows are never on both sides; each fold's page and the pooled cross-validation page are under runs/."))
    page.section("Every fold", Table([[r["fold"], str(r["held_out"]), str(r["n_test"]), fmt(r["accuracy"]),
                                       fmt(r["majority_baseline"]), fmt(r["roc_auc"])] for r in m["folds"]],
                                     header=["fold", "held out", "n", "accuracy", "majority baseline", "ROC-AUC"]))
    page.section("Windows", Table([[k, str(v)] for k, v in m["class_counts"].items()], header=["class", "windows"]))
    return page.write(out, md=True)
