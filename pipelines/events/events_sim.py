"""``ephys reproduce events-sim``: the simulated cohort end to end.

1. Cohort: the recordings of ``data`` (a ``fetch synthetic --pipeline events`` folder) or, when
   it does not exist, a fresh seeded cohort (mEPP-like and mEPSC-like at SNR 2.5, 5, 10; three
   recordings each, 10 s) written to ``OUT/data``.
2. Split by recording: for each (kind, SNR) the last recording is the test recording, the
   others train (no recording on both sides). The training side gets ``n_extra_train`` more
   simulated recordings per (kind, SNR) and a separate set of ``n_calibration`` simulated
   calibration recordings, both from seeds no cohort recording uses (:func:`extra_recordings`).
3. Models, all fitted on training recordings only, each by the core's ``train()`` with
   early stopping on validation recordings (by recording, never a test one): ``cnn_bilstm``
   (window dataset in ``OUT/windows``), ``unet1d`` and ``autoencoder`` (patch datasets
   ``OUT/patches-1024`` and ``OUT/patches-256`` of the training *and* test recordings, the test
   recordings in the runs' test part, so ``ephys evaluate OUT/runs/unet1d`` scores them per
   sample; see :mod:`.seg`), and the plain threshold detector (4 robust SDs; no fitting).
4. Detection settings per method (probability threshold, the low-pass on which the rise is
   located, a minimum amplitude in noise SDs) are chosen on the calibration recordings only
   (:func:`calibrate_detection`); every method's per-sample probability then goes through the
   shared detection step (:func:`.detect.detect_events`) with its settings;
   ``OUT/events/<method>/<recording>.csv`` per test recording.
5. ``OUT/metrics.json``: per method event-level precision / recall / F1 (onsets matched one to
   one within ±1 ms) per SNR level and overall, mask IoU (U-Net), kinetics errors, seconds of
   compute per minute of trace; ``detection_params`` and ``calibration`` (the chosen settings, the
   calibration recordings and their F1); ``per_snr`` (method -> SNR -> f1 / precision / recall); the top
   level ``f1`` / ``precision`` / ``recall`` are the primary model's (``cnn_bilstm``);
   ``per_point_test`` the per-sample test metrics of ``unet1d`` and ``autoencoder`` on the test
   recordings' patches (IoU, balanced accuracy, ROC-AUC; ``OUT/runs/<model>/metrics.json``);
   ``best_on_test`` names the method with the highest test F1 (a description of the result, not
   a model selection). ``OUT/report.html`` with the figures.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from ..core.atomic import write_json
from ..core.errors import EphysError
from . import detect as D
from .metrics import DEFAULT_TOL_S, event_prf, kinetics_errors, mask_iou
from .simulate import SNR_LEVELS, read_truth, simulate_recording, write_cohort
from .windows import LABEL_NAMES, EventPatchParams, training_windows, write_patch_dataset, write_window_dataset

__all__ = ["load_cohort", "run_events_sim", "METHODS"]

METHODS = ("cnn_bilstm", "unet1d", "autoencoder", "threshold")


def load_cohort(folder: str | Path) -> list[dict]:
    """Recordings of a simulated folder: dicts with id, kind, fs_hz, units, polarity, snr, x,
    mask, truth.

    Raises
    ------
    EphysError
        No ``recordings.csv``; a missing column; a value that is not a number, a sampling rate
        that is not positive, an unknown polarity (naming row and field); a missing, empty,
        truncated, NaN or flat trace or mask; a ground-truth table that is missing, unreadable or
        holds an onset outside its recording; no event in any recording.
    """
    from ..core.datasets import load_npy

    folder = Path(folder)
    idx = folder / "recordings.csv"
    if not idx.is_file():
        raise EphysError("no recordings.csv: not a simulated events folder (`ephys fetch synthetic --pipeline events`)",
                         folder)
    need = ("id", "file", "kind", "fs_hz", "units", "polarity", "snr")
    recs = []
    with open(idx, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise EphysError(f"no column {', '.join(missing)} (a simulated events folder's recordings.csv has "
                             f"{', '.join(need)})", idx)
        for r, row in enumerate(reader, start=2):
            nums = {}
            for field in ("fs_hz", "snr"):
                try:
                    nums[field] = float(row[field])
                except (TypeError, ValueError):
                    raise EphysError(f"row {r}, field {field}: {row[field]!r} is not a number", idx) from None
            if not (np.isfinite(nums["fs_hz"]) and nums["fs_hz"] > 0):
                raise EphysError(f"row {r}, field fs_hz: {row['fs_hz']!r} is not a positive sampling rate (Hz)", idx)
            if row["polarity"] not in ("negative", "positive"):
                raise EphysError(f"row {r}, field polarity: {row['polarity']!r} is not negative or positive", idx)
            f = folder / row["file"]
            if not f.is_file():
                raise EphysError(f"row {r}, field file: {row['file']} is missing", idx)
            x = load_npy(f, hint="").astype(np.float64)
            if x.ndim != 1 or x.size < 2:
                raise EphysError(f"a trace must be a 1-D array of samples, got shape {x.shape}", f)
            bad = ~np.isfinite(x)
            if bad.any():
                raise EphysError(f"trace holds {int(bad.sum())} NaN or infinite samples (first at sample "
                                 f"{int(np.flatnonzero(bad)[0])})", f)
            if not np.ptp(x) > 0:
                raise EphysError("trace is flat (every sample equal): no noise and no events to learn from", f)
            mpath = folder / f"{row['id']}_mask.npy"
            mask = load_npy(mpath, hint="")
            if mask.shape != x.shape:
                raise EphysError(f"mask has shape {mask.shape}, its trace {x.shape}", mpath)
            recs.append({"id": row["id"], "kind": row["kind"], "fs_hz": nums["fs_hz"], "units": row["units"],
                         "polarity": row["polarity"], "snr": nums["snr"], "x": x, "mask": mask,
                         "truth": read_truth(folder / f"{row['id']}_events.csv", x.size / nums["fs_hz"])})
    if not recs:
        raise EphysError("lists no recording", idx)
    if not any(r["truth"]["onset_s"].size for r in recs):
        raise EphysError("no recording has an event (every ID_events.csv is empty): there is no event class to "
                         "learn", folder)
    return recs


def split_recordings(recs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per (kind, snr): the last recording tests, the others train."""
    by: dict[tuple, list[dict]] = {}
    for r in recs:
        by.setdefault((r["kind"], r["snr"]), []).append(r)
    train, test = [], []
    for key in sorted(by):
        rs = by[key]
        if len(rs) < 2:
            test.extend(rs)
            continue
        train.extend(rs[:-1])
        test.append(rs[-1])
    if not train:
        raise EphysError("need at least two recordings per (kind, SNR) to train and test")
    return train, test



