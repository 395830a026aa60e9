"""The model that ships with ephys, the recipe that trains it, and the benchmark that picks the default.

``ephys reproduce events-default`` (:func:`run_default_model`):

1. Training cohort: every training combination of :data:`TRAIN_COMBOS` (kinetics family x
   sampling rate) at SNR 2, 3, 5 and 10, ``n_train`` recordings each (coloured noise, labelled
   glitches and steps; :mod:`.families`), seeds ``seed * 100_003 + i``.
2. Windows: per recording, event windows, hard negatives and event-free windows
   (:func:`.windows.training_windows`), plus two windows per artifact with the glitch or step
   where an onset would be, labelled ``no_event`` (an artifact is not an event);
   ``OUT/windows`` (an ``event_window`` dataset).
3. ``cnn_bilstm`` trained by the core's ``train()``; early stopping on 20 % of the recordings
   (by recording); ``OUT/runs/cnn_bilstm``.
4. Detection settings of ``cnn_bilstm`` and of the plain threshold chosen on separate calibration
   recordings (one per family x SNR, seeds offset by 70 000; :func:`.events_sim.calibrate_detection`
   with the onset tolerance of each family, :data:`TOL_S`).
5. ``OUT/metrics.json`` in the layout ``ephys events detect --run`` reads (``train_fs_hz``,
   ``detection_params``), and ``OUT/shipped.json``: recipe, seed, settings, the window
   dataset's fingerprint, sha256 of ``model.keras``.

:func:`install` copies those files into ``pipelines/events/shipped/`` (what ships);
:func:`ephys.pipelines.events.shipped.shipped_run` returns that folder.

``ephys reproduce events-families`` (:func:`run_family_benchmark`): held-out simulated test sets
(seeds from :data:`TEST_SEED_BASE`, which no training or calibration recording uses) per family
and SNR 2, 3, 5, 10; every method's event F1 (onsets matched one to one within the family's
tolerance) with a 95 % bootstrap interval over recordings, the detections on labelled artifacts,
and ``default_method``: the method with the highest mean F1 over the family x SNR cells.
"""

from __future__ import annotations

import json
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np

from ..core.atomic import write_json
from ..core.errors import EphysError
from .families import FAMILIES, simulate_family
from .shape import ShapeLimits, shape_reason
from .shipped import sha256
from .simparams import FAMILY_SNR_LEVELS

__all__ = ["TRAIN_COMBOS", "TOL_S", "TEST_SEED_BASE", "run_default_model", "run_family_benchmark", "install",
           "sha256"]

#: (family, sampling rate Hz) the shipped model is trained on: each family at the rates such
#: recordings come at; a trace at another rate is resampled to the nearest (``events detect``)
TRAIN_COMBOS = (("fast-mepsc", 20_000.0), ("fast-mepsc", 50_000.0), ("mipsc", 20_000.0), ("mipsc", 10_000.0),
                ("nmj-mepp", 10_000.0), ("nmj-mejc", 10_000.0))
#: onset tolerance of event matching per family (s): +-1 ms for minis (miniML's), +-3 ms for the
#: NMJ families whose 10-90 % rise lasts up to 6 ms
TOL_S = {"fast-mepsc": 1e-3, "mipsc": 1e-3, "nmj-mepp": 3e-3, "nmj-mejc": 3e-3}
#: first seed of the held-out test recordings; training and calibration seeds stay far below it
TEST_SEED_BASE = 2_000_000_000
#: the window classifier's settings in the recipe (CPU-sized)
HPARAMS = {"width": 16, "lstm": 16}
METHODS = ("cnn_bilstm", "threshold")


def weights_sha256(model_file: str | Path) -> str:
    """Hex sha256 of a saved Keras model's weights (every array's bytes in layer order): equal for
    equal weights, unlike the ``.keras`` file's own checksum, which changes with the save date the
    archive stores."""
    import hashlib

    from ..core.models import load_keras_model

    h = hashlib.sha256()
    for w in load_keras_model(model_file, compile=False).get_weights():
        h.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return h.hexdigest()


