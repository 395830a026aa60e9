"""``ephys events``: synaptic-event detection on continuous recordings (the events pipeline)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common

events_app = typer.Typer(help="Detect miniature synaptic events (mEPPs, mEPSCs) in continuous traces.",
                         no_args_is_help=True)


@events_app.command("detect")
def detect(
    trace: Path = typer.Argument(..., help="A continuous recording: .abf (gap-free or episodic), .nwb (patch-clamp series) or .npy (with --fs-hz)."),
    out: Path = typer.Argument(None, help="Output folder [default: runs/events-<file name>]."),
    run: Path = typer.Option(None, "--run", help="An `ephys reproduce events-sim` folder holding the trained models (needed by every method but threshold)."),
    method: list[str] = typer.Option(None, "--method", help="cnn_bilstm | unet1d | autoencoder | threshold | all (repeatable) [default: threshold, or all with --run]."),
    fs_hz: float = typer.Option(None, "--fs-hz", help=".npy traces: sampling rate (Hz)."),
    units: str = typer.Option(None, "--units", help=".npy traces: pA (voltage clamp) or mV (current clamp) [pA]."),
    polarity: str = typer.Option(None, "--polarity", help="negative | positive [default: negative in voltage clamp, positive in current clamp]."),
    labels: Path = typer.Option(None, "--labels", help="CSV of true onsets (onset_s[, peak_s, amplitude]): adds precision / recall / F1 (±1 ms)."),
    no_resample: bool = typer.Option(False, "--no-resample", help="Refuse a trace whose sampling rate the models were not trained at (default: resample to the nearest)."),
    channel: int = typer.Option(None, "--channel", help="ABF ADC channel [default: the first in A or V]."),
):
    """Detect events with each method, measure them (onset, peak, amplitude, 10-90 % rise, decay
    tau, charge) and write OUT/events_<method>.csv, OUT/summary.json (frequency, amplitude and
    kinetics distributions) and OUT/report.html. Stimulus samples (an episodic ABF's command
    steps, e.g. a membrane test) are excluded."""
    methods = [m for v in (method or []) for m in v.replace(",", " ").split()]
    if not methods:
        methods = ["all"] if run else ["threshold"]
    if "all" in methods:
        methods = ["cnn_bilstm", "unet1d", "autoencoder", "threshold"]
    if any(m != "threshold" for m in methods):
        common.import_backend()
    from ephys.pipelines.events.apply import run_detect

    out = out or common.runs_root() / f"events-{trace.stem}"
    res = run_detect(trace, out, run_dir=run, methods=methods, fs_hz=fs_hz, units=units, polarity=polarity,
                     labels=labels, resample=not no_resample, channel=channel, log=common.info)
    for m, s in res["methods"].items():
        amp = s["amplitude"]["median"]
        line = (f"{m}: {s['n_events']} events, {s['frequency_hz']:.2f} Hz, median amplitude "
                + ("n/a" if amp is None else f"{amp:.3g} {res['units']}"))
        if "f1" in s:
            line += f"; F1 {s['f1']:.3f} (P {s['precision']:.3f}, R {s['recall']:.3f})"
        common.info(line)
    common.out.print(str(out / "summary.json"), highlight=False, markup=False, soft_wrap=True)


def prepare_events(
    input: Path = typer.Argument(None, help="A simulated events folder (`ephys fetch synthetic --pipeline events`) [default: DATA/raw/synthetic-events]."),
    out: Path = typer.Argument(None, help="Dataset folder to write [default: DATA/processed/events]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the window positions."),
):
    """Labelled 600-sample windows of every recording (event / no_event, min-max scaled; group =
    recording) -> an "event_window" dataset for `ephys train --model cnn_bilstm` (and `--fold K`:
    cross-validation over recordings)."""
    from ephys.pipelines.events.prepare import prepare_event_windows

    input = input or common.data_root() / "raw" / "synthetic-events"
    out = out or common.data_root() / "processed" / "events"
    path = prepare_event_windows(input, out, seed=seed, log=common.notice)
    common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)
