"""``ephys evaluate``: metrics of a trained run on its held-out test cells only.

Writes ``metrics.json`` (flat snake_case headline keys, then ``labels``, ``confusion_matrix``
with rows = true class, and ``per_class``) and ``predictions.csv`` (id, true, predicted,
``p_<label>`` per class). The test cells are those in the run's ``split.json``, which
``train`` never saw (neither for fitting nor for early stopping).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from .atomic import write_json
from .datasets import load_dataset
from .errors import EphysError
from .runfolder import write_predictions


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, label_names: list[str]) -> dict:
    """Headline and per-class metrics from true class indices and predicted probabilities.

    Parameters
    ----------
    y_true : np.ndarray of int, shape (n,)
    proba : np.ndarray of float, shape (n, n_classes), rows sum to 1
    label_names : list[str], length n_classes

    Returns
    -------
    dict with ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``roc_auc_ovr`` (None when
    fewer than two classes are present), ``n_test``, ``labels``, ``confusion_matrix`` and
    ``per_class`` {label: precision, recall, f1, support}.
    """
    from sklearn import metrics as skm

    k = len(label_names)
    y_pred = proba.argmax(axis=1)
    labels = list(range(k))
    present = np.unique(y_true)
    auc = None
    if present.size >= 2:
        try:
            if k == 2:
                auc = float(skm.roc_auc_score(y_true, proba[:, 1]))
            else:
                # one-vs-rest AUC averaged over the classes present in the test set
                aucs = [skm.roc_auc_score(y_true == c, proba[:, c]) for c in present]
                auc = float(np.mean(aucs))
        except ValueError:
            auc = None
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(np.mean([r[c] for c in present])),
        "macro_f1": float(np.mean([f[c] for c in present])),
        "roc_auc_ovr": auc,
        "n_test": int(y_true.size),
        "labels": list(label_names),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class": {label_names[c]: {"precision": float(p[c]), "recall": float(r[c]),
                                       "f1": float(f[c]), "support": int(s[c])} for c in labels},
    }


def evaluate_run(run_dir: str | Path, batch_size: int = 8) -> dict:
    """Evaluate the run's model (``model.keras``, or ``model.lgb.txt`` for LightGBM) on the run's
    test cells; write metrics.json, predictions.csv.

    A run that holds a comparison run in ``RUN/reference/`` (already evaluated) gets that run's
    metrics under ``reference`` in its metrics.json (the report shows both side by side).

    Raises
    ------
    EphysError
        Run folder without config.yaml / model / split.json, an empty test split, or an
        unreadable ``reference/metrics.json``.
    """
    from .models import load_predictor, run_model_spec
    from .registry import modality

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise EphysError("no config.yaml — run `ephys train` first", run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    spec = run_model_spec(cfg)
    model_file = spec.model_file if spec is not None else "model.keras"
    for name, hint in ((model_file, "training has not finished; re-run `ephys train` to resume"),
                       ("split.json", "run `ephys train` first")):
        if not (run / name).is_file():
            raise EphysError(f"no {name} — {hint}", run)
    ds = load_dataset(cfg["data"])
    split = json.loads((run / "split.json").read_text())
    pos = {sid: i for i, sid in enumerate(ds.ids)}
    missing = [s for s in split["test"] if s not in pos]
    if missing:
        raise EphysError(f"test cells {missing[:3]} are not in the dataset {ds.root}", run / "split.json")
    test = np.array([pos[s] for s in split["test"]], dtype=np.int64)
    if test.size == 0:
        raise EphysError("the run's test split is empty (too few labelled cells)", run / "split.json")
    label_names = list(cfg.get("label_names") or ds.label_names)
    mod = modality(ds.modality, ds.root / "manifest.json")
    batch_size = max(batch_size, mod.predict_batch_size)
    proba = load_predictor(run, cfg, ds, batch_size)(test)
    y_true = ds.y(test)
    metrics = classification_metrics(y_true, proba, label_names)
    metrics["split"] = "test"
    metrics["model"] = cfg.get("model")
    metrics["run_id"] = cfg.get("run_id", run.name)
    extra = mod.hook("extra_metrics")
    if extra is not None:
        metrics.update(extra(ds, test, proba, y_true) or {})
    ref = run / "reference" / "metrics.json"
    if ref.is_file():  # a comparison run kept inside this one (e.g. `ephys reproduce sts-baseline`)
        try:
            metrics["reference"] = json.loads(ref.read_text())
        except (OSError, ValueError) as exc:
            raise EphysError(f"unreadable reference metrics ({exc})", ref) from None
    write_json(run / "metrics.json", metrics)

    write_predictions(run / "predictions.csv", [ds.ids[i] for i in test], proba, label_names,
                      true=[label_names[yi] for yi in y_true])
    return metrics
