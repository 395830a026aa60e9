"""``ephys evaluate``: metrics of a trained run on its held-out test samples only.

Writes ``metrics.json`` (flat snake_case headline keys, then ``labels``, ``confusion_matrix``
with rows = true class, and ``per_class``) and ``predictions.csv`` (id, true, predicted,
``p_<label>`` per class). The test samples are those in the run's ``split.json``, which
``train`` never saw (neither for fitting nor for early stopping).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import check_writable_dir, write_json
from .datasets import check_same_dataset, load_dataset
from .errors import EphysError
from .runfolder import find_dataset, load_run_config, read_split, write_predictions


def prediction_warnings(proba: np.ndarray, label_names: list[str]) -> list[str]:
    """Warnings about predictions that make the metrics misleading.

    ``constant prediction``: every sample is predicted as the same class (a model that learnt
    nothing but the majority class, or collapsed); its accuracy equals that class's share.

    Parameters
    ----------
    proba : np.ndarray, shape (n, n_classes)
    label_names : list[str]

    Returns
    -------
    list[str], empty when nothing is wrong.
    """
    out = []
    if proba.shape[0] >= 2 and len(label_names) >= 2:
        pred = proba.argmax(axis=1)
        if np.unique(pred).size == 1:
            out.append(f"constant prediction: all {proba.shape[0]} test samples are predicted "
                       f"{label_names[int(pred[0])]!r}; the model separates nothing")
    return out


#: where a run keeps a decision threshold chosen on its validation part (``--decision val_macro_f1``)
DECISION_FILE = "decision.json"


def predict_labels(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices from probabilities: argmax, or for two classes ``p[:, 1] >= threshold``."""
    proba = np.asarray(proba)
    if threshold is None or proba.ndim != 2 or proba.shape[1] != 2:
        return proba.argmax(axis=1)
    return (proba[:, 1] >= threshold).astype(np.int64)


def read_threshold(run_dir: str | Path) -> float | None:
    """The run's validation-chosen threshold on the second class's probability, or None."""
    path = Path(run_dir) / DECISION_FILE
    if not path.is_file():
        return None
    try:
        return float(json.loads(path.read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EphysError(f"unreadable decision threshold ({exc})", path) from None


def choose_threshold(run_dir: str | Path, ds, val: np.ndarray, y_val: np.ndarray, batch_size: int = 256,
                     log=print) -> float | None:
    """Choose the decision threshold of a two-class run on its validation samples only.

    The threshold on p(second class) that maximises macro-F1 on the validation part (candidates
    0.01 ... 0.99; ties go to the one nearest 0.5) is written to ``RUN/decision.json`` and used by
    ``evaluate`` and ``predict``. Test samples are never read. Returns the threshold, or None
    (and writes nothing) when the run has not two classes or no validation sample of each.
    """
    from sklearn.metrics import f1_score

    from .models import load_predictor
    from .runfolder import load_run_config

    if len(ds.label_names) != 2 or np.unique(y_val).size < 2:
        log("decision threshold: needs two classes and validation samples of both; argmax kept")
        return None
    cfg = load_run_config(run_dir)
    p1 = load_predictor(run_dir, cfg, ds, max(batch_size, 256))(val)[:, 1]
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    scores = np.array([f1_score(y_val, (p1 >= t).astype(int), average="macro", zero_division=0) for t in grid])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    t = float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])
    at_half = float(f1_score(y_val, (p1 >= 0.5).astype(int), average="macro", zero_division=0))
    write_json(Path(run_dir) / DECISION_FILE, {
        "threshold": t, "on": f"p_{ds.label_names[1]}", "chosen_by": "macro-F1 on the validation part",
        "val_macro_f1": float(scores.max()), "val_macro_f1_at_0_5": at_half, "n_val": int(val.size)})
    log(f"decision threshold {t:.2f} on p_{ds.label_names[1]} (validation macro-F1 {scores.max():.3f}, "
        f"{at_half:.3f} at 0.5)")
    return t


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, label_names: list[str],
                           threshold: float | None = None, y_pred: np.ndarray | None = None) -> dict:
    """Headline and per-class metrics from true class indices and predicted probabilities.

    Parameters
    ----------
    y_true : np.ndarray of int, shape (n,)
    proba : np.ndarray of float, shape (n, n_classes), rows sum to 1
    label_names : list[str], length n_classes
    threshold : float or None
        Two classes only: predict the second class when its probability is >= threshold
        (a validation-chosen threshold, :func:`choose_threshold`); None: argmax.
    y_pred : np.ndarray of int, shape (n,), or None
        Predicted classes already decided (e.g. pooled folds, each with its own threshold);
        overrides ``threshold``.

    Returns
    -------
    dict with ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``roc_auc_ovr`` (None when
    fewer than two classes are present), ``n_test``, ``labels``, ``confusion_matrix`` and
    ``per_class`` {label: precision, recall, f1, support}.
    """
    from sklearn import metrics as skm

    k = len(label_names)
    y_pred = predict_labels(proba, threshold) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
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


