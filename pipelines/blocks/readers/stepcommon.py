"""What the NWB and ABF readers share: unit tables, the step finder, stimulus alignment and the
sibling step-window rule (see :mod:`.patchclamp`, which re-exports these names), kept apart so
that the fast NWB reader (:mod:`.nwb_fast`) and the remote one (:mod:`.remote`) need not import
the reader module that dispatches to them.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .sweeps import Sweep

_VOLT = {"v": 1.0, "volt": 1.0, "volts": 1.0, "mv": 1e-3, "millivolt": 1e-3, "millivolts": 1e-3,
         "uv": 1e-6, "µv": 1e-6, "microvolt": 1e-6, "microvolts": 1e-6}
_AMPERE = {"a": 1.0, "amp": 1.0, "amps": 1.0, "ampere": 1.0, "amperes": 1.0,
           "ma": 1e-3, "milliampere": 1e-3, "milliamperes": 1e-3,
           "ua": 1e-6, "µa": 1e-6, "microampere": 1e-6, "microamperes": 1e-6,
           "na": 1e-9, "nanoampere": 1e-9, "nanoamperes": 1e-9,
           "pa": 1e-12, "picoampere": 1e-12, "picoamperes": 1e-12,
           "fa": 1e-15, "femtoampere": 1e-15, "femtoamperes": 1e-15}

MIN_STEP_S = 0.05  # shortest current step that counts as "the step" (excludes test pulses)


def _align(i: np.ndarray, fs_i: float, t0_i: float, n: int, fs: float, t0: float) -> np.ndarray:
    """Stimulus resampled onto the response's n samples (nearest sample, edges held)."""
    if i.size == n and fs_i == fs and abs(t0_i - t0) < 0.5 / fs:
        return i
    if i.size == 0:
        return np.zeros(n)
    t = t0 + np.arange(n) / fs
    idx = np.clip(np.round((t - t0_i) * fs_i).astype(np.int64), 0, i.size - 1)
    return i[idx]



# ------------------------------------------------------------------------------------------------
# step detection
# ------------------------------------------------------------------------------------------------


def find_main_step(i_pA: np.ndarray, fs_hz: float, min_duration_s: float = MIN_STEP_S) -> tuple[float, float, float]:
    """The first square current step of a sweep: ``(amplitude_pA, start_s, end_s)``.

    The baseline is the holding current at the start of the sweep (median of the first 1 %),
    so steps longer than half the sweep, "dual" protocols (step, then a fixed pulse) and
    recorded (noisy) currents work. A noisy current (SD > 0.5 pA on the baseline) is first
    median-filtered over 5 ms, which also removes capacitive spike artefacts. The step is the
    first run of >= ``min_duration_s`` that deviates from the baseline by more than
    max(1 pA, 5 x noise SD, 5 % of the largest deviation), cut where the level changes. The
    amplitude is the median current in the step minus the baseline median. Returns
    ``(0.0, nan, nan)`` when there is no step (e.g. a 0 pA sweep).

    ``i_pA``: shape (n,), pA; ``fs_hz``: Hz.
    """
    i = np.asarray(i_pA, dtype=np.float64)
    n = i.size
    nan = float("nan")
    if n < 10 or not np.all(np.isfinite(i)):
        return 0.0, nan, nan
    n0 = max(5, int(0.01 * n))
    base_raw = float(np.median(i[:n0]))
    noise = 1.4826 * float(np.median(np.abs(i[:n0] - base_raw)))
    if noise > 0.5:
        from scipy.ndimage import median_filter

        width = max(3, int(round(0.005 * fs_hz)) | 1)
        x = median_filter(i, size=width, mode="nearest")
        base = float(np.median(x[:n0]))
        noise = 1.4826 * float(np.median(np.abs(x[:n0] - base)))
    else:
        x, base = i, base_raw
    dev = x - base
    peak = float(np.max(np.abs(dev)))
    thr = max(1.0, 5.0 * noise, 0.05 * peak)
    if peak <= thr:
        return 0.0, nan, nan
    min_len = max(1, int(round(min_duration_s * fs_hz)))
    settle = max(1, int(round(0.02 * fs_hz)))
    for s, e in _runs(np.abs(dev) > thr):
        if e - s < min_len:
            continue
        level = float(np.median(x[s:min(e, s + settle)]))
        tol = max(thr, 0.25 * abs(level - base))
        # the step ends early where the level changes for >= 20 ms (not at a spike artefact)
        end = e
        for js, je in _runs(np.abs(x[s:e] - level) > tol):
            if je - js >= settle:
                end = s + js
                break
        if end - s < min_len:
            continue
        amp = float(np.median(i[s:end])) - base_raw
        return amp, s / fs_hz, end / fs_hz
    return 0.0, nan, nan


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the runs of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _fill_windows_from_siblings(sweeps: list[Sweep]) -> None:
    """Give step-less sweeps (0 pA) of a file the step window most of its other sweeps share."""
    windows = Counter(
        (round(s.stim_start_s * s.fs_hz), round(s.stim_end_s * s.fs_hz), s.fs_hz)
        for s in sweeps
        if np.isfinite(s.stim_start_s) and np.isfinite(s.stim_end_s)
    )
    if not windows:
        return
    (p1, p2, fs), _ = windows.most_common(1)[0]
    for s in sweeps:
        if s.meta.get("stimulus") == "missing" or np.isfinite(s.stim_start_s) or s.fs_hz != fs:
            continue
        if s.stim_amp_pA == 0.0 and p2 <= s.n_samples:
            s.stim_start_s, s.stim_end_s = p1 / fs, p2 / fs
            s.meta["step_window"] = "from other sweeps of the file"



def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _short(exc: BaseException, limit: int = 100) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
