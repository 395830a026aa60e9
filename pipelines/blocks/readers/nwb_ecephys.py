"""LFP + sorted units from an NWB 2 file (pynwb): one :class:`LfpRecording` per file.

What is read (NWB 2 core schema, ``nwb.ecephys`` / ``nwb.misc``):

- the LFP: an ``ElectricalSeries``. Looked for, in this order, and the first tier holding any
  series is used: (1) series inside an ``LFP`` container of a processing module (``ecephys``
  first) or of ``acquisition``; (2) ``ElectricalSeries`` whose name contains ``lfp`` (any case)
  in ``processing`` or ``acquisition``; (3) the ``ElectricalSeries`` of ``acquisition``. A tier with
  several series is an error naming them (which one is the LFP is not guessed), unless
  ``series`` names one. Values are ``data * conversion + offset`` (times ``channel_conversion``
  when present) in volts, returned in µV. The rate is ``rate``, or ``1 / median(diff(timestamps))``
  when the series has timestamps (they must then be regular within 1 %); ``t0_s`` is
  ``starting_time`` (or the first timestamp) on the session clock.
- spikes: the ``Units`` table (``nwbfile.units``), ``spike_times`` of every row (session clock,
  s). A unit is named ``u<id>`` (the table's ``id`` column) unless the table has a ``unit_name``
  or ``label`` string column.
- group (the CV group): ``<subject_id>_<session_id>`` when both are set, else whichever is set,
  else the file stem.
- channel names: ``e<electrode id>`` from the series' ``electrodes`` region (``ch<k>`` without one).

The checks on the content (NaN samples, spike and LFP clocks that do not overlap, spikes outside
the recording, a recording shorter than a window) are those of
:func:`ephys.pipelines.lfp.readers.check_recording`, applied before windowing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import EphysError
from .ecephys import LfpRecording

__all__ = ["read_nwb_lfp"]


def _series_tiers(nwb):
    from pynwb.ecephys import LFP, ElectricalSeries

    in_lfp, named, acq = [], [], []
    mods = sorted(nwb.processing.items(), key=lambda kv: (kv[0] != "ecephys", kv[0]))
    places = [(f"processing/{m}", mod.data_interfaces) for m, mod in mods] + [("acquisition", nwb.acquisition)]
    for where, objs in places:
        for name, obj in objs.items():
            if isinstance(obj, LFP):
                in_lfp += [(f"{where}/{name}/{s}", es) for s, es in obj.electrical_series.items()]
            elif isinstance(obj, ElectricalSeries):
                if "lfp" in name.lower():
                    named.append((f"{where}/{name}", obj))
                if where == "acquisition":
                    acq.append((f"{where}/{name}", obj))
    return [in_lfp, named, acq]


def _pick_series(nwb, path: Path, series: str | None):
    tiers = _series_tiers(nwb)
    every = {w: s for tier in tiers for w, s in tier}
    if series is not None:
        hits = [w for w in every if w == series or w.rsplit("/", 1)[-1] == series]
        if len(hits) != 1:
            raise EphysError(f"no single ElectricalSeries named {series!r} (found: {', '.join(every) or 'none'})",
                             path)
        return hits[0], every[hits[0]]
    for tier in tiers:
        if len(tier) == 1:
            return tier[0]
        if len(tier) > 1:
            raise EphysError(f"several candidate LFP ElectricalSeries ({', '.join(w for w, _ in tier)}); "
                             "keep one LFP series per file", path)
    raise EphysError("no ElectricalSeries (LFP) in processing or acquisition", path)


def _rate(es, where: str, path: Path) -> tuple[float, float]:
    if es.rate is not None:
        return float(es.rate), float(es.starting_time or 0.0)
    ts = np.asarray(es.timestamps[:], dtype=np.float64)
    if ts.size < 2:
        raise EphysError(f"{where}: fewer than 2 timestamps and no rate", path)
    d = np.diff(ts)
    step = float(np.median(d))
    if not step > 0 or np.abs(d - step).max() > 0.01 * step:
        raise EphysError(f"{where}: irregular timestamps (steps {d.min():g}-{d.max():g} s); "
                         "the LFP needs a regular sampling rate", path)
    return 1.0 / step, float(ts[0])


def _unit_names(units) -> list[str]:
    ids = [int(i) for i in units.id[:]]
    for col in ("unit_name", "label"):
        if col in units.colnames:
            vals = [str(v) for v in units[col][:]]
            if all(vals) and len(set(vals)) == len(vals):
                return vals
    return [f"u{i}" for i in ids]


def read_nwb_lfp(path: str | Path, series: str | None = None) -> LfpRecording:
    """Read one NWB file's LFP ``ElectricalSeries`` and its ``Units`` spike times (see the module
    docstring for what is looked for).

    Parameters
    ----------
    path : an ``.nwb`` file (HDF5)
    series : name or path (``processing/ecephys/LFP/lfp``) of the series to read, when the file
        holds several candidates

    Returns
    -------
    LfpRecording with ``lfp`` float64 (n_samples, n_channels) in µV, ``fs_hz``, ``t0_s`` and
    ``units`` on the session clock (s).

    Raises
    ------
    EphysError (naming the file)
        Not a readable NWB file; no or several candidate LFP series; a series with irregular
        timestamps or not 1-D/2-D; no ``Units`` table or no unit in it.
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    if not path.is_file():
        raise EphysError("no such NWB file", path)
    try:
        io = NWBHDF5IO(str(path), mode="r", load_namespaces=True)
    except Exception as exc:  # h5py OSError, hdmf errors: not an NWB file
        raise EphysError(f"not a readable NWB file ({type(exc).__name__}: {str(exc)[:120]})", path) from None
    with io:
        try:
            nwb = io.read()
        except Exception as exc:
            raise EphysError(f"not a readable NWB file ({type(exc).__name__}: {str(exc)[:120]})", path) from None
        where, es = _pick_series(nwb, path, series)
        data = np.asarray(es.data[:], dtype=np.float64)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or data.shape[0] == 0:
            raise EphysError(f"{where}: expected (n_samples, n_channels) data, got shape {data.shape}", path)
        scale = float(es.conversion if es.conversion is not None else 1.0)
        offset = float(getattr(es, "offset", 0.0) or 0.0)
        data = data * scale + offset
        cc = getattr(es, "channel_conversion", None)
        if cc is not None:
            data = data * np.asarray(cc[:], dtype=np.float64)[None, :]
        fs_hz, t0_s = _rate(es, where, path)
        try:
            names = [f"e{int(i)}" for i in es.electrodes.table.id[:][es.electrodes.data[:]]]
        except Exception:
            names = []
        if len(names) != data.shape[1]:
            names = [f"ch{k + 1}" for k in range(data.shape[1])]
        units = nwb.units
        if units is None or len(units) == 0:
            raise EphysError("no Units table (sorted spike times) in the file", path)
        unit_names = _unit_names(units)
        spikes = {u: np.sort(np.asarray(units.get_unit_spike_times(k), dtype=np.float64))
                  for k, u in enumerate(unit_names)}
        subject = getattr(nwb.subject, "subject_id", None) if nwb.subject is not None else None
        session = nwb.session_id
        group = "_".join(str(x) for x in (subject, session) if x) or path.stem
    return LfpRecording(group, data * 1e6, fs_hz, t0_s, names, spikes, [str(path)])
