"""The settings of the events pipeline's steps, declared once (CLI options, manifest, docs).

Kept free of heavy imports: the command line reads these declarations at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.params import param

#: the detection methods of ``ephys events detect``
METHODS = ("cnn_bilstm", "unet1d", "autoencoder", "threshold")


@dataclass
class WindowParams:
    """Parameters of ``ephys prepare events``."""

    seed: int = param(0, "Seed of the window positions (simulated cohorts).", min=0)
    polarity: str = param("negative", "miniML HDF5 windows: the sign of the events (negative: inward currents, "
                          "flipped so events point up).", choices=("negative", "positive"))


@dataclass
class PatchParams:
    """Parameters of ``ephys prepare event-patches`` (what ``unet1d`` and ``autoencoder`` train on)."""

    patch_samples: int = param(1024, "Patch length; a multiple of 8 (the U-Net's 1024, the autoencoder's 256 in "
                               "the events-sim recipe).", unit="samples", min=64)
    stride_samples: Optional[int] = param(None, "Start-to-start distance of the patches.", unit="samples", min=1,
                                          default_text="half the patch length")
    baseline_ms: float = param(50.0, "Running-median window of the trace normalisation.", unit="ms", min=0.0,
                               min_exclusive=True)

    def events_params(self):
        """As the frozen :class:`ephys.pipelines.events.windows.EventPatchParams` (checked)."""
        from .windows import EventPatchParams

        return EventPatchParams(self.patch_samples, self.stride_samples, self.baseline_ms).checked()

    def check(self):
        self.events_params()
        return self


@dataclass
class DetectParams:
    """``ephys events detect``: events in a continuous trace."""

    trace: str = param(None, "A continuous recording: .abf (gap-free or episodic), .nwb (patch-clamp series) or "
                       ".npy (with --fs-hz).", argument=True)
    out: Optional[str] = param(None, "Output folder.", argument=True, default_text="runs/events-FILENAME")
    run: Optional[str] = param(None, "An `ephys reproduce events-sim` folder holding the trained models (unet1d and "
                               "autoencoder need one).", default_text="the model shipped with ephys")
    method: tuple[str, ...] = param((), "cnn_bilstm | unet1d | autoencoder | threshold | all (repeatable, or "
                                    "comma-separated).", default_text="cnn_bilstm, or all with --run")
    fs_hz: Optional[float] = param(None, ".npy traces: sampling rate.", unit="Hz", min=0.0, min_exclusive=True)
    units: Optional[str] = param(None, ".npy traces: pA (voltage clamp) or mV (current clamp).", default_text="pA")
    polarity: str = param("auto", "Sign of the events: auto decides from the trace (which sign's threshold "
                          "candidates have event shape, else the skew of the high-passed trace) and says why.",
                          choices=("auto", "negative", "positive"))
    labels: Optional[str] = param(None, "CSV of true onsets (onset_s[, peak_s, amplitude]): adds precision / "
                                  "recall / F1 (±1 ms).")
    no_resample: bool = param(False, "Refuse a trace whose sampling rate the models were not trained at "
                              "(default: resample to the nearest).")
    channel: Optional[int] = param(None, "ABF ADC channel to analyse.", min=0,
                                   default_text="by the recording mode: the current in voltage clamp, the "
                                                "potential in current clamp")
    min_half_width_ms: float = param(0.5, "Shape check: a candidate that rises (10-90 %) faster than this and is "
                                     "narrower at half amplitude is a glitch (real events: 1 ms wide and more).",
                                     unit="ms", min=0.0)
    min_amplitude_sd: float = param(3.0, "Shape check: candidates smaller than this many robust noise SDs of the "
                                    "trace cannot be told from noise.", min=0.0)
    max_rise_ms: float = param(10.0, "Shape check: slowest 10-90 % rise of an event (NMJ mEPPs: up to 6 ms).",
                               unit="ms", min=0.0, min_exclusive=True)
    max_decay_ms: float = param(80.0, "Shape check: a candidate not back to half amplitude this long after its "
                                "peak is a step or drift (mIPSCs decay with tau up to 40 ms).", unit="ms", min=0.0,
                                min_exclusive=True)
    no_shape_check: bool = param(False, "Keep every candidate (default: candidates without event shape go to "
                                 "OUT/rejected_METHOD.csv with the reason).")
    force: bool = param(False, "Replace OUT when it holds other output (a run, another trace's or other settings' "
                        "events).")

    def check(self):
        from ..core.errors import EphysError

        methods = [m for v in self.method for m in str(v).replace(",", " ").split()]
        bad = [m for m in methods if m not in (*METHODS, "all")]
        if bad:
            raise EphysError(f"--method must be among {', '.join(METHODS)} or all, not {bad[0]!r}")
        if not methods:
            methods = ["all"] if self.run else ["cnn_bilstm"]
        if self.run is None and any(m != "threshold" for m in methods):
            # no --run: the model that ships with ephys (a window classifier and the threshold
            # settings calibrated with it); the other networks exist only in a trained run.
            # --method threshold alone stays the plain threshold with the shape check
            only_run = [m for m in methods if m in ("unet1d", "autoencoder")]
            if only_run:
                raise EphysError(f"--method {only_run[0]} needs --run (an `ephys reproduce events-sim` folder); the "
                                 "model shipped with ephys is cnn_bilstm (with the threshold calibrated beside it)")
            from .shipped import shipped_run

            self.run = str(shipped_run())
            if "all" in methods:
                methods = ["cnn_bilstm", "threshold"]
        self.method = tuple(METHODS) if "all" in methods else tuple(dict.fromkeys(methods))
        return self

    def shape_limits(self):
        """The shape check's limits (:class:`ephys.pipelines.events.shape.ShapeLimits`)."""
        from .shape import ShapeLimits

        return ShapeLimits(self.min_half_width_ms, self.min_amplitude_sd, self.max_rise_ms, self.max_decay_ms,
                           enabled=not self.no_shape_check)
