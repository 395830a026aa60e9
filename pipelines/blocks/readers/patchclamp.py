"""Readers: NWB 2 (pynwb icephys) and ABF 1/2 (pyabf) current-clamp files into :class:`Sweep` records,
and discovery of the cells under an input file or folder.

Units out: membrane potential in mV, injected current in pA, whatever the file stores (NWB
``conversion``/``offset``/``unit`` are honoured; ABF channel units are read from the header).

The step of each sweep (``stim_amp_pA``, ``stim_start_s``, ``stim_end_s``) comes from the ABF
epoch table when it describes the sweep's command, otherwise from the stimulus waveform
(:func:`find_main_step`). A 0 pA sweep of a step series gets the step window shared by the
other sweeps of its file, so that "before / during / after the step" stays defined.

Formats other than ``.nwb`` and ``.abf`` are refused with a one-line reason naming the format
(``.ibw`` Igor binary waves, HEKA ``.dat``, ...): convert them to NWB first.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import EphysError, UnreadableRecording
from .stepcommon import (_AMPERE, _VOLT, MIN_STEP_S, _align, _fill_windows_from_siblings,  # noqa: F401
                         _natural_key, _runs, _short, find_main_step)
from .sweeps import Sweep

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".nwb", ".abf")

# Recording formats we recognise but cannot read (suffix -> name used in messages).
UNSUPPORTED_FORMATS = {
    ".ibw": "Igor binary wave",
    ".pxp": "Igor packed experiment",
    ".dat": "HEKA PatchMaster bundle",
    ".smr": "Spike2",
    ".smrx": "Spike2",
    ".wcp": "WinWCP",
    ".axgd": "AxoGraph",
    ".axgx": "AxoGraph",
    ".atf": "Axon text file",
    ".mat": "MATLAB file",
    ".h5": "HDF5 file that is not named .nwb",
    ".hdf5": "HDF5 file that is not named .nwb",
    ".nix": "NIX file",
    ".edf": "EDF file",
    ".npy": "NumPy array",
}
# Obviously not recordings: ignored silently while scanning folders.
IGNORED_SUFFIXES = frozenset(
    ".csv .tsv .txt .md .rst .json .yaml .yml .toml .ini .cfg .py .ipynb .log .html .xml "
    ".png .jpg .jpeg .gif .svg .pdf .zip .gz .tar".split()
)



# ------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------


def read_recording(path: str | Path) -> list[Sweep]:
    """Read one recording file into current-clamp sweeps, choosing the reader by suffix.

    ``.nwb`` -> :func:`read_nwb`, ``.abf`` -> :func:`read_abf` (case-insensitive); an
    ``http(s)://`` string -> :func:`.remote.read_nwb_url` (NWB streamed). Returns
    ``list[Sweep]`` (v_mV / i_pA float64, mV / pA).

    Raises
    ------
    UnreadableRecording
        Missing file; any other suffix, e.g. ``"unsupported format .ibw (Igor binary wave);
        convert to NWB or ABF"``; or whatever the reader refuses.
    """
    from .remote import is_url

    if is_url(path):  # --stream: an NWB file over HTTP(S)
        from .remote import read_nwb_url

        return read_nwb_url(path, _nwb_sweeps)
    path = Path(path)
    if not path.is_file():
        raise UnreadableRecording("no such file", path)
    suffix = path.suffix.lower()
    if suffix == ".nwb":
        return read_nwb(path)
    if suffix == ".abf":
        return read_abf(path)
    raise UnreadableRecording(f"{unsupported_reason(path)}; convert to NWB or ABF", path)


def unsupported_reason(path: str | Path) -> str:
    """``"unsupported format .ibw (Igor binary wave)"`` for a suffix we cannot read."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "unsupported format (no file extension)"
    name = UNSUPPORTED_FORMATS.get(suffix)
    return f"unsupported format {suffix} ({name})" if name else f"unsupported format {suffix}"


# ------------------------------------------------------------------------------------------------
# NWB
# ------------------------------------------------------------------------------------------------


