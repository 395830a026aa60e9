"""Seeded simulator of miniature synaptic events with ground truth (``fetch synthetic --pipeline events``).

Two kinds of recording:

* ``mepp``: miniature end-plate potentials in current clamp, 10 kHz, mV, positive; 10-90 % rise
  0.3-1 ms, decay tau 2-6 ms, amplitudes 0.2-1.5 mV, 0.5-5 Hz (the ranges of the mEPP seed,
  NatashaKhotkina/Neural_network_project, and of the events issue);
* ``mepsc``: miniature EPSCs in voltage clamp, 20 kHz (default; 20-50 kHz allowed), pA, negative;
  faster (10-90 % rise 0.1-0.4 ms, decay tau 1-3 ms), 5-40 pA (cerebellar granule-cell minis,
  O'Neill et al. 2025).

Event shape: ``(1 - exp(-t/tau_rise)) * exp(-t/tau_decay)`` scaled to unit peak (the template of
Clements & Bekkers 1997 as miniML builds it); event times are a Poisson process (overlaps happen).
Noise: white + pink (1/f power, FFT-shaped), 50 Hz and two harmonics, slow drift (a 0.05-0.3 Hz
sine plus low-passed random walk). ``snr`` = mean event amplitude / SD of the white + pink noise.

Output folder: per recording ``<id>.npy`` (float32 trace), ``<id>_events.csv`` (onset_s, peak_s,
amplitude, rise_10_90_ms, decay_tau_ms), ``<id>_artifacts.csv`` (kinetics families only: time_s,
kind glitch | step, size; labelled not-events), ``<id>_mask.npy`` (uint8, 1 from onset until the event
has decayed to 20 % of its peak), and ``recordings.csv`` (id, file, kind, fs_hz, units,
polarity, snr, duration_s, n_events, rate_hz, noise_sd). Defaults are CPU-sized: 10-s recordings
(the issue's 60 s is ``duration_s=60``).

The kinetics families users' recordings come in (fast mEPSC, mIPSC, NMJ mEPP / mEJC), long-tailed
amplitudes, real noise and labelled artifacts are :mod:`.families` (``synthetic(..., families=...)``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.atomic import write_npy, write_text
from ..core.errors import EphysError

__all__ = ["KINDS", "SNR_LEVELS", "SimulatedRecording", "event_waveform", "rise_tau_for", "simulate_recording",
           "write_cohort", "synthetic", "read_truth"]

#: default SNR levels (mean amplitude / noise SD)
SNR_LEVELS = (2.5, 5.0, 10.0)

KINDS = {
    "mepp": dict(fs_hz=10_000.0, units="mV", polarity="positive", rise_ms=(0.3, 1.0), decay_ms=(2.0, 6.0),
                 amp=(0.2, 1.5), rate_hz=(0.5, 5.0)),
    "mepsc": dict(fs_hz=20_000.0, units="pA", polarity="negative", rise_ms=(0.1, 0.4), decay_ms=(1.0, 3.0),
                  amp=(5.0, 40.0), rate_hz=(0.5, 5.0)),
}


def event_waveform(t_s: np.ndarray, tau_rise_s: float, tau_decay_s: float) -> np.ndarray:
    """Unit-peak event ``(1 - exp(-t/tau_rise)) exp(-t/tau_decay)`` for t >= 0, 0 before.

    Parameters
    ----------
    t_s : time from onset (s), any shape; tau_rise_s < tau_decay_s (s)
    """
    t = np.asarray(t_s, dtype=np.float64)
    y = np.where(t >= 0, (1 - np.exp(-np.clip(t, 0, None) / tau_rise_s)) * np.exp(-np.clip(t, 0, None) / tau_decay_s), 0.0)
    tp = tau_rise_s * np.log((tau_rise_s + tau_decay_s) / tau_rise_s)
    peak = (1 - np.exp(-tp / tau_rise_s)) * np.exp(-tp / tau_decay_s)
    return y / peak


def _rise_10_90(tau_rise_s: float, tau_decay_s: float) -> float:
    t = np.linspace(0, 10 * tau_rise_s + tau_decay_s, 4001)
    y = event_waveform(t, tau_rise_s, tau_decay_s)
    k = int(np.argmax(y))
    return float(np.interp(0.9, y[:k + 1], t[:k + 1]) - np.interp(0.1, y[:k + 1], t[:k + 1]))


def rise_tau_for(rise_10_90_s: float, tau_decay_s: float) -> float:
    """The ``tau_rise`` (s) whose waveform has the given 10-90 % rise time (bisection).

    Rises up to about half ``tau_decay_s`` have a waveform (the 10-90 % rise tends to 0.56
    ``tau_decay`` as ``tau_rise`` grows); the bracket is widened until it holds the target.
    """
    lo, hi = 1e-6, rise_10_90_s
    while _rise_10_90(hi, tau_decay_s) < rise_10_90_s and hi < 1e3 * tau_decay_s:
        lo, hi = hi, 4 * hi
    for _ in range(32):
        mid = 0.5 * (lo + hi)
        if _rise_10_90(mid, tau_decay_s) < rise_10_90_s:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-SD noise with a 1/f power spectrum (white noise shaped in the frequency domain)."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / x.std()


@dataclass
class SimulatedRecording:
    """One simulated trace and its ground truth (see the module docstring)."""

    id: str
    kind: str
    trace: np.ndarray
    fs_hz: float
    units: str
    polarity: str
    snr: float
    truth: dict
    mask: np.ndarray
    noise_sd: float
    signal: np.ndarray | None = None  # the events alone (no noise, no artifacts), when kept


def simulate_recording(kind: str = "mepp", snr: float = 5.0, duration_s: float = 10.0, seed: int = 0,
                       fs_hz: float | None = None, rec_id: str = "rec") -> SimulatedRecording:
    """Simulate one recording of ``kind`` (``mepp`` | ``mepsc``) at ``snr``.

    Returns
    -------
    SimulatedRecording with ``trace`` (n,) float64 in mV or pA, ``truth`` dict of arrays
    (``onset_s``, ``peak_s``, ``amplitude`` signed, ``rise_10_90_ms``, ``decay_tau_ms``) and
    ``mask`` (n,) uint8.

    Raises
    ------
    EphysError
        Unknown kind, non-positive snr/duration, or an mEPSC rate outside 20-50 kHz.
    """
    if kind not in KINDS:
        raise EphysError(f"unknown event kind {kind!r}; known: {', '.join(KINDS)}")
    if snr <= 0 or duration_s <= 0:
        raise EphysError("snr and duration must be positive")
    p = KINDS[kind]
    fs = float(fs_hz or p["fs_hz"])
    if kind == "mepsc" and not 20_000 <= fs <= 50_000:
        raise EphysError(f"mEPSC-like traces are simulated at 20-50 kHz, not {fs:g} Hz", "--fs-hz")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    rate = rng.uniform(*p["rate_hz"])
    n_ev = rng.poisson(rate * duration_s)
    # keep 50 ms at the end free so every event's decay is inside the trace
    onsets = np.sort(rng.uniform(0.02, max(0.03, duration_s - 0.05), n_ev))
    amp_lo, amp_hi = p["amp"]
    amps = rng.uniform(amp_lo, amp_hi, n_ev)
    rises = rng.uniform(*p["rise_ms"], n_ev) * 1e-3
    decays = rng.uniform(*p["decay_ms"], n_ev) * 1e-3
    sign = 1.0 if p["polarity"] == "positive" else -1.0
    signal = np.zeros(n)
    mask = np.zeros(n, dtype=np.uint8)
    peaks = np.zeros(n_ev)
    cache: dict = {}
    for k in range(n_ev):
        key = (round(rises[k], 6), round(decays[k], 6))
        tau_r = cache.get(key) or cache.setdefault(key, rise_tau_for(rises[k], decays[k]))
        i0 = int(np.floor(onsets[k] * fs))
        i1 = min(n, i0 + int(np.ceil((10 * decays[k] + 5 * tau_r) * fs)))
        tt = t[i0:i1] - onsets[k]
        w = event_waveform(tt, tau_r, decays[k])
        signal[i0:i1] += sign * amps[k] * w
        kp = int(np.argmax(w))
        peaks[k] = onsets[k] + tt[kp]
        after = np.flatnonzero((np.arange(w.size) > kp) & (w < 0.2))
        end = i0 + (int(after[0]) if after.size else w.size)
        mask[max(i0, 0): end] = 1
    noise_sd = float(np.mean(p["amp"])) / float(snr)
    # white + pink in equal power, total SD = noise_sd
    noise = noise_sd * (rng.standard_normal(n) + pink_noise(n, rng)) / np.sqrt(2.0)
    hum = sum(noise_sd * a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
              for f, a in ((50.0, 0.4), (100.0, 0.15), (150.0, 0.1)))
    walk = np.cumsum(rng.standard_normal(n))
    from scipy.signal import sosfiltfilt, butter

    walk = sosfiltfilt(butter(2, 0.5, fs=fs, output="sos"), walk)
    walk = (walk - walk.mean()) / (walk.std() + 1e-12)
    drift = noise_sd * (2.0 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t) + 1.5 * walk)
    trace = signal + noise + hum + drift
    truth = {"onset_s": onsets, "peak_s": peaks, "amplitude": sign * amps,
             "rise_10_90_ms": rises * 1e3, "decay_tau_ms": decays * 1e3}
    return SimulatedRecording(rec_id, kind, trace, fs, p["units"], p["polarity"], float(snr), truth, mask, noise_sd)


_TRUTH_COLS = ("onset_s", "peak_s", "amplitude", "rise_10_90_ms", "decay_tau_ms")
_REC_COLS = ("id", "file", "kind", "fs_hz", "units", "polarity", "snr", "duration_s", "n_events", "rate_hz",
             "noise_sd")


def write_cohort(out: str | Path, recs: list[SimulatedRecording]) -> Path:
    """Write recordings (trace, events CSV, mask) and ``recordings.csv`` (last); returns it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in recs:
        write_npy(out / f"{r.id}.npy", r.trace.astype(np.float32))
        write_npy(out / f"{r.id}_mask.npy", r.mask)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(_TRUTH_COLS)
        for k in range(r.truth["onset_s"].size):
            w.writerow([f"{r.truth[c][k]:.6g}" if c != "onset_s" and c != "peak_s" else f"{r.truth[c][k]:.7f}"
                        for c in _TRUTH_COLS])
        write_text(out / f"{r.id}_events.csv", buf.getvalue())
        arts = r.truth.get("artifacts")
        if arts is not None:  # labelled not-events (kinetics families): glitches and steps
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(("time_s", "kind", "size"))
            w.writerows([f"{t:.7f}", k, f"{z:.6g}"] for t, k, z in zip(arts["time_s"], arts["kind"], arts["size"]))
            write_text(out / f"{r.id}_artifacts.csv", buf.getvalue())
        dur = r.trace.size / r.fs_hz
        rows.append([r.id, f"{r.id}.npy", r.kind, f"{r.fs_hz:g}", r.units, r.polarity, f"{r.snr:g}", f"{dur:g}",
                     r.truth["onset_s"].size, f"{r.truth['onset_s'].size / dur:.4g}", f"{r.noise_sd:.6g}"])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_REC_COLS)
    w.writerows(rows)
    return write_text(out / "recordings.csv", buf.getvalue())


