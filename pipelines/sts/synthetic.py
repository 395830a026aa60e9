"""The embedded default dataset: simulated current-clamp recordings of four cortical cell classes.

Every cell is an adaptive exponential integrate-and-fire neuron (AdEx; Brette & Gerstner 2005,
J Neurophysiol 94:3637-3642)::

    C dV/dt  = -gL (V - EL) + gL DT exp((V - VT) / DT) - w + I_step + I_noise
    tw dw/dt = a (V - EL) - w
    when V >= VT + 5 DT:  V <- Vr,  w <- w + b   (cut-off as in Brette & Gerstner 2005)

driven by an Allen-style long-square protocol (1 s current steps; Allen Cell Types Database
electrophysiology white paper, 2015). The parameter sets start from the firing-pattern table of
Naud, Marcille, Clopath & Gerstner (2008), "Firing patterns in the adaptive exponential
integrate-and-fire model", Biol Cybern 99:335-347 (Table 1):

========== ================================== ============================================
class      Naud et al. 2008 pattern           what it gives
========== ================================== ============================================
Excitatory "adaptation"                       regular spiking, spike-frequency adaptation
Pvalb      "tonic spiking" (b = 0)            fast, non-adapting, high rheobase, narrow AP
Sst        "initial burst"                    low threshold, initial burst then adaptation,
                                              mild rebound after hyperpolarisation
Vip/Lamp5  "irregular spiking" (Vip-like) or  irregular / bursty, or delayed onset with
           "delayed accelerating" (Lamp5-like) accelerating rate; one of the two per cell
========== ================================== ============================================

The AdEx firing pattern depends only on the dimensionless ratios tw/tm, a/gL, b/(gL DT) and the
reset (Naud et al. 2008; Touboul & Brette 2008, Biol Cybern 99:319-334), so C, gL, a and b of
each set are scaled by one common factor (``scale`` in the templates) to bring input
resistance, membrane time constant and rheobase near the class medians reported for mouse
visual cortex by the Allen Cell Types Database (Gouwens et al. 2019, Nat Neurosci
22:1182-1195: excitatory ~150 MOhm, Pvalb ~100 MOhm with the highest rheobase, Sst and
Vip/Lamp5 150-300 MOhm). These targets are approximate
and only meant to make the classes look like their real counterparts, not to fit any cell.

Each cell draws its own parameters around the class template (lognormal jitter of 10-25 % on
conductances, capacitance and adaptation, normal jitter of 1.5-4 mV on potentials) so that the
classes overlap the way real ones do (draws clipped at 2.5 SD). Membrane noise is an
Ornstein-Uhlenbeck current (tau 5 ms, as the fluctuating synaptic input of Destexhe et al. 2001,
Neuroscience 107:13-24) sized for ~0.6-1.2 mV membrane fluctuations; recording noise is white
(0.15 mV SD).

AdEx has no spike shape, so when V crosses the cut-off a short action potential is drawn on the
output trace (smooth rise from the cut-off to a peak of +10..+45 mV, fall to the reset
potential; half-width ~0.3 ms for Pvalb, ~0.5-0.6 ms for Sst and Vip/Lamp5, ~0.9 ms for
excitatory cells, as in Gouwens et al. 2019), during which the model is held at Vr (refractory).
A dV/dt-threshold detector therefore sees real upstrokes; the true AP peak times are returned.

Speed: all sweeps of all cells of a batch are integrated together (one time loop over numpy
arrays of cells x sweeps lanes, forward Euler with <= 0.05 ms substeps), well under 1 s per cell
on one core. Everything is seeded: each cell has its own ``numpy.random.Generator`` built from
``(seed, class index, index within class)``, so a cell does not depend on which other cells are
simulated with it (up to floating-point rounding of vectorised maths) and the same seed gives
identical files.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.atomic import atomic_path, write_text
from ..core.errors import EphysError
from ..blocks.readers.sweeps import Sweep

CELL_CLASSES: tuple[str, ...] = ("Excitatory", "Pvalb", "Sst", "Vip/Lamp5")

GENERATOR = "ephys.pipelines.synthetic v1"

# --- long-square protocol (Allen Cell Types Database, electrophysiology white paper 2015) -------
BASELINE_S = 0.2  # before the step
STEP_S = 1.0  # the step
AFTER_S = 0.3  # after the step
SWEEP_S = BASELINE_S + STEP_S + AFTER_S
SWEEP_INTERVAL_S = 5.0  # start-to-start, only used for t0 / NWB starting_time
HYPERPOLARISING_PA = -50.0
SUBTHRESHOLD_FRACTIONS = (0.5, 0.8)  # x rheobase
SUPRATHRESHOLD_FRACTIONS = (1.0, 1.2, 1.4, 1.6, 1.9, 2.2, 2.6, 3.0)  # x rheobase
N_SWEEPS = 1 + len(SUBTHRESHOLD_FRACTIONS) + len(SUPRATHRESHOLD_FRACTIONS)

MAX_DT_MS = 0.05  # Euler substep
NOISE_TAU_MS = 5.0  # OU current noise correlation time
RECORDING_NOISE_MV = 0.15
BATCH_CELLS = 32  # cells integrated together (memory ~ 32 x 11 x 15000 x 8 B = 42 MB at 10 kHz)

# --- class templates ----------------------------------------------------------------------------
# Units: C pF, gL nS, EL/VT/DT/Vr mV, a nS, tau_w ms, b pA, ap_peak mV, ap_hw ms (AP half-width),
# noise_mV: target SD of the membrane-potential fluctuations at rest.
# "naud" names the row of Naud et al. 2008 Table 1 the template is scaled from, "scale" the common
# factor applied to C, gL, a and b of that row.
_TEMPLATES: dict[str, dict] = {
    "excitatory": dict(
        naud="adaptation", scale=0.6,  # Naud: C 200, gL 12, EL -70, VT -50, DT 2, a 2, tw 300, b 60, Vr -58
        C=120.0, gL=7.2, EL=-72.0, VT=-50.0, DT=2.0, a=1.2, tau_w=250.0, b=25.0, Vr=-57.0,
        ap_peak=35.0, ap_hw=0.9, noise_mV=0.8,
    ),
    "pvalb": dict(
        naud="tonic spiking", scale=0.45,  # Naud: C 200, gL 10, EL -70, VT -50, DT 2, a 2, tw 30, b 0, Vr -58
        C=90.0, gL=12.0, EL=-72.0, VT=-46.0, DT=1.5, a=0.9, tau_w=30.0, b=0.0, Vr=-65.0,
        ap_peak=20.0, ap_hw=0.3, noise_mV=0.6,
    ),
    "sst": dict(
        naud="initial burst", scale=0.28,  # Naud: C 130, gL 18, EL -58, VT -50, DT 2, a 4, tw 150, b 120, Vr -50
        C=40.0, gL=5.0, EL=-63.0, VT=-52.0, DT=2.0, a=1.1, tau_w=150.0, b=30.0, Vr=-52.0,
        ap_peak=30.0, ap_hw=0.5, noise_mV=1.0,
    ),
    "vip": dict(
        naud="irregular spiking", scale=0.5,  # Naud: C 100, gL 12, EL -60, VT -50, DT 2, a -11, tw 130, b 30, Vr -48
        C=50.0, gL=6.0, EL=-66.0, VT=-50.0, DT=2.0, a=-3.0, tau_w=130.0, b=15.0, Vr=-48.0,
        ap_peak=30.0, ap_hw=0.6, noise_mV=1.2,
    ),
    "lamp5": dict(
        naud="delayed accelerating", scale=0.45,  # Naud: C 200, gL 12, EL -70, VT -50, DT 2, a -10, tw 300, b 0, Vr -58
        C=90.0, gL=6.0, EL=-72.0, VT=-50.0, DT=2.0, a=-3.0, tau_w=300.0, b=0.0, Vr=-62.0,
        ap_peak=30.0, ap_hw=0.6, noise_mV=0.8,
    ),
}
_CLASS_TEMPLATES = {
    "Excitatory": ("excitatory",),
    "Pvalb": ("pvalb",),
    "Sst": ("sst",),
    "Vip/Lamp5": ("vip", "lamp5"),
}
# jitter: lognormal SD (fraction) for positive scale parameters, normal SD (mV) for potentials
_LOGNORMAL_SD = dict(C=0.15, gL=0.2, a=0.2, tau_w=0.2, b=0.25, DT=0.1, ap_hw=0.12, noise_mV=0.25)
_NORMAL_SD = dict(EL=3.0, VT=2.0, Vr=1.5, ap_peak=4.0)

_SOURCES = (
    "AdEx model: Brette & Gerstner 2005, J Neurophysiol 94:3637. Parameter sets scaled from "
    "Naud et al. 2008, Biol Cybern 99:335, Table 1. Class targets: Gouwens et al. 2019, "
    "Nat Neurosci 22:1182 (Allen Cell Types). Protocol: Allen long square."
)


@dataclass
class SimulatedCell:
    """One simulated cell.

    Attributes
    ----------
    cell_id : str
        e.g. ``"syn_vip_lamp5_003"``.
    label : str
        One of :data:`CELL_CLASSES`.
    sweeps : list[Sweep]
        Long-square sweeps, ``v_mV``/``i_pA`` float64 of shape ``(round(1.5 s * fs),)``, with
        ``stim_amp_pA``, ``stim_start_s`` (0.2 s) and ``stim_end_s`` (1.2 s) filled; the first is
        the -50 pA sweep, then increasing amplitudes.
    spike_times_s : list[np.ndarray]
        Per sweep, the true AP peak times (float64, seconds from the sweep start).
    params : dict
        The cell's model parameters (units as in the module's templates), its ``rheobase_pA``
        (1 s step, noiseless search), ``template``/``naud_pattern`` and ``source``.
    """

    cell_id: str
    label: str
    sweeps: list[Sweep]
    spike_times_s: list[np.ndarray]
    params: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------


def simulate_cells(classes: list[str], seed: int = 0, fs_hz: float = 10_000.0) -> list[SimulatedCell]:
    """Simulate one cell per entry of ``classes``.

    Parameters
    ----------
    classes : list[str]
        The class of each cell to simulate, each one of :data:`CELL_CLASSES`. The k-th
        occurrence of a class gets index k, so ``["Sst", "Sst"]`` gives ``syn_sst_000`` and
        ``syn_sst_001``; a cell depends only on ``(seed, class, k)``.
    seed : int
        Seed of every random draw (parameters, noise).
    fs_hz : float
        Sampling rate of the sweeps, Hz (>= 2 kHz). Each sweep is 1.5 s long.

    Returns
    -------
    list[SimulatedCell], in the order of ``classes``, each with :data:`N_SWEEPS` (11) sweeps:
    -50 pA, 0.5 and 0.8 x rheobase, then 1.0 ... 3.0 x rheobase.

    Raises
    ------
    EphysError
        Unknown class name, or ``fs_hz`` below 2 kHz.

    Sources: Brette & Gerstner 2005 (model), Naud et al. 2008 (parameter sets), Gouwens et al.
    2019 (class targets), Allen long-square protocol; see the module docstring.
    """
    counts: dict[str, int] = {}
    specs = []
    for label in classes:
        k = counts.get(label, 0)
        counts[label] = k + 1
        specs.append((label, k))
    return _simulate_specs(specs, seed, fs_hz)


def write_cell_nwb(path: str | Path, cell: SimulatedCell) -> Path:
    """Write one simulated cell to an NWB 2 file (pynwb icephys), atomically.

    One ``IntracellularElectrode``; per sweep a ``CurrentClampStimulusSeries`` (float32 pA with
    ``conversion=1e-12``, unit amperes) and a ``CurrentClampSeries`` (float32 mV with
    ``conversion=1e-3``, unit volts), both with ``sweep_number`` and
    ``stimulus_description="long_square"``, linked by ``add_intracellular_recording``. The
    session description names the class; ``notes`` holds a JSON provenance record (generator,
    seed, fs) that :func:`fetch_synthetic` uses to recognise a complete file.

    Returns ``Path(path)``. Raises ``EphysError`` if the file cannot be written.
    """
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    path = Path(path)
    stamp = datetime(2024, 1, 1, tzinfo=timezone.utc)  # fixed: same seed -> identical files
    notes = {
        "generator": GENERATOR,
        "seed": cell.params.get("seed"),
        "fs_hz": cell.sweeps[0].fs_hz if cell.sweeps else None,
        "n_sweeps": len(cell.sweeps),
        "label": cell.label,
        "rheobase_pA": cell.params.get("rheobase_pA"),
    }
    nwb = NWBFile(
        session_description=f"Simulated {cell.label} cell (AdEx model), long-square current clamp",
        identifier=cell.cell_id,
        session_start_time=stamp,
        file_create_date=[stamp],
        experiment_description=_SOURCES,
        notes=json.dumps(notes, sort_keys=True),
        source_script="ephys.pipelines.synthetic",
        source_script_file_name="synthetic.py",
    )
    nwb.subject = Subject(
        subject_id=cell.cell_id,
        species="Mus musculus (simulated)",
        description=f"simulated {cell.label} neuron; parameters: "
        + json.dumps({k: v for k, v in cell.params.items() if isinstance(v, (int, float, str))}, sort_keys=True),
    )
    device = nwb.create_device(name="AdEx simulator", description="ephys.pipelines.synthetic")
    electrode = nwb.create_icephys_electrode(
        name="electrode_0", description="simulated whole-cell electrode", device=device
    )
    for k, sw in enumerate(cell.sweeps):
        stim = CurrentClampStimulusSeries(
            name=f"stim_{k:03d}",
            data=np.asarray(sw.i_pA, dtype=np.float32),
            electrode=electrode,
            gain=1.0,
            stimulus_description="long_square",
            conversion=1e-12,
            unit="amperes",
            starting_time=float(sw.t0_s),
            rate=float(sw.fs_hz),
            sweep_number=np.uint64(k),
            description=f"{sw.stim_amp_pA:g} pA step from {sw.stim_start_s:g} s to {sw.stim_end_s:g} s",
        )
        resp = CurrentClampSeries(
            name=sw.sweep_id,
            data=np.asarray(sw.v_mV, dtype=np.float32),
            electrode=electrode,
            gain=1.0,
            stimulus_description="long_square",
            conversion=1e-3,
            unit="volts",
            starting_time=float(sw.t0_s),
            rate=float(sw.fs_hz),
            sweep_number=np.uint64(k),
            bias_current=0.0,
            bridge_balance=0.0,
            capacitance_compensation=0.0,
        )
        nwb.add_intracellular_recording(electrode=electrode, stimulus=stim, response=resp)
    _deterministic_object_ids(nwb, cell.cell_id)
    try:
        with atomic_path(path) as tmp:
            with NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwb)
    except OSError as exc:
        raise EphysError(f"cannot write NWB file ({exc.__class__.__name__}: {exc})", path) from exc
    return path


def _deterministic_object_ids(nwbfile, key: str) -> None:
    """Replace hdmf's random uuid4 object ids by uuid5(key, position) so files are reproducible."""
    import uuid

    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "ephys.pipelines.synthetic/" + key)
    for n, obj in enumerate([nwbfile, *nwbfile.all_children()]):
        if hasattr(obj, "_AbstractContainer__object_id"):
            obj._AbstractContainer__object_id = str(uuid.uuid5(namespace, str(n)))


