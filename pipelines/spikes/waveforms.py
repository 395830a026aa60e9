"""Pipeline ``spikes``: extracellular spike detection and waveform datasets.

Two inputs become one prepared "waveform" dataset (``manifest.json`` + ``waveforms.npy``):

* labelled snippet sets in the layout of the spike seed (henryxcham/spike_detection_classification,
  Apache-2.0): ``channel_spikes_<ch>.npy`` and ``channel_background_<ch>.npy``, float64
  ``(n, 42)`` in µV, 30 kHz, 0.4 ms before and 1.0 ms after the threshold crossing; group =
  channel, labels ``background`` / ``spike``; the seed's published split (train channels 9, 16,
  33, validation 11, test 40) is offered as ``splits["seed"]``;
* a raw extracellular trace (``.npy``, 1-D, µV) at a given sampling rate: band-pass, notch,
  negative-threshold detection with a refractory period, snippets cut around each crossing
  (unlabelled, group = the trace's file name).

Detection follows the seed: zero-phase band-pass 300-8000 Hz, 50 Hz notch, threshold at
3 x the standard deviation of the filtered signal, 1 ms refractory period, snippets of 0.4 ms
before / 1.0 ms after the crossing (42 samples at 30 kHz). The robust noise estimate
``median(|x|) / 0.6745`` of Quiroga, Nadasdy & Ben-Shaul (2004, Neural Comput. 16:1661) is
an option (``noise="mad"``); with it the usual k is 4-5.

Layout of the prepared folder: ``waveforms.npy`` float32 ``(n, n_samples, 1)`` in µV (or in
units of the channel's noise level with ``normalise="channel"``), and ``manifest.json`` with
``modality: "waveform"``, ``sample_shape``, ``array: "waveforms.npy"`` and one record per
sample ``{"id", "row", "label", "group"}``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.atomic import sha256_file, write_json, write_npy
from ..core.errors import EphysError

MANIFEST = "manifest.json"
ARRAY = "waveforms.npy"
LABEL_NAMES = ["background", "spike"]
#: the seed's published split (its README: train 3 channels, validation 1, test 1)
SEED_SPLIT = {"train": ["9", "16", "33"], "val": ["11"], "test": ["40"]}
_SET_RE = re.compile(r"^channel_(spikes|background)_(\w+)\.npy$")


@dataclass
class DetectionParams:
    """Spike-detection settings (defaults: the spike seed).

    Attributes
    ----------
    band_hz : (low, high) band-pass edges in Hz (seed: 300-8000 Hz); the high edge is clipped
        to 0.45 x fs.
    notch_hz : line-noise notch in Hz (seed: 50; 60 in the Americas; None = no notch).
    order : Butterworth order of the band-pass (applied forwards and backwards: zero phase).
    k : threshold multiple of the noise level (seed: 3 with noise="sd").
    noise : "sd" (standard deviation, the seed) or "mad" (median(|x|)/0.6745, Quiroga 2004).
    refractory_ms : crossings within this time of the previous accepted one are dropped.
    pre_ms, post_ms : snippet extent before / after the crossing (seed: 0.4 / 1.0 ms).
    """

    band_hz: tuple[float, float] = (300.0, 8000.0)
    notch_hz: float | None = 50.0
    order: int = 4
    k: float = 3.0
    noise: str = "sd"
    refractory_ms: float = 1.0
    pre_ms: float = 0.4
    post_ms: float = 1.0


def bandpass_notch(x_uV: np.ndarray, fs_hz: float, band_hz=(300.0, 8000.0),
                   notch_hz: float | None = 50.0, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (second-order sections) and optional notch.

    Parameters
    ----------
    x_uV : np.ndarray, shape (n,), float, µV
    fs_hz : float, sampling rate in Hz (> 2 x the low band edge)
    band_hz : (low, high) in Hz; ``high`` is clipped to 0.45 x fs_hz
    notch_hz : line frequency in Hz (quality factor 30) or None
    order : Butterworth order (the effective order is doubled by filtering both ways)

    Returns
    -------
    np.ndarray, shape (n,), float64, µV

    Raises
    ------
    EphysError
        Not 1-D, too short for the filter, non-finite values, or band edges that do not fit fs.
    """
    from scipy import signal

    x = np.asarray(x_uV, dtype=np.float64)
    if x.ndim != 1:
        raise EphysError(f"a raw trace must be 1-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise EphysError("the trace holds NaN or infinite values")
    lo, hi = float(band_hz[0]), min(float(band_hz[1]), 0.45 * fs_hz)
    if not 0 < lo < hi:
        raise EphysError(f"band {band_hz} Hz does not fit a sampling rate of {fs_hz:g} Hz")
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=fs_hz, output="sos")
    if x.size <= 3 * (2 * sos.shape[0] + 1):
        raise EphysError(f"the trace is too short to filter ({x.size} samples)")
    y = signal.sosfiltfilt(sos, x)
    if notch_hz:
        if not 0 < notch_hz < fs_hz / 2:
            raise EphysError(f"notch {notch_hz} Hz is not below Nyquist ({fs_hz / 2:g} Hz)")
        b, a = signal.iirnotch(float(notch_hz), 30.0, fs=fs_hz)
        y = signal.filtfilt(b, a, y)
    return y


