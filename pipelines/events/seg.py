"""The per-sample models' steps around the core's fit loop: inference on whole traces, the
autoencoder's anomaly threshold, and the test metrics ``ephys evaluate`` writes for them.

``unet1d`` and ``autoencoder`` are registered models (:mod:`ephys.pipelines.events`) trained by
the core (:func:`ephys.pipelines.core.training.train`) on an ``event_patch`` dataset
(:func:`ephys.pipelines.events.windows.write_patch_dataset`; inputs are
:func:`~ephys.pipelines.events.windows.normalise_trace` traces, events upward in units of robust
SD, so one model serves both polarities):

* U-Net: target ``mask`` (the patch's ground-truth event mask), binary cross-entropy + Dice
  (:func:`ephys.pipelines.events.models.dice_bce`); the recipe's patches are :data:`PATCH` long.
* Autoencoder: target ``input`` (mean squared error), fitted on event-free patches only (the
  seed's "trained on normal data"; patches :data:`AE_PATCH` long); the anomaly score of a sample
  is its squared reconstruction error smoothed over 2 ms. :func:`choose_anomaly_threshold` (the
  spec's ``after_fit``) sets the threshold to the :data:`QUANTILE` percentile of the score on the
  event-free samples of the *training* recordings and writes it to ``RUN/threshold.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.atomic import write_json
from ..core.errors import EphysError
from .windows import assemble_recordings, patches, stitch

__all__ = ["PATCH", "AE_PATCH", "QUANTILE", "THRESHOLD_FILE", "predict_padded", "predict_unet", "anomaly_score",
           "choose_anomaly_threshold", "read_threshold", "evaluate_mask", "evaluate_anomaly"]

#: patch lengths (samples) of the events-sim recipe: U-Net, autoencoder (the mEPP seed's)
PATCH = 1024
AE_PATCH = 256
#: percentile of the training event-free anomaly score taken as the autoencoder's threshold
QUANTILE = 99.5
THRESHOLD_FILE = "threshold.json"


#: inference patch length (samples) and overlap of the fully convolutional U-Net
INFER_PATCH = 16_384
INFER_OVERLAP = 512
_LONG: dict = {}


def _unet_depth(model) -> int:
    return sum(1 for ly in model.layers if ly.name.startswith("enc") and ly.name.endswith("_c0"))


def _long_unet(model, length: int):
    """The U-Net's layers rebuilt for input length ``length`` with the trained weights (the
    network is fully convolutional, so the weights do not depend on the patch length)."""
    key = (id(model), length)
    if key not in _LONG:
        from .models import build_unet1d

        c0 = model.get_layer("enc0_c0")
        m = build_unet1d((length, 1), width=int(c0.filters), depth=_unet_depth(model), kernel=int(c0.kernel_size[0]))
        m.set_weights(model.get_weights())
        _LONG.clear()
        _LONG[key] = (m, model)  # hold the trained model too, so its id is not reused
    return _LONG[key][0]


def predict_padded(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model`` applied to ``x`` (n, ...) in batches of exactly ``batch_size`` rows, the last one
    padded with zeros (``predict_on_batch``): every call has one input shape, so TensorFlow traces
    the model's function once per model, never again per trace or sweep (no retracing warnings).
    Returns the n rows of output (float32)."""
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    out = []
    for i in range(0, max(n, 1), batch_size):
        b = x[i:i + batch_size]
        if len(b) < batch_size:
            b = np.concatenate([b, np.zeros((batch_size - len(b),) + x.shape[1:], np.float32)])
        out.append(np.asarray(model.predict_on_batch(b))[:max(0, min(batch_size, n - i))])
    return np.concatenate(out)


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
    q = 2 ** _unet_depth(model)
    if n <= length:
        length = max(PATCH, int(np.ceil(n / q)) * q)
    px, st = patches(z, length, length - overlap)
    m = _long_unet(model, length)
    pred = predict_padded(m, px, batch_size)
    return stitch(pred, st, n, length)


def _smooth_2ms(e: np.ndarray, fs_hz: float, axis: int = -1) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(e, size=max(1, int(2e-3 * fs_hz)), axis=axis)


