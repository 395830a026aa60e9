"""The sweep record every reader produces, whatever the file format.

A *sweep* is one episode of a current-clamp protocol: the injected current (pA) and the
recorded membrane potential (mV) sampled at ``fs_hz``. Readers (``ephys.pipelines.readers``)
turn NWB (pynwb icephys) and ABF (pyabf) files into lists of :class:`Sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sweep:
    """One current-clamp sweep.

    Attributes
    ----------
    sweep_id : str
        Identifier unique within the cell (e.g. NWB series name or ABF sweep number).
    v_mV : np.ndarray
        Membrane potential, shape (n_samples,), float64, millivolts.
    i_pA : np.ndarray
        Injected current (the stimulus), shape (n_samples,), float64, picoamperes.
    fs_hz : float
        Sampling rate in Hz.
    stim_amp_pA : float
        Amplitude of the step (pA): the current during the step minus the baseline current.
    stim_start_s, stim_end_s : float
        Step onset / offset in seconds from the sweep start (NaN if no step was found).
    t0_s : float
        Start time of the sweep in the recording, seconds (0 if unknown).
    meta : dict
        Free-form provenance (file, series name, protocol name, ...).
    """

    sweep_id: str
    v_mV: np.ndarray
    i_pA: np.ndarray
    fs_hz: float
    stim_amp_pA: float = float("nan")
    stim_start_s: float = float("nan")
    stim_end_s: float = float("nan")
    t0_s: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.v_mV.shape[0])

    @property
    def t_s(self) -> np.ndarray:
        """Time of each sample from the sweep start, seconds, shape (n_samples,)."""
        return np.arange(self.n_samples, dtype=np.float64) / float(self.fs_hz)

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.fs_hz)

