"""The GLM baseline, and LightGBM on the same features: band amplitude and phase of the prediction bin.

Two registered models of modality ``sequence`` (declared in :mod:`ephys.pipelines.lfp`), trained
by ``ephys train`` and by the core's cross-validation through the ``trainer`` / ``predictor``
hooks here (:func:`train_bin_model`, :func:`bin_model_predictor`). Their features, per window:
for every LFP channel and band, the mean Hilbert amplitude and the mean cos / sin of the phase
over the prediction bin's samples (:func:`ephys.pipelines.lfp.sequence.bin_samples`).

- ``glm``: the features standardised with the training windows' statistics (``StandardScaler``)
  and fed to ``sklearn.linear_model.LogisticRegression`` with balanced class weights. cos/sin of
  the phase make a von Mises-shaped phase tuning log-linear, the classical spike-phase GLM.
- ``lightgbm_bins``: gradient-boosted trees (Ke et al. 2017, NeurIPS) with LightGBM's default
  settings and balanced class weights (:func:`ephys.pipelines.blocks.models.lightgbm.make_estimator`)
  on the same features, which can form the amplitude x phase interactions the additive GLM cannot.

Both train on the whole training side: the split's training and validation parts (no early
stopping). Hyper-parameters (``--hparam``): ``keep_channels`` (comma list of input channel indices
the model may read; default all: leave-one-band-out drops a band's), and

- ``glm``: ``C`` (inverse L2 strength, 1.0); ``train_on``: ``unit`` (default, the dataset's own
  labels) or ``other_units`` (the held-out-units evaluation, :mod:`ephys.pipelines.lfp.heldout_units`:
  the spiking of the prepared folder's *other* units on the same windows, pooled: each training
  window enters once as "spike" weighted by the number of other units that fired in its bin and
  once as "no spike" weighted by the number that did not, the two classes re-weighted to equal
  total weight; the decision threshold, Youden's on the training side's (window, other unit)
  pairs, goes to ``decision.json``);
- ``lightgbm_bins``: LightGBM's settings (the keys of
  :data:`ephys.pipelines.blocks.models.lightgbm.LIGHTGBM_DEFAULTS`; ``class_weight`` balanced).

Run folder: ``config.yaml``, ``split.json``, ``train_summary.json`` and the model without pickle:
``model.glm.json`` (feature columns, the bin's samples, the scaler's mean / scale and the
coefficients; JSON floats round-trip exactly) or ``model.lgb.txt`` (LightGBM's text format) with
``bin_features.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_path, write_json, write_text
from ..core.errors import EphysError

__all__ = ["glm_feature_columns", "glm_features", "fit_glm", "build_glm", "build_lightgbm_bins", "train_bin_model",
           "bin_model_predictor", "bin_features"]

_KINDS = ("amplitude", "phase_cos", "phase_sin")
GLM_FILE = "model.glm.json"
LGB_FILE = "model.lgb.txt"
LGB_META = "bin_features.json"
TRAIN_ON = ("unit", "other_units")


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
    return build_glm(None, 2, C=C, seed=seed).fit(X, y)


# --------------------------------------------------------------------------------------------
# Registry hooks
# --------------------------------------------------------------------------------------------

def _glm_hparams(hp: dict) -> dict:
    """The ``glm`` spec's hyper-parameters, checked and with defaults (:func:`~ephys.pipelines.core.models.check_hparams`)."""
    from ..core.models import check_hparams

    return check_hparams("glm", hp)


def _lgb_hparams(hp: dict) -> dict:
    """LightGBM's settings for ``lightgbm_bins`` (checked against its declaration; ``keep_channels`` is
    the channel choice, not a LightGBM setting)."""
    from ..blocks.models.lightgbm import resolve_hparams
    from ..core.models import check_hparams

    hp = check_hparams("lightgbm_bins", hp)
    return resolve_hparams({k: v for k, v in hp.items() if k != "keep_channels"})