def cohort(n_recordings: int = 6, seed: int = 0, duration_s: float = 10.0, kinds=("mepp", "mepsc"),
           snr_levels=SNR_LEVELS) -> list[SimulatedRecording]:
    """``n_recordings`` recordings cycling over kinds x SNR levels (seeded per recording)."""
    combos = [(k, s) for k in kinds for s in snr_levels]
    recs = []
    for i in range(n_recordings):
        kind, snr = combos[i % len(combos)]
        recs.append(simulate_recording(kind, snr, duration_s, seed=seed * 100_003 + i,
                                       rec_id=f"{kind}_snr{snr:g}_{i:03d}"))
    return recs


def synthetic(out: Path, *, seed: int = 0, size: int | None = None, progress=None, duration_s: float = 10.0) -> Path:
    """The ``fetch synthetic --pipeline events`` hook without ``--families``: ``size`` recordings
    (default 12: mEPP and mEPSC at SNR 2.5, 5, 10, two of each, so ``reproduce events-sim --data``
    can hold one of each out), ``duration_s`` each; returns the folder. With ``--families``:
    :func:`.families.synthetic_families`."""
    n = int(size or 12)
    recs = []
    combos = [(k, s) for k in KINDS for s in SNR_LEVELS]
    for i in range(n):
        kind, level = combos[i % len(combos)]
        recs.append(simulate_recording(kind, level, duration_s, seed=seed * 100_003 + i,
                                       rec_id=f"{kind}_snr{level:g}_{i:03d}"))
        if progress:
            progress(i + 1, n)
    write_cohort(out, recs)
    return Path(out)


