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
