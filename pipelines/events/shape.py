"""The event-shape check every detection method's candidates pass (``ephys events detect``).

A detector (threshold, window classifier, U-Net, autoencoder) proposes candidates; a person
calls a candidate an event only if it looks like one: a rise, then a decay back towards the
baseline, each within the range miniature synaptic events have. :func:`shape_reason` says why a
measured candidate (:func:`ephys.pipelines.events.detect.measure_event`) is not an event, or
None; :func:`split_by_shape` sorts a list into accepted and rejected (each rejected candidate
keeps its measurements and gains a ``reason``), so the rejections can be written and audited.

The limits (:class:`ShapeLimits`) span the kinetics families events come in, with a margin:

================  =================  ==============  ==========================================
family            10-90 % rise (ms)  decay tau (ms)  source
================  =================  ==============  ==========================================
fast mEPSC        0.2-0.5            2-5             cerebellar granule cells: miniML (O'Neill
                                                     et al. 2025, eLife), its shared windows
mIPSC             0.3-1              10-40           GABA-A minis (Edwards, Konnerth & Sakmann
                                                     1990, J Physiol)
NMJ mEPP / mEJC   1-6                3-15            Fatt & Katz 1952 (J Physiol); the NMJ
                                                     recordings ephys was tried on
================  =================  ==============  ==========================================

* ``min_half_width_ms`` 0.5 ms (also the fastest 10-90 % rise of a glitch): measured on the
  trace low-passed at 2 kHz (:func:`ephys.pipelines.events.detect.half_width_ms`), a one- or
  two-sample glitch is 0.24-0.30 ms wide at 10-50 kHz and the narrowest real event (rise 0.2 ms,
  decay tau 1 ms) 1.1-1.2 ms (simulated, ``tests/test_events_shape.py``).
* ``max_decay_ms`` 80 ms: twice the slowest mIPSC decay. A candidate that has not fallen to half
  its amplitude within this long after its peak (observed without another event in the way) is
  a step or a drift, not an event.
* ``max_rise_ms`` 10 ms: about twice the slowest NMJ mEPP rise (6 ms).
* ``min_amplitude_sd`` 3: a candidate under three robust noise SDs (MAD / 0.6745 of the measuring
  trace minus its running median) cannot be told from noise by eye; template detectors put their
  criterion at 3-4 noise SDs (Clements & Bekkers 1997, Biophys J).

A decay whose exponential fit failed or came out fast is not a reason by itself: overlapping
events cut the fit window short (a real event then fits a 0.3-ms tau over 2 ms); the half-width
and the return towards the baseline decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ShapeLimits", "shape_reason", "split_by_shape", "REJECTED_COLUMNS"]

#: columns of ``rejected_METHOD.csv``: the measurements, then why the candidate was rejected
REJECTED_COLUMNS = ("onset_s", "peak_s", "amplitude", "amplitude_sd", "rise_10_90_ms", "decay_tau_ms", "half_width_ms",
                    "charge", "score", "reason")


@dataclass(frozen=True)
class ShapeLimits:
    """Plausible ranges of a miniature synaptic event's shape (ms); sources in the module docstring.

    min_half_width_ms : faster 10-90 % rise and narrower at half amplitude is a glitch
    min_amplitude_sd : smaller (in robust noise SDs of the trace) cannot be told from noise
    max_rise_ms : a slower 10-90 % rise is not an event's
    max_decay_ms : slowest decay: not back to half amplitude this long after the peak, or (without
        a half-width) a fitted single-exponential decay tau above it, is a step or drift
    enabled : False accepts every candidate
    """

    min_half_width_ms: float = 0.5
    min_amplitude_sd: float = 3.0
    max_rise_ms: float = 10.0
    max_decay_ms: float = 80.0
    enabled: bool = True


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def shape_reason(ev: dict, limits: ShapeLimits = ShapeLimits()) -> str | None:
    """Why the measured candidate ``ev`` is not an event (one short sentence), or None.

    ``ev``: a dict of :func:`ephys.pipelines.events.detect.measure_event` (``rise_10_90_ms``,
    ``decay_tau_ms``, ``half_width_ms``, ``after_peak_ms``; ms). Checked in order:

    * glitch: it rises faster than ``min_half_width_ms`` (10-90 %) and is narrower than that at
      half amplitude: rising and falling within a few samples;
    * below noise: amplitude under ``min_amplitude_sd`` robust noise SDs (``amplitude_sd``);
    * slow rise: 10-90 % rise over ``max_rise_ms``;
    * no decay: not back to half amplitude within ``max_decay_ms`` of the peak although that long
      was observed (a step or a drift);
    * slow decay: no half-width and a decay tau over ``max_decay_ms``.

    A candidate that reached half amplitude is never rejected for its fitted tau alone: a slow
    second component or the next event's rise bends a single-exponential fit, not the event.
    """
    if not limits.enabled:
        return None
    hw, rise, tau = ev.get("half_width_ms"), ev.get("rise_10_90_ms"), ev.get("decay_tau_ms")
    fast_rise = _finite(rise) and rise < limits.min_half_width_ms
    if fast_rise and _finite(hw) and hw < limits.min_half_width_ms:
        return (f"glitch: rise {rise:.3g} ms and half-width {hw:.3g} ms, both < {limits.min_half_width_ms:g} ms")
    snr = ev.get("amplitude_sd")
    if _finite(snr) and snr < limits.min_amplitude_sd:
        return f"below noise: amplitude {snr:.2g} noise SDs < {limits.min_amplitude_sd:g}"
    if _finite(rise) and rise > limits.max_rise_ms:
        return f"slow rise: 10-90 % rise {rise:.3g} ms > {limits.max_rise_ms:g} ms"
    seen = ev.get("after_peak_ms")
    if not _finite(hw) and _finite(seen) and seen >= limits.max_decay_ms:
        return f"no decay: not back to half amplitude within {limits.max_decay_ms:g} ms of the peak (a step or drift)"
    if not _finite(hw) and _finite(tau) and tau > limits.max_decay_ms:
        return f"slow decay: decay tau {tau:.3g} ms > {limits.max_decay_ms:g} ms (a step or drift)"
    return None


def split_by_shape(events: list[dict], limits: ShapeLimits = ShapeLimits()) -> tuple[list[dict], list[dict]]:
    """(accepted, rejected) candidates; each rejected dict is a copy with ``reason`` added."""
    acc, rej = [], []
    for e in events:
        why = shape_reason(e, limits)
        if why is None:
            acc.append(e)
        else:
            rej.append({**e, "reason": why})
    return acc, rej
