"""``ephys predict``: apply a trained run to new recordings or a prepared dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def predict(
    run: Path = typer.Argument(..., metavar="RUN", help="A trained run folder."),
    input: Path = typer.Argument(..., metavar="INPUT", help="New recordings (prepared with the run's own parameters) or a prepared dataset folder."),
    out: Path = typer.Argument(None, metavar="OUT", help="Output folder [default: RUN/predict-INPUTNAME]: new, empty, or an earlier prediction of the same run and input (replaced)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT when it holds other output."),
):
    """Apply a trained run to new recordings or a prepared dataset.

    Writes OUT/predictions.csv (one `p_CLASS` column per class), OUT/summary.json and
    OUT/report.html; labels in the input are ignored."""
    from ephys.pipelines.core.predict import predict_run

    out = out or run / f"predict-{input.stem or input.name}"
    folder = predict_run(run, input, out, log=common.info, force=force, notice=common.notice,
                         import_backend=common.import_backend)
    common.out.print(str(folder / "predictions.csv"), highlight=False, markup=False, soft_wrap=True)
