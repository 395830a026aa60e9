"""Simulated intraoperative microelectrode recordings (MER) along DBS trajectories to the STN.

The embedded default dataset of the ``mer`` pipeline (``ephys fetch synthetic --pipeline mer``),
written in the ML-STIM format (Sciscenti et al. 2025): ``data.npz`` with ``data`` (n_recordings x
n_samples float32, shorter recordings zero-padded) and ``metadata.csv`` (``;``-separated:
``patient;side;electrode;depth;length;class``, depth = EDT in µm), plus what a real dataset
lacks: ``artifacts.npz`` (``mask``, the same shape as ``data``, True where an artifact was
injected), ``trajectories.csv`` (the true STN entry and exit and SNr entry EDT of every trajectory)
and ``regions.csv`` (each recording's region: ``above``, ``stn``, ``gap`` or ``snr``, in the rows'
order of ``metadata.csv``; the labels of the four-state trajectory decoder).

What is simulated, and where it comes from:

* **Trajectories**: per patient 2 sides x 1-5 electrodes (the Ben-Gun array: central, anterior,
  posterior, medial, lateral), recordings every 0.5-1 mm from EDT -10 mm to +5 mm, an STN
  segment of 4-7 mm (dorsolateral STN trajectories of 4-7 mm, Zaidel et al. 2009 Mov Disord
  24:1785; Valsky et al. 2017 Mov Disord 32:70) placed so that the planned target (EDT 0) lies in
  it; then a 0-1 mm white-matter gap and the substantia nigra reticulata (SNr).
* **Background activity**: band-limited Gaussian noise (the summed activity of many distant
  units) on top of a white amplifier noise floor. Its RMS, normalised to the white matter above
  the STN (NRMS), jumps to about 2 at the STN entry and decays slowly towards the exit (Moran et
  al. 2006, Brain 129:1098, "Subthalamic nucleus functional organization revealed by parkinsonian
  neuronal oscillations and synchrony"; Zaidel et al. 2009); about 1.3 in the SNr.
* **Units**: biphasic 1-ms spikes. STN (Parkinson's disease): 3-6 units at 25-50 Hz, irregular
  (Poisson), half of them modulated at 13-30 Hz (beta; Levy et al. 2000 J Neurosci 20:7766;
  Weinberger et al. 2006 J Neurophysiol 96:3248) and some bursting (3-8 spikes at 150-300 Hz);
  above the STN (thalamus / zona incerta): 0-2 sparse units at 3-15 Hz; SNr: 1-3 regular units
  at 50-80 Hz (gamma-renewal ISIs, CV ~0.3; Hutchison et al. 1998 Ann Neurol 44:622).
* **Patients** differ in gain (log-normal, sd 0.3) and in the noise floor.
* **Unit**: µV, ML-STIM's. The white-matter background is :data:`BACKGROUND_UV` µV RMS, chosen so that
  the feature ``mad`` of the simulated cohort falls inside ML-STIM's published scaling range (1.36 to
  8.71 µV; :data:`ephys.pipelines.mer.published.FEATURE_MIN` / ``FEATURE_MAX``).
* **Artifacts** on a fraction of recordings: movement bursts (0.1-0.6 s of 4-12x broadband
  noise) and electrode pops (a step decaying over 5-30 ms, 10-40x), both kept as ground truth in
  ``artifacts.npz``; and 50-Hz mains with harmonics on others (not masked: the filters remove it).

Seeded: the same seed and arguments write the same files.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.atomic import atomic_path, write_text
from .dsp import FS_HZ

ELECTRODES = ("Central", "Anterior", "Posterior", "Medial", "Lateral")
#: RMS of the simulated white-matter background, µV (every amplitude below is relative to it)
BACKGROUND_UV = 4.0
SIDES = ("LEFT", "RIGHT")
METADATA_COLUMNS = ("patient", "side", "electrode", "depth", "length", "class")
#: each simulated recording's region (above, stn, gap, snr), row for row with metadata.csv
REGIONS_FILE = "regions.csv"
REGIONS = ("above", "stn", "gap", "snr")


@dataclass
class SimParams:
    """Simulation settings (defaults: the issue's cohort)."""

    n_patients: int = 4
    duration_s: float = 10.0
    max_electrodes: int = 3
    edt_start_mm: float = -10.0
    edt_stop_mm: float = 5.0
    step_mm: tuple[float, float] = (0.5, 1.0)
    stn_length_mm: tuple[float, float] = (4.0, 7.0)
    artifact_fraction: float = 0.25
    mains_fraction: float = 0.3
    short_fraction: float = 0.05  # recordings shorter than the others (zero-padded, as in ML-STIM)


def _spike_template(fs: float, rng) -> np.ndarray:
    t = np.arange(int(1.6e-3 * fs)) / fs * 1e3  # ms
    w1, w2 = rng.uniform(0.08, 0.16), rng.uniform(0.2, 0.35)
    tpl = -np.exp(-((t - 0.35) / w1) ** 2) + rng.uniform(0.3, 0.6) * np.exp(-((t - 0.75) / w2) ** 2)
    return tpl / np.abs(tpl).max()


def _poisson_train(rng, rate_fn, duration_s: float, refractory_s: float = 2e-3, dt: float = 5e-4) -> np.ndarray:
    """Spike times (s) of an inhomogeneous Poisson process (rate_fn(t) in Hz), with a dead time."""
    t = np.arange(0.0, duration_s, dt)
    p = np.clip(rate_fn(t) * dt, 0, 1)
    st = t[rng.random(t.size) < p]
    st = st + rng.uniform(0, dt, st.size)
    if st.size > 1:
        keep = np.concatenate([[True], np.diff(st) > refractory_s])
        st = st[keep]
    return st


def _gamma_train(rng, rate_hz: float, shape: float, duration_s: float) -> np.ndarray:
    n = int(rate_hz * duration_s * 1.5) + 10
    isi = rng.gamma(shape, 1.0 / (shape * rate_hz), n)
    st = np.cumsum(isi) - rng.uniform(0, isi[0])
    return st[(st > 0) & (st < duration_s)]


def _add_bursts(rng, st: np.ndarray, duration_s: float) -> np.ndarray:
    n_b = rng.poisson(rng.uniform(0.5, 2.0) * duration_s)
    extra = []
    for t0 in rng.uniform(0, duration_s, n_b):
        k = rng.integers(3, 9)
        isi = 1.0 / rng.uniform(150, 300)
        extra.append(t0 + isi * np.arange(k))
    if extra:
        st = np.sort(np.concatenate([st, *extra]))
        st = st[st < duration_s]
        keep = np.concatenate([[True], np.diff(st) > 2e-3]) if st.size > 1 else np.ones(st.size, bool)
        st = st[keep]
    return st


def _place(x: np.ndarray, st_s: np.ndarray, tpl: np.ndarray, amp: float, fs: float) -> None:
    idx = (st_s * fs).astype(np.int64)
    idx = idx[idx + tpl.size < x.size]
    if idx.size:
        x[idx[:, None] + np.arange(tpl.size)] += amp * tpl


def simulate_recording(rng: np.random.Generator, region: str, position: float, duration_s: float,
                       gain: float, floor: float, artifact: bool, mains: bool, fs: float = FS_HZ
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One MER of ``duration_s`` seconds.

    Parameters
    ----------
    region : ``"above"`` (thalamus / zona incerta / white matter), ``"stn"``, ``"gap"``
        (white matter below the STN) or ``"snr"``
    position : for ``"stn"``, the relative depth inside the nucleus, 0 (entry) .. 1 (exit)
    gain : the patient's overall gain; floor : the amplifier noise floor (background units)
    artifact : inject a movement burst or an electrode pop; mains : add 50-Hz mains + harmonics

    Returns
    -------
    (x float32 (n,) in µV, mask bool (n,)) with n = round(duration_s * fs); ``mask`` marks the
    injected transient artifacts. The white-matter background is ~:data:`BACKGROUND_UV` µV RMS.
    """
    from scipy.signal import butter, sosfilt

    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    if region == "stn":
        nrms = rng.uniform(1.7, 2.4) * (1.0 - 0.3 * position)  # Moran et al. 2006: high at entry
    elif region == "snr":
        nrms = rng.uniform(1.1, 1.5)
    else:
        nrms = rng.uniform(0.8, 1.15)
    sos = butter(2, [300.0, 3000.0], btype="bandpass", fs=fs, output="sos")
    bg = sosfilt(sos, rng.standard_normal(n))
    bg *= nrms / (bg.std() + 1e-12)
    x = bg + floor * rng.standard_normal(n)
    if region == "stn":
        n_units, rates = rng.integers(3, 7), (25.0, 50.0)
    elif region == "snr":
        n_units, rates = rng.integers(1, 4), (50.0, 80.0)
    elif region == "gap":
        n_units, rates = rng.integers(0, 2), (3.0, 10.0)
    else:
        n_units, rates = rng.integers(0, 3), (3.0, 15.0)
    for _ in range(int(n_units)):
        rate = rng.uniform(*rates)
        if region == "snr":
            st = _gamma_train(rng, rate, rng.uniform(8, 14), duration_s)
        elif region == "stn":
            if rng.random() < 0.5:  # beta-oscillatory unit
                f_b, m, ph = rng.uniform(13, 30), rng.uniform(0.4, 0.9), rng.uniform(0, 2 * np.pi)
                st = _poisson_train(rng, lambda tt: rate * (1 + m * np.sin(2 * np.pi * f_b * tt + ph)), duration_s)
            else:
                st = _poisson_train(rng, lambda tt: np.full(tt.size, rate), duration_s)
            if rng.random() < 0.4:
                st = _add_bursts(rng, st, duration_s)
        else:
            st = _poisson_train(rng, lambda tt: np.full(tt.size, rate), duration_s)
        amp = rng.uniform(2.0, 6.0) * (1.0 if region == "stn" else rng.uniform(0.6, 1.0))
        _place(x, st, _spike_template(fs, rng), amp, fs)
    if mains:
        amp = rng.uniform(0.5, 3.0)
        for h in range(1, 11):
            x += amp / h * np.sin(2 * np.pi * 50.0 * h * t + rng.uniform(0, 2 * np.pi))
    mask = np.zeros(n, dtype=bool)
    if artifact:
        for _ in range(int(rng.integers(1, 3))):
            if rng.random() < 0.5:  # movement burst
                dur = int(rng.uniform(0.1, 0.6) * fs)
                s0 = int(rng.integers(int(0.2 * fs), max(int(0.2 * fs) + 1, n - dur)))
                env = np.hanning(dur) ** 0.5
                x[s0:s0 + dur] += rng.uniform(4, 12) * nrms * env * rng.standard_normal(dur)
                mask[s0:s0 + dur] = True
            else:  # electrode pop: a step that decays
                tau = rng.uniform(5e-3, 30e-3)
                dur = int(5 * tau * fs)
                s0 = int(rng.integers(int(0.2 * fs), max(int(0.2 * fs) + 1, n - dur)))
                x[s0:s0 + dur] += rng.choice([-1, 1]) * rng.uniform(10, 40) * nrms * np.exp(-np.arange(dur) / (tau * fs))
                mask[s0:s0 + dur] = True
    return (gain * BACKGROUND_UV * x).astype(np.float32), mask


def simulate_cohort(params: SimParams, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None):
    """Simulate ``params.n_patients`` patients (``progress(patients_done, n_patients)``).

    Returns
    -------
    (data float32 (N, M), mask bool (N, M), rows list[dict] of the metadata columns,
    trajectories list[dict] with patient, side, electrode, entry_um, exit_um, snr_entry_um); each row
    also has ``region`` (above / stn / gap / snr), which ``metadata.csv`` does not hold)
    """
    rng = np.random.default_rng(seed)
    fs = FS_HZ
    m = int(round(params.duration_s * fs))
    plans = []
    for p in range(params.n_patients):
        pid = f"P{p + 1:02d}"
        gain = float(np.exp(rng.normal(0, 0.3)))
        floor = float(rng.uniform(0.2, 0.6))
        for side in SIDES:
            n_el = int(rng.integers(1, params.max_electrodes + 1))
            base_entry = rng.uniform(-4.5, -1.0)
            base_len = rng.uniform(*params.stn_length_mm)
            step = rng.uniform(*params.step_mm)
            depths = np.arange(params.edt_start_mm, params.edt_stop_mm + 1e-9, step)
            for e in range(n_el):
                entry = base_entry + (rng.uniform(-1, 1) if e else 0.0)
                length = float(np.clip(base_len + (rng.uniform(-1, 1) if e else 0.0), *params.stn_length_mm))
                exit_ = entry + length
                gap = rng.uniform(0.0, 1.0)
                plans.append((pid, side, ELECTRODES[e], gain, floor, depths, entry, exit_, gap))
    total = sum(len(pl[5]) for pl in plans)
    last_of_patient = {pl[0]: k for k, pl in enumerate(plans)}
    data = np.zeros((total, m), dtype=np.float32)
    mask = np.zeros((total, m), dtype=bool)
    rows, trajs = [], []
    i = 0
    for k, (pid, side, el, gain, floor, depths, entry, exit_, gap) in enumerate(plans):
        trajs.append({"patient": pid, "side": side, "electrode": el, "entry_um": int(round(entry * 1000)),
                      "exit_um": int(round(exit_ * 1000)), "snr_entry_um": int(round((exit_ + gap) * 1000))})
        for d in depths:
            d_um = int(round(d * 1000))
            d_mm = d_um / 1000
            if d_mm < entry:
                region, pos = "above", 0.0
            elif d_mm <= exit_:
                region, pos = "stn", (d_mm - entry) / (exit_ - entry)
            elif d_mm <= exit_ + gap:
                region, pos = "gap", 0.0
            else:
                region, pos = "snr", 0.0
            dur = params.duration_s
            if rng.random() < params.short_fraction:
                dur = params.duration_s * rng.uniform(0.6, 0.95)
            x, mk = simulate_recording(rng, region, pos, dur, gain, floor, rng.random() < params.artifact_fraction,
                                       rng.random() < params.mains_fraction, fs)
            data[i, :x.size] = x
            mask[i, :x.size] = mk
            rows.append({"patient": pid, "side": side, "electrode": el, "depth": d_um, "length": int(x.size),
                         "class": int(region == "stn"), "region": region})
            i += 1
        if progress and last_of_patient[pid] == k:
            progress(int(pid[1:]), params.n_patients)
    return data, mask, rows, trajs


def _csv(rows: list[dict], cols, delimiter=";") -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(cols), delimiter=delimiter, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def fetch_synthetic(out: str | Path, n_patients: int = 4, seed: int = 0, duration_s: float = 10.0,
                    max_electrodes: int = 3, progress: Callable[[int, int], None] | None = None,
                    nwb: bool = False, **overrides) -> Path:
    """Write a simulated MER cohort in the ML-STIM format into ``out``; returns ``out``.

    Files: ``data.npz`` (``data`` float32 (N, M)), ``metadata.csv`` (``;``-separated, the
    ML-STIM columns), ``artifacts.npz`` (``mask`` bool (N, M), the injected artifacts),
    ``trajectories.csv`` (true STN entry / exit and SNr entry EDT in µm per trajectory), ``regions.csv``
    (``;``-separated: the metadata columns patient, side, electrode, depth and each recording's
    ``region``, row for row with ``metadata.csv``). About 1 MB per 10-s
    recording (float32); ~20 recordings per trajectory. ``nwb=True`` also writes the same
    recordings as ``nwb/<patient>.nwb`` (one ElectricalSeries per recording; the convention of
    :data:`ephys.pipelines.mer.readers.NWB_KEYS`).
    """
    out = Path(out)
    params = SimParams(n_patients=n_patients, duration_s=duration_s, max_electrodes=max_electrodes, **overrides)
    data, mask, rows, trajs = simulate_cohort(params, seed=seed, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "data.npz", suffix=".npz") as tmp:
        np.savez(tmp, data=data)
    with atomic_path(out / "artifacts.npz", suffix=".npz") as tmp:
        np.savez_compressed(tmp, mask=mask)
    write_text(out / "trajectories.csv", _csv(trajs, ("patient", "side", "electrode", "entry_um", "exit_um",
                                                      "snr_entry_um")))
    write_text(out / REGIONS_FILE, _csv(rows, ("patient", "side", "electrode", "depth", "region")))
    if nwb:
        from .readers import MerRecording, write_nwb

        by_patient: dict = {}
        for i, r in enumerate(rows):
            rid = f"{r['patient']}_{r['side']}_{r['electrode']}_{r['depth']}um"
            by_patient.setdefault(r["patient"], []).append(
                MerRecording(rid, r["patient"], r["side"], r["electrode"], float(r["depth"]), r["class"],
                             data[i, :r["length"]], FS_HZ))
        for pid, recs in by_patient.items():
            write_nwb(recs, out / "nwb" / f"{pid}.nwb", patient=pid)
    write_text(out / "metadata.csv", _csv(rows, METADATA_COLUMNS))  # last: its presence marks a full dataset
    return out
