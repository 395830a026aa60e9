"""The settings of the sts pipeline's steps, declared once (CLI options, manifest, docs).

Kept free of heavy imports: the command line reads these declarations at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..core.errors import EphysError
from ..core.params import param, params_key

#: the suprathreshold sweeps of a cell that become a scalogram's channels (STS: rheobase, ~1.5x, ~2x)
DEFAULT_RHEOBASE_MULTIPLES = (1.0, 1.5, 2.0)
#: PyWavelets' complex Morlet with bandwidth 1.5 and centre frequency 1.0 (STS)
DEFAULT_WAVELET = "cmor1.5-1.0"


@dataclass
class ScalogramParams:
    """Parameters of ``ephys prepare scalograms`` (all recorded in the manifest).

    n_scales : CWT scales (rows), default 180 as in STS.
    f_min_hz, f_max_hz : pseudo-frequency range of the scales (Hz); f_max <= 0.5 / bin_s.
    bin_s : spike-train bin width, seconds (STS: 1 ms).
    window_s : time window of the spike train relative to the step onset, seconds.
    rheobase_multiples : which suprathreshold sweeps become the channels.
    wavelet : PyWavelets complex Morlet name.
    log_floor : added to |W| before log10 so silent stretches stay finite.
    precision : wavelet-integral grid 2**precision (PyWavelets uses 12; 16 keeps the 2 Hz rows
        free of the staircase speckle 12 gives at scales of several hundred samples).
    """

    n_scales: int = param(180, "CWT scales (scalogram rows).", min=4)
    f_min_hz: float = param(2.0, "Lowest scale pseudo-frequency.", unit="Hz", flag="--f-min")
    f_max_hz: float = param(500.0, "Highest scale pseudo-frequency, at most 0.5/bin.", unit="Hz", flag="--f-max")
    bin_s: float = param(0.001, "Spike-train bin width.", unit="s", flag="--bin-ms", cli_scale=1e-3, cli_unit="ms")
    window_s: tuple[float, float] = param((-0.1, 1.1), "Spike-train window START END around the step onset.",
                                          unit="s", flag="--window")
    rheobase_multiples: tuple[float, ...] = param(DEFAULT_RHEOBASE_MULTIPLES, "Suprathreshold sweeps that become "
                                                  "the channels, as multiples of rheobase.", cli=False)
    wavelet: str = param(DEFAULT_WAVELET, "PyWavelets complex Morlet wavelet.", cli=False)
    log_floor: float = param(1e-3, "Added to |W| before log10.", cli=False)
    precision: int = param(16, "Wavelet-integral grid 2**precision.", cli=False)

    def check(self) -> "ScalogramParams":
        """Refuse impossible parameters with the option to change, before any folder or worker.

        Raises
        ------
        EphysError
            ``--n-scales`` < 4; ``--bin-ms`` not > 0; ``--f-min`` not > 0; ``--f-min`` >=
            ``--f-max``; ``--f-max`` above the Nyquist frequency of the bins; a ``--window``
            whose end is not after its start, or shorter than 4 bins.
        """
        fin = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
        if not (isinstance(self.n_scales, int) and self.n_scales >= 4):
            raise EphysError(f"--n-scales must be an integer >= 4, not {self.n_scales!r}")
        if not (fin(self.bin_s) and self.bin_s > 0):
            raise EphysError(f"--bin-ms must be > 0, not {self.bin_s * 1e3:g}")
        if not (fin(self.f_min_hz) and self.f_min_hz > 0):
            raise EphysError(f"--f-min must be > 0 Hz, not {self.f_min_hz:g}")
        if not (fin(self.f_max_hz) and self.f_max_hz > self.f_min_hz):
            raise EphysError(f"--f-max ({self.f_max_hz:g} Hz) must be above --f-min ({self.f_min_hz:g} Hz)")
        if self.f_max_hz > 0.5 / self.bin_s:
            raise EphysError(f"--f-max {self.f_max_hz:g} Hz is above the Nyquist frequency of "
                             f"{self.bin_s * 1e3:g} ms bins ({0.5 / self.bin_s:g} Hz)")
        w0, w1 = self.window_s
        if not (fin(w0) and fin(w1) and w1 > w0):
            raise EphysError(f"--window END must be after START (seconds around the step onset), not {w0:g} {w1:g}")
        if self.n_time < 4:
            raise EphysError(f"--window {w0:g} {w1:g} holds only {self.n_time} bins of {self.bin_s * 1e3:g} ms; "
                             "widen it or use smaller --bin-ms")
        self.window_s = (float(w0), float(w1))
        self.rheobase_multiples = tuple(float(m) for m in self.rheobase_multiples)
        return self

    def key(self) -> str:
        """Short hash identifying these parameters (a finished cell is reused only if equal)."""
        return params_key(self)

    @property
    def n_time(self) -> int:
        return int(round((self.window_s[1] - self.window_s[0]) / self.bin_s))


@dataclass
class RemoteOptions:
    """Where ``prepare scalograms`` / ``prepare features`` read from (not part of the dataset's identity)."""

    stream: bool = param(False, "Read NWB files remotely (HTTP Range via remfile + h5py: only the bytes of the "
                         "sweeps used; retried on dropped connections) instead of local files; INPUT is then an "
                         "NWB URL, a file of URLs, or a dandiset id (000020).")
    include: Optional[str] = param(None, "--stream with a dandiset: glob on the asset paths, e.g. 'sub-6*/*.nwb'.")
    limit: Optional[int] = param(None, "--stream: at most this many files (in path order).", min=1)

    def check(self):
        return self


@dataclass
class ScalogramOptions(RemoteOptions):
    """Run options of ``prepare scalograms``."""

    consolidated: str = param("float32", "Also write all samples as one memory-mappable samples.npy that training "
                              "slices: float32 (values unchanged), float16 (half the bytes, |error| <= 2.4e-4), "
                              "or none.", choices=("float32", "float16", "none"))


@dataclass
class FeatureParams:
    """Parameters of ``ephys prepare features``."""

    preset: Optional[str] = param(None, "sts: import the published STS/Allen EP feature tables from INPUT "
                                  "(a folder of the STS paper's CSV files) instead of computing features.",
                                  choices=("sts",))


@dataclass
class SyntheticParams:
    """Settings of the simulated cells (``ephys fetch synthetic``)."""

    n_per_class: Optional[int] = param(None, "Cells per class (the same as --size).", min=1, default_text="20")
    fs_hz: float = param(10_000.0, "Sampling rate of the simulated sweeps.", unit="Hz", min=1000.0)


@dataclass
class DandiParams:
    """``ephys fetch dandi``: NWB files of a DANDI dandiset."""

    dandiset: str = param("000020", "DANDI dandiset id (000020: Allen mouse Patch-seq, Gouwens et al. 2020).",
                          argument=True)
    out: Optional[str] = param(None, "Output folder.", argument=True, default_text="DATA/raw/dandi/DANDISET")
    version: str = param("draft", "Dandiset version: draft, or a published one (e.g. 0.210913.1639).")
    limit: Optional[int] = param(None, "At most N assets (in path order).", min=0)
    include: Optional[str] = param(None, "Only assets whose path matches this glob (e.g. 'sub-6*/*.nwb').")
    specimens: tuple[str, ...] = param((), "Allen cell specimen ids (repeat the option, or comma-separate: "
                                       "--specimens 601506507,601790961); mapped to assets with the file manifest.")
    jobs: int = param(4, "Parallel downloads.", min=1)
    api_url: Optional[str] = param(None, "DANDI API root.", envvar="EPHYS_DANDI_API_URL",
                                   default_text="https://api.dandiarchive.org/api")
    file_manifest: Optional[str] = param(None, "Path or URL of the Allen file manifest "
                                         "(2020-06-26_mouse_file_manifest.csv).", envvar="EPHYS_DANDI_FILE_MANIFEST",
                                         default_text="the IPFX copy on GitHub")


@dataclass
class AllenParams:
    """``ephys fetch allen``: the Allen Cell Types Database."""

    out: Optional[str] = param(None, "Output folder.", argument=True, default_text="DATA/raw/allen")
    features: bool = param(False, "Also write ef_features.csv (the table's ef__* columns).")
    nwb: tuple[str, ...] = param((), "Cell specimen ids whose NWB file to download into OUT/nwb/ (repeat the "
                                 "option, or comma-separate).")
    api_url: Optional[str] = param(None, "Allen Brain Map API root.", envvar="EPHYS_ALLEN_API_URL",
                                   default_text="http://api.brain-map.org")
    refresh: bool = param(False, "Download the specimen table again even if OUT has one.")
