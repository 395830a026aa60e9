"""Simulated recordings that look like the ones users bring: kinetics families, long-tailed
amplitudes, overlapping events, coloured noise, hum, drift and labelled artifacts.

Kinetics families (:data:`FAMILIES`; 10-90 % rise and decay tau drawn per event, uniformly
within the ranges; the rise is capped at half the decay tau so that every drawn pair has a
waveform):

* ``fast-mepsc``: fast miniature EPSCs in voltage clamp (cerebellar granule cells, O'Neill et al.
  2025): rise 0.2-0.5 ms, decay 2-5 ms, pA, inward (negative), 20 kHz by default;
* ``mipsc``: miniature IPSCs (GABA-A, slow decay): rise 0.3-1 ms, decay 10-40 ms, pA, inward
  (high-chloride pipette), 20 kHz;
* ``nmj-mepp``: miniature end-plate potentials at a neuromuscular junction in current clamp:
  rise 1-6 ms, decay 3-15 ms, mV, positive, 10 kHz;
* ``nmj-mejc``: miniature end-plate / junction currents in two-electrode voltage clamp: the same
  kinetics, nA, inward, 10 kHz (the issue's 90.8-s NMJ trace).

Amplitudes are log-normal (sigma 0.5 of the log: a long tail of large events; clipped to 0.3-6 x
the median); ``snr`` = median amplitude / SD of the broadband noise. Event times are a Poisson
process (rate drawn per recording), so events overlap, slow ones (mIPSCs) often.

Noise (``noise``): ``coloured`` (white + 1/f in equal power, line hum at 50 or 60 Hz with two
harmonics, slow drift: a 0.05-0.3 Hz sine plus a low-passed random walk), ``white``, ``real``
(event-free stretches of a real voltage-clamp recording, :func:`real_noise`, as miniML adds its
simulated events to real event-free noise; hum and drift are then the recording's own), or
``none`` (the clean signal: for tests of the kinetics).

Artifacts (labelled *not events*, in ``truth["artifacts"]``; the mask is 0 there and no artifact
lies within 20 ms of an event's onset): one-sample glitches (either sign, 4-12 noise SD) and
step artifacts (a baseline shift of 2-6 noise SD that stays), at ``glitch_rate_hz`` and
``step_rate_hz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import EphysError
from .simulate import SimulatedRecording, event_waveform, pink_noise, rise_tau_for, write_cohort

__all__ = ["FAMILIES", "NOISE_KINDS", "REAL_NOISE_FILE", "Family", "simulate_family", "real_noise",
           "measure_rise_decay", "synthetic_families"]

#: the real recording whose event-free stretches ``noise="real"`` uses (``../shared/data/events``,
#: pyABF's 171116sh_0020.abf, voltage clamp, 20 kHz, pA)
REAL_NOISE_FILE = "../shared/data/events/171116sh_0020.abf"

NOISE_KINDS = ("coloured", "white", "real", "none")


@dataclass(frozen=True)
class Family:
    """One kinetics family: units, sign, ranges (ms), median amplitude (units), rate (Hz), default fs (Hz)."""

    units: str
    polarity: str
    rise_ms: tuple[float, float]
    decay_ms: tuple[float, float]
    amp_median: float
    rate_hz: tuple[float, float]
    fs_hz: float
    source: str


FAMILIES = {
    "fast-mepsc": Family("pA", "negative", (0.2, 0.5), (2.0, 5.0), 15.0, (2.0, 8.0), 20_000.0,
                         "cerebellar granule-cell mEPSCs (O'Neill et al. 2025, eLife)"),
    "mipsc": Family("pA", "negative", (0.3, 1.0), (10.0, 40.0), 20.0, (1.0, 4.0), 20_000.0,
                    "GABA-A miniature IPSCs, high-chloride pipette"),
    "nmj-mepp": Family("mV", "positive", (1.0, 6.0), (3.0, 15.0), 0.5, (0.5, 3.0), 10_000.0,
                       "neuromuscular-junction mEPPs (the mEPP seed's recordings)"),
    "nmj-mejc": Family("nA", "negative", (1.0, 6.0), (3.0, 15.0), 0.6, (0.5, 3.0), 10_000.0,
                       "neuromuscular-junction miniature junction currents, two-electrode voltage clamp"),
}

#: log-normal spread of amplitudes (SD of log amplitude) and the clip, in multiples of the median
AMP_SIGMA, AMP_CLIP = 0.5, (0.3, 6.0)
#: no artifact closer than this to an event onset (s)
ARTIFACT_GAP_S = 0.02

_REAL_CACHE: dict = {}


def real_noise(path: str | Path = REAL_NOISE_FILE, k_sd: float = 3.0, guard_ms: float = 30.0,
               min_ms: float = 20.0) -> tuple[np.ndarray, float]:
    """Event-free stretches of a real voltage-clamp recording, joined, as unit-SD noise.

    Per sweep: the stimulus samples (membrane test and its relaxation, :func:`.readers.read_abf_trace`)
    are dropped, the baseline (50-ms running median) removed, and every sample within
    ``guard_ms`` of an inward excursion beyond ``k_sd`` robust SDs of the 1-kHz low-passed
    trace (a candidate event) is dropped; the remaining stretches of at least ``min_ms`` are
    joined with a 1-ms linear cross-fade. The file is read in place, never copied.

    Returns
    -------
    (noise, fs_hz): float64 (n,) with SD 1, and the recording's sampling rate (Hz). On the
    shared 171116sh_0020.abf: about 32 s at 20 kHz.

    Raises
    ------
    EphysError
        The file is missing or unreadable, or holds less than 1 s of event-free signal.
    """
    key = (str(Path(path).resolve()), k_sd, guard_ms, min_ms)
    if key in _REAL_CACHE:
        return _REAL_CACHE[key]
    from scipy.ndimage import binary_dilation, median_filter
    from scipy.signal import butter, sosfiltfilt

    from .readers import read_abf_trace

    if not Path(path).is_file():
        raise EphysError("no such recording for real noise (see ../shared/data/README.md)", path)
    tr = read_abf_trace(path)
    fs = float(tr.fs_hz)
    fade = max(2, int(round(1e-3 * fs)))
    out: list[np.ndarray] = []
    for a, b in tr.segments:
        y, ex = tr.data[a:b], tr.exclude[a:b]
        z = y - median_filter(y, size=int(0.05 * fs) | 1, mode="nearest")
        lp = sosfiltfilt(butter(2, min(1000.0, 0.4 * fs), fs=fs, output="sos"), z)
        sd = 1.4826 * np.median(np.abs(lp - np.median(lp)))
        sign = -1.0 if tr.mode == "voltage_clamp" else 1.0
        busy = binary_dilation((sign * lp > k_sd * sd) | ex, structure=np.ones(2 * int(guard_ms * 1e-3 * fs) + 1))
        d = np.diff(np.r_[0, (~busy).astype(np.int8), 0])
        for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            if e - s >= min_ms * 1e-3 * fs:
                seg = z[s:e] - z[s:e].mean()
                if out and out[-1].size >= fade and seg.size >= fade:
                    ramp = np.linspace(0, 1, fade)
                    out[-1][-fade:] = out[-1][-fade:] * (1 - ramp) + seg[:fade] * ramp
                    seg = seg[fade:]
                out.append(seg.copy())
    noise = np.concatenate(out) if out else np.zeros(0)
    if noise.size < fs:
        raise EphysError(f"only {noise.size / fs:.2f} s of event-free signal found", path)
    noise = (noise - noise.mean()) / noise.std()
    _REAL_CACHE[key] = (noise, fs)
    return noise, fs


def _real_noise_for(n: int, fs: float, rng: np.random.Generator, path) -> np.ndarray:
    """``n`` samples at ``fs`` from the real noise, starting at a random place (cyclic), resampled."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    base, fs0 = real_noise(path)
    if fs != fs0:
        fr = Fraction(fs / fs0).limit_denominator(100)
        base = resample_poly(base, fr.numerator, fr.denominator)
        base = base / base.std()
    start = int(rng.integers(0, base.size))
    reps = int(np.ceil((start + n) / base.size))
    return np.tile(base, reps)[start:start + n] if reps > 1 else base[start:start + n]


