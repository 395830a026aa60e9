"""``ephys prepare``: recordings -> a prepared dataset (manifest.json + arrays)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common

prepare_app = typer.Typer(help="Turn raw recordings into a prepared dataset.", no_args_is_help=True)


@prepare_app.command("scalograms")
def prepare_scalograms(
    input: Path = typer.Argument(None, help="A recording (.nwb, .abf) or a folder of them [default: DATA/raw/synthetic]."),
    out: Path = typer.Argument(None, help="Dataset folder to write [default: DATA/processed/scalograms]."),
    labels: Path = typer.Option(None, "--labels", help="CSV with columns path,label (path relative to the CSV; 'unknown' = unlabelled) [default: INPUT/labels.csv if present]."),
    workers: int = typer.Option(None, "--workers", min=1, help="dask worker processes for the local cluster [default: all cores]."),
    scheduler: str = typer.Option("local", "--scheduler", help="'local' (dask LocalCluster), 'synchronous' (no dask, one process), or a scheduler address tcp://HOST:PORT."),
    n_scales: int = typer.Option(180, "--n-scales", min=4, help="CWT scales (scalogram rows)."),
    f_min: float = typer.Option(2.0, "--f-min", help="Lowest scale pseudo-frequency (Hz)."),
    f_max: float = typer.Option(500.0, "--f-max", help="Highest scale pseudo-frequency (Hz), at most 0.5/bin."),
    bin_ms: float = typer.Option(1.0, "--bin-ms", help="Spike-train bin width (ms)."),
    window: tuple[float, float] = typer.Option((-0.1, 1.1), "--window", help="Spike-train window around step onset (s)."),
):
    """Per cell: choose the rheobase, ~1.5x and ~2x rheobase long-square sweeps, detect spikes
    (dV/dt threshold, IPFX rule), bin the spike trains (1 ms), complex-Morlet CWT, log-magnitude,
    normalise -> float32 (scales x time x sweeps). Parallel on dask; a re-run skips finished cells."""
    from ephys.pipelines.sts import ScalogramParams, prepare_scalograms as run

    input = input or common.data_root() / "raw" / "synthetic"
    out = out or common.data_root() / "processed" / "scalograms"
    if labels is None and input.is_dir() and (input / "labels.csv").is_file():
        labels = input / "labels.csv"
    params = ScalogramParams(n_scales=n_scales, f_min_hz=f_min, f_max_hz=f_max, bin_s=bin_ms / 1000.0,
                             window_s=(float(window[0]), float(window[1])))
    with common.progress_bar("scalograms", None) as advance:
        def progress(done, total, rec):
            note = rec.get("id", "") + (" (skipped)" if rec.get("status") != "ok" else " (done before)" if rec.get("resumed") else "")
            advance(1, note, total=total)

        res = run(input, out, labels_csv=labels, params=params, workers=workers, scheduler=scheduler,
                  progress=progress)
    for s in res.skipped:
        common.err.print(f"skipped {s['path']}: {s['reason']}", highlight=False, markup=False, soft_wrap=True)
    common.info(f"{res.n_ok} cells prepared ({res.n_resumed} already done), {len(res.skipped)} skipped")
    common.out.print(str(res.manifest_path), highlight=False, markup=False, soft_wrap=True)
