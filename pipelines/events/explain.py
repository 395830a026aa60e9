"""Explanations of event-window classifiers (``cnn_bilstm`` on ``event_window`` datasets): how a
window and its saliency over time are drawn (:data:`VIEW`), the modality's part of the one explain
loop (:func:`ephys.pipelines.blocks.explain.saliency.explain_keras_run`).

``RUN/explain/saliency.npz`` holds ``maps`` (n, window) float32 in [0, 1] (|d p_target / d x| per
sample of the min-max scaled window, divided by each map's maximum) and ``time_ms`` (window,)
(ms from the window's start, or the sample index when the manifest has no ``fs_hz``).

The modality's declaration wires these with ``explain="ephys.pipelines.events.explain:explain_window_run"``
and ``explanation="ephys.pipelines.events.explain:explanation_section"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..blocks.explain.saliency import SaliencyView, draw_trace, explain_keras_run, saliency_section

__all__ = ["VIEW", "explain_window_run", "explanation_section"]


def _time(manifest: dict, shape) -> dict:
    fs = manifest.get("fs_hz")
    n = shape[0]
    return {"time_ms": 1000.0 * np.arange(n) / float(fs)} if fs else {"sample": np.arange(n, dtype=float)}


#: how the explain loop draws a window: the trace coloured by its saliency over time
VIEW = SaliencyView(
    draw=draw_trace, coords=_time, panels=1, panel_size=(3.6, 2.3), reduce_last=True, min_batch=256,
    xlabel="time in the window (ms)", ylabel="min-max scaled",
    what="the input window, |gradient| per sample",
    class_means_caption="Per class: the mean window coloured by the mean saliency of each sample.",
    examples_caption="Example windows per true class coloured by saliency.")


def explain_window_run(run_dir: Path, config: dict, data: Path, manifest: dict, **options) -> Path:
    """The ``explain`` hook of the ``event_window`` modality (the one saliency loop with :data:`VIEW`)."""
    return explain_keras_run(run_dir, config, data, manifest, VIEW, **options)


def explanation_section(ctx):
    """The report's saliency section from ``RUN/explain/`` (None when the run is not explained)."""
    return saliency_section(ctx, VIEW)
