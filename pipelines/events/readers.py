"""Continuous-trace readers for synaptic-event detection, and event-label readers.

A :class:`Trace` is one continuous recording channel: voltage clamp (current, pA) or current
clamp (potential, mV), with the sweep boundaries of an episodic recording kept as ``segments``
(events are never detected across a boundary) and an ``exclude`` mask of samples that belong to
a stimulus (e.g. a membrane-test step of an episodic protocol, taken from the command waveform)
and must not be reported as events.

Inputs:

* ABF 1/2 (pyabf): gap-free (``nOperationMode`` 3) or episodic (5) files; other acquisition modes
  (event-driven, oscilloscope) are refused. Voltage clamp = an ADC in A (pA), current clamp = an
  ADC in V (mV).
* NWB 2 (pynwb): ``VoltageClampSeries``, ``CurrentClampSeries`` or any ``PatchClampSeries`` in
  ``acquisition`` (all series of the chosen kind, in name order, as segments).
* ``.npy`` 1-D float array with ``fs_hz`` (and ``units``) given by the caller.

Labels: a CSV of event onset times (``onset_s``; optional ``peak_s``, ``amplitude``), or miniML's
HDF5 training windows (``events`` N x 600, ``scores`` 0 = no event / 1 = event / 2 = exclude,
``raw_indices``; O'Neill et al. 2025, eLife 13:RP98485, github.com/delvendahl/miniML).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import EphysError

__all__ = ["Trace", "read_trace", "read_abf_trace", "abf_clamp_mode", "choose_abf_channel", "settle_samples", "read_nwb_trace", "read_npy_trace", "read_event_csv",
           "MinimlWindows", "read_miniml_h5", "default_polarity", "check_polarity"]

_AMPERE = {"a": 1.0, "ma": 1e-3, "ua": 1e-6, "µa": 1e-6, "na": 1e-9, "pa": 1e-12, "fa": 1e-15, "amperes": 1.0}
_VOLT = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "µv": 1e-6, "volts": 1.0}
#: ABF acquisition modes (ABF2 ``nOperationMode``): 3 gap-free, 5 episodic stimulation
_ABF_MODES = {1: "event-driven variable-length", 2: "oscilloscope (loss-free)", 3: "gap-free",
              4: "high-speed oscilloscope", 5: "episodic"}


@dataclass
class Trace:
    """One continuous recording channel.

    Attributes
    ----------
    data : np.ndarray, shape (n_samples,), float64, in ``units`` (pA or mV)
    fs_hz : float, sampling rate (Hz)
    units : str, ``"pA"`` (voltage clamp) or ``"mV"`` (current clamp)
    mode : str, ``"voltage_clamp"`` | ``"current_clamp"``
    segments : list of (start, stop) sample indices (one per sweep; one for gap-free data)
    exclude : np.ndarray of bool, shape (n_samples,): stimulus samples (no event reported there)
    source : str, the file
    meta : dict, provenance (acquisition mode, channel, series names)
    """

    data: np.ndarray
    fs_hz: float
    units: str
    mode: str
    segments: list[tuple[int, int]] = field(default_factory=list)
    exclude: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.data = np.asarray(self.data, dtype=np.float64)
        if not self.segments:
            self.segments = [(0, int(self.data.size))]
        if self.exclude is None:
            self.exclude = np.zeros(self.data.size, dtype=bool)

    @property
    def n_samples(self) -> int:
        return int(self.data.size)

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.fs_hz)

    @property
    def polarity(self) -> str:
        """Default event polarity: inward currents (negative) in voltage clamp, depolarising
        potentials (positive) in current clamp."""
        return default_polarity(self.mode)


def default_polarity(mode: str) -> str:
    """``"negative"`` for voltage clamp (inward synaptic currents), ``"positive"`` otherwise."""
    return "negative" if mode == "voltage_clamp" else "positive"


def check_polarity(polarity: str | None, trace: Trace) -> str:
    """``polarity`` checked (``negative`` | ``positive``), or the trace's default when None.

    Raises
    ------
    EphysError
        Any other value (field ``--polarity``).
    """
    if polarity in (None, "", "auto"):
        return trace.polarity
    p = str(polarity).strip().lower()
    if p not in ("negative", "positive"):
        raise EphysError(f"polarity must be negative or positive, got {polarity!r}", "--polarity")
    return p


def _check_finite(x: np.ndarray, path, what: str = "trace") -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        raise EphysError(f"{what} holds {int(bad.sum())} NaN or infinite samples (first at sample "
                         f"{int(np.flatnonzero(bad)[0])})", path)


def read_trace(path: str | Path, fs_hz: float | None = None, units: str | None = None,
               channel: int | None = None, series: str | None = None) -> Trace:
    """Read a continuous trace from ``.abf``, ``.nwb`` or ``.npy`` (by suffix).

    Parameters
    ----------
    path : the file
    fs_hz : sampling rate (Hz), required for ``.npy`` (ignored otherwise)
    units : ``"pA"`` or ``"mV"`` for ``.npy`` (default ``"pA"``)
    channel : ABF ADC channel (default: chosen by the recording mode, :func:`choose_abf_channel`)
    series : NWB series name (default: all patch-clamp series of the first kind found)

    Raises
    ------
    EphysError
        Missing file, unknown suffix, unreadable file, unsupported acquisition mode, no usable
        channel, NaN samples, missing ``fs_hz`` for ``.npy``.
    """
    path = Path(path)
    if not path.is_file():
        raise EphysError("no such file", path)
    suf = path.suffix.lower()
    if suf == ".abf":
        return read_abf_trace(path, channel=channel)
    if suf == ".nwb":
        return read_nwb_trace(path, series=series)
    if suf == ".npy":
        return read_npy_trace(path, fs_hz=fs_hz, units=units or "pA")
    raise EphysError(f"unknown trace format {suf or '(no suffix)'!r}; expected .abf, .nwb or .npy", path)


def read_npy_trace(path: str | Path, fs_hz: float | None, units: str = "pA") -> Trace:
    """A 1-D ``.npy`` trace in ``units`` (``pA`` = voltage clamp, ``mV`` = current clamp).

    Raises
    ------
    EphysError
        No or non-positive ``fs_hz`` (field ``--fs-hz``), not 1-D, not numeric, NaN samples,
        unknown units.
    """
    path = Path(path)
    if fs_hz is None or not np.isfinite(fs_hz) or fs_hz <= 0:
        raise EphysError("a .npy trace needs its sampling rate: pass --fs-hz", path)
    if units not in ("pA", "mV"):
        raise EphysError(f"units must be pA or mV, got {units!r}", path)
    from ..core.datasets import load_npy

    x = load_npy(path, hint="")
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.number):
        raise EphysError(f"a trace must be a 1-D numeric array, got shape {x.shape} dtype {x.dtype}", path)
    x = x.astype(np.float64)
    _check_finite(x, path)
    return Trace(x, float(fs_hz), units, "voltage_clamp" if units == "pA" else "current_clamp",
                 source=str(path), meta={"format": "npy"})


def read_abf_trace(path: str | Path, channel: int | None = None, exclude_pad_ms: float = 20.0,
                   settle_max_ms: float = 300.0) -> Trace:
    """Read a gap-free or episodic ABF file as one trace (sweeps concatenated as segments).

    Samples where the command waveform (pyabf ``sweepC``) departs from its holding level, plus
    ``exclude_pad_ms`` after each such stretch (the capacitive transient), and further until the
    recorded signal has settled back to its level before the step (:func:`settle_samples`, at
    most ``settle_max_ms``), are marked in ``exclude``: a membrane-test step and the relaxation
    after it are a stimulus, not events.

    Raises
    ------
    EphysError
        Unreadable file; acquisition mode other than gap-free or episodic (field
        ``nOperationMode``); no ADC channel in A or V; NaN samples.
    """
    path = Path(path)
    import pyabf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            abf = pyabf.ABF(str(path))
    except Exception as exc:  # noqa: BLE001 - pyabf raises many kinds on bad input
        raise EphysError(f"not a readable ABF file ({type(exc).__name__}: {str(exc)[:100]})", path) from None
    mode = getattr(abf, "nOperationMode", None)
    if mode is None:
        mode = getattr(getattr(abf, "_protocolSection", None), "nOperationMode", None)
    if mode not in (3, 5):
        raise EphysError(f"nOperationMode {mode} ({_ABF_MODES.get(mode, 'unknown')}): no gap-free or "
                         "episodic data to read", path)
    units = [str(u).replace("\x00", "").strip() for u in abf.adcUnits]
    if channel is None:
        channel, why = choose_abf_channel(units, abf_clamp_mode(abf), path)
    else:
        why = "given by --channel"
    if not 0 <= channel < len(units):
        raise EphysError(f"channel {channel} not in the file ({len(units)} ADC channels)", path)
    u = units[channel].lower()
    if u in _AMPERE:
        scale, out_units, rec_mode = _AMPERE[u] / 1e-12, "pA", "voltage_clamp"
    elif u in _VOLT:
        scale, out_units, rec_mode = _VOLT[u] / 1e-3, "mV", "current_clamp"
    else:
        raise EphysError(f"ADC channel {channel} has units {units[channel]!r}, not a current or a potential", path)
    fs = float(abf.sampleRate)
    parts, excl, segs, start = [], [], [], 0
    pad = int(round(exclude_pad_ms * 1e-3 * fs))
    for k in range(int(abf.sweepCount)):
        abf.setSweep(k, channel=channel)
        y = np.asarray(abf.sweepY, dtype=np.float64) * scale
        c = np.asarray(abf.sweepC, dtype=np.float64)[: y.size]
        ex = np.zeros(y.size, dtype=bool)
        if mode == 5 and c.size == y.size and np.ptp(c) > 0:
            hold = np.median(c)
            off = np.abs(c - hold) > 1e-9
            idx = np.flatnonzero(off)
            ex[off] = True
            # pad after each off-holding stretch (capacitive transient at the step's end)
            ends = idx[np.flatnonzero(np.diff(idx, append=idx[-1] + 2) > 1)]
            for e in ends:
                ex[e: e + pad + 1] = True
                # and until the current has settled back to its pre-step level (the slow
                # relaxation after a membrane test can last hundreds of ms)
                ex[e: e + settle_samples(y, fs, int(idx[0]), int(e), settle_max_ms) + 1] = True
        parts.append(y)
        excl.append(ex)
        segs.append((start, start + y.size))
        start += y.size
    data = np.concatenate(parts) if parts else np.zeros(0)
    if data.size == 0:
        raise EphysError("no samples in the file", path)
    _check_finite(data, path)
    return Trace(data, fs, out_units, rec_mode, segs, np.concatenate(excl), str(path),
                 {"format": "abf", "acquisition": _ABF_MODES[mode], "channel": channel,
                  "adc_name": str(abf.adcNames[channel]).strip(), "adc_units": units[channel],
                  "channel_reason": why, "protocol": getattr(abf, "protocol", None),
                  "start_time": getattr(abf, "abfDateTime", None),
                  "n_sweeps": int(abf.sweepCount)})


#: MultiClamp / Axopatch telegraph modes as stored in ABF headers (``nTelegraphMode``; the
#: MultiClamp Commander API's MCCMSG_MODE_VCLAMP = 0, MCCMSG_MODE_ICLAMP = 1, MCCMSG_MODE_ICLAMPZERO = 2)
_TELEGRAPH_MODES = {0: "voltage_clamp", 1: "current_clamp", 2: "current_clamp"}


def abf_clamp_mode(abf) -> tuple[str | None, str]:
    """The recording mode of an opened ``pyabf.ABF``: (``"voltage_clamp"`` | ``"current_clamp"`` |
    None, how it was found).

    In order: the amplifier telegraph of an ADC channel with telegraphs enabled
    (``nTelegraphEnable`` = 1, ``nTelegraphMode`` 0 = V-clamp, 1 = I-clamp, 2 = I = 0; ABF 2 ADC
    section or ABF 1 header); else the unit of the first command (DAC) channel: a command in V
    (mV) is a voltage clamp, one in A (pA, nA) a current clamp; else None (not stated).
    """
    sec = getattr(abf, "_adcSection", None)
    hdr = getattr(abf, "_headerV1", None)
    enable = getattr(sec, "nTelegraphEnable", None) if sec is not None else getattr(hdr, "nTelegraphEnable", None)
    tmode = getattr(sec, "nTelegraphMode", None) if sec is not None else getattr(hdr, "nTelegraphMode", None)
    for k in range(len(getattr(abf, "adcUnits", []) or [])):
        try:
            adc = k if sec is not None else int(hdr.nADCSamplingSeq[k])
            if enable is not None and int(enable[adc]) == 1 and int(tmode[adc]) in _TELEGRAPH_MODES:
                m = _TELEGRAPH_MODES[int(tmode[adc])]
                return m, f"amplifier telegraph of ADC {k}: {m.replace('_', ' ')} (nTelegraphMode {int(tmode[adc])})"
        except (TypeError, ValueError, IndexError, AttributeError):
            break
    dac = [str(u).replace("\x00", "").strip() for u in (getattr(abf, "dacUnits", None) or [])]
    if dac and dac[0].lower() in _VOLT:
        return "voltage_clamp", f"the command is in {dac[0]} (a voltage clamp)"
    if dac and dac[0].lower() in _AMPERE:
        return "current_clamp", f"the command is in {dac[0]} (a current clamp)"
    return None, "no amplifier telegraph and no command unit in the file"


def choose_abf_channel(units: list[str], mode: tuple[str | None, str], path=None) -> tuple[int, str]:
    """The ADC channel events are detected on, and why: the recording mode decides.

    Voltage clamp -> the first channel in A (the membrane current); current clamp -> the first
    in V (the membrane potential). When the file does not state its mode (``mode[0]`` None): the
    only kind of channel present, or, with both a current and a potential channel, the current
    (a clamped potential carries no events; a current-clamp file's current channel is the
    command monitor). ``units``: ``abf.adcUnits``; ``mode``: :func:`abf_clamp_mode`.

    Raises
    ------
    EphysError
        No channel in A or V.
    """
    amps = [k for k, u in enumerate(units) if u.lower() in _AMPERE]
    volts = [k for k, u in enumerate(units) if u.lower() in _VOLT]
    if not amps and not volts:
        raise EphysError(f"no ADC channel in A or V (units: {', '.join(units) or 'none'})", path)
    m, how = mode
    want = {"voltage_clamp": amps, "current_clamp": volts}.get(m or "", [])
    if want:
        k = want[0]
        return k, f"{how}: the {'current' if m == 'voltage_clamp' else 'potential'} channel {k} ({units[k]})"
    if m is not None:
        k = (volts or amps)[0] if m == "voltage_clamp" else (amps or volts)[0]
        return k, f"{how}, but no {'current' if m == 'voltage_clamp' else 'potential'} channel: channel {k} ({units[k]})"
    k = (amps or volts)[0]
    kind = "current" if amps else "potential"
    other = " (a current and a potential channel: the current)" if amps and volts else ""
    return k, f"{how}: the {kind} channel {k} ({units[k]}){other}"


def settle_samples(y: np.ndarray, fs_hz: float, step_start: int, step_end: int, max_ms: float = 300.0,
                   win_ms: float = 10.0, k_sd: float = 3.0, n_windows: int = 3) -> int:
    """Samples after ``step_end`` until the trace has settled back to its pre-step level.

    The level before the step is the median of the 50 ms before ``step_start``; the noise is the
    robust SD (MAD / 0.6745) of those 50 ms. The trace has settled at the
    first of ``n_windows`` consecutive ``win_ms`` windows (after ``step_end``) whose medians all
    lie within ``k_sd`` noise SDs of that level (a decaying transient that only crosses the level
    does not count).

    Parameters
    ----------
    y : (n,) float64 one sweep (trace units); fs_hz : sampling rate (Hz)
    step_start, step_end : first and last sample of the command step
    max_ms : upper bound (ms) of the answer

    Returns
    -------
    int, samples (0 when there is no pre-step baseline to compare with)
    """
    b0 = max(0, step_start - int(0.05 * fs_hz))
    if step_start - b0 < 10:
        return 0
    pre = y[b0:step_start]
    level = float(np.median(pre))
    sd = float(np.median(np.abs(pre - level)) / 0.6745) or float(np.std(pre)) or 1.0
    w = max(1, int(win_ms * 1e-3 * fs_hz))
    limit = int(max_ms * 1e-3 * fs_hz)
    for k in range(0, limit, w):
        seg = y[step_end + 1 + k: step_end + 1 + k + n_windows * w]
        if seg.size < n_windows * w:
            return min(k, limit)
        med = np.median(seg.reshape(n_windows, w), axis=1)
        if np.all(np.abs(med - level) <= k_sd * sd):
            return k
    return limit


def read_nwb_trace(path: str | Path, series: str | None = None) -> Trace:
    """Read patch-clamp series of an NWB file as one trace.

    Without ``series``: every ``VoltageClampSeries`` in ``acquisition`` (in name order), else every
    ``CurrentClampSeries``, else every ``PatchClampSeries``; each becomes a segment. Units follow
    the series' ``unit`` and ``conversion`` (amperes -> pA, volts -> mV).

    Raises
    ------
    EphysError
        Unreadable file, no patch-clamp series (or no series named ``series``), mixed sampling
        rates, a unit that is not amperes or volts, NaN samples.
    """
    path = Path(path)
    import pynwb

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            io = pynwb.NWBHDF5IO(str(path), "r", load_namespaces=True)
            nwb = io.read()
    except Exception as exc:  # noqa: BLE001 - h5py/hdmf raise many kinds
        raise EphysError(f"not a readable NWB file ({type(exc).__name__}: {str(exc)[:100]})", path) from None
    try:
        acq = dict(nwb.acquisition)
        pcs = {k: v for k, v in acq.items() if isinstance(v, pynwb.icephys.PatchClampSeries)}
        if series is not None:
            if series not in pcs:
                raise EphysError(f"no patch-clamp series named {series!r} (found: {', '.join(sorted(pcs)) or 'none'})",
                                 path)
            chosen = [series]
        else:
            chosen = []
            for cls in (pynwb.icephys.VoltageClampSeries, pynwb.icephys.CurrentClampSeries):
                chosen = sorted(k for k, v in pcs.items() if isinstance(v, cls))
                if chosen:
                    break
            chosen = chosen or sorted(pcs)
        if not chosen:
            raise EphysError("no VoltageClampSeries, CurrentClampSeries or PatchClampSeries in acquisition", path)
        parts, segs, start, fs, out_units = [], [], 0, None, None
        for name in chosen:
            ts = pcs[name]
            unit = str(ts.unit).strip().lower()
            if unit in _AMPERE:
                scale, u = _AMPERE[unit] / 1e-12, "pA"
            elif unit in _VOLT:
                scale, u = _VOLT[unit] / 1e-3, "mV"
            else:
                raise EphysError(f"series {name} has unit {ts.unit!r}, not amperes or volts", path)
            rate = float(ts.rate) if ts.rate is not None else None
            if rate is None:
                t = np.asarray(ts.timestamps[:2])
                rate = 1.0 / float(t[1] - t[0])
            if fs is not None and abs(rate - fs) > 1e-6 * fs:
                raise EphysError(f"series {name} is at {rate:g} Hz, others at {fs:g} Hz", path)
            if out_units is not None and u != out_units:
                raise EphysError(f"series {name} is in {u}, others in {out_units}", path)
            fs, out_units = rate, u
            y = np.asarray(ts.data[:], dtype=np.float64) * float(ts.conversion) * scale
            parts.append(y.ravel())
            segs.append((start, start + y.size))
            start += y.size
        start_time = nwb.session_start_time
    finally:
        io.close()
    data = np.concatenate(parts)
    _check_finite(data, path)
    return Trace(data, fs, out_units, "voltage_clamp" if out_units == "pA" else "current_clamp", segs,
                 source=str(path), meta={"format": "nwb", "series": chosen, "start_time": start_time})


def read_event_csv(path: str | Path, duration_s: float | None = None) -> dict[str, np.ndarray]:
    """Event labels: CSV with a header and a column ``onset_s`` (s from the trace start); optional
    ``peak_s`` (s) and ``amplitude`` (trace units, sign as recorded).

    Returns
    -------
    dict with ``onset_s`` (float64, sorted), and ``peak_s`` / ``amplitude`` when present (NaN
    where a row leaves them empty).

    Raises
    ------
    EphysError
        Missing file or ``onset_s`` column; a value that is not a number (names the row); an onset
        outside [0, ``duration_s``) (names the row).
    """
    path = Path(path)
    if not path.is_file():
        raise EphysError("no such file", path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
        fh.seek(0)
        header = next(csv.reader(fh), [])
    if "onset_s" not in header:
        raise EphysError(f"labels CSV has no 'onset_s' column (columns: {', '.join(header) or 'none'})", path)
    out: dict[str, list[float]] = {k: [] for k in ("onset_s", "peak_s", "amplitude") if k in header}
    for r, row in enumerate(rows, start=2):
        for k in out:
            raw = (row.get(k) or "").strip()
            if raw == "" and k != "onset_s":
                out[k].append(float("nan"))
                continue
            try:
                v = float(raw)
            except ValueError:
                raise EphysError(f"row {r}, field {k}: {raw!r} is not a number", path) from None
            if k == "onset_s" and (not np.isfinite(v) or v < 0 or (duration_s is not None and v >= duration_s)):
                lim = f"[0, {duration_s:g}) s" if duration_s is not None else "[0, inf) s"
                raise EphysError(f"row {r}, field onset_s: {v:g} s is outside the trace {lim}", path)
            out[k].append(v)
    res = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    order = np.argsort(res["onset_s"], kind="stable")
    return {k: v[order] for k, v in res.items()}


@dataclass
class MinimlWindows:
    """miniML training windows.

    Attributes
    ----------
    x : np.ndarray, (n, window) float64, the recorded trace (pA for the granule-cell set)
    scores : np.ndarray, (n,) int64: 0 = no event, 1 = event, 2 = exclude
    raw_indices : np.ndarray, (n,) int64: each window's start sample in the original recording
    cell_label : list[str] | None
    """

    x: np.ndarray
    scores: np.ndarray
    raw_indices: np.ndarray
    cell_label: list[str] | None = None


def read_miniml_h5(path: str | Path) -> MinimlWindows:
    """Read miniML's HDF5 training windows (``events``, ``scores``, ``raw_indices``).

    Raises
    ------
    EphysError
        Missing or unreadable file; a missing dataset (names it); mismatched lengths; scores
        other than 0/1/2; NaN samples.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise EphysError("no such file", path)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise EphysError(f"not a readable HDF5 file ({exc})", path) from None
    with fh:
        for key in ("events", "scores", "raw_indices"):
            if key not in fh:
                raise EphysError(f"HDF5 has no dataset '{key}' (expected events, scores, raw_indices)", path)
        x = np.asarray(fh["events"][()], dtype=np.float64)
        s = np.asarray(fh["scores"][()]).astype(np.int64)
        ri = np.asarray(fh["raw_indices"][()]).astype(np.int64)
        cl = [c.decode() if isinstance(c, bytes) else str(c) for c in fh["cell_label"][()]] if "cell_label" in fh else None
    if x.ndim != 2 or s.shape != (x.shape[0],) or ri.shape != (x.shape[0],):
        raise EphysError(f"dataset shapes do not fit: events {x.shape}, scores {s.shape}, raw_indices {ri.shape}", path)
    if not np.isin(s, (0, 1, 2)).all():
        raise EphysError("field scores: values other than 0, 1, 2", path)
    _check_finite(x, path, "field events")
    return MinimlWindows(x, s, ri, cl)
