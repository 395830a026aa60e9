"""Waveform explanations and figures: saliency over time of a snippet classifier (``ephys explain``)
and the example-waveform panel of the run report."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from ..blocks.explain.saliency import (backend_name as _backend_name, input_gradients, load_model as _load_model,
                                       pyplot as _pyplot, save_png as _save_png, short as _short)
from ..core.atomic import atomic_path, write_json
from ..core.report import png_bytes as _png, style_axes as _style
from ..core.datasets import load_dataset
from ..core.errors import EphysError
from ..core.runfolder import read_split

__all__ = ["explain_waveform_run", "report_examples", "explanation_section"]

SALIENCY_CMAP = "inferno"


def explain_waveform_run(run_dir: Path, config: dict, data: Path, manifest: dict, *, n_examples: int = 2,
                         method: str = "gradient", target: str = "predicted", batch_size: int = 256,
                         figures: bool = True, progress=None, **_) -> Path:
    """Saliency over time for a waveform (1-D) run: the same files as for scalograms.

    ``saliency.npz`` holds ``maps`` (n, n_samples) float32 in [0, 1] (|d p_target / d x| per
    time sample, max over the snippet's channels, divided by each map's maximum),
    ``waveforms`` (n, n_samples) float32 (the model's input, first channel), ``class_means``
    (n_classes, n_samples) and ``time_ms`` (n_samples,) float64 (0 = threshold crossing);
    ``examples.png`` draws example snippets coloured by saliency, ``class_means.png`` the
    mean snippet and mean saliency per class.
    """
    import keras


    batch_size = max(int(batch_size), 256)
    ds = load_dataset(data)
    label_names = [str(s) for s in (config.get("label_names") or ds.label_names)]
    pos = {sid: i for i, sid in enumerate(ds.ids)}
    split = read_split(run_dir)
    if split and split["test"]:
        ids, source = list(split["test"]), "test split"
        missing = [i for i in ids if i not in pos]
        if missing:
            raise EphysError(f"{len(missing)} test id(s) from split.json not in the dataset manifest, "
                             f"e.g. {missing[0]!r}", run_dir / "split.json")
    else:
        ids = [ds.ids[i] for i in ds.labelled_indices()]
        source = "all labelled samples"
    if not ids:
        raise EphysError("no samples to explain", data / "manifest.json")
    idx = np.array([pos[i] for i in ids], dtype=np.int64)
    labels = [ds.labels[i] or "" for i in idx]
    name_to_idx = {n: k for k, n in enumerate(label_names)}
    model = _load_model(run_dir / "model.keras")
    seed = int(config.get("seed") or 0)
    maps_l, probs_l, x_l = [], [], []
    for start in range(0, idx.size, batch_size):
        x = ds.load(idx[start:start + batch_size])
        try:
            probs = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise EphysError(f"model does not accept samples of shape {x.shape[1:]}: {msg}",
                             run_dir / "model.keras") from exc
        pred = probs.argmax(axis=1)
        tgt = pred if target == "predicted" else np.array(
            [name_to_idx.get(lab, p) for lab, p in zip(labels[start:start + batch_size], pred)])
        if method == "gradient":
            g = np.abs(input_gradients(model, x, tgt))
        else:
            g = np.mean([np.abs(input_gradients(model, x + np.random.default_rng(seed + start + r).normal(
                0.0, 0.15, size=x.shape).astype(np.float32) * (x.max() - x.min()), tgt)) for r in range(16)], axis=0)
        m = g.max(axis=-1)
        peak = m.max(axis=1, keepdims=True)
        maps_l.append((m / np.where(peak > 0, peak, 1.0)).astype(np.float32))
        probs_l.append(probs)
        x_l.append(x[:, :, 0])
        if progress is not None:
            progress(min(start + batch_size, idx.size), idx.size, "saliency")
    maps, probs, xs = np.concatenate(maps_l), np.concatenate(probs_l), np.concatenate(x_l)
    pred_idx = probs.argmax(axis=1)
    tgt_idx = pred_idx if target == "predicted" else np.array(
        [name_to_idx.get(lab, p) for lab, p in zip(labels, pred_idx)])
    k_n = len(label_names)
    class_means = np.zeros((k_n, maps.shape[1]), np.float32)
    counts = np.zeros(k_n, np.int64)
    for k in range(k_n):
        sel = tgt_idx == k
        counts[k] = int(sel.sum())
        if counts[k]:
            class_means[k] = maps[sel].mean(axis=0)
    fs = float(manifest.get("fs_hz") or 1000.0)
    t0 = float((manifest.get("time_ms") or [0.0])[0])
    time_ms = t0 + 1000.0 * np.arange(maps.shape[1]) / fs
    predicted = [label_names[k] for k in pred_idx]
    out = run_dir / "explain"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "saliency.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, ids=np.array(ids, dtype=str), labels=np.array(labels, dtype=str),
                                predicted=np.array(predicted, dtype=str),
                                target_class=np.array([label_names[k] for k in tgt_idx], dtype=str),
                                probabilities=probs, maps=maps, waveforms=xs.astype(np.float32),
                                class_means=class_means, class_counts=counts,
                                label_names=np.array(label_names, dtype=str), time_ms=time_ms)
    examples, files = {}, ["saliency.npz", "summary.json"]
    chosen_rows = []
    for k, name in enumerate(label_names):
        members = [j for j, lab in enumerate(labels) if lab == name]
        members.sort(key=lambda j: (pred_idx[j] != k, -probs[j, pred_idx[j]], ids[j]))
        chosen = members[:int(n_examples)]
        if chosen:
            examples[name] = [ids[j] for j in chosen]
            chosen_rows.append((name, chosen))
    if figures:
        plt = _pyplot()
        units = str(manifest.get("units") or "")
        if chosen_rows:
            n_c = max(len(c) for _, c in chosen_rows)
            fig, axes = plt.subplots(len(chosen_rows), n_c, figsize=(3.2 * n_c + 0.6, 2.4 * len(chosen_rows) + 0.4),
                                     squeeze=False, layout="constrained")
            for r, (name, chosen) in enumerate(chosen_rows):
                for c in range(n_c):
                    ax = axes[r, c]
                    if c >= len(chosen):
                        ax.set_axis_off()
                        continue
                    j = chosen[c]
                    ax.plot(time_ms, xs[j], color="0.6", lw=1)
                    sc = ax.scatter(time_ms, xs[j], c=maps[j], cmap=SALIENCY_CMAP, vmin=0, vmax=1, s=12, zorder=3)
                    ax.set_title(f"{name} — {_short(ids[j], 24)}\npredicted {predicted[j]} "
                                 f"({probs[j, pred_idx[j]]:.2f})", fontsize=9)
                    ax.set_xlabel("time from crossing (ms)", fontsize=8)
                    if c == 0:
                        ax.set_ylabel(units, fontsize=8)
            fig.colorbar(sc, ax=axes, shrink=0.8, label=f"saliency ({target} class)")
            _save_png(fig, out / "examples.png")
            files.append("examples.png")
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
        for k, name in enumerate(label_names):
            sel = np.array([lab == name for lab in labels])
            if sel.any():
                ax[0].plot(time_ms, xs[sel].mean(axis=0), label=f"{name} (n={int(sel.sum())})")
            if counts[k]:
                ax[1].plot(time_ms, class_means[k], label=f"{name} (n={int(counts[k])})")
        ax[0].set_title("mean snippet per true class", fontsize=10)
        ax[0].set_ylabel(units, fontsize=8)
        ax[1].set_title(f"mean saliency per {target} class", fontsize=10)
        for a in ax:
            a.set_xlabel("time from crossing (ms)")
            a.legend(fontsize=8)
        _save_png(fig, out / "class_means.png")
        files.append("class_means.png")
    labelled = [j for j, lab in enumerate(labels) if lab in name_to_idx]
    summary = {
        "run_id": config.get("run_id", run_dir.name),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": method, "target": target,
        "saliency": "|d p_target / d input| per time sample, max over channels, divided by each map's maximum",
        "cells": source, "n_cells": int(idx.size), "dataset": str(data), "label_names": label_names,
        "map_shape": list(maps.shape[1:]), "axes": ["time"],
        "accuracy_on_these_cells": (float(np.mean([pred_idx[j] == name_to_idx[labels[j]] for j in labelled]))
                                    if labelled else None),
        "per_class": {name: {"n_true": int(sum(1 for lab in labels if lab == name)),
                             "n_predicted": int((pred_idx == k).sum()), "n_in_mean": int(counts[k]),
                             "peak": ({"time_bin": int(np.argmax(class_means[k])),
                                       "time_ms": float(time_ms[int(np.argmax(class_means[k]))])}
                                      if counts[k] else None)}
                      for k, name in enumerate(label_names)},
        "examples": examples, "backend": _backend_name(), "files": sorted(files),
    }
    write_json(out / "summary.json", summary)
    return out




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
    from ..blocks.explain.saliency import saliency_section

    return saliency_section(
        ctx, "Mean snippet per true class (left) and mean saliency over time per class (right).",
        "Example snippets coloured by saliency.",
        lambda how, target, s: (f"{how} saliency of the {target}-class probability with respect to the input "
                                f"waveform, |gradient| per time sample scaled to [0, 1] per snippet; "
                                f"{s.get('n_cells', '?')} snippets ({s.get('cells', '?')})."))
