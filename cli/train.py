"""``ephys train``: fit a model from the registry on a prepared dataset."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from . import common


def train(
    model: str = typer.Option(None, "--model", "-m", help="A registered model name or alias; `ephys models` shows them with the data each fits."),
    data: Path = typer.Option(None, "--data", help="Prepared dataset folder [default: the default pipeline's main dataset under DATA]."),
    weights: str = typer.Option(None, "--weights", help="imagenet | none | PATH to a backbone weights file [default: none]."),
    freeze: str = typer.Option(None, "--freeze", help="none (fine-tune everything) | full (train the head only) [default: none]."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Maximum epochs [default: 20]."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="[default: 8]"),
    lr: float = typer.Option(None, "--lr", help="Adam learning rate [default: 1e-4]."),
    seed: int = typer.Option(None, "--seed", help="Seed for the split, initialisation and shuffling [default: 0]."),
    dropout: float = typer.Option(None, "--dropout", min=0.0, max=0.95, help="Dropout rate of the model's head, for models that have one [default: 0.3]."),
    patience: int = typer.Option(None, "--patience", min=1, help="Early stopping: epochs without validation-loss improvement [default: 5]."),
    split: str = typer.Option(None, "--split", help="'grouped' (random split by group, stratified; seeded) or a published split the dataset's manifest offers by name (its `splits`) [default: the manifest's default_split if it names one, else grouped]."),
    input_size: int = typer.Option(None, "--input-size", min=32, help="Override the backbone input size (default 224, InceptionV3 299); smaller is faster on CPU."),
    decision: str = typer.Option(None, "--decision", help="argmax (default) or val_macro_f1: two-class runs predict the second class above a probability threshold chosen for macro-F1 on the validation part (never the test part)."),
    eager: bool = typer.Option(False, "--eager", envvar="EPHYS_EAGER", help="Run training steps eagerly: no graph-build wait (about a minute for DenseNet on a CPU) but slower steps; for tiny runs and debugging."),
    out: Path = typer.Option(None, "--out", help="Run folder [default: runs/<model>-<dataset>]. Re-running the same command resumes it."),
    hparam: list[str] = typer.Option(None, "--hparam", help="Model hyper-parameter KEY=VALUE, repeatable (e.g. --hparam width=128 --hparam dropout=0.2); int/float/bool/str; stored in config.yaml `hparams`; `ephys models --hparams` shows what each model accepts (type, default, range)."),
    config: Path = typer.Option(None, "--config", help="A run's config.yaml to reproduce; other options override it."),
    fold: str = typer.Option(None, "--fold", help="Train one fold of the dataset's cross-validation: its 0-based index (a SLURM array task id) or name (lopo-P03, fold-2); 'all' trains every fold here and aggregates. --out is then the cross-validation folder [default: runs/<model>-<dataset>-cv], the fold goes to OUT/<fold name>."),
    hold_out: str = typer.Option(None, "--hold-out", help="Train the leave-one-participant-out fold that holds out this participant (implies --cv lopo)."),
    cv: str = typer.Option(None, "--cv", help="Cross-validation scheme for --fold: auto, lopo, grouped, blocked [default: the modality's]."),
    cv_folds: int = typer.Option(5, "--cv-folds", min=2, help="Folds of the grouped and blocked schemes."),
):
    """Train a classifier: grouped train/val/test split by cell, class weights, early stopping on
    the validation cells, a checkpoint every epoch and automatic resume after a kill.
    `--model lightgbm` on a feature table: gradient-boosted trees; `--hparam tune=true` picks
    features, imputation and settings by cross-validation inside the training split."""
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
    given = dict(model=model, data=None if data is None else str(data), weights=weights, freeze=freeze,
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
