"""``ephys explain``: what drives a run's predictions (the modality's explanation)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def explain(
    run: Path = typer.Argument(None, metavar="RUN", help="Run folder [default: the latest under ./runs]."),
    examples: int = typer.Option(2, "--examples", min=1, help="Example samples per class."),
):
    """Explain what drives a run's predictions, into RUN/explain/.

    Gradient saliency for Keras models (examples per class and class means), TreeSHAP for
    LightGBM."""
    from ephys.pipelines.core.explain import explain_run

    run = common.resolve_run(run, need_model=True)
    common.import_backend()
    path = explain_run(run, n_examples_per_class=examples)
    common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)
