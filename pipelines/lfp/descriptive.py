"""Descriptive spike-LFP numbers: pairwise phase consistency per band and spike-triggered averages.

- PPC (pairwise phase consistency, Vinck et al. 2010, NeuroImage 51:112): the mean cosine of the
  phase difference over all pairs of spikes, computed as ``(|sum_k exp(i theta_k)|^2 - N) /
  (N (N - 1))`` with ``theta_k`` the Hilbert phase of the band at spike ``k`` (nearest sample).
  Unlike the phase-locking value it is not biased by the number of spikes (expected 0 without
  locking).
- Spike-triggered LFP average: the mean raw LFP from ``-half_s`` to ``+half_s`` around each spike
  (spikes too close to an edge are left out), per channel.

Descriptive context only (computed on whole recordings; no model is fitted on them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .readers import LfpRecording
from ..blocks.signal.bands import band_signals, usable_bands
from ..core.atomic import atomic_path

__all__ = ["ppc", "spike_lfp_summary", "sta_figure"]


def ppc(phases_rad: np.ndarray) -> float | None:
    """Pairwise phase consistency of spike phases (radians); None with fewer than 2 spikes."""
    th = np.asarray(phases_rad, dtype=np.float64)
    n = th.size
    if n < 2:
        return None
    s = np.abs(np.exp(1j * th).sum()) ** 2
    return float((s - n) / (n * (n - 1)))


def spike_lfp_summary(recordings: list[LfpRecording], bands: dict | None = None, half_s: float = 0.25) -> dict:
    """Per recording/unit: ``ppc`` {band: value} on every LFP channel (key ``channel:band``), and
    ``sta`` (list per channel of the average raw LFP, length ``2 * round(half_s * fs) + 1``) with
    ``sta_t_s``."""
    out = {}
    for rec in recordings:
        b = usable_bands(rec.fs_hz, bands)
        sig = band_signals(rec.lfp, rec.fs_hz, b)
        h = int(round(half_s * rec.fs_hz))
        for unit, t in rec.units.items():
            idx = np.clip(np.round((t - rec.t0_s) * rec.fs_hz).astype(np.int64), 0, rec.lfp.shape[0] - 1)
            entry = {"n_spikes": int(t.size), "ppc": {}}
            for name, (_, _, ph) in sig.items():
                for c, ch in enumerate(rec.channel_names):
                    entry["ppc"][f"{ch}:{name}"] = ppc(ph[idx, c])
            ok = idx[(idx >= h) & (idx < rec.lfp.shape[0] - h)]
            if ok.size:
                seg = rec.lfp[ok[:, None] + np.arange(-h, h + 1)[None, :]]  # (n, 2h+1, channels)
                entry["sta"] = seg.mean(axis=0).T.round(4).tolist()
            entry["sta_t_s"] = [round(k / rec.fs_hz, 6) for k in range(-h, h + 1)]
            out[f"{rec.name}/{unit}"] = entry
    return out


def sta_figure(summary: dict, path: str | Path, max_units: int = 12) -> Path:
    """PNG of the spike-triggered averages (one panel per recording/unit, first ``max_units``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in summary if "sta" in summary[k]][:max_units]
    n = max(1, len(keys))
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, k in zip(axes.ravel(), keys):
        t = np.asarray(summary[k]["sta_t_s"]) * 1000
        for c, trace in enumerate(summary[k]["sta"]):
            ax.plot(t, trace, lw=1, label=f"ch{c + 1}")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(f"{k} (n={summary[k]['n_spikes']})", fontsize=8)
        ax.set_xlabel("ms from spike", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path