def read_nwb(path: str | Path) -> list[Sweep]:
    """Read the current-clamp sweeps of an NWB 2 file: fast h5py path, pynwb as the fallback.

    Same result as :func:`read_nwb_pynwb` (the reference, which documents the rules), read
    through :func:`.nwb_fast.read_nwb_h5` (h5py, only the icephys groups; ~50x less time per
    file); files that reader does not handle (extension types, odd layouts, unexpected errors)
    go to pynwb. ``EPHYS_NWB_READER=pynwb`` forces the reference reader (benchmarks, checks).

    Raises
    ------
    UnreadableRecording
        As :func:`read_nwb_pynwb`.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableRecording("no such file", path)
    if os.environ.get("EPHYS_NWB_READER", "").lower() != "pynwb":
        from .nwb_fast import NeedPynwb, read_nwb_h5

        try:
            sweeps = read_nwb_h5(path, path)
        except NeedPynwb as why:
            log.debug("%s: pynwb reader (%s)", path, why)
        else:
            _fill_windows_from_siblings(sweeps)
            return sweeps
    return read_nwb_pynwb(path)


def read_nwb_pynwb(path: str | Path) -> list[Sweep]:
    """Read the current-clamp sweeps of an NWB 2 file (pynwb icephys): the reference reader.

    Every ``CurrentClampSeries`` in ``acquisition`` (``IZeroClampSeries`` excluded: no current
    is injected) is one sweep, paired with its ``CurrentClampStimulusSeries`` through the
    intracellular-recordings table, else through an equal ``sweep_number`` in ``stimulus``.
    Values are ``data * conversion + offset`` in the series' ``unit``, converted to mV / pA;
    the rate comes from ``rate`` (or the timestamps). A stimulus with a different start, rate
    or length is resampled onto the response's sample times (nearest sample, edges held).

    A response without a stimulus is kept with ``i_pA`` all zeros, ``stim_amp_pA`` and the step
    times NaN and ``meta["stimulus"] = "missing"``: its voltage is still usable, but nothing is
    reconstructed. Sweeps are ordered by sweep number, start time, then name; ``sweep_id`` is
    the response series name; ``meta`` holds file, series, stimulus_series, sweep_number,
    stimulus_description.

    Raises
    ------
    UnreadableRecording
        ``"not a readable NWB file (<reason>)"``; ``"voltage-clamp only: no current-clamp
        sweeps"``; ``"no current-clamp sweeps (...)"``; an unknown unit.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableRecording("no such file", path)
    import h5py

    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError as exc:
        raise UnreadableRecording(f"not a readable NWB file ({_short(exc)})", path) from exc
    if not is_hdf5:
        raise UnreadableRecording("not a readable NWB file (not an HDF5 file)", path)

    from pynwb import NWBHDF5IO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old files (SweepTable, missing fields) warn a lot
        try:
            io = NWBHDF5IO(str(path), "r", load_namespaces=True)
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot read this file"
            raise UnreadableRecording(f"not a readable NWB file ({_short(exc)})", path) from exc
        try:
            try:
                nwbfile = io.read()
            except Exception as exc:  # noqa: BLE001
                raise UnreadableRecording(f"not a readable NWB file ({_short(exc)})", path) from exc
            sweeps = _nwb_sweeps(nwbfile, path)
        finally:
            io.close()
    _fill_windows_from_siblings(sweeps)
    return sweeps