def anomaly_score(model, z: np.ndarray, fs_hz: float, batch_size: int = 256) -> np.ndarray:
    """Per-sample squared reconstruction error (n,) of a normalised trace, in patches of the
    model's input length at half overlap (stitched, triangular weights), smoothed over 2 ms."""
    length = int(model.input_shape[1])
    px, st = patches(np.asarray(z, dtype=np.float32), length, length // 2)
    rec = predict_padded(model, px, batch_size)
    e = stitch((px - rec) ** 2, st, np.asarray(z).size, length)
    return _smooth_2ms(e, fs_hz)


def choose_anomaly_threshold(run_dir, model, ds, split: dict, log=print) -> float:
    """The autoencoder's ``after_fit``: threshold = :data:`QUANTILE` percentile of the anomaly
    score on the event-free samples of the training-side recordings (``split`` train + val parts,
    put back together from their patches: the score is computed on whole traces, as detection
    does); written to ``RUN/threshold.json`` and returned.

    Raises
    ------
    EphysError
        The training side holds no event-free sample.
    """
    recs = assemble_recordings(ds, np.concatenate([split["train"], split["val"]]))
    scores = [anomaly_score(model, r["z"], r["fs_hz"])[(r["mask"] == 0) & r["covered"]] for r in recs.values()]
    free = np.concatenate(scores) if scores else np.zeros(0)
    if not free.size:
        raise EphysError("no event-free training sample to set the anomaly threshold on", ds.root)
    thr = float(np.percentile(free, QUANTILE))
    write_json(Path(run_dir) / THRESHOLD_FILE, {
        "threshold": thr, "quantile": QUANTILE, "n_samples": int(free.size), "recordings": sorted(recs),
        "source": f"{QUANTILE} percentile of the anomaly score on the training recordings' event-free samples"})
    log(f"anomaly threshold {thr:.4g} ({QUANTILE} percentile of {free.size} training event-free samples)")
    return thr


def read_threshold(run_dir) -> float:
    """The threshold :func:`choose_anomaly_threshold` wrote into an autoencoder run.

    Raises
    ------
    EphysError
        No or an unreadable ``threshold.json``.
    """
    path = Path(run_dir) / THRESHOLD_FILE
    try:
        return float(json.loads(path.read_text())["threshold"])
    except FileNotFoundError:
        raise EphysError("no anomaly threshold (threshold.json): not a finished autoencoder run", run_dir) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EphysError(f"unreadable anomaly threshold ({exc})", path) from None


def _point_metrics(truth: np.ndarray, score: np.ndarray, pred: np.ndarray, label_names, n_patches: int) -> dict:
    """Per-point metrics of a binary per-sample output against the masks (each point of each test
    patch counts once per patch that holds it)."""
    from sklearn import metrics as skm

    from .metrics import mask_iou

    y, p = truth.ravel().astype(np.int64), pred.ravel().astype(np.int64)
    both = np.unique(y).size == 2
    pr, rc, f, sup = skm.precision_recall_fscore_support(y, p, labels=[0, 1], zero_division=0)
    return {"accuracy": float(skm.accuracy_score(y, p)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y, p)) if both else None,
            "macro_f1": float(np.mean(f)) if both else None,
            "roc_auc_ovr": float(skm.roc_auc_score(y, score.ravel())) if both else None,
            "iou": mask_iou(y.astype(bool), p.astype(bool)),
            "n_test": int(n_patches), "n_points": int(y.size), "unit": "per sample point of the test patches",
            "labels": list(label_names), "confusion_matrix": skm.confusion_matrix(y, p, labels=[0, 1]).tolist(),
            "per_class": {label_names[c]: {"precision": float(pr[c]), "recall": float(rc[c]), "f1": float(f[c]),
                                           "support": int(sup[c])} for c in (0, 1)}}


def _predict_patches(model, ds, test, batch_size: int, chunk: int = 4096) -> np.ndarray:
    idx = np.asarray(test, dtype=np.int64)
    return np.concatenate([np.asarray(model.predict(ds.load(idx[i:i + chunk]), batch_size=batch_size, verbose=0))
                           for i in range(0, idx.size, chunk)])


def evaluate_mask(run_dir, config: dict, ds, test, batch_size: int = 64) -> dict:
    """The U-Net's ``evaluator``: per-point accuracy, balanced accuracy, macro-F1, ROC-AUC of the
    mask probability, IoU and per-class precision / recall / F1 (probability > 0.5) on the run's
    test patches. Event-level F1 needs the detection step on whole traces (``events-sim``)."""
    from ..core.models import load_keras_model

    model = load_keras_model(Path(run_dir) / "model.keras", compile=False)
    p = _predict_patches(model, ds, test, batch_size)[..., 0]
    truth = ds.load_mask(test, dtype=np.uint8)[..., 0]
    return {**_point_metrics(truth, p, p > 0.5, ds.label_names, len(test)), "decision": "probability > 0.5"}


def evaluate_anomaly(run_dir, config: dict, ds, test, batch_size: int = 64) -> dict:
    """The autoencoder's ``evaluator``: per-point metrics of ``score > threshold`` (the run's
    training-side threshold) against the test patches' masks, ROC-AUC of the score; the score of
    each patch is its own squared reconstruction error smoothed over 2 ms (no stitching), and
    ``reconstruction_mse_event_free`` the mean squared error of the event-free test patches."""
    from ..core.models import load_keras_model

    thr = read_threshold(run_dir)
    model = load_keras_model(Path(run_dir) / "model.keras", compile=False)
    x = ds.load(test)[..., 0]
    err = (x - _predict_patches(model, ds, test, batch_size)[..., 0]) ** 2
    recs = ds.manifest["recordings"]
    fs = np.array([recs[ds.groups[i]]["fs_hz"] for i in test])
    score = np.empty_like(err)
    for f in np.unique(fs):
        score[fs == f] = _smooth_2ms(err[fs == f], f, axis=1)
    truth = ds.load_mask(test, dtype=np.uint8)[..., 0]
    free = truth.max(axis=1) == 0
    return {**_point_metrics(truth, score, score > thr, ds.label_names, len(test)),
            "decision": f"anomaly score > {thr:.4g} (threshold.json)",
            "reconstruction_mse_event_free": float(err[free].mean()) if free.any() else None}
