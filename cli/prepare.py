"""``ephys prepare``: recordings -> a prepared dataset (manifest.json + arrays)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common

prepare_app = typer.Typer(help="Turn raw recordings into a prepared dataset.", no_args_is_help=True)


@prepare_app.command("scalograms")
def prepare_scalograms(
    input: str = typer.Argument(None, help="A recording (.nwb, .abf) or a folder of them [default: DATA/raw/synthetic]; with --stream: an NWB URL, a file of URLs, or a dandiset id (000020)."),
    out: Path = typer.Argument(None, help="Dataset folder to write [default: DATA/processed/scalograms]."),
    labels: Path = typer.Option(None, "--labels", help="CSV with columns path,label (path relative to the CSV; 'unknown' = unlabelled) [default: INPUT/labels.csv if present]."),
    workers: int = typer.Option(None, "--workers", min=1, help="dask worker processes for the local cluster [default: all cores]."),
    scheduler: str = typer.Option("auto", "--scheduler", help="'auto' (in-process unless a dask LocalCluster saves more time than its ~8 s start-up: remaining cells x seconds per cell x (1 - 1/workers) > 8), 'local' (always a dask LocalCluster), 'synchronous' (no dask, one process), 'slurm' (dask-jobqueue: --workers sbatch jobs), or a scheduler address tcp://HOST:PORT."),
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
    stream: bool = typer.Option(False, "--stream", help="Read NWB files remotely (HTTP Range via remfile + h5py: only the bytes of the sweeps used; retried on dropped connections) instead of local files."),
    include: str = typer.Option(None, "--include", help="--stream with a dandiset: glob on the asset paths, e.g. 'sub-6*/*.nwb'."),
    limit: int = typer.Option(None, "--limit", min=1, help="--stream: at most this many files (in path order)."),
    consolidated: str = typer.Option("float32", "--consolidated", help="Also write all samples as one memory-mappable samples.npy that training slices: float32 (values unchanged), float16 (half the bytes, |error| <= 2.4e-4), or none."),
    shard: str = typer.Option(None, "--shard", help="K/N: prepare only every N-th cell from the K-th (0-based; one SLURM array task, e.g. $SLURM_ARRAY_TASK_ID/N); writes no manifest: run once more without --shard to write it (finished cells are skipped)."),
):
    """Per cell: choose the rheobase, ~1.5x and ~2x rheobase long-square sweeps, detect spikes
    (dV/dt threshold, IPFX rule), bin the spike trains (1 ms), complex-Morlet CWT, log-magnitude,
    normalise -> float32 (scales x time x sweeps). Parallel on dask; a re-run skips finished cells."""
    from ephys.pipelines.sts.scalograms import ScalogramParams, SlurmWorkers, prepare_scalograms as run

    if stream and not input:
        from ephys.pipelines.core.errors import EphysError

        raise EphysError("--stream needs INPUT: an NWB URL, a file of URLs, or a dandiset id")
    input = input if stream else Path(input) if input else common.data_root() / "raw" / "synthetic"
    out = out or common.data_root() / "processed" / "scalograms"
    if labels is None and not stream and input.is_dir() and (input / "labels.csv").is_file():
        labels = input / "labels.csv"
    params = ScalogramParams(n_scales=n_scales, f_min_hz=f_min, f_max_hz=f_max, bin_s=bin_ms / 1000.0,
                             window_s=(float(window[0]), float(window[1])))
    shard_kn = None
    if shard is not None:
        try:
            k, n = (int(v) for v in shard.split("/"))
        except ValueError:
            from ephys.pipelines.core.errors import EphysError

            raise EphysError(f"--shard must look like K/N (e.g. 3/10), not {shard!r}") from None
        shard_kn = (k, n)
    with common.progress_bar("scalograms", None) as advance:
        def progress(done, total, rec):
            note = rec.get("id", "") + (" (skipped)" if rec.get("status") != "ok" else " (done before)" if rec.get("resumed") else "")
            note += common_bytes(rec)
            advance(1, note, total=total)

        res = run(input, out, labels_csv=labels, params=params, workers=workers, scheduler=scheduler,
                  progress=progress, shard=shard_kn,
                  consolidated=None if consolidated == "none" else consolidated,
                  stream=stream, include=include, limit=limit,
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


@prepare_app.command("features")
def prepare_features(
    input: str = typer.Argument(None, help="A recording (.nwb, .abf) or a folder of them [default: DATA/raw/synthetic]; with --stream: an NWB URL, a file of URLs, or a dandiset id (000020)."),
    out: Path = typer.Argument(None, help="Dataset folder to write [default: DATA/processed/features]."),
    labels: Path = typer.Option(None, "--labels", help="CSV with columns path,label (as for `prepare scalograms`) [default: INPUT/labels.csv if present]."),
    stream: bool = typer.Option(False, "--stream", help="Read NWB files remotely (HTTP Range via remfile + h5py: only the bytes of the sweeps used; retried on dropped connections) instead of local files."),
    include: str = typer.Option(None, "--include", help="--stream with a dandiset: glob on the asset paths, e.g. 'sub-6*/*.nwb'."),
    limit: int = typer.Option(None, "--limit", min=1, help="--stream: at most this many files (in path order)."),
    preset: str = typer.Option(None, "--preset", help="'sts': import the published STS/Allen EP feature tables from INPUT instead of computing features."),
):
    """Per cell: electrophysiological features from its long-square sweeps, as IPFX defines them
    (Gouwens et al. 2019): rheobase, f-I slope, first-spike shape at rheobase, latency / ISI /
    adaptation on the hero sweep, input resistance, tau, sag, Vrest -> a "features" dataset
    (features.npy, features.csv, manifest.json)."""
    if preset is not None:
        if preset != "sts":
            from ephys.pipelines.core.errors import EphysError

            raise EphysError(f"--preset must be 'sts', not {preset!r}")
        from ephys.pipelines.sts.tables import prepare_sts_features

        input = Path(input) if input else common.data_root() / "raw" / "sts"
        out = out or common.data_root() / "processed" / "features"
        path = prepare_sts_features(input, out, log=common.info)
        common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)
        return
    from ephys.pipelines.sts.ep_features import prepare_features as run

    if stream and not input:
        from ephys.pipelines.core.errors import EphysError

        raise EphysError("--stream needs INPUT: an NWB URL, a file of URLs, or a dandiset id")
    input = input if stream else Path(input) if input else common.data_root() / "raw" / "synthetic"
    out = out or common.data_root() / "processed" / "features"
    if labels is None and not stream and input.is_dir() and (input / "labels.csv").is_file():
        labels = input / "labels.csv"
    with common.progress_bar("features", None) as advance:
        def progress(done, total, rec):
            advance(1, rec.get("id", "") + (" (skipped)" if rec.get("status") != "ok" else "") + common_bytes(rec),
                    total=total)

        res = run(input, out, labels_csv=labels, progress=progress, stream=stream, include=include, limit=limit)
    for s in res.skipped:
        common.err.print(f"skipped {s['path']}: {s['reason']}", highlight=False, markup=False, soft_wrap=True)
    common.info(f"{res.n_ok} cells with features, {len(res.skipped)} skipped")
    common.out.print(str(res.manifest_path), highlight=False, markup=False, soft_wrap=True)


@prepare_app.command("tasks")
def prepare_tasks(
    input: Path = typer.Argument(None, help="Recordings as for `prepare scalograms` [default: DATA/raw/synthetic]."),
    labels: Path = typer.Option(None, "--labels", help="Labels CSV as for `prepare scalograms`."),
    cells_per_task: int = typer.Option(25, "--cells-per-task", min=1, help="Cells one array task prepares."),
):
    """Print how many SLURM array tasks `prepare scalograms --shard K/N` needs for INPUT
    (for `sbatch --array=0-$((N-1))`)."""
    from ephys.pipelines.sts.scalograms import count_array_tasks

    input = input or common.data_root() / "raw" / "synthetic"
    if labels is None and input.is_dir() and (input / "labels.csv").is_file():
        labels = input / "labels.csv"
    common.out.print(str(count_array_tasks(input, labels, cells_per_task)), highlight=False)


@prepare_app.command("spikes")
def prepare_spikes(
    input: Path = typer.Argument(..., help="A folder of labelled snippet sets (channel_spikes_CH.npy, channel_background_CH.npy: the spike seed's layout) or a raw extracellular trace (.npy in µV with --fs-hz, or .nwb with an ElectricalSeries)."),
    out: Path = typer.Argument(None, help="Dataset folder to write [default: DATA/processed/spikes]."),
    fs_hz: float = typer.Option(None, "--fs-hz", help="Sampling rate in Hz (required for a raw trace; snippet sets default to the seed's 30000)."),
    normalise: str = typer.Option("none", "--normalise", help="none (µV) | channel (divide each channel by its own noise level, median|x|/0.6745, from that channel's data only)."),
    band: tuple[float, float] = typer.Option((300.0, 8000.0), "--band", help="Raw trace: band-pass edges (Hz)."),
    notch: float = typer.Option(50.0, "--notch", help="Raw trace: line-noise notch (Hz); 0 = none, 60 in the Americas."),
    k: float = typer.Option(3.0, "--k", help="Raw trace: threshold = -k x noise."),
    noise: str = typer.Option("sd", "--noise", help="Raw trace: noise estimate, sd (the seed) or mad (Quiroga et al. 2004)."),
    refractory_ms: float = typer.Option(1.0, "--refractory-ms", help="Raw trace: refractory period (ms)."),
    pre_ms: float = typer.Option(0.4, "--pre-ms", help="Snippet start before the crossing (ms)."),
    post_ms: float = typer.Option(1.0, "--post-ms", help="Raw trace: snippet end after the crossing (ms)."),
    channel: int = typer.Option(0, "--channel", min=0, help="Raw trace: column of a 2-D .npy or of the NWB ElectricalSeries."),
    series: str = typer.Option(None, "--series", help="NWB: name of the ElectricalSeries in acquisition [default: the first]."),
):
    """Extracellular spike waveforms -> a "waveform" dataset (manifest.json + waveforms.npy).
    Snippet sets keep their labels (background / spike; group = channel) and offer the seed's
    split (`ephys train --split seed`: train 9, 16, 33 / validation 11 / test 40). A raw trace
    is band-passed (zero-phase, 300-8000 Hz), notched, thresholded at -3 SD with a 1 ms
    refractory period, and cut into 0.4 ms + 1.0 ms snippets (unlabelled)."""
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.spikes.waveforms import DetectionParams, prepare_raw_trace, prepare_waveform_sets

    out = out or common.data_root() / "processed" / "spikes"
    if input.is_dir():
        path = prepare_waveform_sets(input, out, fs_hz=fs_hz or 30000.0, pre_ms=pre_ms, normalise=normalise)
    elif input.is_file() and input.suffix in (".npy", ".nwb"):
        if noise not in ("sd", "mad"):
            raise EphysError(f"--noise must be sd or mad, not {noise!r}")
        if normalise not in ("none", "channel"):
            raise EphysError(f"--normalise must be none or channel, not {normalise!r}")
        params = DetectionParams(band_hz=(float(band[0]), float(band[1])), notch_hz=notch or None, k=k,
                                 noise=noise, refractory_ms=refractory_ms, pre_ms=pre_ms, post_ms=post_ms)
        path = prepare_raw_trace(input, out, fs_hz=fs_hz, params=params, normalise=normalise,
                                 channel=channel, series=series)
    elif input.exists():
        raise EphysError("not a folder of snippet sets nor a raw trace (.npy, .nwb)", input)
    else:
        raise EphysError("no such file or folder", input)
    import json

    n = len(json.loads(path.read_text())["samples"])
    common.info(f"{n} waveforms prepared")
    common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)


def common_bytes(rec: dict) -> str:
    """`` (412 kB of 2.1 MB read)`` for a streamed cell's progress line, else ''."""
    got = [i for i in rec.get("inputs") or [] if i.get("bytes_read") is not None]
    if not got:
        return ""
    n, size = sum(i["bytes_read"] for i in got), sum(i.get("size") or 0 for i in got)
    return f" ({n / 1e3:.0f} kB of {size / 1e6:.1f} MB read)"