def extra_recordings(like: list[dict], n_each: int, duration_s: float, seed: int, tag: str,
                     offset: int) -> list[dict]:
    """``n_each`` fresh simulated recordings per (kind, SNR, fs) found in ``like``, as cohort dicts.

    Seeds are ``seed * 100_003 + offset + j`` (the cohort's own recordings use offsets below
    ``len(cohort)``), so these never repeat a training or test recording.
    """
    combos = sorted({(r["kind"], r["snr"], r["fs_hz"]) for r in like})
    out, j = [], 0
    for kind, snr, fs in combos:
        for _ in range(n_each):
            r = simulate_recording(kind, snr, duration_s, seed=seed * 100_003 + offset + j, fs_hz=fs,
                                   rec_id=f"{tag}_{kind}_snr{snr:g}_{j:03d}")
            out.append({"id": r.id, "kind": kind, "fs_hz": r.fs_hz, "units": r.units, "polarity": r.polarity,
                        "snr": r.snr, "x": r.trace, "mask": r.mask, "truth": r.truth})
            j += 1
    return out


def params_dict(prm) -> dict:
    """A :class:`~.detect.DetectionParams` as a JSON-able dict (its public fields)."""
    from dataclasses import asdict

    d = asdict(prm)
    d["search_ms"] = list(d["search_ms"])
    return d


#: the grids :func:`calibrate_detection` searches
PROB_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
LOCATE_HZ = (None, 1000.0, 500.0, 300.0)
AMPLITUDE_SDS = (0.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)


