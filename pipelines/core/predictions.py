"""What a prepare step may do with predictions on its datasets (``ephys predict``).

The core writes one row per sample (``predictions.csv``). A step whose samples are parts of larger
units (1-s segments of a recording, windows of a trace) may declare a ``predictions`` hook
(:attr:`ephys.pipelines.core.prepare.PrepareStep.predictions`) that writes the output its field
expects instead — e.g. one row per recording with the published aggregation rule, the per-sample rows
in a second file, figures — and returns extra report sections. The hook gets a
:class:`PredictionContext`; the same hook serves a trained run (``ephys predict RUN INPUT``) and a
published model (``ephys predict NAME INPUT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["PredictionContext", "run_predictions_hook", "step_of"]


@dataclass
class PredictionContext:
    """What a step's ``predictions`` hook gets.

    Attributes
    ----------
    out : the output folder being written (a temporary sibling of OUT, renamed at the end).
    dataset : the prepared input (:class:`ephys.pipelines.core.datasets.Dataset`).
    proba : (n_samples, n_classes) float64 class probabilities, rows in ``dataset.ids`` order
        ((0, n_classes) when no sample could be prepared).
    label_names : the classes of ``proba``'s columns.
    threshold : decision threshold on the last class's probability (two classes), or None: the
        model's own rule (argmax), or the step's published rule.
    model : what predicted, in words (a run folder or a published model's name).
    input_range : ``(minima, maxima)`` of each input column the model was trained on, when the model
        declares it (a published model's scaling constants); None otherwise.
    run_dir : the trained run (None for a published model); its training dataset is ``trained_dir``.
    log : progress messages.
    """

    out: Path
    dataset: Any
    proba: np.ndarray
    label_names: list[str]
    threshold: float | None
    model: str
    input_range: tuple | None = None
    run_dir: Path | None = None
    trained_dir: Path | None = None
    log: Callable[[str], None] = print


def run_predictions_hook(step, ctx: PredictionContext) -> list | None:
    """The ``predictions`` hook of ``step`` (a PrepareStep or None) on ``ctx``: its report sections
    (:class:`ephys.pipelines.core.registry.Section` list), or None when the step declares no hook (the
    core then writes one row per sample)."""
    hook = step.hook("predictions") if step is not None else None
    if hook is None:
        return None
    return list(hook(ctx) or [])


def step_of(manifest: dict | None):
    """The prepare step that made a dataset (its manifest's ``prepared_by``), or None (unknown or
    from before steps were recorded)."""
    from .registry import prepare_steps

    name = ((manifest or {}).get("prepared_by") or {}).get("step")
    found = prepare_steps().get(str(name)) if name else None
    return found[0] if found else None
