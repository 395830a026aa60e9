"""LightGBM on feature-table datasets: training with cross-validated model selection, prediction.

The registry's ``lightgbm`` model (``ephys train --model lightgbm`` on any dataset of modality
``features``, see :mod:`ephys.pipelines.feature_table`). It writes the same run folder as the
Keras models — ``config.yaml``, ``split.json``, ``train_summary.json`` — with the model as
LightGBM's own text format (``model.lgb.txt``, no pickle) plus ``model_meta.json`` (the feature
columns it reads, the imputation, the class order). ``evaluate``, ``explain`` (SHAP) and
``report`` read those.

Model selection (``--hparam tune=true``) is k-fold cross-validation **inside the training
split** (stratified, grouped: a group never sits in two folds), scored by balanced accuracy; the
test split is not read until ``ephys evaluate``. It searches in two stages, each candidate listed
with its score in ``RUN/cv_results.csv``:

1. feature set (every set the manifest offers in ``feature_sets``, plus all features) ×
   imputation (LightGBM's own missing-value handling, or training-fold medians), with
   LightGBM's default settings;
2. on the winner: the settings in :data:`CANDIDATE_SETTINGS` × class weighting (none or
   ``balanced``).

LightGBM: Ke et al. 2017, *LightGBM: A Highly Efficient Gradient Boosting Decision Tree*, NeurIPS.
The STS paper's baseline (Amprimo et al. 2025) is LightGBM with default settings.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from ...core.atomic import atomic_path, write_json, write_text
from ...core.layouts import FEATURES
from ...core.errors import EphysError
from ...core.nouns import nouns

MODEL_FILE = "model.lgb.txt"
META_FILE = "model_meta.json"
CV_FILE = "cv_results.csv"

#: LightGBM's own defaults (lightgbm.LGBMClassifier, v4), the STS baseline's settings
LIGHTGBM_DEFAULTS = {
    "learning_rate": 0.1,
    "n_estimators": 100,
    "num_leaves": 31,
    "min_child_samples": 20,
    "colsample_bytree": 1.0,
    "subsample": 1.0,
    "reg_lambda": 0.0,
    "class_weight": None,
}
#: what ``tune`` tries in stage 2 (name -> settings over the defaults): slower learning with
#: more, smaller trees and feature/row subsampling, the usual remedies for a few thousand rows
CANDIDATE_SETTINGS = {
    "defaults": {},
    "lr0.05-400-leaves15-sub": {"learning_rate": 0.05, "n_estimators": 400, "num_leaves": 15,
                                "colsample_bytree": 0.5, "subsample": 0.8},
    "lr0.05-400-leaves31-sub": {"learning_rate": 0.05, "n_estimators": 400, "num_leaves": 31,
                                "colsample_bytree": 0.5, "subsample": 0.8},
}
IMPUTATIONS = ("native", "median")


def _hparams() -> dict:
    """The ``lightgbm`` model's hyper-parameters (``--hparam``), declared on its ModelSpec."""
    from ...core.models import HParam

    d = LIGHTGBM_DEFAULTS
    return {
        "learning_rate": HParam(d["learning_rate"], float, "shrinkage of each tree's contribution",
                                min=0, min_exclusive=True),
        "n_estimators": HParam(d["n_estimators"], int, "boosting rounds (trees, per class when more than 2)", min=1),
        "num_leaves": HParam(d["num_leaves"], int, "most leaves per tree", min=2),
        "min_child_samples": HParam(d["min_child_samples"], int, "fewest training rows in a leaf", min=0),
        "colsample_bytree": HParam(d["colsample_bytree"], float, "fraction of the features each tree sees",
                                   min=0, max=1, min_exclusive=True),
        "subsample": HParam(d["subsample"], float, "fraction of the rows each tree sees (bagging every round when < 1)",
                            min=0, max=1, min_exclusive=True),
        "reg_lambda": HParam(d["reg_lambda"], float, "L2 penalty on leaf values", min=0),
        "class_weight": HParam(d["class_weight"], str, "none (not set) or balanced (weights inverse to class frequency)",
                               choices=("none", "balanced")),
        "feature_set": HParam(None, str, "a feature set the dataset manifest offers (not set: all features)"),
        "features": HParam(None, str, "explicit feature names, comma-separated (overrides feature_set)", many=True),
        "imputation": HParam("native", str, "native: LightGBM's missing-value branches; median: training medians",
                             choices=IMPUTATIONS),
        "tune": HParam(False, bool, "choose feature set, imputation and settings by cross-validation on the "
                       "training split"),
        "cv_folds": HParam(5, int, "folds of the cross-validation inside the training split", min=2),
    }


