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
                                                     recordings of issue 26
================  =================  ==============  ==========================================

* ``min_half_width_ms`` 0.3 ms: the narrowest real event (rise 0.2 ms, decay tau 1 ms) is
  ~0.8 ms wide at half amplitude; a one- or two-sample glitch, after the 0.2 fs measuring
  low-pass, is 0.1-0.25 ms wide at 10-50 kHz.
* ``min_decay_ms`` 0.5 ms: a quarter of the fastest mEPSC decay; glitches fit 0.02-0.1 ms.
* ``max_decay_ms`` 80 ms: twice the slowest mIPSC decay. A candidate that has not fallen to half
  its amplitude within this long after its peak (observed without another event in the way) is
  a step or a drift, not an event.
* ``max_rise_ms`` 10 ms: about twice the slowest NMJ mEPP rise (6 ms).

A decay whose exponential fit failed (NaN tau) is not a reason by itself: overlapping events cut
the fit window short; the half-width and the return towards the baseline still decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ShapeLimits", "shape_reason", "split_by_shape", "REJECTED_COLUMNS"]

#: columns of ``rejected_METHOD.csv``: the measurements, then why the candidate was rejected
REJECTED_COLUMNS = ("onset_s", "peak_s", "amplitude", "rise_10_90_ms", "decay_tau_ms", "half_width_ms", "charge",
                    "score", "reason")


@dataclass(frozen=True)
class ShapeLimits:
    """Plausible ranges of a miniature synaptic event's shape (ms); sources in the module docstring.

    min_half_width_ms : narrower at half amplitude is a glitch
    max_rise_ms : a slower 10-90 % rise is not an event's
    min_decay_ms, max_decay_ms : range of the fitted single-exponential decay tau
    enabled : False accepts every candidate
    """

    min_half_width_ms: float = 0.3
    max_rise_ms: float = 10.0
    min_decay_ms: float = 0.5
    max_decay_ms: float = 80.0
    enabled: bool = True


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def shape_reason(ev: dict, limits: ShapeLimits = ShapeLimits()) -> str | None:
    """Why the measured candidate ``ev`` is not an event (one short sentence), or None.

    ``ev``: a dict of :func:`ephys.pipelines.events.detect.measure_event` (``rise_10_90_ms``,
    ``decay_tau_ms``, ``half_width_ms``, ``after_peak_ms``; ms). Checked in order: glitch
    (half-width or decay far too short), slow rise, no decay (not back to half amplitude within
    ``max_decay_ms`` although that long was observed), decay tau out of range.
    """
    if not limits.enabled:
        return None
    hw, rise, tau = ev.get("half_width_ms"), ev.get("rise_10_90_ms"), ev.get("decay_tau_ms")
    if _finite(hw) and hw < limits.min_half_width_ms:
        return f"glitch: half-width {hw:.3g} ms < {limits.min_half_width_ms:g} ms"
    if _finite(tau) and tau < limits.min_decay_ms:
        return f"glitch: decay tau {tau:.3g} ms < {limits.min_decay_ms:g} ms"
    if _finite(rise) and rise > limits.max_rise_ms:
        return f"slow rise: 10-90 % rise {rise:.3g} ms > {limits.max_rise_ms:g} ms"
    seen = ev.get("after_peak_ms")
    if not _finite(hw) and _finite(seen) and seen >= limits.max_decay_ms:
        return f"no decay: not back to half amplitude within {limits.max_decay_ms:g} ms of the peak (a step or drift)"
    if _finite(tau) and tau > limits.max_decay_ms:
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
