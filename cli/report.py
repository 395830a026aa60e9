"""``ephys report``: one self-contained HTML page and a Markdown twin."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def report(run: Path = typer.Argument(None, metavar="RUN", help="Run folder [default: the latest under ./runs].")):
    """Write a run's report: RUN/report.html (self-contained) and RUN/report.md."""
    common.import_backend()
    from ephys.pipelines.core.report import build_report

    run = common.resolve_run(run)
    html, md = build_report(run)
    common.info(f"markdown: {md}")
    common.out.print(str(html.resolve()), highlight=False, markup=False, soft_wrap=True)
