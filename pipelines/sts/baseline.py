"""``ephys reproduce sts-baseline``: the STS paper's LightGBM baseline, reproduced and beaten.

Amprimo et al. 2025 (STS) compare their scalogram CNNs with LightGBM on the Allen Institute's
electrophysiological (EP) features of 5,590 mouse visual-cortex neurons, on a fixed train/test
split (:mod:`ephys.pipelines.sts_tables`). This module runs, on that split:

1. **reference** — the STS recipe: LightGBM with its default settings on the long-square
   features common to both feature tables (``feature_set=sts_recipe``, 16 features);
2. **ours** — LightGBM whose feature set (incl. short-square / ramp features and AP kinetics
   derived from the tables' time stamps), imputation, settings and class weighting are chosen by
   5-fold cross-validation inside the training split (:func:`ephys.pipelines.tabular.tune`).

The test split is read once per model, by ``evaluate``. Output folder layout (``OUT``):

- ``OUT/data/`` — the feature-table dataset;
- ``OUT/reference/`` — the recipe's run (config, model, metrics, predictions, report);
- ``OUT/`` itself — our run: ``metrics.json`` (``balanced_accuracy`` etc. on the test split, and
  ``reference`` = the recipe's metrics), ``cv_results.csv``, ``explain/`` (SHAP), ``report.html``
  with both side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..core.atomic import write_json

REFERENCE_NAME = "STS recipe"
REFERENCE_DESCRIPTION = ("LightGBM, default settings, on the 16 long-square features common to the PatchClamp "
                         "and Patch-seq tables (Amprimo et al. 2025 baseline; the issue's reproduction: 0.905 "
                         "balanced accuracy)")


def reproduce_sts_baseline(data: str | Path, out: str | Path, seed: int = 0, cv_folds: int = 5,
                           log: Callable[[str], None] = print) -> dict:
    """Prepare, train both models, evaluate on the STS test split, explain, report.

    Parameters
    ----------
    data : folder of the five STS files (``../shared/data/sts``)
    out : output folder (see the module docstring); re-running reuses trained models
    seed : LightGBM / fold seed

    Returns
    -------
    dict — the contents of ``OUT/metrics.json``.

    Raises
    ------
    EphysError
        Bad or missing STS files (see :func:`ephys.pipelines.sts_tables.load_sts_tables`).
    """
    from ..core.evaluation import evaluate_run
    from ..core.explain import explain_run
    from ..core.report import build_report
    from .tables import prepare_sts_features
    from ..core.training import TrainConfig, train

    out = Path(out)
    ds_dir = out / "data"
    prepare_sts_features(data, ds_dir, log=log)  # checks every input before it writes or says anything
    log(f"prepared: STS feature tables from {data}")

    ref_dir = out / "reference"
    log("train reference: the STS recipe (LightGBM defaults, sts_recipe features)")
    train(TrainConfig(model="lightgbm", data=str(ds_dir), out=str(ref_dir), split="sts", seed=seed,
                      hparams={"feature_set": "sts_recipe", "cv_folds": cv_folds}), log=log)
    ref = evaluate_run(ref_dir)
    ref.update({"name": REFERENCE_NAME, "description": REFERENCE_DESCRIPTION})
    write_json(ref_dir / "metrics.json", ref)
    build_report(ref_dir)

    log("train ours: LightGBM, feature set / imputation / settings chosen by CV on the training split")
    train(TrainConfig(model="lightgbm", data=str(ds_dir), out=str(out), split="sts", seed=seed,
                      hparams={"tune": True, "cv_folds": cv_folds}), log=log)
    ours = evaluate_run(out)  # picks up reference/metrics.json as "reference"
    summary = json.loads((out / "train_summary.json").read_text())
    ours["selection"] = (f"{cv_folds}-fold stratified CV inside the training split, balanced accuracy; "
                         f"chosen: feature set {summary.get('feature_set')}, imputation {summary.get('imputation')}, "
                         f"settings {summary.get('settings')}")
    ours["cv_balanced_accuracy_train"] = summary.get("cv_balanced_accuracy_train")
    write_json(out / "metrics.json", ours)
    explain_run(out)
    build_report(out)
    log(f"reference (STS recipe): test balanced accuracy {ref['balanced_accuracy']:.4f}, accuracy "
        f"{ref['accuracy']:.4f}, macro-F1 {ref['macro_f1']:.4f}")
    log(f"ours: test balanced accuracy {ours['balanced_accuracy']:.4f}, accuracy {ours['accuracy']:.4f}, "
        f"macro-F1 {ours['macro_f1']:.4f} (CV on train {summary.get('cv_balanced_accuracy_train', float('nan')):.4f})")
    return ours