def _as_dict(r) -> dict:
    return {"id": r.id, "kind": r.kind, "fs_hz": r.fs_hz, "units": r.units, "polarity": r.polarity, "snr": r.snr,
            "x": r.trace, "mask": r.mask, "truth": r.truth}


def _cohort(combos, snrs, n_each: int, duration_s: float, seed0: int, tag: str) -> list[dict]:
    out, j = [], 0
    for fam, fs in combos:
        for snr in snrs:
            for _ in range(n_each):
                out.append(_as_dict(simulate_family(fam, snr, duration_s, seed=seed0 + j, fs_hz=fs,
                                                    rec_id=f"{tag}_{fam}_snr{snr:g}_{fs / 1e3:g}k_{j:03d}")))
                j += 1
    return out


def artifact_windows(r: dict, rng: np.random.Generator) -> np.ndarray:
    """Two windows per labelled artifact of recording ``r``, the artifact at a random position of
    the onset range, none holding an event onset there: (m, 600, 1) float32 (label no_event)."""
    from .windows import NEG_FREE, POS_RANGE, WINDOW, minmax_windows

    arts = r["truth"].get("artifacts") or {"time_s": []}
    n = r["x"].size
    on = np.round(np.asarray(r["truth"]["onset_s"]) * r["fs_hz"]).astype(np.int64)
    starts = []
    for ts in arts["time_s"]:
        a = int(round(ts * r["fs_hz"]))
        for _ in range(2):
            s = a - int(rng.integers(POS_RANGE[0], POS_RANGE[1] + 1))
            rel = on - s
            if 0 <= s <= n - WINDOW and not np.any((rel >= NEG_FREE[0]) & (rel <= NEG_FREE[1])):
                starts.append(s)
    y = r["x"] * (1.0 if r["polarity"] == "positive" else -1.0)
    return minmax_windows(y, np.array(starts, dtype=np.int64)) if starts else np.zeros((0, WINDOW, 1), np.float32)


def _train(train: list[dict], out: Path, epochs: int, seed: int, log) -> tuple[Path, str]:
    from ..core import validation
    from ..core.datasets import load_dataset
    from ..core.training import TrainConfig, train as core_train
    from .windows import LABEL_NAMES, training_windows, write_window_dataset

    rng = np.random.default_rng(seed)
    ws, labs, groups, ts = [], [], [], []
    for r in train:
        w, lab, st = training_windows(r["x"], r["truth"]["onset_s"], r["fs_hz"], r["polarity"], rng, per_event=2,
                                      neg_ratio=3.0)
        aw = artifact_windows(r, rng)
        ws += [w, aw]
        labs += [LABEL_NAMES[k] for k in lab] + ["no_event"] * len(aw)
        groups += [r["id"]] * (len(lab) + len(aw))
        ts += list(st / r["fs_hz"]) + [0.0] * len(aw)
    ds_dir = out / "windows"
    man = write_window_dataset(ds_dir, np.concatenate(ws), labs, groups, ts, None,
                               provenance={"recordings": [r["id"] for r in train], "seed": seed,
                                           "recipe": "events-default"})
    ids = [s["id"] for s in man["samples"]]
    from ..core.validation import Fold

    fit, val = validation.inner_validation(Fold("all-train", np.arange(len(ids)), np.array([], np.int64)), groups,
                                           fraction=0.2, seed=seed)
    cfg = TrainConfig(model="cnn_bilstm", data=str(ds_dir), epochs=epochs, batch_size=64, lr=2e-3, seed=seed,
                      patience=3, dropout=0.2, out=str(out / "runs" / "cnn_bilstm"), split="by-recording",
                      hparams=dict(HPARAMS))
    log(f"cnn_bilstm: {len(fit)} training windows, {len(val)} validation windows (by recording), "
        f"{sum(1 for x in labs if x == 'event')} event windows in all")
    run = core_train(cfg, split_ids=validation.fold_split_ids(ids, fit, val, []), log=log)
    return run, load_dataset(ds_dir).fingerprint()


