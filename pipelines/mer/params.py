"""The settings of the mer pipeline's steps, declared once (CLI options, manifest, docs).

Kept free of heavy imports: the command line reads these declarations at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.params import param

#: the units a MER may be given in, and their factor to µV (ML-STIM's unit)
UNITS_TO_UV = {"uV": 1.0, "mV": 1e3, "V": 1e6}


@dataclass
class MerParams:
    """Parameters of ``ephys prepare mer``: none to set. The filters, the artifact rule and the features
    are ML-STIM's, fixed; every recording is resampled to 24 kHz and converted to µV first, so the
    dataset does not depend on the input's rate or unit (those are :class:`MerInput`)."""


@dataclass
class MerInput:
    """What the input is: its unit and sampling rate. Options of ``ephys prepare mer`` and of ``ephys
    predict`` on raw recordings; not parameters of the dataset (its features are computed in µV at
    24 kHz whatever the input's unit and rate)."""

    units: Optional[str] = param(None, "Unit of the samples; converted to µV (ML-STIM's unit). NWB files state "
                                 "theirs (volts x conversion); without --units, an ML-STIM .npz or a CSV / .npy is "
                                 "read as µV and refused when its scale is implausible for a MER in µV.",
                                 choices=tuple(UNITS_TO_UV), default_text="the file's, else uV")
    fs_hz: Optional[float] = param(None, "Sampling rate of the input; other rates than 24 kHz are resampled to "
                                   "24 kHz (polyphase) before filtering.", unit="Hz", min=0.0, min_exclusive=True,
                                   default_text="24000, or the file's")


@dataclass
class StreamParams:
    """``ephys mer stream``: real-time STN detection."""

    run: str = param(None, "A trained run folder (`ephys train --model mlp|lightgbm` on a `prepare mer` dataset).",
                     argument=True)
    source: str = param(None, "A file / folder `prepare mer` reads (played in chunks), or lsl:NAME for a Lab "
                        "Streaming Layer stream (one channel per electrode, any rate above 10 kHz).")
    depth_stream: Optional[str] = param(None, "LSL marker stream carrying the depth (EDT, um); each marker starts "
                                        "new recordings.")
    out: Optional[str] = param(None, "CSV of every segment prediction and recording summary.")
    chunk_samples: int = param(2400, "FILE source: samples per chunk (2400 = 0.1 s at 24 kHz).", min=1)
    fs_hz: Optional[float] = param(None, "FILE source: its sampling rate (any rate above 10 kHz; resampled to "
                                   "24 kHz chunk by chunk).", unit="Hz", min=0.0, min_exclusive=True,
                                   default_text="24000, or the file's")
    units: Optional[str] = param(None, "FILE or LSL source: unit of the samples (converted to µV).",
                                 choices=tuple(UNITS_TO_UV), default_text="the file's, else uV")
    idle_s: float = param(2.0, "LSL source: stop after this many seconds without samples.", unit="s", min=0.0,
                          min_exclusive=True)

    def check(self):
        if self.source is None:
            from ..core.errors import EphysError

            raise EphysError("--source is required (a file / folder, or lsl:NAME)")
        return self
