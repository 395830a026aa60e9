"""``ephys report``: one self-contained HTML page and a Markdown twin."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def report(run: Path = typer.Argument(None, help="Run folder [default: the latest under ./runs].")):
    """Write RUN/report.html (self-contained, images embedded) and RUN/report.md: data summary,
    learning curves, metrics, confusion matrix, ROC, the decision threshold when the run has one,
    examples and explanations drawn by the dataset's modality, configuration."""
    from ephys.pipelines.core.report import build_report

    run = common.resolve_run(run)
    common.import_backend()
    html, md = build_report(run)
    common.info(f"markdown: {md}")
    common.out.print(str(html.resolve()), highlight=False, markup=False, soft_wrap=True)
