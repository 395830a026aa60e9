"""Paired LFP + single-unit spike times: one :class:`LfpRecording` per participant / session
(what ``ephys prepare lfp`` reads).

Readers (the format readers live in :mod:`ephys.pipelines.blocks.readers`):

- :func:`ephys.pipelines.blocks.readers.axona.read_axona_lfp` — an Axona (DACQ) trial: ``TRIAL.eeg``, ``TRIAL.eeg2`` ... (LFP; 1 byte
  per sample at 250 Hz, or ``.egf`` 2 bytes at 4.8 kHz) and tetrode spike files ``TRIAL.N`` with
  their Tint cut ``TRIAL_N.cut`` (read by :mod:`ephys.pipelines.blocks.readers.axona`); every
  cluster id other than 0 (Tint's noise cluster) is a unit, named ``t<N>c<id>``.
- :func:`ephys.pipelines.blocks.readers.nwb_ecephys.read_nwb_lfp` — an NWB file (LFP
  ``ElectricalSeries`` + ``Units`` table);
- :func:`ephys.pipelines.blocks.readers.mat.read_mat_lfp` — a ``.mat`` file (``lfp``,
  ``fs_hz``) + a spike-time CSV;
- :func:`read_npy_lfp` — a folder with ``lfp.npy`` (float, (n_samples, n_channels)),
  ``spikes.csv`` (columns ``unit``, ``t_s``) and ``recording.json`` (``fs_hz``; optional ``t0_s``,
  ``channel_names``, ``group``).

All return spike times on the LFP's clock (seconds); :func:`check_recording` applies the checks
the LFP pipeline needs before windowing (NaN samples, spikes outside the recording, clocks that
do not overlap).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..blocks.readers.axona import read_axona_lfp
from ..blocks.readers.ecephys import LfpRecording, read_spikes_csv
from ..core.errors import EphysError

__all__ = ["LfpRecording", "read_axona_lfp", "read_npy_lfp", "read_spikes_csv", "read_lfp_recordings", "check_recording"]


def read_npy_lfp(folder: str | Path) -> LfpRecording:
    """Read ``lfp.npy`` + ``spikes.csv`` (``unit,t_s``) + ``recording.json`` (``fs_hz`` ...).

    Raises
    ------
    EphysError
        A missing or unreadable file, a bad shape, a missing ``fs_hz``, or a CSV row without a
        unit or a numeric time (the message names the file and row).
    """
    folder = Path(folder)
    meta_path, lfp_path, csv_path = folder / "recording.json", folder / "lfp.npy", folder / "spikes.csv"
    for p in (meta_path, lfp_path, csv_path):
        if not p.is_file():
            raise EphysError(f"missing {p.name} (an LFP recording folder holds lfp.npy, spikes.csv, recording.json)",
                             folder)
    try:
        meta = json.loads(meta_path.read_text())
        fs = float(meta["fs_hz"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EphysError(f"needs a numeric fs_hz ({type(exc).__name__}: {exc})", meta_path) from None
    if not (np.isfinite(fs) and fs > 0):
        raise EphysError(f"fs_hz must be a positive sampling rate in Hz, not {meta['fs_hz']!r}", meta_path)
    from ..core.datasets import load_npy

    lfp = load_npy(lfp_path, hint="")
    if lfp.ndim == 1:
        lfp = lfp[:, None]
    if lfp.ndim != 2 or not np.issubdtype(lfp.dtype, np.number):
        raise EphysError(f"expected a numeric (n_samples, n_channels) array, got {lfp.dtype} {lfp.shape}", lfp_path)
    units = read_spikes_csv(csv_path)
    names = list(meta.get("channel_names") or [f"ch{i + 1}" for i in range(lfp.shape[1])])
    if len(names) != lfp.shape[1]:
        raise EphysError(f"has {lfp.shape[1]} column(s) (channels) but {meta_path.name} names {len(names)} channels "
                         f"({', '.join(map(str, names[:6]))})", lfp_path)
    return LfpRecording(str(meta.get("group") or folder.name), lfp.astype(np.float64), fs,
                        float(meta.get("t0_s", 0.0)), names,
                        units,
                        [str(lfp_path), str(csv_path), str(meta_path)], dict(meta.get("units") or {}))


def _read_file(p: Path) -> LfpRecording:
    suffix = p.suffix.lower()
    if suffix == ".nwb":
        from ..blocks.readers.nwb_ecephys import read_nwb_lfp

        return read_nwb_lfp(p)
    if suffix == ".mat":
        from ..blocks.readers.mat import read_mat_lfp

        return read_mat_lfp(p)
    raise EphysError("expected an .nwb or .mat file, or a recording folder (Axona trial, or lfp.npy + "
                     "spikes.csv + recording.json)", p)


def _read_folder(p: Path) -> list[LfpRecording]:
    if (p / "lfp.npy").is_file() or (p / "recording.json").is_file():
        return [read_npy_lfp(p)]
    if any(p.glob("*.eeg")) or any(p.glob("*.egf")):
        return [read_axona_lfp(p, eeg_ext="eeg" if any(p.glob("*.eeg")) else "egf")]
    return [_read_file(f) for f in sorted(p.iterdir()) if f.is_file() and f.suffix.lower() in (".nwb", ".mat")]


def read_lfp_recordings(path: str | Path) -> list[LfpRecording]:
    """Every recording under ``path``: an ``.nwb`` file
    (:func:`ephys.pipelines.blocks.readers.nwb_ecephys.read_nwb_lfp`), a ``.mat`` file + spike CSV
    (:func:`ephys.pipelines.blocks.readers.mat.read_mat_lfp`), an Axona trial folder, an
    ``lfp.npy`` folder, a folder of ``.nwb`` / ``.mat`` files, or a folder of such folders (a
    cohort; sorted by name).

    Raises
    ------
    EphysError
        Nothing readable under ``path``, or two recordings with the same name.
    """
    path = Path(path)
    if not path.exists():
        raise EphysError("no such file or folder", path)
    if path.is_file():
        recs = [_read_file(path)]
    else:
        recs = _read_folder(path) or [r for p in sorted(path.iterdir()) if p.is_dir() for r in _read_folder(p)]
    if not recs:
        raise EphysError("no LFP recording found (.nwb, .mat + spike CSV, Axona .eeg + tetrode/.cut files, or "
                         "lfp.npy + spikes.csv)", path)
    names = [r.name for r in recs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EphysError(f"two recordings are named {dup[0]}", path)
    return recs


def check_recording(rec: LfpRecording, min_duration_s: float) -> None:
    """The checks every LFP dataset needs before windowing.

    Raises
    ------
    EphysError (naming the recording's first source file)
        NaN or infinite LFP samples; a recording shorter than ``min_duration_s`` (one window);
        LFP and spike clocks that do not overlap (every spike outside the LFP); some spike times
        outside the recording; a unit without spikes.
    """
    where = rec.sources[0] if rec.sources else rec.name
    bad = ~np.isfinite(rec.lfp)
    if bad.any():
        i, ch = np.argwhere(bad)[0]
        raise EphysError(f"{int(bad.sum())} NaN/infinite LFP samples (first: sample {i}, channel "
                         f"{rec.channel_names[ch] if ch < len(rec.channel_names) else ch})", where)
    if rec.duration_s < min_duration_s:
        raise EphysError(f"recording is {rec.duration_s:g} s long, shorter than one window ({min_duration_s:g} s)",
                         where)
    t_end = rec.t0_s + rec.duration_s
    all_t = np.concatenate([v for v in rec.units.values()] or [np.zeros(0)])
    if all_t.size and ((all_t < rec.t0_s) | (all_t >= t_end)).all():
        raise EphysError(f"LFP and spike clocks do not overlap (LFP {rec.t0_s:g}-{t_end:g} s, spikes "
                         f"{all_t.min():g}-{all_t.max():g} s)", where)
    for unit, t in rec.units.items():
        if t.size == 0:
            raise EphysError(f"unit {unit} has no spikes", where)
        out = (t < rec.t0_s) | (t >= t_end)
        if out.any():
            raise EphysError(f"unit {unit}: {int(out.sum())} spike times outside the recording "
                             f"({rec.t0_s:g}-{t_end:g} s), e.g. {t[out][0]:g} s", where)
