"""Axona (DACQ) tetrode spike files and Tint ``.cut`` files.

A tetrode file ``<trial>.<n>`` is an ASCII header of ``key value`` lines up to ``data_start``,
then ``num_spikes`` records of ``num_chans`` x (big-endian timestamp of
``bytes_per_timestamp`` bytes on the ``timebase`` clock + ``samples_per_spike`` signed
bytes), then ``\\r\\ndata_end``. The layout is Axona's "DACQ file format" note
(``spike_format t,ch1,t,ch2,t,ch3,t,ch4``). A Tint cut file ``<trial>_<n>.cut`` ends with
``Exact_cut_for: <trial> spikes: N`` followed by N cluster ids (0 = noise / unassigned).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import EphysError
from .ecephys import LfpRecording


@dataclass
class TetrodeSpikes:
    """Spikes of one Axona tetrode file.

    Attributes
    ----------
    waveforms : np.ndarray, int8 -> stored as float32, shape (n_spikes, n_chans, n_samples),
        raw ADC units (-128..127; the gain is in the ``.set`` file)
    times_s : np.ndarray, float64, shape (n_spikes,), spike time from the trial start, s
    fs_hz : float, waveform sampling rate (Axona: 48000)
    header : dict[str, str], the file's header
    """

    waveforms: np.ndarray
    times_s: np.ndarray
    fs_hz: float
    header: dict


def _header(data: bytes, path: Path) -> tuple[dict, int]:
    k = data.find(b"data_start")
    if k < 0:
        raise EphysError("not an Axona file (no data_start)", path)
    header = {}
    for line in data[:k].decode("latin-1").splitlines():
        parts = line.strip().split(None, 1)
        if parts:
            header[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return header, k + len(b"data_start")


def _number(header: dict, key: str, path: Path) -> float:
    try:
        return float(str(header[key]).split()[0])
    except (KeyError, ValueError, IndexError):
        raise EphysError(f"Axona header has no usable '{key}'", path) from None


def read_tetrode(path: str | Path) -> TetrodeSpikes:
    """Read an Axona tetrode spike file (``<trial>.1`` ... ``.16``).

    Raises
    ------
    EphysError
        Missing file, no ``data_start``, header fields missing, or fewer bytes than
        ``num_spikes`` records.
    """
    path = Path(path)
    if not path.is_file():
        raise EphysError("no such Axona tetrode file", path)
    data = path.read_bytes()
    header, start = _header(data, path)
    n = int(_number(header, "num_spikes", path))
    n_ch = int(_number(header, "num_chans", path))
    n_s = int(_number(header, "samples_per_spike", path))
    b_ts = int(_number(header, "bytes_per_timestamp", path))
    timebase = _number(header, "timebase", path)
    fs = _number(header, "sample_rate", path)
    if int(_number(header, "bytes_per_sample", path)) != 1:
        raise EphysError("only 1 byte per sample is supported", path)
    rec = b_ts + n_s
    need = n * n_ch * rec
    if len(data) - start < need:
        raise EphysError(f"file holds fewer bytes than {n} spikes need", path)
    raw = np.frombuffer(data, dtype=np.uint8, count=need, offset=start).reshape(n, n_ch, rec)
    ts = raw[:, 0, :b_ts].astype(np.uint64)
    t = np.zeros(n, np.uint64)
    for b in range(b_ts):  # big-endian
        t = (t << np.uint64(8)) | ts[:, b]
    wav = raw[:, :, b_ts:].view(np.int8).astype(np.float32)
    return TetrodeSpikes(wav, t.astype(np.float64) / timebase, fs, header)


def read_cut(path: str | Path, n_spikes: int | None = None) -> np.ndarray:
    """Cluster id per spike (int64, 0 = noise) from a Tint ``.cut`` file.

    Raises
    ------
    EphysError
        Missing file, no ``Exact_cut_for`` section, or a count different from ``n_spikes``.
    """
    path = Path(path)
    if not path.is_file():
        raise EphysError("no such cut file", path)
    text = path.read_text(encoding="latin-1")
    m = re.search(r"Exact_cut_for:\s*\S+\s+spikes:\s*(\d+)", text)
    if not m:
        raise EphysError("not a Tint cut file (no 'Exact_cut_for')", path)
    ids = np.array(text[m.end():].split(), dtype=np.int64)
    declared = int(m.group(1))
    if ids.size != declared or (n_spikes is not None and ids.size != n_spikes):
        raise EphysError(f"cut file lists {ids.size} spikes, expected {n_spikes or declared}", path)
    return ids


def _read_axona_eeg(path: Path) -> tuple[np.ndarray, float]:
    data = path.read_bytes()
    header, start = _header(data, path)
    fs = _number(header, "sample_rate", path)
    n = int(_number(header, "num_EEG_samples", path) if "num_EEG_samples" in header
            else _number(header, "num_EGF_samples", path))
    width = int(_number(header, "bytes_per_sample", path))
    if width not in (1, 2):
        raise EphysError(f"unsupported bytes_per_sample {width} (1 or 2)", path)
    if len(data) - start < n * width:
        raise EphysError(f"file holds fewer bytes than its {n} samples need", path)
    dtype = np.int8 if width == 1 else np.dtype("<i2")
    return np.frombuffer(data, dtype=dtype, count=n, offset=start).astype(np.float64), fs


def read_axona_lfp(folder: str | Path, trial: str | None = None, tetrodes=None,
                   eeg_ext: str = "eeg") -> LfpRecording:
    """Read an Axona trial's LFP channels and sorted units.

    Parameters
    ----------
    folder : folder holding ``TRIAL.eeg*``, ``TRIAL.<N>``, ``TRIAL_<N>.cut``
    trial : trial basename (default: the only one with an ``.eeg`` file)
    tetrodes : tetrode numbers to read (default: every ``TRIAL.<N>`` with a cut file)
    eeg_ext : ``"eeg"`` (250 Hz) or ``"egf"`` (4.8 kHz)

    Raises
    ------
    EphysError
        No or several trials, LFP files of different lengths or rates, a tetrode without its cut
        file, or a cut file whose length differs from the tetrode's spike count.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EphysError("no such Axona folder", folder)
    if trial is None:
        trials = sorted({p.stem for p in folder.glob(f"*.{eeg_ext}")})
        if len(trials) != 1:
            raise EphysError(f"expected one trial with a .{eeg_ext} file, found {len(trials)}", folder)
        trial = trials[0]
    eeg = [p for p in folder.glob(f"{trial}.{eeg_ext}*") if re.fullmatch(rf"\.{eeg_ext}\d*", p.suffix)]
    eeg.sort(key=lambda p: int(p.suffix[len(eeg_ext) + 1:] or 1))
    if not eeg:
        raise EphysError(f"no {trial}.{eeg_ext} file", folder)
    chans, fss = [], set()
    for p in eeg:
        x, fs = _read_axona_eeg(p)
        chans.append(x)
        fss.add(fs)
    if len(fss) != 1 or len({c.size for c in chans}) != 1:
        raise EphysError("LFP files differ in sampling rate or length", folder)
    if tetrodes is None:
        tetrodes = sorted(int(p.suffix[1:]) for p in folder.glob(f"{trial}.*")
                          if p.suffix[1:].isdigit() and (folder / f"{trial}_{p.suffix[1:]}.cut").is_file())
    units: dict[str, np.ndarray] = {}
    sources = [str(p) for p in eeg]
    for n in tetrodes:
        tet = read_tetrode(folder / f"{trial}.{n}")
        cut_path = folder / f"{trial}_{n}.cut"
        cut = read_cut(cut_path, tet.times_s.size)
        sources += [str(folder / f"{trial}.{n}"), str(cut_path)]
        for c in sorted(set(cut.tolist()) - {0}):
            units[f"t{n}c{c}"] = np.sort(tet.times_s[cut == c])
    if not units:
        raise EphysError("no sorted unit (every cut cluster is 0)", folder)
    return LfpRecording(trial, np.stack(chans, axis=1), float(fss.pop()), 0.0,
                        [p.suffix[1:] for p in eeg], units, sources)
