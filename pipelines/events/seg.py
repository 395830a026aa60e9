"""Training and prediction of the per-sample models (U-Net mask, autoencoder anomaly score).

The core's ``train()`` fits softmax classifiers only, so these two are fitted here with
``keras.Model.fit`` and write a run folder of the core's shape through ``core.atomic``:
``config.yaml``, ``model.keras``, ``history.csv``, ``metrics.json`` (training-side numbers only:
the autoencoder's threshold and what it was chosen on; test metrics are written by the recipe).

Inputs are :func:`ephys.pipelines.events.windows.normalise_trace` traces (events upward, units of
robust SD), so one model serves both polarities.

* U-Net: patches of ``PATCH`` samples with the ground-truth mask, binary cross-entropy + Dice.
* Autoencoder: patches of ``AE_PATCH`` samples that hold no event (the seed's "trained on normal
  data"); the anomaly score of a sample is the squared reconstruction error smoothed over 2 ms;
  the threshold is the 99.5th percentile of the score on the *training* event-free patches.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import yaml

from ..core.atomic import atomic_path, write_json, write_text
from .windows import patches, stitch

__all__ = ["PATCH", "AE_PATCH", "train_unet", "predict_unet", "train_autoencoder", "anomaly_score",
           "load_run_model"]

PATCH = 1024
AE_PATCH = 256


def _history_csv(path: Path, hist: dict) -> None:
    keys = sorted(hist)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["epoch", *keys])
    for e in range(len(hist[keys[0]]) if keys else 0):
        w.writerow([e, *(f"{hist[k][e]:.6g}" for k in keys)])
    write_text(path, buf.getvalue())


def _save_run(run: Path, model, config: dict, hist: dict, metrics: dict) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    _history_csv(run / "history.csv", hist)
    with atomic_path(run / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    write_json(run / "metrics.json", metrics)
    return run


def _dice_bce(y_true, y_pred):
    import keras
    from keras import ops

    bce = keras.losses.binary_crossentropy(y_true, y_pred)
    inter = ops.sum(y_true * y_pred, axis=(1, 2))
    dice = 1.0 - (2.0 * inter + 1.0) / (ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2)) + 1.0)
    return ops.mean(bce, axis=1) + dice


def _fit(model, x, y, epochs, batch_size, seed, val_fraction=0.15):
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    t0 = time.perf_counter()
    h = model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=val_fraction if len(x) > 20 else 0.0,
                  verbose=0, shuffle=True,
                  callbacks=[keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True,
                                                           monitor="val_loss" if len(x) > 20 else "loss")])
    return {k: [float(v) for v in vals] for k, vals in h.history.items()}, time.perf_counter() - t0


def train_unet(run: str | Path, traces: list[np.ndarray], masks: list[np.ndarray], *, epochs: int = 10,
               seed: int = 0, width: int = 8, depth: int = 3, batch_size: int = 16, groups=None,
               extra_config: dict | None = None):
    """Fit the U-Net on normalised training traces and their masks; returns (run folder, model).

    traces : list of (n_i,) float32 normalised traces; masks : list of (n_i,) 0/1
    """
    import keras

    from .models import build_unet1d

    xs, ys = [], []
    for z, m in zip(traces, masks):
        px, st = patches(z, PATCH, PATCH // 2)
        pm, _ = patches(np.asarray(m, dtype=np.float32), PATCH, PATCH // 2)
        xs.append(px)
        ys.append(pm)
    x, y = np.concatenate(xs), np.concatenate(ys)
    keras.utils.set_random_seed(seed)
    model = build_unet1d((PATCH, 1), width=width, depth=depth)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_dice_bce, metrics=["binary_accuracy"])
    hist, secs = _fit(model, x, y, epochs, batch_size, seed)
    cfg = {"model": "unet1d", "modality": "event_mask", "patch": PATCH, "width": width, "depth": depth,
           "epochs": epochs, "batch_size": batch_size, "seed": seed, "lr": 1e-3, "loss": "bce+dice",
           "train_groups": list(groups or []), "keras_version": keras.__version__, **(extra_config or {})}
    metrics = {"n_train_patches": int(len(x)), "train_seconds": round(secs, 2), "epochs_run": len(hist.get("loss", []))}
    return _save_run(Path(run), model, cfg, hist, metrics), model


#: inference patch length (samples) and overlap of the fully convolutional U-Net
INFER_PATCH = 16_384
INFER_OVERLAP = 512
_LONG: dict = {}


def _long_unet(model, length: int):
    """The U-Net's layers rebuilt for input length ``length`` with the trained weights (the
    network is fully convolutional, so the weights do not depend on the patch length)."""
    key = (id(model), length)
    if key not in _LONG:
        from .models import build_unet1d

        c0 = model.get_layer("enc0_c0")
        depth = sum(1 for ly in model.layers if ly.name.startswith("enc") and ly.name.endswith("_c0"))
        m = build_unet1d((length, 1), width=int(c0.filters), depth=depth, kernel=int(c0.kernel_size[0]))
        m.set_weights(model.get_weights())
        _LONG.clear()
        _LONG[key] = (m, model)  # hold the trained model too, so its id is not reused
    return _LONG[key][0]


def predict_unet(model, z: np.ndarray, batch_size: int = 8, length: int = INFER_PATCH,
                 overlap: int = INFER_OVERLAP) -> np.ndarray:
    """Per-sample event probability (n,) of a normalised trace (float32).

    The trained U-Net is applied to long patches (``length`` samples, ``overlap`` between
    neighbours, triangular-weighted where they overlap) through a copy of its layers built for
    that length: one forward pass per ~1.6 s of trace at 10 kHz instead of one per 51 ms of
    1024-sample training patches at half overlap. Traces shorter than ``length`` use one patch
    of the trace's length rounded up to a multiple of 2**depth.
    """
    z = np.asarray(z, dtype=np.float32)
    n = z.size
    depth = sum(1 for ly in model.layers if ly.name.startswith("enc") and ly.name.endswith("_c0"))
    q = 2 ** depth
    if n <= length:
        length = max(PATCH, int(np.ceil(n / q)) * q)
    px, st = patches(z, length, length - overlap)
    m = _long_unet(model, length)
    pred = np.asarray(m.predict_on_batch(px) if len(px) <= batch_size else m.predict(px, batch_size=batch_size, verbose=0))
    return stitch(pred, st, n, length)


def _event_free_patches(z: np.ndarray, m: np.ndarray, length: int) -> np.ndarray:
    px, st = patches(z, length, length // 2)
    pm, _ = patches(np.asarray(m, dtype=np.float32), length, length // 2)
    keep = pm.reshape(len(st), -1).max(axis=1) == 0
    return px[keep]


def anomaly_score(model, z: np.ndarray, fs_hz: float, batch_size: int = 256) -> np.ndarray:
    """Per-sample squared reconstruction error of a normalised trace, smoothed over 2 ms."""
    from scipy.ndimage import uniform_filter1d

    px, st = patches(z, AE_PATCH, AE_PATCH // 2)
    rec = model.predict(px, batch_size=batch_size, verbose=0)
    err = (px - rec) ** 2
    e = stitch(err, st, z.size, AE_PATCH)
    return uniform_filter1d(e, size=max(1, int(2e-3 * fs_hz)))


def train_autoencoder(run: str | Path, traces: list[np.ndarray], masks: list[np.ndarray], fs: list[float], *,
                      epochs: int = 10, seed: int = 0, width: int = 16, batch_size: int = 32, quantile: float = 99.5,
                      groups=None, extra_config: dict | None = None):
    """Fit the autoencoder on event-free training patches; threshold = ``quantile`` of the
    training event-free score. Returns (run folder, model, threshold)."""
    import keras

    from .models import build_autoencoder

    x = np.concatenate([_event_free_patches(z, m, AE_PATCH) for z, m in zip(traces, masks)])
    keras.utils.set_random_seed(seed)
    model = build_autoencoder((AE_PATCH, 1), width=width)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    hist, secs = _fit(model, x, x, epochs, batch_size, seed)
    scores = []
    for z, m, f in zip(traces, masks, fs):
        s = anomaly_score(model, z, f)
        free = np.asarray(m) == 0
        scores.append(s[free])
    thr = float(np.percentile(np.concatenate(scores), quantile))
    cfg = {"model": "autoencoder", "modality": "event_mask", "patch": AE_PATCH, "width": width, "epochs": epochs,
           "batch_size": batch_size, "seed": seed, "lr": 1e-3, "loss": "mse", "threshold_quantile": quantile,
           "train_groups": list(groups or []), "keras_version": keras.__version__, **(extra_config or {})}
    metrics = {"n_train_patches": int(len(x)), "train_seconds": round(secs, 2),
               "threshold": thr, "threshold_source": f"{quantile} percentile of the score on training event-free samples",
               "epochs_run": len(hist.get("loss", []))}
    return _save_run(Path(run), model, cfg, hist, metrics), model, thr


def load_run_model(run: str | Path):
    """The ``model.keras`` of a U-Net or autoencoder run folder (custom loss not needed)."""
    import keras

    return keras.models.load_model(Path(run) / "model.keras", compile=False)
