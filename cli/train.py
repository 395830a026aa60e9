"""``ephys train``: fit a model from the registry on a prepared dataset."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from . import common


def train(
    model: str = typer.Option(None, "--model", "-m", help="Model name or alias (`ephys models` shows them)."),
    data: Path = typer.Option(None, "--data", help="Prepared dataset folder [default: the default pipeline's main dataset under DATA]."),
    weights: str = typer.Option(None, "--weights", help="imagenet, none, or PATH to a backbone weights file [default: none]."),
    freeze: str = typer.Option(None, "--freeze", help="none (fine-tune everything), full (train the head only) or features (keep the model's feature layers, e.g. its convolutions) [default: none; features with --init where the model declares them]."),
    init: str = typer.Option(None, "--init", help="Start from the weights of a run folder (or .keras file) of the same model, or shipped (the model ephys ships): transfer learning [default: none]."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Maximum epochs [default: 20]."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Samples per training step [default: 8]."),
    lr: float = typer.Option(None, "--lr", help="Adam learning rate [default: 1e-4]."),
    seed: int = typer.Option(None, "--seed", help="Seed for the split, initialisation and shuffling [default: 0]."),
    dropout: float = typer.Option(None, "--dropout", min=0.0, max=0.95, help="Dropout rate of the model's head, for models that have one [default: 0.3]."),
    patience: int = typer.Option(None, "--patience", min=1, help="Early stopping: epochs without validation-loss improvement [default: 5]."),
    split: str = typer.Option(None, "--split", help="grouped (random, by group, stratified), blocked (in time: the latest samples test) or a published split the dataset names [default: the dataset's default_split, else grouped]."),
    input_size: int = typer.Option(None, "--input-size", min=32, help="Side of the backbone's square input, pixels; smaller is faster on CPU [default: the model's, 224 or 299]."),
    decision: str = typer.Option(None, "--decision", help="argmax, or val_macro_f1: a two-class run predicts the second class above a threshold chosen for macro-F1 on the validation part [default: argmax]."),
    eager: bool = typer.Option(False, "--eager", envvar="EPHYS_EAGER", help="Run training steps eagerly: no graph-build wait, slower steps (tiny runs, debugging)."),
    out: Path = typer.Option(None, "--out", help="Run folder [default: runs/MODEL-DATASET]; re-running the same command resumes it."),
    hparam: list[str] = typer.Option(None, "--hparam", help="Model hyper-parameter KEY=VALUE, repeatable; `ephys models NAME` shows what a model takes."),
    config: Path = typer.Option(None, "--config", help="A run's config.yaml to reproduce; other options override it."),
    fold: str = typer.Option(None, "--fold", help="Train one cross-validation fold: its 0-based index or name (lopo-P03, fold-2), or all (every fold, then aggregate); --out is then the cross-validation folder [default: runs/MODEL-DATASET-cv]."),
    hold_out: str = typer.Option(None, "--hold-out", help="Train the leave-one-participant-out fold that holds out this participant (implies --cv lopo)."),
    cv: str = typer.Option(None, "--cv", help="Cross-validation scheme for --fold: auto, lopo, grouped or blocked [default: the dataset's]."),
    cv_folds: int = typer.Option(5, "--cv-folds", min=2, help="Folds of the grouped and blocked schemes."),
):
    """Train a model on a prepared dataset.

    Splits by group into train / validation / test, weights the classes, stops early on the
    validation part and checkpoints every epoch: re-running the same command resumes."""
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.models import parse_hparams
    from ephys.pipelines.core.training import TrainConfig, check_config, train as run

    if config is not None:
        if not config.is_file():
            raise EphysError("no such config file", config)
        cfg = TrainConfig.from_yaml(config, check=False)
        cfg.out = None
    else:
        from ephys.pipelines.core.registry import default_pipeline

        cfg = TrainConfig(data=str(common.data_root() / (default_pipeline().default_dataset() or "processed")))
    given = dict(model=model, data=None if data is None else str(data), weights=weights, freeze=freeze, init=init,
                 epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=patience, dropout=dropout,
                 split=split, input_size=input_size, out=None if out is None else str(out),
                 eager=eager or None, decision=decision)
    for k, v in given.items():
        if v is not None:
            setattr(cfg, k, v)
    if hparam:
        cfg.hparams = {**(cfg.hparams or {}), **parse_hparams(hparam)}
    if config is None and model is None:
        raise EphysError("--model is required (e.g. --model densenet); see `ephys models`")
    if init is not None and freeze is None:
        from ephys.pipelines.core.training import init_freeze

        cfg.freeze = init_freeze(cfg)
    allowed = {f.name for f in fields(TrainConfig)}
    assert set(given) <= allowed
    # one validation place (core.training.check_config: settings, --decision, the model's declared
    # hyper-parameters), before Keras is imported or a folder made
    options = {k for k, v in given.items() if v is not None} | ({"hparams"} if hparam else set())
    check_config(cfg, source=config, options=options)
    from ephys.pipelines.core.atomic import check_writable_dir
    from ephys.pipelines.core.training import check_inputs, default_run_dir

    check_inputs(cfg)

    check_writable_dir(cfg.out or default_run_dir(cfg), "run folder")
    if cv is not None and cv not in ("auto", "lopo", "grouped", "blocked"):
        raise EphysError(f"--cv must be auto, lopo, grouped or blocked, not {cv!r}")
    if fold is not None and hold_out is not None:
        raise EphysError("give --fold or --hold-out, not both")
    common.import_backend()

    from ephys.pipelines.core.models import REGISTRY, resolve_model_name

    if fold is not None or hold_out is not None:
        from ephys.pipelines.core import crossval

        if fold == "all":
            m = crossval.cross_validate(cfg, scheme=cv, n_folds=cv_folds, log=common.notice)
            common.info(f"{m['n_folds_done']} folds, pooled held-out accuracy {m['accuracy']:.3f} (majority baseline "
                        f"{m['majority_baseline_accuracy']:.3f}), balanced accuracy {m['balanced_accuracy']:.3f}")
            common.out.print(str(Path(cfg.out or crossval.default_cv_dir(cfg)) / "metrics.json"),
                             highlight=False, markup=False, soft_wrap=True)
            return
        run_dir = crossval.train_fold(cfg, fold=fold, hold_out=hold_out, scheme=cv, n_folds=cv_folds,
                                      log=common.notice)
        common.out.print(str(run_dir), highlight=False, markup=False, soft_wrap=True)
        return

    if REGISTRY[resolve_model_name(cfg.model)].trainer is not None:  # no epochs (e.g. trees): its log lines are the progress
        common.out.print(str(run(cfg, log=common.notice)), highlight=False, markup=False, soft_wrap=True)
        return
    with common.progress_bar(f"training {cfg.model} epoch", cfg.epochs, every=1, defer=False) as advance:
        def on_epoch(epoch, logs):
            note = "  ".join(f"{k} {v:.3f}" for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy"))
            advance(1, note)

        run_dir = run(cfg, on_epoch=on_epoch, log=common.notice)
    common.out.print(str(run_dir), highlight=False, markup=False, soft_wrap=True)