def run_default_model(data, out: str | Path, *, seed: int = 0, epochs: int = 6, n_train: int = 1,
                      duration_s: float = 10.0, log=print) -> dict:
    """The ``events-default`` recipe (module docstring); returns ``OUT/shipped.json``'s content.

    ``data`` is ignored (the cohort is simulated from ``seed``); ``n_train`` recordings per family
    x rate x SNR of ``duration_s`` s.
    """
    from ..core.models import load_keras_model
    from .events_sim import calibrate_detection, params_dict

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = _cohort(TRAIN_COMBOS, FAMILY_SNR_LEVELS, n_train, duration_s, seed * 100_003, "train")
    calib = _cohort([(f, FAMILIES[f].fs_hz) for f in FAMILIES], FAMILY_SNR_LEVELS, 1, duration_s,
                    seed * 100_003 + 70_000, "calib")
    log(f"{len(train)} training recordings, {len(calib)} calibration recordings ({time.perf_counter() - t0:.0f} s)")
    run, fingerprint = _train(train, out, epochs, seed, log)
    det = {"cnn_bilstm": load_keras_model(run / "model.keras")}
    params = calibrate_detection(det, calib, TOL_S, log=log, methods=METHODS)
    metrics = {"recipe": "events-default", "train_fs_hz": sorted({fs for _, fs in TRAIN_COMBOS}),
               "detection_params": {m: params_dict(params[m]) for m in METHODS},
               "calibration": {"recordings": [r["id"] for r in calib],
                               "f1": {m: getattr(params[m], "_calibration_f1", None) for m in METHODS},
                               "tolerance_s": TOL_S},
               "methods": list(METHODS)}
    write_json(out / "metrics.json", metrics)
    card = {"recipe": "ephys reproduce events-default",
            "command": f"ephys reproduce events-default --seed {seed} --epochs {epochs} --hparam n_train={n_train} "
                       f"--hparam duration_s={duration_s:g}", "seed": seed, "epochs": epochs, "n_train": n_train,
            "duration_s": duration_s, "train_combos": [list(c) for c in TRAIN_COMBOS],
            "snr_levels": list(FAMILY_SNR_LEVELS), "hparams": HPARAMS,
            "data_fingerprint": fingerprint, "model_sha256": sha256(run / "model.keras"),
            "weights_sha256": weights_sha256(run / "model.keras"),
            "model_bytes": (run / "model.keras").stat().st_size,
            "reproducibility": "the same seed gives the same training windows (data_fingerprint); on the same "
                               "machine and library versions the same weights (weights_sha256; the .keras file's "
                               "sha256 differs, it stores the save date); on other machines the weights may "
                               "differ in the last bits (floating-point order): compare the events-families F1",
            "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "shipped.json", card)
    return card


#: the files of a recipe output that ship (relative to OUT)
SHIPPED_FILES = ("metrics.json", "shipped.json", "runs/cnn_bilstm/model.keras", "runs/cnn_bilstm/config.yaml",
                 "runs/cnn_bilstm/training_range.json")


def install(out: str | Path, dest: str | Path | None = None) -> Path:
    """Copy a finished ``events-default`` output's shipped files into ``dest`` (default: the
    package's ``shipped/`` folder); returns ``dest``.

    Raises
    ------
    EphysError
        A file of :data:`SHIPPED_FILES` is missing, or the model's sha256 is not the card's.
    """
    out = Path(out)
    dest = Path(dest) if dest else Path(__file__).parent / "shipped"
    for f in SHIPPED_FILES:
        if not (out / f).is_file():
            raise EphysError(f"missing {f}: not a finished events-default output", out)
    card = json.loads((out / "shipped.json").read_text())
    if sha256(out / "runs/cnn_bilstm/model.keras") != card["model_sha256"]:
        raise EphysError("model.keras is not the one shipped.json describes", out)
    for f in SHIPPED_FILES:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / f, dest / f)
    return dest