def baseline_and_intervals(y_true: np.ndarray, proba: np.ndarray, label_names: list[str], threshold,
                           y_train: np.ndarray, groups: list, n_boot: int = 2000, seed: int = 0) -> dict:
    """What a test metric is read against: ``majority_baseline_accuracy`` (the accuracy of always
    answering the training part's most common class; the test part's own majority when the
    training labels are unknown) and 95 % bootstrap intervals ``accuracy_ci95`` /
    ``balanced_accuracy_ci95`` (percentiles of ``n_boot`` replicates that resample whole groups of
    the test part, e.g. participants or recordings, so correlated samples are not counted as
    independent; :func:`ephys.pipelines.core.compare.bootstrap_weights`). ``ci_resamples`` says
    over how many groups. Intervals cover the test samples, not another training run."""
    from .compare import _ci, bootstrap_weights, weighted_scores

    y_true = np.asarray(y_true, dtype=np.int64)
    k = len(label_names)
    pred = predict_labels(proba, threshold)
    ref = np.asarray(y_train, dtype=np.int64) if len(y_train) else y_true
    majority = int(np.bincount(ref, minlength=k).argmax())
    n_groups = len(set(map(str, groups)))
    if n_groups >= 5:
        what = f"{n_groups} groups of the test part, {n_boot} replicates"
    else:  # too few groups to resample: samples, and the interval says it is too narrow
        groups = [str(i) for i in range(len(y_true))]
        what = (f"{len(y_true)} test samples ({n_groups} group(s): too few to resample, so samples were; "
                f"correlated samples make this interval too narrow), {n_boot} replicates")
    w = bootstrap_weights(groups, n_boot=n_boot, seed=seed)
    sc = weighted_scores(w, y_true, pred, k)
    acc_ci = list(_ci(sc["accuracy"]))
    if n_groups < 5:  # Wilson's score interval: not degenerate when every sample is right (or wrong)
        from scipy.stats import binomtest

        ci = binomtest(int(np.sum(pred == y_true)), len(y_true)).proportion_ci(0.95, method="wilson")
        lo, hi = ci.low, ci.high
        acc_ci, what = [float(lo), float(hi)], what + "; accuracy: Wilson's score interval"
    return {"majority_baseline_accuracy": float(np.mean(y_true == majority)),
            "accuracy_ci95": acc_ci, "balanced_accuracy_ci95": list(_ci(sc["balanced_accuracy"])),
            "ci_resamples": what}


