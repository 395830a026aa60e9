"""Scalogram explanations and figures: how a cell's scalogram and its saliency map are drawn
(:data:`VIEW`, the modality's part of the one explain loop,
:func:`ephys.pipelines.blocks.explain.saliency.explain_keras_run`) and the scalogram panels of the
run report.

``ephys explain`` on a scalogram run differentiates one class probability with respect to the
input scalogram of every test cell, takes |gradient| maximised over the sweep axis and scales each
map to [0, 1]; ``RUN/explain/saliency.npz`` holds ``maps`` (n, n_scales, n_time) in the dataset's
stored frequency order, ``frequencies_hz`` (n_scales,) and ``time_s`` (n_time,) (bin centres, s from
stimulus onset; empty when the manifest does not give them), beside the loop's common arrays;
``examples.png`` draws example cells (scalogram averaged over sweeps next to its map) and
``class_means.png`` the mean scalogram and mean map per class.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..blocks.explain.saliency import SaliencyView, explain_keras_run, pyplot as _pyplot, saliency_section
from ..core.errors import EphysError
from ..core.page import png_bytes as _png
from ..core.runfolder import load_sample

__all__ = ["VIEW", "explain_scalogram_run", "plot_map", "report_examples", "explanation_section"]

SCALOGRAM_CMAP = "cividis"
SALIENCY_CMAP = "inferno"


# --------------------------------------------------------------------------------------
# Plotting (shared with ephys.pipelines.report)
# --------------------------------------------------------------------------------------


def _valid_freqs(frequencies_hz, n: int) -> np.ndarray | None:
    if frequencies_hz is None:
        return None
    f = np.asarray(frequencies_hz, dtype=float).ravel()
    if f.size != n or not np.all(np.isfinite(f)) or np.any(f <= 0):
        return None
    return f


def _valid_time(time_s) -> tuple[float, float] | None:
    try:
        t0, t1 = (float(v) for v in time_s)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
        return None
    return t0, t1


def plot_map(
    ax,
    image: np.ndarray,
    frequencies_hz: Sequence[float] | None,
    time_s: Sequence[float] | None,
    *,
    cmap: str = SCALOGRAM_CMAP,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    title: str | None = None,
    ylabel: bool = True,
    xlabel: bool = True,
):
    """Draw a (n_scales, n_time) map on ``ax`` with a log-frequency (Hz) y axis and time (s) x axis.

    ``image`` is in the dataset's stored row order (frequencies ascending or descending);
    rows are sorted by frequency for drawing. Without usable ``frequencies_hz`` (missing,
    wrong length, non-positive) the y axis is the scale index; without ``time_s`` the x axis
    is the time-bin index. Returns the QuadMesh (for a colorbar).
    """
    image = np.asarray(image, dtype=float)
    n_f, n_t = image.shape
    freqs = _valid_freqs(frequencies_hz, n_f)
    if freqs is not None:
        order = np.argsort(freqs, kind="stable")
        f = np.log(freqs[order])
        img = image[order]
        if n_f > 1:
            mid = (f[1:] + f[:-1]) / 2
            edges = np.concatenate([[f[0] - (mid[0] - f[0])], mid, [f[-1] + (f[-1] - mid[-1])]])
        else:
            edges = np.array([f[0] - 0.1, f[0] + 0.1])
        y_edges = np.exp(edges)
    else:
        img = image
        y_edges = np.arange(n_f + 1) - 0.5
    t = _valid_time(time_s)
    x_edges = np.linspace(t[0], t[1], n_t + 1) if t else np.arange(n_t + 1) - 0.5
    mesh = ax.pcolormesh(x_edges, y_edges, img, cmap=cmap, vmin=vmin, vmax=vmax, shading="flat")
    if freqs is not None:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        ax.set_yscale("log")
        lo, hi = float(y_edges[0]), float(y_edges[-1])
        ax.set_ylim(lo, hi)
        ticks = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
            for m in (1, 2, 5)
            if lo <= m * 10.0**e <= hi
        ]
        if len(ticks) > 7:
            ticks = [t for t in ticks if round(t / 10.0 ** math.floor(math.log10(t))) in (1, 5)] or ticks
        if len(ticks) > 7:
            ticks = [t for t in ticks if round(t / 10.0 ** math.floor(math.log10(t))) == 1] or ticks
        if len(ticks) >= 2:
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.yaxis.set_minor_locator(NullLocator())
    if ylabel:
        ax.set_ylabel("frequency (Hz)" if freqs is not None else "scale index")
    if xlabel:
        ax.set_xlabel("time from stimulus onset (s)" if t else "time bin")
    if title:
        ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=8)
    return mesh


def _coords(manifest: dict, map_shape) -> dict:
    """Frequencies (Hz) of the map's rows and the centre (s) of each time bin, when known."""
    n_f, n_t = map_shape
    t = _valid_time(manifest.get("time_s"))
    return {"frequencies_hz": _valid_freqs(manifest.get("frequencies_hz"), n_f),
            "time_s": (t[0] + (np.arange(n_t) + 0.5) * (t[1] - t[0]) / n_t) if t else None}