def _nwb_sweeps(nwbfile, path: Path) -> list[Sweep]:
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries, IZeroClampSeries, VoltageClampSeries

    acquisition = list(nwbfile.acquisition.values())
    responses = [ts for ts in acquisition if isinstance(ts, CurrentClampSeries) and not isinstance(ts, IZeroClampSeries)]
    if not responses:
        if any(isinstance(ts, VoltageClampSeries) for ts in acquisition):
            raise UnreadableRecording("voltage-clamp only: no current-clamp sweeps", path)
        if any(isinstance(ts, IZeroClampSeries) for ts in acquisition):
            raise UnreadableRecording("no current-clamp sweeps with injected current (only I=0 clamp series)", path)
        kinds = Counter(type(ts).__name__ for ts in acquisition)
        held = ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())) or "nothing"
        raise UnreadableRecording(f"no current-clamp sweeps (acquisition holds {held})", path)

    # pairing 1: the intracellular recordings table (NWB >= 2.4)
    by_table: dict[int, tuple] = {}
    try:
        table = nwbfile.intracellular_recordings
        if table is not None and len(table) > 0:
            resp_col = table.category_tables["responses"]["response"]
            stim_col = table.category_tables["stimuli"]["stimulus"]
            for row in range(len(table)):
                r, s = resp_col[row], stim_col[row]
                stim = (s.timeseries, int(s.idx_start), int(s.count)) if int(s.idx_start) >= 0 else None
                by_table[id(r.timeseries)] = ((int(r.idx_start), int(r.count)), stim)
    except Exception:  # noqa: BLE001 - a malformed table just means "use sweep numbers"
        by_table = {}
    # pairing 2: sweep_number
    by_number: dict[int, list] = {}
    for ts in nwbfile.stimulus.values():
        if isinstance(ts, CurrentClampStimulusSeries) and getattr(ts, "sweep_number", None) is not None:
            by_number.setdefault(int(ts.sweep_number), []).append(ts)

    def order(ts):
        n = getattr(ts, "sweep_number", None)
        return (float(n) if n is not None else float("inf"), _start_time(ts), _natural_key(ts.name))

    sweeps = []
    for resp in sorted(responses, key=order):
        resp_slice, stim = by_table.get(id(resp), (None, None))
        if stim is None and getattr(resp, "sweep_number", None) is not None:
            candidates = by_number.get(int(resp.sweep_number), [])
            if len(candidates) == 1:
                stim = (candidates[0], 0, -1)
        v_mV, fs, t0 = _series_values(resp, _VOLT, 1e-3, path, resp_slice)
        if v_mV.size == 0:
            continue
        meta = {
            "file": str(path),
            "series": resp.name,
            "sweep_number": None if getattr(resp, "sweep_number", None) is None else int(resp.sweep_number),
            "stimulus_description": getattr(resp, "stimulus_description", None),
        }
        if stim is None:
            meta.update(stimulus="missing", stimulus_series=None)
            nan = float("nan")
            sweeps.append(Sweep(resp.name, v_mV, np.zeros_like(v_mV), fs, nan, nan, nan, t0, meta))
            continue
        stim_ts, s_start, s_count = stim
        i_pA, s_fs, s_t0 = _series_values(stim_ts, _AMPERE, 1e-12, path, (s_start, s_count))
        i_pA = _align(i_pA, s_fs, s_t0, v_mV.size, fs, t0)
        meta.update(stimulus="file", stimulus_series=stim_ts.name)
        amp, start, end = find_main_step(i_pA, fs)
        sweeps.append(Sweep(resp.name, v_mV, i_pA, fs, amp, start, end, t0, meta))
    if not sweeps:
        raise UnreadableRecording("no current-clamp sweeps (all current-clamp series are empty)", path)
    return sweeps


def _series_values(ts, units: dict, target: float, path: Path, sl=None) -> tuple[np.ndarray, float, float]:
    """(values in target units, float64), sampling rate Hz, start time s of a TimeSeries."""
    unit = str(getattr(ts, "unit", "") or "").strip()
    scale = units.get(unit.lower())
    if scale is None:
        kind = "voltage" if units is _VOLT else "current"
        raise UnreadableRecording(f"unknown {kind} unit {unit!r} in series {ts.name}", path)
    start, count = (0, -1) if sl is None else sl
    stop = None if count is None or count < 0 else start + count
    data = np.asarray(ts.data[start:stop], dtype=np.float64)
    if data.ndim != 1:
        data = data.reshape(data.shape[0], -1)[:, 0]
    conversion = float(getattr(ts, "conversion", 1.0) or 1.0)
    offset = float(getattr(ts, "offset", 0.0) or 0.0)
    factor = conversion * scale / target  # computed first: 1e-12 * 1 / 1e-12 == 1.0 exactly
    values = data * factor
    if offset:
        values += offset * scale / target
    if ts.rate is not None:
        fs = float(ts.rate)
        t0 = float(ts.starting_time or 0.0) + start / fs
    else:
        stamps = np.asarray(ts.timestamps[start:stop], dtype=np.float64)
        if stamps.size < 2:
            raise UnreadableRecording(f"series {ts.name} has no sampling rate", path)
        fs = 1.0 / float(np.median(np.diff(stamps)))
        t0 = float(stamps[0])
    if not np.isfinite(fs) or fs <= 0:
        raise UnreadableRecording(f"series {ts.name} has an invalid sampling rate ({fs})", path)
    return values, fs, t0