def evaluate_run(run_dir: str | Path, batch_size: int = 8) -> dict:
    """Evaluate the run's model (``model.keras``, or ``model.lgb.txt`` for LightGBM) on the run's
    test samples; write metrics.json, predictions.csv.

    A model whose target is not a class label (:attr:`ephys.pipelines.core.models.ModelSpec.target`)
    is scored by its spec's ``evaluator`` (metrics.json only, plus ``target``); without one,
    evaluate refuses.

    A run that holds a comparison run in ``RUN/reference/`` (already evaluated) gets that run's
    metrics under ``reference`` in its metrics.json (the report shows both side by side).

    Raises
    ------
    EphysError
        Run folder without config.yaml / model / split.json, an empty test split, an
        unreadable ``reference/metrics.json``, or a non-label target without an evaluator.
    """
    from .models import load_predictor, resolve_hook, run_model_spec
    from .nouns import nouns
    from .registry import modality

    run = Path(run_dir)
    cfg = load_run_config(run)
    spec = run_model_spec(cfg)
    model_file = spec.model_file if spec is not None else "model.keras"
    for name, hint in ((model_file, "training has not finished; re-run `ephys train` to resume"),
                       ("split.json", "run `ephys train` first")):
        if not (run / name).is_file():
            raise EphysError(f"no {name} — {hint}", run)
    check_writable_dir(run, "run folder")
    ds = load_dataset(find_dataset(run, cfg))
    check_same_dataset(cfg.get("dataset_fingerprint"), ds.manifest, run / "config.yaml", ds.root)
    split = read_split(run)
    pos = {sid: i for i, sid in enumerate(ds.ids)}
    missing = [s for s in split["test"] if s not in pos]
    if missing:
        raise EphysError(f"test {nouns(ds.manifest).samples} {missing[:3]} are not in the dataset {ds.root}",
                         run / "split.json")
    test = np.array([pos[s] for s in split["test"]], dtype=np.int64)
    if test.size == 0:
        raise EphysError(f"the run's test split is empty (too few labelled {nouns(ds.manifest).groups})",
                         run / "split.json")
    label_names = list(cfg.get("label_names") or ds.label_names)
    mod = modality(ds.modality, ds.root / "manifest.json")
    batch_size = max(batch_size, mod.predict_batch_size)
    if spec is not None and spec.target != "label":  # masks, reconstructions: the model's own metrics
        if spec.evaluator is None:
            raise EphysError(f"evaluate scores classifiers; {spec.name} learns a {spec.target} target and "
                             "declares no evaluator, so it does not apply", run)
        metrics = dict(resolve_hook(spec.evaluator)(run, cfg, ds, test, batch_size))
        metrics.update(split="test", model=cfg.get("model"), run_id=cfg.get("run_id", run.name), target=spec.target)
        write_json(run / "metrics.json", metrics)
        return metrics
    proba = load_predictor(run, cfg, ds, batch_size)(test)
    y_true = ds.y(test)
    if not np.isfinite(proba).all():
        raise EphysError("the model predicts NaN or Inf probabilities (its weights are not finite); "
                         "re-train it", run / model_file)
    threshold = read_threshold(run)
    metrics = classification_metrics(y_true, proba, label_names, threshold)
    if threshold is not None:
        metrics["decision_threshold"] = threshold
    metrics.update(baseline_and_intervals(y_true, proba, label_names, threshold, ds.y(
        np.array([pos[s] for s in split.get("train", []) if s in pos], dtype=np.int64)),
        [ds.groups[i] for i in test]))
    metrics["warnings"] = prediction_warnings(proba, label_names)
    metrics["constant_prediction"] = any(w.startswith("constant prediction") for w in metrics["warnings"])
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
                      true=[label_names[yi] for yi in y_true], threshold=threshold)
    return metrics


def summary_line(run_dir: str | Path, metrics: dict) -> str:
    """The one console line ``ephys evaluate`` prints, counting the test samples in the dataset's
    own word (e.g. ``test segments 1,236: accuracy 0.912  balanced accuracy ...``)."""
    from .nouns import dataset_nouns
    from .page import format_number

    try:
        words = dataset_nouns(find_dataset(run_dir, load_run_config(run_dir)))
    except EphysError:
        from .nouns import GENERIC as words
    n = metrics.get("n_test")
    count = f"{int(n):,}" if isinstance(n, (int, np.integer)) else "n/a"
    if metrics.get("target") not in (None, "label"):  # a model's own evaluator: its flat numbers
        nums = [(k, v) for k, v in metrics.items() if k != "n_test" and isinstance(v, (int, float, np.number))
                and not isinstance(v, bool)]
        return f"test {words.samples} {count}: " + "  ".join(f"{k} {format_number(v)}" for k, v in nums[:6])
    line = (f"test {words.samples} {count}: accuracy {format_number(metrics.get('accuracy'))}  balanced accuracy "
            f"{format_number(metrics.get('balanced_accuracy'))}  macro-F1 {format_number(metrics.get('macro_f1'))}  "
            f"ROC-AUC {format_number(metrics.get('roc_auc_ovr'))}")
    if metrics.get("accuracy_ci95"):
        lo, hi = metrics["accuracy_ci95"]
        line += f"  (accuracy 95 % CI [{format_number(lo)}, {format_number(hi)}]"
        if metrics.get("majority_baseline_accuracy") is not None:
            line += f"; majority baseline accuracy {format_number(metrics['majority_baseline_accuracy'])}"
        line += ")"
    if metrics.get("decision_threshold") is not None:
        line += f"  (decision threshold {format_number(metrics['decision_threshold'], 2)})"
    return line
