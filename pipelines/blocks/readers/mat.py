"""LFP from a MATLAB ``.mat`` file + spike times from a CSV: one :class:`LfpRecording` per file.

Variables read from ``NAME.mat`` (MATLAB v5/v7 through ``scipy.io.loadmat``; v7.3, which is HDF5,
through ``h5py``):

- ``lfp`` (required): numeric, (n_samples, n_channels) (a vector is one channel; a matrix with
  more columns than rows is taken as (n_channels, n_samples) and transposed, since a recording
  always has more samples than channels), in the file's unit (µV or ADC);
- ``fs_hz`` or ``fs`` (required): the sampling rate, Hz, a scalar;
- ``t0_s`` (optional, default 0): time of the first sample on the spike clock, s;
- ``channel_names`` (optional): a cell array / char matrix of n_channels names;
- ``group`` (optional): the recording / participant id (default: the file stem).

Spike times: ``NAME_spikes.csv`` beside the file, else ``spikes.csv`` in the same folder, with
columns ``unit`` and ``t_s`` (one row per spike, s, on the same clock as ``t0_s``;
:func:`ephys.pipelines.blocks.readers.ecephys.read_spikes_csv`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import EphysError
from .ecephys import LfpRecording, read_spikes_csv

__all__ = ["read_mat_lfp", "spikes_csv_for"]


def spikes_csv_for(mat_path: str | Path) -> Path:
    """The spike CSV that goes with ``NAME.mat``: ``NAME_spikes.csv`` if present, else ``spikes.csv``."""
    mat_path = Path(mat_path)
    own = mat_path.with_name(f"{mat_path.stem}_spikes.csv")
    return own if own.is_file() else mat_path.with_name("spikes.csv")


def _load(path: Path) -> dict:
    import h5py
    import scipy.io

    if not h5py.is_hdf5(path):
        try:
            return {k: v for k, v in scipy.io.loadmat(str(path), squeeze_me=True, chars_as_strings=True).items()
                    if not k.startswith("__")}
        except Exception as exc:  # scipy's MatReadError, ValueError, OSError ...: not a MATLAB file
            raise EphysError(f"not a readable .mat file ({type(exc).__name__}: {str(exc)[:120]})", path) from None
    out = {}  # v7.3: an HDF5 file
    try:
        with h5py.File(path, "r") as f:
            for k in ("lfp", "fs_hz", "fs", "t0_s"):
                if k in f and isinstance(f[k], h5py.Dataset):
                    out[k] = np.asarray(f[k][()]).T  # MATLAB is column-major: h5py sees the dims reversed
            if "group" in f and isinstance(f["group"], h5py.Dataset) and f["group"].dtype.kind == "u":
                out["group"] = "".join(map(chr, np.asarray(f["group"][()]).ravel()))  # a MATLAB char array
    except OSError as exc:
        raise EphysError(f"not a readable .mat file ({exc})", path) from None
    return out


def _scalar(d: dict, names, path: Path, required: bool = True, default=None) -> float | None:
    for n in names:
        if n in d:
            v = np.asarray(d[n])
            if v.size != 1 or not np.issubdtype(v.dtype, np.number):
                raise EphysError(f"variable {n} must be a numeric scalar, got {v.dtype} {v.shape}", path)
            return float(v.ravel()[0])
    if required:
        raise EphysError(f"missing variable {' or '.join(names)} (the LFP sampling rate, Hz)", path)
    return default


def read_mat_lfp(path: str | Path, spikes_csv: str | Path | None = None) -> LfpRecording:
    """Read ``lfp`` / ``fs_hz`` (or ``fs``) from a ``.mat`` file and the spike CSV beside it (see
    the module docstring for the variable names and the CSV's name).

    Returns
    -------
    LfpRecording with ``lfp`` float64 (n_samples, n_channels).

    Raises
    ------
    EphysError (naming the file)
        Not a readable .mat file; a missing ``lfp`` or ``fs_hz``/``fs`` variable; a non-numeric or
        more than 2-D ``lfp``; a non-positive rate; a missing or malformed spike CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise EphysError("no such .mat file", path)
    d = _load(path)
    if "lfp" not in d:
        raise EphysError(f"missing variable lfp (n_samples, n_channels); found {', '.join(sorted(d)) or 'none'}",
                         path)
    lfp = np.asarray(d["lfp"])
    if not np.issubdtype(lfp.dtype, np.number) or lfp.ndim > 2 or lfp.size == 0:
        raise EphysError(f"variable lfp must be a numeric (n_samples, n_channels) matrix, got {lfp.dtype} "
                         f"{lfp.shape}", path)
    lfp = lfp.astype(np.float64)
    if lfp.ndim == 1:
        lfp = lfp[:, None]
    elif lfp.shape[1] > lfp.shape[0]:
        lfp = lfp.T
    fs = _scalar(d, ("fs_hz", "fs"), path)
    if not fs > 0:
        raise EphysError(f"sampling rate must be positive, got {fs:g}", path)
    t0 = _scalar(d, ("t0_s",), path, required=False, default=0.0)
    names = d.get("channel_names")
    names = [str(n).strip() for n in np.atleast_1d(names)] if names is not None else []
    if len(names) != lfp.shape[1]:
        names = [f"ch{k + 1}" for k in range(lfp.shape[1])]
    group = d.get("group")
    group = str(group).strip() if group is not None and np.asarray(group).dtype.kind in "US" else path.stem
    csv_path = Path(spikes_csv) if spikes_csv is not None else spikes_csv_for(path)
    units = read_spikes_csv(csv_path)
    return LfpRecording(group or path.stem, lfp, fs, t0, names, units, [str(path), str(csv_path)])