def fetch_synthetic(
    out_dir: str | Path,
    n_per_class: int = 20,
    seed: int = 0,
    fs_hz: float = 10_000.0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Create (or complete) the simulated dataset in ``out_dir``.

    Writes ``out_dir/<cell_id>.nwb`` for ``n_per_class`` cells of each of :data:`CELL_CLASSES`
    (ids ``syn_excitatory_000``, ``syn_pvalb_000``, ``syn_sst_000``, ``syn_vip_lamp5_000``, ...)
    and ``out_dir/labels.csv`` with columns ``path,label`` (paths relative to the CSV).
    Idempotent: a cell file that exists and was written by this generator with the same seed,
    sampling rate and sweep count is kept; only missing or stale cells are simulated.
    ``progress(n_done, n_total)`` is called after each cell (kept cells count as done).

    Returns ``Path(out_dir)``. Raises ``EphysError`` for ``n_per_class < 1`` or an unwritable
    folder. Sources: see :func:`simulate_cells`.
    """
    out = Path(out_dir)
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise EphysError(f"n_per_class must be a positive integer (got {n_per_class!r})", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EphysError(f"cannot create folder ({exc.strerror or exc})", out) from exc
    specs = [(label, k) for label in CELL_CLASSES for k in range(int(n_per_class))]
    total = len(specs)
    todo = [s for s in specs if not _is_complete(out / f"{cell_id_for(*s)}.nwb", seed, fs_hz)]
    done = total - len(todo)
    if progress is not None:
        progress(done, total)
    for start in range(0, len(todo), BATCH_CELLS):
        for cell in _simulate_specs(todo[start:start + BATCH_CELLS], seed, fs_hz):
            write_cell_nwb(out / f"{cell.cell_id}.nwb", cell)
            done += 1
            if progress is not None:
                progress(done, total)
    lines = ["path,label"] + [f"{cell_id_for(*s)}.nwb,{s[0]}" for s in specs]
    write_text(out / "labels.csv", "\n".join(lines) + "\n")
    return out


def cell_id_for(label: str, index: int) -> str:
    """Cell id of the ``index``-th simulated cell of class ``label``: ``syn_<slug>_<index:03d>``."""
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    return f"syn_{slug}_{index:03d}"


# ------------------------------------------------------------------------------------------------
# simulation
# ------------------------------------------------------------------------------------------------


def _simulate_specs(specs: list[tuple[str, int]], seed: int, fs_hz: float) -> list[SimulatedCell]:
    fs_hz = float(fs_hz)
    if not math.isfinite(fs_hz) or fs_hz < 2000.0:
        raise EphysError(f"sampling rate must be at least 2000 Hz for simulated spikes (got {fs_hz:g})")
    for label, _ in specs:
        if label not in CELL_CLASSES:
            raise EphysError(f"unknown cell class {label!r} (expected one of {', '.join(CELL_CLASSES)})")
    cells: list[SimulatedCell] = []
    for start in range(0, len(specs), BATCH_CELLS):
        cells.extend(_simulate_batch(specs[start:start + BATCH_CELLS], int(seed), fs_hz))
    return cells


def _draw_params(label: str, rng: np.random.Generator) -> dict:
    """Per-cell parameters: the class template with lognormal / normal jitter."""
    names = _CLASS_TEMPLATES[label]
    name = names[int(rng.integers(len(names)))] if len(names) > 1 else names[0]
    t = _TEMPLATES[name]
    p = {"template": name, "naud_pattern": t["naud"], "naud_scale": t["scale"]}
    for key in ("C", "gL", "EL", "VT", "DT", "a", "tau_w", "b", "Vr", "ap_peak", "ap_hw", "noise_mV"):
        v = float(t[key])
        z = float(np.clip(rng.standard_normal(), -2.5, 2.5))  # no extreme tails
        if key in _LOGNORMAL_SD:
            v *= float(np.exp(z * _LOGNORMAL_SD[key]))
        elif key in _NORMAL_SD:
            v += z * _NORMAL_SD[key]
        p[key] = v
    # keep the dynamics in the regime of the template
    p["a"] = max(p["a"], -0.75 * p["gL"])  # a <= -gL has no resting state; keep R_in(steady) <= 4x
    p["Vr"] = min(p["Vr"], p["VT"] + 2.0)
    p["EL"] = min(p["EL"], p["VT"] - 8.0)  # a stable, non-firing rest
    p["ap_peak"] = float(np.clip(p["ap_peak"], 10.0, 45.0))
    p["source"] = _SOURCES
    return p


def _lane_params(params: list[dict], reps: int) -> dict[str, np.ndarray]:
    """Stack per-cell parameter dicts into per-lane arrays (each cell repeated ``reps`` times)."""
    keys = ("C", "gL", "EL", "VT", "DT", "a", "tau_w", "b", "Vr", "ap_peak", "ap_hw", "noise_mV")
    return {k: np.repeat(np.array([p[k] for p in params], dtype=np.float64), reps) for k in keys}


def _integrate(
    P: dict[str, np.ndarray],
    amps_pA: np.ndarray,
    n_out: int,
    fs_hz: float,
    on_idx: int,
    off_idx: int,
    noise_streams: list[tuple[np.random.Generator, int]] | None = None,
    record: bool = True,
    max_dt_ms: float = MAX_DT_MS,
) -> tuple[np.ndarray | None, list[list[float]]]:
    """Integrate AdEx lanes; return (V at the output samples, per-lane AP peak times in ms).

    ``P`` holds per-lane arrays (shape (L,)), ``amps_pA`` the step amplitude of each lane; the
    step is on for output samples ``on_idx <= n < off_idx``. ``noise_streams`` lists, in lane
    order, ``(generator, n_lanes)`` blocks supplying the OU noise of each cell; ``None`` means
    noiseless. V is float64 (L, n_out) in mV with the drawn APs, or None if ``record`` is False.
    """
    L = amps_pA.shape[0]
    dt_out = 1000.0 / fs_hz  # ms
    n_sub = max(1, int(math.ceil(dt_out / max_dt_ms - 1e-9)))
    h = dt_out / n_sub
    C, gL, EL, VT, DT = P["C"], P["gL"], P["EL"], P["VT"], P["DT"]
    a, b, Vr = P["a"], P["b"], P["Vr"]
    h_over_C = h / C
    h_over_tw = h / P["tau_w"]
    gLDT = gL * DT
    inv_DT = 1.0 / DT
    v_cut = VT + 5.0 * DT
    ap_rise = 0.6 * P["ap_hw"]
    ap_fall = 1.4 * P["ap_hw"]
    ap_dur = ap_rise + ap_fall
    peak = P["ap_peak"]

    V = EL.copy()
    w = np.zeros(L)
    t_cross = np.full(L, -1e9)
    ref_until = np.full(L, -1e9)
    spikes: list[list[float]] = [[] for _ in range(L)]
    out = np.empty((L, n_out)) if record else None

    noisy = noise_streams is not None
    if noisy:
        decay = math.exp(-dt_out / NOISE_TAU_MS)
        # OU current SD giving ~noise_mV membrane fluctuations at rest (passive membrane filter)
        tau_m = C / gL
        sigma_I = P["noise_mV"] * gL * np.sqrt((NOISE_TAU_MS + tau_m) / NOISE_TAU_MS)
        kick = sigma_I * math.sqrt(1.0 - decay * decay)
        eta = sigma_I * _draw_noise(noise_streams, 1)[0]
        chunk = 2048
        z = None

    zeros = np.zeros(L)
    for n in range(n_out):
        t_n = n * dt_out
        if record:
            out[:, n] = V
            since = t_n - t_cross
            in_ap = np.flatnonzero(since < ap_dur)
            if in_ap.size:
                s = since[in_ap]
                r, f = ap_rise[in_ap], ap_fall[in_ap]
                rising = s < r
                vr = v_cut[in_ap] + (peak[in_ap] - v_cut[in_ap]) * np.sin(0.5 * np.pi * np.minimum(s / r, 1.0)) ** 2
                vf = Vr[in_ap] + (peak[in_ap] - Vr[in_ap]) * np.cos(0.5 * np.pi * np.clip((s - r) / f, 0.0, 1.0)) ** 2
                out[in_ap, n] = np.where(rising, vr, vf)
        I = amps_pA if on_idx <= n < off_idx else zeros
        if noisy:
            j = n % chunk
            if j == 0:
                z = _draw_noise(noise_streams, min(chunk, n_out - n))
            eta = eta * decay + kick * z[j]
            I = I + eta
        for s_i in range(n_sub):
            t = t_n + (s_i + 1) * h
            dV = (gL * (EL - V) + gLDT * np.exp(np.minimum((V - VT) * inv_DT, 30.0)) - w + I) * h_over_C
            dV *= t >= ref_until  # held at Vr during the drawn AP
            w += (a * (V - EL) - w) * h_over_tw
            V += dV
            crossed = V >= v_cut
            if crossed.any():
                idx = np.flatnonzero(crossed)
                # linear interpolation of the crossing inside the substep
                frac = np.clip((V[idx] - v_cut[idx]) / np.maximum(dV[idx], 1e-12), 0.0, 1.0)
                tc = t - frac * h
                V[idx] = Vr[idx]
                w[idx] += b[idx]
                t_cross[idx] = tc
                ref_until[idx] = tc + ap_dur[idx]
                for lane, tci in zip(idx.tolist(), tc.tolist()):
                    spikes[lane].append(tci + ap_rise[lane])
    return out, spikes


def _draw_noise(streams: list[tuple[np.random.Generator, int]], n: int) -> np.ndarray:
    """(n, L) standard normals, each cell's block of lanes from its own generator."""
    return np.concatenate([rng.standard_normal((n, k)) for rng, k in streams], axis=1)


def _find_rheobase(params: list[dict]) -> np.ndarray:
    """Smallest 1-s step (pA) that evokes >= 1 spike from rest, noiseless; coarse-to-fine grid.

    Pass 1: 28 amplitudes geometrically spaced 5..2000 pA; pass 2: 7 values between the last
    silent and the first spiking amplitude (resolution ~4 %). Euler steps of 0.1 ms (the sweeps
    use 0.05 ms): the search only places the protocol's amplitudes.
    """
    fs = 10_000.0
    n = int(round(STEP_S * fs))
    n_cells = len(params)
    grid = np.geomspace(5.0, 2000.0, 28)
    P = _lane_params(params, grid.size)
    _, sp = _integrate(P, np.tile(grid, n_cells), n, fs, 0, n, None, record=False, max_dt_ms=0.1)
    fired = np.array([len(s) > 0 for s in sp]).reshape(n_cells, grid.size)
    lo = np.zeros(n_cells)
    hi = np.full(n_cells, grid[-1])
    for c in range(n_cells):
        k = np.flatnonzero(fired[c])
        if k.size:
            hi[c] = grid[k[0]]
            lo[c] = grid[k[0] - 1] if k[0] > 0 else 0.0
    fine = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 8)[None, 1:]
    P = _lane_params(params, fine.shape[1])
    _, sp = _integrate(P, fine.ravel(), n, fs, 0, n, None, record=False, max_dt_ms=0.1)
    fired = np.array([len(s) > 0 for s in sp]).reshape(n_cells, fine.shape[1])
    first = np.argmax(fired, axis=1)  # the last column (== hi) fired in pass 1
    return fine[np.arange(n_cells), first]