def noise_level(x_uV: np.ndarray, method: str = "sd") -> float:
    """Noise level of a filtered trace in µV: ``"sd"`` (the seed) or ``"mad"``.

    ``"mad"`` is ``median(|x|) / 0.6745``, the estimate of Quiroga et al. 2004 that large spikes
    do not inflate. Raises EphysError for an unknown method.
    """
    x = np.asarray(x_uV, dtype=np.float64)
    if method == "sd":
        return float(np.std(x))
    if method == "mad":
        return float(np.median(np.abs(x)) / 0.6745)
    raise EphysError(f"unknown noise estimate {method!r}; use 'sd' or 'mad'")


def apply_refractory(onsets: np.ndarray, refractory: int) -> np.ndarray:
    """Greedy refractory selection: keep an event unless it is within ``refractory`` samples of
    the previous *kept* one (so a train of crossings 0.6 ms apart keeps every other one at 1 ms).

    Vectorised: an event at least ``refractory`` after its predecessor is always kept (the
    previous kept event is no later than that predecessor); only events in bursts closer than
    that are walked one by one, over the burst members only.

    Parameters
    ----------
    onsets : np.ndarray of int, shape (m,), sorted ascending, sample indices
    refractory : int, samples (>= 0)

    Returns
    -------
    np.ndarray of int64, the kept onsets (ascending)
    """
    t = np.asarray(onsets, dtype=np.int64)
    if t.size < 2 or refractory <= 0:
        return t
    close = np.diff(t) < refractory  # close[i]: t[i + 1] within refractory of t[i]
    if not close.any():
        return t
    keep = np.ones(t.size, bool)
    keep[1:] = ~close
    # walk the bursts (runs of close successors) only; a burst's first event is always kept
    last = 0
    for j in np.flatnonzero(np.concatenate([[False], close]) | np.concatenate([close, [False]])):
        if not (j > 0 and close[j - 1]):  # burst head: kept
            last = t[j]
            continue
        if t[j] - last >= refractory:
            keep[j] = True
            last = t[j]
    return t[keep]