# ---------------------------------------------------------------- benchmark: which method is the default


def held_out_set(family: str, snr: float, n_recordings: int, duration_s: float, fs_hz: float | None = None,
             noise: str = "coloured", real_noise_file=None) -> list[dict]:
    """Held-out test recordings of one family x SNR: seeds from :data:`TEST_SEED_BASE` (plus a
    family / SNR / rate offset), never used for training or calibration."""
    from .families import REAL_NOISE_FILE

    fams = list(FAMILIES)
    fs = float(fs_hz or FAMILIES[family].fs_hz)
    base = TEST_SEED_BASE + 1_000_000 * fams.index(family) + 10_000 * int(round(snr * 10)) + int(fs // 1000) * 100
    return [_as_dict(simulate_family(family, snr, duration_s, seed=base + j, fs_hz=fs, noise=noise,
                                     rec_id=f"test_{family}_snr{snr:g}_{fs / 1e3:g}k_{noise}_{j:02d}",
                                     real_noise_file=real_noise_file or REAL_NOISE_FILE))
            for j in range(n_recordings)]


def bootstrap_f1(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Pooled F1 of per-recording counts (``tp``, ``n_detected``, ``n_true``) and its 95 % percentile
    bootstrap interval over recordings (resampled with replacement)."""
    tp = np.array([r["tp"] for r in rows], float)
    nd = np.array([r["n_detected"] for r in rows], float)
    nt = np.array([r["n_true"] for r in rows], float)

    def f1(idx):
        den = nd[idx].sum() + nt[idx].sum()
        return 2 * tp[idx].sum() / den if den else 0.0

    rng = np.random.default_rng(seed)
    boots = [f1(rng.integers(0, len(rows), len(rows))) for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(f1(np.arange(len(rows)))), float(lo), float(hi)


def run_family_benchmark(data, out: str | Path, *, run: str | Path | None = None, n_recordings: int = 5,
                         duration_s: float = 10.0, snrs=FAMILY_SNR_LEVELS, families=tuple(FAMILIES),
                         log=print) -> dict:
    """The ``events-families`` recipe (module docstring); returns ``OUT/metrics.json``'s content.

    ``run``: an ``events-default`` output (default: the shipped model). ``data``: a real
    voltage-clamp recording whose event-free stretches make a further fast-mEPSC test set on real
    noise (:func:`.families.real_noise`; skipped with a note when it is absent or None).
    """
    from . import detect as D
    from .apply import load_detectors, method_probability
    from .metrics import event_prf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if run is None:
        from .shipped import shipped_run

        run = shipped_run()
    det = load_detectors(run, METHODS)
    cells = [(f, s, None, "coloured") for f in families for s in snrs]
    notes = ["every method's candidates pass the default shape check (ShapeLimits()), as ephys events detect does"]
    if data is not None and Path(data).is_file():
        cells += [("fast-mepsc", s, 20_000.0, "real") for s in snrs]
    else:
        notes.append(f"real-noise test set skipped: no recording at {data}")
    rows: dict = {}
    secs = {m: 0.0 for m in METHODS}
    minutes = 0.0
    for fam, snr, fs, noise in cells:
        recs = held_out_set(fam, snr, n_recordings, duration_s, fs, noise, real_noise_file=data)
        tol = TOL_S[fam]
        key = f"{fam}|{snr:g}|{noise}"
        rows[key] = {m: [] for m in METHODS}
        for r in recs:
            minutes += r["x"].size / r["fs_hz"] / 60
            for m in METHODS:
                t = time.perf_counter()
                prob = method_probability(m, det, r["x"], r["fs_hz"], r["polarity"])
                # as `ephys events detect` does: candidates pass the default shape check
                ev = D.detect_events(r["x"], r["fs_hz"], prob, r["polarity"], det["params"].get(m),
                                     reject=partial(shape_reason, limits=ShapeLimits()))
                secs[m] += time.perf_counter() - t
                on = [e["onset_s"] for e in ev]
                res = event_prf(r["truth"]["onset_s"], on, tol)
                arts = r["truth"]["artifacts"]["time_s"]
                res["on_artifacts"] = int(sum(np.any(np.abs(np.asarray(arts) - o) < 3e-3) for o in on)) if len(arts) \
                    else 0
                res["n_artifacts"] = len(arts)
                rows[key][m].append({k: res[k] for k in ("tp", "n_detected", "n_true", "on_artifacts",
                                                          "n_artifacts")})
        line = [f"{fam} SNR {snr:g} ({noise}, {recs[0]['fs_hz'] / 1e3:g} kHz, "
                f"{sum(x['n_true'] for x in rows[key]['threshold'])} events):"]
        for m in METHODS:
            f, lo, hi = bootstrap_f1(rows[key][m])
            line.append(f"{m} F1 {f:.3f} [{lo:.3f}, {hi:.3f}]")
        log("  ".join(line))
    table = {}
    for key, per in rows.items():
        fam, snr, noise = key.split("|")
        entry = {"family": fam, "snr": float(snr), "noise": noise, "n_true": sum(x["n_true"] for x in per["threshold"]),
                 "n_recordings": len(per["threshold"]), "tolerance_ms": TOL_S[fam] * 1e3}
        for m in METHODS:
            f, lo, hi = bootstrap_f1(per[m])
            tp = sum(x["tp"] for x in per[m])
            nd = sum(x["n_detected"] for x in per[m])
            entry[m] = {"f1": f, "f1_ci95": [lo, hi], "precision": tp / nd if nd else None,
                        "recall": tp / entry["n_true"] if entry["n_true"] else None,
                        "detections_on_artifacts": sum(x["on_artifacts"] for x in per[m]),
                        "n_artifacts": sum(x["n_artifacts"] for x in per[m])}
        table[key] = entry
    coloured = [e for e in table.values() if e["noise"] == "coloured"]
    mean_f1 = {m: float(np.mean([e[m]["f1"] for e in coloured])) for m in METHODS}
    default = max(METHODS, key=lambda m: mean_f1[m])
    metrics = {"run": str(run), "real_noise_file": str(data) if data else None, "methods": list(METHODS), "cells": table, "mean_f1_coloured": mean_f1,
               "default_method": default,
               "default_rule": "highest mean F1 over the family x SNR cells of the coloured-noise test sets",
               "seconds_per_minute": {m: secs[m] / minutes for m in METHODS},
               "test_seed_base": TEST_SEED_BASE, "n_recordings_per_cell": n_recordings, "duration_s": duration_s,
               "bootstrap": "95 % percentile interval, 1000 resamples of recordings", "notes": notes}
    write_json(out / "metrics.json", metrics)
    (out / "table.md").write_text(markdown_table(metrics), encoding="utf-8")
    return metrics


def markdown_table(m: dict) -> str:
    """The benchmark as a Markdown table (family, SNR, noise, events, each method's F1 [95 % CI])."""
    head = "| family | SNR | noise | events | " + " | ".join(f"{x} F1 [95 % CI]" for x in m["methods"]) + \
           " | detections on artifacts (" + " / ".join(m["methods"]) + ") |"
    lines = [head, "|" + "---|" * (5 + len(m["methods"]))]
    for e in m["cells"].values():
        f1s = " | ".join(f"{e[x]['f1']:.2f} [{e[x]['f1_ci95'][0]:.2f}, {e[x]['f1_ci95'][1]:.2f}]" for x in m["methods"])
        arts = " / ".join(str(e[x]["detections_on_artifacts"]) for x in m["methods"])
        lines.append(f"| {e['family']} | {e['snr']:g} | {e['noise']} | {e['n_true']} | {f1s} | "
                     f"{arts} of {e[m['methods'][0]]['n_artifacts']} |")
    return "\n".join(lines) + "\n"
