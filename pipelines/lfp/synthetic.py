"""The simulated cohort (``ephys fetch synthetic --pipeline lfp``): LFP + units with a known answer.

It replaces the SpikeInference seed's toy generator, whose label was a threshold of the input
(a spike wherever the LFP exceeded 2.0). Per participant (seeded, independent draws):

- LFP on ``n_channels`` contacts at ``fs_hz`` (default 250 Hz, as the Axona ``.eeg`` files): an
  aperiodic 1/f^beta background (beta 1.2-1.8, partly shared between contacts), a theta rhythm
  (6-8 Hz, slowly drifting frequency; amplitude waxing and waning over seconds, log-normal, as
  theta episodes come and go), high-gamma bursts (Gaussian-envelope bursts of 60-90 Hz carriers,
  ~3 per second, 40-150 ms long, at times independent of the theta phase) and 50 Hz line noise,
  each mixed into every contact with its own gain;
- units whose spikes are an inhomogeneous Bernoulli/Poisson process, at most one spike per sample
  (a one-sample refractory period), with a per-sample probability ``1 - exp(-c exp(drive) / fs)``
  scaled so that the mean rate is ``r0`` (:func:`spike_probability`):

  - ``inh1`` ("inhibitory", theta-phase-gated gamma; generating band ``high_gamma``, gate
    ``theta``): drive ``k * E(t) * exp(kappa * (cos(theta phase - phi_inh) - 1))``, ``kappa = 2``,
    with ``E`` the gamma burst envelope over its mean: an interneuron that fires in gamma bursts,
    but only within a window of its preferred theta phase (theta-nested gamma; Colgin et al. 2009
    Nature 462:353, Tort et al. 2008 PNAS 105:20517; interneurons fire in a preferred theta phase
    range, Klausberger et al. 2003 Nature 421:844). The von Mises gate (peak 1, half-width ~50 deg
    at ``kappa = 2``) replaced a ``(1 + cos) / 2`` gate that still let bursts drive the cell at
    every phase but the opposite one;
  - ``exc1`` ("excitatory", theta phase; band ``theta``): drive ``k * A(t) * cos(theta phase -
    phi_exc)`` with ``A`` the theta amplitude over its mean: phase locking that deepens when theta
    is strong;
  - ``unc1`` (no drive; band ``None``), firing sparsely;
  - ``reb1`` ("rebound", band ``high_gamma``): drive ``k * ((g * E)(t) - E(t))`` with ``g`` a
    causal alpha function of time constant ``tau`` 20-30 ms (:func:`rebound_drive`): a pyramidal
    cell silenced by the perisomatic inhibition of a gamma burst that fires in the tens of ms after
    the burst ends (post-inhibitory rebound: single basket-cell IPSPs phase the rebound spikes of
    pyramidal cells, Cobb et al. 1995 Nature 378:75). Its spiking depends on the LFP's recent past,
    not on the prediction bin's own band amplitude and phase: at the bin, a burst that has just
    ended and no burst at all look alike. It is the unit on which a model of the whole window can
    beat the same-bin GLM; on the development cohort (seed 1) the GLM scored ROC-AUC 0.47-0.55 on
    it, the BiLSTM 0.83-0.86, the oracle 0.93-0.97. Added last, with its own draws after the other
    units', so those units' spikes are the same as before for a given seed.

  Mean rates ``r0`` drawn per participant: 4-10 Hz for the coupled units, 1-3 Hz for ``unc1``
  (firing rates of principal cells are log-normally distributed with most cells under a few Hz,
  Mizuseki & Buzsaki 2013 Cell Rep 4:1010; ``unc1`` stands for such a cell with no relation to
  the recorded LFP; at 4-10 Hz it carried about half of the positive windows, which no model can
  rank). Coupling ``k``: inh1 3-4.5 (raised from 2-3 with the narrower gate, whose mean is
  ``I0(2) exp(-2) ~ 0.31`` instead of 0.5), exc1 2.5-3.5, reb1 2.5-3.5.
  Both couplings are multiplicative (amplitude x phase), so a GLM additive in band amplitude and
  phase can describe them only in part: the simulation is meant to show what a sequence model
  adds, with the true intensity as the ceiling.

Every revision above was tried on a development cohort (seed 1), never on the recipe's seed 0.

Recording length: 120 s per participant by default (it was 60 s; real sessions are many minutes,
the rat recording 20 min): 6,000 prediction bins per unit and participant at 20 ms. On a
development cohort (seed 1, never the recipe's seed 0) the BiLSTM's held-out ROC-AUC of one fold
moved by at most 0.002 between 8,000 and 24,000 training windows (120 and 240 s recordings), so
longer recordings mainly cost time.

What limits every model here is measured, not assumed: on that cohort the oracle (the true
intensity) reaches ROC-AUC 0.99 for ``inh1`` and 0.92 for ``exc1``, the GLM 0.92 and 0.88, and
the GLM given the generating interaction terms explicitly (high-gamma or theta amplitude x cos /
sin of the theta phase, chosen with the ground truth, a diagnostic only) 0.92 and 0.89: the gap to
the oracle is the noise in the band amplitude and phase estimated from the LFP (1/f background,
overlapping bursts), not the GLM's additivity, so a sequence model gains over the GLM mainly by
averaging those estimates over the window.

The drives follow Rasch et al. 2008 (J Neurophysiol 99:1461): high-gamma power and low-frequency
phase carry the information about spiking. The ground truth (which band drives which unit, with
``k``, ``r0``, the gate band and the preferred phase) is written to ``ground_truth.json`` and into
each ``recording.json``, so a leave-one-band-out analysis has a known answer; the true per-sample
spike probability of every unit goes to ``intensity.npy`` ((n_samples, n_units) float32, units in
the order of ``recording.json["intensity"]["units"]``), from which :func:`oracle_auc` computes the
ceiling any model can reach. Output: ``OUT/P01/{lfp.npy, spikes.csv, recording.json,
intensity.npy}``, ... (the :func:`ephys.pipelines.lfp.readers.read_npy_lfp`
layout).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..core.atomic import write_json, write_npy, write_text

#: unit name -> (putative type, generating band, gating band)
UNITS = {"inh1": ("inhibitory", "high_gamma", "theta"), "exc1": ("excitatory", "theta", "theta"),
         "unc1": ("uncoupled", None, None), "reb1": ("rebound", "high_gamma", None)}
INTENSITY = "intensity.npy"
#: concentration of inh1's von Mises theta-phase gate
GATE_KAPPA = 2.0
#: range of the time constant (s) of reb1's alpha-function rebound kernel (peak at tau, mean delay 2 tau)
REBOUND_TAU_S = (0.02, 0.03)
#: default recording length per participant, s
DURATION_S = 120.0
#: per-participant draw range of each unit's coupling k (uniform)
COUPLING = {"inh1": (3.0, 4.5), "exc1": (2.5, 3.5), "unc1": (0.0, 0.0), "reb1": (2.5, 3.5)}
#: per-participant draw range of each unit's mean rate r0, Hz (uniform)
RATE_HZ = {"inh1": (4.0, 10.0), "exc1": (4.0, 10.0), "unc1": (1.0, 3.0), "reb1": (4.0, 10.0)}
#: mean preferred theta phase (rad) of inh1 and exc1 (per participant: normal, SD 0.3 rad)
PREFERRED_PHASE_RAD = {"inh1": float(np.pi), "exc1": 0.0}


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


def rebound_drive(envelope: np.ndarray, fs_hz: float, tau_s: float) -> np.ndarray:
    """``envelope`` (n_samples,) convolved causally with the unit-area alpha function
    ``s / tau^2 exp(-s / tau)`` (s >= 0, peak at ``tau_s``), minus the envelope itself: negative
    while a burst is under way, positive in the tens of ms after it ends. (n_samples,) float64.

    ``fs_hz`` in Hz, ``tau_s`` in s; the kernel is cut at ``8 * tau_s``. The drive of the simulated
    rebound unit ``reb1`` (post-inhibitory rebound of pyramidal cells after basket-cell IPSPs,
    Cobb et al. 1995 Nature 378:75); the alpha-function kernel is the classical synaptic time
    course (Rall 1967 J Neurophysiol 30:1138). Raises nothing (pure numpy/scipy)."""
    from scipy.signal import lfilter

    s = np.arange(int(np.ceil(8 * tau_s * fs_hz)) + 1) / fs_hz
    kernel = s / tau_s ** 2 * np.exp(-s / tau_s) / fs_hz
    return lfilter(kernel / kernel.sum(), [1.0], envelope) - envelope


def spike_probability(log_drive: np.ndarray, rate_hz: float, fs_hz: float) -> np.ndarray:
    """Per-sample spike probability ``1 - exp(-c * exp(log_drive) / fs_hz)`` with ``c`` chosen
    (bisection) so that the mean rate ``mean(p) * fs_hz`` is ``rate_hz``; at most one spike per
    sample (an absolute refractory period of one sample, 4 ms at 250 Hz). (n_samples,) float64.

    The bisection runs over ``c`` in [1e-6, 1e12] (log scale): a strongly coupled drive puts
    most of its intensity into rare samples, and the former upper bound (1e4) left such units
    firing far below ``r0`` in recordings of a few minutes (0.6 Hz for a 6 Hz target at 240 s)."""
    lam = np.exp(log_drive - log_drive.max())
    lam /= lam.mean()
    lo, hi = 1e-6, 1e12
    for _ in range(100):
        mid = np.sqrt(lo * hi)
        if (1.0 - np.exp(-mid * rate_hz * lam / fs_hz)).mean() * fs_hz < rate_hz:
            lo = mid
        else:
            hi = mid
    return 1.0 - np.exp(-np.sqrt(lo * hi) * rate_hz * lam / fs_hz)


def unit_log_drive(unit: str, k: float, gamma_envelope: np.ndarray, theta_phase_rad: np.ndarray,
                   theta_amplitude: np.ndarray, fs_hz: float, phi_rad: float | None = None,
                   tau_s: float | None = None) -> np.ndarray:
    """Log-drive (n_samples,) float64 of a simulated unit (the module docstring's formulas):
    ``inh1`` ``k E exp(kappa (cos(theta - phi) - 1))``, ``exc1`` ``k A cos(theta - phi)``,
    ``reb1`` ``k ((g * E) - E)`` (:func:`rebound_drive`, time constant ``tau_s``), ``unc1`` 0.
    ``gamma_envelope`` E and ``theta_amplitude`` A over their means (dimensionless),
    ``theta_phase_rad`` in rad, all (n_samples,). The simulator passes its latent signals; the
    plug-in ceiling (:func:`plug_in_probability`) passes estimates from the LFP.

    Raises
    ------
    KeyError
        ``unit`` is not one of :data:`UNITS`.
    """
    if unit == "inh1":  # theta-phase-gated gamma: burst drive only within a window of the preferred phase
        return k * gamma_envelope * np.exp(GATE_KAPPA * (np.cos(theta_phase_rad - phi_rad) - 1.0))
    if unit == "exc1":  # theta phase locking whose depth scales with the theta amplitude
        return k * theta_amplitude * np.cos(theta_phase_rad - phi_rad)
    if unit == "reb1":  # post-inhibitory rebound: silenced during a burst, firing in the tens of ms after
        return k * rebound_drive(gamma_envelope, fs_hz, tau_s)
    if unit == "unc1":
        return np.zeros(np.asarray(gamma_envelope).shape[0])
    raise KeyError(unit)


def plug_in_probability(lfp: np.ndarray, fs_hz: float, units: dict, population: bool = True) -> dict:
    """A ceiling for models that read the LFP: the simulator's own formulas
    (:func:`unit_log_drive`) with the latent drives replaced by their estimates from the recorded
    LFP, per sample and unit. {unit: (n_samples,) float64 spike probability per sample}.

    Estimates: the high-gamma band's Hilbert amplitude averaged over channels (for the burst
    envelope E), the theta band's amplitude averaged over channels (A), both over their means,
    and the Hilbert phase of the channel-summed theta band (theta phase) — the bands and filters
    of the models' inputs (:func:`ephys.pipelines.blocks.signal.bands.band_signals`).
    ``population=True``: coupling, rate, preferred phase and rebound time constant at the
    population values (midpoints of :data:`COUPLING`, :data:`RATE_HZ`, :data:`REBOUND_TAU_S`;
    :data:`PREFERRED_PHASE_RAD`), which is what a model trained on other participants can know;
    False: each participant's drawn values from ``units`` (``recording.json["units"]``).
    ``lfp`` (n_samples, n_channels) float, any unit; ``fs_hz`` in Hz.

    Not a strict bound: a model may estimate the drives better than these fixed band filters.
    """
    from scipy.signal import hilbert

    from ..blocks.signal.bands import DEFAULT_BANDS, band_signals, usable_bands

    bands = usable_bands(fs_hz, dict(DEFAULT_BANDS))
    sig = band_signals(np.asarray(lfp, dtype=np.float64), fs_hz,
                       {b: bands[b] for b in ("theta", "high_gamma")})
    env = sig["high_gamma"][1].mean(axis=1)
    a_theta = sig["theta"][1].mean(axis=1)
    phase = np.angle(hilbert(sig["theta"][0].sum(axis=1)))
    env, a_theta = env / env.mean(), a_theta / a_theta.mean()
    out = {}
    for unit, g in units.items():
        if unit not in UNITS:
            continue
        if population:
            k, r0 = float(np.mean(COUPLING[unit])), float(np.mean(RATE_HZ[unit]))
            phi, tau = PREFERRED_PHASE_RAD.get(unit), float(np.mean(REBOUND_TAU_S))
        else:
            k, r0 = float(g["coupling"]), float(g["rate_hz"])
            phi, tau = g.get("preferred_theta_phase_rad"), g.get("rebound_tau_s")
        out[unit] = spike_probability(unit_log_drive(unit, k, env, phase, a_theta, fs_hz, phi, tau), r0, fs_hz)
    return out


def simulate_participant(rng: np.random.Generator, duration_s: float, fs_hz: float, n_channels: int) -> dict:
    """One participant: ``lfp`` (n_samples, n_channels) float64 µV, ``spikes`` {unit: times s},
    ``units`` {unit: ground truth dict}, ``p_spike`` {unit: (n_samples,) true per-sample spike
    probability}, ``drives`` {name: (n_samples,)} (the latent signals)."""
    n = int(round(duration_s * fs_hz))
    t = np.arange(n) / fs_hz
    # theta: drifting frequency (6-8 Hz); amplitude waxing and waning over seconds (theta episodes)
    f_theta = 7.0 + 0.5 * _smooth_noise(rng, n, fs_hz, 1.0)
    phase = 2 * np.pi * np.cumsum(f_theta) / fs_hz + rng.uniform(0, 2 * np.pi)
    a_theta = np.exp(0.5 * _smooth_noise(rng, n, fs_hz, 1.0))
    a_theta /= a_theta.mean()
    theta = a_theta * np.cos(phase)
    # high-gamma bursts (~3 per second, independent of the theta phase in the LFP)
    env = np.zeros(n)
    carrier = np.zeros(n)
    n_bursts = rng.poisson(3.0 * duration_s)
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
    env_n = env / (env.mean() + 1e-12)
    phi_inh = float(rng.normal(PREFERRED_PHASE_RAD["inh1"], 0.3))
    phi_exc = float(rng.normal(PREFERRED_PHASE_RAD["exc1"], 0.3))
    spikes, truth, p_spike = {}, {}, {}
    tau_reb = None
    for unit, (kind, band, gate) in UNITS.items():
        r0 = float(rng.uniform(*RATE_HZ[unit]))
        k = float(rng.uniform(*COUPLING[unit]))
        if unit == "reb1":  # drawn here, after the other units' draws, so they do not change
            tau_reb = float(rng.uniform(*REBOUND_TAU_S))
        drive = unit_log_drive(unit, k, env_n, phase, a_theta, fs_hz,
                               phi_inh if unit == "inh1" else phi_exc, tau_reb)
        p = spike_probability(drive, r0, fs_hz)
        hit = rng.random(n) < p
        spikes[unit] = np.sort((np.flatnonzero(hit) + rng.random(int(hit.sum()))) / fs_hz)
        p_spike[unit] = p
        truth[unit] = {"type": kind, "band": band, "gate_band": gate, "coupling": round(k, 4),
                       "rate_hz": round(r0, 4),
                       "preferred_theta_phase_rad": round(phi_inh if unit == "inh1" else phi_exc, 4) if gate else None,
                       **({"rebound_tau_s": round(tau_reb, 4)} if unit == "reb1" else {})}
    return {"lfp": lfp, "spikes": spikes, "units": truth, "p_spike": p_spike,
            "drives": {"high_gamma": env_n, "theta_phase": phase, "theta_amplitude": a_theta}}


def fetch_synthetic(out: str | Path, n_participants: int = 5, seed: int = 0, duration_s: float = DURATION_S,
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
        write_npy(folder / INTENSITY, np.stack([sim["p_spike"][u] for u in UNITS], axis=1).astype(np.float32))
        write_json(folder / "recording.json", {"fs_hz": fs_hz, "t0_s": 0.0, "group": name, "units": sim["units"],
                                               "channel_names": [f"ch{c + 1}" for c in range(n_channels)],
                                               "unit_lfp": "µV", "simulated": True, "seed": seed,
                                               "intensity": {"file": INTENSITY, "units": list(UNITS),
                                                             "meaning": "true per-sample spike probability"}})
        truth[name] = sim["units"]
        if progress:
            progress(k + 1, n_participants)
    write_json(out / "ground_truth.json", {"seed": seed, "duration_s": duration_s, "fs_hz": fs_hz,
                                           "participants": truth})
    return out


def oracle_bin_probability(folder: str | Path, unit: str, bin_start_s: np.ndarray, bin_s: float) -> np.ndarray | None:
    """The true probability of at least one spike in each prediction bin, from a simulated
    participant folder's ``intensity.npy``: ``1 - prod(1 - p_sample)`` over the bin's samples.

    ``bin_start_s`` (n_bins,) float seconds; returns (n_bins,) float64, or None when the folder
    has no intensity for ``unit`` (not simulated).
    """
    import json

    folder = Path(folder)
    meta_path = folder / "recording.json"
    if not (folder / INTENSITY).is_file() or not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    names = (meta.get("intensity") or {}).get("units") or []
    if unit not in names:
        return None
    p = np.load(folder / INTENSITY, mmap_mode="r")[:, names.index(unit)].astype(np.float64)
    return bin_probability(p, float(meta["fs_hz"]), float(meta.get("t0_s", 0.0)), bin_start_s, bin_s)


def bin_probability(p_sample: np.ndarray, fs_hz: float, t0_s: float, bin_start_s: np.ndarray,
                    bin_s: float) -> np.ndarray:
    """``1 - prod(1 - p)`` over each bin's samples: (n_samples,) per-sample spike probability ->
    (n_bins,) float64 probability of at least one spike in each bin starting at ``bin_start_s``
    (s, on the recording clock that starts at ``t0_s``), ``bin_s`` long."""
    n_bin = max(1, int(round(bin_s * fs_hz)))
    i0 = np.round((np.asarray(bin_start_s, dtype=np.float64) - t0_s) * fs_hz).astype(np.int64)
    idx = np.clip(i0[:, None] + np.arange(n_bin)[None, :], 0, p_sample.size - 1)
    return 1.0 - np.prod(1.0 - np.asarray(p_sample, dtype=np.float64)[idx], axis=1)
