"""Windows and patches of continuous traces, and the ``event_window`` dataset layout.

Window classifier (after miniML, O'Neill et al. 2025): windows of 600 samples, each min-max
scaled to [0, 1], slid along the (polarity-flipped) trace with a stride of 20 samples; a window is
an *event* window when an event onset lies between samples ``POS_RANGE`` (60-180, i.e. 10-30 % of
the window) of it, *no_event* when no onset lies in ``NEG_FREE`` (20-260); others are ambiguous
and not used for training. The prediction trace (probability at each window start) becomes a
per-sample onset probability: sample t gets the largest probability of the windows that would
have t inside their event range (:func:`prediction_to_samples`).

Dataset layout (``event_window`` modality, the core's single-array layout): ``windows.npy``
float32 (n, 600, 1), ``manifest.json`` with ``modality``, ``sample_shape``, ``array``,
``label_names`` (no_event, event), ``samples`` (``id``, ``row``, ``label``, ``group`` = recording,
``t_s`` = window start time in its recording), ``fs_hz``, ``window``, ``stride``, provenance.

Patch layout (``event_patch`` modality, for the per-sample models ``unet1d`` and
``autoencoder``): overlapping patches of each recording's :func:`normalise_trace` trace (events
upward, units of robust SD), ``patches.npy`` float32 (n, L, 1), and beside them the ground-truth
event masks ``masks.npy`` uint8 (n, L, 1) (``manifest["mask_array"]``, the core's mask target);
``label_names`` (no_event, event): a patch is *event* when its mask holds any event sample;
``samples`` (``id``, ``row``, ``label``, ``group`` = recording, ``start`` = first sample,
``t_s``); ``recordings`` (id -> ``fs_hz``, ``polarity``, ``n_samples``, ``units``, ``kind``,
``snr``); ``parameters`` (:class:`EventPatchParams`). Written by :func:`write_patch_dataset`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.atomic import write_json, write_npy
from ..core.errors import EphysError

__all__ = ["WINDOW", "STRIDE", "POS_RANGE", "NEG_FREE", "LABEL_NAMES", "MODALITY", "minmax_windows",
           "prediction_to_samples", "training_windows", "write_window_dataset", "normalise_trace", "patches",
           "stitch", "window_probability", "PATCH_MODALITY", "EventPatchParams", "write_patch_dataset",
           "patch_recording", "write_patches",
           "assemble_recordings"]

WINDOW = 600
STRIDE = 20
POS_RANGE = (60, 180)
NEG_FREE = (20, 260)
LABEL_NAMES = ["no_event", "event"]
MODALITY = "event_window"
PATCH_MODALITY = "event_patch"


def minmax_windows(x: np.ndarray, starts: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Windows ``x[s:s+window]`` for ``starts``, each min-max scaled to [0, 1].

    Returns
    -------
    np.ndarray, (len(starts), window, 1), float32 (a flat window becomes all zeros)
    """
    x = np.asarray(x, dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(x, window)
    w = np.asarray(view[np.asarray(starts, dtype=np.int64)], dtype=np.float32)
    lo = w.min(axis=1, keepdims=True)
    rng = w.max(axis=1, keepdims=True) - lo
    w = np.where(rng > 0, (w - lo) / np.where(rng > 0, rng, 1), 0.0).astype(np.float32)
    return w[..., None]


def sliding_starts(n: int, window: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    """Window start samples 0, stride, ... that fit in ``n`` samples."""
    if n < window:
        raise EphysError(f"the trace has {n} samples, fewer than one window of {window}")
    return np.arange(0, n - window + 1, stride, dtype=np.int64)


def prediction_to_samples(p: np.ndarray, starts: np.ndarray, n: int, pos_range=POS_RANGE) -> np.ndarray:
    """Per-sample onset probability from window probabilities ``p`` at ``starts``.

    ``q[t] = max p(s)`` over windows with ``s + pos_range[0] <= t <= s + pos_range[1]``.
    """
    from scipy.ndimage import maximum_filter1d

    ps = np.interp(np.arange(n), starts, p, left=0.0, right=0.0)
    lo, hi = pos_range
    size = hi - lo + 1
    m = maximum_filter1d(ps, size=size, mode="constant", cval=0.0)  # m[u] = max ps[u-h..u+h]
    shift = lo + (size // 2)
    q = np.zeros(n)
    q[shift:] = m[: n - shift]
    return q


def normalise_trace(x: np.ndarray, fs_hz: float, polarity: str, baseline_ms: float = 50.0) -> np.ndarray:
    """Polarity-flipped (events upward), running-median-baseline-subtracted trace in units of its
    robust SD (MAD / 0.6745), float32."""
    from scipy.ndimage import median_filter

    from .detect import noise_sd_mad

    y = np.asarray(x, dtype=np.float64) * (1.0 if polarity == "positive" else -1.0)
    w = max(3, int(baseline_ms * 1e-3 * fs_hz))
    step = max(1, w // 15)
    base = median_filter(y[::step], size=max(3, (w // step) | 1), mode="nearest")
    base = np.interp(np.arange(y.size), np.arange(0, y.size, step)[: base.size], base)
    z = y - base
    sd = noise_sd_mad(z) or 1.0
    return (z / sd).astype(np.float32)


def training_windows(x: np.ndarray, onsets_s: np.ndarray, fs_hz: float, polarity: str, rng: np.random.Generator,
                     per_event: int = 2, neg_ratio: float = 2.0, window: int = WINDOW,
                     exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled windows from one recording with known onsets: ``per_event`` event windows per
    onset (onset at a random position in ``POS_RANGE``), two hard negatives per onset (the event
    later in the window, or only its decay at the start), and random event-free windows up to
    ``neg_ratio`` negatives per positive.

    Returns
    -------
    (windows (m, window, 1) float32, labels (m,) int64 (1 = event), starts (m,) int64)
    """
    y = np.asarray(x, dtype=np.float64) * (1.0 if polarity == "positive" else -1.0)
    n = y.size
    on = np.round(np.asarray(onsets_s) * fs_hz).astype(np.int64)
    pos = []
    for o in on:
        for _ in range(per_event):
            s = int(o - rng.integers(POS_RANGE[0], POS_RANGE[1] + 1))
            if 0 <= s <= n - window:
                pos.append(s)
    # hard negatives: the event later in the window, or only its decay at the window's start
    hard = []
    for o in on:
        for s in (int(o - rng.integers(NEG_FREE[1] + 20, window - 40)), int(o + rng.integers(20, window // 2))):
            rel = on - s
            if 0 <= s <= n - window and not np.any((rel >= NEG_FREE[0]) & (rel <= NEG_FREE[1])):
                hard.append(s)
    n_neg = int(neg_ratio * max(len(pos), 1)) - len(hard)
    neg, tries = list(hard), 0
    while len(neg) < len(hard) + n_neg and tries < 50 * max(n_neg, 1):
        tries += 1
        s = int(rng.integers(0, n - window + 1))
        rel = on - s
        if np.any((rel >= NEG_FREE[0]) & (rel <= NEG_FREE[1])):
            continue
        if exclude is not None and exclude[s:s + window].any():
            continue
        neg.append(s)
    starts = np.array(pos + neg, dtype=np.int64)
    labels = np.array([1] * len(pos) + [0] * len(neg), dtype=np.int64)
    return minmax_windows(y, starts, window), labels, starts


def write_window_dataset(out, windows: np.ndarray, labels, groups, t_s, fs_hz: float | None,
                         provenance: dict | None = None, ids=None, extra: dict | None = None) -> dict:
    """Write an ``event_window`` dataset (single-array layout); returns the manifest.

    labels : per window ``"event"`` / ``"no_event"`` / None (unlabelled)
    extra : further manifest keys (e.g. ``splits`` and ``default_split``: a named split by group)
    """
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    windows = np.asarray(windows, dtype=np.float32)
    write_npy(out / "windows.npy", windows)
    ids = ids or [f"{g}:{k:06d}" for k, g in enumerate(groups)]
    samples = [{"id": str(ids[k]), "row": k, "label": labels[k], "group": str(groups[k]), "t_s": float(t_s[k])}
               for k in range(len(ids))]
    manifest = {"modality": MODALITY, "sample_shape": list(windows.shape[1:]), "array": "windows.npy",
                "label_names": LABEL_NAMES, "window": int(windows.shape[1]), "stride": STRIDE,
                "fs_hz": fs_hz, "pos_range": list(POS_RANGE), "n_samples": len(samples),
                # window length (s): the gap of blocked cross-validation folds (core.crossval)
                **({"window_s": float(windows.shape[1]) / float(fs_hz)} if fs_hz else {}),
                "class_counts": {c: sum(1 for s in samples if s["label"] == c) for c in LABEL_NAMES},
                "samples": samples, "provenance": provenance or {}, **(extra or {})}
    write_json(out / "manifest.json", manifest)
    return manifest


def patches(z: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping patches of a 1-D array (last one flush with the end): ((m, length, 1), starts)."""
    n = z.size
    if n < length:
        z = np.pad(z, (0, length - n))
        n = length
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:
        starts.append(n - length)
    starts = np.array(starts, dtype=np.int64)
    view = np.lib.stride_tricks.sliding_window_view(np.asarray(z, dtype=np.float32), length)
    return np.asarray(view[starts])[..., None], starts


def stitch(pred: np.ndarray, starts: np.ndarray, n: int, length: int) -> np.ndarray:
    """Average overlapping patch predictions (m, length[, 1]) back into a (n,) trace (central
    halves weighted more: a triangular weight)."""
    pred = np.asarray(pred).reshape(len(starts), length)
    w = np.minimum(np.arange(1, length + 1), np.arange(length, 0, -1)).astype(np.float64)
    acc = np.zeros(max(n, int(starts[-1]) + length))
    wt = np.zeros_like(acc)
    for k, s in enumerate(starts):
        acc[s:s + length] += pred[k] * w
        wt[s:s + length] += w
    return (acc / np.maximum(wt, 1e-12))[:n]


def window_probability(model, x: np.ndarray, polarity: str, batch_size: int = 512, threshold: float = 0.5,
                       min_width: int = 5) -> np.ndarray:
    """Slide the window classifier along a trace (stride 20): per-sample onset probability (n,).

    Runs of fewer than ``min_width`` consecutive window positions above ``threshold`` are set to
    0 before mapping to samples (miniML's minimum prediction-peak width, ``peak_w=5``): a real
    event is seen by every window that has it in its event range, noise by one or two.
    """
    y = np.asarray(x, dtype=np.float64) * (1.0 if polarity == "positive" else -1.0)
    starts = sliding_starts(y.size, WINDOW, STRIDE)
    p = np.empty(starts.size, dtype=np.float64)
    for k in range(0, starts.size, 4096):
        w = minmax_windows(y, starts[k:k + 4096])
        p[k:k + 4096] = model.predict(w, batch_size=batch_size, verbose=0)[:, 1]
    if min_width > 1:
        above = p > threshold
        edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if b - a < min_width:
                p[a:b] = 0.0
    return prediction_to_samples(p, starts, y.size)


@dataclass(frozen=True)
class EventPatchParams:
    """How :func:`write_patch_dataset` cuts recordings into patches.

    Attributes
    ----------
    patch_samples : int
        Patch length L (samples), a multiple of 8 and >= 64 (the U-Net halves it ``depth`` times,
        the autoencoder three times). The events-sim recipe: 1024 for ``unet1d``, 256 for
        ``autoencoder`` (the mEPP seed's lengths).
    stride_samples : int or None
        Start-to-start distance, 1 <= stride <= L (patches cover every sample; the last one is
        flush with the end). None: L // 2 (half overlap).
    baseline_ms : float
        Running-median window (ms) of :func:`normalise_trace`.
    """

    patch_samples: int = 1024
    stride_samples: int | None = None
    baseline_ms: float = 50.0

    def checked(self) -> "EventPatchParams":
        """These parameters with the default stride filled in.

        Raises
        ------
        EphysError
            A patch length that is not a multiple of 8 or below 64, a stride outside [1, L], or
            a baseline window <= 0.
        """
        L = int(self.patch_samples)
        if L < 64 or L % 8:
            raise EphysError(f"patch length must be a multiple of 8 and at least 64 samples, not {self.patch_samples}")
        stride = L // 2 if self.stride_samples is None else int(self.stride_samples)
        if not 1 <= stride <= L:
            raise EphysError(f"patch stride must be between 1 and the patch length {L}, not {self.stride_samples}")
        if not float(self.baseline_ms) > 0:
            raise EphysError(f"baseline window must be > 0 ms, not {self.baseline_ms}")
        return EventPatchParams(L, stride, float(self.baseline_ms))


def write_patch_dataset(out, recordings: list[dict], params: EventPatchParams | None = None,
                        provenance: dict | None = None) -> dict:
    """Write an ``event_patch`` dataset (module docstring) from recordings; returns the manifest.

    Parameters
    ----------
    out : dataset folder (created; arrays written atomically, ``manifest.json`` last)
    recordings : dicts with ``id``, ``x`` (n,) raw trace, ``mask`` (n,) 0/1 ground-truth event
        mask, ``fs_hz``, ``polarity`` (``positive`` / ``negative``) and optionally ``units``,
        ``kind``, ``snr`` (the cohort dicts of :func:`ephys.pipelines.events.events_sim.load_cohort`)
    params : :class:`EventPatchParams` (default: 1024-sample patches at half overlap)

    Raises
    ------
    EphysError
        Bad parameters, no recording, a mask of another length than its trace, or two
        recordings with one id.
    """
    prm = (params or EventPatchParams()).checked()
    if not recordings:
        raise EphysError("no recording to cut into patches")
    return write_patches(out, [patch_recording(r, prm) for r in recordings], prm, provenance)


def patch_recording(r: dict, params: EventPatchParams) -> dict:
    """One recording (a cohort dict, see :func:`write_patch_dataset`) cut into normalised patches:
    ``{"id", "x" (m, L, 1) float32, "mask" (m, L, 1) uint8, "starts" (m,) int, "has" (m,) bool, "meta"}``.

    Raises
    ------
    EphysError
        A mask of another length than its trace.
    """
    prm = params.checked()
    x, mask = np.asarray(r["x"]), np.asarray(r["mask"])
    if mask.shape != x.shape:
        raise EphysError(f"recording {r['id']}: mask of {mask.size} samples for a trace of {x.size}")
    z = normalise_trace(x, float(r["fs_hz"]), r["polarity"], prm.baseline_ms)
    px, starts = patches(z, prm.patch_samples, prm.stride_samples)
    pm, _ = patches((mask > 0).astype(np.float32), prm.patch_samples, prm.stride_samples)
    has = pm.reshape(len(starts), -1).max(axis=1) > 0
    meta = {"fs_hz": float(r["fs_hz"]), "polarity": r["polarity"], "n_samples": int(x.size),
            **{k: r[k] for k in ("units", "kind", "snr") if k in r}}
    return {"id": str(r["id"]), "x": px, "mask": pm.astype(np.uint8), "starts": np.asarray(starts), "has": has,
            "meta": meta}


def write_patches(out, parts: list[dict], params: EventPatchParams, provenance: dict | None = None) -> dict:
    """Write the patch dataset from :func:`patch_recording` parts (in order); returns the manifest.

    Raises
    ------
    EphysError
        No part, or two recordings with one id.
    """
    prm = params.checked()
    if not parts:
        raise EphysError("no recording to cut into patches")
    ids = [p["id"] for p in parts]
    if len(set(ids)) != len(ids):
        raise EphysError(f"recording ids repeat: {sorted({i for i in ids if ids.count(i) > 1})[:3]}")
    samples, recs = [], {}
    for p in parts:
        fs = p["meta"]["fs_hz"]
        for k, s0 in enumerate(p["starts"]):
            samples.append({"id": f"{p['id']}:{int(s0):09d}", "row": len(samples),
                            "label": LABEL_NAMES[int(p["has"][k])], "group": p["id"], "start": int(s0),
                            "t_s": float(s0) / fs})
        recs[p["id"]] = p["meta"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_npy(out / "patches.npy", np.concatenate([p["x"] for p in parts]).astype(np.float32))
    write_npy(out / "masks.npy", np.concatenate([p["mask"] for p in parts]))
    manifest = {"modality": PATCH_MODALITY, "sample_shape": [prm.patch_samples, 1], "array": "patches.npy",
                "mask_array": "masks.npy", "label_names": LABEL_NAMES, "group_noun": "recording",
                "n_samples": len(samples),
                "class_counts": {c: sum(1 for s in samples if s["label"] == c) for c in LABEL_NAMES},
                "parameters": {**asdict(prm), "normalisation": "events.windows.normalise_trace (events upward, "
                               "robust SD units)"},
                "recordings": recs, "samples": samples, "provenance": provenance or {}}
    write_json(out / "manifest.json", manifest)
    return manifest


def assemble_recordings(ds, indices) -> dict[str, dict]:
    """The normalised traces and masks of the recordings whose patches ``indices`` are, put back
    together from an ``event_patch`` dataset (``ds``: a core ``Dataset``).

    Returns
    -------
    dict recording id -> {``z`` (n,) float32 normalised trace, ``mask`` (n,) uint8, ``covered``
    (n,) bool: samples some given patch holds (others are 0), ``fs_hz``}
    """
    idx = np.asarray(indices, dtype=np.int64)
    recs = ds.manifest["recordings"]
    L = int(ds.sample_shape[0])
    out: dict[str, dict] = {}
    for g in sorted({ds.groups[i] for i in idx}):
        mine = idx[np.array([ds.groups[i] == g for i in idx])]
        n = int(recs[g]["n_samples"])
        z, m, cov = np.zeros(n, np.float32), np.zeros(n, np.uint8), np.zeros(n, bool)
        x, mk = ds.load(mine)[..., 0], ds.load_mask(mine, dtype=np.uint8)[..., 0]
        for k, i in enumerate(mine):
            s0 = int(ds.manifest["samples"][i]["start"])
            e = min(s0 + L, n)
            z[s0:e], m[s0:e], cov[s0:e] = x[k, :e - s0], mk[k, :e - s0], True
        out[g] = {"z": z, "mask": m, "covered": cov, "fs_hz": float(recs[g]["fs_hz"])}
    return out
