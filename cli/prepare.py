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
    scheduler: str = typer.Option("local", "--scheduler", help="'local' (dask LocalCluster), 'synchronous' (no dask, one process), 'slurm' (dask-jobqueue: --workers sbatch jobs), or a scheduler address tcp://HOST:PORT."),
    slurm_queue: str = typer.Option("", "--slurm-queue", envvar="EPHYS_PARTITION", help="--scheduler slurm: partition of the worker jobs [default: the cluster's]."),
    slurm_cores: int = typer.Option(1, "--slurm-cores", min=1, help="--scheduler slurm: cores per worker job."),
    slurm_memory: str = typer.Option("4GB", "--slurm-memory", help="--scheduler slurm: memory per worker job."),
    slurm_walltime: str = typer.Option("01:00:00", "--slurm-walltime", help="--scheduler slurm: walltime per worker job."),
    slurm_extra: list[str] = typer.Option(None, "--slurm-extra", help="--scheduler slurm: an extra #SBATCH directive, e.g. --slurm-extra=--account=lab (repeatable)."),
    n_scales: int = typer.Option(180, "--n-scales", min=4, help="CWT scales (scalogram rows)."),
    f_min: float = typer.Option(2.0, "--f-min", help="Lowest scale pseudo-frequency (Hz)."),
    f_max: float = typer.Option(500.0, "--f-max", help="Highest scale pseudo-frequency (Hz), at most 0.5/bin."),
    bin_ms: float = typer.Option(1.0, "--bin-ms", help="Spike-train bin width (ms)."),
    window: tuple[float, float] = typer.Option((-0.1, 1.1), "--window", help="Spike-train window around step onset (s)."),
    shard: str = typer.Option(None, "--shard", help="K/N: prepare only every N-th cell from the K-th (0-based; one SLURM array task, e.g. $SLURM_ARRAY_TASK_ID/N); writes no manifest: run once more without --shard to write it (finished cells are skipped)."),
):
    """Per cell: choose the rheobase, ~1.5x and ~2x rheobase long-square sweeps, detect spikes
    (dV/dt threshold, IPFX rule), bin the spike trains (1 ms), complex-Morlet CWT, log-magnitude,
    normalise -> float32 (scales x time x sweeps). Parallel on dask; a re-run skips finished cells."""
    from ephys.pipelines.sts import ScalogramParams, SlurmWorkers, prepare_scalograms as run

    input = input or common.data_root() / "raw" / "synthetic"
    out = out or common.data_root() / "processed" / "scalograms"
    if labels is None and input.is_dir() and (input / "labels.csv").is_file():
        labels = input / "labels.csv"
    params = ScalogramParams(n_scales=n_scales, f_min_hz=f_min, f_max_hz=f_max, bin_s=bin_ms / 1000.0,
                             window_s=(float(window[0]), float(window[1])))
    shard_kn = None
    if shard is not None:
        try:
            k, n = (int(v) for v in shard.split("/"))
        except ValueError:
            from ephys.pipelines.errors import EphysError

            raise EphysError(f"--shard must look like K/N (e.g. 3/10), not {shard!r}") from None
        shard_kn = (k, n)
    with common.progress_bar("scalograms", None) as advance:
        def progress(done, total, rec):
            note = rec.get("id", "") + (" (skipped)" if rec.get("status") != "ok" else " (done before)" if rec.get("resumed") else "")
            advance(1, note, total=total)

        res = run(input, out, labels_csv=labels, params=params, workers=workers, scheduler=scheduler,
                  progress=progress, shard=shard_kn,
                  slurm=SlurmWorkers(queue=slurm_queue, cores=slurm_cores, memory=slurm_memory,
                                     walltime=slurm_walltime, extra=tuple(slurm_extra or ()),
                                     log_directory=str(out / "dask-logs")))
    for s in res.skipped:
        common.err.print(f"skipped {s['path']}: {s['reason']}", highlight=False, markup=False, soft_wrap=True)
    common.info(f"{res.n_ok} cells prepared ({res.n_resumed} already done), {len(res.skipped)} skipped")
    if res.manifest_path is None:
        common.info(f"shard {shard}: done; run without --shard to write {out / 'manifest.json'}")
    else:
        common.out.print(str(res.manifest_path), highlight=False, markup=False, soft_wrap=True)


@prepare_app.command("tasks")
def prepare_tasks(
    input: Path = typer.Argument(None, help="Recordings as for `prepare scalograms` [default: DATA/raw/synthetic]."),
    labels: Path = typer.Option(None, "--labels", help="Labels CSV as for `prepare scalograms`."),
    cells_per_task: int = typer.Option(25, "--cells-per-task", min=1, help="Cells one array task prepares."),
):
    """Print how many SLURM array tasks `prepare scalograms --shard K/N` needs for INPUT
    (for `sbatch --array=0-$((N-1))`)."""
    from ephys.pipelines.sts import count_array_tasks

    input = input or common.data_root() / "raw" / "synthetic"
    if labels is None and input.is_dir() and (input / "labels.csv").is_file():
        labels = input / "labels.csv"
    common.out.print(str(count_array_tasks(input, labels, cells_per_task)), highlight=False)
