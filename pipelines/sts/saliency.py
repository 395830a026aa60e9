"""Scalogram explanations and figures: saliency maps of a scalogram classifier (``ephys explain``)
and the scalogram panels of the run report.


For every test cell of a run (``RUN/split.json`` "test"; every labelled cell of the dataset
when the split has no test cells) the gradient of one class probability with respect to the
input scalogram is computed, its absolute value is reduced over the sweep axis (max) and
the map is scaled to [0, 1]. By default the class differentiated is the class the model
*predicts* for that cell ("what made the model say X"); ``target="true"`` uses the cell's
true label instead.

Outputs, all under ``RUN/explain/`` and written atomically:

``saliency.npz``
    ``ids`` (n,) str, ``labels`` (n,) str true labels ("" when unlabelled),
    ``predicted`` (n,) str, ``target_class`` (n,) str (class whose probability was
    differentiated), ``probabilities`` (n, n_classes) float32, ``maps`` (n, n_scales, n_time)
    float32 in [0, 1] in the dataset's stored frequency order, ``class_means``
    (n_classes, n_scales, n_time) float32 (mean map over the cells whose *target* class is
    that class; zeros where no cell), ``class_counts`` (n_classes,) int64, ``label_names``
    (n_classes,) str, ``frequencies_hz`` (n_scales,) float64, ``time_s`` (2,) float64.
``summary.json``
    What was computed, on which cells, with per-class counts and the (frequency, time) of
    the peak of each class-mean map.
``examples.png``
    For ``n_examples_per_class`` cells of each class: the scalogram (mean over sweeps) next
    to its saliency map.
``class_means.png``
    Mean saliency map per class.

The only backend-specific code is :func:`input_gradients` (TensorFlow / JAX / PyTorch).
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..blocks.explain.saliency import (METHODS, TARGETS, backend_name as _backend_name, load_model as _load_model,
                                       pyplot as _pyplot, saliency_maps, save_png as _save_png, short as _short)
from ..core.atomic import atomic_path, write_json
from ..core.report import png_bytes as _png, style_axes as _style
from ..core.errors import EphysError
from ..core.runfolder import load_sample, read_split

__all__ = ["explain_scalogram_run", "plot_map", "report_examples", "explanation_section"]

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


def _examples_figure(rows, frequencies_hz, time_s, path: Path, target: str = "predicted") -> Path:
    """rows: list of (label, [(id, scalogram_mean (H,W), saliency (H,W), pred, p), ...])."""
    plt = _pyplot()
    n_rows = len(rows)
    n_ex = max(len(r[1]) for r in rows)
    # columns: [scalogram, saliency, spacer] * n_ex, without the last spacer
    ratios = []
    for e in range(n_ex):
        ratios += [1, 1] + ([0.12] if e < n_ex - 1 else [])
    fig, axes = plt.subplots(
        n_rows, len(ratios), figsize=(5.4 * n_ex + 1.6, 2.3 * n_rows + 0.6), squeeze=False,
        layout="constrained", gridspec_kw={"width_ratios": ratios},
    )
    for e in range(n_ex - 1):
        for ax in axes[:, 3 * e + 2]:
            ax.set_axis_off()
    sc_mesh = sal_mesh = None
    for r, (label, cells) in enumerate(rows):
        for e in range(n_ex):
            ax_s, ax_g = axes[r, 3 * e], axes[r, 3 * e + 1]
            if e >= len(cells):
                ax_s.set_axis_off()
                ax_g.set_axis_off()
                continue
            cid, scal, sal, pred, p = cells[e]
            last = r == n_rows - 1
            sc_mesh = plot_map(
                ax_s, scal, frequencies_hz, time_s, cmap=SCALOGRAM_CMAP, ylabel=(e == 0), xlabel=last,
                title=f"{_short(cid)}\ntrue {_short(label, 16)} · scalogram",
            )
            ok = "✓" if pred == label else "✗"
            sal_mesh = plot_map(
                ax_g, sal, frequencies_hz, time_s, cmap=SALIENCY_CMAP, ylabel=False, xlabel=last,
                title=f"pred {_short(pred, 16)} {ok} (p={p:.2f})\nsaliency",
            )
            ax_g.tick_params(labelleft=False)
            if last:
                ax_s.set_xlabel("time (s)")
                ax_g.set_xlabel("time (s)")
    shrink = min(0.8, 0.2 + 1.6 / n_rows)
    if sal_mesh is not None:
        fig.colorbar(sal_mesh, ax=axes, shrink=shrink, label="saliency (0–1)", pad=0.01)
    if sc_mesh is not None:
        fig.colorbar(sc_mesh, ax=axes, shrink=shrink, label="scalogram (0–1)", pad=0.01)
    fig.suptitle(f"Example cells: scalogram (mean over sweeps) and saliency of the {target} class", fontsize=11)
    return _save_png(fig, path, dpi=100 if n_rows <= 6 else 80)  # keep reports embedding it small


def _class_means_figure(label_names, class_means, counts, frequencies_hz, time_s, path: Path, target: str) -> Path:
    plt = _pyplot()
    n = len(label_names)
    n_cols = min(4, n)
    n_rows = math.ceil(n / n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.9 * n_cols + 0.8, 2.5 * n_rows + 0.6), squeeze=False, layout="constrained"
    )
    mesh = None
    for k in range(n_rows * n_cols):
        ax = axes[k // n_cols, k % n_cols]
        if k >= n:
            ax.set_axis_off()
            continue
        if counts[k] == 0:
            ax.set_title(f"{_short(label_names[k], 24)} (n=0)", fontsize=9)
            ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        m = class_means[k]
        top = float(m.max()) or 1.0
        mesh = plot_map(
            ax, m / top, frequencies_hz, time_s, cmap=SALIENCY_CMAP,
            ylabel=(k % n_cols == 0 or counts[k - 1] == 0), xlabel=(k // n_cols == n_rows - 1 or k + n_cols >= n),
            title=f"{_short(label_names[k], 24)} (n={int(counts[k])})",
        )
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, shrink=0.9 if n_rows == 1 else 0.6, label="mean saliency\n(scaled to max 1)")
    who = "predicted as" if target == "predicted" else "labelled"
    fig.suptitle(f"Mean saliency per class (cells {who} the class)", fontsize=11)
    return _save_png(fig, path)


def explain_scalogram_run(run_dir: Path, config: dict, data: Path, manifest: dict, *, n_examples: int = 2,
                          method: str = "gradient", target: str = "predicted", batch_size: int = 16,
                          figures: bool = True, progress=None, **_) -> Path:
    """Saliency maps for a scalogram run's test cells into ``RUN/explain/`` (the files listed in
    the module docstring); the ``explain`` hook of the ``scalogram`` modality.

    Raises
    ------
    EphysError
        Samples not 3-D (n_scales, n_time, n_sweeps), ids in split.json not in the manifest, no
        cells to explain, model input / output shapes not matching the dataset.
    """
    run_dir = Path(run_dir)
    n_examples_per_class = n_examples
    model_path = run_dir / "model.keras"
    shape = manifest.get("sample_shape")
    if shape is not None and len(shape) != 3:
        raise EphysError(
            f"explain needs samples of shape (n_scales, n_time, n_sweeps); manifest says {shape}",
            data / "manifest.json",
        )
    label_names = [str(s) for s in (config.get("label_names") or manifest.get("label_names") or [])]
    if not label_names:
        raise EphysError("no label_names in config.yaml or manifest.json", run_dir / "config.yaml")
    by_id = {str(s.get("id")): s for s in manifest["samples"]}

    split = read_split(run_dir)
    if split and split["test"]:
        ids, source = list(split["test"]), "test split"
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise EphysError(
                f"{len(missing)} test id(s) from split.json not in the dataset manifest, e.g. {missing[0]!r}",
                run_dir / "split.json",
            )
    else:
        ids = [str(s["id"]) for s in manifest["samples"] if s.get("label") is not None]
        source = "all labelled cells"
    if not ids:
        raise EphysError("no cells to explain (empty test split and no labelled cells)", data / "manifest.json")

    import keras

    model = _load_model(model_path)
    n_out = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if n_out is not None and n_out != len(label_names):
        raise EphysError(f"model has {n_out} outputs but the run has {len(label_names)} label names", model_path)

    labels = [by_id[i].get("label") or "" for i in ids]
    name_to_idx = {n: k for k, n in enumerate(label_names)}
    seed = int(config.get("seed") or 0)

    maps_list, probs_list, means_list = [], [], []
    n = len(ids)
    for start in range(0, n, batch_size):
        batch_ids = ids[start : start + batch_size]
        x = np.stack([load_sample(data, by_id[i]) for i in batch_ids])
        if x.ndim != 4:
            raise EphysError(f"samples must be (n_scales, n_time, n_sweeps); got {x.shape[1:]}", data)
        try:
            probs = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise EphysError(f"model does not accept samples of shape {x.shape[1:]}: {msg}", model_path) from exc
        pred_idx = probs.argmax(axis=1)
        if target == "true":
            tgt = np.array(
                [name_to_idx.get(lab, p) for lab, p in zip(labels[start : start + batch_size], pred_idx)]
            )
        else:
            tgt = pred_idx
        maps_list.append(saliency_maps(model, x, tgt, method=method, seed=seed + start))
        probs_list.append(probs)
        means_list.append(x.mean(axis=-1).astype(np.float32))
        if progress is not None:
            progress(min(start + batch_size, n), n, "saliency")

    maps = np.concatenate(maps_list)
    probs = np.concatenate(probs_list)
    scal_means = np.concatenate(means_list)
    pred_idx = probs.argmax(axis=1)
    predicted = [label_names[k] for k in pred_idx]
    if target == "true":
        tgt_idx = np.array([name_to_idx.get(lab, p) for lab, p in zip(labels, pred_idx)])
    else:
        tgt_idx = pred_idx
    n_classes = len(label_names)
    class_means = np.zeros((n_classes,) + maps.shape[1:], np.float32)
    counts = np.zeros(n_classes, np.int64)
    for k in range(n_classes):
        sel = tgt_idx == k
        counts[k] = int(sel.sum())
        if counts[k]:
            class_means[k] = maps[sel].mean(axis=0)

    freqs = manifest.get("frequencies_hz")
    time_s = manifest.get("time_s")
    out = run_dir / "explain"
    out.mkdir(parents=True, exist_ok=True)

    with atomic_path(out / "saliency.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                ids=np.array(ids, dtype=str),
                labels=np.array(labels, dtype=str),
                predicted=np.array(predicted, dtype=str),
                target_class=np.array([label_names[k] for k in tgt_idx], dtype=str),
                probabilities=probs.astype(np.float32),
                maps=maps.astype(np.float32),
                class_means=class_means,
                class_counts=counts,
                label_names=np.array(label_names, dtype=str),
                frequencies_hz=np.asarray(freqs if freqs is not None else [], dtype=np.float64),
                time_s=np.asarray(time_s if time_s is not None else [], dtype=np.float64),
            )

    # examples: per true class, correct & confident first, then misclassified
    rows, examples = [], {}
    for k, name in enumerate(label_names):
        members = [j for j, lab in enumerate(labels) if lab == name]
        members.sort(key=lambda j: (pred_idx[j] != k, -probs[j, pred_idx[j]], ids[j]))
        chosen = members[: int(n_examples_per_class)]
        if not chosen:
            continue
        examples[name] = [ids[j] for j in chosen]
        rows.append(
            (name, [(ids[j], scal_means[j], maps[j], predicted[j], float(probs[j, pred_idx[j]])) for j in chosen])
        )
    files = ["saliency.npz", "summary.json"]
    if figures:
        if rows:
            _examples_figure(rows, freqs, time_s, out / "examples.png", target)
            files.append("examples.png")
        _class_means_figure(label_names, class_means, counts, freqs, time_s, out / "class_means.png", target)
        files.append("class_means.png")

    fvalid = _valid_freqs(freqs, maps.shape[1])
    tvalid = _valid_time(time_s)
    peaks = {}
    for k, name in enumerate(label_names):
        if not counts[k]:
            peaks[name] = None
            continue
        r, c = np.unravel_index(int(np.argmax(class_means[k])), class_means[k].shape)
        t_c = (tvalid[0] + (c + 0.5) * (tvalid[1] - tvalid[0]) / maps.shape[2]) if tvalid else None
        peaks[name] = {
            "scale_index": int(r),
            "time_bin": int(c),
            "frequency_hz": float(fvalid[r]) if fvalid is not None else None,
            "time_s": float(t_c) if t_c is not None else None,
        }
    labelled = [j for j, lab in enumerate(labels) if lab in name_to_idx]
    summary = {
        "run_id": config.get("run_id", run_dir.name),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": method,
        "target": target,
        "saliency": "|d p_target / d input|, max over sweeps, divided by each map's maximum",
        "cells": source,
        "n_cells": n,
        "dataset": str(data),
        "label_names": label_names,
        "map_shape": list(maps.shape[1:]),
        "axes": ["frequency", "time"],
        "accuracy_on_these_cells": (
            float(np.mean([pred_idx[j] == name_to_idx[labels[j]] for j in labelled])) if labelled else None
        ),
        "per_class": {
            name: {
                "n_true": int(sum(1 for lab in labels if lab == name)),
                "n_predicted": int((pred_idx == k).sum()),
                "n_in_mean": int(counts[k]),
                "peak": peaks[name],
            }
            for k, name in enumerate(label_names)
        },
        "examples": examples,
        "backend": _backend_name(),
        "files": sorted(files),
    }
    write_json(out / "summary.json", summary)
    return out




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
    from ..blocks.explain.saliency import saliency_section

    return saliency_section(
        ctx, "Mean saliency per class: which frequencies and times most change the model's output.",
        "Example cells: scalogram (left) and saliency map (right).",
        lambda how, target, s: (f"{how} saliency of the {target}-class probability with respect to the input "
                                f"scalogram, |gradient| maximised over sweeps and scaled to [0, 1] per cell; "
                                f"{s.get('n_cells', '?')} cells ({s.get('cells', '?')})."))
