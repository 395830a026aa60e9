"""The range of a run's training data, and the inputs ``ephys predict`` finds outside it.

A model answers every input, also one unlike anything it was trained on (a cell recorded with
0.5-s steps given to a model trained on 1-s steps; features 30 times larger than any training
value); its probabilities then mean little. So every run records, at train time, the range of
its training part (``RUN/training_range.json``), and :func:`check_inputs` marks each predicted
sample outside it, with the reason.

What is recorded, per statistic: ``min``, ``max``, ``median`` and the number of finite values,
over the samples of the training part (``split.json`` ``train``):

* **feature tables** (a 1-D sample with ``manifest["feature_names"]``): every feature;
* **every other sample** (images, windows, sequences): simple per-sample statistics,
  ``amplitude`` (peak-to-peak of the sample's values) and ``noise`` (robust SD of the differences
  along its first axis: median |diff| / 0.6745 / sqrt 2, Donoho & Johnstone 1994), the dataset's
  ``sampling_rate_hz`` (``manifest["fs_hz"]``) when it records one, and whatever the modality's
  ``sample_stats`` hook adds from the samples' manifest entries (e.g. the duration of a recording's
  protocol, the rate it was sampled at).

A value is outside the range when it lies more than :data:`MARGIN` of the training span
(max - min) below the minimum or above the maximum; a statistic that was constant in training
allows a relative difference of :data:`CONSTANT_RTOL`. Missing values (NaN) are never "outside":
feature tables may hold them and tree models handle them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import write_json

__all__ = ["RANGE_FILE", "MARGIN", "sample_statistics", "training_range", "write_training_range",
           "read_training_range", "check_inputs"]

#: the range file in a run folder
RANGE_FILE = "training_range.json"
#: how far (a fraction of the training span) a value may lie beyond the training min / max
MARGIN = 0.10
#: relative tolerance of a statistic that was constant in training (e.g. one sampling rate)
CONSTANT_RTOL = 0.01
#: samples read at a time when the statistics are computed
CHUNK = 256


def _is_table(ds) -> bool:
    names = ds.manifest.get("feature_names")
    return bool(names) and len(ds.sample_shape) == 1 and len(names) == ds.sample_shape[0]


def sample_statistics(ds, indices, mod=None) -> dict[str, np.ndarray]:
    """The per-sample statistics of samples ``indices`` of dataset ``ds`` (see the module docstring).

    Returns
    -------
    dict name -> float64 array of shape (len(indices),): the features of a table, else
    ``amplitude``, ``noise``, ``sampling_rate_hz`` (when recorded) and the modality hook's.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if _is_table(ds):
        x = np.concatenate([ds.load(idx[i:i + CHUNK], dtype=np.float64) for i in range(0, idx.size, CHUNK)]) \
            if idx.size else np.zeros((0, len(ds.manifest["feature_names"])))
        return {str(n): x[:, k] for k, n in enumerate(ds.manifest["feature_names"])}
    amp, noise = np.full(idx.size, np.nan), np.full(idx.size, np.nan)
    for i in range(0, idx.size, CHUNK):
        x = ds.load(idx[i:i + CHUNK], dtype=np.float64)
        flat = x.reshape(x.shape[0], x.shape[1] if x.ndim > 1 else 1, -1)
        with np.errstate(all="ignore"):
            amp[i:i + CHUNK] = np.nanmax(flat, axis=(1, 2)) - np.nanmin(flat, axis=(1, 2))
            d = np.diff(flat, axis=1).reshape(flat.shape[0], -1)
            noise[i:i + CHUNK] = (np.nanmedian(np.abs(d), axis=1) / 0.6745 / np.sqrt(2.0) if d.shape[1]
                                  else np.nan)
    out = {"amplitude": amp, "noise": noise}
    fs = ds.manifest.get("fs_hz")
    if isinstance(fs, (int, float)) and not isinstance(fs, bool):
        out["sampling_rate_hz"] = np.full(idx.size, float(fs))
    hook = mod.hook("sample_stats") if mod is not None and hasattr(mod, "sample_stats") else None
    if hook is not None:
        for name, v in (hook(ds.manifest, [int(i) for i in idx]) or {}).items():
            out[str(name)] = np.asarray(v, dtype=np.float64).reshape(idx.size)
    return out


def training_range(ds, indices, mod=None) -> dict:
    """The range record of samples ``indices`` (a run's training part): ``kind``, ``n_samples``,
    ``margin`` and per statistic ``min``, ``max``, ``median``, ``n_finite``."""
    stats = sample_statistics(ds, indices, mod)
    rec = {}
    for name, v in stats.items():
        f = v[np.isfinite(v)]
        rec[name] = ({"min": float(f.min()), "max": float(f.max()), "median": float(np.median(f)),
                      "n_finite": int(f.size)} if f.size else {"min": None, "max": None, "median": None,
                                                                "n_finite": 0})
    return {"kind": "features" if _is_table(ds) else "per-sample statistics", "part": "train",
            "n_samples": int(len(indices)), "margin": MARGIN, "statistics": rec}


def write_training_range(run_dir: str | Path, ds, indices, mod=None) -> Path:
    """Write ``RUN/training_range.json`` for the training part ``indices`` of ``ds``."""
    return write_json(Path(run_dir) / RANGE_FILE, training_range(ds, indices, mod))


def read_training_range(run_dir: str | Path) -> dict | None:
    """``RUN/training_range.json``, or None (a run trained before ranges were recorded)."""
    try:
        rec = json.loads((Path(run_dir) / RANGE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("statistics"), dict) else None


def _bounds(st: dict) -> tuple[float, float] | None:
    lo, hi = st.get("min"), st.get("max")
    if lo is None or hi is None:
        return None
    span = hi - lo
    pad = MARGIN * span if span > 0 else CONSTANT_RTOL * max(abs(lo), abs(hi), 1e-12)
    return lo - pad, hi + pad


def check_inputs(rng: dict, ds, indices, mod=None, max_reasons: int = 3) -> list[str]:
    """For each sample of ``indices``: ``""`` when every statistic lies in the training range
    ``rng`` (:func:`training_range`), else the reason (the first ``max_reasons`` statistics
    outside it, e.g. ``"protocol_length_s 0.5 outside the training range [1, 1]"``)."""
    stats = sample_statistics(ds, indices, mod)
    reasons = [[] for _ in range(len(indices))]
    for name, st in (rng.get("statistics") or {}).items():
        b = _bounds(st)
        v = stats.get(name)
        if b is None or v is None:
            continue
        with np.errstate(invalid="ignore"):
            out = np.flatnonzero((v < b[0]) | (v > b[1]))
        for k in out:
            reasons[k].append(f"{name} {v[k]:.4g} outside the training range [{st['min']:.4g}, {st['max']:.4g}]")
    return ["; ".join(r[:max_reasons]) + (f" (and {len(r) - max_reasons} more)" if len(r) > max_reasons else "")
            for r in reasons]
