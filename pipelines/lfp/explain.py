"""Explanations of LFP-window classifiers (``bilstm`` on ``sequence`` datasets): how a window of
band-filtered LFP inputs and its saliency are drawn (:data:`VIEW`), the modality's part of the one
explain loop (:func:`ephys.pipelines.blocks.explain.saliency.explain_keras_run`).

The saliency keeps the inputs (``reduce_last=False``): ``RUN/explain/saliency.npz`` holds ``maps``
(n, time, inputs) float32 in [0, 1] (|d P(spike or not) / d x| per time sample and input,
divided by each map's maximum), ``time_ms`` (time,) (ms from the window's start) and ``input``
(inputs,) (the manifest's ``channels``: channel:band names), so the class means say which band of
which channel, and when in the window, moves the prediction.

The modality's declaration wires these with ``explain="ephys.pipelines.lfp.explain:explain_sequence_run"``
and ``explanation="ephys.pipelines.lfp.explain:explanation_section"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..blocks.explain.saliency import SaliencyView, draw_matrix, explain_keras_run, saliency_section

__all__ = ["VIEW", "explain_sequence_run", "explanation_section"]


def _coords(manifest: dict, shape) -> dict:
    fs = manifest.get("fs_hz")
    n_t, n_in = shape
    names = [str(c) for c in (manifest.get("channels") or [])]
    return {"time_ms": 1000.0 * np.arange(n_t) / float(fs) if fs else np.arange(n_t, dtype=float),
            "input": np.array(names) if len(names) == n_in else None}


#: how the explain loop draws an LFP window: its inputs (z-scored) and their saliency as heat maps
VIEW = SaliencyView(
    draw=draw_matrix, coords=_coords, panels=2, panel_size=(2.8, 2.4), reduce_last=False, min_batch=256,
    xlabel="time in the window (ms)",
    what="each input (channel:band) at each time of the window, |gradient|",
    class_means_caption="Per class: the mean window (each input z-scored) and the mean saliency of each input and "
                        "time — which band of which channel, and when, moves the prediction.",
    examples_caption="Example windows per true class: inputs (z-scored, left) and saliency (right).")


def explain_sequence_run(run_dir: Path, config: dict, data: Path, manifest: dict, **options) -> Path:
    """The ``explain`` hook of the ``sequence`` modality (the one saliency loop with :data:`VIEW`)."""
    return explain_keras_run(run_dir, config, data, manifest, VIEW, **options)


def explanation_section(ctx):
    """The report's saliency section from ``RUN/explain/`` (None when the run is not explained)."""
    return saliency_section(ctx, VIEW)
