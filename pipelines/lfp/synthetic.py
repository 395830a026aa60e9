"""The simulated cohort (``ephys fetch synthetic --pipeline lfp``): LFP + units with a known answer.

It replaces the SpikeInference seed's toy generator, whose label was a threshold of the input
(a spike wherever the LFP exceeded 2.0). Per participant (seeded, independent draws):

- LFP on ``n_channels`` contacts at ``fs_hz`` (default 250 Hz, as the Axona ``.eeg`` files): an
  aperiodic 1/f^beta background (beta 1.2-1.8, partly shared between contacts), a theta rhythm
  (6-8 Hz, slowly drifting frequency and amplitude), high-gamma bursts (Gaussian-envelope bursts
  of 60-90 Hz carriers, ~2 per second, 40-150 ms long) and 50 Hz line noise, each mixed into every
  contact with its own gain;
- units whose spikes are an inhomogeneous Poisson process (one Bernoulli draw per sample, the
  spike placed uniformly inside it) with rate ``r0 * exp(k * drive) / mean(exp(k * drive))``:
  ``inh1`` ("inhibitory", driven by the z-scored high-gamma burst envelope: band ``high_gamma``),
  ``exc1`` ("excitatory", driven by ``cos(theta phase - phi0)``: band ``theta``), ``unc1`` (no
  drive: band ``None``); mean rate ``r0`` and coupling ``k`` drawn per participant.

The drives follow Rasch et al. 2008 (J Neurophysiol 99:1461): high-gamma power and low-frequency
phase carry the information about spiking. The ground truth (which band drives which unit, with
``k`` and ``r0``) is written to ``ground_truth.json`` and into each ``recording.json``, so a
leave-one-band-out analysis has a known answer. Output: ``OUT/P01/{lfp.npy, spikes.csv,
recording.json}``, ... (the :func:`ephys.pipelines.blocks.readers.lfp_recordings.read_npy_lfp`
layout).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..core.atomic import write_json, write_npy, write_text

#: unit name -> (putative type, generating band)
UNITS = {"inh1": ("inhibitory", "high_gamma"), "exc1": ("excitatory", "theta"), "unc1": ("uncoupled", None)}


def _pink(rng, n: int, beta: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (beta / 2.0), n)
    return x / x.std()


def _smooth_noise(rng, n: int, fs_hz: float, tau_s: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    x = gaussian_filter1d(rng.standard_normal(n), tau_s * fs_hz)
    return x / (x.std() + 1e-12)


def simulate_participant(rng: np.random.Generator, duration_s: float, fs_hz: float, n_channels: int) -> dict:
    """One participant: ``lfp`` (n_samples, n_channels) float64 µV, ``spikes`` {unit: times s},
    ``units`` {unit: ground truth dict}, ``drives`` {name: (n_samples,)} (the latent signals)."""
    n = int(round(duration_s * fs_hz))
    t = np.arange(n) / fs_hz
    # theta: drifting frequency (6-8 Hz) and amplitude
    f_theta = 7.0 + 0.5 * _smooth_noise(rng, n, fs_hz, 1.0)
    phase = 2 * np.pi * np.cumsum(f_theta) / fs_hz + rng.uniform(0, 2 * np.pi)
    theta = (1.0 + 0.3 * _smooth_noise(rng, n, fs_hz, 0.5)).clip(0.2) * np.cos(phase)
    # high-gamma bursts
    env = np.zeros(n)
    carrier = np.zeros(n)
    n_bursts = rng.poisson(2.0 * duration_s)
    for c, w, f in zip(rng.uniform(0, duration_s, n_bursts), rng.uniform(0.02, 0.075, n_bursts),
                       rng.uniform(60, 90, n_bursts)):
        g = np.exp(-0.5 * ((t - c) / w) ** 2) * rng.uniform(0.6, 1.4)
        env += g
        carrier += g * np.cos(2 * np.pi * f * (t - c) + rng.uniform(0, 2 * np.pi))
    shared_bg = _pink(rng, n, rng.uniform(1.2, 1.8))
    line = np.cos(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi))
    lfp = np.empty((n, n_channels))
    for c in range(n_channels):
        bg = 0.7 * shared_bg + 0.7 * _pink(rng, n, rng.uniform(1.2, 1.8))
        lfp[:, c] = (40.0 * bg + rng.uniform(15, 30) * theta + rng.uniform(8, 14) * carrier
                     + rng.uniform(1, 4) * line + 2.0 * rng.standard_normal(n))
    drives = {"high_gamma": (env - env.mean()) / (env.std() + 1e-12), "theta": np.cos(phase - rng.normal(0, 0.3))}
    spikes, truth = {}, {}
    for unit, (kind, band) in UNITS.items():
        r0 = float(rng.uniform(4.0, 10.0))
        k = float(rng.uniform(1.5, 2.5)) if band else 0.0
        drive = drives[band] if band else np.zeros(n)
        lam = np.exp(k * drive)
        lam *= r0 / lam.mean()
        hit = rng.random(n) < np.minimum(lam / fs_hz, 0.9)
        spikes[unit] = np.sort((np.flatnonzero(hit) + rng.random(int(hit.sum()))) / fs_hz)
        truth[unit] = {"type": kind, "band": band, "coupling": round(k, 4), "rate_hz": round(r0, 4)}
    return {"lfp": lfp, "spikes": spikes, "units": truth, "drives": drives}


def fetch_synthetic(out: str | Path, n_participants: int = 5, seed: int = 0, duration_s: float = 60.0,
                    fs_hz: float = 250.0, n_channels: int = 2, progress=None) -> Path:
    """Write the simulated cohort (see the module docstring) into ``out``; returns ``out``.

    Same seed, same files. Each participant draws from its own child generator
    (``np.random.SeedSequence(seed).spawn``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for k, child in enumerate(np.random.SeedSequence(seed).spawn(n_participants)):
        name = f"P{k + 1:02d}"
        sim = simulate_participant(np.random.default_rng(child), duration_s, fs_hz, n_channels)
        folder = out / name
        write_npy(folder / "lfp.npy", sim["lfp"].astype(np.float32))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["unit", "t_s"])
        for unit, times in sim["spikes"].items():
            w.writerows([unit, f"{x:.6f}"] for x in times)
        write_text(folder / "spikes.csv", buf.getvalue())
        write_json(folder / "recording.json", {"fs_hz": fs_hz, "t0_s": 0.0, "group": name, "units": sim["units"],
                                               "channel_names": [f"ch{c + 1}" for c in range(n_channels)],
                                               "unit_lfp": "µV", "simulated": True, "seed": seed})
        truth[name] = sim["units"]
        if progress:
            progress(k + 1, n_participants)
    write_json(out / "ground_truth.json", {"seed": seed, "duration_s": duration_s, "fs_hz": fs_hz,
                                           "participants": truth})
    return out
