"""``ephys fetch``: get data and model weights (synthetic default, ImageNet weights)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common

fetch_app = typer.Typer(help="Get data or model weights into place (run this on a login node with internet).",
                        no_args_is_help=True)


@fetch_app.command("synthetic")
def fetch_synthetic(
    out: Path = typer.Argument(None, help="Output folder [default: DATA/raw/synthetic]."),
    n_per_class: int = typer.Option(20, "--n-per-class", min=1, help="Cells per class."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
    fs_hz: float = typer.Option(10_000.0, "--fs-hz", help="Sampling rate of the simulated sweeps (Hz)."),
):
    """Simulate the embedded default dataset: AdEx current-clamp cells of the four STS classes
    (Excitatory, Pvalb, Sst, Vip/Lamp5), long-square protocol, as NWB files plus labels.csv."""
    from ephys.pipelines.synthetic import CELL_CLASSES, fetch_synthetic as run

    out = out or common.data_root() / "raw" / "synthetic"
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
    from ephys.pipelines.models import fetch_weights as run

    path = run(model, base_url=base_url)
    common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)
