"""``ephys mer stream``: ML-STIM in real time, chunk by chunk, with the trajectory estimate.

:class:`RecordingStream` processes one recording (one depth of one electrode) as its samples
arrive, in chunks of any size and at any rate above 10 kHz: a rate other than 24 kHz is resampled to
24 kHz first by the offline path's polyphase filter, its state kept across chunks
(:class:`.dsp.Resampler`); the filter chain runs as one second-order-sections cascade whose
state (``sosfilt`` ``zi``) is kept across chunks — the same causal filter as the offline path —;
the artifact rule labels each 50-ms hop as soon as the 100-ms window after it is complete (a
50-ms look-ahead), and every new second of clean signal (every 0.5 s: 50 % overlap) gives one
segment's 9 features, equal to the offline features of the same recording (within 1e-3).
:class:`SegmentClassifier` turns features into P(inside STN) with a trained run (``mlp`` in
numpy, or ``lightgbm``). :class:`Tracker` keeps each trajectory's recording probabilities and
re-decodes the STN entry and exit (:mod:`.trajectory`) whenever a depth is finished.

Sources (:func:`stream_run`): a file (any input of ``prepare mer``, in µV as it reads them: its
recordings are played in chunks of input samples, in order) or a Lab Streaming Layer stream
(``lsl:NAME``; pylsl, which bundles liblsl; its nominal rate, its samples in ``units``, µV by
default): every channel is one electrode; an optional marker stream (``--depth-stream NAME``)
carries the depth (EDT, µm) as a number: each marker finishes the current recordings and
starts new ones at that depth.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.atomic import write_text
from ..core.errors import EphysError
from .dsp import (ARTIFACT_THRESHOLD, FS_HZ, SEGMENT_OVERLAP, SEGMENT_S, Resampler, _window_hop, features_fast,
                  filter_sos)
from .params import UNITS_TO_UV
from .trajectory import decode


class RecordingStream:
    """Stateful ML-STIM processing of one recording at ``fs_hz`` (µV); see the module docstring.

    ``push(chunk)`` and ``finish()`` return the features of the segments completed by that call,
    shape (k, 9) float64. ``artifact_fraction`` counts 24-kHz samples, as the offline mask does.

    Raises
    ------
    EphysError
        ``fs_hz`` unusable (not above 10 kHz, or no integer ratio to 24 kHz).
    """

    def __init__(self, fs_hz: float = FS_HZ):
        self.resampler = Resampler(fs_hz)
        self.sos = filter_sos(float(FS_HZ))
        self.zi = np.zeros((self.sos.shape[0], 2))
        self.w, self.s = _window_hop(FS_HZ)
        self.seg = int(SEGMENT_S * FS_HZ)
        self.step = int(self.seg * (1 - SEGMENT_OVERLAP))
        self.buf = np.zeros(0, dtype=np.float32)  # filtered samples not yet labelled
        self.clean = np.zeros(0, dtype=np.float32)  # clean samples not yet used up by segments
        self.ref_var = np.inf
        self.prev: bool | None = None
        self.n_in = 0
        self.n_artifact = 0
        self.n_segments = 0

    def _window(self) -> None:
        win = self.buf[: self.w]
        var = float(np.var(win.astype(np.float64)))
        label = var >= ARTIFACT_THRESHOLD * self.ref_var
        if not label:
            self.ref_var = var
        prev = label if self.prev is None else self.prev
        self.prev = label
        hop = self.buf[: self.s]
        if label or prev:
            self.n_artifact += hop.size
        else:
            self.clean = np.concatenate([self.clean, hop])
        self.buf = self.buf[self.s:]

    def _segments(self) -> np.ndarray:
        rows = []
        while self.clean.size >= self.seg:
            rows.append(features_fast(self.clean[: self.seg])[0])
            self.clean = self.clean[self.step:]
            self.n_segments += 1
        return np.asarray(rows, dtype=np.float64).reshape(-1, 9)

    def _filter(self, x24: np.ndarray) -> None:
        from scipy.signal import sosfilt

        if x24.size == 0:
            return
        y, self.zi = sosfilt(self.sos, x24.astype(np.float64), zi=self.zi)
        self.n_in += x24.size
        self.buf = np.concatenate([self.buf, y.astype(np.float32)])
        while self.buf.size >= self.w:
            self._window()

    def push(self, chunk) -> np.ndarray:
        """Add samples (1-D, any length, at ``fs_hz``); returns the features of newly completed segments."""
        x = np.asarray(chunk, dtype=np.float64).ravel()
        if x.size == 0:
            return np.zeros((0, 9))
        if not np.all(np.isfinite(x)):
            raise EphysError("NaN or Inf sample in the stream")
        self._filter(self.resampler.push(x))
        return self._segments()

    def finish(self) -> np.ndarray:
        """End of the recording: the resampler's last samples, the last (clipped) windows; returns
        the remaining segments."""
        self._filter(self.resampler.finish())
        while self.buf.size > 0:
            self._window()
        return self._segments()

    @property
    def artifact_fraction(self) -> float:
        return self.n_artifact / self.n_in if self.n_in else 0.0


class SegmentClassifier:
    """P(inside STN) of feature rows from a trained run folder (``mlp`` / any Keras model, or
    ``lightgbm``). The ML-STIM MLP runs as a numpy forward pass (microseconds per segment)."""

    def __init__(self, run: str | Path):
        import yaml

        self.run = Path(run)
        if not (self.run / "config.yaml").is_file():
            raise EphysError("not a trained run folder (no config.yaml)", self.run)
        self.config = yaml.safe_load((self.run / "config.yaml").read_text())
        from ..blocks.models.lightgbm import is_tabular_run

        self.feature_names = None
        if is_tabular_run(self.run):
            from ..blocks.models.lightgbm import TabularModel

            self.kind = "lightgbm"
            self.model = TabularModel(self.run)
            data = Path(self.config.get("data", ""))
            try:
                self.feature_names = json.loads((data / "manifest.json").read_text())["feature_names"]
            except (OSError, ValueError, KeyError):
                self.feature_names = list(self.model.feature_names)
            return
        from ..core.models import load_keras_model

        self.kind = "keras"
        net = load_keras_model(self.run / "model.keras")
        self.net = net
        self.layers = None
        try:
            lo = np.asarray(net.get_layer("minmax").minimum, dtype=np.float64)
            hi = np.asarray(net.get_layer("minmax").maximum, dtype=np.float64)
            dense = [lay for lay in net.layers if lay.__class__.__name__ == "Dense"]
            self.layers = (lo, hi, [(np.asarray(d.kernel), np.asarray(d.bias)) for d in dense])
        except ValueError:
            self.layers = None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, 9) features -> (n,) P(inside)."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, 9)
        if X.shape[0] == 0:
            return np.zeros(0)
        if self.kind == "lightgbm":
            return self.model.predict_proba(X, self.feature_names)[:, 1]
        if self.layers is not None:
            lo, hi, dense = self.layers
            ready = hi > lo
            h = np.where(ready, np.clip((X - np.where(ready, lo, 0)) / np.where(ready, hi - lo, 1), 0, 1), X)
            for k, (w, b) in enumerate(dense):
                h = h @ w + b
                if k < len(dense) - 1:
                    h = np.tanh(h)
            h = np.exp(h - h.max(axis=1, keepdims=True))
            return (h / h.sum(axis=1, keepdims=True))[:, 1]
        return np.asarray(self.net(X.astype(np.float32), training=False))[:, 1].astype(np.float64)

    def transitions(self) -> tuple[float, float]:
        """HMM transitions from the run's training recordings' labels (defaults 0.1 / 0.2 when
        the dataset is not readable)."""
        from .trajectory import transitions_of_run

        try:
            manifest = json.loads((Path(self.config["data"]) / "manifest.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return 0.1, 0.2
        return transitions_of_run(self.run, manifest)


@dataclass
class Tracker:
    """Recording probabilities per trajectory, re-decoded by the HMM when a depth finishes."""

    p_enter: float = 0.1
    p_exit: float = 0.2
    trajectories: dict = field(default_factory=dict)

    def add(self, key, depth_um: float, p_inside: float) -> dict:
        self.trajectories.setdefault(key, []).append((float(depth_um), float(p_inside)))
        d, p = zip(*self.trajectories[key])
        return decode(np.array(d), np.array(p), self.p_enter, self.p_exit)


@dataclass
class _Live:
    key: tuple
    rec_id: str
    depth_um: float
    proc: RecordingStream
    probs: list = field(default_factory=list)


def _emit_segments(live: _Live, feats: np.ndarray, clf: SegmentClassifier, t_arrival: float, rows: list,
                   on_event: Callable[[dict], None] | None):
    if feats.shape[0] == 0:
        return
    p = clf.predict(feats)
    latency_ms = (time.perf_counter() - t_arrival) * 1e3 / feats.shape[0]
    for k in range(feats.shape[0]):
        live.probs.append(float(p[k]))
        ev = {"event": "segment", "recording": live.rec_id, "depth_um": live.depth_um,
              "segment": live.proc.n_segments - feats.shape[0] + k, "p_inside": round(float(p[k]), 6),
              "latency_ms": round(latency_ms, 3), **{f"f{j}": float(feats[k, j]) for j in range(9)}}
        rows.append(ev)
        if on_event:
            on_event(ev)


def _finish(live: _Live, clf: SegmentClassifier, tracker: Tracker, rows: list, summaries: list,
            on_event: Callable[[dict], None] | None):
    t = time.perf_counter()
    _emit_segments(live, live.proc.finish(), clf, t, rows, on_event)
    rec = {"event": "recording", "recording": live.rec_id, "depth_um": live.depth_um,
           "n_segments": len(live.probs), "artifact_fraction": round(live.proc.artifact_fraction, 4),
           "p_inside": float(np.mean(live.probs)) if live.probs else None}
    if live.probs and live.depth_um is not None and np.isfinite(live.depth_um):
        dec = tracker.add(live.key, live.depth_um, rec["p_inside"])
        rec.update(entry_um=dec["entry_um"], exit_um=dec["exit_um"])
    summaries.append(rec)
    if on_event:
        on_event(rec)


def stream_file(run: str | Path, source: str | Path, chunk_samples: int = 2400, fs_hz: float | None = None,
                on_event: Callable[[dict], None] | None = None, seed: int | None = None,
                units: str | None = None) -> dict:
    """Play the recordings of ``source`` (any ``prepare mer`` input, any rate; read in µV with
    ``units`` as ``prepare mer`` reads them) in chunks of ``chunk_samples`` input samples (random sizes
    in 1..2*chunk_samples when ``seed`` is given) through the stream; returns ``{"segments": [...],
    "recordings": [...], "trajectories": {...}}``."""
    from .readers import read_input

    recs, _ = read_input(source, fs_hz, units)
    clf = SegmentClassifier(run)
    tracker = Tracker(*clf.transitions())
    rng = np.random.default_rng(seed) if seed is not None else None
    rows, summaries = [], []
    for r in recs:
        live = _Live((r.patient, r.side, r.electrode), r.id, r.depth_um, RecordingStream(r.fs_hz))
        pos = 0
        while pos < r.signal.size:
            n = int(rng.integers(1, 2 * chunk_samples + 1)) if rng is not None else chunk_samples
            t = time.perf_counter()
            _emit_segments(live, live.proc.push(r.signal[pos:pos + n]), clf, t, rows, on_event)
            pos += n
        _finish(live, clf, tracker, rows, summaries, on_event)
    return {"segments": rows, "recordings": summaries, "trajectories": _traj(tracker)}


def _traj(tracker: Tracker) -> dict:
    out = {}
    for key, items in tracker.trajectories.items():
        d, p = zip(*items)
        dec = decode(np.array(d), np.array(p), tracker.p_enter, tracker.p_exit)
        out["/".join(map(str, key))] = {"depth_um": list(d), "p_inside": list(p), "entry_um": dec["entry_um"],
                                         "exit_um": dec["exit_um"]}
    return out


def stream_lsl(run: str | Path, name: str, depth_stream: str | None = None, timeout_s: float = 10.0,
               idle_s: float = 2.0, max_s: float | None = None, on_event: Callable[[dict], None] | None = None,
               patient: str = "live", side: str = "", units: str | None = None) -> dict:
    """Read the LSL stream ``name`` (float samples at its nominal rate, in ``units``, µV by default;
    one channel per electrode) until no sample has arrived for ``idle_s`` seconds (or ``max_s`` have
    passed); see the module docstring.

    Raises
    ------
    EphysError
        No stream of that name (or depth stream) within ``timeout_s``, an irregular or unusable rate
        (not above 10 kHz), an unknown unit.
    """
    import pylsl

    def find(n):
        found = pylsl.resolve_byprop("name", n, 1, timeout_s)
        if not found:
            raise EphysError(f"no Lab Streaming Layer stream named {n!r} found within {timeout_s:g} s", f"lsl:{n}")
        return pylsl.StreamInlet(found[0], max_buflen=60, recover=False)

    clf = SegmentClassifier(run)  # before connecting: samples sent while loading would be missed
    tracker = Tracker(*clf.transitions())
    inlet = find(name)
    info = inlet.info()
    rate = float(info.nominal_srate())
    from .dsp import resample_ratio
    from .readers import check_units

    try:
        resample_ratio(rate)
    except EphysError as exc:
        raise EphysError(f"stream rate: {exc.message}", f"lsl:{name}") from None
    factor = UNITS_TO_UV[check_units(units) or "uV"]
    n_ch = info.channel_count()
    depth_inlet = find(depth_stream) if depth_stream else None
    rows, summaries = [], []
    depth = float("nan")
    n_rec = [0]
    inlet.open_stream(timeout=timeout_s)
    if depth_inlet is not None:
        depth_inlet.open_stream(timeout=timeout_s)

    def new_lives(d):
        n_rec[0] += 1
        return [_Live((patient, side, f"ch{c + 1}"), f"{patient}_ch{c + 1}_{d:g}um" if np.isfinite(d)
                      else f"{patient}_ch{c + 1}_rec{n_rec[0]}", d, RecordingStream(rate)) for c in range(n_ch)]

    lives = None
    pending: list[tuple[float, float]] = []  # (timestamp, depth) of markers not yet applied
    t_start = last = time.perf_counter()

    def feed(arr, stamps, now):
        nonlocal lives, depth
        start = 0
        while start < arr.shape[0]:
            stop = arr.shape[0]
            if pending:
                # samples stamped at or after the next marker belong to the next depth
                stop = start + int(np.searchsorted(stamps[start:], pending[0][0], side="left"))
            if stop > start:
                if lives is None:
                    lives = new_lives(depth)
                for c, lv in enumerate(lives):
                    _emit_segments(lv, lv.proc.push(arr[start:stop, c]), clf, now, rows, on_event)
            if pending and stop < arr.shape[0]:
                _, d = pending.pop(0)
                for lv in lives or []:
                    _finish(lv, clf, tracker, rows, summaries, on_event)
                depth, lives = d, new_lives(d)
            start = stop

    while True:
        got = False
        try:
            data, stamps = inlet.pull_chunk(timeout=0.05, max_samples=24000)
            # markers after the samples: a marker sent before these samples has arrived by now even
            # when its inlet was slower, so no sample is filed under the previous depth
            if depth_inlet is not None:
                markers, mts = depth_inlet.pull_chunk(timeout=0.0)
                for mk, ts in zip(markers, mts):
                    try:
                        pending.append((float(ts), float(mk[0])))
                    except (TypeError, ValueError):
                        continue
                    got = True
                pending.sort()
        except pylsl.LostError:  # the outlet went away: the end of the stream
            break
        now = time.perf_counter()
        if data:
            got = True
            feed(np.asarray(data, dtype=np.float64).reshape(-1, n_ch) * factor, np.asarray(stamps, dtype=np.float64),
                 now)
        if got:
            last = now
        elif now - last > idle_s:
            break
        if max_s is not None and now - t_start > max_s:
            break
    for lv in lives or []:
        _finish(lv, clf, tracker, rows, summaries, on_event)
    return {"segments": rows, "recordings": summaries, "trajectories": _traj(tracker)}


def stream_run(run: str | Path, source: str, out: str | Path | None = None, depth_stream: str | None = None,
               chunk_samples: int = 2400, fs_hz: float | None = None, idle_s: float = 2.0,
               on_event: Callable[[dict], None] | None = None, units: str | None = None) -> dict:
    """``ephys mer stream``: ``source`` is a file / folder or ``lsl:NAME``. Writes
    ``OUT`` (CSV: one row per segment and per recording) when given; returns the result dict
    with ``latency_ms`` (median / p95 / max processing time per segment)."""
    if str(source).startswith("lsl:"):
        res = stream_lsl(run, str(source)[4:], depth_stream=depth_stream, idle_s=idle_s, on_event=on_event,
                         units=units)
    else:
        res = stream_file(run, Path(source), chunk_samples=chunk_samples, fs_hz=fs_hz, on_event=on_event, units=units)
    lat = np.array([r["latency_ms"] for r in res["segments"]])
    res["latency_ms"] = ({"median": float(np.median(lat)), "p95": float(np.percentile(lat, 95)),
                          "max": float(lat.max())} if lat.size else None)
    if out is not None:
        buf = io.StringIO()
        cols = ["event", "recording", "depth_um", "segment", "p_inside", "latency_ms", "n_segments",
                "artifact_fraction", "entry_um", "exit_um"]
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(res["segments"] + res["recordings"])
        write_text(out, buf.getvalue())
    return res


def play_lsl(recordings, name: str, depth_name: str | None = None, chunk_samples: int = 2400,
             speed: float = 20.0, start_delay_s: float = 30.0):
    """Start a thread that plays ``recordings`` (a list of :class:`~.readers.MerRecording` of one
    trajectory, in depth order, all at one rate) as an LSL outlet ``name`` (1 float32 channel) and, when
    ``depth_name`` is given, their depths as markers on a second outlet (each marker stamped at
    the first sample of its recording). ``speed`` x real time; it starts once an inlet has
    connected to each outlet (at most ``start_delay_s`` seconds). For tests and demonstrations;
    returns the started ``threading.Thread`` (join it to wait for the end).
    """
    import threading

    import pylsl

    fs = float(recordings[0].fs_hz) if recordings else float(FS_HZ)
    info = pylsl.StreamInfo(name, "MER", 1, fs, "float32", f"ephys-{name}")
    outlet = pylsl.StreamOutlet(info, chunk_samples)
    marker = None
    if depth_name:
        marker = pylsl.StreamOutlet(pylsl.StreamInfo(depth_name, "Markers", 1, pylsl.IRREGULAR_RATE, "float32",
                                                     f"ephys-{depth_name}"))

    def run():
        outlet.wait_for_consumers(start_delay_s)  # until an inlet has connected (or the timeout)
        if marker is not None:
            marker.wait_for_consumers(start_delay_s)
        time.sleep(0.2)
        t0 = pylsl.local_clock()
        n = 0
        for r in recordings:
            if marker is not None:
                marker.push_sample([float(r.depth_um)], t0 + (n - 0.25) / fs)
                time.sleep(0.05)
            x = np.asarray(r.signal, dtype=np.float32)
            for pos in range(0, x.size, chunk_samples):
                part = x[pos:pos + chunk_samples]
                outlet.push_chunk(part.reshape(-1, 1), t0 + (n + pos + part.size - 1) / fs)
                time.sleep(part.size / fs / speed)
            n += x.size
        time.sleep(0.5)

    th = threading.Thread(target=run, daemon=True)
    th.outlets = (outlet, marker)  # keep them alive as long as the thread object
    th.start()
    return th