def simulate_family(family: str = "fast-mepsc", snr: float = 5.0, duration_s: float = 10.0, seed: int = 0,
                    fs_hz: float | None = None, noise: str = "coloured", glitch_rate_hz: float = 0.3,
                    step_rate_hz: float = 0.05, rec_id: str = "rec",
                    real_noise_file: str | Path = REAL_NOISE_FILE) -> SimulatedRecording:
    """Simulate one recording of a kinetics family (module docstring) at ``snr``.

    Parameters
    ----------
    family : a key of :data:`FAMILIES`
    snr : median event amplitude / broadband noise SD (> 0)
    duration_s : length (s); fs_hz : sampling rate (Hz; default the family's; 10, 20 and 50 kHz
        are the ones the test sets use)
    noise : one of :data:`NOISE_KINDS`
    glitch_rate_hz, step_rate_hz : artifact rates (per s of trace; labelled, not events)
    seed : generator seed (every draw of the recording comes from it)

    Returns
    -------
    SimulatedRecording: ``trace``, ``signal`` (the events alone), (n,) float64 in the family's units, ``truth`` with the events
    (``onset_s``, ``peak_s``, ``amplitude`` signed, ``rise_10_90_ms``, ``decay_tau_ms``) and
    ``artifacts`` (dict: ``time_s``, ``kind`` 'glitch' | 'step', ``size`` signed, units),
    ``mask`` (n,) uint8 (onset to 20 % of the peak), ``noise_sd`` (units), and ``kind`` = family.

    Raises
    ------
    EphysError
        Unknown family or noise kind, non-positive snr / duration / fs, negative artifact rates.
    """
    if family not in FAMILIES:
        raise EphysError(f"unknown kinetics family {family!r}; known: {', '.join(FAMILIES)}", "--families")
    if noise not in NOISE_KINDS:
        raise EphysError(f"unknown noise {noise!r}; known: {', '.join(NOISE_KINDS)}", "--noise")
    if snr <= 0 or duration_s <= 0 or (fs_hz is not None and fs_hz <= 0):
        raise EphysError("snr, duration and sampling rate must be positive")
    if glitch_rate_hz < 0 or step_rate_hz < 0:
        raise EphysError("artifact rates must not be negative")
    p = FAMILIES[family]
    fs = float(fs_hz or p.fs_hz)
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    n_ev = rng.poisson(rng.uniform(*p.rate_hz) * duration_s)
    tail_s = 6 * p.decay_ms[1] * 1e-3
    onsets = np.sort(rng.uniform(0.02, max(0.03, duration_s - tail_s), n_ev))
    amps = np.clip(p.amp_median * np.exp(AMP_SIGMA * rng.standard_normal(n_ev)),
                   AMP_CLIP[0] * p.amp_median, AMP_CLIP[1] * p.amp_median)
    decays = rng.uniform(*p.decay_ms, n_ev) * 1e-3
    rises = rng.uniform(p.rise_ms[0], np.minimum(p.rise_ms[1], 0.5 * decays * 1e3), n_ev) * 1e-3
    sign = 1.0 if p.polarity == "positive" else -1.0
    signal = np.zeros(n)
    mask = np.zeros(n, dtype=np.uint8)
    peaks = np.zeros(n_ev)
    for k in range(n_ev):
        tau_r = rise_tau_for(rises[k], decays[k])
        i0 = int(np.ceil(onsets[k] * fs))
        i1 = min(n, i0 + int(np.ceil((8 * decays[k] + 5 * tau_r) * fs)))
        tt = t[i0:i1] - onsets[k]
        w = event_waveform(tt, tau_r, decays[k])
        signal[i0:i1] += sign * amps[k] * w
        kp = int(np.argmax(w))
        peaks[k] = onsets[k] + tt[kp]
        after = np.flatnonzero((np.arange(w.size) > kp) & (w < 0.2))
        mask[i0: i0 + (int(after[0]) if after.size else w.size)] = 1
    noise_sd = p.amp_median / float(snr)
    if noise == "none":
        bg = np.zeros(n)
    elif noise == "white":
        bg = noise_sd * rng.standard_normal(n)
    elif noise == "real":
        bg = noise_sd * _real_noise_for(n, fs, rng, real_noise_file)
    else:
        bg = noise_sd * (rng.standard_normal(n) + pink_noise(n, rng)) / np.sqrt(2.0)
        line = 50.0 if rng.random() < 0.5 else 60.0
        bg += sum(noise_sd * a * np.sin(2 * np.pi * line * h * t + rng.uniform(0, 2 * np.pi))
                  for h, a in ((1, 0.4), (2, 0.15), (3, 0.1)) if line * h < fs / 2)
        from scipy.signal import butter, sosfiltfilt

        walk = sosfiltfilt(butter(2, 0.5, fs=fs, output="sos"), np.cumsum(rng.standard_normal(n)))
        walk = (walk - walk.mean()) / (walk.std() + 1e-12)
        bg += noise_sd * (2.0 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t) + 1.5 * walk)
    arts = _artifacts(rng, n, fs, onsets, noise_sd if noise != "none" else p.amp_median / 5.0,
                      glitch_rate_hz, step_rate_hz)
    art_sig = np.zeros(n)
    for ts, kind, size in zip(arts["time_s"], arts["kind"], arts["size"]):
        i = int(round(ts * fs))
        if kind == "glitch":
            art_sig[i] += size
        else:
            art_sig[i:] += size
    trace = signal + bg + art_sig
    truth = {"onset_s": onsets, "peak_s": peaks, "amplitude": sign * amps, "rise_10_90_ms": rises * 1e3,
             "decay_tau_ms": decays * 1e3, "artifacts": arts}
    return SimulatedRecording(rec_id, family, trace, fs, p.units, p.polarity, float(snr), truth, mask, noise_sd,
                              signal=signal)


