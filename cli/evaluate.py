"""``ephys evaluate``: metrics on the held-out test cells."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common


def evaluate(run: Path = typer.Argument(None, help="Run folder [default: the latest under ./runs].")):
    """Predict the run's held-out test cells; write metrics.json (accuracy, balanced_accuracy,
    macro_f1, roc_auc_ovr, confusion matrix, per class) and predictions.csv."""
    common.import_backend()
    from ephys.pipelines.core.evaluation import evaluate_run

    run = common.resolve_run(run)
    m = evaluate_run(run)
    auc = "n/a" if m["roc_auc_ovr"] is None else f"{m['roc_auc_ovr']:.3f}"
    common.info(f"test cells {m['n_test']}: accuracy {m['accuracy']:.3f}  balanced accuracy "
                f"{m['balanced_accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  ROC-AUC {auc}")
    for w in m.get("warnings") or []:
        common.notice(f"warning: {w}")
    common.out.print(str(run / "metrics.json"), highlight=False, markup=False, soft_wrap=True)
