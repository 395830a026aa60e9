"""``ephys evaluate``: metrics on the held-out test samples."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def evaluate(run: Path = typer.Argument(None, metavar="RUN", help="Run folder [default: the latest under ./runs].")):
    """Score a run on its held-out test samples.

    Writes RUN/metrics.json and RUN/predictions.csv."""
    from ephys.pipelines.core.evaluation import evaluate_run, summary_line

    run = common.resolve_run(run, need_model=True)
    common.import_backend()
    m = evaluate_run(run)
    common.info(summary_line(run, m))
    for w in m.get("warnings") or []:
        common.notice(f"warning: {w}")
    common.out.print(str(run / "metrics.json"), highlight=False, markup=False, soft_wrap=True)
