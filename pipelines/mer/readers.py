"""Readers of microelectrode recordings: the ML-STIM ``.npz`` + metadata CSV, and columns of a
CSV / ``.npy`` file.

Every reader returns :class:`MerRecording` objects (one per recording = one depth of one
electrode) after checking the input; any problem raises :class:`EphysError` naming the file,
the row and the field, before anything is computed or written.

Formats
-------
* **ML-STIM** (Sciscenti et al. 2025; Biolab-PoliTO/ML-STIM): ``data.npz`` holding ``data``,
  N recordings x M samples (shorter recordings zero-padded), and a ``;``-separated metadata CSV
  with exactly the columns ``patient;side;electrode;depth;length;class`` (depth = EDT in µm,
  length = samples before padding, class 0 = outside / 1 = inside the STN), one row per
  recording, in the order of ``data``'s rows. 24 kHz unless ``fs_hz`` says otherwise. Given as the
  folder holding both (the ``.npz`` and ``metadata.csv``, or the one ``.csv`` next to it), the
  ``.npz`` or the metadata CSV.
* **Columns**: a comma-separated CSV (no header, or a header of non-numeric names) or a ``.npy``
  array of shape (n_samples, n_electrodes) (or (n_samples,)): one recording per column, e.g. the
  sigInspect demo files (Bakštein et al.; three parallel electrodes). No labels, no depth; the
  patient is the file name. The sampling rate is ``fs_hz`` (default 24 kHz, ML-STIM's and
  sigInspect's default).
* **NWB**: one ``ElectricalSeries`` per recording (see :data:`NWB_KEYS` for the convention:
  depth, side, electrode and class as JSON in the series description; the electrode in the
  electrodes table). :func:`write_nwb` writes it (``fetch_synthetic(..., nwb=True)``).

Units: every reader returns signals in µV, ML-STIM's unit (its feature ``mad`` and its published
scaling are in µV). NWB states the unit (an ``ElectricalSeries`` is in volts times its
``conversion``); an ML-STIM ``.npz`` is µV by that format's definition; a CSV / ``.npy`` has no
unit. ``units`` (``uV``, ``mV``, ``V``) declares it and overrides the file's. Without it, a file
whose samples are implausible for a MER in µV (robust SD, 1.4826 x the median absolute deviation,
outside :data:`PLAUSIBLE_SD_UV` for the median recording of the file: e.g. values of order 0.1,
i.e. mV or V) is refused with a message asking for ``--units``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import EphysError
from .dsp import FS_HZ, check_recording, resample_ratio
from .params import UNITS_TO_UV

METADATA_COLUMNS = ("patient", "side", "electrode", "depth", "length", "class")
SIDES = ("LEFT", "RIGHT")
#: robust SD (µV) of a raw MER that is plausible: background activity of a few µV to spikes and
#: LFP of a few mV; outside it a file without a declared unit is refused
PLAUSIBLE_SD_UV = (0.5, 5000.0)


def check_units(units: str | None, where=None) -> str | None:
    """``units`` if it is one of :data:`UNITS_TO_UV` (or None).

    Raises
    ------
    EphysError
        Any other value.
    """
    if units is not None and units not in UNITS_TO_UV:
        raise EphysError(f"unknown unit {units!r} (expected {', '.join(UNITS_TO_UV)})", where or "--units")
    return units


def to_microvolts(signal: np.ndarray, factor: float) -> np.ndarray:
    """``signal`` x ``factor`` (to µV), keeping a float dtype; the same array when ``factor`` is 1."""
    x = np.asarray(signal)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x if factor == 1.0 else x * x.dtype.type(factor)


def robust_sd(signal: np.ndarray, n_max: int = 24000) -> float:
    """1.4826 x the median absolute deviation of the first ``n_max`` samples (the SD of Gaussian noise)."""
    x = np.asarray(signal[:n_max], dtype=np.float64)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def check_scale(signals, where, what: str = "values") -> None:
    """Refuse input without a declared unit whose scale is implausible for a MER in µV.

    Raises
    ------
    EphysError
        The median robust SD over ``signals`` (µV) is outside :data:`PLAUSIBLE_SD_UV`; the message gives
        the scale found and asks for ``--units``.
    """
    sds = [robust_sd(s) for s in signals]
    if not sds:
        return
    sd = float(np.median(sds))
    lo, hi = PLAUSIBLE_SD_UV
    if not lo <= sd <= hi:
        guess = "mV or V" if sd < lo else "not µV (ADC counts?)"
        raise EphysError(f"{what} of order {sd:.2g} (robust SD) are implausible for a MER in µV (expected "
                         f"{lo:g}-{hi:g} µV; {guess}): declare the unit with --units uV|mV|V", where)


@dataclass
class MerRecording:
    """One microelectrode recording.

    Attributes
    ----------
    id : unique recording id (``P01_LEFT_Central_-1500um``)
    patient, side, electrode : str (side LEFT / RIGHT, or "" when unknown)
    depth_um : EDT in µm (NaN when unknown)
    label : 1 inside the STN, 0 outside, None unlabelled
    signal : (n_samples,) float array, the samples before zero padding, in µV
    fs_hz : its sampling rate
    source : file it came from; row : its row in that file (1-based metadata row or column)
    units_in : the unit the file was read in (``uV``, ``mV``, ``V``) and how it was known
        (``declared``, ``nwb``, ``assumed``), e.g. ``"mV (declared)"``
    """

    id: str
    patient: str
    side: str
    electrode: str
    depth_um: float
    label: int | None
    signal: np.ndarray = field(repr=False)
    fs_hz: float = FS_HZ
    source: str = ""
    row: int = 0
    units_in: str = "uV (assumed)"


def _unique_ids(recs: list[MerRecording]) -> list[MerRecording]:
    seen: dict[str, int] = {}
    for r in recs:
        if r.id in seen:
            seen[r.id] += 1
            r.id = f"{r.id}_{seen[r.id]}"
        else:
            seen[r.id] = 0
    return recs


def _fmt_depth(d: float) -> str:
    return f"{int(d)}um" if float(d).is_integer() else f"{d:g}um"


def read_mlstim(npz_path: str | Path, csv_path: str | Path, fs_hz: float | None = None,
                units: str | None = None) -> list[MerRecording]:
    """Read an ML-STIM ``.npz`` + metadata CSV pair (see the module docstring); µV unless ``units``
    says otherwise.

    Raises
    ------
    EphysError
        Unreadable files; no ``data`` array or not 2-D numeric; missing or extra metadata
        columns; a metadata / data row-count mismatch; in a row: empty patient, side not
        LEFT/RIGHT, non-numeric depth, length not an integer in 1..M, class not 0/1; NaN or Inf
        samples or an all-zero recording; an unusable sampling rate; without ``units``, a scale
        implausible for µV (:func:`check_scale`).
    """
    npz_path, csv_path = Path(npz_path), Path(csv_path)
    fs = float(fs_hz) if fs_hz is not None else float(FS_HZ)
    try:
        resample_ratio(fs)
    except EphysError as exc:
        raise EphysError(exc.message, npz_path) from None
    try:
        with np.load(npz_path, allow_pickle=False) as fh:
            if "data" not in fh.files:
                raise EphysError(f"no 'data' array in the .npz (found: {', '.join(fh.files) or 'none'})", npz_path)
            data = fh["data"]
    except EphysError:
        raise
    except Exception as exc:
        raise EphysError(f"unreadable .npz ({type(exc).__name__}: {exc})", npz_path) from None
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
        raise EphysError(f"'data' must be a 2-D numeric array (recordings x samples), got shape {data.shape} "
                         f"dtype {data.dtype}", npz_path)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable metadata ({exc})", csv_path) from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise EphysError("empty metadata file", csv_path)
    reader = csv.reader(lines, delimiter=";")
    header = [h.strip() for h in next(reader)]
    missing = [c for c in METADATA_COLUMNS if c not in header]
    extra = [c for c in header if c not in METADATA_COLUMNS]
    if missing or extra:
        what = "; ".join(x for x in (f"missing columns {missing}" if missing else "",
                                     f"extra columns {extra}" if extra else "") if x)
        hint = " (the file must be ';'-separated)" if len(header) == 1 else ""
        raise EphysError(f"row 0 (header): {what}; expected exactly {';'.join(METADATA_COLUMNS)}{hint}", csv_path)
    rows = list(reader)
    if len(rows) != data.shape[0]:
        raise EphysError(f"metadata has {len(rows)} rows but the data has {data.shape[0]} recordings", csv_path)
    col = {c: header.index(c) for c in METADATA_COLUMNS}
    recs = []
    for r, raw in enumerate(rows, start=1):
        if len(raw) != len(header):
            raise EphysError(f"row {r}: {len(raw)} fields, expected {len(header)}", csv_path)
        v = {c: raw[i].strip() for c, i in col.items()}
        if not v["patient"]:
            raise EphysError(f"row {r} field patient: empty", csv_path)
        side = v["side"].upper()
        if side not in SIDES:
            raise EphysError(f"row {r} field side: {v['side']!r} is not LEFT or RIGHT", csv_path)
        try:
            depth = float(v["depth"])
            if not math.isfinite(depth):
                raise ValueError
        except ValueError:
            raise EphysError(f"row {r} field depth: {v['depth']!r} is not a number (EDT in µm)", csv_path) from None
        try:
            length = int(float(v["length"]))
            if float(v["length"]) != length:
                raise ValueError
        except ValueError:
            raise EphysError(f"row {r} field length: {v['length']!r} is not an integer number of samples",
                             csv_path) from None
        if length < 1 or length > data.shape[1]:
            raise EphysError(f"row {r} field length: {length} samples, but the data rows hold {data.shape[1]}",
                             csv_path)
        if v["class"] not in ("0", "1", "0.0", "1.0"):
            raise EphysError(f"row {r} field class: {v['class']!r} is not 0 (outside) or 1 (inside the STN)",
                             csv_path)
        sig = data[r - 1, :length]
        try:
            check_recording(sig)
        except EphysError as exc:
            raise EphysError(f"row {r} (data row {r - 1}): {exc.message}", npz_path) from None
        rid = f"{v['patient']}_{side}_{v['electrode']}_{_fmt_depth(depth)}"
        recs.append(MerRecording(rid, v["patient"], side, v["electrode"], depth, int(float(v["class"])), sig, fs,
                                 str(npz_path), r))
    return _in_microvolts(recs, units, npz_path)


def _in_microvolts(recs: list[MerRecording], units: str | None, where) -> list[MerRecording]:
    """Signals to µV by the declared ``units``; without one, read as µV after :func:`check_scale`."""
    if units is None:
        check_scale([r.signal for r in recs], where)
    factor = UNITS_TO_UV[units or "uV"]
    for r in recs:
        r.signal = to_microvolts(r.signal, factor)
        r.units_in = f"{units} (declared)" if units else "uV (assumed)"
    return _unique_ids(recs)


def read_columns(path: str | Path, fs_hz: float | None = None, units: str | None = None) -> list[MerRecording]:
    """One recording per column of a CSV or ``.npy`` file (see the module docstring), in µV.

    Raises
    ------
    EphysError
        Unreadable file, non-numeric cell (row and column named), ragged rows, NaN / Inf or an
        all-zero column, an unusable sampling rate; without ``units``, a scale implausible for µV.
    """
    path = Path(path)
    fs = float(fs_hz) if fs_hz is not None else float(FS_HZ)
    try:
        resample_ratio(fs)
    except EphysError as exc:
        raise EphysError(exc.message, path) from None
    names = None
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise EphysError(f"unreadable .npy ({type(exc).__name__}: {exc})", path) from None
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise EphysError(f"expected a numeric (n_samples, n_electrodes) array, got shape {arr.shape} "
                             f"dtype {arr.dtype}", path)
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise EphysError(f"unreadable CSV ({exc})", path) from None
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise EphysError("empty file", path)
        delim = ";" if lines[0].count(";") > lines[0].count(",") else ","
        rows = list(csv.reader(lines, delimiter=delim))
        first = rows[0]
        try:
            [float(c) for c in first]
        except ValueError:
            names = [c.strip() for c in first]
            rows = rows[1:]
        width = len(rows[0]) if rows else 0
        out = np.empty((len(rows), width))
        for i, row in enumerate(rows):
            line_no = i + 1 + (names is not None)
            if len(row) != width:
                raise EphysError(f"row {line_no}: {len(row)} columns, expected {width}", path)
            for j, cell in enumerate(row):
                try:
                    out[i, j] = float(cell)
                except ValueError:
                    raise EphysError(f"row {line_no} column {j + 1}: {cell!r} is not a number", path) from None
        arr = out
    if arr.shape[0] == 0:
        raise EphysError("no samples", path)
    recs = []
    for j in range(arr.shape[1]):
        name = names[j] if names and j < len(names) and names[j] else f"E{j + 1}"
        try:
            sig = check_recording(arr[:, j])
        except EphysError as exc:
            raise EphysError(f"column {j + 1} ({name}): {exc.message}", path) from None
        recs.append(MerRecording(f"{path.stem}_{name}", path.stem, "", name, float("nan"), None, sig, fs,
                                 str(path), j + 1))
    return _in_microvolts(recs, units, path)


def _is_metadata_csv(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            head = fh.readline()
    except OSError:
        return False
    low = head.lower()
    return ";" in head and "patient" in low and "length" in low


def read_input(path: str | Path, fs_hz: float | None = None, units: str | None = None
               ) -> tuple[list[MerRecording], dict]:
    """Recordings of ``path`` in µV: an ML-STIM folder / ``.npz`` / metadata CSV, a columns CSV or
    ``.npy`` file, NWB files, or a folder of columns files.

    Parameters
    ----------
    fs_hz : the input's sampling rate (default: the file's, else 24 kHz)
    units : the input's unit, ``uV`` | ``mV`` | ``V`` (default: the file's, else µV; see the module docstring)

    Returns
    -------
    (recordings, info) where info has ``format`` ("mlstim" | "columns" | "nwb") and ``files``.

    Raises
    ------
    EphysError
        A missing path, a folder with nothing readable, an ``.npz`` without its metadata, an unknown
        unit, and everything the readers raise.
    """
    check_units(units)
    p = Path(path)
    if not p.exists():
        raise EphysError("no such file or folder", p)
    if p.is_dir():
        npz = sorted(p.glob("*.npz"))
        npz = [f for f in npz if f.name != "artifacts.npz"]
        metas = [f for f in sorted(p.glob("*.csv")) if _is_metadata_csv(f)]
        if npz:
            if len(npz) > 1 and not (p / "data.npz").is_file():
                raise EphysError(f"more than one .npz ({', '.join(f.name for f in npz)}); pass one of them", p)
            data = p / "data.npz" if (p / "data.npz").is_file() else npz[0]
            return read_input(data, fs_hz, units)
        nwbs = sorted(p.glob("*.nwb"))
        if nwbs:
            recs = [r for f in nwbs for r in read_nwb(f, fs_hz, units)]
            return _unique_ids(recs), {"format": "nwb", "files": [str(f) for f in nwbs]}
        files = [f for f in sorted(p.iterdir()) if f.suffix.lower() in (".csv", ".npy") and f not in metas]
        if not files:
            raise EphysError("no MER files here (expected data.npz + metadata.csv, or .csv / .npy columns)", p)
        recs = [r for f in files for r in read_columns(f, fs_hz, units)]
        return _unique_ids(recs), {"format": "columns", "files": [str(f) for f in files]}
    suffix = p.suffix.lower()
    if suffix == ".npz":
        cands = [p.with_suffix(".csv"), p.parent / "metadata.csv"]
        cands += [f for f in sorted(p.parent.glob("*.csv")) if _is_metadata_csv(f)]
        meta = next((c for c in cands if c.is_file()), None)
        if meta is None:
            raise EphysError("no metadata CSV next to it (expected metadata.csv or the same name .csv)", p)
        return read_mlstim(p, meta, fs_hz, units), {"format": "mlstim", "files": [str(p), str(meta)]}
    if suffix == ".csv" and _is_metadata_csv(p):
        cands = [p.with_suffix(".npz"), p.parent / "data.npz"] + sorted(p.parent.glob("*.npz"))
        data = next((c for c in cands if c.is_file() and c.name != "artifacts.npz"), None)
        if data is None:
            raise EphysError("metadata without its .npz (expected data.npz or the same name .npz)", p)
        return read_mlstim(data, p, fs_hz, units), {"format": "mlstim", "files": [str(data), str(p)]}
    if suffix in (".csv", ".npy"):
        return read_columns(p, fs_hz, units), {"format": "columns", "files": [str(p)]}
    if suffix == ".nwb":
        return read_nwb(p, fs_hz, units), {"format": "nwb", "files": [str(p)]}
    raise EphysError(f"unsupported MER file type {p.suffix!r} (expected .npz + metadata .csv, .csv or .npy)", p)


# --------------------------------------------------------------------------------------------
# NWB
# --------------------------------------------------------------------------------------------

#: NWB convention of this pipeline: one ``ElectricalSeries`` per recording in ``acquisition``,
#: whose ``description`` is a JSON object with these keys (``class`` may be null = unlabelled);
#: the series' one electrode (electrodes table row) has ``location`` "STN trajectory", its
#: electrode group is the side, and extra columns ``side`` and ``electrode_name``. The data are
#: volts x ``conversion`` (NWB's rule; :func:`write_nwb` stores µV with ``conversion`` 1e-6).
NWB_KEYS = ("depth_um", "side", "electrode", "class")


def write_nwb(recs: list[MerRecording], path: str | Path, patient: str | None = None) -> Path:
    """Write recordings of one patient as an NWB file (the convention of :data:`NWB_KEYS`)."""
    import datetime as dt
    import json

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectricalSeries
    from pynwb.file import Subject

    from ..core.atomic import atomic_path

    path = Path(path)
    pid = patient or (recs[0].patient if recs else path.stem)
    nwb = NWBFile(session_description="intraoperative microelectrode recordings (DBS, STN)",
                  identifier=f"mer-{pid}", session_start_time=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
                  subject=Subject(subject_id=pid, species="Homo sapiens"))
    device = nwb.create_device(name="microelectrode")
    nwb.add_electrode_column("side", "hemisphere: LEFT or RIGHT")
    nwb.add_electrode_column("electrode_name", "electrode of the array (Central, Anterior, ...)")
    rows: dict = {}
    groups: dict = {}
    for r in recs:
        key = (r.side, r.electrode)
        if key not in rows:
            if r.side not in groups:
                groups[r.side] = nwb.create_electrode_group(name=r.side or "unknown", description="side",
                                                            location="STN trajectory", device=device)
            nwb.add_electrode(location="STN trajectory", group=groups[r.side], side=r.side, electrode_name=r.electrode)
            rows[key] = len(rows)
    for r in recs:
        region = nwb.create_electrode_table_region([rows[(r.side, r.electrode)]], "the recording electrode")
        desc = json.dumps({"depth_um": r.depth_um, "side": r.side, "electrode": r.electrode, "class": r.label})
        nwb.add_acquisition(ElectricalSeries(name=r.id, data=np.asarray(r.signal, dtype=np.float32),
                                             electrodes=region, rate=float(r.fs_hz), description=desc,
                                             conversion=1e-6))  # the samples are µV
    with atomic_path(path, suffix=".nwb") as tmp:
        with NWBHDF5IO(str(tmp), "w") as io_:
            io_.write(nwb)
    return path


def read_nwb(path: str | Path, fs_hz: float | None = None, units: str | None = None) -> list[MerRecording]:
    """Recordings of an NWB file written in this pipeline's convention (:data:`NWB_KEYS`), in µV:
    data x ``conversion`` are volts (NWB's rule), unless ``units`` declares the unit of data x
    ``conversion`` otherwise.

    Raises
    ------
    EphysError
        Unreadable file, no ElectricalSeries, a series whose description is not the JSON
        convention or has a non-numeric depth, NaN / Inf or all-zero data, an unusable rate, a
        scale implausible for a MER (:func:`check_scale`) when ``units`` is not given.
    """
    import json

    from pynwb import NWBHDF5IO
    from pynwb.ecephys import ElectricalSeries

    path = Path(path)
    try:
        io_ = NWBHDF5IO(str(path), "r")
        nwb = io_.read()
    except Exception as exc:
        raise EphysError(f"unreadable NWB file ({type(exc).__name__}: {exc})", path) from None
    recs = []
    try:
        patient = (nwb.subject.subject_id if nwb.subject is not None else None) or path.stem
        series = [s for s in nwb.acquisition.values() if isinstance(s, ElectricalSeries)]
        if not series:
            raise EphysError("no ElectricalSeries in acquisition", path)
        for k, s in enumerate(series, start=1):
            try:
                meta = json.loads(s.description)
                depth = float(meta["depth_um"]) if meta.get("depth_um") is not None else float("nan")
            except (ValueError, TypeError, KeyError):
                raise EphysError(f"series {s.name}: description must be JSON with a numeric depth_um "
                                 f"(keys {', '.join(NWB_KEYS)})", path) from None
            rate = float(fs_hz) if fs_hz is not None else float(s.rate)
            try:
                resample_ratio(rate)
            except EphysError as exc:
                raise EphysError(f"series {s.name}: {exc.message}", path) from None
            factor = float(s.conversion or 1.0) * UNITS_TO_UV[units or "V"]
            sig = np.asarray(s.data[:], dtype=np.float64).reshape(-1) * factor
            try:
                check_recording(sig)
            except EphysError as exc:
                raise EphysError(f"series {s.name}: {exc.message}", path) from None
            side = str(meta.get("side") or "").upper()
            cls = meta.get("class")
            recs.append(MerRecording(s.name, str(patient), side, str(meta.get("electrode") or ""), depth,
                                     None if cls is None else int(cls), sig, rate, str(path), k,
                                     f"{units} (declared)" if units else f"V x {float(s.conversion or 1.0):g} (nwb)"))
    finally:
        io_.close()
    if units is None:
        check_scale([r.signal for r in recs], path, "values (volts x conversion, in µV)")
    return _unique_ids(recs)