def build_glm(input_shape, n_classes: int, C: float = 1.0, seed: int = 0, **hparams):
    """Registry builder of ``glm``: an unfitted ``StandardScaler -> LogisticRegression`` pipeline
    (balanced class weights, ``C``, lbfgs up to 2000 iterations, ``random_state=seed``).

    Raises
    ------
    EphysError
        An unknown hyper-parameter or a bad value.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    hp = _glm_hparams({"C": C, **{k: v for k, v in hparams.items() if k not in ("dropout", "input_size")}})
    return make_pipeline(StandardScaler(), LogisticRegression(C=hp["C"], class_weight="balanced", max_iter=2000,
                                                              random_state=seed))


def build_lightgbm_bins(input_shape, n_classes: int, **hparams):
    """Registry builder of ``lightgbm_bins``: an unfitted ``LGBMClassifier`` (default settings,
    balanced class weights). Raises EphysError on unknown hyper-parameters."""
    from ..blocks.models.lightgbm import make_estimator

    return make_estimator(_lgb_hparams({k: v for k, v in hparams.items() if k not in ("dropout", "input_size")}), 0)


def _keep(value, n_inputs: int) -> set[int] | None:
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        keep = {int(str(v).strip()) for v in items if str(v).strip() != ""}
    except ValueError:
        raise EphysError(f"keep_channels must be a comma list of input channel indices, got {value!r}") from None
    bad = sorted(i for i in keep if not 0 <= i < n_inputs)
    if bad:
        raise EphysError(f"keep_channels {bad} out of range: the windows have {n_inputs} input channels")
    return keep


def _columns(manifest: dict, keep: set[int] | None) -> list[int]:
    cols = [i for i in glm_feature_columns(manifest["channels"]) if keep is None or i in keep]
    if not cols:
        raise EphysError("keep_channels leaves no amplitude or phase input for the model")
    return cols


_TABLE: dict = {}  # one cached table: (array file, mtime, size, bin) -> (n_rows, n_inputs) float64


def _table(ds) -> np.ndarray:
    arr = ds.array
    if arr is None:
        raise EphysError("the bin-feature models need a sequence dataset with one windows array", ds.root)
    path = (Path(ds.root) / ds.manifest["array"]).resolve()
    st = path.stat()
    sl = _bin_slice(ds.manifest)
    key = (str(path), st.st_mtime_ns, st.st_size, sl.start, sl.stop)
    if key not in _TABLE:
        _TABLE.clear()
        _TABLE[key] = glm_features(arr, sl)
    return _TABLE[key]


def _bin_slice(manifest: dict) -> slice:
    from .sequence import bin_samples

    return bin_samples(manifest)


def _rows(ds) -> np.ndarray:
    return np.fromiter((s["row"] for s in ds.manifest["samples"]), dtype=np.int64, count=len(ds.ids))


def bin_features(ds, indices, cols: list[int]) -> np.ndarray:
    """(len(indices), len(cols)) float64: the prediction bin's mean of the input channels ``cols``
    for samples ``indices`` of sequence dataset ``ds`` (the table of every window of its array
    is computed once per process and array file)."""
    return _table(ds)[_rows(ds)[np.asarray(indices, dtype=np.int64)]][:, cols]


_OTHERS: dict = {}  # prepared folder -> (unit -> labels aligned with the shared windows)


def _other_units(ds) -> tuple[list[str], np.ndarray]:
    """The other units of ds's prepared folder and their labels (n_samples, n_other) int64 on ds's
    windows (units sorted by id).

    Raises
    ------
    EphysError
        Not inside a prepared LFP folder; a unit whose windows differ (not one shared recording);
        no other unit.
    """
    from ..core.datasets import load_dataset
    from .sequence import INDEX, load_index

    prepared = Path(ds.root).resolve().parent.parent
    if not (prepared / INDEX).is_file():
        raise EphysError("train_on=other_units needs a unit dataset inside a prepared LFP folder", ds.root)
    index = load_index(prepared)
    key = (str(prepared), (prepared / INDEX).stat().st_mtime_ns)
    if key not in _OTHERS:
        _OTHERS.clear()
        _OTHERS[key] = {}
    cache = _OTHERS[key]
    me = ds.manifest.get("unit")
    rows = _rows(ds)
    others = [u for u in sorted(index["units"]) if u != me]
    if not others:
        raise EphysError(f"train_on=other_units: the prepared folder has no unit besides {me}", prepared)
    cols = []
    for u in others:
        if u not in cache:
            other = load_dataset(prepared / index["units"][u]["dataset"])
            cache[u] = (_rows(other), np.array([lab == other.label_names[1] for lab in other.labels], dtype=np.int64))
        r, lab = cache[u]
        if not np.array_equal(r, rows):
            raise EphysError(f"unit {u} has other windows than {me}: not one shared recording", prepared)
        cols.append(lab)
    return others, np.stack(cols, axis=1)


def _fit_other_units(X, Y, seed: int, C: float, where):
    """Logistic regression on windows with ``Y.sum(1)`` of ``Y.shape[1]`` other units firing (see
    the module docstring); returns (scaler, logistic regression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    n_pos = Y.sum(axis=1)
    w1, w0 = n_pos.astype(np.float64), (Y.shape[1] - n_pos).astype(np.float64)
    if w1.sum() == 0 or w0.sum() == 0:
        raise EphysError("train_on=other_units: the other units never (or always) fire on the training side", where)
    keep1, keep0 = w1 > 0, w0 > 0
    Xs = np.concatenate([X[keep1], X[keep0]])
    y = np.concatenate([np.ones(keep1.sum(), int), np.zeros(keep0.sum(), int)])
    w = np.concatenate([w1[keep1] / w1.sum(), w0[keep0] / w0.sum()]) * (y.size / 2)
    scaler = StandardScaler().fit(X)  # training windows only
    lr = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(scaler.transform(Xs), y, sample_weight=w)
    return scaler, lr


def _glm_blob(scaler, lr) -> dict:
    return {"scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "var": scaler.var_.tolist(),
                       "n_samples_seen": int(np.max(scaler.n_samples_seen_))},
            "logistic": {"coef": lr.coef_.tolist(), "intercept": lr.intercept_.tolist(),
                         "classes": [int(c) for c in lr.classes_], "C": float(lr.C)}}


