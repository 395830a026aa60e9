"""``ephys reproduce NAME``: a published comparison end to end (the recipes the pipelines register)."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from . import common


def reproduce(
    name: str = typer.Argument(None, metavar="NAME", help="Recipe name (`ephys reproduce --list` shows them)."),
    data: Path = typer.Option(None, "--data", help="Input data [default: the recipe's]."),
    out: Path = typer.Option(None, "--out", help="Output folder [default: runs/NAME]."),
    epochs: int = typer.Option(40, "--epochs", min=1, help="Maximum epochs per model (recipes that train networks)."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation, shuffling and simulation."),
    cv_folds: int = typer.Option(5, "--cv-folds", min=2, help="Cross-validation folds (recipes that cross-validate)."),
    hparam: list[str] = typer.Option(None, "--hparam", help="Recipe or model setting KEY=VALUE, repeatable (`--list` names each recipe's)."),
    normalise: str = typer.Option(None, "--normalise", hidden=True, help="The same as --hparam normalise=VALUE."),
    show: bool = typer.Option(False, "--list", help="Show the recipes, their default input and settings, then exit."),
):
    """Run a published comparison end to end: prepare, train, evaluate, explain, report.

    OUT/metrics.json holds the result, with the reference method's numbers under `reference`."""
    from ephys.pipelines.core.models import parse_hparams
    from ephys.pipelines.core.registry import recipe as find, recipes

    if show or name is None:
        for rname, rec in recipes().items():
            keys = [k for k in inspect.signature(rec.run).parameters if k not in _GIVEN | {"data", "out"}]
            common.out.print(f"{rname}: {rec.description}\n    input: {rec.default_data or 'simulated'}"
                             + (f"; settings: {', '.join(keys)}" if keys else ""), highlight=False, markup=False)
        return
    rec = find(name)
    settings = parse_hparams(hparam)
    if normalise is not None:
        settings["normalise"] = normalise
    params = inspect.signature(rec.run).parameters
    given = {"seed": seed, "epochs": epochs, "cv_folds": cv_folds, "log": common.info}
    kwargs = {k: v for k, v in given.items() if k in params}
    if "hparams" in params:
        kwargs["hparams"] = settings
    else:
        unknown = sorted(set(settings) - set(params) - _GIVEN)
        if unknown:
            accepted = sorted(set(params) - _GIVEN - {"data", "out"})
            raise common.EphysError(f"--hparam: {name} has no setting {', '.join(unknown)}; it accepts: "
                                    + (", ".join(accepted) or "none"))
        kwargs.update(settings)
    data = data if data is not None else Path(rec.default_data or ".")
    out = out or common.runs_root() / name
    from ephys.pipelines.core.atomic import check_writable_dir

    check_writable_dir(out, "output folder")
    common.import_backend()
    res = rec.run(data, out, **kwargs)
    for line in (rec.summary(res) if rec.summary else []):
        common.info(line)
    common.out.print(str(out / "metrics.json"), highlight=False, markup=False, soft_wrap=True)


#: the options every recipe may take by keyword
_GIVEN = {"seed", "epochs", "cv_folds", "log", "hparams"}
