"""The shared detection step: a per-sample event-probability trace -> an event list with kinetics.

Every detector here (U-Net mask, autoencoder anomaly score, window classifier prediction trace,
plain threshold) ends in :func:`detect_events`: stretches where the probability exceeds a
threshold are candidate regions; inside each region (widened by ``search_ms``) the event onsets
are the peaks of the smoothed, polarity-flipped derivative (several in one region when events
overlap: miniML's derivative-based location, O'Neill et al. 2025), and each onset is measured
by :func:`measure_event`:

* baseline: median of the 3 ms up to 1 ms before the steepest point;
* peak: extremum (in the event's direction) of the smoothed trace within 3 ms after the
  steepest point; amplitude = peak - baseline (signed, trace units);
* onset: the 20-80 % rise line extrapolated to the baseline; 10-90 % rise time by linear
  interpolation on the rising phase;
* decay tau: single exponential ``a exp(-t/tau) + c`` fitted (``scipy.optimize.curve_fit``) from
  the first sample after the peak below 80 % of the amplitude to the next onset or 8 x the first
  guess; NaN when the fit fails;
* charge: integral of (trace - baseline) in the event's direction (samples that crossed back over
  the baseline count as zero) from onset to the end of the fit window (pA ms = fC, or mV ms); it
  has the amplitude's sign.

Events whose baseline window, rise or peak touch the trace's ``exclude`` mask (stimulus), or that
would cross a segment boundary, are dropped; optionally (``min_amplitude_sd``) so are events
smaller than a multiple of the trace's noise SD. The probability threshold and that amplitude
criterion are per-model settings chosen on calibration recordings (see :mod:`.events_sim`), never
on the recordings scored.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.atomic import write_text

__all__ = ["EVENT_COLUMNS", "DetectionParams", "measure_event", "detect_events", "events_to_csv", "smooth",
           "noise_sd_mad", "trace_noise_sd", "threshold_probability", "half_width_ms", "WIDTH_HZ"]

EVENT_COLUMNS = ("onset_s", "peak_s", "amplitude", "rise_10_90_ms", "decay_tau_ms", "charge", "score")


def smooth(x: np.ndarray, fs_hz: float, cutoff_hz: float = 2000.0) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth low-pass (cut-off clipped to 0.4 fs)."""
    from scipy.signal import butter, sosfiltfilt

    c = min(cutoff_hz, 0.4 * fs_hz)
    return sosfiltfilt(butter(2, c, fs=fs_hz, output="sos"), np.asarray(x, dtype=np.float64))


