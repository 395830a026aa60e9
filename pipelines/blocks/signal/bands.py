"""Frequency bands of a local field potential: zero-phase band-pass, Hilbert amplitude and phase.

The canonical bands follow the SpikeInference issue and the usual clinical naming (delta 1-4,
theta 4-8, alpha 8-13, beta 13-30, low gamma 30-60, high gamma 60-100 Hz). Filters are
Butterworth band-passes applied forwards and backwards (``scipy.signal.sosfiltfilt``, zero phase)
over a whole recording, before it is cut into windows; amplitude and phase come from the
analytic signal (``scipy.signal.hilbert``).
"""

from __future__ import annotations

import numpy as np

from ...core.errors import EphysError

__all__ = ["DEFAULT_BANDS", "usable_bands", "band_signals"]

#: name -> (low_hz, high_hz); the issue's default bands
DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "low_gamma": (30.0, 60.0),
    "high_gamma": (60.0, 100.0),
}


def usable_bands(fs_hz: float, bands: dict[str, tuple[float, float]] | None = None,
                 max_fraction: float = 0.9) -> dict[str, tuple[float, float]]:
    """The bands a recording at ``fs_hz`` can resolve.

    A band whose upper edge is at or above ``max_fraction`` x Nyquist is clipped to that limit;
    a band whose lower edge is above the limit is dropped.

    Returns
    -------
    dict name -> (low_hz, high_hz), in the input order.

    Raises
    ------
    EphysError
        No band is left, or a band has low >= high or low <= 0.
    """
    bands = dict(DEFAULT_BANDS if bands is None else bands)
    limit = max_fraction * fs_hz / 2.0
    out = {}
    for name, (lo, hi) in bands.items():
        lo, hi = float(lo), float(hi)
        if not 0 < lo < hi:
            raise EphysError(f"band {name} must have 0 < low < high Hz, got {lo:g}-{hi:g}")
        if lo >= limit:
            continue
        out[name] = (lo, min(hi, limit))
    if not out:
        raise EphysError(f"no frequency band fits below {limit:g} Hz (sampling rate {fs_hz:g} Hz)")
    return out


def band_signals(lfp: np.ndarray, fs_hz: float, bands: dict[str, tuple[float, float]],
                 order: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Zero-phase band-passed signal, Hilbert amplitude and phase of each band.

    Parameters
    ----------
    lfp : np.ndarray, float, shape (n_samples, n_channels), any unit (e.g. µV)
    fs_hz : float, sampling rate
    bands : name -> (low_hz, high_hz), e.g. from :func:`usable_bands`
    order : Butterworth order of each band-pass (applied twice: forwards and backwards)

    Returns
    -------
    dict name -> (filtered, amplitude, phase_rad), each float64 of shape (n_samples, n_channels);
    amplitude in the unit of ``lfp``, phase in radians in (-pi, pi].

    Raises
    ------
    EphysError
        Too few samples for the filters' padding.
    """
    from scipy import signal

    x = np.asarray(lfp, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    out = {}
    for name, (lo, hi) in bands.items():
        sos = signal.butter(order, [lo, hi], btype="bandpass", fs=fs_hz, output="sos")
        try:
            filt = signal.sosfiltfilt(sos, x, axis=0)
        except ValueError as exc:
            raise EphysError(f"recording too short to filter the {name} band ({exc})") from None
        analytic = signal.hilbert(filt, axis=0)
        out[name] = (filt, np.abs(analytic), np.angle(analytic))
    return out