def calibrate_detection(det: dict, calib: list[dict], tol_s: float | dict = DEFAULT_TOL_S, log=print,
                        methods=METHODS) -> dict:
    """Per method, the detection settings (probability threshold :data:`PROB_THRESHOLDS`, low-pass
    that locates the rise :data:`LOCATE_HZ`, minimum amplitude in noise SDs :data:`AMPLITUDE_SDS`)
    with the highest pooled event F1 (onsets within ``tol_s``; a dict: the tolerance per
    recording ``kind``) on the calibration recordings ``calib``.

    The calibration recordings are simulated afresh (:func:`extra_recordings`), never the test
    recordings: a threshold chosen on the traces it is scored on would be tuned on the test set.
    ``threshold`` (a fixed 4-SD detector, the plain baseline) and ``autoencoder`` (its 0/1 trace
    is already thresholded on training data) only get the amplitude criterion searched; with no
    calibration recordings every method keeps the defaults.

    Returns
    -------
    dict method -> :class:`~.detect.DetectionParams` (with ``_calibration_f1`` set)
    """
    from .apply import method_probability

    out = {}
    for m in methods:
        best = (-1.0, D.DetectionParams())
        if calib:
            probs = [method_probability(m, det, r["x"], r["fs_hz"], r["polarity"]) for r in calib]
            noise = [D.trace_noise_sd(D.smooth(r["x"], r["fs_hz"], 0.2 * r["fs_hz"]), r["fs_hz"]) for r in calib]
            thrs = PROB_THRESHOLDS if m in ("cnn_bilstm", "unet1d") else (0.5,)
            for pt, loc in ((a, b) for a in thrs for b in LOCATE_HZ):
                evs = [D.detect_events(r["x"], r["fs_hz"], p, r["polarity"],
                                       D.DetectionParams(threshold=pt, locate_hz=loc))
                       for r, p in zip(calib, probs)]
                for k in AMPLITUDE_SDS:
                    tp = nd = nt = 0
                    for r, ev, sd in zip(calib, evs, noise):
                        on = [e["onset_s"] for e in ev if abs(e["amplitude"]) >= k * sd]
                        res = event_prf(r["truth"]["onset_s"], on,
                                        tol_s[r["kind"]] if isinstance(tol_s, dict) else tol_s)
                        tp, nd, nt = tp + res["tp"], nd + res["n_detected"], nt + res["n_true"]
                    f1 = 2 * tp / (nd + nt) if nd + nt else 0.0
                    if f1 > best[0] + 1e-9:
                        best = (f1, D.DetectionParams(threshold=pt, min_amplitude_sd=k, locate_hz=loc))
        prm = best[1]
        prm._calibration_f1 = best[0] if calib else None
        log(f"{m}: detection threshold {prm.threshold:g}, minimum amplitude {prm.min_amplitude_sd:g} noise SD, "
            f"rise located at {prm.locate_hz or 'the measuring'} Hz low-pass (calibration F1 {best[0]:.3f})")
        out[m] = prm
    return out


def _train_window_model(train: list[dict], out: Path, epochs: int, seed: int, log) -> Path:
    from ..core import validation
    from ..core.training import TrainConfig, train as core_train

    rng = np.random.default_rng(seed)
    ws, labs, groups, ts = [], [], [], []
    for r in train:
        w, lab, st = training_windows(r["x"], r["truth"]["onset_s"], r["fs_hz"], r["polarity"], rng, per_event=4, neg_ratio=4.0)
        ws.append(w)
        labs += [LABEL_NAMES[k] for k in lab]
        groups += [r["id"]] * len(lab)
        ts += list(st / r["fs_hz"])
    ds_dir = out / "windows"
    man = write_window_dataset(ds_dir, np.concatenate(ws), labs, groups, ts, None,
                               provenance={"recordings": [r["id"] for r in train], "seed": seed})
    ids = [s["id"] for s in man["samples"]]
    idx = np.arange(len(ids))
    fold = validation.Fold("all-train", idx, np.array([], dtype=np.int64), [])
    fit, val = validation.inner_validation(fold, groups, fraction=0.2, seed=seed)
    validation.check_no_leak(groups, fit, val)
    cfg = TrainConfig(model="cnn_bilstm", data=str(ds_dir), epochs=epochs, batch_size=64, lr=2e-3, seed=seed,
                      patience=4, dropout=0.2, out=str(out / "runs" / "cnn_bilstm"), split="by-recording",
                      hparams={"width": 16, "lstm": 16})
    log(f"cnn_bilstm: {len(fit)} training windows, {len(val)} validation windows (by recording)")
    return core_train(cfg, split_ids=validation.fold_split_ids(ids, fit, val, []), log=log)


#: how the per-sample models are trained here: patch length, batch size, hyper-parameters
#: (the mEPP seed's sizes), Adam 1e-3, early stopping after 3 epochs without validation gain on
#: 15 % of the training recordings
PATCH_MODELS = {"unet1d": (1024, 16, {"width": 8, "depth": 3}), "autoencoder": (256, 32, {"width": 16})}
PATCH_LR, PATCH_PATIENCE, PATCH_VAL_FRACTION = 1e-3, 3, 0.15


