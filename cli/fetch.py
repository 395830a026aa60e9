"""``ephys fetch``: get data and model weights (synthetic default, ImageNet weights)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common

fetch_app = typer.Typer(help="Get data or model weights into place (run this on a login node with internet).",
                        no_args_is_help=True)


@fetch_app.command("synthetic")
def fetch_synthetic(
    out: Path = typer.Argument(None, help="Output folder [default: DATA/raw/synthetic, or DATA/raw/synthetic-PIPELINE]."),
    pipeline: str = typer.Option("sts", "--pipeline", help="Whose simulated default: sts (patch-clamp cells) or another registered pipeline."),
    n_per_class: int = typer.Option(None, "--n-per-class", min=1, help="sts: cells per class [20]."),
    size: int = typer.Option(None, "--size", min=1, help="How much to simulate, in the pipeline's unit (sts: cells per class; others: see README)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
    fs_hz: float = typer.Option(10_000.0, "--fs-hz", help="sts: sampling rate of the simulated sweeps (Hz)."),
):
    """Simulate a pipeline's embedded default dataset. sts (default): AdEx current-clamp cells of
    the four STS classes (Excitatory, Pvalb, Sst, Vip/Lamp5), long-square protocol, as NWB files
    plus labels.csv."""
    if pipeline != "sts":
        from ephys.pipelines.core.registry import pipeline as find

        p = find(pipeline)
        if p.synthetic is None:
            raise common.EphysError(f"pipeline {pipeline} has no simulated default", "--pipeline")
        out = out or common.synthetic_dir(pipeline)
        with common.progress_bar(f"simulating ({p.synthetic_size or 'items'})") as advance:
            last = [0]

            def progress(done, n):
                advance(done - last[0], total=n)
                last[0] = done

            path = p.synthetic(out, seed=seed, size=size or n_per_class, progress=progress)
        common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)
        return
    from ephys.pipelines.sts.synthetic import CELL_CLASSES, fetch_synthetic as run

    n_per_class = n_per_class or size or 20
    out = out or common.synthetic_dir("sts")
    total = n_per_class * len(CELL_CLASSES)
    with common.progress_bar("simulating cells", total) as advance:
        last = [0]

        def progress(done, n):
            advance(done - last[0])
            last[0] = done

        run(out, n_per_class=n_per_class, seed=seed, fs_hz=fs_hz, progress=progress)
    common.info(f"{total} cells written")
    common.out.print(str(out), highlight=False, markup=False, soft_wrap=True)


@fetch_app.command("weights")
def fetch_weights(
    model: str = typer.Argument(..., help="Model name, e.g. densenet121, inceptionv3, mobilenetv2, resnet50."),
    base_url: str = typer.Option(None, "--base-url", help="Mirror to download from instead of Keras' default (env EPHYS_WEIGHTS_BASE_URL)."),
):
    """Download a backbone's ImageNet weights into Keras' cache, so `--weights imagenet` works
    later on compute nodes without internet (copy ~/.keras/models or set KERAS_HOME)."""
    common.import_backend()
    from ephys.pipelines.blocks.models.backbones import fetch_weights as run

    path = run(model, base_url=base_url)
    common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)


@fetch_app.command("dandi")
def fetch_dandi(
    dandiset: str = typer.Argument("000020", help="DANDI dandiset id (000020: Allen mouse Patch-seq, Gouwens et al. 2020)."),
    out: Path = typer.Argument(None, help="Output folder [default: DATA/raw/dandi/DANDISET]."),
    version: str = typer.Option("draft", "--version", help="Dandiset version: draft, or a published one (e.g. 0.210913.1639)."),
    limit: int = typer.Option(None, "--limit", min=0, help="At most N assets (in path order)."),
    include: str = typer.Option(None, "--include", help="Only assets whose path matches this glob (e.g. 'sub-6*/*.nwb')."),
    specimens: list[str] = typer.Option(None, "--specimens", help="Allen cell specimen ids (repeat the option, or comma-separate: --specimens 601506507,601790961); mapped to assets with the file manifest."),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, help="Parallel downloads."),
    api_url: str = typer.Option(None, "--api-url", envvar="EPHYS_DANDI_API_URL", help="DANDI API root [default: https://api.dandiarchive.org/api]."),
    file_manifest: str = typer.Option(None, "--file-manifest", envvar="EPHYS_DANDI_FILE_MANIFEST", help="Path or URL of the Allen file manifest (2020-06-26_mouse_file_manifest.csv) [default: the IPFX copy on GitHub]."),
):
    """Download NWB files of a DANDI dandiset with the dandi client: resumable (verified files
    are skipped, partial ones continued), parallel, checked against DANDI's sha256 / dandi-etag,
    listed in OUT/fetch_manifest.csv."""
    from ephys.pipelines.sts.dandi import fetch_dandi as run

    out = out or common.data_root() / "raw" / "dandi" / dandiset
    with common.progress_bar("fetching DANDI assets") as advance:
        def progress(done, total, path):
            advance(1, text=path, total=total)

        res = run(out, dandiset=dandiset, version=version, limit=limit, include=include,
                  specimens=_split_ids(specimens), jobs=jobs, api_url=api_url, file_manifest=file_manifest,
                  progress=progress)
    common.info(f"{res.n_downloaded} downloaded, {res.n_skipped} already complete; manifest {res.manifest}")
    common.out.print(str(out), highlight=False, markup=False, soft_wrap=True)


@fetch_app.command("allen")
def fetch_allen(
    out: Path = typer.Argument(None, help="Output folder [default: DATA/raw/allen]."),
    features: bool = typer.Option(False, "--features", help="Also write ef_features.csv (the table's ef__* columns)."),
    nwb: list[str] = typer.Option(None, "--nwb", help="Cell specimen ids whose NWB file to download into OUT/nwb/ (repeat the option, or comma-separate)."),
    api_url: str = typer.Option(None, "--api-url", envvar="EPHYS_ALLEN_API_URL", help="Allen Brain Map API root [default: http://api.brain-map.org]."),
    refresh: bool = typer.Option(False, "--refresh", help="Download the specimen table again even if OUT has one."),
):
    """Allen Cell Types Database: the specimen table (cell_types_specimen_details.csv), per-cell
    NWB files, and labels.csv / specimen_labels.csv with the Cre line -> STS class mapping
    (Excitatory, Pvalb, Sst, Vip/Lamp5; see ephys.pipelines.sts.allen.sts_class_from_cre)."""
    from ephys.pipelines.sts.allen import fetch_allen as run

    out = out or common.data_root() / "raw" / "allen"
    with common.progress_bar("fetching Allen NWB files") as advance:
        res = run(out, features=features, nwb=_split_ids(nwb), api_url=api_url, refresh=refresh,
                  progress=lambda done, total, sid: advance(1, text=sid, total=total))
    n_dl = sum(v == "downloaded" for v in res.nwb.values())
    common.info(f"{res.n_cells} cells in the specimen table; {n_dl} NWB downloaded, "
                f"{len(res.nwb) - n_dl} already there")
    common.out.print(str(out), highlight=False, markup=False, soft_wrap=True)


def _split_ids(values: list[str] | None) -> list[str]:
    """``--specimens 1 2,3`` style lists: split on commas and whitespace."""
    ids = []
    for v in values or []:
        ids.extend(x for x in v.replace(",", " ").split() if x)
    return ids