def _glm_from_blob(blob: dict):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s, g = blob["scaler"], blob["logistic"]
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_, scaler.var_ = (np.asarray(s[k], dtype=np.float64) for k in ("mean", "scale", "var"))
    scaler.n_features_in_, scaler.n_samples_seen_ = scaler.mean_.size, int(s["n_samples_seen"])
    lr = LogisticRegression(C=float(g["C"]))
    lr.coef_, lr.intercept_ = np.asarray(g["coef"], dtype=np.float64), np.asarray(g["intercept"], dtype=np.float64)
    lr.classes_, lr.n_features_in_ = np.asarray(g["classes"]), lr.coef_.shape[1]
    return make_pipeline(scaler, lr)


def train_bin_model(cfg, ds, split: dict, run: Path, meta: dict, log=print) -> Path:
    """The ``trainer`` hook of ``glm`` and ``lightgbm_bins`` (see the module docstring): fit on
    ``split["train"]`` + ``split["val"]`` of sequence dataset ``ds``; write the run folder.

    Raises
    ------
    EphysError
        Bad hyper-parameters, a dataset without amplitude / phase inputs, a training side of one
        class; ``train_on=other_units`` outside a prepared LFP folder of one shared recording.
    """
    import yaml

    from ..core.calibration import youden_threshold
    from ..core.evaluation import DECISION_FILE

    name = cfg.model
    hp = _glm_hparams(dict(cfg.hparams or {})) if name == "glm" else _lgb_hparams(dict(cfg.hparams or {}))
    keep = _keep((cfg.hparams or {}).get("keep_channels"), int(ds.sample_shape[-1]))
    cols = _columns(ds.manifest, keep)
    idx = np.concatenate([np.asarray(split["train"], dtype=np.int64), np.asarray(split.get("val") or [], dtype=np.int64)])
    t0 = time.perf_counter()
    X = bin_features(ds, idx, cols)
    sl = _bin_slice(ds.manifest)
    head = {"columns": cols, "column_names": [ds.manifest["channels"][i]["name"] for i in cols],
            "bin_samples": [sl.start, sl.stop], "label_names": list(ds.label_names)}
    decision = None
    try:
        if name == "glm" and hp["train_on"] == "other_units":
            others, Y = _other_units(ds)
            Y = Y[idx]
            X = np.ascontiguousarray(X)  # see bin_model_predictor
            scaler, lr = _fit_other_units(X, Y, cfg.seed, hp["C"], ds.root)
            p_train = lr.predict_proba(scaler.transform(X))[:, 1]
            thr = youden_threshold(np.concatenate([Y[:, k] for k in range(Y.shape[1])]), np.tile(p_train, Y.shape[1]))
            decision = {"threshold": thr, "on": f"p_{ds.label_names[1]}", "trained_on": others,
                        "chosen_by": "Youden's J on the training side's (window, other unit) pairs"}
            blob = {"kind": "glm", "train_on": "other_units", "trained_on": others, **head, **_glm_blob(scaler, lr)}
        elif name == "glm":
            est = fit_glm(X, ds.y(idx), seed=cfg.seed, C=hp["C"])
            blob = {"kind": "glm", "train_on": "unit", **head, **_glm_blob(est[0], est[1])}
        else:
            from ..blocks.models.lightgbm import LIGHTGBM_DEFAULTS, make_estimator

            est = make_estimator(hp, cfg.seed).fit(X, ds.y(idx))
            blob = {"kind": "lightgbm", **head, "classes": [int(c) for c in est.classes_],
                    "hparams": {k: hp[k] for k in LIGHTGBM_DEFAULTS}}
    except ValueError as exc:  # e.g. one class on the training side
        raise EphysError(f"{name}: cannot fit ({' '.join(str(exc).split())[:200]})", ds.root) from None
    fit_s = time.perf_counter() - t0
    run.mkdir(parents=True, exist_ok=True)
    if not (run / "split.json").exists():
        write_json(run / "split.json", {k: [ds.ids[i] for i in v] for k, v in split.items()})
    import sklearn

    backend = {"backend": "sklearn", "backend_version": sklearn.__version__} if name == "glm" else \
        {"backend": "lightgbm", "backend_version": __import__("lightgbm").__version__}
    write_text(run / "config.yaml", yaml.safe_dump({**asdict(cfg), **meta, **backend}, sort_keys=False))
    if decision is not None:
        write_json(run / DECISION_FILE, decision)
    if name == "glm":
        write_json(run / GLM_FILE, blob)
    else:
        write_json(run / LGB_META, blob)
        with atomic_path(run / LGB_FILE, suffix=".txt") as tmp:
            est.booster_.save_model(str(tmp))
    write_json(run / "train_summary.json", {"model": name, "n_features": len(cols), "n_fit": int(idx.size),
                                            "seconds_this_session": round(fit_s, 2)})
    return run