def detect_spikes(x_uV: np.ndarray, fs_hz: float, params: DetectionParams | None = None,
                  filtered: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Detect negative threshold crossings and cut snippets around them.

    Parameters
    ----------
    x_uV : np.ndarray, shape (n,), µV; raw (filtered here) or already filtered (``filtered``)
    fs_hz : float, sampling rate in Hz
    params : DetectionParams (default: the seed's settings)

    Returns
    -------
    crossings : np.ndarray of int64, shape (m,)
        Sample index of each accepted crossing (first sample at or below ``-k x noise``); a
        crossing within ``refractory_ms`` of the previous accepted one is dropped, and so are
        crossings too close to either end for a full snippet.
    snippets : np.ndarray of float32, shape (m, n_pre + n_post), µV of the filtered trace,
        ``n_pre = round(pre_ms x fs / 1000)`` samples before the crossing (12 at 30 kHz),
        ``n_post = round(post_ms x fs / 1000)`` from it on (30 at 30 kHz).
    threshold_uV : float, the (negative) threshold used.

    Raises
    ------
    EphysError
        Bad trace or settings (see :func:`bandpass_notch`), k <= 0.
    """
    p = params or DetectionParams()
    if p.k <= 0:
        raise EphysError(f"threshold multiple k must be positive, got {p.k}")
    y = np.asarray(x_uV, dtype=np.float64) if filtered else bandpass_notch(
        x_uV, fs_hz, p.band_hz, p.notch_hz, p.order)
    thr = -p.k * noise_level(y, p.noise)
    below = y <= thr
    onsets = np.flatnonzero(below[1:] & ~below[:-1]) + 1
    n_pre = int(round(p.pre_ms * fs_hz / 1000.0))
    n_post = int(round(p.post_ms * fs_hz / 1000.0))
    refr = int(round(p.refractory_ms * fs_hz / 1000.0))
    idx = apply_refractory(onsets, refr)
    idx = idx[(idx - n_pre >= 0) & (idx + n_post <= y.size)]
    if idx.size:
        win = idx[:, None] + np.arange(-n_pre, n_post)[None, :]
        snippets = y[win].astype(np.float32)
    else:
        snippets = np.zeros((0, n_pre + n_post), np.float32)
    return idx, snippets, float(thr)


def channel_scale(waveforms_uV: np.ndarray) -> float:
    """Per-channel noise level of a set of snippets: ``median(|x|) / 0.6745`` over all values, µV.

    Used to normalise each recording channel by its own level (label-free, so a test
    channel's scale comes from that channel alone and nothing is pooled across channels).
    Raises EphysError for an empty or all-zero set.
    """
    s = float(np.median(np.abs(np.asarray(waveforms_uV, dtype=np.float64))) / 0.6745)
    if not np.isfinite(s) or s <= 0:
        raise EphysError("cannot normalise a channel with no signal (median |x| is 0)")
    return s


def _discover_sets(folder: Path) -> dict[str, dict[str, Path]]:
    sets: dict[str, dict[str, Path]] = {}
    for f in sorted(folder.iterdir()):
        m = _SET_RE.match(f.name)
        if m:
            sets.setdefault(m.group(2), {})[m.group(1)] = f
    return sets


def _load_set(path: Path, n_samples: int | None) -> np.ndarray:
    from ..core.datasets import load_npy

    a = load_npy(path, hint="")
    if a.ndim != 2 or a.shape[0] == 0:
        raise EphysError(f"expected a non-empty (n, n_samples) array, got shape {a.shape}", path)
    if n_samples is not None and a.shape[1] != n_samples:
        raise EphysError(f"snippets have {a.shape[1]} samples, other files {n_samples}", path)
    if not np.all(np.isfinite(a)):
        raise EphysError("waveform set holds NaN or infinite values", path)
    return a


def _channel_key(ch: str):
    return (0, int(ch), ch) if ch.isdigit() else (1, 0, ch)


def discover(input_path, params=None, labels_csv=None, options=None):
    """The ``prepare spikes`` step's ``discover`` hook: one item per channel of a folder of snippet
    sets (``channel_spikes_<ch>.npy`` + ``channel_background_<ch>.npy``), or one item for a raw
    trace (``.npy`` / ``.nwb``).

    Raises
    ------
    EphysError
        Missing input, no snippet sets, a channel missing one of its two files, an input that is
        neither a folder of snippet sets nor a raw trace.
    """
    src = Path(input_path)
    if src.is_dir():
        sets = _discover_sets(src)
        if not sets:
            raise EphysError("no channel_spikes_<ch>.npy / channel_background_<ch>.npy files", src)
        for ch, files in sets.items():
            for kind in ("spikes", "background"):
                if kind not in files:
                    raise EphysError(f"channel {ch} has no channel_{kind}_{ch}.npy", src)
        return [{"id": f"ch{ch}", "kind": "set", "ch": ch, "files": {k: str(v) for k, v in files.items()}}
                for ch, files in sorted(sets.items(), key=lambda kv: _channel_key(kv[0]))], []
    if src.is_file() and src.suffix in (".npy", ".nwb"):
        return [{"id": src.stem, "kind": "trace", "path": str(src)}], []
    if src.exists():
        raise EphysError("not a folder of snippet sets nor a raw trace (.npy, .nwb)", src)
    raise EphysError("no such file or folder", src)


def detection_params(p) -> DetectionParams:
    """The :class:`DetectionParams` of ``prepare spikes`` parameters (a notch of 0 Hz = none)."""
    return DetectionParams(band_hz=tuple(p.band_hz), notch_hz=p.notch_hz or None, k=p.k, noise=p.noise,
                           refractory_ms=p.refractory_ms, pre_ms=p.pre_ms, post_ms=p.post_ms)


def process(item: dict, params, out_dir=None, options=None) -> dict:
    """The step's ``process`` hook: one channel's snippet sets read and checked (and its noise
    scale with ``normalise="channel"``), or a raw trace read and its spikes detected."""
    if item["kind"] == "set":
        parts, inputs = {}, []
        for kind in ("background", "spikes"):
            path = Path(item["files"][kind])
            parts[kind] = _load_set(path, None)
            inputs.append({"file": path.name, "sha256": sha256_file(path), "n": int(parts[kind].shape[0])})
        if parts["background"].shape[1] != parts["spikes"].shape[1]:
            raise EphysError(f"snippets have {parts['spikes'].shape[1]} samples, other files "
                             f"{parts['background'].shape[1]}", Path(item["files"]["spikes"]))
        scale = (channel_scale(np.concatenate([parts["background"], parts["spikes"]]))
                 if params.normalise == "channel" else 1.0)
        return {"ch": item["ch"], "parts": parts, "inputs": inputs, "scale": scale,
                "source": str(Path(item["files"]["spikes"]).parent)}
    path = Path(item["path"])
    p = detection_params(params)
    x, fs = read_trace(path, params.fs_hz, params.channel, params.series)
    try:
        idx, snips, thr = detect_spikes(x, fs, p)
    except EphysError as exc:
        raise EphysError(exc.message, path) from None
    if idx.size == 0:
        raise EphysError(f"no threshold crossing below {thr:.1f} µV", path)
    return {"path": str(path), "idx": idx, "snips": snips, "thr": thr, "fs": fs, "n": int(x.size)}


def collect(out, results: list[dict], params, ctx) -> Path:
    """The step's ``collect`` hook: ``waveforms.npy`` (float32 ``(n, n_samples, 1)``) and
    ``manifest.json`` (see :func:`prepare_waveform_sets` and :func:`prepare_raw_trace`)."""
    out = Path(out)
    if "ch" in results[0]:
        return _collect_sets(out, results, params)
    r = results[0]
    path, p, fs = Path(r["path"]), detection_params(params), r["fs"]
    scale = channel_scale(r["snips"]) if params.normalise == "channel" else 1.0
    group = f"{path.stem}-ch{params.channel}"
    samples = [{"id": f"{group}-{k}", "row": k, "label": None, "group": group,
                "t_s": round(float(t) / fs, 7)} for k, t in enumerate(r["idx"])]
    xw = (r["snips"] / scale).astype(np.float32)[:, :, None]
    write_npy(out / ARRAY, xw, require_finite=True)
    manifest = _manifest(xw.shape, fs, p.pre_ms, samples, LABEL_NAMES, {}, params.normalise, {group: scale},
                         {"input": str(path.resolve()), "sha256": sha256_file(path), "channel": params.channel,
                          "series": params.series, "n_samples_trace": r["n"], "threshold_uV": r["thr"],
                          "source": "detection after the spike seed (band-pass 300-8000 Hz, notch, "
                                    "3 SD threshold, 1 ms refractory)"},
                         parameters={**asdict(p), "fs_hz": float(fs)})
    ctx.log(f"{len(samples)} waveforms prepared")
    return write_json(out / MANIFEST, manifest)


def _collect_sets(out: Path, results: list[dict], params) -> Path:
    fs_hz = params.fs_hz or 30000.0
    n_len = results[0]["parts"]["spikes"].shape[1]
    arrays, samples, inputs, scales, row = [], [], [], {}, 0
    for r in results:
        ch = r["ch"]
        if r["parts"]["spikes"].shape[1] != n_len:
            raise EphysError(f"snippets have {r['parts']['spikes'].shape[1]} samples, other files {n_len}",
                             r["source"])
        inputs += r["inputs"]
        scales[ch] = r["scale"]
        for kind, label in (("background", "background"), ("spikes", "spike")):
            a = r["parts"][kind]
            arrays.append((a / r["scale"]).astype(np.float32))
            for k in range(a.shape[0]):
                samples.append({"id": f"ch{ch}-{label}-{k}", "row": row, "label": label, "group": ch})
                row += 1
    x = np.concatenate(arrays)[:, :, None]
    write_npy(out / ARRAY, x, require_finite=True)  # after the float32 cast (1e300 µV is Inf)
    chans = [r["ch"] for r in results]
    splits = {"seed": SEED_SPLIT} if set(sum(SEED_SPLIT.values(), [])) <= set(chans) else {}
    counts = {ch: {lab: sum(1 for s in samples if s["group"] == ch and s["label"] == lab)
                   for lab in LABEL_NAMES} for ch in chans}
    manifest = _manifest(x.shape, fs_hz, params.pre_ms, samples, LABEL_NAMES, splits, params.normalise, scales, {
        "input": str(Path(results[0]["source"]).resolve()), "inputs": inputs, "counts_per_channel": counts,
        "source": "spike seed: henryxcham/spike_detection_classification (Apache-2.0), zebra finch, "
                  "labels from manual clustering in PCA space"},
        parameters={"fs_hz": float(fs_hz), "normalise": params.normalise, "pre_ms": float(params.pre_ms)})
    return write_json(out / MANIFEST, manifest)


def prepare_waveform_sets(input_dir: str | Path, out_dir: str | Path, fs_hz: float = 30000.0,
                          pre_ms: float = 0.4, normalise: str = "none") -> Path:
    """Labelled snippet sets (the spike seed's layout) -> a prepared waveform dataset
    (``ephys prepare spikes FOLDER`` from Python).

    Parameters
    ----------
    input_dir : folder with ``channel_spikes_<ch>.npy`` and ``channel_background_<ch>.npy``,
        each float ``(n, n_samples)`` in µV (seed: n_samples = 42 at 30 kHz)
    out_dir : dataset folder to write (``manifest.json`` + ``waveforms.npy``)
    fs_hz : sampling rate of the snippets in Hz (seed: 30000)
    pre_ms : time of the threshold crossing after the snippet start, ms (seed: 0.4)
    normalise : ``"none"`` (µV) or ``"channel"`` (each channel divided by its own
        :func:`channel_scale`, computed from all of that channel's snippets without labels)

    Returns
    -------
    Path of the manifest. Sample ids are ``ch<ch>-<spike|background>-<k>``; group = channel;
    ``splits["seed"]`` is offered when channels 9, 11, 16, 33 and 40 are all present.

    Raises
    ------
    EphysError
        Missing folder, no snippet sets, a channel missing one of its two files, bad arrays,
        unknown ``normalise``.
    """
    from .params import SpikesParams

    src = Path(input_dir)
    if not src.is_dir():
        raise EphysError("no such folder of waveform sets", src)
    return _run(src, out_dir, SpikesParams(fs_hz=fs_hz, pre_ms=pre_ms, normalise=normalise))


def _run(src, out_dir, params) -> Path:
    from ..core.prepare import ShardOptions, run_prepare
    from . import PREPARE_SPIKES

    return run_prepare("spikes", PREPARE_SPIKES, src, out_dir, params, run=ShardOptions(scheduler="synchronous"),
                       log=lambda m: None).main_file


def _manifest(shape, fs_hz, pre_ms, samples, label_names, splits, normalise, scales, provenance,
              parameters=None) -> dict:
    n_len = int(shape[1])
    return {
        "modality": "waveform",
        "format_version": 1,
        "ephys_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sample_shape": [n_len, 1],
        "dtype": "float32",
        "axes": ["time", "channel"],
        "units": "µV" if normalise == "none" else "channel noise level (median |x| / 0.6745)",
        "fs_hz": float(fs_hz),
        "time_ms": [-float(pre_ms), round(-float(pre_ms) + 1000.0 * n_len / fs_hz, 6)],
        "value": "extracellular voltage snippet around a negative threshold crossing",
        "normalise": normalise,
        "channel_scale_uV": {k: round(float(v), 6) for k, v in scales.items()} if normalise != "none" else None,
        "array": ARRAY,
        "label_names": label_names,
        "n_labelled": sum(1 for s in samples if s.get("label")),
        "n_unlabelled": sum(1 for s in samples if not s.get("label")),
        "splits": splits,
        "parameters": parameters or {},
        "provenance": provenance,
        "samples": samples,
    }


def read_trace(path: str | Path, fs_hz: float | None = None, channel: int = 0,
               series: str | None = None) -> tuple[np.ndarray, float]:
    """One extracellular channel in µV and its sampling rate in Hz.

    Parameters
    ----------
    path : ``.npy`` (1-D, µV, needs ``fs_hz``; or 2-D (n_time, n_channels), column ``channel``)
        or ``.nwb`` (an ``ElectricalSeries`` in acquisition: ``series`` names it, else the
        first one; ``data * conversion + offset`` in volts -> µV, ``rate`` from the file, or
        ``fs_hz`` when the series has timestamps only)
    channel : column of a 2-D array / ElectricalSeries

    Returns
    -------
    (x_uV float64 (n,), fs_hz float)

    Raises
    ------
    EphysError
        Missing / unreadable file, unsupported suffix, no ElectricalSeries, channel out of
        range, no sampling rate.
    """
    path = Path(path)
    if not path.is_file():
        raise EphysError("no such trace file", path)
    if path.suffix == ".npy":
        from ..core.datasets import load_npy

        x = load_npy(path, hint="")
        x = np.squeeze(x)
        if x.ndim == 2:
            if not 0 <= channel < x.shape[1]:
                raise EphysError(f"channel {channel} not in 0..{x.shape[1] - 1}", path)
            x = x[:, channel]
        if x.ndim != 1:
            raise EphysError(f"a raw trace must be (n_samples,) or (n_samples, n_channels), got {x.shape}", path)
        if not fs_hz or fs_hz <= 0:
            raise EphysError("a raw .npy trace needs --fs-hz (sampling rate in Hz)", path)
        return x.astype(np.float64), float(fs_hz)
    if path.suffix == ".nwb":
        from pynwb import NWBHDF5IO
        from pynwb.ecephys import ElectricalSeries

        try:
            with NWBHDF5IO(str(path), "r", load_namespaces=True) as io:
                nwb = io.read()
                found = [o for o in nwb.acquisition.values() if isinstance(o, ElectricalSeries)]
                if series:
                    found = [o for o in found if o.name == series]
                if not found:
                    raise EphysError("no ElectricalSeries" + (f" named {series!r}" if series else "")
                                     + " in acquisition", path)
                es = found[0]
                data = es.data
                if data.ndim == 2:
                    if not 0 <= channel < data.shape[1]:
                        raise EphysError(f"channel {channel} not in 0..{data.shape[1] - 1}", path)
                    x = np.asarray(data[:, channel], dtype=np.float64)
                else:
                    x = np.asarray(data[:], dtype=np.float64)
                x = (x * float(es.conversion) + float(getattr(es, "offset", 0.0) or 0.0)) * 1e6
                rate = es.rate if es.rate else (fs_hz or None)
                if not rate:
                    raise EphysError("the ElectricalSeries has timestamps only; pass --fs-hz", path)
                return x, float(rate)
        except EphysError:
            raise
        except Exception as exc:  # h5py / pynwb raise many types for a broken file
            raise EphysError(f"unreadable NWB file ({type(exc).__name__}: {exc})", path) from None
    raise EphysError("unsupported trace format (use .npy or .nwb)", path)


def prepare_raw_trace(trace_path: str | Path, out_dir: str | Path, fs_hz: float | None = None,
                      params: DetectionParams | None = None, normalise: str = "none",
                      channel: int = 0, series: str | None = None) -> Path:
    """A raw extracellular trace (``.npy`` or NWB ``ElectricalSeries``) -> an unlabelled waveform dataset
    (``ephys prepare spikes TRACE`` from Python).

    Reads one channel with :func:`read_trace`, filters and detects with :func:`detect_spikes`
    (seed settings by default) and stores the snippets (float32 ``(m, n_pre + n_post, 1)``,
    µV, or channel noise units with ``normalise="channel"``) with their crossing times
    (``samples[i]["t_s"]``); group = ``<file stem>-ch<channel>``. Returns the manifest path.

    Raises
    ------
    EphysError
        See :func:`read_trace`; bad detection settings; no spike detected.
    """
    from .params import SpikesParams

    p = params or DetectionParams()
    sp = SpikesParams(fs_hz=fs_hz, normalise=normalise, band_hz=tuple(p.band_hz), notch_hz=p.notch_hz or 0.0,
                      k=p.k, noise=p.noise, refractory_ms=p.refractory_ms, pre_ms=p.pre_ms, post_ms=p.post_ms,
                      channel=channel, series=series)
    return _run(Path(trace_path), out_dir, sp)


#: the spike seed's published test-channel (40) numbers (its README, "Model Performance")
SEED_REFERENCE = {
    "source": "henryxcham/spike_detection_classification README: test channel 40 (4073 background, 108 spikes)",
    "cnn1d": {"macro_f1": 0.8678, "accuracy": 0.9823, "macro_precision": 0.7967, "macro_recall": 0.9909,
              "inference_s_test": 0.411},
    "gru": {"macro_f1": 0.8202, "accuracy": 0.9735, "macro_precision": 0.7461, "macro_recall": 0.9729,
            "inference_s_test": 1.36},
    "logistic_regression": {"macro_f1": 0.654},
}


def _predict(model, ds, indices: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    return np.concatenate([np.asarray(model.predict(ds.load(indices[i:i + batch_size]), verbose=0))
                           for i in range(0, indices.size, batch_size)]).astype(np.float64)


#: decision rule per model in ``reproduce spikes-seed`` (frozen on validation channel 11 before channel 40
#: was read: the GRU's spike probability threshold is chosen for macro-F1 on channel 11; see README)
SEED_DECISION = {"cnn1d": "argmax", "gru": "val_macro_f1"}


def reproduce_seed(data_dir: str | Path, out_dir: str | Path, models=("cnn1d", "gru"), epochs: int = 40,
                   batch_size: int = 256, lr: float = 1e-3, patience: int = 6, seed: int = 0,
                   normalise: str = "channel", log=print) -> dict:
    """``ephys reproduce spikes-seed``: the seed's comparison end to end on its published split.

    Prepares ``data_dir`` (the seed's snippet sets) into ``OUT/data``, trains each model on
    channels 9, 16, 33 (early stopping on validation channel 11) into ``OUT/<model>``,
    evaluates on test channel 40 (``OUT/<model>/metrics.json``), explains it (saliency over time,
    ``OUT/<model>/explain/``) and renders each run's report.
    The best model is chosen by its macro-F1 on the **validation** channel 11, never on the test
    channel. Writes ``OUT/metrics.json``: the best model's test metrics as flat keys
    (``macro_f1``, ``accuracy``, ...), ``best_model``, ``selection``, ``models`` (per model:
    ``val_macro_f1``, test metrics, ``inference_s_test`` = seconds to predict all test snippets
    (one ``model.predict``, batches of 1024, median of 3 after a warm-up; CPU or GPU as
    found), ``train_seconds``, run folder) and ``reference``
    (the seed's published numbers, :data:`SEED_REFERENCE`).

    Raises
    ------
    EphysError
        Bad input folder (see :func:`prepare_waveform_sets`), or channels 9, 11, 16, 33, 40 not
        all present (the seed split needs them).
    """
    import time

    from ..core.datasets import load_dataset
    from ..core.evaluation import classification_metrics, evaluate_run, read_threshold
    from ..core.explain import explain_run
    from ..core.report import build_report
    from ..core.models import load_keras_model
    from ..core.training import TrainConfig, train

    out = Path(out_dir)
    need = sorted(set(sum(SEED_SPLIT.values(), [])), key=int)
    if Path(data_dir).is_dir():  # checked before anything is written
        have = {p.stem.rsplit("_", 1)[-1] for p in Path(data_dir).glob("channel_spikes_*.npy")}
        missing = [c for c in need if c not in have]
        if missing:
            raise EphysError(f"the seed split needs channels {', '.join(need)}; no channel_spikes_CH.npy for "
                             f"{', '.join(missing)}", data_dir)
    manifest_path = prepare_waveform_sets(data_dir, out / "data", normalise=normalise)
    ds = load_dataset(manifest_path.parent)
    if "seed" not in (ds.manifest.get("splits") or {}):
        raise EphysError("the seed split needs channels 9, 11, 16, 33 and 40", data_dir)
    import keras

    per_model = {}
    for name in models:
        cfg = TrainConfig(model=name, data=str(out / "data"), split="seed", epochs=epochs,
                          batch_size=batch_size, lr=lr, patience=patience, seed=seed, out=str(out / name),
                          decision=SEED_DECISION.get(name, "argmax"))
        t0 = time.perf_counter()
        run = train(cfg, log=log)
        train_s = time.perf_counter() - t0
        test_metrics = evaluate_run(run, batch_size=1024)
        split = json.loads((run / "split.json").read_text())
        pos = {sid: i for i, sid in enumerate(ds.ids)}
        val = np.array([pos[s] for s in split["val"]], dtype=np.int64)
        test = np.array([pos[s] for s in split["test"]], dtype=np.int64)
        model = load_keras_model(run / "model.keras")
        val_metrics = classification_metrics(ds.y(val), _predict(model, ds, val), ds.label_names,
                                             read_threshold(run))
        x_test = ds.load(test)
        model.predict(x_test[:1024], batch_size=1024, verbose=0)  # warm-up (graph build)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            model.predict(x_test, batch_size=1024, verbose=0)
            times.append(time.perf_counter() - t0)
        infer_s = float(np.median(times))
        explain_run(run, n_examples_per_class=3)  # saliency over time on the test channel, for the report
        build_report(run)
        per_model[name] = {
            "run": str(run), "val_macro_f1": val_metrics["macro_f1"], "val_accuracy": val_metrics["accuracy"],
            "macro_f1": test_metrics["macro_f1"], "accuracy": test_metrics["accuracy"],
            "balanced_accuracy": test_metrics["balanced_accuracy"], "roc_auc_ovr": test_metrics["roc_auc_ovr"],
            "macro_precision": float(np.mean([v["precision"] for v in test_metrics["per_class"].values()])),
            "macro_recall": float(np.mean([v["recall"] for v in test_metrics["per_class"].values()])),
            "confusion_matrix": test_metrics["confusion_matrix"], "per_class": test_metrics["per_class"],
            "inference_s_test": round(infer_s, 4), "train_seconds": round(train_s, 1),
            "decision": cfg.decision, "decision_threshold": read_threshold(run),
        }
        log(f"{name}: validation macro-F1 {val_metrics['macro_f1']:.3f}, test macro-F1 "
            f"{test_metrics['macro_f1']:.3f}, accuracy {test_metrics['accuracy']:.4f}")
    best = max(per_model, key=lambda n: per_model[n]["val_macro_f1"])
    b = per_model[best]
    result = {
        "macro_f1": b["macro_f1"], "accuracy": b["accuracy"], "balanced_accuracy": b["balanced_accuracy"],
        "roc_auc_ovr": b["roc_auc_ovr"], "macro_precision": b["macro_precision"], "macro_recall": b["macro_recall"],
        "n_test": int(sum(sum(r) for r in b["confusion_matrix"])), "labels": list(ds.label_names),
        "confusion_matrix": b["confusion_matrix"], "per_class": b["per_class"],
        "split": "test", "test_groups": SEED_SPLIT["test"], "val_groups": SEED_SPLIT["val"],
        "train_groups": SEED_SPLIT["train"], "best_model": best,
        "selection": "model with the highest macro-F1 on validation channel 11 (test channel 40 unused)",
        "normalise": normalise,
        "settings": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience, "seed": seed},
        "models": per_model, "reference": SEED_REFERENCE,
    }
    write_json(out / "metrics.json", result)
    from .seed_report import write_seed_report

    write_seed_report(out, result)
    return result


def prepare_like(input_path: str | Path, manifest: dict, out_dir: str | Path, log=print) -> Path:
    """The ``prepare_for_predict`` hook of the ``waveform`` modality: detect and cut snippets from a
    raw trace (``.npy`` at the run's sampling rate, or NWB ``ElectricalSeries``) exactly as the
    run's dataset was prepared: its detection parameters (the spike seed's when it was made from
    snippet sets), snippet window, sampling rate and normalisation. Returns the dataset folder.

    Raises
    ------
    EphysError
        The trace's sampling rate differs from the run's; no spike detected; unreadable trace.
    """
    fs_run = float(manifest.get("fs_hz") or 0) or None
    path = Path(input_path)
    if path.is_dir():
        raise EphysError("predict on a waveform run takes one raw trace (.npy or .nwb) or a prepared "
                         "dataset folder", path)
    x, fs = read_trace(path, fs_run if path.suffix.lower() == ".npy" else None)
    if fs_run is not None and abs(fs - fs_run) > 1e-6 * fs_run:
        raise EphysError(f"trace sampled at {fs:g} Hz; the run was trained on {fs_run:g} Hz snippets", path)
    fields = set(DetectionParams.__dataclass_fields__)
    raw = {k: v for k, v in (manifest.get("parameters") or {}).items() if k in fields}
    if "band_hz" in raw:
        raw["band_hz"] = tuple(raw["band_hz"])
    t_ms = manifest.get("time_ms") or [-0.4, 1.0]
    raw.setdefault("pre_ms", -float(t_ms[0]))
    raw.setdefault("post_ms", float(t_ms[1]))
    params = DetectionParams(**raw)
    mpath = prepare_raw_trace(path, out_dir, fs_hz=fs, params=params, normalise=str(manifest.get("normalise") or "none"))
    got = json.loads(Path(mpath).read_text())["sample_shape"]
    if list(got) != list(manifest.get("sample_shape") or got):
        raise EphysError(f"snippets of shape {got}; the run needs {manifest.get('sample_shape')}", path)
    return Path(out_dir)
