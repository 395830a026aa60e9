"""The record every LFP reader returns (:class:`LfpRecording`) and the spike-time CSV they share.

Shared by the format readers that return one (Axona, NWB ecephys, MATLAB) and by the lfp
pipeline's dispatch (:mod:`ephys.pipelines.lfp.readers`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.errors import EphysError

__all__ = ["LfpRecording", "read_spikes_csv"]


@dataclass
class LfpRecording:
    """One recording: multichannel LFP and the spike times of its units.

    Attributes
    ----------
    name : str               recording / participant id (the CV group)
    lfp : np.ndarray         float64, shape (n_samples, n_channels), the file's unit (ADC or µV)
    fs_hz : float            LFP sampling rate
    t0_s : float             time of the first LFP sample on the spike clock, s
    channel_names : list[str]
    units : dict[str, np.ndarray]  unit id -> sorted spike times, float64, s (same clock as t0_s)
    sources : list[str]      files read
    unit_info : dict[str, dict]  optional per-unit metadata (e.g. simulated ground truth)
    """

    name: str
    lfp: np.ndarray
    fs_hz: float
    t0_s: float
    channel_names: list[str]
    units: dict[str, np.ndarray]
    sources: list[str] = field(default_factory=list)
    unit_info: dict[str, dict] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.lfp.shape[0] / self.fs_hz


def read_spikes_csv(csv_path: str | Path) -> dict[str, np.ndarray]:
    """Spike times from a CSV with columns ``unit`` and ``t_s`` (one row per spike, seconds).

    Returns unit id -> sorted float64 spike times, s.

    Raises
    ------
    EphysError
        A missing file or column, a row without a unit or a numeric time (names the file and row).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise EphysError("missing spike-time CSV (columns unit,t_s)", csv_path)
    units: dict[str, list[float]] = {}
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"unit", "t_s"} <= set(reader.fieldnames):
            raise EphysError("needs columns unit,t_s", csv_path)
        for k, row in enumerate(reader, start=2):
            unit = (row.get("unit") or "").strip()
            try:
                t = float(row["t_s"])
            except (TypeError, ValueError):
                raise EphysError(f"row {k}: t_s is not a number ({row.get('t_s')!r})", csv_path) from None
            if not unit:
                raise EphysError(f"row {k}: empty unit", csv_path)
            units.setdefault(unit, []).append(t)
    return {u: np.sort(np.asarray(v, dtype=np.float64)) for u, v in units.items()}
