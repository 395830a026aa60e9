"""Cross-validation of spike prediction from LFP windows that cannot leak, and leave-one-band-out.

Schemes (:mod:`ephys.pipelines.core.validation`):

- ``grouped`` — with several recordings (participants) per unit dataset: stratified group k-fold
  (``grouped_kfold``), no participant on both sides;
- ``blocked`` — one recording (one animal): contiguous time blocks (``blocked_time_folds``), with
  training windows closer than one window length (``gap = window_s``) to a test block dropped, so
  no overlapping window straddles the boundary;
- ``auto`` — grouped when a unit dataset has at least ``n_folds`` recordings, blocked when it has one.

Inside each fold: early stopping on a validation part drawn from the training side only
(``inner_validation``: whole participants, or the last 20 % of a single recording's training
windows); the decision threshold is fitted on the training side (Youden); the training windows may
be subsampled (every spike window kept, ``no_spike`` windows drawn at random up to ``max_train``),
test windows never are. Models: ``bilstm`` is trained by the core (:func:`ephys.pipelines.core.
training.train` with the fold as ``split_ids``; one run folder per unit and fold under
``OUT/runs/``), the ``glm`` baseline is fitted here (:mod:`ephys.pipelines.lfp.glm`), and so is
``lightgbm`` (gradient-boosted trees, Ke et al. 2017, with LightGBM's default settings,
:func:`ephys.pipelines.blocks.models.lightgbm.make_estimator`) on the GLM's features (the
prediction bin's band amplitude and cos / sin of the phase), which can form the amplitude x
phase interactions the additive GLM cannot. Both baselines train on the whole training side
(no early stopping). All are fitted with balanced class weights; their held-out outputs are
mapped back to the fold's training spike prior (:func:`prior_shift`, every model alike), so that
pooled metrics compare probabilities across units rather than outputs that each assume a 50 %
spike rate. ``metrics.json``: the first model at the top, the second under ``reference``, any
further one under ``also``.

LOBO: the chosen model is retrained on the same folds without every input channel of one band;
ΔROC-AUC = AUC(all bands) - AUC(without the band), per fold (mean and a t-based 95 % CI over
folds) and per recording/unit from its held-out predictions; the band with the largest ΔROC-AUC is
the one LOBO names for that unit.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from ..core.atomic import write_json, write_text
from ..core.datasets import load_dataset
from ..core.errors import EphysError
from ..core.validation import blocked_time_folds, grouped_kfold, inner_validation, fold_split_ids
from .glm import fit_glm, glm_feature_columns, glm_features
from .metrics import spike_metrics, youden_threshold
from .sequence import WINDOWS, bin_samples, load_index

MODELS = ("bilstm", "glm", "lightgbm")


def _ci95(values) -> list[float | None]:
    from scipy import stats

    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size < 2:
        return [None, None]
    h = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return [float(v.mean() - h), float(v.mean() + h)]


def _auc(y, p):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if np.unique(y).size == 2 else None


def make_folds(y, groups, t_s, scheme: str, n_folds: int, gap_s: float, seed: int, where=None):
    """Folds of one unit dataset (see the module docstring); returns (scheme used, folds).

    Raises
    ------
    EphysError
        ``auto`` with between 2 and ``n_folds - 1`` recordings, a scheme that does not fit, or a
        fold whose training or test part has no spike window (names the fold).
    """
    n_groups = len(set(groups))
    if scheme == "auto":
        scheme = "grouped" if n_groups >= n_folds else "blocked" if n_groups == 1 else None
        if scheme is None:
            raise EphysError(f"{n_groups} recordings: fewer than {n_folds} for grouped {n_folds}-fold "
                             "cross-validation and more than one for blocked folds; pass --cv-folds", where)
    if scheme == "grouped":
        folds = grouped_kfold(y, groups, n_folds=n_folds, seed=seed)
    elif scheme == "blocked":
        if n_groups != 1:
            raise EphysError(f"blocked time folds need one recording per unit, found {n_groups}", where)
        folds = blocked_time_folds(t_s, n_folds=n_folds, gap=gap_s)
    else:
        raise EphysError(f"scheme must be auto, grouped or blocked, got {scheme!r}")
    for f in folds:
        for part, idx in (("training", f.train), ("test", f.test)):
            if not y[idx].any():
                raise EphysError(f"the unit has no spikes in the {part} part of {f.name} "
                                 f"({', '.join(f.held_out)}); use fewer folds or drop the unit", where)
    return scheme, folds


def _cap(idx: np.ndarray, y: np.ndarray, cap: int | None, rng) -> np.ndarray:
    if not cap or idx.size <= cap:
        return idx
    pos, neg = idx[y[idx] == 1], idx[y[idx] == 0]
    keep = max(cap - pos.size, min(neg.size, pos.size))
    return np.sort(np.concatenate([pos, rng.choice(neg, size=min(keep, neg.size), replace=False)]))


def prior_shift(p: np.ndarray, threshold: float, positive_rate: float) -> tuple[np.ndarray, float]:
    """Map a class-balanced model's P(spike) back to the training side's spike prior.

    Both models are fitted with balanced class weights (the core's training; the GLM's
    ``class_weight="balanced"``), so their output is the posterior under a prior of 0.5. Adding
    ``log(pi / (1 - pi))`` to its log-odds, ``pi`` the positive rate of the fold's training
    windows before any subsampling, gives the posterior under the training prior (the prior-shift
    correction of Saerens, Latinne & Decaestecker 2002, Neural Comput 14:21). Monotone within a
    model, so per-unit ROC-AUC and the Youden decision are unchanged; across units (the pooled
    metrics, the predicted rates of ``rate_correlation``) the outputs become comparable
    probabilities. ``p`` (n,) float in [0, 1]; returns (shifted p, shifted threshold).
    """
    eps = 1e-7
    pi = float(np.clip(positive_rate, eps, 1 - eps))
    shift = np.log(pi / (1 - pi))

    def f(v):
        v = np.clip(np.asarray(v, dtype=np.float64), eps, 1 - eps)
        return 1.0 / (1.0 + np.exp(-(np.log(v / (1 - v)) + shift)))

    return f(p), float(f(threshold))


def _predict_keras(model, windows, rows, batch=2048) -> np.ndarray:
    return np.concatenate([np.asarray(model.predict(np.asarray(windows[rows[k:k + batch]], dtype=np.float32),
                                                    verbose=0))[:, 1] for k in range(0, rows.size, batch)]
                          or [np.zeros(0)]).astype(np.float64)


class _Fitter:
    """Fits one model on one fold and returns (p_test, threshold)."""

    def __init__(self, prepared: Path, out: Path, windows, table, channels, *, epochs, batch_size, lr, patience,
                 seed, bilstm_hparams, eager, log):
        self.prepared, self.out, self.windows, self.table, self.channels = prepared, out, windows, table, channels
        self.kw = dict(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed)
        self.hp = dict(bilstm_hparams or {})
        self.eager, self.log, self.seed = eager, log, seed

    def keep(self, drop_band):
        return [i for i, c in enumerate(self.channels) if drop_band is None or c["band"] != drop_band]

    def fit(self, model, unit_dir, ds, rows, y, fold, fit, val, drop_band=None):
        train_side = np.concatenate([fit, val])
        if model in ("glm", "lightgbm"):  # the same bin features: band amplitude, cos / sin of the phase
            cols = glm_feature_columns(self.channels, drop_band)
            X_train = self.table[rows[train_side]][:, cols]
            if model == "glm":
                m = fit_glm(X_train, y[train_side], seed=self.seed)
            else:
                from ..blocks.models.lightgbm import make_estimator, resolve_hparams

                m = make_estimator(resolve_hparams({"class_weight": "balanced"}), self.seed).fit(X_train, y[train_side])
            thr = youden_threshold(y[train_side], m.predict_proba(X_train)[:, 1])
            return m.predict_proba(self.table[rows[fold.test]][:, cols])[:, 1], thr
        if model != "bilstm":
            raise EphysError(f"unknown model {model!r} for LFP cross-validation ({', '.join(MODELS)})")
        from ..core.models import load_keras_model
        from ..core.training import TrainConfig, train

        hp = dict(self.hp)
        if drop_band is not None:
            hp["keep_channels"] = ",".join(map(str, self.keep(drop_band)))
        tag = "bilstm" if drop_band is None else f"bilstm-no-{drop_band}"
        run_dir = self.out / "runs" / unit_dir / tag / fold.name
        cfg = TrainConfig(model="bilstm", data=str(ds.root), dropout=float(hp.pop("dropout", 0.2)), out=str(run_dir),
                          split=fold.name, eager=self.eager, hparams=hp, **self.kw)
        run = train(cfg, log=self.log, split_ids=fold_split_ids(ds.ids, fit, val, fold.test))
        net = load_keras_model(run / "model.keras")
        thr = youden_threshold(y[train_side], _predict_keras(net, self.windows, rows[train_side]))
        p_test = _predict_keras(net, self.windows, rows[fold.test])
        import keras

        del net
        keras.backend.clear_session()  # one model per unit and fold: free the previous graphs
        return p_test, thr


def cross_validate(prepared: str | Path, out: str | Path, *, scheme: str = "auto", n_folds: int = 5,
                   models=MODELS, epochs: int = 10, seed: int = 0, bilstm_hparams: dict | None = None,
                   batch_size: int = 128, lr: float = 1e-3, patience: int = 3, max_train: int | None = 8000,
                   lobo: bool = True, lobo_model: str = "glm", eager: bool = False, units=None,
                   prior_correction: bool = True, log=print) -> dict:
    """Cross-validate ``models`` on every unit dataset of a prepared LFP folder; LOBO; metrics.

    Returns the metrics dict (also written to ``OUT/metrics.json``): the first model's pooled
    numbers as flat keys (``roc_auc``, ``pr_auc``, ``positive_rate``, ``rate_correlation``, ...),
    ``pooled``, ``per_unit`` (key ``recording/unit``), the second model under ``reference``, and
    ``lobo`` (when asked). Out-of-fold predictions go to ``OUT/predictions_<model>.csv``.
    ``prior_correction`` (default true): every model's held-out output, LOBO's included, goes
    through :func:`prior_shift` with the fold's training spike rate.

    Raises
    ------
    EphysError
        Not a prepared folder, a scheme that does not fit, a fold without spikes, a bad model name.
    """
    prepared, out = Path(prepared), Path(out)
    t_start = time.perf_counter()
    index = load_index(prepared)
    models = [m for m in models]
    for m in models + ([lobo_model] if lobo else []):
        if m not in MODELS:
            raise EphysError(f"unknown model {m!r} for LFP cross-validation (known: {', '.join(MODELS)})")
    windows = np.load(prepared / WINDOWS, mmap_mode="r")
    channels = index["channels"]
    table = glm_features(windows, bin_samples(index)) if {"glm", "lightgbm"} & {*models, lobo_model} else None
    bands = list(index["bands"])
    fitter = _Fitter(prepared, out, windows, table, channels, epochs=epochs, batch_size=batch_size, lr=lr,
                     patience=patience, seed=seed, bilstm_hparams=bilstm_hparams, eager=eager, log=log)
    rng = np.random.default_rng(seed)
    oof = {m: [] for m in models}  # rows of (id, key, t, y, p, thr, fold)
    lobo_oof = {b: [] for b in bands}
    lobo_folds = {}  # unit -> band -> [delta per fold]
    schemes = {}
    plan = []
    for unit, uinfo in index["units"].items():  # every fold of every unit is checked before any training
        if units is not None and unit not in units:
            continue
        ds = load_dataset(prepared / uinfo["dataset"])
        smp = ds.manifest["samples"]
        rows = np.array([s["row"] for s in smp], dtype=np.int64)
        y = np.array([s["label"] == "spike" for s in smp], dtype=np.int64)
        t = np.array([s["t_s"] for s in smp], dtype=np.float64)
        groups = [s["group"] for s in smp]
        keys = np.array([f"{g}/{unit}" for g in groups])
        used, folds = make_folds(y, groups, t, scheme, n_folds, float(index["window_s"]), seed,
                                 f"{ds.root} (unit {unit})")
        plan.append((unit, uinfo, ds, rows, y, t, groups, keys, folds))
        schemes[unit] = used
    if not plan:
        raise EphysError(f"no unit to cross-validate (asked for {', '.join(units or [])})", prepared)
    for unit, uinfo, ds, rows, y, t, groups, keys, folds in plan:
        log(f"{unit}: {schemes[unit]} {len(folds)}-fold cross-validation over {len(set(groups))} recording(s), "
            f"{y.size} windows, {int(y.sum())} with a spike")
        lobo_folds[unit] = {b: [] for b in bands}
        for fold in folds:
            fit, val = inner_validation(fold, groups, 0.2, seed)
            fit = _cap(fit, y, max_train, rng)
            val = _cap(val, y, max_train // 4 if max_train else None, rng)
            full = {}
            for m in models + ([lobo_model] if lobo and lobo_model not in models else []):
                t0 = time.perf_counter()
                p, thr = fitter.fit(m, uinfo["dataset"].split("/", 1)[1], ds, rows, y, fold, fit, val)
                if prior_correction:
                    p, thr = prior_shift(p, thr, float(y[fold.train].mean()))
                full[m] = p
                if m in oof:
                    oof[m] += [(ds.ids[i], keys[i], t[i], y[i], pi, thr, fold.name) for i, pi in zip(fold.test, p)]
                log(f"  {fold.name} {m}: ROC-AUC {_auc(y[fold.test], p) or float('nan'):.3f} "
                    f"({time.perf_counter() - t0:.1f} s)")
            if lobo:
                for b in bands:
                    p_b, _ = fitter.fit(lobo_model, uinfo["dataset"].split("/", 1)[1], ds, rows, y, fold, fit, val,
                                        drop_band=b)
                    if prior_correction:  # as the full model's, so per-unit AUCs over blocks compare alike
                        p_b, _ = prior_shift(p_b, 0.5, float(y[fold.train].mean()))
                    a_full, a_b = _auc(y[fold.test], full[lobo_model]), _auc(y[fold.test], p_b)
                    lobo_folds[unit][b].append(None if a_full is None or a_b is None else a_full - a_b)
                    lobo_oof[b] += [(keys[i], y[i], pf, pb) for i, pf, pb in zip(fold.test, full[lobo_model], p_b)]
    coupled = {f"{rec}/{u}" for u, ui in index["units"].items() for rec, info in (ui.get("info") or {}).items()
               if "band" in info and info["band"]}
    results = {}
    for m in models:
        results[m] = _summarise(oof[m], coupled)
        _write_predictions(out / f"predictions_{m}.csv", oof[m])
    primary = models[0]
    metrics = {"model": primary, "scheme": schemes, "n_folds": n_folds, **_flat(results[primary]),
               "pooled": results[primary]["pooled"], "per_unit": results[primary]["per_unit"],
               **({"pooled_coupled": results[primary]["pooled_coupled"]} if "pooled_coupled" in results[primary] else {}),
               "label_names": ["no_spike", "spike"], "prediction_bin_s": index["bin_s"],
               "window_s": index["window_s"], "after_s": round(index.get("after_samples", 0) / index["fs_hz"], 6),
               "target": index["target"]}
    if len(models) > 1:
        ref = models[1]
        metrics["reference"] = {"model": ref, **_flat(results[ref]), "pooled": results[ref]["pooled"],
                                "per_unit": results[ref]["per_unit"],
                                **({"pooled_coupled": results[ref]["pooled_coupled"]}
                                   if "pooled_coupled" in results[ref] else {})}
    if len(models) > 2:  # further baselines, shaped like the reference
        metrics["also"] = {m: {"model": m, **_flat(results[m]), "pooled": results[m]["pooled"],
                               "per_unit": results[m]["per_unit"],
                               **({"pooled_coupled": results[m]["pooled_coupled"]} if "pooled_coupled" in results[m] else {})}
                           for m in models[2:]}
    if lobo:
        metrics["lobo"] = _lobo_summary(lobo_oof, lobo_folds, bands, index, lobo_model)
        metrics["lobo_hit_rate"] = metrics["lobo"]["hit_rate"]
    metrics["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(out / "metrics.json", metrics)
    return metrics


_FLAT = ("roc_auc", "pr_auc", "positive_rate", "rate_correlation", "balanced_accuracy", "sensitivity",
         "specificity", "accuracy", "majority_baseline_accuracy")


def _flat(res: dict) -> dict:
    return {k: res["pooled"][k] for k in _FLAT}


def _summarise(rows, coupled=()) -> dict:
    ids, keys, t, y, p, thr, _ = (np.array(c) for c in zip(*rows))
    per_unit = {k: spike_metrics(y[keys == k], p[keys == k], thr[keys == k], t[keys == k], keys[keys == k])
                for k in sorted(set(keys.tolist()))}
    out = {"pooled": spike_metrics(y, p, thr, t, keys), "per_unit": per_unit}
    sel = np.isin(keys, sorted(coupled))
    if sel.any():  # simulated ground truth: pooled over the units a band drives
        out["pooled_coupled"] = spike_metrics(y[sel], p[sel], thr[sel], t[sel], keys[sel])
    return out


def _write_predictions(path: Path, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "unit", "t_s", "spike", "p_spike", "threshold", "fold"])
    for i, k, t, y, p, thr, f in rows:
        w.writerow([i, k, f"{t:.6f}", int(y), f"{p:.6f}", f"{thr:.6f}", f])
    write_text(path, buf.getvalue())


def _lobo_summary(lobo_oof, lobo_folds, bands, index, model) -> dict:
    per_unit, named, truth = {}, {}, {}
    for b in bands:
        if not lobo_oof[b]:
            continue
        keys, y, pf, pb = (np.array(c) for c in zip(*lobo_oof[b]))
        for k in sorted(set(keys.tolist())):
            sel = keys == k
            a, a_b = _auc(y[sel], pf[sel]), _auc(y[sel], pb[sel])
            per_unit.setdefault(k, {})[b] = None if a is None or a_b is None else a - a_b
    for k, d in per_unit.items():
        vals = {b: v for b, v in d.items() if v is not None}
        named[k] = max(vals, key=vals.get) if vals else None
        rec, unit = k.rsplit("/", 1)
        info = (index["units"].get(unit, {}).get("info") or {}).get(rec) or {}
        if "band" in info:
            truth[k] = info["band"]
    coupled = [k for k, b in truth.items() if b]
    hits = [k for k in coupled if named.get(k) == truth[k]]
    per_dataset = {u: {b: {"delta_roc_auc": (float(np.mean([v for v in f if v is not None]))
                                             if any(v is not None for v in f) else None),
                           "ci95": _ci95(f), "folds": f} for b, f in d.items()} for u, d in lobo_folds.items()}
    pooled = {}
    for b in bands:
        vals = [v for u in lobo_folds for v in lobo_folds[u][b]]
        good = [v for v in vals if v is not None]
        pooled[b] = {"delta_roc_auc": float(np.mean(good)) if good else None, "ci95": _ci95(vals)}
    return {"model": model, "bands": bands, "pooled": pooled, "per_dataset": per_dataset, "per_unit": per_unit,
            "named_band": named, "ground_truth_band": truth, "n_coupled": len(coupled), "n_hits": len(hits),
            "hit_rate": (len(hits) / len(coupled)) if coupled else None}