def _train_patch_model(model: str, train: list[dict], test: list[dict], out: Path, epochs: int, seed: int,
                       log) -> Path:
    """Fit ``unet1d`` or ``autoencoder`` with the core's ``train()`` on a patch dataset of the
    training and test recordings: fit / validation parts by recording from the training
    recordings, the test recordings as the test part; returns the run folder."""
    from ..core import validation
    from ..core.training import TrainConfig, train as core_train

    length, batch, hparams = PATCH_MODELS[model]
    ds_dir = out / f"patches-{length}"
    man = write_patch_dataset(ds_dir, train + test, EventPatchParams(length),
                              provenance={"train": [r["id"] for r in train], "test": [r["id"] for r in test]})
    ids = [s["id"] for s in man["samples"]]
    groups = [s["group"] for s in man["samples"]]
    trained = {r["id"] for r in train}
    fold = validation.Fold("all-train", np.array([i for i, g in enumerate(groups) if g in trained], dtype=np.int64),
                           np.array([i for i, g in enumerate(groups) if g not in trained], dtype=np.int64), [])
    fit, val = validation.inner_validation(fold, groups, fraction=PATCH_VAL_FRACTION, seed=seed)
    validation.check_no_leak(groups, fit, val, fold.test)
    cfg = TrainConfig(model=model, data=str(ds_dir), epochs=epochs, batch_size=batch, lr=PATCH_LR, seed=seed,
                      patience=PATCH_PATIENCE, dropout=0.0, out=str(out / "runs" / model), split="by-recording",
                      hparams=dict(hparams))
    log(f"{model}: patches of the training recordings {len(fit)}, of the validation recordings {len(val)}, "
        f"of the test recordings {fold.test.size}")
    return core_train(cfg, split_ids=validation.fold_split_ids(ids, fit, val, fold.test), log=log)