def bin_model_predictor(run: str | Path, ds):
    """The ``predictor`` hook of ``glm`` and ``lightgbm_bins``: ``predict(indices) -> proba``
    (n, 2) float64 on samples of sequence dataset ``ds``.

    Raises
    ------
    EphysError
        No or an unreadable model file; a dataset whose input channels differ from the model's.
    """
    run = Path(run)
    path = run / GLM_FILE if (run / GLM_FILE).is_file() else run / LGB_META
    try:
        blob = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EphysError(f"no readable model ({exc}); run `ephys train` first", path) from None
    cols = [int(c) for c in blob["columns"]]
    channels = ds.manifest.get("channels") or []
    if [channels[i]["name"] if i < len(channels) else None for i in cols] != blob["column_names"]:
        raise EphysError("the dataset's input channels differ from the model's (other inputs or bands)", ds.root)
    if list(blob["bin_samples"]) != [_bin_slice(ds.manifest).start, _bin_slice(ds.manifest).stop]:
        raise EphysError("the dataset's prediction bin differs from the model's (other window_s / bin_s)", ds.root)
    if blob["kind"] == "glm":
        model = _glm_from_blob(blob)
        # the held-out-unit GLM has always read C-ordered features, the per-unit models the column
        # selection of the feature table: BLAS sums them in another order (differences ~1e-14)
        layout = np.ascontiguousarray if blob.get("train_on") == "other_units" else np.asarray

        def predict(indices):
            return np.asarray(model.predict_proba(layout(bin_features(ds, indices, cols))), dtype=np.float64)

        return predict
    import lightgbm as lgb

    try:
        booster = lgb.Booster(model_file=str(run / LGB_FILE))
    except (OSError, lgb.basic.LightGBMError) as exc:
        raise EphysError(f"unreadable LightGBM model ({str(exc).splitlines()[0]})", run / LGB_FILE) from None

    def predict(indices):
        raw = np.asarray(booster.predict(bin_features(ds, indices, cols)), dtype=np.float64)
        return np.stack([1 - raw, raw], axis=1)

    return predict