def resolve_hparams(hparams: dict) -> dict:
    """Defaults + ``hparams``, checked (:func:`ephys.pipelines.core.models.check_hparams` against the
    ``lightgbm`` declaration), with ``class_weight`` ``"none"`` as None.

    Raises
    ------
    EphysError
        An unknown key (the message lists the accepted ones) or a value of the wrong kind.
    """
    from ...core.models import check_hparams

    hp = check_hparams(LIGHTGBM_SPEC, hparams, where="")
    if hp["class_weight"] == "none":
        hp["class_weight"] = None
    return hp


def build_lightgbm(input_shape, n_classes: int, **hparams):
    """Registry builder: an unfitted ``lightgbm.LGBMClassifier`` for ``n_classes`` classes.

    ``input_shape`` is ``(n_features,)``; ``hparams`` as declared (checked by ``build_model``).
    """
    return make_estimator(resolve_hparams(hparams), seed=0)


def make_estimator(hp: dict, seed: int, n_jobs: int = 1):
    """``LGBMClassifier`` with the model settings of ``hp``, deterministic for ``seed``.

    One thread by default: on tables of a few thousand rows a fit takes about a second, and
    OpenMP threads on a busy machine made it 10-40x slower here (2 cores, other jobs running).
    """
    import lightgbm as lgb

    settings = {k: hp[k] for k in LIGHTGBM_DEFAULTS}
    if settings["subsample"] < 1.0:
        settings["subsample_freq"] = 1
    return lgb.LGBMClassifier(**settings, random_state=seed, deterministic=True, force_row_wise=True,
                              n_jobs=n_jobs, verbose=-1)


def feature_columns(manifest: dict, hp: dict) -> list[str]:
    """Feature names the model reads: ``hp["features"]``, else ``hp["feature_set"]``, else all.

    Raises
    ------
    EphysError
        Unknown feature set (lists those offered) or unknown feature names.
    """
    names = list(manifest.get("feature_names") or [])
    if hp.get("features"):
        unknown = [f for f in hp["features"] if f not in names]
        if unknown:
            raise EphysError(f"unknown features {unknown[:5]}; the dataset has {len(names)} (see its features.csv)")
        return list(hp["features"])
    fs = hp.get("feature_set")
    if fs and fs != "all":
        sets = manifest.get("feature_sets") or {}
        if fs not in sets:
            raise EphysError(f"the dataset offers no feature set {fs!r} (offered: {', '.join(['all', *sets])})")
        return list(sets[fs])
    return names


