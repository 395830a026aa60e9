"""``ephys aggregate`` and ``ephys prepare folds``: cross-validation folds as units of work."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common
from .prepare import prepare_app


def aggregate(
    runs: list[Path] = typer.Argument(..., metavar="RUNS", help="Fold run folders of `ephys train --fold`, or the cross-validation folder(s) holding them."),
    out: Path = typer.Option(None, "--out", help="Where metrics.json, predictions.csv and report.html go [default: the first RUNS folder]."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Pool the finished folds and record the missing ones (metrics.json `complete: false`, `missing_folds`) instead of refusing."),
    force: bool = typer.Option(False, "--force", help="Replace OUT when it holds other output (a trained run, a dataset, an aggregate of other folds)."),
):
    """Pool the held-out predictions of cross-validation folds.

    Writes metrics.json (pooled, per fold, per participant; accuracy beside the majority
    baseline), predictions.csv and report.html. A fold without a finished run is refused by
    name, unless --allow-missing."""
    from ephys.pipelines.core.crossval import aggregate as run, aggregate_dir

    m = run(runs, out, allow_missing=allow_missing, force=force, log=common.notice)
    auc = "n/a" if m["roc_auc_ovr"] is None else f"{m['roc_auc_ovr']:.3f}"
    common.info(f"{m['model']}: {m['n_folds_done']}/{m['n_folds_expected']} folds, {m['n_test']} held-out samples: "
                f"accuracy {m['accuracy']:.3f} (majority baseline {m['majority_baseline_accuracy']:.3f}), balanced "
                f"accuracy {m['balanced_accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, ROC-AUC {auc}")
    if not m["complete"]:
        common.notice(f"warning: incomplete: no finished run for {', '.join(m['missing_folds'])}")
    common.out.print(str(aggregate_dir(runs, out) / "metrics.json"), highlight=False, markup=False, soft_wrap=True)


@prepare_app.command("folds")
def prepare_folds(
    data: Path = typer.Argument(..., metavar="DATA", help="A prepared dataset, or a prepared folder holding several (e.g. one per unit)."),
    models: str = typer.Option(None, "--models", help="Space- or comma-separated models: one task per dataset x model x fold [default: count folds only]."),
    cv: str = typer.Option(None, "--cv", help="auto, lopo, grouped, blocked [default: the modality's]."),
    cv_folds: int = typer.Option(5, "--cv-folds", min=2, help="Folds of the grouped and blocked schemes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the grouped folds (as `ephys train --seed`)."),
    runs: Path = typer.Option(None, "--runs", help="Run root for the tasks' folders [default: EPHYS_RUNS or ./runs]."),
    tasks_file: Path = typer.Option(None, "--tasks-file", help="Write the tasks as TSV (task, dataset, model, fold, cv_dir, run, done)."),
):
    """Print how many cross-validation training tasks DATA needs (datasets x models x folds).

    One SLURM array task each; --tasks-file writes their list."""
    from ephys.pipelines.core.atomic import write_text
    from ephys.pipelines.core.crossval import find_datasets, fold_tasks

    names = [m for m in (models or "").replace(",", " ").split() if m]
    tasks = fold_tasks(find_datasets(data), names or ["-"], runs or common.runs_root(), cv, cv_folds, seed)
    if tasks_file is not None:
        lines = ["task\tdataset\tmodel\tfold\tcv_dir\trun\tdone"]
        lines += [f"{k}\t{t['dataset']}\t{t['model']}\t{t['fold']}\t{t['cv_dir']}\t{t['run']}\t{int(t['done'])}"
                  for k, t in zip(range(len(tasks)), tasks)]
        write_text(tasks_file, "\n".join(lines) + "\n")
    common.out.print(str(len(tasks)), highlight=False)