def _draw(axes, x, saliency, info):
    """One cell: its scalogram (mean over sweeps) on the first axes, its saliency on the second."""
    manifest = info["manifest"]
    freqs, time_s = manifest.get("frequencies_hz"), manifest.get("time_s")
    img = np.asarray(x, dtype=float)
    img = img.mean(axis=-1) if img.ndim == 3 else np.atleast_2d(img)
    last = info["last_row"]
    plot_map(axes[0], img, freqs, time_s, cmap=SCALOGRAM_CMAP, ylabel=info["first_col"],
             xlabel=last, title=info["title"])
    mesh = plot_map(axes[1], saliency, freqs, time_s, cmap=SALIENCY_CMAP, ylabel=False, xlabel=last,
                    title="saliency")
    axes[1].tick_params(labelleft=False)
    if last:
        for ax in axes:
            ax.set_xlabel("time (s)")
    return mesh


#: how the explain loop draws a cell: scalogram and saliency side by side, log-frequency axis
VIEW = SaliencyView(
    draw=_draw, coords=_coords, panels=2, panel_size=(2.7, 2.3), reduce_last=True,
    what="the input scalogram, |gradient| maximised over sweeps", min_batch=1,
    class_means_caption="Per class: the mean scalogram and the mean saliency map of the cells whose target class "
                        "it is — which frequencies and times most change the model's output.",
    examples_caption="Example cells: scalogram averaged over sweeps (left) and saliency map (right).")


def explain_scalogram_run(run_dir: Path, config: dict, data: Path, manifest: dict, **options) -> Path:
    """The ``explain`` hook of the ``scalogram`` modality: the one saliency loop
    (:func:`ephys.pipelines.blocks.explain.saliency.explain_keras_run`) with :data:`VIEW`; maps
    are (n_scales, n_time), |gradient| maximised over sweeps.

    Raises
    ------
    EphysError
        Samples not 3-D (n_scales, n_time, n_sweeps); see ``explain_keras_run``.
    """
    shape = manifest.get("sample_shape")
    if shape is not None and len(shape) != 3:
        raise EphysError(f"explain needs samples of shape (n_scales, n_time, n_sweeps); manifest says {shape}",
                         Path(data) / "manifest.json")
    return explain_keras_run(run_dir, config, data, manifest, VIEW, **options)


# --------------------------------------------------------------------------------------
# Report hooks of the scalogram modality
# --------------------------------------------------------------------------------------

FIG_DPI = 100


def _pick_examples(manifest: dict, label_names: list[str], split: dict | None, n: int = 2):
    test = set(split["test"]) if split else set()
    out = []
    for name in label_names:
        members = [s for s in manifest["samples"] if s.get("label") == name]
        members.sort(key=lambda s: (str(s.get("id")) not in test, str(s.get("id"))))
        if members:
            out.append((name, members[:n]))
    return out


def _fig_examples(data_dir: Path, manifest: dict, examples: list[tuple[str, list[dict]]]) -> bytes | None:
    plt = _pyplot()
    if not examples:
        return None
    n_rows = len(examples)
    n_cols = max(len(e[1]) for e in examples)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.3 * n_cols + 1.0, 2.3 * n_rows + 0.5), squeeze=False, layout="constrained"
    )
    dpi = FIG_DPI if n_rows <= 6 else 80
    mesh = None
    freqs, time_s = manifest.get("frequencies_hz"), manifest.get("time_s")
    for r, (label, entries) in enumerate(examples):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(entries):
                ax.set_axis_off()
                continue
            e = entries[c]
            x = load_sample(data_dir, e)
            img = x.mean(axis=-1) if x.ndim == 3 else np.atleast_2d(x)
            n_sw = x.shape[-1] if x.ndim == 3 else 1
            extra = f", rheobase {e['rheobase_pA']:g} pA" if isinstance(e.get("rheobase_pA"), (int, float)) else ""
            mesh = plot_map(
                ax, img, freqs, time_s, cmap=SCALOGRAM_CMAP, ylabel=(c == 0), xlabel=(r == n_rows - 1),
                title=f"{label} — {str(e.get('id'))[:28]}\nmean of {n_sw} sweeps{extra}",
            )
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, shrink=min(0.8, 0.2 + 1.6 / n_rows), label="normalised log |CWT|")
    return _png(fig, dpi)



def report_examples(ctx):
    """The report's example figure: one or two cells per class (test cells first), the scalogram
    averaged over sweeps; or a note when there is nothing to draw."""
    from ..core.registry import Figure

    manifest, label_names = ctx.manifest, ctx.label_names
    shape = manifest.get("sample_shape")
    if shape is not None and len(shape) != 3:
        return f"Example scalograms are drawn for scalogram datasets only (sample shape {shape})."
    ex = _pick_examples(manifest, label_names, ctx.split, n=2 if len(label_names) <= 8 else 1)
    png = _fig_examples(ctx.data_dir, manifest, ex) if ex else None
    if not png:
        return "No labelled cells in the dataset: no example scalograms."
    return Figure(png, "example scalograms",
                  "One or two cells per class (test cells first): the scalogram averaged over the "
                  "cell's sweeps, log frequency axis. Colour map: cividis (colour-blind safe).")


def explanation_section(ctx):
    """The report's saliency section from ``RUN/explain/`` (None when the run is not explained)."""
    return saliency_section(ctx, VIEW)
