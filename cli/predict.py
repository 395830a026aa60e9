"""``ephys predict``: apply a trained run, or a published model, to new recordings or a prepared dataset."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from ephys.pipelines.core import registry

from . import common
from .options import command_from, parameters

_DOC = ("Apply a trained run, or a published model, to new recordings or a prepared dataset.\n\n"
        "Writes OUT/predictions.csv (one `p_CLASS` column per class; a pipeline may write one row per recording "
        "instead, with its own files beside), OUT/summary.json and OUT/report.html; labels in the input are "
        "ignored. RUN is a trained run folder or a published model's name (`ephys models --published`; fetch it "
        "first with `ephys fetch weights NAME`). Raw input is prepared as the run's training data was, or as the "
        "published model declares; the input options say what the raw input is (unit, rate).")


def _arguments() -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return [inspect.Parameter("run", kw, annotation=str, default=typer.Argument(
                ..., metavar="RUN", help="A trained run folder, or a published model's name.")),
            inspect.Parameter("input", kw, annotation=Path, default=typer.Argument(
                ..., metavar="INPUT", help="New recordings (prepared with the run's own parameters) or a prepared "
                                           "dataset folder.")),
            inspect.Parameter("out", kw, annotation=Path | None, default=typer.Argument(
                None, metavar="OUT", help="Output folder [default: RUN/predict-INPUTNAME, or ./predict-NAME-INPUTNAME for a "
                           "published model]: new, empty, or an earlier prediction of the same run and input "
                           "(replaced).", show_default=False)),
            inspect.Parameter("force", kw, annotation=bool, default=typer.Option(
                False, "--force", help="Replace OUT when it holds other output."))]


def _input_options() -> list[inspect.Parameter]:
    """The options of every prepare step whose options describe its input (prefixed by the step)."""
    out, seen = [], set()
    for step, _ in registry.prepare_steps().values():
        if step.predict_options and step.options is not None:
            new = [p for p in parameters(step.options, prefix=f"raw input of `prepare {step.name}`: ")
                   if p.name not in seen and p.name not in ("run", "input", "out")]
            seen |= {p.name for p in new}
            out += new
    return out


def _predict(kw: dict) -> None:
    options = {k: v for k, v in kw.items() if k not in ("run", "input", "out", "force") and v is not None}
    run, input, out = kw["run"], Path(kw["input"]), kw.get("out")
    if run in registry.published_models() and not Path(run).is_dir():
        common.import_backend()
        from ephys.pipelines.core.published import predict_published

        folder = predict_published(run, input, Path(out or f"predict-{run}-{input.stem or input.name}"),
                                   log=common.info, options=options)
    else:
        from ephys.pipelines.core.predict import predict_run  # Keras is imported once the input is checked

        folder = predict_run(Path(run), input, Path(out or Path(run) / f"predict-{input.stem or input.name}"),
                             log=common.info, options=options, force=kw.get("force", False), notice=common.notice,
                             import_backend=common.import_backend)
    common.out.print(str(folder / "predictions.csv"), highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """``ephys predict`` with the declared input options (called when the app is built)."""
    app.command("predict", help=_DOC)(command_from(_predict, _arguments() + _input_options(), _DOC))