def read_truth(path: str | Path, duration_s: float | None = None) -> dict[str, np.ndarray]:
    """A ``<id>_events.csv`` ground-truth table as arrays (columns of :data:`_TRUTH_COLS`).

    Raises
    ------
    EphysError
        A missing file or column, a value that is not a finite number (naming row and column),
        or, with ``duration_s``, an onset outside the recording (0 to ``duration_s`` s).
    """
    from ..core.errors import EphysError

    path = Path(path)
    if not path.is_file():
        raise EphysError("missing: every recording needs its ground-truth table ID_events.csv", path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in _TRUTH_COLS if c not in (reader.fieldnames or [])]
            if missing:
                raise EphysError(f"no column {', '.join(missing)} (columns: {', '.join(_TRUTH_COLS)})", path)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EphysError(f"unreadable CSV ({type(exc).__name__}: {exc})", path) from None
    out = {}
    for c in _TRUTH_COLS:
        vals = []
        for k, r in enumerate(rows, start=2):
            try:
                v = float(r[c])
            except (TypeError, ValueError):
                v = float("nan")
            if not np.isfinite(v):
                raise EphysError(f"row {k}, column {c}: {r.get(c)!r} is not a finite number", path)
            vals.append(v)
        out[c] = np.array(vals, dtype=np.float64)
    if duration_s is not None:
        bad = np.flatnonzero((out["onset_s"] < 0) | (out["onset_s"] > duration_s))
        if bad.size:
            raise EphysError(f"row {int(bad[0]) + 2}: onset {out['onset_s'][bad[0]]:g} s lies outside the "
                             f"{duration_s:g}-s recording ({bad.size} such rows)", path)
    return out