def noise_sd_mad(x: np.ndarray) -> float:
    """Robust SD: median absolute deviation / 0.6745."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.median(np.abs(x - np.median(x))) / 0.6745)


def _exp(t, a, tau, c):
    return a * np.exp(-t / tau) + c


def _exp_jac(t, a, tau, c):
    e = np.exp(-t / tau)
    return np.stack([e, a * t * e / tau ** 2, np.ones_like(t)], axis=1)


def measure_event(y: np.ndarray, fs_hz: float, i_steep: int, sign: float, stop: int | None = None,
                  max_s: float = 0.3) -> dict | None:
    """Measure one event around its steepest point.

    Parameters
    ----------
    y : (n,) float64 smoothed trace (trace units)
    fs_hz : sampling rate (Hz)
    i_steep : sample of the steepest rise
    sign : +1 for positive events, -1 for negative
    stop : last sample the decay fit may use (the next event's onset), default ``n``
    max_s : the decay fit ends at most this long (s) after ``i_steep``

    Returns
    -------
    dict with the :data:`EVENT_COLUMNS` (``score`` NaN), ``half_width_ms`` (50 % rise to 50 %
    decay, ms; NaN when the trace has not decayed to half before ``stop``) and ``after_peak_ms``
    (how long after the peak the decay was observed, ms), or None when the event cannot be
    measured (too near an edge, or no rise above the baseline).

    Only the stretch from 3 ms before ``i_steep`` to ``max_s`` after it is read (the decay fit
    window is bounded by it), so measuring many events of a long trace stays linear in their number.
    """
    ms = fs_hz / 1000.0
    o = max(0, int(i_steep - 3 * ms))
    hi = min(y.size, int(i_steep + max_s * fs_hz) + 1, y.size if stop is None else max(stop, i_steep + 3))
    ev = _measure_local(y[o:hi], fs_hz, i_steep - o, sign, None if stop is None else min(stop, hi) - o,
                        first_ok=o > 0 or i_steep - 3 * ms >= 0)
    if ev is not None:
        ev["onset_s"] += o / fs_hz
        ev["peak_s"] += o / fs_hz
    return ev


def _measure_local(y, fs_hz, i_steep, sign, stop, first_ok=True):
    n = y.size
    ms = fs_hz / 1000.0
    b0, b1 = int(i_steep - 3 * ms), int(i_steep - 1 * ms)
    if b0 < 0 or not first_ok or i_steep + 2 >= n:
        return None
    base = float(np.median(y[b0:b1 + 1]))
    z = sign * (y - base)
    p1 = min(n, int(i_steep + 3 * ms) + 1)
    ip = i_steep + int(np.argmax(z[i_steep:p1]))
    amp = float(z[ip])
    if amp <= 0:
        return None
    # rising phase: from the last baseline crossing before the peak to the peak
    seg = z[b1:ip + 1]
    below = np.flatnonzero(seg <= 0.1 * amp)
    r0 = b1 + (int(below[-1]) if below.size else 0)
    rise = z[r0:ip + 1]
    idx = np.arange(r0, ip + 1, dtype=np.float64)

    def cross(level):
        k = np.flatnonzero(rise >= level * amp)
        if not k.size:
            return float(ip)
        k = int(k[0])
        if k == 0:
            return idx[0]
        return float(np.interp(level * amp, rise[k - 1:k + 1], idx[k - 1:k + 1]))

    t10, t20, t80, t90 = (cross(v) for v in (0.1, 0.2, 0.8, 0.9))
    onset = t20 - (t80 - t20) * 0.2 / 0.6 if t80 > t20 else t10
    stop = n if stop is None else min(n, stop)
    after = np.flatnonzero(z[ip:stop] < 0.8 * amp)
    f0 = ip + (int(after[0]) if after.size else 0)
    # first guess of tau: time to 1/e after the peak
    e = np.flatnonzero(z[ip:stop] < amp / np.e)
    tau0 = (int(e[0]) if e.size else max(stop - ip, 2)) / fs_hz
    f1 = min(stop, int(f0 + max(8 * tau0 * fs_hz, 10)))
    tau = float("nan")
    if f1 - f0 >= 6:
        tt = (np.arange(f0, f1) - f0) / fs_hz
        try:
            import warnings

            from scipy.optimize import curve_fit

            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a poor fit is reported as NaN tau, not a warning
                popt, _ = curve_fit(_exp, tt, z[f0:f1], p0=(z[f0], max(tau0, 1.0 / fs_hz), 0.0), jac=_exp_jac,
                                    method="lm", maxfev=2000)
            tau = float(popt[1]) if popt[0] > 0 and 0.2 / fs_hz <= popt[1] <= 1.0 else float("nan")
        except (RuntimeError, ValueError, FloatingPointError):
            tau = float("nan")
    # half-width: from the 50 % crossing of the rise to the first 50 % crossing of the decay
    # (interpolated); NaN when the trace has not fallen to half the amplitude before ``stop``
    t50 = cross(0.5)
    half = np.flatnonzero(z[ip:stop] < 0.5 * amp)
    half_width = float("nan")
    if half.size and half[0] > 0:
        k = ip + int(half[0])
        t50d = (k - 1) + (z[k - 1] - 0.5 * amp) / max(z[k - 1] - z[k], 1e-300)
        half_width = float((t50d - t50) / ms)
    i_on = max(0, int(np.floor(onset)))
    # the event's area in its own direction: where the trace has crossed back over the baseline
    # (noise, drift, the next event's overshoot) it adds nothing, so charge and amplitude share a sign
    charge = float(sign * np.sum(np.clip(z[i_on:f1], 0.0, None)) / fs_hz * 1000.0)  # units x ms
    return {"onset_s": float(onset / fs_hz), "peak_s": float(ip / fs_hz), "amplitude": float(sign * amp),
            "rise_10_90_ms": float((t90 - t10) / ms), "decay_tau_ms": float(tau * 1000.0), "charge": charge,
            "score": float("nan"), "half_width_ms": half_width, "after_peak_ms": float((stop - ip) / ms)}


#: low-pass (Hz) of the trace the half-width is measured on (see :func:`half_width_ms`)
WIDTH_HZ = 2000.0


def half_width_ms(yw: np.ndarray, fs_hz: float, i_steep: int, sign: float, stop: int | None = None) -> float:
    """Width (ms) at half amplitude of the event whose steepest rise is at ``i_steep``, on ``yw``:
    the trace low-passed at :data:`WIDTH_HZ` (a fixed cut-off, so a one-sample glitch is
    ~0.15-0.3 ms wide at every sampling rate and a noise spike riding on a small event does not
    set its width). Baseline: median of the 3 ms up to 1 ms before ``i_steep``; peak: extremum
    within 3 ms after it; from the 50 % crossing of the rise to the first 50 % crossing of the
    decay before ``stop`` (interpolated). NaN when the trace has not fallen to half by then; 0 when
    nothing of the event is left above the baseline after the low-pass.
    """
    ms = fs_hz / 1000.0
    b0, b1 = int(i_steep - 3 * ms), int(i_steep - 1 * ms)
    n = yw.size if stop is None else min(yw.size, stop)
    if b0 < 0 or i_steep + 2 >= n:
        return float("nan")
    z = sign * (yw[b0:n] - np.median(yw[b0:b1 + 1]))
    k0 = i_steep - b0
    ip = k0 + int(np.argmax(z[k0:min(z.size, k0 + int(3 * ms) + 1)]))
    amp = z[ip]
    if amp <= 0:
        return 0.0  # nothing left of it under the low-pass: no width
    below = np.flatnonzero(z[:ip + 1] < 0.5 * amp)
    if not below.size:
        return float("nan")
    r = int(below[-1])
    t_up = r + (0.5 * amp - z[r]) / max(z[r + 1] - z[r], 1e-300)
    down = np.flatnonzero(z[ip:] < 0.5 * amp)
    if not down.size:
        return float("nan")
    d = ip + int(down[0])
    t_down = (d - 1) + (z[d - 1] - 0.5 * amp) / max(z[d - 1] - z[d], 1e-300)
    return float((t_down - t_up) / ms)


def threshold_probability(x: np.ndarray, fs_hz: float, polarity: str, k: float = 4.0,
                          cutoff_hz: float = 1000.0, baseline_ms: float = 50.0) -> np.ndarray:
    """The plain threshold detector as a 0/1 'probability' trace: the low-passed trace minus a
    running median baseline (``baseline_ms``), flipped to the event polarity, above ``k`` robust
    SDs (MAD)."""
    from scipy.ndimage import median_filter

    y = smooth(x, fs_hz, cutoff_hz)
    w = max(3, int(baseline_ms * 1e-3 * fs_hz) | 1)
    step = max(1, w // 15)
    base = median_filter(y[::step], size=max(3, w // step | 1), mode="nearest")
    base = np.interp(np.arange(y.size), np.arange(0, y.size, step), base)
    z = (1.0 if polarity == "positive" else -1.0) * (y - base)
    return (z > k * noise_sd_mad(z)).astype(np.float32)


def trace_noise_sd(y: np.ndarray, fs_hz: float, exclude: np.ndarray | None = None, baseline_ms: float = 50.0) -> float:
    """Robust SD (MAD / 0.6745) of a trace minus its running median over ``baseline_ms``
    (median of every ``w // 15``-th sample, interpolated), stimulus samples (``exclude``) left out.

    y : (n,) float trace; fs_hz : Hz; exclude : (n,) bool or None. Returns trace units.
    """
    from scipy.ndimage import median_filter

    y = np.asarray(y, dtype=np.float64)
    w = max(3, int(baseline_ms * 1e-3 * fs_hz))
    step = max(1, w // 15)
    base = median_filter(y[::step], size=max(3, (w // step) | 1), mode="nearest")
    base = np.interp(np.arange(y.size), np.arange(0, y.size, step)[: base.size], base)
    r = y - base
    if exclude is not None and exclude.any() and not exclude.all():
        r = r[~exclude]
    return noise_sd_mad(r)


@dataclass
class DetectionParams:
    """Settings of :func:`detect_events`.

    threshold : probability above which a sample belongs to a candidate region (miniML: 0.5)
    search_ms : (before, after) widening of each region when looking for onsets (ms)
    min_interval_ms : two onsets closer than this are one event
    smooth_hz : low-pass of the trace before measuring (Hz); None = 0.2 x fs (2 kHz at 10 kHz),
        fast enough to keep a 0.3 ms rise within 10 %
    min_region_ms : regions shorter than this are ignored
    rel_height : inside one region, derivative peaks below this fraction of the region's largest
        are not separate onsets
    min_amplitude_sd : events whose amplitude is below this many noise SDs (robust SD of the
        smoothed trace minus its 50-ms running median, per segment) are dropped; 0 keeps all
    locate_hz : low-pass (Hz) of the trace whose derivative locates the steepest rise; None = the
        measuring low-pass (``smooth_hz``). A lower cut-off finds the rise of a small event in
        white noise more reliably; the event is still measured on the ``smooth_hz`` trace
    """

    threshold: float = 0.5
    search_ms: tuple[float, float] = (1.0, 1.0)
    min_interval_ms: float = 1.5
    smooth_hz: float | None = None
    min_region_ms: float = 0.0
    rel_height: float = 0.35
    min_amplitude_sd: float = 0.0
    locate_hz: float | None = None


def detect_events(x: np.ndarray, fs_hz: float, prob: np.ndarray, polarity: str = "negative",
                  params: DetectionParams | None = None, segments=None, exclude=None, reject=None,
                  rejected: list | None = None) -> list[dict]:
    """Turn a per-sample event probability into measured events.

    Parameters
    ----------
    x : (n,) float trace (pA or mV)
    fs_hz : sampling rate (Hz)
    prob : (n,) float in [0, 1] (mask probability, anomaly score or prediction trace mapped to
        samples)
    polarity : ``negative`` | ``positive``
    params : :class:`DetectionParams`
    segments : list of (start, stop) sweeps (events are measured within one segment)
    exclude : (n,) bool: samples where no onset may lie (stimulus)
    reject : optional ``reject(event) -> reason | None`` (e.g.
        :func:`ephys.pipelines.events.shape.shape_reason`): candidates it names a reason for are
        dropped and the others measured again without them (a rejected candidate no longer cuts
        its neighbour's decay fit short), until none is rejected
    rejected : optional list that receives the rejected candidates (measured, with ``reason``)

    Returns
    -------
    list of dicts with :data:`EVENT_COLUMNS`, sorted by onset; ``score`` is the region's maximum
    probability; ``half_width_ms`` is measured by :func:`half_width_ms` (2 kHz low-pass);
    ``amplitude_sd``: |amplitude| in robust noise SDs of the segment (:func:`trace_noise_sd` of
    the measuring trace; with ``reject`` or ``min_amplitude_sd``).
    """
    from scipy.signal import find_peaks

    prm = params or DetectionParams()
    x = np.asarray(x, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    n = x.size
    sign = 1.0 if polarity == "positive" else -1.0
    segments = segments or [(0, n)]
    ms = fs_hz / 1000.0
    out: list[dict] = []
    for s0, s1 in segments:
        y = smooth(x[s0:s1], fs_hz, prm.smooth_hz or 0.2 * fs_hz)
        yl = y if not prm.locate_hz else smooth(x[s0:s1], fs_hz, prm.locate_hz)
        d = sign * np.gradient(yl) * fs_hz
        d_sd = noise_sd_mad(d)
        above = prob[s0:s1] > prm.threshold
        if not above.any():
            continue
        edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        steep: list[tuple[int, float]] = []
        for a, b in zip(starts, stops):
            if b - a < prm.min_region_ms * ms:
                continue
            lo = max(0, int(a - prm.search_ms[0] * ms))
            hi = min(y.size, int(b + prm.search_ms[1] * ms))
            seg = d[lo:hi]
            if seg.size < 3:
                continue
            top = float(seg.max())
            pk, _ = find_peaks(seg, height=max(prm.rel_height * top, 3.0 * d_sd),
                               distance=max(1, int(prm.min_interval_ms * ms)))
            if not pk.size:
                pk = np.array([int(np.argmax(seg))])
            score = float(prob[s0 + a:s0 + b].max())
            steep.extend((lo + int(k), score) for k in pk)
        steep.sort()
        merged: list[tuple[int, float]] = []
        for i, sc in steep:
            if merged and i - merged[-1][0] < prm.min_interval_ms * ms:
                if d[i] > d[merged[-1][0]]:
                    merged[-1] = (i, max(sc, merged[-1][1]))
                continue
            merged.append((i, sc))
        noise = None
        if prm.min_amplitude_sd > 0 or reject is not None:
            ex = None if exclude is None else exclude[s0:s1]
            noise = trace_noise_sd(y, fs_hz, ex)

        yw = smooth(x[s0:s1], fs_hz, WIDTH_HZ)

        def measure_all(idx, which=None):
            res = {}
            for pos, j in enumerate(idx):
                if which is not None and j not in which:
                    continue
                nxt = merged[idx[pos + 1]][0] - int(1.0 * ms) if pos + 1 < len(idx) else None
                ev = measure_event(y, fs_hz, merged[j][0], sign, stop=nxt)
                if ev is not None:
                    ev["half_width_ms"] = half_width_ms(yw, fs_hz, merged[j][0], sign, nxt)
                    ev["amplitude_sd"] = abs(ev["amplitude"]) / noise if noise else float("inf")
                res[j] = ev
            return res

        alive = list(range(len(merged)))
        meas = measure_all(alive)
        keep = []
        for j in alive:
            ev, i = meas[j], merged[j][0]
            if ev is None:
                continue
            if prm.min_amplitude_sd > 0 and abs(ev["amplitude"]) < prm.min_amplitude_sd * noise:
                if rejected is not None:  # every dropped candidate is listed, with its reason
                    ev["onset_s"] += s0 / fs_hz
                    ev["peak_s"] += s0 / fs_hz
                    ev["score"] = merged[j][1]
                    ev["reason"] = (f"below noise: amplitude {abs(ev['amplitude']) / noise:.2g} noise SDs < "
                                    f"{prm.min_amplitude_sd:g} (the detector's minimum)")
                    rejected.append(ev)
                continue
            if exclude is not None:
                # nothing from the baseline window (3 ms before the steepest point) to the peak
                # may touch a stimulus stretch
                a = min(max(s0 + i - int(3 * ms), 0), n - 1)
                b = min(max(s0 + int(round(ev["peak_s"] * fs_hz)), a), n - 1)
                if exclude[a:b + 1].any():
                    continue
            keep.append(j)
        alive = keep
        if reject is not None:
            # a rejected candidate must not cut its neighbour's decay window short: measure the
            # survivors again with the next survivor as the limit, until no more are rejected
            before = list(range(len(merged)))
            for k in range(8):
                # measured again: the candidates whose next neighbour has gone (dropped above or
                # rejected in the last round), i.e. whose decay window has grown
                kept = set(alive)
                dirty = {before[p - 1] for p in range(1, len(before)) if before[p] not in kept and before[p - 1] in kept}
                if dirty:
                    meas.update(measure_all(alive, dirty))
                before = list(alive)
                bad = {j: reject(meas[j]) for j in alive if meas[j] is not None}
                bad = {j: why for j, why in bad.items() if why is not None}
                if k < 7:
                    # a candidate whose decay the next (also rejected) candidate cut short (no
                    # half-width measured) waits for the next round, measured without it
                    bad = {j: why for pos, (j, why) in enumerate((j, bad.get(j)) for j in alive)
                           if why is not None and not (np.isnan(meas[j]["half_width_ms"]) and pos + 1 < len(alive)
                                                       and alive[pos + 1] in bad)}
                gone = [j for j in alive if meas[j] is None]
                if not bad and not gone:
                    break
                for j, why in bad.items():
                    e = meas[j]
                    e["onset_s"] += s0 / fs_hz
                    e["peak_s"] += s0 / fs_hz
                    e["score"] = merged[j][1]
                    e["reason"] = why
                    if rejected is not None:
                        rejected.append(e)
                alive = [j for j in alive if j not in bad and meas[j] is not None]
        for j in alive:
            ev = meas[j]
            ev["onset_s"] += s0 / fs_hz
            ev["peak_s"] += s0 / fs_hz
            ev["score"] = merged[j][1]
            out.append(ev)
    out.sort(key=lambda e: e["onset_s"])
    if rejected is not None:
        rejected.sort(key=lambda e: e["onset_s"])
    return out


def events_to_csv(path: str | Path, events: list[dict], columns=EVENT_COLUMNS) -> Path:
    """Write ``events.csv`` (``columns``, default :data:`EVENT_COLUMNS`; numbers with 7 significant
    digits, NaN / missing as empty, text as is) atomically."""
    def cell(v):
        if isinstance(v, str):
            return v
        return "" if v is None or not np.isfinite(v) else f"{v:.7g}"

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for e in events:
        w.writerow([cell(e.get(c)) for c in columns])
    return write_text(path, buf.getvalue())