def _start_time(ts) -> float:
    if ts.starting_time is not None:
        return float(ts.starting_time)
    try:
        return float(ts.timestamps[0])
    except Exception:  # noqa: BLE001
        return 0.0


# ------------------------------------------------------------------------------------------------
# ABF
# ------------------------------------------------------------------------------------------------


def read_abf(path: str | Path) -> list[Sweep]:
    """Read the sweeps of an Axon ABF (v1 or v2) current-clamp file with pyabf.

    Current clamp means an ADC channel in volts (mV); the first such channel is the membrane
    potential. The injected current is, in order of preference:

    1. the command waveform of that channel (pyabf ``sweepC``, rebuilt from the protocol's epoch
       table) when its unit is a current and it is not flat in every sweep;
    2. otherwise a recorded current ADC channel (e.g. ``Imemb`` in pA; Ferguson et al. 2015
       files, whose DAC is labelled mV): noisy, with capacitive spike artefacts, but the real
       current.

    The step comes from the epoch table (first step epoch whose level varies across sweeps,
    checked against ``sweepC``) or else from :func:`find_main_step` on the current. ``sweep_id``
    is ``"sweep_<n:03d>"``, ``t0_s`` the sweep start time; ``meta`` has file, series, channel,
    protocol, stimulus_source.

    Raises
    ------
    UnreadableRecording
        ``"not a readable ABF file (<reason>)"``; ``"voltage-clamp recording (ADC units pA)"``
        when no ADC is in volts but one is a current; ``"no usable command waveform ..."`` when
        the command is not a current (or flat) and no current channel was recorded.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableRecording("no such file", path)
    import pyabf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            abf = pyabf.ABF(str(path))
    except Exception as exc:  # noqa: BLE001 - pyabf raises many kinds on bad input
        raise UnreadableRecording(f"not a readable ABF file ({_short(exc)})", path) from exc

    units = [str(u).replace("\x00", "").strip() for u in abf.adcUnits]
    v_chs = [k for k, u in enumerate(units) if u.lower() in _VOLT]
    i_chs = [k for k, u in enumerate(units) if u.lower() in _AMPERE]
    if not v_chs:
        if i_chs:
            raise UnreadableRecording(f"voltage-clamp recording (ADC units {units[i_chs[0]]})", path)
        raise UnreadableRecording(f"no membrane-potential channel (ADC units: {', '.join(units) or 'none'})", path)
    v_ch = v_chs[0]
    fs = float(abf.sampleRate)
    n_sweeps = int(abf.sweepCount)
    if n_sweeps < 1:
        raise UnreadableRecording("no sweeps in file", path)

    v_scale = _VOLT[units[v_ch].lower()] / 1e-3
    volts, commands = [], []
    for k in range(n_sweeps):
        abf.setSweep(k, channel=v_ch)
        volts.append(np.asarray(abf.sweepY, dtype=np.float64) * v_scale)
        commands.append(np.asarray(abf.sweepC, dtype=np.float64))
    cmd_unit = str(abf.sweepUnitsC).replace("\x00", "").strip()
    cmd_usable = cmd_unit.lower() in _AMPERE and any(np.ptp(c) > 0 for c in commands if c.size)

    epoch_steps = None
    if cmd_usable:
        c_scale = _AMPERE[cmd_unit.lower()] / 1e-12
        currents = [c * c_scale for c in commands]
        source = f"command waveform ({cmd_unit}, DAC of channel {v_ch})"
        epoch_steps = _abf_epoch_steps(abf, v_ch, commands, fs, c_scale)
    elif i_chs:
        i_ch = i_chs[0]
        i_scale = _AMPERE[units[i_ch].lower()] / 1e-12
        currents = []
        for k in range(n_sweeps):
            abf.setSweep(k, channel=i_ch)
            currents.append(np.asarray(abf.sweepY, dtype=np.float64) * i_scale)
        source = f"recorded current channel {abf.adcNames[i_ch]!r} ({units[i_ch]})"
    else:
        if not cmd_unit:
            why = "command has no unit"
        elif cmd_unit.lower() not in _AMPERE:
            why = f"command unit {cmd_unit!r}"
        else:
            why = "command flat in every sweep"
        raise UnreadableRecording(f"no usable command waveform ({why}) and no recorded current channel", path)

    times = getattr(abf, "sweepTimesSec", None)
    sweeps = []
    for k in range(n_sweeps):
        v, i = volts[k], currents[k]
        n = min(v.size, i.size)
        v, i = v[:n], i[:n]
        if epoch_steps is not None:
            amp, start, end = epoch_steps[k]
        else:
            amp, start, end = find_main_step(i, fs)
        meta = {
            "file": str(path),
            "series": f"sweep {k} channel {v_ch} ({abf.adcNames[v_ch]})",
            "sweep_number": k,
            "channel": v_ch,
            "protocol": getattr(abf, "protocol", None),
            "stimulus_source": source,
            "stimulus": "file",
        }
        t0 = float(times[k]) if times is not None and len(times) > k else k * n / fs
        sweeps.append(Sweep(f"sweep_{k:03d}", v, i, fs, amp, start, end, t0, meta))
    _fill_windows_from_siblings(sweeps)
    return sweeps


def _abf_epoch_steps(abf, channel: int, commands: list[np.ndarray], fs: float, c_scale: float):
    """Per-sweep (amp_pA, start_s, end_s) from the epoch table, or None if it does not fit.

    The main step is the first 'Step' epoch of >= 50 ms whose level changes across sweeps (so
    the fixed -100 pA pulse of "dual" protocols and the holding epochs are not taken); the
    amplitude is level minus the holding command (first sample). Every sweep's ``sweepC`` must
    equal the epoch level inside the epoch, else the table is not trusted.
    """
    try:
        tables = []
        for k in range(len(commands)):
            abf.setSweep(k, channel=channel)
            ep = abf.sweepEpochs
            tables.append(list(zip(ep.types, ep.p1s, ep.p2s, ep.levels)))
    except Exception:  # noqa: BLE001 - no usable epoch table
        return None
    if not tables or any(len(t) != len(tables[0]) for t in tables) or not tables[0]:
        return None
    chosen = None
    for j, (kind, p1, p2, _) in enumerate(tables[0]):
        if str(kind).lower() != "step" or (p2 - p1) / fs < MIN_STEP_S:
            continue
        levels = {round(float(t[j][3]), 9) for t in tables}
        same_place = all(t[j][1] == p1 and t[j][2] == p2 for t in tables)
        if len(levels) > 1 and same_place:
            chosen = j
            break
    if chosen is None:
        return None
    out = []
    for t, c in zip(tables, commands):
        _, p1, p2, level = t[chosen]
        if p2 > c.size or abs(float(np.median(c[p1:p2])) - float(level)) > 1e-6 * max(1.0, abs(level)):
            return None
        amp = (float(level) - float(c[0])) * c_scale
        out.append((amp, p1 / fs, p2 / fs))
    return out



# ------------------------------------------------------------------------------------------------
# cell discovery
# ------------------------------------------------------------------------------------------------


@dataclass
class CellSource:
    """One cell to read: its id, its recording files, its label, where it was found.

    ``cell_id``: filesystem-safe, unique within a discovery. ``paths``: the supported files
    (sorted) holding its sweeps. ``label``: class name, or None when unknown. ``source``: the
    file or folder the cell stands for, as a string (a labels-CSV row's path resolved against
    the CSV's folder, or the file found by the scan): what to name when reporting the cell.
    """

    cell_id: str
    paths: list[Path]
    label: str | None
    source: str


def discover_cells(
    input_path: str | Path, labels_csv: str | Path | None = None
) -> tuple[list[CellSource], list[tuple[str, str]]]:
    """Find the cells under INPUT: ``(cells, skipped)`` with ``skipped`` = ``[(path, reason)]``.

    INPUT is one file (one cell) or a folder, searched recursively in sorted order (hidden files
    and folders excluded). Without ``labels_csv`` every ``.nwb``/``.abf`` file is one unlabelled
    cell. With a labels CSV (columns ``path`` and ``label``, others ignored; ``path`` relative to
    the CSV's folder; label ``unknown`` or empty -> None) each row is a cell: a file, or a folder
    whose supported files are all that cell's sweeps. Supported files not covered by a row are
    extra unlabelled cells; rows outside INPUT are ignored. A row folder without supported files
    is skipped with the reason (``"unsupported format .ibw (Igor binary wave) — 4 files"``); so
    are uncovered files of known recording formats (grouped per folder and suffix).
    Non-recording files (.csv .txt .md .json .yaml .py, images, ...) are ignored silently. Row
    numbers are file line numbers (the header is row 1).

    ``cell_id`` is a slug of the path relative to INPUT without suffix (``nwb_99111002``,
    ``ibw_C060109A1-SR-C1``), made unique (case-insensitively) with ``_2``, ``_3``...; for a
    file INPUT it is the file stem.

    Raises
    ------
    EphysError
        INPUT missing (``"no such file or folder"``); no recording found (``"no recordings found
        (looked for .nwb, .abf)"``); labels CSV missing, unreadable or without ``path``/``label``
        columns; a row whose path does not exist (``"labels CSV row N: <path> does not
        exist"``); a labels CSV naming no cell under INPUT; a file INPUT of an unsupported format.
    """
    root = Path(input_path)
    if not root.exists():
        raise EphysError("no such file or folder", root)
    rows = _read_labels_csv(Path(labels_csv)) if labels_csv is not None else None
    ids = _IdMaker()

    if root.is_file():
        if root.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise EphysError(f"{unsupported_reason(root)}; convert to NWB or ABF", root)
        label = None
        if rows is not None:
            hits = [r for r in rows if _same(r[1], root) or _is_under(root, r[1])]
            if not hits:
                raise EphysError(f"labels CSV names no cell under {root}", labels_csv)
            label = hits[0][2]
        return [CellSource(ids.make(root.stem), [root], label, str(root))], []

    supported, others = _scan(root)
    cells: list[CellSource] = []
    skipped: list[tuple[str, str]] = []
    claimed: dict[Path, str] = {}
    if rows is not None:
        inside = [r for r in rows if _same(r[1], root) or _is_under(r[1], root)]
        if not inside:
            raise EphysError(f"labels CSV names no cell under {root}", labels_csv)
        for _line, target, label, row_tag in inside:
            if target.is_file():
                files = [target] if target.suffix.lower() in SUPPORTED_SUFFIXES else []
                rest = [] if files else [target]
            else:
                sub_supported, sub_others = _scan(target)
                files, rest = sub_supported, [p for group in sub_others.values() for p in group]
            fresh = [f for f in files if f.resolve() not in claimed]
            if not fresh:
                if files:
                    first = claimed[files[0].resolve()]
                    skipped.append((str(target), f"already covered by {first}"))
                else:
                    skipped.append((str(target), _folder_reason(rest, target.is_dir())))
                for p in rest:
                    claimed.setdefault(p.resolve(), row_tag)
                continue
            for f in fresh:
                claimed[f.resolve()] = row_tag
            for p in rest:
                claimed.setdefault(p.resolve(), row_tag)
            rel = _relative(target, root) if not _same(target, root) else root.name
            cells.append(CellSource(ids.make(_strip_suffix(rel)), fresh, label, str(target)))
    for f in supported:
        if f.resolve() in claimed:
            continue
        cells.append(CellSource(ids.make(_strip_suffix(_relative(f, root))), [f], None, str(f)))
    for (folder, suffix), files in sorted(others.items()):
        files = [p for p in files if p.resolve() not in claimed]
        if files:
            n = len(files)
            where = files[0] if n == 1 else folder
            skipped.append((str(where), unsupported_reason(files[0]) + (f" — {n} files" if n > 1 else "")))
    if not cells:
        found = Counter(p.suffix.lower() for group in others.values() for p in group)
        extra = ""
        if found:
            desc = ", ".join(f"{n} {s} ({UNSUPPORTED_FORMATS.get(s, 'unknown format')})" for s, n in sorted(found.items()))
            extra = f"; found {desc}: convert to NWB or ABF"
        raise EphysError(f"no recordings found (looked for .nwb, .abf){extra}", root)
    return cells, skipped


def read_cell(cell: CellSource, skipped: list[tuple[str, str]] | None = None) -> list[Sweep]:
    """Read all the sweeps of a cell, file after file (``list[Sweep]``, mV / pA).

    With several files the sweep ids are prefixed by the file stem (``"PYR1__sweep_003"``) so
    they stay unique, and ``meta["cell_id"]`` is set on every sweep. A file that cannot be read
    is left out as long as another file of the cell gives sweeps; its ``(path, reason)`` is
    appended to ``skipped`` when a list is given.

    Raises
    ------
    UnreadableRecording
        When no file of the cell gives a sweep (the first file's reason, with its path).
    """
    sweeps: list[Sweep] = []
    errors: list[UnreadableRecording] = []
    stems = Counter(Path(str(p)).stem for p in cell.paths)
    for n, path in enumerate(cell.paths):
        try:
            got = read_recording(path)
        except UnreadableRecording as exc:
            errors.append(exc)
            log.info("%s", exc.one_line())
            if skipped is not None:
                skipped.append((str(path), exc.message))
            continue
        if len(cell.paths) > 1:
            stem = Path(str(path)).stem
            prefix = stem if stems[stem] == 1 else f"{stem}_{n}"
            for s in got:
                s.sweep_id = f"{prefix}__{s.sweep_id}"
        for s in got:
            s.meta["cell_id"] = cell.cell_id
        sweeps.extend(got)
    if not sweeps:
        if errors:
            raise UnreadableRecording(errors[0].message, errors[0].path)
        raise UnreadableRecording("cell has no recording files", cell.cell_id)
    return sweeps


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _scan(folder: Path) -> tuple[list[Path], dict[tuple[Path, str], list[Path]]]:
    """Supported files (sorted) and other recording-like files grouped by (parent, suffix)."""
    supported: list[Path] = []
    others: dict[tuple[Path, str], list[Path]] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        suffix = p.suffix.lower()
        if suffix in SUPPORTED_SUFFIXES:
            supported.append(p)
        elif suffix and suffix not in IGNORED_SUFFIXES:
            others.setdefault((p.parent, suffix), []).append(p)
    return supported, others


def _folder_reason(files: list[Path], is_dir: bool) -> str:
    if not files:
        return "no recordings in folder (looked for .nwb, .abf)" if is_dir else "not a recording"
    by_suffix = Counter(p.suffix.lower() for p in files)
    parts = []
    for suffix, n in sorted(by_suffix.items()):
        reason = unsupported_reason(Path("x" + suffix))
        parts.append(reason + (f" — {n} files" if n > 1 else ""))
    return "; ".join(parts)


def _read_labels_csv(csv_path: Path) -> list[tuple[int, Path, str | None, str]]:
    """Rows of a labels CSV as (line number, path, label or None, "<csv name> row <N>")."""
    import pandas as pd

    if not csv_path.is_file():
        raise EphysError("labels CSV not found", csv_path)
    _check_field_counts(csv_path)
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig",
                         comment="#", skip_blank_lines=True)
    except Exception as exc:  # noqa: BLE001 - pandas raises many kinds
        raise EphysError(f"labels CSV unreadable ({_short(exc)})", csv_path) from exc
    cols = {str(c).strip().lower(): c for c in df.columns}
    if "path" not in cols or "label" not in cols:
        found = ", ".join(map(str, df.columns)) or "none"
        raise EphysError(f"labels CSV needs columns 'path' and 'label' (found: {found})", csv_path)
    rows = []
    for k, (p, lab) in enumerate(zip(df[cols["path"]], df[cols["label"]])):
        line = k + 2
        p = str(p).strip()
        if not p:
            raise EphysError(f"labels CSV row {line}: empty path", csv_path)
        target = Path(p) if Path(p).is_absolute() else csv_path.parent / p
        if not target.exists():
            raise EphysError(f"labels CSV row {line}: {p} does not exist", csv_path)
        lab = str(lab).strip()
        label = None if lab == "" or lab.lower() == "unknown" else lab
        rows.append((line, target, label, f"{csv_path.name} row {line}"))
    return _normalise_labels(rows, csv_path)


def _check_field_counts(csv_path: Path) -> None:
    """Every row has as many fields as the header (pandas would otherwise shift a row with an
    extra field: its path read as the index, its label as the path).

    Raises
    ------
    EphysError
        A row with more or fewer fields than the header (naming the row).
    """
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = [(k, r) for k, r in enumerate(csv.reader(fh), start=1)
                    if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    except (UnicodeDecodeError, csv.Error):
        return  # pandas names what is wrong with the file
    if not rows:
        return
    n = len(rows[0][1])
    for k, r in rows[1:]:
        if len(r) != n:
            raise EphysError(f"labels CSV row {k}: {len(r)} fields, the header has {n} ({', '.join(rows[0][1])}); "
                             "quote a path that holds a comma", csv_path)


def _normalise_labels(rows: list[tuple[int, Path, str | None, str]], csv_path: Path):
    """Labels compared case-insensitively (whitespace already stripped): every spelling of a class
    becomes its most frequent one, with a warning naming the variants; two rows giving one path
    different labels are refused.

    Raises
    ------
    EphysError
        Conflicting duplicate rows (both row numbers and labels named).
    """
    import warnings
    from collections import Counter

    spellings: dict[str, Counter] = {}
    for _line, _t, lab, _tag in rows:
        if lab is not None:
            spellings.setdefault(lab.casefold(), Counter())[lab] += 1
    canon = {k: c.most_common(1)[0][0] for k, c in spellings.items()}
    variants = {canon[k]: sorted(set(c) - {canon[k]}) for k, c in spellings.items() if len(c) > 1}
    if variants:
        said = "; ".join(f"{', '.join(map(repr, v))} -> {k!r}" for k, v in variants.items())
        warnings.warn(f"{csv_path}: labels differing only in case merged ({said})", UserWarning, stacklevel=3)
    out, seen = [], {}
    for line, target, lab, tag in rows:
        lab = canon[lab.casefold()] if lab is not None else None
        key = str(target.resolve())
        if key in seen and seen[key][1] != lab:
            raise EphysError(f"labels CSV rows {seen[key][0]} and {line} give {target.name} different labels "
                             f"({seen[key][1]!r}, {lab!r})", csv_path)
        seen.setdefault(key, (line, lab))
        out.append((line, target, lab, tag))
    return out


class _IdMaker:
    """Filesystem-safe, unique (case-insensitively) cell ids."""

    def __init__(self):
        self.seen: set[str] = set()

    def make(self, text: str) -> str:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "cell"
        cand, n = slug, 1
        while cand.lower() in self.seen:
            n += 1
            cand = f"{slug}_{n}"
        self.seen.add(cand.lower())
        return cand


def _strip_suffix(rel: str) -> str:
    p = Path(rel)
    return str(p.with_suffix("")) if p.suffix.lower() in SUPPORTED_SUFFIXES else rel


def _relative(p: Path, root: Path) -> str:
    try:
        return str(p.resolve().relative_to(root.resolve()))
    except ValueError:
        return p.name


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _is_under(p: Path, folder: Path) -> bool:
    try:
        p.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