def _artifacts(rng, n: int, fs: float, onsets: np.ndarray, sd: float, glitch_hz: float, step_hz: float) -> dict:
    dur = n / fs
    times, kinds, sizes = [], [], []
    for kind, rate, lo, hi in (("glitch", glitch_hz, 4.0, 12.0), ("step", step_hz, 2.0, 6.0)):
        for ts in rng.uniform(0.01, dur - 0.01, rng.poisson(rate * dur)) if dur > 0.02 else []:
            if onsets.size and np.min(np.abs(onsets - ts)) < ARTIFACT_GAP_S:
                continue  # never on an event: the label must be unambiguous
            times.append(float(ts))
            kinds.append(kind)
            sizes.append(float(rng.choice((-1.0, 1.0)) * rng.uniform(lo, hi) * sd))
    order = np.argsort(times)
    return {"time_s": np.asarray(times)[order], "kind": [kinds[i] for i in order],
            "size": np.asarray(sizes)[order]}


def synthetic_families(out: Path, *, families: tuple[str, ...], seed: int = 0, size: int | None = None,
                       progress=None, duration_s: float = 10.0, snr: tuple[float, ...] = (), noise: str = "coloured",
                       fs_khz: tuple[float, ...] = (), glitch_rate_hz: float = 0.3, step_rate_hz: float = 0.05,
                       real_noise_file: str | None = None) -> Path:
    """``fetch synthetic --pipeline events --families ...`` (settings :class:`.simparams.SimParams`):
    ``size`` recordings (default two per SNR x rate x family) cycling over the SNR levels (default
    2, 3, 5, 10), ``fs_khz`` (default each family's own rate) and the families, with ``noise`` and
    the labelled artifacts (``ID_artifacts.csv``); seeds ``seed * 100_003 + i``. Returns the folder."""
    from .simparams import FAMILY_SNR_LEVELS

    levels = tuple(snr) or FAMILY_SNR_LEVELS
    rates = tuple(f * 1e3 for f in fs_khz) or (None,)
    combos = [(f, s, r) for s in levels for r in rates for f in families]  # any size mixes the families
    n = int(size or 2 * len(combos))
    recs = []
    for i in range(n):
        fam, level, fs = combos[i % len(combos)]
        tag = f"_{fs / 1e3:g}k" if fs else ""
        recs.append(simulate_family(fam, level, duration_s, seed=seed * 100_003 + i, fs_hz=fs, noise=noise,
                                    glitch_rate_hz=glitch_rate_hz, step_rate_hz=step_rate_hz,
                                    rec_id=f"{fam}_snr{level:g}{tag}_{i:03d}",
                                    real_noise_file=real_noise_file or REAL_NOISE_FILE))
        if progress:
            progress(i + 1, n)
    write_cohort(out, recs)
    return Path(out)