def _impute(X: np.ndarray, how: str, medians: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``native``: NaN stays NaN (LightGBM learns a branch for it). ``median``: NaN -> the given
    (training) column medians; columns that are all NaN get 0."""
    if how == "native":
        return X, None
    if medians is None:
        with np.errstate(all="ignore"):
            medians = np.nanmedian(np.where(np.isfinite(X), X, np.nan), axis=0) if X.size else np.zeros(X.shape[1])
        medians = np.where(np.isfinite(medians), medians, 0.0)
    Xi = np.where(np.isnan(X), medians[None, :], X)
    return Xi, medians


def _cv_folds(y: np.ndarray, groups: list[str], n_folds: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    counts = np.bincount(y)
    k = int(min(n_folds, counts[counts > 0].min(), len(set(groups))))
    if k < 2:
        raise EphysError("too few training groups or samples per class for cross-validation (need 2 or more)")
    return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))


def cross_validate(X: np.ndarray, y: np.ndarray, folds, hp: dict, seed: int) -> dict:
    """Balanced accuracy of ``hp`` over ``folds`` (each fold: impute from its training part, fit,
    predict its held-out part). Returns mean, std and per-fold scores."""
    from sklearn.metrics import balanced_accuracy_score

    scores = []
    for tr, va in folds:
        Xtr, med = _impute(X[tr], hp["imputation"])
        Xva, _ = _impute(X[va], hp["imputation"], med)
        m = make_estimator(hp, seed).fit(Xtr, y[tr])
        scores.append(balanced_accuracy_score(y[va], m.predict(Xva)))
    return {"cv_balanced_accuracy": float(np.mean(scores)), "cv_std": float(np.std(scores)),
            "folds": [round(float(s), 4) for s in scores]}


def tune(X_all: np.ndarray, y: np.ndarray, groups: list[str], manifest: dict, hp: dict, seed: int,
         log: Callable[[str], None] = print) -> tuple[dict, list[dict]]:
    """Two-stage cross-validated search inside the training split (see the module docstring).

    Parameters
    ----------
    X_all : float array (n_train, n_features) — every feature of the dataset, training cells only
    y : int array (n_train,) ; groups : n_train group names

    Returns
    -------
    (best hyper-parameters, one dict per candidate with its CV score, in the order tried)
    """
    names = list(manifest["feature_names"])
    folds = _cv_folds(y, groups, hp["cv_folds"], seed)
    sets = {"all": names, **{k: v for k, v in (manifest.get("feature_sets") or {}).items() if k != "all"}}
    rows: list[dict] = []

    def run(stage, fs, settings_name, extra):
        cand = {**hp, **LIGHTGBM_DEFAULTS, **CANDIDATE_SETTINGS[settings_name], **extra,
                "feature_set": fs, "features": None}
        cols = [names.index(c) for c in sets[fs]]
        t0 = time.perf_counter()
        res = cross_validate(X_all[:, cols], y, folds, cand, seed)
        row = {"stage": stage, "feature_set": fs, "n_features": len(cols), "imputation": cand["imputation"],
               "settings": settings_name, "class_weight": cand["class_weight"] or "none", **res,
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        log(f"  cv {stage}: {fs} ({len(cols)} features), {cand['imputation']}, {settings_name}, "
            f"class_weight {row['class_weight']}: balanced accuracy {res['cv_balanced_accuracy']:.4f} "
            f"± {res['cv_std']:.4f}")
        return cand, res["cv_balanced_accuracy"]

    best, best_score = None, -1.0
    for fs in sets:
        for imp in IMPUTATIONS:
            cand, s = run(1, fs, "defaults", {"imputation": imp})
            if s > best_score + 1e-9:
                best, best_score = cand, s
    stage1 = best
    for settings_name in CANDIDATE_SETTINGS:
        for cw in (None, "balanced"):
            if settings_name == "defaults" and cw is None:
                continue  # that is stage 1's winner, already scored
            cand, s = run(2, stage1["feature_set"], settings_name,
                          {"imputation": stage1["imputation"], "class_weight": cw})
            if s > best_score + 1e-9:
                best, best_score = cand, s
    best = {**best, "tune": False}
    for r in rows:
        r["chosen"] = (r["feature_set"] == best["feature_set"] and r["imputation"] == best["imputation"]
                       and r["class_weight"] == (best["class_weight"] or "none")
                       and all(best[k] == v for k, v in {**LIGHTGBM_DEFAULTS, **CANDIDATE_SETTINGS[r["settings"]]}.items()
                               if k != "class_weight"))
    return best, rows


def _rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    cols = ["stage", "feature_set", "n_features", "imputation", "settings", "class_weight",
            "cv_balanced_accuracy", "cv_std", "folds", "seconds", "chosen"]
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow([(" ".join(map(str, r[c])) if isinstance(r.get(c), list) else
                     (f"{r[c]:.4f}" if isinstance(r.get(c), float) and c.startswith("cv") else r.get(c)))
                    for c in cols])
    return buf.getvalue()


def train_tabular(cfg, ds, split: dict, run: Path, meta: dict, log: Callable[[str], None] = print) -> Path:
    """Fit LightGBM on ``split["train"]`` of feature-table dataset ``ds``; write the run folder.

    ``cfg`` is the :class:`~ephys.pipelines.training.TrainConfig` (``hparams`` as above;
    ``epochs``, ``lr``, ``batch_size`` do not apply and are ignored). The validation part of the
    split, when there is one, is scored (``train_summary.json``) but not used to fit or choose.

    Raises
    ------
    EphysError
        Wrong modality, bad hyper-parameters, unknown feature set, too few cells for CV.
    """
    import lightgbm

    meta = {**meta, "backend": "lightgbm", "backend_version": meta.get("backend_version") or lightgbm.__version__}
    import yaml

    if ds.modality != FEATURES:
        raise EphysError(f"lightgbm needs a feature-table dataset (modality features), not {ds.modality}", ds.root)
    hp = resolve_hparams(dict(cfg.hparams))
    names = list(ds.manifest["feature_names"])
    tr = np.asarray(split["train"], dtype=np.int64)
    va = np.asarray(split.get("val") or [], dtype=np.int64)
    X_tr_all = ds.load(tr, dtype=np.float64)
    y_tr = ds.y(tr)
    t0 = time.perf_counter()
    cv_rows: list[dict] = []
    if hp["tune"]:
        log(f"model selection: {hp['cv_folds']}-fold cross-validation on the {tr.size} training "
            f"{nouns(ds.manifest).samples}")
        hp, cv_rows = tune(X_tr_all, y_tr, [ds.groups[i] for i in tr], ds.manifest, hp, cfg.seed, log)
    cols_names = feature_columns(ds.manifest, hp)
    cols = [names.index(c) for c in cols_names]
    if not cv_rows:  # no search: still report the chosen settings' CV score on the training split
        try:
            folds = _cv_folds(y_tr, [ds.groups[i] for i in tr], hp["cv_folds"], cfg.seed)
            res = cross_validate(X_tr_all[:, cols], y_tr, folds, hp, cfg.seed)
            cv_rows = [{"stage": 0, "feature_set": hp["feature_set"] or ("custom" if hp["features"] else "all"),
                        "n_features": len(cols), "imputation": hp["imputation"], "settings": "given",
                        "class_weight": hp["class_weight"] or "none", **res, "seconds": None, "chosen": True}]
        except EphysError:
            cv_rows = []
    Xtr, med = _impute(X_tr_all[:, cols], hp["imputation"])
    est = make_estimator(hp, cfg.seed).fit(Xtr, y_tr)
    fit_s = time.perf_counter() - t0

    run.mkdir(parents=True, exist_ok=True)
    if not (run / "split.json").exists():
        write_json(run / "split.json", {k: [ds.ids[i] for i in v] for k, v in split.items()})
    write_text(run / "config.yaml", yaml.safe_dump({**asdict(cfg), **meta}, sort_keys=False))
    with atomic_path(run / MODEL_FILE, suffix=".txt") as tmp:
        est.booster_.save_model(str(tmp))
    write_json(run / META_FILE, {
        "kind": "lightgbm", "feature_names": cols_names, "imputation": hp["imputation"],
        "medians": None if med is None else [float(v) for v in med],
        "classes": [int(c) for c in est.classes_], "label_names": list(ds.label_names),
        "hparams": {k: hp[k] for k in (*LIGHTGBM_DEFAULTS, "feature_set", "imputation")},
    })
    if cv_rows:
        write_text(run / CV_FILE, _rows_csv(cv_rows))
    summary = {"model": "lightgbm", "n_features": len(cols), "feature_set": hp["feature_set"] or "all",
               "imputation": hp["imputation"], "settings": {k: hp[k] for k in LIGHTGBM_DEFAULTS},
               "cv_balanced_accuracy_train": next((r["cv_balanced_accuracy"] for r in cv_rows if r.get("chosen")), None),
               "cv_candidates": len(cv_rows), "seconds_this_session": round(fit_s, 2)}
    if va.size:
        from sklearn.metrics import balanced_accuracy_score

        Xva, _ = _impute(ds.load(va, dtype=np.float64)[:, cols], hp["imputation"], med)
        summary["val_balanced_accuracy"] = float(balanced_accuracy_score(ds.y(va), est.predict(Xva)))
    write_json(run / "train_summary.json", summary)
    return run


class TabularModel:
    """A trained run's LightGBM model, ready to predict on dataset rows (all features)."""

    def __init__(self, run: str | Path):
        import lightgbm as lgb

        run = Path(run)
        for f in (MODEL_FILE, META_FILE):
            if not (run / f).is_file():
                raise EphysError(f"no {f} — run `ephys train` first", run)
        try:
            self.meta = json.loads((run / META_FILE).read_text())
            self.booster = lgb.Booster(model_file=str(run / MODEL_FILE))
        except (ValueError, OSError, lgb.basic.LightGBMError) as exc:
            raise EphysError(f"unreadable LightGBM model ({str(exc).splitlines()[0]})", run) from None
        self.feature_names = list(self.meta["feature_names"])
        self.n_labels = len(self.meta["label_names"])

    def columns(self, dataset_feature_names: list[str]) -> list[int]:
        """Positions of the model's features among the dataset's; EphysError if one is missing."""
        missing = [f for f in self.feature_names if f not in dataset_feature_names]
        if missing:
            raise EphysError(f"the dataset lacks the model's features {missing[:3]}")
        return [dataset_feature_names.index(f) for f in self.feature_names]

    def transform(self, X_all: np.ndarray, dataset_feature_names: list[str]) -> np.ndarray:
        """Dataset rows (n, n_dataset_features) -> the model's input (n, n_model_features)."""
        X = np.asarray(X_all, dtype=np.float64)[:, self.columns(dataset_feature_names)]
        med = self.meta.get("medians")
        return _impute(X, self.meta["imputation"], None if med is None else np.asarray(med))[0]

    def predict_proba(self, X_all: np.ndarray, dataset_feature_names: list[str]) -> np.ndarray:
        """Class probabilities (n, n_labels) float64, columns in ``label_names`` order (classes
        absent from training get probability 0)."""
        raw = np.asarray(self.booster.predict(self.transform(X_all, dataset_feature_names)), dtype=np.float64)
        if raw.ndim == 1:  # binary objective: probability of the second class
            raw = np.stack([1 - raw, raw], axis=1)
        out = np.zeros((raw.shape[0], self.n_labels))
        out[:, self.meta["classes"]] = raw
        return out


def make_predictor(run: str | Path, ds):
    """The ``predictor`` hook of the ``lightgbm`` model: ``predict(indices) -> proba`` on the
    dataset's feature rows (read as float64: LightGBM's histogram bins shift with float32)."""
    model = TabularModel(run)
    names = list(ds.manifest["feature_names"])

    def predict(indices):
        return model.predict_proba(ds.load(np.asarray(indices, dtype=np.int64), dtype=np.float64), names)

    return predict


def is_tabular_run(run: str | Path) -> bool:
    """True when ``run`` holds a LightGBM model (``model.lgb.txt`` or ``model_meta.json``)."""
    return (Path(run) / MODEL_FILE).is_file() or (Path(run) / META_FILE).is_file()


# --------------------------------------------------------------------------------------------
# Declarations shared by every pipeline whose prepared data is a feature table
# --------------------------------------------------------------------------------------------

def _declare():
    from ...core.models import ModelSpec
    from ...core.registry import Modality

    spec = ModelSpec("lightgbm", f"{__name__}:build_lightgbm", ("features",), None, ("lgbm", "lgb"),
                     "LightGBM gradient-boosted trees on feature tables (Ke et al. 2017; the baseline of Amprimo et al. 2025)",
                     False, kind="lightgbm", model_file=MODEL_FILE,
                     trainer=f"{__name__}:train_tabular", predictor=f"{__name__}:make_predictor",
                     hparams=_hparams())
    modality = Modality(
        "features", "a table of named numeric features per sample (features.npy + features.csv)",
        sample_noun="sample", examples_title="Examples",
        examples=lambda ctx: ("Feature tables have no example images; the Explanations section shows which "
                              "features drive each class."),
        explain="ephys.pipelines.blocks.explain.shap:explain_features_run",
        explanation="ephys.pipelines.blocks.explain.shap:explanation_section",
        predict_batch_size=4096, match_keys=("feature_names",))
    return spec, modality


#: The ``lightgbm`` model and the ``features`` modality (feature tables), as pipelines declare them.
LIGHTGBM_SPEC, FEATURE_TABLE = _declare()
