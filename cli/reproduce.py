"""``ephys reproduce NAME``: a published comparison end to end (the recipes the pipelines register)."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from . import common


def reproduce(
    name: str = typer.Argument(..., help="Which comparison (`ephys reproduce --list` shows them): e.g. sts-baseline, spikes-seed."),
    data: Path = typer.Option(None, "--data", help="Input data [default: the recipe's, under ../shared/data]."),
    out: Path = typer.Option(None, "--out", help="Output folder [default: runs/NAME]."),
    epochs: int = typer.Option(40, "--epochs", min=1, help="Maximum epochs per model (recipes that train networks)."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation, shuffling and simulation."),
    normalise: str = typer.Option("channel", "--normalise", help="spikes-seed: none | channel (each channel by its own noise level)."),
    cv_folds: int = typer.Option(5, "--cv-folds", min=2, help="Cross-validation folds (recipes that cross-validate)."),
    hparam: list[str] = typer.Option(None, "--hparam", help="KEY=VALUE recipe / model setting, repeatable (recipes that take them, e.g. lfp-sim units1=8)."),
):
    """Run a published comparison end to end (prepare, train, evaluate, explain, report) and write
    OUT/metrics.json with the reference method's numbers under `reference`.

    spikes-seed: 1-D CNN and GRU spike vs background on the spike seed's channels (train 9/16/33,
    early stopping on 11, test 40, best model chosen on 11).
    sts-baseline: LightGBM on the STS paper's EP feature tables and split, the STS recipe beside ours.
    Other pipelines add their own recipes (the list: `ephys reproduce --help` of your install)."""
    from ephys.pipelines.core.registry import recipe as find

    rec = find(name)
    common.import_backend()
    data = data if data is not None else Path(rec.default_data or ".")
    out = out or common.runs_root() / name
    from ephys.pipelines.core.atomic import check_writable_dir

    check_writable_dir(out, "output folder")
    from ephys.pipelines.core.models import parse_hparams

    given = {"seed": seed, "epochs": epochs, "normalise": normalise, "cv_folds": cv_folds,
             "hparams": parse_hparams(hparam), "log": common.info}
    params = inspect.signature(rec.run).parameters
    kwargs = {k: v for k, v in given.items() if k in params}
    res = rec.run(data, out, **kwargs)
    for line in (rec.summary(res) if rec.summary else []):
        common.info(line)
    common.out.print(str(out / "metrics.json"), highlight=False, markup=False, soft_wrap=True)