def measure_rise_decay(y: np.ndarray, fs_hz: float) -> tuple[float, float]:
    """10-90 % rise (ms) and decay tau (ms) of one clean, isolated, upward event ``y`` (n,) float
    whose first sample is its onset.

    The rise is measured directly (interpolated 10 % and 90 % crossings before the peak); the
    decay tau by a least-squares fit of ``a (1 - exp(-t/tau_r)) exp(-t/tau_d)`` (Clements &
    Bekkers 1997) to the whole event (scipy ``curve_fit``), since with slow rises the decay phase
    is not a single exponential until the rise has settled.
    """
    from scipy.optimize import curve_fit

    k = int(np.argmax(y))
    pk = float(y[k])
    t = np.arange(y.size) / fs_hz
    rise = (np.interp(0.9 * pk, y[:k + 1], t[:k + 1]) - np.interp(0.1 * pk, y[:k + 1], t[:k + 1])) * 1e3

    def model(tt, a, tr, td):
        return a * (1 - np.exp(-tt / tr)) * np.exp(-tt / td)

    tp = max(t[k], 1.0 / fs_hz)
    (a, tr, td), _ = curve_fit(model, t, y, p0=(2 * pk, tp / 3, 3 * tp), bounds=(0, np.inf), maxfev=20000)
    return float(rise), float(td * 1e3)
