"""``ephys reproduce NAME``: a published comparison end to end on real data."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common

NAMES = ("spikes-seed", "sts-baseline")


def reproduce(
    name: str = typer.Argument(..., help="Which comparison: spikes-seed (1-D CNN and GRU spike vs background, the spike seed's channels) or sts-baseline (LightGBM on the STS paper's EP feature tables and split)."),
    data: Path = typer.Option(None, "--data", help="Input data [spikes-seed: a folder of channel_spikes_CH.npy / channel_background_CH.npy, default ../shared/data/spikes; sts-baseline: the STS feature tables, labels and split, default ../shared/data/sts]."),
    out: Path = typer.Option(None, "--out", help="Output folder [default: runs/NAME]."),
    epochs: int = typer.Option(40, "--epochs", min=1, help="Maximum epochs per model."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation and shuffling."),
    normalise: str = typer.Option("channel", "--normalise", help="none | channel (each channel by its own noise level)."),
    cv_folds: int = typer.Option(5, "--cv-folds", min=2, help="sts-baseline: cross-validation folds inside the training split for model selection."),
):
    """spikes-seed: prepare the seed's snippet sets, train cnn1d and gru on channels 9/16/33
    (early stopping on 11), evaluate on channel 40, choose the best model on channel 11 and
    write OUT/metrics.json with the seed's published numbers under `reference`.

    sts-baseline: import the STS feature tables, train the STS recipe (LightGBM defaults on the
    long-square features) and our LightGBM (features, imputation and settings chosen by
    cross-validation inside the training split), evaluate both once on the STS test split,
    explain (SHAP) and report; OUT/metrics.json holds ours, with the recipe under `reference`."""
    from ephys.pipelines.errors import EphysError

    if name not in NAMES:
        raise EphysError(f"unknown comparison {name!r}; known: {', '.join(NAMES)}")
    common.import_backend()
    if name == "sts-baseline":
        from ephys.pipelines.sts_baseline import reproduce_sts_baseline

        data = data or Path("..") / "shared" / "data" / "sts"
        out = out or common.runs_root() / name
        reproduce_sts_baseline(data, out, seed=seed, cv_folds=cv_folds, log=common.info)
        common.out.print(str(out / "metrics.json"), highlight=False, markup=False, soft_wrap=True)
        return
    from ephys.pipelines.spikes import reproduce_seed

    data = data or Path("..") / "shared" / "data" / "spikes"
    out = out or common.runs_root() / name
    res = reproduce_seed(data, out, epochs=epochs, seed=seed, normalise=normalise, log=common.info)
    for m, r in res["models"].items():
        common.info(f"{m}: test macro-F1 {r['macro_f1']:.3f}  accuracy {r['accuracy']:.4f}  "
                    f"(validation macro-F1 {r['val_macro_f1']:.3f}; inference {r['inference_s_test']:.3f} s)")
    common.info(f"best on validation: {res['best_model']}; test macro-F1 {res['macro_f1']:.3f}")
    common.out.print(str(out / "metrics.json"), highlight=False, markup=False, soft_wrap=True)
