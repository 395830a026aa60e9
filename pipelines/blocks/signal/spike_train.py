"""Action-potential detection in current-clamp sweeps, rheobase, sweep choice and spike trains.

Detection follows the putative-spike rule of the Allen Institute's IPFX package
(``ipfx.spike_detector``, described in Gouwens et al. 2019, Nat Neurosci 22:1182, Methods):
a spike starts where dV/dt rises through 20 mV/ms; its peak is the voltage maximum before the
next crossing; it is kept only if the peak is at least 2 mV above the voltage at threshold,
reaches -30 mV, and the membrane repolarises after it. Sampling above 20 kHz is first low-passed
(4-pole Bessel, 10 kHz), as IPFX does.

One addition of ours: the peak must also rise ``MIN_AP_AMPLITUDE_MV`` (20 mV) above the
threshold voltage. IPFX's 2 mV height and -30 mV peak checks assume a correct resting
potential; on recordings with a voltage offset (e.g. ``98205017.abf`` in the shared data, whose
baseline sits near 0 mV) noise steeper than 20 mV/ms would otherwise count as spikes. Action
potentials rise 40-100 mV above threshold, spikelets in bursts rarely less than 20 mV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from ..readers.sweeps import Sweep

#: dV/dt threshold for a putative spike, mV/ms (= V/s). IPFX default (Gouwens et al. 2019).
DVDT_THRESHOLD_MV_PER_MS = 20.0
#: Minimum peak height above the threshold voltage, mV (IPFX ``min_height``).
MIN_HEIGHT_MV = 2.0
#: Minimum absolute peak voltage, mV (IPFX ``min_peak``).
MIN_PEAK_MV = -30.0
#: Minimum rise from threshold to peak, mV (ephys addition, see the module docstring).
MIN_AP_AMPLITUDE_MV = 20.0
#: Longest allowed time from threshold to peak, s (IPFX ``max_interval`` is 5 ms).
MAX_RISE_S = 0.005
#: The Allen long-square protocol sweeps used for scalograms, as multiples of rheobase.
DEFAULT_RHEOBASE_MULTIPLES = (1.0, 1.5, 2.0)


@dataclass
class Spikes:
    """Detected action potentials of one sweep.

    threshold_index, peak_index : np.ndarray of int64, shape (n_spikes,)
        Sample index of the dV/dt threshold crossing and of the peak.
    threshold_s, peak_s : np.ndarray of float64, shape (n_spikes,)
        The same in seconds from the sweep start.
    peak_mV : np.ndarray of float64
        Peak membrane potential (mV).
    """

    threshold_index: np.ndarray
    peak_index: np.ndarray
    threshold_s: np.ndarray
    peak_s: np.ndarray
    peak_mV: np.ndarray

    def __len__(self) -> int:
        return int(self.peak_index.size)


def detect_spikes(v_mV: np.ndarray, fs_hz: float,
                  dvdt_threshold: float = DVDT_THRESHOLD_MV_PER_MS,
                  min_height_mV: float = MIN_HEIGHT_MV,
                  min_peak_mV: float = MIN_PEAK_MV,
                  min_amplitude_mV: float = MIN_AP_AMPLITUDE_MV,
                  max_rise_s: float = MAX_RISE_S) -> Spikes:
    """Detect action potentials by dV/dt threshold crossing with peak confirmation.

    Parameters
    ----------
    v_mV : np.ndarray, shape (n_samples,)
        Membrane potential in mV.
    fs_hz : float
        Sampling rate in Hz (>= 5 kHz recommended; AP upstrokes last < 1 ms).
    dvdt_threshold : float
        Rising dV/dt that marks a putative spike, mV/ms (IPFX: 20).
    min_height_mV, min_peak_mV : float
        Peak confirmation: peak - V(threshold) >= min_height_mV and peak >= min_peak_mV.
    min_amplitude_mV : float
        Peak - V(threshold) must also reach this (ephys addition against offset recordings).
    max_rise_s : float
        Longest threshold-to-peak interval, seconds.

    Returns
    -------
    Spikes
        Empty arrays when the sweep has no spike.

    Source: IPFX ``detect_putative_spikes`` / ``find_peak_indexes`` / ``filter_putative_spikes``
    (Allen Institute; Gouwens et al. 2019), re-implemented here.
    """
    v = np.asarray(v_mV, dtype=np.float64)
    empty = Spikes(*(np.zeros(0, dtype=np.int64),) * 2, *(np.zeros(0),) * 3)
    if v.size < 3 or not np.all(np.isfinite(v)):
        v = np.nan_to_num(v, nan=float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0)
        if v.size < 3:
            return empty
    if fs_hz > 20_000:
        b, a = sps.bessel(4, 10_000.0, btype="low", fs=fs_hz)
        v = sps.filtfilt(b, a, v)
    dvdt = np.gradient(v) * (fs_hz / 1000.0)  # mV/ms
    above = dvdt >= dvdt_threshold
    starts = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    if starts.size == 0:
        return empty
    max_rise = max(2, int(round(max_rise_s * fs_hz)))
    ends = np.append(starts[1:], v.size)
    thr_idx, peak_idx = [], []
    for s, e in zip(starts, ends):
        stop = min(e, s + max_rise, v.size)
        p = s + int(np.argmax(v[s:stop]))
        if v[p] - v[s] < max(min_height_mV, min_amplitude_mV) or v[p] < min_peak_mV:
            continue
        # repolarisation: the voltage must fall by at least min_height after the peak
        after = v[p: min(v.size, p + 4 * max_rise)]
        if after.size < 2 or v[p] - after.min() < min_height_mV:
            continue
        if peak_idx and p == peak_idx[-1]:  # noisy double crossing on one upstroke
            continue
        thr_idx.append(s)
        peak_idx.append(p)
    ti = np.asarray(thr_idx, dtype=np.int64)
    pi = np.asarray(peak_idx, dtype=np.int64)
    return Spikes(ti, pi, ti / fs_hz, pi / fs_hz, v[pi] if pi.size else np.zeros(0))


def spikes_in_stimulus(sweep: Sweep, spikes: Spikes) -> int:
    """Number of spikes whose peak falls inside the current step of ``sweep``."""
    if not np.isfinite(sweep.stim_start_s):
        return len(spikes)
    inside = (spikes.peak_s >= sweep.stim_start_s) & (spikes.peak_s < sweep.stim_end_s)
    return int(inside.sum())


@dataclass
class SweepChoice:
    """Result of :func:`choose_sweeps`.

    rheobase_pA : float
        Smallest depolarising step amplitude that evoked at least one spike (pA).
    chosen : list[int]
        Indices into the sweep list, one per rheobase multiple (repeats allowed).
    targets_pA : list[float]
        The amplitude each chosen sweep was meant to be nearest to.
    spikes : list[Spikes]
        Detections for every sweep (same order as the input list).
    """

    rheobase_pA: float
    chosen: list[int]
    targets_pA: list[float]
    spikes: list[Spikes]


def choose_sweeps(sweeps: list[Sweep], multiples=DEFAULT_RHEOBASE_MULTIPLES,
                  min_step_s: float = 0.2) -> SweepChoice | None:
    """Choose the suprathreshold long-square sweeps a scalogram is made from.

    Rule (documented in the README): among sweeps with a depolarising step of at least 1 pA and
    ``min_step_s`` seconds, rheobase is the smallest amplitude whose step evoked a spike; for
    each multiple m in ``multiples`` (default 1, 1.5, 2) the suprathreshold sweep whose
    amplitude is nearest to m x rheobase is chosen (ties go to the larger amplitude; the same
    sweep may be chosen twice when a cell has few sweeps). This follows the STS choice of
    rheobase-relative long-square sweeps (Amprimo et al. 2025) and Allen's rheobase definition
    (Gouwens et al. 2019).

    Returns None when no sweep reaches rheobase (the cell is then skipped with that reason).
    """
    all_spikes = [detect_spikes(sw.v_mV, sw.fs_hz) for sw in sweeps]
    supra = []
    for k, (sw, sp) in enumerate(zip(sweeps, all_spikes)):
        ok_step = (np.isfinite(sw.stim_amp_pA) and sw.stim_amp_pA >= 1.0
                   and np.isfinite(sw.stim_start_s)
                   and (sw.stim_end_s - sw.stim_start_s) >= min_step_s)
        if ok_step and spikes_in_stimulus(sw, sp) > 0:
            supra.append(k)
    if not supra:
        return None
    amps = np.array([sweeps[k].stim_amp_pA for k in supra])
    rheobase = float(amps.min())
    chosen, targets = [], []
    for m in multiples:
        target = m * rheobase
        dist = np.abs(amps - target)
        best = np.flatnonzero(dist == dist.min())
        pick = best[np.argmax(amps[best])]
        chosen.append(int(supra[pick]))
        targets.append(float(target))
    return SweepChoice(rheobase_pA=rheobase, chosen=chosen, targets_pA=targets, spikes=all_spikes)


def bin_spike_train(spike_times_s: np.ndarray, window_s: tuple[float, float],
                    bin_s: float = 0.001) -> np.ndarray:
    """Bin spike times into counts per bin.

    Parameters
    ----------
    spike_times_s : np.ndarray, shape (n_spikes,)
        Spike times in seconds, in the same reference as ``window_s`` (e.g. from step onset).
    window_s : (start, stop)
        Half-open time window in seconds.
    bin_s : float
        Bin width in seconds (STS: 1 ms).

    Returns
    -------
    np.ndarray, shape (round((stop - start) / bin_s),), float32
        Spike counts per bin.
    """
    start, stop = window_s
    n_bins = int(round((stop - start) / bin_s))
    idx = np.floor((np.asarray(spike_times_s, dtype=np.float64) - start) / bin_s).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < n_bins)]
    return np.bincount(idx, minlength=n_bins).astype(np.float32)
