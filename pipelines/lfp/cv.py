"""Cross-validation of spike prediction from LFP windows that cannot leak, and leave-one-band-out.

The folds, the training and the pooling are the core's
(:func:`ephys.pipelines.core.crossval.cross_validate_models`); this module says what the LFP
recipes ask of it and turns its pooled held-out predictions into the spike metrics.

Schemes (:func:`ephys.pipelines.core.crossval.scheme_folds`), per unit dataset:

- ``grouped`` — with several recordings (participants) per unit dataset: stratified group k-fold
  (``grouped_kfold``), no participant on both sides;
- ``blocked`` — one recording (one animal): contiguous time blocks (``blocked_time_folds``), with
  training windows closer than one window length (``gap = window_s``) to a test block dropped, so
  no overlapping window straddles the boundary;
- ``auto`` — grouped when a unit dataset has at least ``n_folds`` recordings, blocked when it has
  one (between the two: refused, where the core would hold out one recording at a time).

Every fold of every unit is planned and checked (a spike window on both sides) before any
training. Inside each fold: early stopping on a validation part drawn from the training side only
(whole participants, or the last 20 % of a single recording's training windows); the training
windows may be subsampled (every spike window kept, ``no_spike`` windows drawn at random up to
``max_train``, the validation part up to ``max_train // 4``), test windows never are; the
decision threshold is fitted on the training side (Youden). Models, all registered and trained by
the core (:func:`ephys.pipelines.core.training.train` with the fold as ``split_ids``; one run
folder per unit, model and fold under ``OUT/runs/``): ``bilstm``, the ``glm`` baseline and
``lightgbm`` (the registry's ``lightgbm_bins``: LightGBM on the GLM's features,
:mod:`ephys.pipelines.lfp.glm`). All are fitted with balanced class weights; their held-out
outputs are mapped back to the fold's training spike prior
(:func:`ephys.pipelines.core.calibration.prior_shift`, every model alike), so that pooled metrics
compare probabilities across units rather than outputs that each assume a 50 % spike rate.
``metrics.json``: the first model at the top, the second under ``reference``, any further one
under ``also``.

LOBO (the core's feature-group ablation, the groups being each band's input channels): the chosen
model is retrained on the same folds without every input channel of one band; ΔROC-AUC =
AUC(all bands) - AUC(without the band), per fold (mean and a t-based 95 % CI over folds) and per
recording/unit from its held-out predictions; the band with the largest ΔROC-AUC is the one LOBO
names for that unit.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from ..core.atomic import write_json, write_text
from ..core.calibration import prior_shift
from ..core.crossval import (Ablation, CVModel, FoldPlan, ablation_summary, cross_validate_models, roc_auc,
                             scheme_folds)
from ..core.datasets import load_dataset
from ..core.errors import EphysError
from .metrics import spike_metrics
from .sequence import load_index

__all__ = ["MODELS", "REGISTRY_MODEL", "make_folds", "prior_shift", "cross_validate"]

MODELS = ("bilstm", "glm", "lightgbm")
#: the registry model behind each name of :data:`MODELS` (the name stays the metrics' and reports')
REGISTRY_MODEL = {"bilstm": "bilstm", "glm": "glm", "lightgbm": "lightgbm_bins"}


def make_folds(y, groups, t_s, scheme: str, n_folds: int, gap_s: float, seed: int, where=None):
    """Folds of one unit dataset (see the module docstring); returns (scheme used, folds).

    ``y`` (n,) int 0/1 spike; ``groups`` (n,) recording of each window; ``t_s`` (n,) prediction-bin
    start, s; ``gap_s``: the blocked scheme's gap (one window length).

    Raises
    ------
    EphysError
        ``auto`` with between 2 and ``n_folds - 1`` recordings, a scheme that does not fit, or a
        fold whose training or test part has no spike window (names the fold).
    """
    n_groups = len(set(groups))
    if scheme == "auto" and 1 < n_groups < n_folds:
        raise EphysError(f"{n_groups} recordings: fewer than {n_folds} for grouped {n_folds}-fold "
                         "cross-validation and more than one for blocked folds; pass --cv-folds", where)
    if scheme not in ("auto", "grouped", "blocked"):
        raise EphysError(f"scheme must be auto, grouped or blocked, got {scheme!r}")
    if scheme == "blocked" and n_groups != 1:
        raise EphysError(f"blocked time folds need one recording per unit, found {n_groups}", where)
    scheme, folds = scheme_folds(y, groups, t_s, scheme, n_folds, seed, gap=gap_s, where=where)
    for f in folds:
        for part, idx in (("training", f.train), ("test", f.test)):
            if not y[idx].any():
                raise EphysError(f"the unit has no spikes in the {part} part of {f.name} "
                                 f"({', '.join(f.held_out)}); use fewer folds or drop the unit", where)
    return scheme, folds


def _configs(models, *, epochs, batch_size, lr, patience, seed, bilstm_hparams, eager) -> dict[str, CVModel]:
    from ..core.training import TrainConfig

    out = {}
    for m in models:
        if m == "bilstm":
            hp = dict(bilstm_hparams or {})
            cfg = TrainConfig(model="bilstm", dropout=float(hp.pop("dropout", 0.2)), eager=eager, hparams=hp,
                              epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed)
        else:  # the bin-feature models train on the whole training side: epochs etc. do not apply
            cfg = TrainConfig(model=REGISTRY_MODEL[m], seed=seed, hparams={})
        out[m] = CVModel(m, cfg)
    return out


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
    channels = index["channels"]
    bands = list(index["bands"])
    datasets, plans, unit_ids = [], [], []
    for unit, uinfo in index["units"].items():  # every fold of every unit is checked before any training
        if units is not None and unit not in units:
            continue
        ds = load_dataset(prepared / uinfo["dataset"])
        smp = ds.manifest["samples"]
        y = np.array([s["label"] == "spike" for s in smp], dtype=np.int64)
        t = np.array([s["t_s"] for s in smp], dtype=np.float64)
        used, folds = make_folds(y, [s["group"] for s in smp], t, scheme, n_folds, float(index["window_s"]), seed,
                                 f"{ds.root} (unit {unit})")
        datasets.append(ds)
        plans.append(FoldPlan(ds.root, used, int(n_folds), int(seed), folds))
        unit_ids.append(unit)
    if not plans:
        raise EphysError(f"no unit to cross-validate (asked for {', '.join(units or [])})", prepared)
    cfg = _configs(set(models) | ({lobo_model} if lobo else set()), epochs=epochs, batch_size=batch_size, lr=lr,
                   patience=patience, seed=seed, bilstm_hparams=bilstm_hparams, eager=eager)
    ablation = Ablation(cfg[lobo_model], {b: [i for i, c in enumerate(channels) if c["band"] == b] for b in bands}) \
        if lobo else None
    res = cross_validate_models(datasets, [cfg[m] for m in models], out, plans=plans, seed=seed, names=unit_ids,
                                max_fit=max_train, max_val=max_train // 4 if max_train else None,
                                threshold="youden", prior_shift=prior_correction, ablation=ablation, log=log)
    keys = [np.array([f"{g}/{u}" for g in ds.groups]) for ds, u in zip(datasets, unit_ids)]
    times = [np.array([s["t_s"] for s in ds.manifest["samples"]], dtype=np.float64) for ds in datasets]
    coupled = {f"{rec}/{u}" for u, ui in index["units"].items() for rec, info in (ui.get("info") or {}).items()
               if "band" in info and info["band"]}
    results = {}
    for m in models:
        rows = _rows(res.held_out[m], datasets, keys, times)
        results[m] = _summarise(rows, coupled)
        _write_predictions(out / f"predictions_{m}.csv", rows)
    primary = models[0]
    metrics = {"model": primary, "scheme": {u: p.scheme for u, p in zip(unit_ids, plans)}, "n_folds": n_folds,
               **_flat(results[primary]), "pooled": results[primary]["pooled"], "per_unit": results[primary]["per_unit"],
               **({"pooled_coupled": results[primary]["pooled_coupled"]} if "pooled_coupled" in results[primary] else {}),
               "label_names": ["no_spike", "spike"], "prediction_bin_s": index["bin_s"],
               "window_s": index["window_s"], "after_s": round(index.get("after_samples", 0) / index["fs_hz"], 6),
               "target": index["target"]}
    if len(models) > 1:
        metrics["reference"] = _part(models[1], results[models[1]])
    if len(models) > 2:  # further baselines, shaped like the reference
        metrics["also"] = {m: _part(m, results[m]) for m in models[2:]}
    if lobo:
        metrics["lobo"] = _lobo_summary(res, keys, bands, index, lobo_model)
        metrics["lobo_hit_rate"] = metrics["lobo"]["hit_rate"]
    metrics["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(out / "metrics.json", metrics)
    return metrics


_FLAT = ("roc_auc", "pr_auc", "positive_rate", "rate_correlation", "balanced_accuracy", "sensitivity",
         "specificity", "accuracy", "majority_baseline_accuracy")


def _flat(res: dict) -> dict:
    return {k: res["pooled"][k] for k in _FLAT}


def _part(model: str, res: dict) -> dict:
    return {"model": model, **_flat(res), "pooled": res["pooled"], "per_unit": res["per_unit"],
            **({"pooled_coupled": res["pooled_coupled"]} if "pooled_coupled" in res else {})}


def _rows(held, datasets, keys, times) -> list[tuple]:
    """(id, recording/unit, t_s, spike, p_spike, threshold, fold) per held-out window, in the core's order."""
    return [(datasets[k].ids[i], keys[k][i], times[k][i], y, p, thr, f)
            for k, i, y, p, thr, f in zip(held.dataset.tolist(), held.index.tolist(), held.y.tolist(), held.p,
                                          held.threshold, held.fold.tolist())]


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


def _lobo_summary(res, keys, bands, index, model) -> dict:
    """The core's ablation summary (per dataset = per unit, pooled over folds) with the LFP's
    per recording/unit ΔROC-AUC, the band it names and the simulated ground truth."""
    full = res.held_out[res.ablation_model]
    row_keys = np.array([keys[k][i] for k, i in zip(full.dataset.tolist(), full.index.tolist())])
    per_unit, named, truth = {}, {}, {}
    for b in bands:
        part = res.ablation.get(b)
        if part is None or not part.y.size:
            continue
        for k in sorted(set(row_keys.tolist())):
            sel = row_keys == k
            a, a_b = roc_auc(full.y[sel], full.p[sel]), roc_auc(part.y[sel], part.p[sel])
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
    summary = ablation_summary(res)
    return {"model": model, "bands": bands, "pooled": summary["pooled"], "per_dataset": summary["per_dataset"],
            "per_unit": per_unit, "named_band": named, "ground_truth_band": truth, "n_coupled": len(coupled),
            "n_hits": len(hits), "hit_rate": (len(hits) / len(coupled)) if coupled else None}
