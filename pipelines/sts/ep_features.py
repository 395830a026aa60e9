"""Electrophysiological (EP) features of a cell from its long-square (step current) sweeps.

The definitions are those of the Allen Institute's IPFX package (github.com/AllenInstitute/ipfx;
``ipfx/spike_detector.py``, ``ipfx/spike_features.py``, ``ipfx/spike_train_features.py``,
``ipfx/subthresh_features.py``, ``ipfx/stimulus_protocol_analysis.py`` ``LongSquareAnalysis``,
``ipfx/feature_record.py``), used for the Allen Cell Types Database and described in Gouwens et
al. 2019, Nat Neurosci 22:1182 (Methods, "Electrophysiology feature analysis"). They are
re-implemented here on our :class:`~ephys.pipelines.sweeps.Sweep` records; the constants below
are IPFX's defaults unless said otherwise. ``benchmarks/compare_ipfx.py`` checks the numbers
against the ``ipfx`` package itself on the shared real recordings.

Spikes are the ones :func:`ephys.pipelines.spike_train.detect_spikes` finds (the STS detector:
IPFX's dV/dt >= 20 mV/ms rule plus our 20 mV minimum amplitude), kept when their threshold lies
inside the step, as IPFX detects only between stimulus start and end. Each spike's threshold is
then refined the IPFX way (the last point before the upstroke where dV/dt <= 5 % of the sweep's
mean upstroke), and its upstroke, downstroke, trough, fast trough, reset type and half-height
width follow IPFX.

Which sweep gives which feature (IPFX ``LongSquareAnalysis`` + ``build_cell_feature_record``):

- **rheobase sweep** (the smallest positive step with a spike: ``choose_sweeps``' rheobase):
  the first spike's ``threshold_v``, ``peak_v``, ``trough_v``, ``fast_trough_v``,
  ``upstroke_downstroke_ratio`` (suffix ``_long_square``), plus ``width_long_square`` and
  ``latency_rheobase`` (ours; the Allen table has neither);
- **hero sweep** (IPFX ``find_hero_sweep``: the smallest spiking step strictly between
  rheobase + 39 pA and rheobase + 61 pA, else the spiking step nearest rheobase + 39 pA):
  ``latency``, ``avg_isi``, ``adaptation``, ``has_burst``, ``has_pause``, ``has_delay``;
- **all spiking sweeps**: ``f_i_curve_slope``;
- **subthreshold sweeps** (no spike in the step): ``sag`` and ``vm_for_sag`` (the
  hyperpolarising one whose peak deflection is nearest -100 mV; IPFX also considers
  depolarising subthreshold sweeps, which only matters for cells without hyperpolarising
  steps: NaN here); ``ri`` and ``tau`` from the hyperpolarising ones with
  ``subthresh_min_amp < amplitude < 0``;
- **all long-square sweeps**: ``vrest``.

A feature that cannot be computed (no hyperpolarising sweep, fewer than two ISIs, a failed fit,
...) is NaN, never a substitute value.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps
from scipy.optimize import curve_fit

from ..blocks.signal.spike_train import Spikes, choose_sweeps, detect_spikes
from ..blocks.readers.sweeps import Sweep

# ------------------------------------------------------------------------------------------------
# constants (IPFX defaults; source named on each)
# ------------------------------------------------------------------------------------------------

#: Shortest step that counts as a long square, s (``choose_sweeps`` default; Allen long squares are 1 s).
MIN_LONG_SQUARE_S = 0.2
#: Threshold refinement: fraction of the mean upstroke dV/dt (IPFX ``thresh_frac`` 0.05).
THRESH_FRAC = 0.05
#: Longest threshold-to-peak interval, s (IPFX ``max_interval`` 0.005).
MAX_INTERVAL_S = 0.005
#: A last spike is "clipped" if V never comes back to V(threshold) + this, mV (IPFX ``tol`` 1.0).
CLIP_TOL_MV = 1.0
#: Fast trough: dV/dt back above this fraction of the downstroke (IPFX ``term_frac`` 0.01).
TERM_FRAC = 0.01
#: Trough details (IPFX ``analyze_trough_details``): heavy filter 1 kHz, ADP dV/dt 0.5 mV/ms,
#: detour tolerance 0.5 mV, flat interval 2 ms, ADP within 5 ms and 10 mV of the fast trough.
HEAVY_FILTER_HZ = 1000.0
ADP_THRESH_MV_PER_MS = 0.5
DETOUR_TOL_MV = 0.5
FLAT_INTERVAL_S = 0.002
ADP_MAX_DT_S = 0.005
ADP_MAX_DV_MV = 10.0
#: Baseline window before the step for V_baseline and tau, s (IPFX ``baseline_interval`` 0.1).
BASELINE_S = 0.1
#: Sag: peak averaged over 5 ms, baseline and steady state over 30 ms (IPFX ``sag`` defaults).
SAG_PEAK_WIDTH_S = 0.005
SAG_BASELINE_S = 0.03
#: Sag is read on the subthreshold sweep whose peak deflection is nearest this, mV (IPFX ``SAG_TARGET``).
SAG_TARGET_MV = -100.0
#: Hero sweep window above rheobase, pA (IPFX ``HERO_MIN_AMP_OFFSET`` / ``HERO_MAX_AMP_OFFSET``).
HERO_MIN_OFFSET_PA = 39.0
HERO_MAX_OFFSET_PA = 61.0
#: Sweeps for R_in and tau: amplitude in (min, 0) pA. IPFX ``SUBTHRESHOLD_LONG_SQUARE_MIN_AMPS``
#: maps the coarse step size to min (20 pA -> -100, 40 pA -> -200); -100 otherwise (IPFX default).
SUBTHRESH_MIN_AMPS = {20.0: -100.0, 40.0: -200.0}
SUBTHRESH_MIN_AMP_DEFAULT = -100.0
#: tau: fit from 10 % of the deflection to the (median) peak time; SNR >= 20; RMSE <= 1 mV (IPFX ``time_constant``).
TAU_FRAC = 0.1
TAU_MIN_SNR = 20.0
TAU_RMSE_MAX_MV = 1.0
#: Burst / pause detection (IPFX ``SpikeTrainFeatureExtractor``: ``burst_tol`` 0.5 mV, ``pause_cost`` 1.0).
BURST_TOL_MV = 0.5
PAUSE_COST = 1.0
#: has_delay: latency / pre-spike rise time constant above this (ours: a passive membrane is at
#: 95 % of its step response after 3 time constants; IPFX returns only the ratio, and the Allen
#: table's ``has_delay`` is False for every cell, so it gives no threshold to copy).
DELAY_RATIO_MIN = 3.0

#: (name, unit, description) of every feature, in table order.
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("threshold_i_long_square", "pA", "rheobase: smallest depolarising step with >= 1 spike in the step"),
    ("f_i_curve_slope", "spikes/s/pA", "least-squares slope of firing rate vs step amplitude over spiking sweeps (IPFX fit_fi_slope)"),
    ("threshold_v_long_square", "mV", "rheobase sweep, first spike: V at the refined threshold"),
    ("peak_v_long_square", "mV", "rheobase sweep, first spike: peak V"),
    ("trough_v_long_square", "mV", "rheobase sweep, first spike: minimum V before the next spike (or step end)"),
    ("fast_trough_v_long_square", "mV", "rheobase sweep, first spike: V where the repolarisation ends (dV/dt back to 1 % of the downstroke)"),
    ("upstroke_downstroke_ratio_long_square", "", "rheobase sweep, first spike: max dV/dt / -min dV/dt"),
    ("width_long_square", "ms", "rheobase sweep, first spike: width at half height (peak to fast trough; IPFX find_widths)"),
    ("latency_rheobase", "s", "rheobase sweep: first spike threshold time minus step onset"),
    ("latency", "s", "hero sweep: first spike threshold time minus step onset (the Allen 'latency')"),
    ("avg_isi", "ms", "hero sweep: mean interspike interval"),
    ("adaptation", "", "hero sweep: IPFX adaptation index, mean of (ISI[k+1]-ISI[k])/(ISI[k+1]+ISI[k])"),
    ("has_burst", "", "hero sweep: 1 if IPFX detect_bursts finds a burst, else 0"),
    ("has_pause", "", "hero sweep: 1 if IPFX detect_pauses finds a pause, else 0"),
    ("has_delay", "", "hero sweep: 1 if latency / pre-spike rise tau (IPFX delay) > 3, else 0"),
    ("ri", "MOhm", "input resistance: slope of peak V vs step current over hyperpolarising subthreshold steps (IPFX input_resistance; the Allen column ri, not its input_resistance_mohm, which is measured otherwise)"),
    ("tau", "ms", "membrane time constant: mean single-exponential fit of hyperpolarising steps (IPFX time_constant)"),
    ("sag", "", "(V_peak - V_steady) / (V_peak - V_baseline) on the sweep nearest -100 mV (IPFX sag)"),
    ("vm_for_sag", "mV", "peak V of the sweep sag was read on"),
    ("vrest", "mV", "mean V over 100 ms before the step, averaged over all long-square sweeps"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f[0] for f in FEATURES)
FEATURE_UNITS: dict[str, str] = {f[0]: f[1] for f in FEATURES}


# ------------------------------------------------------------------------------------------------
# per-sweep analysis
# ------------------------------------------------------------------------------------------------


@dataclass
class SpikeFeatures:
    """IPFX spike features of one sweep (spikes with threshold inside the step only).

    All arrays have shape (n_spikes,). Index arrays are float64 sample indices into the sweep
    (NaN where undefined, e.g. the trough of a clipped last spike); ``*_v`` are mV; ``upstroke``
    and ``downstroke`` are dV/dt in mV/ms (= V/s); ``width_s`` is seconds; ``isi_type`` holds
    ``"direct"``, ``"detour"`` or ``"nan"`` (the reset after each spike, IPFX
    ``analyze_trough_details``); ``clipped`` marks a last spike cut off by the step end.
    """

    threshold_index: np.ndarray
    peak_index: np.ndarray
    upstroke_index: np.ndarray
    downstroke_index: np.ndarray
    trough_index: np.ndarray
    fast_trough_index: np.ndarray
    slow_trough_index: np.ndarray
    threshold_v: np.ndarray
    peak_v: np.ndarray
    trough_v: np.ndarray
    fast_trough_v: np.ndarray
    slow_trough_v: np.ndarray
    upstroke: np.ndarray
    downstroke: np.ndarray
    width_s: np.ndarray
    isi_type: np.ndarray
    clipped: np.ndarray

    def __len__(self) -> int:
        return int(self.threshold_index.size)

    @property
    def upstroke_downstroke_ratio(self) -> np.ndarray:
        return self.upstroke / -self.downstroke


@dataclass
class SweepFeatures:
    """Sweep-level features (IPFX ``basic_spike_train_features`` + the long-square extras).

    stim_amp_pA : step amplitude (pA); start_s, end_s : step window (s);
    avg_rate_hz : spikes with threshold in the step / step duration (spikes/s);
    latency_s : first threshold time - step onset (s, NaN without spikes);
    isis_s : shape (n_spikes - 1,), interspike intervals between thresholds (s);
    mean_isi_s, adapt : mean ISI (s) and IPFX adaptation index (NaN with < 2 ISIs);
    v_baseline_mV : mean V over ``BASELINE_S`` before the step;
    peak_deflect_mV, peak_deflect_index : IPFX ``voltage_deflection`` (min for a negative step, max otherwise);
    sag : IPFX ``sag`` (computed for every sweep, meaningful on hyperpolarising ones);
    spikes : :class:`SpikeFeatures`.
    """

    sweep_index: int
    stim_amp_pA: float
    start_s: float
    end_s: float
    avg_rate_hz: float
    latency_s: float
    isis_s: np.ndarray
    mean_isi_s: float
    adapt: float
    v_baseline_mV: float
    peak_deflect_mV: float
    peak_deflect_index: int
    sag: float
    spikes: SpikeFeatures


def dvdt_mV_per_ms(v_mV: np.ndarray, fs_hz: float, filter_hz: float | None = 10_000.0) -> np.ndarray:
    """dV/dt in mV/ms (= V/s), shape (n - 1,): forward differences after an optional zero-phase
    4-pole Bessel low-pass (IPFX ``calculate_dvdt``). The filter is skipped when its cut-off is
    not below Nyquist (IPFX would raise; e.g. 10 kHz data), as our detector does."""
    v = np.asarray(v_mV, dtype=np.float64)
    if filter_hz and filter_hz < 0.5 * fs_hz:
        b, a = sps.bessel(4, filter_hz, btype="low", fs=fs_hz)
        v = sps.filtfilt(b, a, v)
    return np.diff(v) * (fs_hz / 1000.0)


def _index(t_s: float, fs_hz: float, n: int) -> int:
    """Sample index nearest time ``t_s`` (IPFX ``find_time_index``), clipped into the sweep."""
    return int(min(max(int(round(t_s * fs_hz)), 0), n - 1))


def _mean_v(v: np.ndarray, fs_hz: float, start_s: float, end_s: float) -> float:
    """Mean V in [start, end) (IPFX ``average_voltage``), the window clipped to the sweep."""
    i0, i1 = _index(start_s, fs_hz, v.size), _index(end_s, fs_hz, v.size)
    return float(np.mean(v[i0:i1])) if i1 > i0 else float("nan")


def spike_features(sweep: Sweep, spikes: Spikes | None = None) -> SpikeFeatures:
    """Per-spike IPFX features of a sweep's spikes inside its step.

    Parameters
    ----------
    sweep : Sweep with a finite step window (``stim_start_s``, ``stim_end_s``).
    spikes : detections of :func:`~ephys.pipelines.spike_train.detect_spikes` on this sweep
        (computed when None).

    Returns
    -------
    SpikeFeatures (empty arrays when no spike has its threshold inside the step).

    Source: IPFX ``SpikeFeatureExtractor.process`` (``find_upstroke_indexes``,
    ``refine_threshold_indexes``, ``check_thresholds_and_peaks``, ``find_trough_indexes``,
    ``find_downstroke_indexes``, ``analyze_trough_details``, ``find_widths``), re-implemented.
    """
    v = np.asarray(sweep.v_mV, dtype=np.float64)
    fs = float(sweep.fs_hz)
    n = v.size
    if spikes is None:
        spikes = detect_spikes(v, fs)
    dvdt = dvdt_mV_per_ms(v, fs)
    start_i = _index(sweep.stim_start_s, fs, n)
    end_i = _index(sweep.stim_end_s, fs, n)
    thr = spikes.threshold_index.astype(np.int64)
    peak = spikes.peak_index.astype(np.int64)
    keep = (thr >= start_i) & (thr <= end_i)
    thr, peak = thr[keep], peak[keep]
    if thr.size == 0:
        return _empty_spike_features()

    up = np.array([s + int(np.argmax(dvdt[s:max(p, s + 1)])) for s, p in zip(thr, peak)], dtype=np.int64)
    target = THRESH_FRAC * float(np.mean(dvdt[up]))
    thr = _refine_thresholds(dvdt, up, target)
    # threshold-to-peak must stay under MAX_INTERVAL_S; else re-search the threshold from the peak
    max_n = int(round(MAX_INTERVAL_S * fs))
    ok = np.ones(thr.size, dtype=bool)
    for k in range(thr.size):
        if peak[k] - thr[k] >= max_n:
            lo = max(peak[k] - max_n, 0)
            seg = dvdt[up[k]:lo:-1] if up[k] > lo else np.zeros(0)
            hits = np.flatnonzero(seg <= target)
            if hits.size:
                thr[k] = up[k] - hits[0]
            else:
                ok[k] = False
    thr, peak, up = thr[ok], peak[ok], up[ok]
    if thr.size == 0:
        return _empty_spike_features()

    m = thr.size
    clipped = np.zeros(m, dtype=bool)
    tail = v[peak[-1]:end_i + 1]
    if tail.size == 0 or not np.any(tail <= v[thr[-1]] + CLIP_TOL_MV):
        clipped[-1] = True

    trough = np.full(m, np.nan)
    for k in range(m - 1):
        trough[k] = peak[k] + int(np.argmin(v[peak[k]:max(thr[k + 1], peak[k] + 1)]))
    if not clipped[-1] and end_i > peak[-1]:
        trough[-1] = peak[-1] + int(np.argmin(v[peak[-1]:end_i]))
    elif not clipped[-1]:
        clipped[-1] = True

    down = np.full(m, np.nan)
    for k in range(m):
        if not clipped[k] and np.isfinite(trough[k]) and trough[k] > peak[k]:
            down[k] = peak[k] + int(np.argmin(dvdt[peak[k]:int(trough[k])]))

    isi_type, fast, slow, clipped = _trough_details(v, fs, dvdt, thr, peak, clipped, end_i)
    width = _widths(v, fs, thr, peak, fast, clipped)

    def at(idx):
        out = np.full(idx.shape, np.nan)
        good = np.isfinite(idx)
        out[good] = v[idx[good].astype(np.int64)]
        return out

    def slope_at(idx):
        out = np.full(idx.shape, np.nan)
        good = np.isfinite(idx)
        out[good] = dvdt[idx[good].astype(np.int64)]
        return out

    thr_f, peak_f, up_f = thr.astype(float), peak.astype(float), up.astype(float)
    return SpikeFeatures(
        threshold_index=thr_f, peak_index=peak_f, upstroke_index=up_f, downstroke_index=down,
        trough_index=trough, fast_trough_index=fast, slow_trough_index=slow,
        threshold_v=at(thr_f), peak_v=at(peak_f), trough_v=at(trough), fast_trough_v=at(fast),
        slow_trough_v=at(slow), upstroke=slope_at(up_f), downstroke=slope_at(down), width_s=width,
        isi_type=isi_type, clipped=clipped)


def _empty_spike_features() -> SpikeFeatures:
    z = np.zeros(0)
    return SpikeFeatures(*(z,) * 15, np.zeros(0, dtype="<U6"), np.zeros(0, dtype=bool))


def _refine_thresholds(dvdt: np.ndarray, up: np.ndarray, target: float) -> np.ndarray:
    """IPFX ``refine_threshold_indexes``: from each upstroke, walk back (not past the previous
    upstroke) to the first dV/dt <= target."""
    out = np.empty(up.size, dtype=np.int64)
    prev = 0
    for k, u in enumerate(up):
        seg = dvdt[u:prev:-1] if u > prev else np.zeros(0)
        hits = np.flatnonzero(seg <= target)
        out[k] = u - hits[0] if hits.size else prev
        prev = u
    return out


def _trough_details(v, fs, dvdt, thr, peak, clipped, end_i):
    """IPFX ``analyze_trough_details``: fast trough (end of repolarisation), reset type after each
    spike (direct / detour, with or without an after-depolarisation) and slow trough."""
    m = thr.size
    isi_type = np.array(["nan"] * m, dtype="<U6")
    fast = np.full(m, np.nan)
    slow = np.full(m, np.nan)
    clipped = clipped.copy()
    b, a = sps.bessel(4, HEAVY_FILTER_HZ, btype="low", fs=fs)
    dvdt_hvy = np.diff(sps.filtfilt(b, a, v)) * (fs / 1000.0) if v.size > 15 else dvdt
    valid = np.flatnonzero(~clipped)
    nexts = np.append(thr[valid][1:], end_i)
    flat_n, adp_dt_n = FLAT_INTERVAL_S * fs, ADP_MAX_DT_S * fs
    for k, nxt in zip(valid, nexts):
        p = int(peak[k])
        if nxt <= p:
            clipped[k] = True
            continue
        ds = p + int(np.argmin(dvdt[p:nxt]))
        term = np.flatnonzero(dvdt[ds:nxt] >= TERM_FRAC * dvdt[ds])
        if not term.size:
            clipped[k] = True
            continue
        te = ds + int(term[0])
        kind, slow_i = None, None
        over = np.flatnonzero(dvdt_hvy[te:nxt] >= ADP_THRESH_MV_PER_MS)
        if over.size and over[0] < flat_n:
            cross = te + int(over[0])
            back = np.flatnonzero(dvdt_hvy[cross:nxt] <= 0)
            if back.size:
                adp = cross + int(back[0])
                mi = adp + int(np.argmin(v[adp:nxt])) if nxt > adp else adp
                if (v[adp] - v[mi] >= DETOUR_TOL_MV and v[adp] - v[te] <= ADP_MAX_DV_MV
                        and adp - te <= adp_dt_n):
                    kind, slow_i = "detour", mi
        if kind is None:
            mi = te + int(np.argmin(v[te:nxt])) if nxt > te else te
            if v[te] - v[mi] >= DETOUR_TOL_MV:
                kind, slow_i = "detour", mi
            else:
                kind = "direct"
        isi_type[k] = kind
        fast[k] = te
        if kind == "detour":
            slow[k] = slow_i
    if m:
        slow[-1] = np.nan  # IPFX: the last spike's slow trough is unreliable
    return isi_type, fast, slow, clipped


def _widths(v, fs, thr, peak, fast, clipped) -> np.ndarray:
    """IPFX ``find_widths``: full width at half height between peak and fast trough (half of
    threshold-to-peak when that level lies below threshold), seconds; NaN when undefined."""
    out = np.full(thr.size, np.nan)
    for k in range(thr.size):
        if clipped[k] or not np.isfinite(fast[k]):
            continue
        p, s, tr = int(peak[k]), int(thr[k]), int(fast[k])
        level = (v[p] + v[tr]) / 2.0
        if level < v[s]:
            level = (v[p] + v[s]) / 2.0
        back = np.flatnonzero(v[p:s:-1] <= level) if p > s else np.zeros(0)
        fwd = np.flatnonzero(v[p:tr] <= level) if tr > p else np.zeros(0)
        if back.size and fwd.size:
            out[k] = ((p + fwd[0]) - (p - back[0])) / fs
    return out


def sweep_features(sweep: Sweep, sweep_index: int = 0, spikes: Spikes | None = None) -> SweepFeatures:
    """Sweep-level IPFX features of one long-square sweep (see :class:`SweepFeatures`).

    Source: IPFX ``basic_spike_train_features``, ``voltage_deflection``, ``baseline_voltage``
    and ``sag`` (``SpikeTrainFeatureExtractor.process`` with the long-square extras).
    """
    fs, v = float(sweep.fs_hz), np.asarray(sweep.v_mV, dtype=np.float64)
    start, end = float(sweep.stim_start_s), float(sweep.stim_end_s)
    sp = spike_features(sweep, spikes)
    t_thr = sp.threshold_index / fs
    n_in = int(np.sum((t_thr >= start) & (t_thr <= end)))
    isis = np.diff(t_thr)
    nan = float("nan")
    # peak deflection: min for a negative step, max otherwise (IPFX deflect_type None, by the
    # current half-way through the step)
    i0, i1 = _index(start, fs, v.size), _index(end, fs, v.size)
    mid = _index(start + (end - start) / 2.0, fs, v.size)
    i_mid = float(np.asarray(sweep.i_pA)[mid]) if np.asarray(sweep.i_pA).size > mid else sweep.stim_amp_pA
    win = v[i0:i1] if i1 > i0 else v[i0:i0 + 1]
    k = int(np.argmax(win)) if i_mid >= 0 else int(np.argmin(win))
    return SweepFeatures(
        sweep_index=sweep_index, stim_amp_pA=float(sweep.stim_amp_pA), start_s=start, end_s=end,
        avg_rate_hz=n_in / (end - start), latency_s=float(t_thr[0] - start) if len(sp) else nan,
        isis_s=isis, mean_isi_s=float(isis.mean()) if isis.size else nan, adapt=adaptation_index(isis),
        v_baseline_mV=_mean_v(v, fs, start - BASELINE_S, start),
        peak_deflect_mV=float(win[k]), peak_deflect_index=i0 + k,
        sag=sag_ratio(sweep), spikes=sp)


def adaptation_index(isis_s: np.ndarray) -> float:
    """IPFX ``adaptation_index`` / ``norm_diff``: mean of (ISI[k+1] - ISI[k]) / (ISI[k+1] + ISI[k]).

    ``isis_s``: shape (n,), any time unit. Dimensionless; NaN with fewer than two ISIs.
    """
    a = np.asarray(isis_s, dtype=np.float64)
    if a.size <= 1:
        return float("nan")
    s = a[1:] + a[:-1]
    if np.allclose(s, 0.0):
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (a[1:] - a[:-1]) / s
    d[(a[1:] == 0) & (a[:-1] == 0)] = 0.0
    return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")


def sag_ratio(sweep: Sweep) -> float:
    """IPFX ``sag``: (V_peak - V_steady) / (V_peak - V_baseline), dimensionless.

    V_peak: mean over 5 ms around the minimum V in the step; V_steady: mean over the last 30 ms
    of the step; V_baseline: mean over 30 ms before the step (IPFX ``sag_baseline_interval``).
    0 for a passive membrane, > 0 when the membrane relaxes back (I_h). NaN if undefined.
    """
    v_peak, v_base, v_steady = _sag_levels(sweep)
    den = v_peak - v_base
    return float((v_peak - v_steady) / den) if den != 0 and np.isfinite(den) else float("nan")


def sag_peak_mV(sweep: Sweep) -> float:
    """The V_peak :func:`sag_ratio` reads (mean over 5 ms around the step's minimum V), mV: the
    ``vm_for_sag`` of the sweep sag was measured on. NaN if undefined."""
    return _sag_levels(sweep)[0]


def _sag_levels(sweep: Sweep) -> tuple[float, float, float]:
    """(V_peak, V_baseline, V_steady) of :func:`sag_ratio`, mV (NaN when the step is empty)."""
    fs, v = float(sweep.fs_hz), np.asarray(sweep.v_mV, dtype=np.float64)
    start, end = float(sweep.stim_start_s), float(sweep.stim_end_s)
    i0, i1 = _index(start, fs, v.size), _index(end, fs, v.size)
    if i1 <= i0:
        return float("nan"), float("nan"), float("nan")
    p = i0 + int(np.argmin(v[i0:i1]))
    v_peak = _mean_v(v, fs, p / fs - SAG_PEAK_WIDTH_S / 2, p / fs + SAG_PEAK_WIDTH_S / 2)
    return v_peak, _mean_v(v, fs, start - SAG_BASELINE_S, start), _mean_v(v, fs, end - SAG_BASELINE_S, end)


def time_constant_s(sweep: Sweep, max_fit_end_s: float | None = None) -> float:
    """Membrane time constant of a hyperpolarising step, seconds (IPFX ``time_constant``).

    Fit ``V(t) = y0 + a exp(-t / tau)`` from the first point after onset where V has covered
    10 % of the deflection to the minimum V (or ``max_fit_end_s`` if earlier). NaN when the
    deflection / baseline-SD ratio is below 20, the fit fails, or its RMSE exceeds 1 mV.
    """
    fs, v = float(sweep.fs_hz), np.asarray(sweep.v_mV, dtype=np.float64)
    start, end = float(sweep.stim_start_s), float(sweep.stim_end_s)
    i0, i1 = _index(start, fs, v.size), _index(end, fs, v.size)
    if i1 <= i0 + 2:
        return float("nan")
    p = i0 + int(np.argmin(v[i0:i1]))
    if max_fit_end_s is not None:
        p = min(p, _index(max_fit_end_s, fs, v.size))
    v_peak = v[p]
    v_base = _mean_v(v, fs, start - BASELINE_S, start)
    b0 = _index(start - BASELINE_S, fs, v.size)
    noise = float(np.std(v[b0:i0])) if i0 > b0 else 0.0
    signal = abs(v_base - v_peak)
    if not np.isfinite(signal) or (noise > 0 and signal / noise < TAU_MIN_SNR):
        return float("nan")
    hits = np.flatnonzero(v[i0:] <= TAU_FRAC * (v_peak - v_base) + v_base)
    if not hits.size:
        return float("nan")
    f0 = i0 + int(hits[0])
    if p - f0 < 4:
        return float("nan")
    t = (np.arange(f0, p) - f0) / fs
    y = v[f0:p]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            popt, _ = curve_fit(_exp_curve, t, y, p0=(v[f0] - v[p], 50.0, v[p]), maxfev=5000)
        except (RuntimeError, ValueError):
            return float("nan")
    rmse = float(np.sqrt(np.mean((_exp_curve(t, *popt) - y) ** 2)))
    if rmse > TAU_RMSE_MAX_MV or not popt[1] > 0:
        return float("nan")
    return float(1.0 / popt[1])


def _exp_curve(x, a, inv_tau, y0):
    return y0 + a * np.exp(-inv_tau * x)


def input_resistance_mohm(sweeps: list[Sweep]) -> float:
    """IPFX ``input_resistance``: least-squares slope of the minimum V in the step against the
    step current, over hyperpolarising subthreshold sweeps, in MOhm (mV / pA x 1000). With one
    sweep its pre-step baseline (at 0 pA step current) is the second point. NaN without sweeps.

    IPFX takes the current at the sample of the minimum; we take the sweep's step amplitude
    (``stim_amp_pA``, the median step current minus the holding current), which is the same on
    a clean command waveform and not thrown off by one noisy sample of a recorded current.
    """
    vs, cs = [], []
    for sw in sweeps:
        fs, v = float(sw.fs_hz), np.asarray(sw.v_mV, dtype=np.float64)
        i0, i1 = _index(sw.stim_start_s, fs, v.size), _index(sw.stim_end_s, fs, v.size)
        if i1 <= i0:
            continue
        k = i0 + int(np.argmin(v[i0:i1]))
        vs.append(v[k])
        cs.append(float(sw.stim_amp_pA))
    if not vs:
        return float("nan")
    if len(vs) == 1:
        sw = sweeps[0]
        vs.append(_mean_v(np.asarray(sw.v_mV, dtype=np.float64), float(sw.fs_hz), sw.stim_start_s - BASELINE_S, sw.stim_start_s))
        cs.append(0.0)
    cs_a, vs_a = np.asarray(cs), np.asarray(vs)
    if np.ptp(cs_a) == 0:
        return float("nan")
    slope = np.linalg.lstsq(np.vstack([cs_a, np.ones_like(cs_a)]).T, vs_a, rcond=None)[0][0]
    return float(slope * 1e3)


def fi_slope(amps_pA: np.ndarray, rates_hz: np.ndarray) -> float:
    """IPFX ``fit_fi_slope``: least-squares slope of firing rate (spikes/s) vs step amplitude (pA),
    spikes/s per pA; NaN with fewer than two sweeps (IPFX raises)."""
    x, y = np.asarray(amps_pA, dtype=np.float64), np.asarray(rates_hz, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.linalg.lstsq(np.vstack([x, np.ones_like(x)]).T, y, rcond=None)[0][0])


# ------------------------------------------------------------------------------------------------
# bursts, pauses, delay (IPFX spike_train_features, re-implemented)
# ------------------------------------------------------------------------------------------------


def detect_pauses(isis: np.ndarray, isi_types: np.ndarray, cost_weight: float = PAUSE_COST) -> np.ndarray:
    """Indices of ISIs that are pauses: unusually long ISIs (a "detour" reset, or a "direct" one
    longer than 3x the median direct ISI) whose removal lowers the ISI CV by more than a cost.
    Source: IPFX ``spike_train_features.detect_pauses``. Returns int64 indices, sorted."""
    isis = np.asarray(isis, dtype=np.float64)
    isi_types = np.asarray(isi_types)
    if isis.size == 0 or not np.any(isi_types == "direct"):
        return np.zeros(0, dtype=np.int64)
    median_direct = np.median(isis[isi_types == "direct"])
    cands = [i for i, k in enumerate(isi_types) if k == "detour"]
    cands += [i for i, k in enumerate(isi_types) if k == "direct" and isis[i] > 3 * median_direct]
    if not cands:
        return np.zeros(0, dtype=np.int64)
    pauses = np.zeros(0, dtype=np.int64)
    all_cv = isis.std() / isis.mean()
    best = 0.0
    for i in cands:
        trial = np.append(pauses, i)
        rest = np.delete(isis, trial)
        if rest.size < 2:
            break
        cv = rest.std() / rest.mean()
        with np.errstate(divide="ignore"):
            cost = cost_weight * np.sum(rest.std() / np.abs(rest.mean() - isis[trial]))
        net = (all_cv - cv) - cost
        if 0 < net < best:
            break
        best = max(best, net)
        pauses = trial
    return np.sort(pauses) if best > 0 else np.zeros(0, dtype=np.int64)


def detect_bursts(isis, isi_types, fast_tr_v, fast_tr_t, slow_tr_v, slow_tr_t, thr_v,
                  tol: float = BURST_TOL_MV, pause_cost: float = PAUSE_COST) -> list[tuple[float, int, int]]:
    """Bursts in a spike train as ``[(burstiness_index, first_isi, isi_after), ...]``.

    A burst is a run of "direct"-reset ISIs entered from and left through "detour" resets, kept
    when it scores better than the rest of the train (IPFX ``spike_train_features.detect_bursts``
    and its scoring constants c_n 0.1, c_tx 0.01). Inputs: ``isis`` (n,), ``isi_types`` (n,),
    and per-spike (n + 1,) fast/slow trough V (mV) and t (s) and threshold V (mV).
    """
    isis = np.asarray(isis, dtype=np.float64)
    if isis.size < 2:
        return []
    types = np.array(isi_types, dtype="<U9")
    fast_tr_v, fast_tr_t = np.asarray(fast_tr_v)[:-1], np.asarray(fast_tr_t)[:-1]
    slow_tr_v, slow_tr_t = np.asarray(slow_tr_v)[:-1], np.asarray(slow_tr_t)[:-1]
    thr_v = np.asarray(thr_v)
    types[detect_pauses(isis, types, pause_cost)] = "pauselike"
    if not (np.any(types == "direct") and np.any(types == "detour")):
        return []
    with np.errstate(invalid="ignore"):
        types[(thr_v[:-1] < (slow_tr_v + tol)) & (types == "detour")] = "midburst"
    into = [i + 1 for i, (prev, cur) in enumerate(zip(types[:-1], types[1:])) if cur == "direct" and prev == "detour"]
    if types[0] == "direct":
        into = [0] + into
    into = np.asarray(into, dtype=np.int64)
    drop, out_of = [], []
    for j, (a, nxt) in enumerate(zip(into, np.append(into[1:], len(isis)))):
        for i, kind in enumerate(types[a + 1:nxt]):
            if kind == "detour":
                out_of.append(i + a + 1)
                break
            if kind == "pauselike":
                drop.append(j)
                break
    mask = np.ones(into.size, dtype=bool)
    mask[drop] = False
    into = into[mask]
    out_of = np.asarray(out_of, dtype=np.int64)
    if out_of.size == into.size - 1:
        out_of = np.append(out_of, len(types))
    if not (into.size or out_of.size) or into.size != out_of.size:
        return []
    pairs = list(zip(into.tolist(), out_of.tolist()))
    delta_t = slow_tr_t - fast_tr_t

    def score(bursts):
        in_burst = np.zeros(isis.size, dtype=bool)
        for b0, b1 in bursts:
            in_burst[b0:b1] = True
        if not np.any(~in_burst):
            return [-1e12] * len(bursts)
        frac = delta_t / isis
        out = []
        for b0, b1 in bursts:
            s = _burstiness(isis[b0:b1], isis[~in_burst])
            if b1 < len(delta_t):
                s -= 0.01 * (1.0 / frac[b1])
            if b0 > 0:
                s -= 0.01 * (1.0 / frac[b0 - 1])
            s -= 0.1 * (b1 - b0 - 1)
            out.append(s)
        return out

    with np.errstate(invalid="ignore", divide="ignore"):
        scores = score(pairs)
        best = np.mean(scores)
        test = list(pairs)
        del test[int(np.argmin(scores))]
        while test:
            scores = score(test)
            if np.mean(scores) > best:
                best = np.mean(scores)
                pairs = list(test)
                del test[int(np.argmin(scores))]
            else:
                break
        if not best >= 0:
            return []
        result = []
        for i, (a, b) in enumerate(pairs):
            if i == len(pairs) - 1:
                if b <= len(isis) - 1:
                    metric = _burstiness(isis[a:b], isis[b:])
                elif i == 0:
                    metric = _burstiness(isis[a:b], isis[:a])
                else:
                    metric = _burstiness(isis[a:b], isis[pairs[i - 1][1]:a])
            else:
                metric = _burstiness(isis[a:b], isis[b:pairs[i + 1][0]])
            result.append((float(metric), int(a), int(b)))
    return result


def _burstiness(in_isis, out_isis) -> float:
    if len(in_isis) == 0 or len(out_isis) == 0:
        return float("nan")
    r_in, r_out = 1.0 / np.min(in_isis), 1.0 / np.min(out_isis)
    return float((r_in - r_out) / (r_in + r_out))


def prespike_time_constant_s(sweep: Sweep, spike_t_s: float) -> float:
    """Dominant time constant of the voltage rise from step onset to the first spike, seconds.

    Single-exponential log-linear fit, then a double exponential with the same asymptote;
    the dominant component is chosen with IPFX's empirical rules (``fit_prespike_time_constant``:
    ``dv_limit`` -0.001, ``tau_limit`` 0.3 s). NaN if the window is empty or the fits fail.
    """
    fs, v = float(sweep.fs_hz), np.asarray(sweep.v_mV, dtype=np.float64)
    i0 = _index(sweep.stim_start_s, fs, v.size)
    i1 = _index(spike_t_s, fs, v.size)
    if i1 - i0 < 5:
        return float("nan")
    vs = v[i0:i1]
    ts = np.arange(vs.size) / fs
    y0 = vs.max() + 5e-6
    y = np.log(-vs + y0)
    b, a = sps.bessel(4, 1000.0, btype="low", fs=fs)
    try:
        dy = np.diff(sps.filtfilt(b, a, y)) * (fs / 1000.0) if y.size > 15 else np.diff(y) * (fs / 1000.0)
    except ValueError:
        dy = np.diff(y) * (fs / 1000.0)
    ends = np.flatnonzero(dy <= -0.001)
    stop = vs.size if (not ends.size or ts[ends[0]] < 0.0005) else int(ends[0])
    if stop < 3:
        return float("nan")
    K, A_log = np.polyfit(ts[:stop], y[:stop], 1)
    if K == 0:
        return float("nan")
    A = math.exp(A_log)

    def dbl(x, a1, t1, a2, t2):
        pen = 1e6 if (t1 < 0 or t2 < 0) else 0.0
        return y0 + a1 * np.exp(-x / t1) + a2 * np.exp(-x / t2) + pen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            popt, _ = curve_fit(dbl, ts, vs, p0=(-A / 2.0, -1.0 / K, -A / 2.0, -1.0 / K), maxfev=5000)
        except (RuntimeError, ValueError):
            return float(-1.0 / K)
    if popt[1] < popt[3]:
        fw, ft, sw_, st = popt
    else:
        sw_, st, fw, ft = popt
    if abs(fw) > abs(sw_):
        return float(ft)
    if (st - ft) / st <= 0.1:
        return float(st)
    if st > 0.3 and sw_ / fw < 2.0:
        return float(ft)
    return float(st)


#: a hyperpolarising test pulse inside a sweep (before its main step) must last this long, s
TEST_PULSE_MIN_S = 0.03
#: ... and step at least this far below the holding current, pA
TEST_PULSE_MIN_PA = 5.0


def test_pulse_sweep(sweep: Sweep) -> Sweep | None:
    """The hyperpolarising test pulse that sits before the main step inside a sweep, as a sweep
    of its own (same samples; ``stim_*`` = the pulse), or None when there is none.

    Many F–I protocols (e.g. the pyABF F–I example files) put one short negative current step at
    the start of every sweep, then the varying depolarising step; no long-square sweep is
    hyperpolarising, so ``ri``, ``tau`` and ``sag`` would be NaN. The pulse is the longest run of
    samples at least :data:`TEST_PULSE_MIN_PA` below the holding current (the median current
    outside the main step, before and after it), ending before the main step, at least :data:`TEST_PULSE_MIN_S` long.
    """
    i = np.asarray(sweep.i_pA, dtype=np.float64)
    fs = float(sweep.fs_hz)
    if i.size == 0 or not np.isfinite(sweep.stim_start_s):
        return None
    s0 = _index(sweep.stim_start_s, fs, i.size)
    if s0 < 4:
        return None
    before = i[:s0]
    e0 = _index(sweep.stim_end_s, fs, i.size) if np.isfinite(sweep.stim_end_s) else i.size
    hold = float(np.median(np.concatenate([before, i[e0:]])))  # the holding current, outside the main step
    low = before < hold - TEST_PULSE_MIN_PA
    if not low.any():
        return None
    edges = np.diff(np.concatenate([[0], low.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))
    a, b = int(starts[k]), int(ends[k])
    if (b - a) / fs < TEST_PULSE_MIN_S or b >= s0:
        return None
    amp = float(np.median(i[a:b]) - hold)
    return Sweep(f"{sweep.sweep_id}:test-pulse", sweep.v_mV, sweep.i_pA, fs, stim_amp_pA=amp,
                 stim_start_s=a / fs, stim_end_s=b / fs, t0_s=sweep.t0_s,
                 meta={**sweep.meta, "test_pulse": True})


def _from_test_pulses(ls: list[Sweep], feats: list["SweepFeatures"]) -> tuple[dict[str, float], dict]:
    """ri (MOhm), tau (ms), sag and vm_for_sag (mV) from the hyperpolarising test pulses inside the long-square
    sweeps: the median over sweeps of each (one amplitude per protocol, so R_in per sweep is
    the deflection at the pulse's minimum over the pulse amplitude, IPFX's one-sweep rule)."""
    pulses = [p for p in (test_pulse_sweep(sw) for sw in ls) if p is not None]
    if not pulses:
        return {}, {}
    ri = [input_resistance_mohm([p]) for p in pulses]
    taus = [time_constant_s(p) for p in pulses]
    sags = [sag_ratio(p) for p in pulses]
    med = lambda xs: float(np.nanmedian(xs)) if np.isfinite(xs).any() else float("nan")  # noqa: E731
    out = {"ri": med(ri), "tau": med(taus) * 1e3, "sag": med(sags)}
    # the level sag was read at, from the same pulses (a sag without its vm_for_sag cannot be compared)
    vms = [sag_peak_mV(p) for p, g in zip(pulses, sags) if np.isfinite(g)]
    out["vm_for_sag"] = med(vms) if vms else float("nan")
    info = {"ri_tau_source": f"hyperpolarising test pulse inside {len(pulses)} sweeps "
                             f"({np.median([p.stim_amp_pA for p in pulses]):.0f} pA, "
                             f"{np.median([p.stim_end_s - p.stim_start_s for p in pulses]) * 1e3:.0f} ms)"}
    return out, info


#: plausibility bounds, deliberately wide: values outside them are almost always a recording
#: problem (a voltage offset, a bridge or junction-potential error, a mislabelled channel), not
#: biology. Mammalian cortical neurons rest between about -90 and -55 mV and fire from thresholds
#: of about -55 to -25 mV with overshooting peaks (NeuroElectro database, Tripathy et al. 2015,
#: J Neurophysiol 113:3474; Allen Cell Types Database, Gouwens et al. 2019, Nat Neurosci 22:1182).
PLAUSIBLE = {
    "vrest": (-100.0, -40.0, "resting potential"),
    "threshold_v_long_square": (-75.0, -10.0, "AP threshold"),
    "peak_v_long_square": (-10.0, 75.0, "AP peak"),
}


def plausibility_flags(values: dict[str, float]) -> list[str]:
    """One message per feature outside its :data:`PLAUSIBLE` range (NaN is not flagged), e.g.
    ``"resting potential -0.9 mV outside [-100, -40] mV (a voltage offset?)"``."""
    out = []
    for name, (lo, hi, what) in PLAUSIBLE.items():
        v = values.get(name, float("nan"))
        if np.isfinite(v) and not lo <= v <= hi:
            out.append(f"{what} {v:.1f} mV outside [{lo:g}, {hi:g}] mV (a voltage offset or mis-scaled recording?)")
    return out


#: why a feature is NaN, by the group it belongs to (the first reason that applies is given)
_SUPRA = ("threshold_i_long_square", "threshold_v_long_square", "peak_v_long_square", "trough_v_long_square",
          "fast_trough_v_long_square", "upstroke_downstroke_ratio_long_square", "width_long_square",
          "latency_rheobase", "f_i_curve_slope")
_HERO = ("latency", "avg_isi", "adaptation", "has_burst", "has_pause", "has_delay")


def nan_reasons(values: dict[str, float], info: dict) -> dict[str, str]:
    """``{feature: reason}`` for every NaN feature of a cell (shown in the manifest's provenance)."""
    out = {}
    for name, v in values.items():
        if np.isfinite(v):
            continue
        if name in _SUPRA or name in _HERO:
            if not info.get("n_spiking_sweeps"):
                out[name] = "no long-square sweep evoked a spike (rheobase not reached)"
            elif name in _HERO and "hero_sweep" not in info:
                out[name] = "no hero sweep (rheobase + 40-60 pA)"
            elif name in ("adaptation", "avg_isi", "has_burst", "has_pause"):
                out[name] = "too few spikes on the hero sweep"
            else:
                out[name] = "not measurable on the rheobase / hero sweep (e.g. clipped or truncated spike)"
        elif name in ("ri", "tau", "sag", "vm_for_sag"):
            if "ri_tau_sweeps" not in info and "ri_tau_source" not in info and name != "sag" and name != "vm_for_sag":
                out[name] = "no hyperpolarising subthreshold step (no negative long-square sweep, no test pulse inside the sweeps)"
            elif name in ("sag", "vm_for_sag") and "sag_sweep" not in info and "ri_tau_source" not in info:
                out[name] = "no hyperpolarising subthreshold step"
            elif name == "tau":
                out[name] = "exponential fit rejected (deflection SNR < 20, RMSE > 1 mV, or no fit)"
            else:
                out[name] = "not computable from the hyperpolarising step"
        elif name == "vrest":
            out[name] = "no baseline before any step"
        else:
            out[name] = "not computable from this cell's sweeps"
    return out


# ------------------------------------------------------------------------------------------------
# cell level
# ------------------------------------------------------------------------------------------------


@dataclass
class CellFeatures:
    """EP features of one cell: ``values`` (name -> float, NaN where not computable, units in
    :data:`FEATURE_UNITS`) and ``info`` (which sweeps were used, amplitudes, notes)."""

    values: dict[str, float]
    info: dict = field(default_factory=dict)

    def vector(self) -> np.ndarray:
        """float64, shape (len(FEATURE_NAMES),), in :data:`FEATURE_NAMES` order."""
        return np.array([self.values.get(k, np.nan) for k in FEATURE_NAMES], dtype=np.float64)


def long_square_sweeps(sweeps: list[Sweep], min_step_s: float = MIN_LONG_SQUARE_S) -> list[int]:
    """Indices of the long-square sweeps: a finite step amplitude (0 pA allowed) and a step
    window of at least ``min_step_s`` seconds (default 0.2 s, as ``choose_sweeps``)."""
    out = []
    for k, sw in enumerate(sweeps):
        if (np.isfinite(sw.stim_amp_pA) and np.isfinite(sw.stim_start_s) and np.isfinite(sw.stim_end_s)
                and sw.stim_end_s - sw.stim_start_s >= min_step_s and sw.meta.get("stimulus") != "missing"):
            out.append(k)
    return out


def subthreshold_min_amp(amps_pA) -> float:
    """IPFX ``select_subthreshold_min_amplitude``: the smallest positive step between the
    (rounded) amplitudes picks the lower bound of the R_in / tau sweeps (20 pA -> -100 pA,
    40 pA -> -200 pA); any other protocol gets IPFX's default -100 pA."""
    a = np.sort(np.round(np.asarray(amps_pA, dtype=np.float64)))
    d = np.diff(a)
    d = d[d > 0]
    if d.size == 0:
        return SUBTHRESH_MIN_AMP_DEFAULT
    return SUBTHRESH_MIN_AMPS.get(float(d.min()), SUBTHRESH_MIN_AMP_DEFAULT)


def find_hero(rheobase_pA: float, amps: np.ndarray) -> int | None:
    """Position in ``amps`` (amplitudes of the spiking sweeps, pA) of the hero sweep: the
    smallest amplitude strictly inside (rheobase + 39, rheobase + 61) pA, else the one nearest
    rheobase + 39 pA (IPFX ``LongSquareAnalysis.find_hero_sweep``)."""
    if amps.size == 0:
        return None
    lo, hi = rheobase_pA + HERO_MIN_OFFSET_PA, rheobase_pA + HERO_MAX_OFFSET_PA
    order = np.argsort(amps, kind="stable")
    inside = [k for k in order if lo < amps[k] < hi]
    if inside:
        return int(inside[0])
    return int(order[int(np.argmin(np.abs(lo - amps[order])))])


def cell_features(sweeps: list[Sweep], subthresh_min_amp_pA: float | None = None) -> CellFeatures:
    """All EP features (:data:`FEATURES`) of one cell from its sweeps.

    Parameters
    ----------
    sweeps : every current-clamp sweep of the cell (``read_cell``); only long-square sweeps
        (:func:`long_square_sweeps`) are used.
    subthresh_min_amp_pA : lower bound (exclusive) of the step amplitude of the sweeps used for
        ``ri`` and ``tau``; default from the protocol's step size (:func:`subthreshold_min_amp`).
        If no hyperpolarising subthreshold sweep lies in (min, 0), the least hyperpolarising
        one is used alone (our fallback for protocols with coarse negative steps, e.g. -200 pA;
        ``info["ri_tau_sweeps"]`` says which were used).

    Returns
    -------
    CellFeatures

    Raises
    ------
    ValueError
        When the cell has no long-square sweep (the caller turns it into a skip reason).
    """
    idx = long_square_sweeps(sweeps)
    if not idx:
        raise ValueError(f"no long-square sweep (a current step of >= {MIN_LONG_SQUARE_S:g} s) among "
                         f"{len(sweeps)} current-clamp sweeps")
    ls = [sweeps[k] for k in idx]
    choice = choose_sweeps(ls, multiples=(1.0,), min_step_s=MIN_LONG_SQUARE_S)
    dets = choice.spikes if choice is not None else [detect_spikes(s.v_mV, s.fs_hz) for s in ls]
    feats = [sweep_features(s, k, d) for k, (s, d) in enumerate(zip(ls, dets))]
    vals = {k: float("nan") for k in FEATURE_NAMES}
    info: dict = {"n_long_square_sweeps": len(ls)}
    vals["vrest"] = float(np.nanmean([f.v_baseline_mV for f in feats])) if any(np.isfinite(f.v_baseline_mV) for f in feats) else float("nan")

    spiking = [f for f in feats if f.avg_rate_hz > 0]
    subthr = [f for f in feats if f.avg_rate_hz == 0]
    info["n_spiking_sweeps"], info["n_subthreshold_sweeps"] = len(spiking), len(subthr)

    # --- suprathreshold ------------------------------------------------------------------------
    if choice is not None and spiking:
        rheo_pos = choice.chosen[0]
        rheo = feats[rheo_pos]
        vals["threshold_i_long_square"] = float(choice.rheobase_pA)
        info["rheobase_sweep"] = ls[rheo_pos].sweep_id
        sp = rheo.spikes
        if len(sp):
            vals["threshold_v_long_square"] = float(sp.threshold_v[0])
            vals["peak_v_long_square"] = float(sp.peak_v[0])
            vals["trough_v_long_square"] = float(sp.trough_v[0])
            vals["fast_trough_v_long_square"] = float(sp.fast_trough_v[0])
            vals["upstroke_downstroke_ratio_long_square"] = float(sp.upstroke_downstroke_ratio[0])
            vals["width_long_square"] = float(sp.width_s[0] * 1e3)
            vals["latency_rheobase"] = rheo.latency_s
        vals["f_i_curve_slope"] = fi_slope(np.array([f.stim_amp_pA for f in spiking]),
                                           np.array([f.avg_rate_hz for f in spiking]))
        amps = np.array([f.stim_amp_pA for f in spiking])
        h = find_hero(choice.rheobase_pA, amps)
        if h is not None:
            hero = spiking[h]
            hs = ls[hero.sweep_index]
            info["hero_sweep"] = hs.sweep_id
            info["hero_amp_pA"] = round(hero.stim_amp_pA, 3)
            vals["latency"] = hero.latency_s
            vals["avg_isi"] = hero.mean_isi_s * 1e3
            vals["adaptation"] = hero.adapt
            vals.update(_burst_pause_delay(hs, hero))
    # --- subthreshold --------------------------------------------------------------------------
    hyper = [f for f in subthr if f.stim_amp_pA < 0]
    if hyper:
        # IPFX picks among all subthreshold sweeps; we keep the hyperpolarising ones, so a cell
        # without any gets NaN instead of a "sag" read on a depolarising step (identical
        # whenever a hyperpolarising sweep reaches nearer -100 mV, as in Allen protocols)
        levels = np.array([f.peak_deflect_mV for f in hyper])
        c = int(np.argmin(np.abs(levels - SAG_TARGET_MV)))
        vals["sag"], vals["vm_for_sag"] = hyper[c].sag, float(levels[c])
        info["sag_sweep"] = ls[hyper[c].sweep_index].sweep_id
    if subthr:
        lo = subthresh_min_amp_pA if subthresh_min_amp_pA is not None else subthreshold_min_amp([f.stim_amp_pA for f in feats])
        info["subthresh_min_amp_pA"] = lo
        calc = [f for f in subthr if lo < f.stim_amp_pA < 0]
        if not calc:
            neg = [f for f in subthr if f.stim_amp_pA < 0]
            if neg:
                calc = [max(neg, key=lambda f: f.stim_amp_pA)]
                info["ri_tau_fallback"] = "no hyperpolarising sweep in (min, 0) pA: least hyperpolarising one used"
        if calc:
            info["ri_tau_sweeps"] = [ls[f.sweep_index].sweep_id for f in calc]
            cs = [ls[f.sweep_index] for f in calc]
            peak_t = float(np.median([f.peak_deflect_index / ls[f.sweep_index].fs_hz for f in calc]))
            taus = [time_constant_s(s, peak_t) for s in cs]
            vals["tau"] = float(np.nanmean(taus)) * 1e3 if np.isfinite(taus).any() else float("nan")
            vals["ri"] = input_resistance_mohm(cs)
    if not np.isfinite(vals["ri"]) and "ri_tau_sweeps" not in info:
        # no hyperpolarising long-square sweep: the test pulse inside each sweep (F–I protocols)
        pulse, pinfo = _from_test_pulses(ls, feats)
        for k, v in pulse.items():
            if not np.isfinite(vals[k]):
                vals[k] = v
        info.update(pinfo)
    info["plausibility"] = plausibility_flags(vals)
    info["nan_reasons"] = nan_reasons(vals, info)
    return CellFeatures(vals, info)


def _burst_pause_delay(sweep: Sweep, f: SweepFeatures) -> dict[str, float]:
    """has_burst, has_pause, has_delay (0/1) of the hero sweep; NaN when the train is too short."""
    sp, fs = f.spikes, float(sweep.fs_hz)
    out = {"has_burst": float("nan"), "has_pause": float("nan"), "has_delay": float("nan")}
    if len(sp) == 0:
        return out
    # delay: IPFX `delay` = latency / dominant pre-spike rise time constant
    tau = prespike_time_constant_s(sweep, float(sp.threshold_index[0] / fs))
    if np.isfinite(tau) and tau > 0:
        out["has_delay"] = float(f.latency_s / tau > DELAY_RATIO_MIN)
    isis = f.isis_s
    types = sp.isi_type[:-1]
    # a train of one spike has neither (IPFX returns no pause and no burst for it)
    out["has_pause"] = float(detect_pauses(isis, types).size > 0)
    out["has_burst"] = 0.0
    if isis.size >= 2:
        t = lambda idx: np.where(np.isfinite(idx), idx / fs, np.nan)  # noqa: E731
        try:
            b = detect_bursts(isis, types, sp.fast_trough_v, t(sp.fast_trough_index), sp.slow_trough_v,
                              t(sp.slow_trough_index), sp.threshold_v)
        except (IndexError, ValueError):
            b = []
        out["has_burst"] = float(len(b) > 0)
    return out


# ------------------------------------------------------------------------------------------------
# dataset: ephys prepare features
# ------------------------------------------------------------------------------------------------


@dataclass
class FeaturesResult:
    """What :func:`prepare_features` did: the manifest written, cells with features (``n_ok``)
    and skipped cells / files with their one-line reasons (``[{"path", "reason"}]``)."""

    manifest_path: "Path"
    n_ok: int
    skipped: list[dict] = field(default_factory=list)
    #: cells outside the plausibility ranges: ``[{"id", "source", "flags": [message, ...]}]``
    flagged: list[dict] = field(default_factory=list)


def process_cell_features(cell) -> dict:
    """One cell -> ``{"status": "ok", "id", "values", "info", ...}`` or ``{"status": "skipped",
    "path", "reason"}``. Never raises for a bad recording: the reason is reported instead."""
    from ..core.errors import EphysError
    from ..blocks.readers.patchclamp import read_cell
    from ..blocks.readers.remote import input_records

    bad_files: list[tuple[str, str]] = []
    try:
        sweeps = read_cell(cell, bad_files)
    except EphysError as exc:
        return {"status": "skipped", "id": cell.cell_id, "path": cell.source, "reason": exc.message}
    except Exception as exc:  # noqa: BLE001 - a reader library failing on a broken file
        return {"status": "skipped", "id": cell.cell_id, "path": cell.source,
                "reason": f"unreadable ({type(exc).__name__}: {exc})"[:300]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cf = cell_features(sweeps)
    except ValueError as exc:
        return {"status": "skipped", "id": cell.cell_id, "path": cell.source, "reason": str(exc)}
    return {"status": "ok", "id": cell.cell_id, "label": cell.label, "source": cell.source,
            "values": cf.values, "info": cf.info,
            "inputs": input_records(cell.paths),
            "skipped_files": [{"path": p, "reason": r} for p, r in bad_files]}


def discover_features(input_path, params=None, labels_csv=None, options=None):
    """The step's ``discover`` hook: the cells of INPUT (as ``prepare scalograms``), or with
    ``params.preset == "sts"`` one item, the folder of the STS paper's feature tables."""
    if params is not None and params.preset == "sts":
        return [{"id": "sts-tables", "preset": "sts"}], []
    from .scalograms import discover

    return discover(input_path, None, labels_csv, options)


def process_features(item, params=None, out_dir=None, options=None) -> dict:
    """The step's ``process`` hook: one cell's features (:func:`process_cell_features`); the STS
    tables item is read in ``collect``."""
    if isinstance(item, dict) and item.get("preset"):
        return {"status": "ok", "preset": item["preset"]}
    return process_cell_features(item)


def collect_features(out, results: list[dict], params, ctx) -> "Path":
    """The step's ``collect`` hook: the feature table (``features.npy`` float64 (n_cells, 20) in
    :data:`FEATURE_NAMES` order, NaN = not computable; ``features.csv``; ``manifest.json`` last),
    or the STS tables with ``--preset sts`` (:func:`.tables.prepare_sts_features`).

    Raises
    ------
    EphysError
        No cell gave features (the first reasons are named).
    """
    from pathlib import Path

    from .. import __version__
    from ..core.errors import EphysError
    from ..core.layouts import write_feature_table

    if params is not None and params.preset == "sts":
        from .tables import prepare_sts_features

        return prepare_sts_features(ctx.input, out, log=ctx.log)
    stream = bool(getattr(ctx.options, "stream", False))
    ok = [r for r in results if r["status"] == "ok"]
    skipped = ctx.skipped
    skipped += [{"path": r["path"], "reason": r["reason"]} for r in results if r["status"] != "ok"]
    skipped += [f for r in ok for f in r.get("skipped_files", [])]
    if not ok:
        reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in skipped[:3])
        raise EphysError(f"no cell gave features ({reasons})", ctx.input)
    X = np.array([[r["values"][k] for k in FEATURE_NAMES] for r in ok], dtype=np.float64)
    labels = [r["label"] for r in ok]
    label_names = sorted({lab for lab in labels if lab})
    provenance = {
        "input": str(ctx.input) if stream else str(Path(ctx.input).resolve()),
        "labels_csv": str(Path(ctx.labels_csv).resolve()) if ctx.labels_csv else None,
        "method": "IPFX long-square features (Gouwens et al. 2019), ephys.pipelines.ep_features",
        "ephys_version": __version__,
        "feature_descriptions": {name: desc for name, _, desc in FEATURES},
        "cells": [{"id": r["id"], "source": r["source"], "inputs": r["inputs"], **_jsonable(r["info"])} for r in ok],
        "skipped": skipped,
    }
    path = write_feature_table(out, [r["id"] for r in ok], X, list(FEATURE_NAMES), labels, label_names,
                               feature_units=dict(FEATURE_UNITS), provenance=provenance,
                               extra_columns={"source": [r["source"] for r in ok],
                                              "plausibility": ["; ".join(r["info"].get("plausibility") or []) for r in ok]},
                               extra_manifest={"sample_noun": "cell", "group_noun": "cell"})
    flagged = [r for r in ok if r["info"].get("plausibility")]
    for r in flagged:
        ctx.notice(f"warning: {r['source']}: {'; '.join(r['info']['plausibility'])}")
    if flagged:
        ctx.log(f"{len(flagged)} cells flagged as implausible (column `plausibility` of features.csv)")
    return path


def prepare_features(input_path, out_dir, labels_csv=None, progress=None, stream: bool = False,
                     include: str | None = None, limit: int | None = None) -> FeaturesResult:
    """EP feature table of every cell under INPUT (``ephys prepare features`` from Python).

    Parameters
    ----------
    input_path : a recording (.nwb, .abf) or a folder of them (``discover_cells``).
    out_dir : dataset folder (modality ``"features"``, see :func:`collect_features`).
    labels_csv : optional ``path,label`` CSV (as ``prepare scalograms``).
    progress : called as ``progress(done, total, {"key", "resumed", "result"})`` after each cell.
    stream, include, limit : remote NWB files instead (as ``prepare_scalograms``; :mod:`.stream`).

    Raises
    ------
    EphysError
        Missing input, no recordings, a bad labels CSV, or no cell could be used.
    """
    from ..core.prepare import ShardOptions, run_prepare
    from . import PREPARE_FEATURES
    from .params import FeatureParams, RemoteOptions

    res = run_prepare("sts", PREPARE_FEATURES, input_path, out_dir, FeatureParams(),
                      options=RemoteOptions(stream=stream, include=include, limit=limit), labels_csv=labels_csv,
                      run=ShardOptions(scheduler="synchronous"), progress=progress, log=lambda m: None)
    import json

    rows = json.loads(res.main_file.read_text()).get("provenance", {}).get("cells", [])
    flagged = [{"id": r["id"], "source": r["source"], "flags": r["plausibility"]} for r in rows
               if r.get("plausibility")]
    return FeaturesResult(res.main_file, res.n_ok, res.skipped, flagged)


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        out[k] = v
    return out
