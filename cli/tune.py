"""``ephys tune``: search a model's hyper-parameters as an Optuna study that many workers share."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def tune(
    data: Path = typer.Option(None, "--data", help="Prepared dataset folder [default: the default pipeline's main dataset under DATA]."),
    model: str = typer.Option(None, "--model", "-m", help="Model name or alias (`ephys models` shows them)."),
    space: str = typer.Option("default", "--space", help="Search space YAML (SETTING: {low, high, log} or a list of choices), or default: the model's declared space."),
    trials: int = typer.Option(None, "--trials", min=1, help="Trials the study runs, counted over all its workers [default: 20]."),
    study: Path = typer.Option(None, "--study", help="Study folder: journal, one run folder per trial, page; workers given the same one share it."),
    config: Path = typer.Option(None, "--config", help="Base settings every trial starts from (a run's config.yaml)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Maximum epochs of each trial [default: 20]."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Samples per training step, unless searched [default: 8]."),
    lr: float = typer.Option(None, "--lr", help="Adam learning rate, unless searched [default: 1e-4]."),
    dropout: float = typer.Option(None, "--dropout", min=0.0, max=0.95, help="Dropout of the model's head, unless searched [default: 0.3]."),
    weights: str = typer.Option(None, "--weights", help="imagenet, none, or PATH to backbone weights [default: none]."),
    input_size: int = typer.Option(None, "--input-size", min=32, help="Side of the backbone's square input, pixels [default: the model's]."),
    patience: int = typer.Option(None, "--patience", min=1, help="Early stopping of each trial [default: 5]."),
    seed: int = typer.Option(None, "--seed", help="Seed of the split, the sampler and the trials [default: 0]."),
    split: str = typer.Option(None, "--split", help="grouped or a split the dataset names [default: the dataset's]."),
    hparam: list[str] = typer.Option(None, "--hparam", help="A fixed model hyper-parameter KEY=VALUE, repeatable."),
    fold: str = typer.Option(None, "--fold", help="Search inside one outer cross-validation fold (index or name); its held-out part is the test part."),
    cv: str = typer.Option(None, "--cv", help="Scheme of --fold: auto, lopo, grouped or blocked [default: the dataset's]."),
    cv_folds: int = typer.Option(5, "--cv-folds", min=2, help="Folds of the grouped and blocked schemes."),
    inner_folds: int = typer.Option(0, "--inner-folds", min=0, help="Score trials by K grouped folds of the training side instead of its validation part (0)."),
    pruner: str = typer.Option("median", "--pruner", help="median, halving (successive halving) or none: stop bad trials from their per-epoch validation loss."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe, random, or grid (every combination; choices only)."),
    grace: float = typer.Option(120.0, "--grace", min=1.0, help="Seconds without a heartbeat after which a running trial counts as dead and is run again."),
    eager: bool = typer.Option(False, "--eager", envvar="EPHYS_EAGER", help="Run training steps eagerly (tiny runs)."),
    track: str = typer.Option(None, "--track", help="mlflow or mlflow:URI: log each trial into MLflow [default: off; mlflow alone: sqlite:///RUNS/mlflow.db]."),
    report: Path = typer.Option(None, "--report", metavar="DIR", help="Write the study's page DIR/report.html and DIR/best.yaml (no trials run)."),
):
    """Search a model's hyper-parameters on training-side data (an Optuna study).

    Every trial is a run folder scored by its validation loss, never by the test part. Run the
    same command in several processes or SLURM tasks to share the study; re-running resumes it."""
    from ephys.pipelines.core import tune as core
    from ephys.pipelines.core.errors import EphysError

    if report is not None:
        from ephys.pipelines.core.tune_report import build_tune_report

        html, best = build_tune_report(report)
        common.info(f"best configuration: {best}" if best else "no completed trial yet: no best.yaml")
        common.out.print(str(html.resolve()), highlight=False, markup=False, soft_wrap=True)
        return
    if study is None:
        raise EphysError("--study DIR is required (the folder the workers share)")
    base = core.base_config(config, data, model, dict(epochs=epochs, batch_size=batch_size, patience=patience, seed=seed,
                                                      split=split, lr=lr, dropout=dropout, weights=weights,
                                                      input_size=input_size), hparam, common.data_root())
    from ephys.pipelines.core.tracking import parse_track

    uri = parse_track(track, common.runs_root())
    core.create_study(study, base, space, trials or 20, pruner, sampler, fold, cv, cv_folds, inner_folds)
    common.import_backend()
    s = core.work(study, trials, log=common.notice, grace_s=grace, track=uri, eager=eager)
    best = s["best"]
    common.info(f"{s['n']}/{s['trials']} trials: {s['complete']} completed, {s['pruned']} pruned, {s['failed']} failed"
                + (f"; best trial {best['number']}: {core.OBJECTIVE} {best['value']:.4g}" if best else "")
                + f"; the page: ephys tune --report {study}")
    common.out.print(str(study), highlight=False, markup=False, soft_wrap=True)
