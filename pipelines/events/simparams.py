"""Settings of the events pipeline's simulated recordings (``ephys fetch synthetic --pipeline events``).

Declared once (CLI options, recorded settings, docs); kept free of heavy imports. The kinetics
families and noise kinds are described in :mod:`ephys.pipelines.events.families`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.params import param

#: kinetics families (:data:`ephys.pipelines.events.families.FAMILIES`; listed here so that declaring
#: the options imports nothing heavy)
FAMILY_NAMES = ("fast-mepsc", "mipsc", "nmj-mepp", "nmj-mejc")
#: noise kinds (:data:`ephys.pipelines.events.families.NOISE_KINDS`)
NOISE_NAMES = ("coloured", "white", "real", "none")
#: SNR levels of the family test sets (median amplitude / noise SD)
FAMILY_SNR_LEVELS = (2.0, 3.0, 5.0, 10.0)


@dataclass
class SimParams:
    """Settings of the simulated event recordings."""

    families: tuple[str, ...] = param((), "Kinetics families, comma-separated: fast-mepsc (rise 0.2-0.5 ms, decay "
                                      "2-5 ms), mipsc (decay 10-40 ms), nmj-mepp, nmj-mejc (rise 1-6 ms, decay "
                                      "3-15 ms), or all.", list_sep=",",
                                      default_text="the mEPP- and mEPSC-like cohort of the events-sim recipe")
    snr: tuple[float, ...] = param((), "SNR levels cycled through with --families (median event amplitude / "
                                   "noise SD), repeatable.", min=0.0, min_exclusive=True, default_text="2 3 5 10")
    noise: str = param("coloured", "With --families: coloured (white + 1/f, line hum and two harmonics, slow "
                       "drift), white, real (event-free stretches of a real voltage-clamp recording), none.",
                       choices=NOISE_NAMES)
    fs_khz: tuple[float, ...] = param((), "With --families: sampling rates cycled through (kHz), repeatable "
                                      "(e.g. 10, 20, 50).", unit="kHz", min=1.0,
                                      default_text="each family's own: 20 (mEPSC, mIPSC), 10 (NMJ)")
    glitch_rate_hz: float = param(0.3, "With --families: one-sample glitches per second (labelled not-events, in "
                                  "ID_artifacts.csv).", unit="Hz", min=0.0)
    step_rate_hz: float = param(0.05, "With --families: step artifacts (a baseline shift that stays) per second "
                                "(labelled not-events).", unit="Hz", min=0.0)
    duration_s: float = param(10.0, "Length of each recording.", unit="s", min=0.1)
    real_noise_file: Optional[str] = param(None, "--noise real: the recording whose event-free stretches are the "
                                           "noise (read in place).",
                                           default_text="../shared/data/events/171116sh_0020.abf")

    def check(self):
        from ..core.errors import EphysError

        fams = tuple(self.families)
        if "all" in fams:
            fams = FAMILY_NAMES
        bad = [f for f in fams if f not in FAMILY_NAMES]
        if bad:
            raise EphysError(f"--families must be among {', '.join(FAMILY_NAMES)} or all, not {bad[0]!r}")
        self.families = tuple(dict.fromkeys(fams))
        if not self.families and (self.snr or self.fs_khz or self.noise != "coloured"):
            raise EphysError("--snr, --fs-khz and --noise apply to --families")
        return self
