"""Fast NWB icephys reader: the current-clamp sweeps of an NWB 2 file through plain h5py.

:func:`ephys.pipelines.blocks.readers.patchclamp.read_nwb` builds its sweeps with this module
and keeps the pynwb reader (:func:`~ephys.pipelines.blocks.readers.patchclamp.read_nwb_pynwb`)
as the reference it is tested against (``tests/test_fastio_reader.py``: same sweeps, samples,
units, step amplitudes and times on every NWB file in ``../shared/data`` and on simulated ones).

Why: pynwb builds the whole object tree of a file (every container, its spec, its links) before
a single sample is read; that costs ~0.1-0.4 s per file here, while reading the raw arrays of a
cell's sweeps with h5py takes a few ms. This reader opens only the groups it needs:
``/acquisition/*`` (attributes ``neurodata_type``, ``sweep_number``, ``stimulus_description``;
datasets ``data``, ``starting_time`` or ``timestamps``), ``/stimulus/presentation/*`` and the
intracellular-recordings table ``/general/intracellular_ephys/intracellular_recordings``
(``responses/response`` and ``stimuli/stimulus`` compound columns: idx_start, count, object
reference). Nothing else of the file is touched, which is what makes ``--stream`` cheap: over
HTTP only those bytes travel (plus the HDF5 metadata that leads to them).

The NWB semantics reproduced (NWB 2 schema, ``nwb.icephys`` / ``nwb.base``):

* a response is a ``CurrentClampSeries`` (not ``IZeroClampSeries``) in ``acquisition``;
* values are ``data * conversion + offset`` (defaults 1.0 / 0.0) in volts for a
  ``CurrentClampSeries`` and amperes for a ``CurrentClampStimulusSeries``: the schema fixes
  these units and pynwb reports them whatever the file's ``unit`` attribute says, so we do too;
* the rate is ``starting_time@rate``, else from the median step of ``timestamps``;
* ``stimulus_description`` defaults to ``"N/A"`` (pynwb's default) when absent.

Anything this reader does not understand falls back to pynwb, so the result is never "a
different answer", only sometimes a slower one: a root without ``nwb_version`` / ``acquisition`` (an extension type of the root itself, e.g.
``NDXICEphysFile``, is fine: acquisition and stimulus are the core groups), a series whose
type comes from an extension namespace (it might subclass ``CurrentClampSeries``), a group
without ``neurodata_type`` in acquisition/stimulus, or any unexpected h5py error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import UnreadableRecording
from .sweeps import Sweep

#: core neurodata types this reader knows; an acquisition/stimulus entry of another namespace
#: sends the file to pynwb
_RESPONSE = "CurrentClampSeries"
_IZERO = "IZeroClampSeries"
_VCLAMP = "VoltageClampSeries"
_STIM = "CurrentClampStimulusSeries"
#: the NWB >= 2.1 schema fixes these units; pynwb reports them whatever the file's attribute says
_FIXED_UNIT = {_RESPONSE: "volts", _STIM: "amperes"}
_TABLE = "general/intracellular_ephys/intracellular_recordings"


class NeedPynwb(Exception):
    """The file uses something the fast reader does not handle; read it with pynwb instead."""


def read_nwb_h5(source, path: str | Path) -> list[Sweep]:
    """Current-clamp sweeps of an NWB 2 file, read lazily with h5py (no pynwb object tree).

    Parameters
    ----------
    source : str | Path | file-like
        The file path, or an open binary file-like object (e.g. a ``remfile.File`` over HTTP)
        that h5py can read.
    path : str | Path
        What to name in messages and in ``meta["file"]`` (the local path or the URL).

    Returns
    -------
    list[Sweep]
        As :func:`~ephys.pipelines.blocks.readers.patchclamp.read_nwb_pynwb` (v_mV / i_pA
        float64, mV / pA; same order, ids and meta), before the sibling step-window fill.

    Raises
    ------
    UnreadableRecording
        The same one-line reasons as the pynwb reader (voltage-clamp only, no current-clamp
        sweeps, unknown unit, no sampling rate).
    NeedPynwb
        The file needs the pynwb reader (see the module docstring).
    """
    import h5py

    try:
        f = h5py.File(source, "r")
    except Exception as exc:  # noqa: BLE001 - let pynwb give its own reason
        raise NeedPynwb(str(exc)) from exc
    try:
        return _sweeps(f, path)
    except (UnreadableRecording, NeedPynwb):
        raise
    except Exception as exc:  # noqa: BLE001 - anything unexpected: the reference reader decides
        raise NeedPynwb(f"{type(exc).__name__}: {exc}") from exc
    finally:
        f.close()


def _attr(obj, name, default=None):
    try:
        v = obj.attrs[name]  # one HDF5 call (attrs.get costs two)
    except KeyError:
        return default
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    return v


def _children(f, where: str) -> list:
    """Series groups under ``where`` as (name, group, neurodata_type); NeedPynwb on unknowns."""
    import h5py

    if where not in f:
        return []
    out = []
    for name, obj in f[where].items():
        if not isinstance(obj, h5py.Group):
            raise NeedPynwb(f"{where}/{name} is not a group")
        kind = _attr(obj, "neurodata_type")
        ns = _attr(obj, "namespace")
        if kind is None or ns != "core":
            raise NeedPynwb(f"{where}/{name}: type {kind!r} of namespace {ns!r}")
        out.append(_Series(name, obj, str(kind)))
    return out


class _Series:
    """One series group with the attributes the reader needs, each read once."""

    __slots__ = ("name", "group", "kind", "number", "_start")

    def __init__(self, name, group, kind):
        self.name, self.group, self.kind = name, group, kind
        n = _attr(group, "sweep_number")
        self.number = None if n is None else int(n)
        self._start = None

    @property
    def start_time(self) -> float:
        if self._start is None:
            self._start = _start_time(self.group)
        return self._start


def _sweeps(f, path) -> list[Sweep]:
    from .stepcommon import _AMPERE, _VOLT, _align, _natural_key, find_main_step

    if _attr(f, "nwb_version") is None or "acquisition" not in f:
        raise NeedPynwb("not an NWB 2 file (no nwb_version / acquisition)")
    acquisition = _children(f, "acquisition")
    stimuli = _children(f, "stimulus/presentation")
    responses = [ser for ser in acquisition if ser.kind == _RESPONSE]
    if not responses:
        kinds = [ser.kind for ser in acquisition]
        if _VCLAMP in kinds:
            raise UnreadableRecording("voltage-clamp only: no current-clamp sweeps", path)
        if _IZERO in kinds:
            raise UnreadableRecording("no current-clamp sweeps with injected current (only I=0 clamp series)", path)
        from collections import Counter

        held = ", ".join(f"{k} x{v}" for k, v in sorted(Counter(kinds).items())) or "nothing"
        raise UnreadableRecording(f"no current-clamp sweeps (acquisition holds {held})", path)

    # pairing 1: the intracellular recordings table (NWB >= 2.4), keyed by the response's path
    # (object identity through ObjectID hashes: cheaper than asking HDF5 for each path)
    by_table: dict = {}
    try:
        if _TABLE in f:
            table = f[_TABLE]
            resp = table["responses/response"][()]
            stim = table["stimuli/stimulus"][()]
            stim_of = {ser.group.id: ser for ser in stimuli}
            for r, s in zip(resp, stim):
                s_entry = None
                if int(s["idx_start"]) >= 0:
                    target = f[s["timeseries"]]
                    ser = stim_of.get(target.id) or _Series(target.name.rsplit("/", 1)[-1], target,
                                                            str(_attr(target, "neurodata_type")))
                    s_entry = (ser, int(s["idx_start"]), int(s["count"]))
                by_table[f[r["timeseries"]].id] = ((int(r["idx_start"]), int(r["count"])), s_entry)
    except Exception:  # noqa: BLE001 - a malformed table just means "use sweep numbers"
        by_table = {}
    # pairing 2: sweep_number
    by_number: dict[int, list] = {}
    for ser in stimuli:
        if ser.kind == _STIM and ser.number is not None:
            by_number.setdefault(ser.number, []).append(ser)

    def order(ser):
        return (float(ser.number) if ser.number is not None else float("inf"), ser.start_time,
                _natural_key(ser.name))

    numbers = [ser.number for ser in responses]
    if None not in numbers and len(set(numbers)) == len(numbers):  # start times never decide
        responses = sorted(responses, key=lambda ser: ser.number)
    else:
        responses = sorted(responses, key=order)
    sweeps = []
    for resp in responses:
        name, g, number = resp.name, resp.group, resp.number
        resp_slice, stim = by_table.get(g.id, (None, None))
        if stim is None and number is not None:
            candidates = by_number.get(int(number), [])
            if len(candidates) == 1:
                stim = (candidates[0], 0, -1)
        v_mV, fs, t0 = _values(resp, _VOLT, 1e-3, path, resp_slice)
        if v_mV.size == 0:
            continue
        desc = _attr(g, "stimulus_description", "N/A")
        meta = {"file": str(path), "series": name,
                "sweep_number": None if number is None else int(number),
                "stimulus_description": None if desc is None else str(desc)}
        if stim is None:
            meta.update(stimulus="missing", stimulus_series=None)
            nan = float("nan")
            sweeps.append(Sweep(name, v_mV, np.zeros_like(v_mV), fs, nan, nan, nan, t0, meta))
            continue
        s_ser, s_start, s_count = stim
        s_name = s_ser.name
        i_pA, s_fs, s_t0 = _values(s_ser, _AMPERE, 1e-12, path, (s_start, s_count))
        i_pA = _align(i_pA, s_fs, s_t0, v_mV.size, fs, t0)
        meta.update(stimulus="file", stimulus_series=s_name)
        amp, start, end = find_main_step(i_pA, fs)
        sweeps.append(Sweep(name, v_mV, i_pA, fs, amp, start, end, t0, meta))
    if not sweeps:
        raise UnreadableRecording("no current-clamp sweeps (all current-clamp series are empty)", path)
    return sweeps


def _values(ser: "_Series", units: dict, target: float, path: Path, sl=None) -> tuple[np.ndarray, float, float]:
    """(values in target units, float64), rate Hz, start time s of a series
    (same rules as the pynwb reader's ``_series_values``)."""
    g, name = ser.group, ser.name
    data_ds = g["data"]
    unit = _FIXED_UNIT.get(ser.kind) or str(_attr(data_ds, "unit", "") or "").strip()
    scale = units.get(unit.lower())
    if scale is None:
        from .stepcommon import _VOLT

        kind = "voltage" if units is _VOLT else "current"
        raise UnreadableRecording(f"unknown {kind} unit {unit!r} in series {name}", path)
    start, count = (0, -1) if sl is None else sl
    stop = None if count is None or count < 0 else start + count
    whole = start == 0 and stop is None
    data = np.asarray(data_ds[()] if whole else data_ds[start:stop], dtype=np.float64)
    if data.ndim != 1:
        data = data.reshape(data.shape[0], -1)[:, 0]
    conversion = float(_attr(data_ds, "conversion", 1.0) or 1.0)
    offset = float(_attr(data_ds, "offset", 0.0) or 0.0)
    factor = conversion * scale / target
    values = data * factor
    if offset:
        values += offset * scale / target
    st = g.get("starting_time")
    rate = None if st is None else _attr(st, "rate")
    if rate is not None:
        fs = float(rate)
        t0 = float(st[()] or 0.0) + start / fs
    else:
        if "timestamps" not in g:
            raise UnreadableRecording(f"series {name} has no sampling rate", path)
        stamps = np.asarray(g["timestamps"][start:stop], dtype=np.float64)
        if stamps.size < 2:
            raise UnreadableRecording(f"series {name} has no sampling rate", path)
        fs = 1.0 / float(np.median(np.diff(stamps)))
        t0 = float(stamps[0])
    if not np.isfinite(fs) or fs <= 0:
        raise UnreadableRecording(f"series {name} has an invalid sampling rate ({fs})", path)
    return values, fs, t0


def _start_time(g) -> float:
    try:
        if "starting_time" in g:
            return float(g["starting_time"][()])
        return float(g["timestamps"][0])
    except Exception:  # noqa: BLE001
        return 0.0
