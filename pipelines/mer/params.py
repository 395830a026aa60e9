"""The settings of the mer pipeline's steps, declared once (CLI options, manifest, docs).

Kept free of heavy imports: the command line reads these declarations at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.params import param


@dataclass
class MerParams:
    """Parameters of ``ephys prepare mer`` (the filters, artifact rule and features are ML-STIM's, fixed)."""

    fs_hz: Optional[float] = param(None, "Sampling rate of the input; other rates than 24 kHz are resampled to "
                                   "24 kHz (polyphase) before filtering.", unit="Hz", min=0.0, min_exclusive=True,
                                   default_text="24000, or the file's")


@dataclass
class StreamParams:
    """``ephys mer stream``: real-time STN detection."""

    run: str = param(None, "A trained run folder (`ephys train --model mlp|lightgbm` on a `prepare mer` dataset).",
                     argument=True)
    source: str = param(None, "A file / folder `prepare mer` reads (played in chunks), or lsl:NAME for a Lab "
                        "Streaming Layer stream (24 kHz, one channel per electrode).")
    depth_stream: Optional[str] = param(None, "LSL marker stream carrying the depth (EDT, um); each marker starts "
                                        "new recordings.")
    out: Optional[str] = param(None, "CSV of every segment prediction and recording summary.")
    chunk_samples: int = param(2400, "FILE source: samples per chunk (2400 = 0.1 s).", min=1)
    fs_hz: Optional[float] = param(None, "FILE source: its sampling rate (must be 24000).", unit="Hz", min=0.0,
                                   min_exclusive=True)
    idle_s: float = param(2.0, "LSL source: stop after this many seconds without samples.", unit="s", min=0.0,
                          min_exclusive=True)

    def check(self):
        if self.source is None:
            from ..core.errors import EphysError

            raise EphysError("--source is required (a file / folder, or lsl:NAME)")
        return self
