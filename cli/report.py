"""``ephys report``: one self-contained HTML page and a Markdown twin; ``--compare``: one page for several runs."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def report(
    runs: list[Path] = typer.Argument(None, metavar="RUN", help="Run folder [default: the latest under ./runs]; with --compare: the runs, then OUT."),
    compare: bool = typer.Option(False, "--compare", help="Rank evaluated runs on the same test samples (95 % intervals, a paired test against the best): RUN RUN... OUT."),
    track: str = typer.Option(None, "--track", help="mlflow or mlflow:URI: also log the run (settings, per-epoch and test metrics, report) [default: off; mlflow alone: sqlite:///RUNS/mlflow.db]."),
):
    """Write a run's report: RUN/report.html (self-contained) and RUN/report.md."""
    from ephys.pipelines.core.errors import EphysError

    if compare:
        from ephys.pipelines.core.compare import compare_runs

        if len(runs or []) < 3:
            raise EphysError("--compare takes two or more run folders, then OUT")
        html, _ = compare_runs(runs[:-1], runs[-1])
        common.out.print(str(html.resolve()), highlight=False, markup=False, soft_wrap=True)
        return
    if len(runs or []) > 1:
        raise EphysError("give one run folder (or --compare RUN RUN... OUT)")
    from ephys.pipelines.core.report import build_report
    from ephys.pipelines.core.tracking import log_run, parse_track

    uri = parse_track(track, common.runs_root())
    run = common.resolve_run(runs[0] if runs else None)
    common.import_backend()
    html, md = build_report(run)
    if uri:
        common.info(f"mlflow run {log_run(run, uri)} at {uri}")
    common.info(f"markdown: {md}")
    common.out.print(str(html.resolve()), highlight=False, markup=False, soft_wrap=True)
