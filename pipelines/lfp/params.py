"""The settings of the lfp pipeline's prepare step, declared once (CLI options, manifest, docs).

Kept free of heavy imports: the command line reads these declarations at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..blocks.signal.bands import DEFAULT_BANDS
from ..core.errors import EphysError
from ..core.params import param

#: the model inputs per LFP channel and band (see :mod:`ephys.pipelines.lfp.sequence`)
INPUTS = ("raw", "band", "amplitude", "phase")
@dataclass
class SequenceParams:
    """Windowing parameters of ``ephys prepare lfp`` (recorded in ``index.json`` and every unit manifest)."""

    window_s: float = param(0.1, "Window length; the seed: 100 samples at 1 kHz.", unit="s", min=0.0,
                            min_exclusive=True)
    bin_s: float = param(0.02, "Prediction bin: spike = at least one spike in it.", unit="s", min=0.0,
                         min_exclusive=True)
    stride_s: Optional[float] = param(None, "Window step.", unit="s", min=0.0, min_exclusive=True,
                                      default_text="bin_s")
    target: str = param("last", "last: the bin ends after_s before the window's end; next: the bin follows the "
                        "window (after_s ignored; the seed: --target next --bin-s 0.001).", choices=("last", "next"))
    after_s: float = param(0.0, "LFP kept in the window after the prediction bin (target last only).", unit="s",
                           min=0.0)
    inputs: tuple[str, ...] = param(("raw", "amplitude", "phase"), "Comma list of raw, band (band-passed), "
                                    "amplitude, phase (cos and sin) per LFP channel and band.", list_sep=",")
    bands: dict = param(default_factory=lambda: dict(DEFAULT_BANDS), help="Band name -> (low, high) Hz.", cli=False)
    filter_order: int = param(4, "Butterworth order of the band filters.", cli=False, min=1)

    def check(self) -> "SequenceParams":
        if self.target not in ("last", "next"):
            raise EphysError(f"target must be last or next, got {self.target!r}")
        bad = [i for i in self.inputs if i not in INPUTS]
        if bad or not self.inputs:
            raise EphysError(f"inputs must be among {', '.join(INPUTS)}, got {', '.join(self.inputs) or 'none'}")
        if not (self.window_s > 0 and self.bin_s > 0):
            raise EphysError("window_s and bin_s must be positive")
        if self.after_s < 0:
            raise EphysError(f"after_s must be >= 0, got {self.after_s:g}")
        if self.target == "next":  # the bin follows the window: no LFP after it
            self.after_s = 0.0
        if self.target == "last" and self.bin_s + self.after_s > self.window_s:
            raise EphysError(f"bin_s {self.bin_s:g} s + after_s {self.after_s:g} s is longer than the window "
                             f"{self.window_s:g} s")
        self.inputs = tuple(self.inputs)
        self.bands = {k: [float(v[0]), float(v[1])] for k, v in self.bands.items()}
        return self


@dataclass
class LfpOptions:
    """Run options of ``ephys prepare lfp``."""

    units: tuple[str, ...] = param((), "Comma list of unit ids to keep.", list_sep=",", default_text="every unit")
