"""Waveform explanations and figures: how a snippet and its saliency over time are drawn
(:data:`VIEW`, the modality's part of the one explain loop,
:func:`ephys.pipelines.blocks.explain.saliency.explain_keras_run`) and the example-waveform panel of
the run report.

``ephys explain`` on a waveform run gives ``maps`` (n, n_samples) float32 in [0, 1] (|d p_target /
d x| per time sample, max over the snippet's channels, divided by each map's maximum) and
``time_ms`` (n_samples,) float64 (0 = threshold crossing) in ``RUN/explain/saliency.npz``;
``examples.png`` draws example snippets coloured by saliency, ``class_means.png`` the mean snippet
of each class coloured by its mean saliency.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..blocks.explain.saliency import SaliencyView, draw_trace, explain_keras_run, pyplot as _pyplot, saliency_section
from ..core.datasets import load_dataset
from ..core.errors import EphysError
from ..core.page import png_bytes as _png, style_axes as _style

__all__ = ["VIEW", "explain_waveform_run", "report_examples", "explanation_section"]

SALIENCY_CMAP = "inferno"


def _time_ms(manifest: dict, n: int) -> np.ndarray:
    fs = float(manifest.get("fs_hz") or 1000.0)
    t0 = float((manifest.get("time_ms") or [0.0])[0])
    return t0 + 1000.0 * np.arange(n) / fs


#: how the explain loop draws a snippet: the waveform coloured by its saliency over time
VIEW = SaliencyView(
    draw=draw_trace, coords=lambda manifest, shape: {"time_ms": _time_ms(manifest, shape[0])}, panels=1,
    panel_size=(3.2, 2.3), reduce_last=True, min_batch=256, xlabel="time from crossing (ms)",
    what="the input waveform, |gradient| per time sample maximised over channels",
    class_means_caption="Per class: the mean snippet coloured by the mean saliency of each time sample.",
    examples_caption="Example snippets coloured by saliency (dots on the channel of largest amplitude).")


def explain_waveform_run(run_dir: Path, config: dict, data: Path, manifest: dict, **options) -> Path:
    """The ``explain`` hook of the ``waveform`` modality: the one saliency loop
    (:func:`ephys.pipelines.blocks.explain.saliency.explain_keras_run`) with :data:`VIEW`."""
    return explain_keras_run(run_dir, config, data, manifest, VIEW, **options)


# --------------------------------------------------------------------------------------
# Report hooks of the waveform modality
# --------------------------------------------------------------------------------------

def _fig_waveforms(data_dir: Path, manifest: dict, label_names: list[str], split: dict | None,
                   n_max: int = 40) -> bytes | None:
    """Example snippets per class for a waveform dataset (test samples first), with class means."""
    try:
        ds = load_dataset(data_dir)
    except EphysError:
        return None
    test = set(split["test"]) if split else set()
    fs = float(manifest.get("fs_hz") or 1000.0)
    t0 = float((manifest.get("time_ms") or [0.0])[0])
    present = [n for n in label_names if any(lab == n for lab in ds.labels)]
    if not present:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(present), figsize=(3.6 * len(present) + 0.6, 3.0), squeeze=False,
                             layout="constrained", sharey=True)
    for c, name in enumerate(present):
        members = [i for i, lab in enumerate(ds.labels) if lab == name]
        members.sort(key=lambda i: (ds.ids[i] not in test, i))
        rng = np.random.default_rng(0)
        pool = [i for i in members if ds.ids[i] in test] or members
        pick = np.sort(rng.choice(pool, size=min(n_max, len(pool)), replace=False))
        x = ds.load(pick)[:, :, 0]
        t = t0 + 1000.0 * np.arange(x.shape[1]) / fs
        ax = axes[0, c]
        ax.plot(t, x.T, color="0.55", lw=0.5, alpha=0.6)
        ax.plot(t, x.mean(axis=0), color="#0072B2", lw=2)
        where = "test" if ds.ids[pool[0]] in test else "all"
        ax.set_title(f"{name} ({len(pick)} of {len(pool)} {where})", fontsize=10)
        ax.set_xlabel("time from crossing (ms)")
        if c == 0:
            ax.set_ylabel(str(manifest.get("units") or ""))
        _style(ax)
    return _png(fig)




def report_examples(ctx):
    """The report's example figure: up to 40 snippets per class (test samples first) and the
    class mean; or a note when no snippet is labelled."""
    from ..core.registry import Figure

    png = _fig_waveforms(ctx.data_dir, ctx.manifest, ctx.label_names, ctx.split)
    if not png:
        return "No labelled waveforms in the dataset: no examples."
    return Figure(png, "example waveforms",
                  "Example waveforms per class (up to 40 test samples each, thin lines) and the class "
                  "mean (thick), time from the threshold crossing.")


def explanation_section(ctx):
    """The report's saliency section from ``RUN/explain/`` (None when the run is not explained)."""
    return saliency_section(ctx, VIEW)