def _protocol_amplitudes(rheobase_pA: float) -> np.ndarray:
    """-50 pA, 0.5 and 0.8 x rheobase, 1.0 ... 3.0 x rheobase; rounded to whole pA."""
    amps = [HYPERPOLARISING_PA]
    amps += [f * rheobase_pA for f in SUBTHRESHOLD_FRACTIONS]
    amps += [f * rheobase_pA for f in SUPRATHRESHOLD_FRACTIONS]
    return np.round(np.array(amps))


def _simulate_batch(specs: list[tuple[str, int]], seed: int, fs_hz: float) -> list[SimulatedCell]:
    rngs = []
    params = []
    for label, k in specs:
        rng = np.random.default_rng([seed, CELL_CLASSES.index(label), k])
        rngs.append(rng)
        p = _draw_params(label, rng)
        p["seed"] = seed
        params.append(p)
    rheo = _find_rheobase(params)
    amps = np.stack([_protocol_amplitudes(r) for r in rheo])  # (cells, sweeps)
    for p, r in zip(params, rheo):
        p["rheobase_pA"] = float(r)

    n_out = int(round(SWEEP_S * fs_hz))
    on_idx = int(round(BASELINE_S * fs_hz))
    off_idx = int(round((BASELINE_S + STEP_S) * fs_hz))
    P = _lane_params(params, N_SWEEPS)
    V, spikes = _integrate(
        P, amps.ravel(), n_out, fs_hz, on_idx, off_idx, noise_streams=[(r, N_SWEEPS) for r in rngs], record=True
    )

    cells = []
    for c, ((label, k), rng, p) in enumerate(zip(specs, rngs, params)):
        cid = cell_id_for(label, k)
        sweeps, times = [], []
        for s in range(N_SWEEPS):
            lane = c * N_SWEEPS + s
            v = V[lane] + rng.normal(0.0, RECORDING_NOISE_MV, n_out)
            i = np.zeros(n_out)
            i[on_idx:off_idx] = amps[c, s]
            sweeps.append(
                Sweep(
                    sweep_id=f"sweep_{s:03d}",
                    v_mV=v,
                    i_pA=i,
                    fs_hz=fs_hz,
                    stim_amp_pA=float(amps[c, s]),
                    stim_start_s=on_idx / fs_hz,
                    stim_end_s=off_idx / fs_hz,
                    t0_s=s * SWEEP_INTERVAL_S,
                    meta={"cell_id": cid, "label": label, "protocol": "long_square", "simulated": True},
                )
            )
            peaks = np.array(spikes[lane], dtype=np.float64) / 1000.0
            times.append(peaks[peaks < n_out / fs_hz])
        cells.append(SimulatedCell(cell_id=cid, label=label, sweeps=sweeps, spike_times_s=times, params=p))
    return cells


def _is_complete(path: Path, seed: int, fs_hz: float) -> bool:
    """True if ``path`` is a finished file from this generator with the same seed / fs / sweeps."""
    if not path.is_file():
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            notes = f["general/notes"][()]
            notes = json.loads(notes.decode() if isinstance(notes, bytes) else str(notes))
            n_acq = len(f["acquisition"])
            n_stim = len(f["stimulus/presentation"])
    except Exception:  # noqa: BLE001 - any unreadable file is simply regenerated
        return False
    return (
        notes.get("generator") == GENERATOR
        and notes.get("seed") == int(seed)
        and notes.get("fs_hz") == float(fs_hz)
        and notes.get("n_sweeps") == N_SWEEPS == n_acq == n_stim
    )