def run_events_sim(data: str | Path | None, out: str | Path, *, seed: int = 0, epochs: int = 8, log=print,
                   n_per_combo: int = 3, duration_s: float = 10.0, tol_s: float = DEFAULT_TOL_S,
                   n_extra_train: int = 1, n_calibration: int = 1) -> dict:
    """The ``events-sim`` recipe (module docstring); returns the metrics dict.

    n_extra_train, n_calibration : simulated recordings per (kind, SNR, fs) of the training side
        added to the training set / used to choose the detection settings (fresh seeds, never the
        test recordings' seeds)
    """
    from ..core.models import load_keras_model
    from . import seg

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data) if data else None
    if data is None or not data.exists():
        data = out / "data"
        if not (data / "recordings.csv").is_file():
            recs = []
            i = 0
            for kind in ("mepp", "mepsc"):
                for snr in SNR_LEVELS:
                    for _ in range(n_per_combo):
                        recs.append(simulate_recording(kind, snr, duration_s, seed=seed * 100_003 + i,
                                                       rec_id=f"{kind}_snr{snr:g}_{i:03d}"))
                        i += 1
            write_cohort(data, recs)
            log(f"simulated {len(recs)} recordings into {data}")
    recs = load_cohort(data)
    train, test = split_recordings(recs)
    extra = extra_recordings(train, n_extra_train, duration_s, seed, "extra", 50_000)
    calib = extra_recordings(train, n_calibration, duration_s, seed, "calib", 70_000)
    train = train + extra
    log(f"{len(train)} training recordings ({len(extra)} simulated extra), {len(calib)} calibration recordings, "
        f"{len(test)} test recordings")
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    run_w = _train_window_model(train, out, epochs, seed, log)
    timing["cnn_bilstm_train_s"] = time.perf_counter() - t0
    wmodel = load_keras_model(run_w / "model.keras")

    t0 = time.perf_counter()
    run_u = _train_patch_model("unet1d", train, test, out, epochs, seed, log)
    umodel = load_keras_model(run_u / "model.keras", compile=False)
    timing["unet1d_train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_a = _train_patch_model("autoencoder", train, test, out, epochs, seed, log)
    amodel = load_keras_model(run_a / "model.keras", compile=False)
    thr = seg.read_threshold(run_a)
    timing["autoencoder_train_s"] = time.perf_counter() - t0
    from ..core.evaluation import evaluate_run

    # per-sample test metrics of the two patch runs (their evaluators; RUN/metrics.json)
    per_point = {m: {k: evaluate_run(r)[k] for k in ("iou", "balanced_accuracy", "roc_auc_ovr", "n_points")}
                 for m, r in (("unet1d", run_u), ("autoencoder", run_a))}
    log(f"trained: cnn_bilstm {run_w}, unet1d {run_u}, autoencoder {run_a} (threshold {thr:.3g})")

    from .apply import method_probability

    det = {"cnn_bilstm": wmodel, "unet1d": umodel, "autoencoder": amodel, "autoencoder_threshold": thr}
    t0 = time.perf_counter()
    params = calibrate_detection(det, calib, tol_s, log=log)
    timing["calibration_s"] = time.perf_counter() - t0
    per: dict[str, dict[str, dict]] = {m: {} for m in METHODS}
    secs = {m: 0.0 for m in METHODS}
    minutes = 0.0
    keep: dict = {}
    for r in test:
        x, fs, pol = r["x"], r["fs_hz"], r["polarity"]
        minutes += x.size / fs / 60.0
        probs = {}
        for m in METHODS:
            t = time.perf_counter()
            probs[m] = method_probability(m, det, x, fs, pol)
            secs[m] += time.perf_counter() - t
        keep[("unet1d_prob", r["id"])] = probs["unet1d"].astype(np.float32)
        for m in METHODS:
            t = time.perf_counter()
            ev = D.detect_events(x, fs, probs[m], pol, params[m])
            secs[m] += time.perf_counter() - t
            D.events_to_csv(out / "events" / m / f"{r['id']}.csv", ev)
            res = event_prf(r["truth"]["onset_s"], [e["onset_s"] for e in ev], tol_s)
            res.update(kinetics_errors(r["truth"], ev, tol_s))
            if m == "unet1d":
                res["mask_iou"] = mask_iou(r["mask"], probs[m] > 0.5)
            per[m][r["id"]] = {"kind": r["kind"], "snr": r["snr"], **res}
            keep[(m, r["id"])] = ev
    metrics = summarise(per, secs, minutes, tol_s)
    metrics.update({"split": {"train": [r["id"] for r in train], "test": [r["id"] for r in test]},
                    "data": str(data), "timing_s": {k: round(v, 2) for k, v in timing.items()},
                    "autoencoder_threshold": thr, "per_point_test": per_point,
                    "detection_params": {m: params_dict(params[m]) for m in METHODS},
                    "calibration": {"recordings": [r["id"] for r in calib], "chosen_by": "pooled event F1 (±"
                                    f"{tol_s * 1e3:g} ms) on the calibration recordings only",
                                    "f1": {m: getattr(params[m], "_calibration_f1", None) for m in METHODS}},
                    "extra_training_recordings": [r["id"] for r in extra], "train_fs_hz": sorted({r["fs_hz"] for r in train}), "runs": {"cnn_bilstm": str(run_w), "unet1d": str(run_u),
                                                           "autoencoder": str(run_a)}})
    write_json(out / "metrics.json", metrics)
    try:
        from .report import write_sim_report

        write_sim_report(out, metrics, test, keep)
    except Exception as exc:  # the report is an extra: never lose the metrics to a plotting problem
        log(f"report not written: {type(exc).__name__}: {exc}")
    return metrics


def _pool(rows: list[dict]) -> dict:
    tp = sum(r["tp"] for r in rows)
    nd = sum(r["n_detected"] for r in rows)
    nt = sum(r["n_true"] for r in rows)
    p = tp / nd if nd else (1.0 if nt == 0 else 0.0)
    rc = tp / nt if nt else 1.0
    return {"precision": p, "recall": rc, "f1": 2 * p * rc / (p + rc) if p + rc else 0.0, "tp": tp,
            "n_true": nt, "n_detected": nd}


def summarise(per: dict, secs: dict, minutes: float, tol_s: float) -> dict:
    """Pool per-recording counts into per-SNR, per-kind and overall event metrics per method."""
    methods = {}
    for m, rows in per.items():
        vals = list(rows.values())
        snrs = sorted({r["snr"] for r in vals})
        by_snr = {f"{s:g}": _pool([r for r in vals if r["snr"] == s]) for s in snrs}
        by_kind = {k: _pool([r for r in vals if r["kind"] == k]) for k in sorted({r["kind"] for r in vals})}
        entry = {**_pool(vals), "by_snr": by_snr, "by_kind": by_kind,
                 "seconds_per_minute": secs[m] / minutes if minutes else None, "recordings": rows}
        ious = [r["mask_iou"] for r in vals if "mask_iou" in r]
        if ious:
            entry["mask_iou"] = float(np.mean(ious))
        methods[m] = entry
    primary = "cnn_bilstm" if "cnn_bilstm" in methods else next(iter(methods))
    best = max((m for m in methods if m != "threshold"), key=lambda m: methods[m]["f1"])
    return {"tolerance_ms": tol_s * 1e3, "primary_method": primary,
            "f1": methods[primary]["f1"], "precision": methods[primary]["precision"],
            "recall": methods[primary]["recall"],
            "per_snr": {m: {s: {k: v[k] for k in ("f1", "precision", "recall")} for s, v in e["by_snr"].items()}
                        for m, e in methods.items()},
            "best_on_test": best,
            "methods": methods}
