"""Explanations of feature-table runs (``ephys explain RUN`` on a ``features`` dataset).

LightGBM runs: TreeSHAP (Lundberg et al. 2020, *From local explanations to global understanding
with explainable AI for trees*, Nat Mach Intell 2:56) through the ``shap`` package's
``TreeExplainer``, on the run's test samples (every labelled sample when the split has none).
SHAP values are in the model's raw units (log-odds of the class in LightGBM's multiclass softmax):
for each sample and class, ``base_value + sum(values over features) = raw score``.

Keras runs (e.g. an MLP on the feature rows): gradient x input (Shrikumar et al. 2016; Simonyan
et al. 2014 for the gradient) through the one saliency loop,
:func:`ephys.pipelines.blocks.explain.saliency.explain_keras_run`, with :data:`FEATURES_VIEW`:
|d p_target / d feature x feature value| per feature, scaled to [0, 1] per sample -- the features'
units differ, so the plain gradient would not compare them. Files: that loop's
(``saliency.npz`` with ``feature`` names, ``summary.json``, ``examples.png``, ``class_means.png``).

TreeSHAP outputs:

Outputs under ``RUN/explain/`` (written atomically):

``shap_values.npz``
    ``ids`` (n,) str, ``labels`` (n,) str ("" when unlabelled), ``predicted`` (n,) str,
    ``feature_names`` (f,) str, ``label_names`` (k,) str, ``values`` (n, f, k) float32,
    ``base_values`` (k,) float64, ``X`` (n, f) float64 (the model's inputs after imputation).
``shap_top_features.csv``
    Per class, the features ranked by mean |SHAP| of that class's output over all explained
    samples: ``class, rank, feature, unit, mean_abs_shap, mean_shap_in_class`` (the signed mean
    over samples whose true class it is), ``value_shap_correlation`` (Pearson r between the
    feature's value and its SHAP value for that class over the samples where it is measured:
    > 0 means higher values favour the class).
``shap_top.png``
    One panel per class: its top features as bars (mean |SHAP|), red where higher values favour
    the class, blue where lower values do.
``summary.json``
    Method, the samples explained, and the top 5 features per class.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ...core.atomic import atomic_path, write_json, write_text
from ...core.errors import EphysError

TOP_N = 10


def tree_shap_values(booster, X: np.ndarray, n_labels: int, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values of a LightGBM booster: ``(values (n, f, n_labels) float64, base (n_labels,))``.

    Classes absent from training (not in ``classes``) get zeros.
    """
    import warnings

    import shap

    explainer = shap.TreeExplainer(booster)
    with warnings.catch_warnings():  # shap's notice that binary outputs changed shape: handled below
        warnings.filterwarnings("ignore", message=".*shap values output has changed.*", category=UserWarning)
        raw = explainer.shap_values(X)
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
    if isinstance(raw, list):  # older shap: one (n, f) array per class
        raw = np.stack(raw, axis=-1)
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim == 2:  # binary objective: one output (log-odds of the second class)
        raw = np.stack([-raw, raw], axis=-1)
        base = np.array([-base[0], base[0]])
    values = np.zeros((X.shape[0], X.shape[1], n_labels))
    full_base = np.zeros(n_labels)
    values[:, :, classes] = raw
    full_base[classes] = base
    return values, full_base


def _corr(x: np.ndarray, v: np.ndarray) -> float:
    ok = np.isfinite(x)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(v[ok]) == 0:
        return 0.0
    return float(np.corrcoef(x[ok], v[ok])[0, 1])


def _pyplot():
    from ...core.page import pyplot

    return pyplot()


def _figure(top: dict[str, list[dict]], path: Path) -> Path:
    plt = _pyplot()
    k = len(top)
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 0.32 * TOP_N + 1.2), squeeze=False)
    for ax, (cls, rows) in zip(axes[0], top.items()):
        rows = rows[:TOP_N][::-1]
        vals = [r["mean_abs_shap"] for r in rows]
        colors = ["#b2182b" if r["value_shap_correlation"] > 0 else "#2166ac" for r in rows]
        ax.barh(range(len(rows)), vals, color=colors)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r["feature"] for r in rows], fontsize=7)
        ax.set_title(cls, fontsize=10)
        ax.set_xlabel("mean |SHAP| (log-odds)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.suptitle("Top features per class by mean |SHAP| (red: higher values favour the class; blue: lower values do)",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def explain_tabular_run(run_dir: str | Path, data_dir: str | Path | None = None, figures: bool = True) -> Path:
    """TreeSHAP for a LightGBM run; returns ``RUN/explain`` (files: see the module docstring).

    Raises
    ------
    EphysError
        No model / config / dataset, split ids missing from the dataset, nothing to explain.
    """
    from ...core.datasets import load_dataset
    from ...core.nouns import nouns as _nouns
    from ...core.runfolder import find_dataset, load_run_config, read_split
    from ..models.lightgbm import TabularModel

    run = Path(run_dir)
    model = TabularModel(run)
    config = load_run_config(run)
    ds = load_dataset(find_dataset(run, config, data_dir))
    words = _nouns(ds.manifest)
    names = list(ds.manifest["feature_names"])
    split = read_split(run)
    pos = {sid: i for i, sid in enumerate(ds.ids)}
    if split and split["test"]:
        ids, source = list(split["test"]), "test split"
    else:
        ids, source = [ds.ids[i] for i in ds.labelled_indices()], f"all labelled {words.samples} (no test split)"
    missing = [s for s in ids if s not in pos]
    if missing:
        raise EphysError(f"{words.samples} {missing[:3]} of split.json are not in the dataset", run / "split.json")
    if not ids:
        raise EphysError(f"no {words.samples} to explain", run)
    idx = np.array([pos[s] for s in ids], dtype=np.int64)
    X = model.transform(ds.load(idx, dtype=np.float64), names)
    label_names = list(model.meta["label_names"])
    values, base = tree_shap_values(model.booster, X, len(label_names), list(model.meta["classes"]))
    proba = model.predict_proba(ds.load(idx, dtype=np.float64), names)
    predicted = [label_names[int(p.argmax())] for p in proba]
    true = [ds.labels[i] or "" for i in idx]
    feats = model.feature_names
    units = ds.manifest.get("feature_units") or {}

    top: dict[str, list[dict]] = {}
    for c, cls in enumerate(label_names):
        mean_abs = np.abs(values[:, :, c]).mean(axis=0)
        in_class = np.array([t == cls for t in true])
        signed = values[in_class, :, c].mean(axis=0) if in_class.any() else np.zeros(len(feats))
        order = np.argsort(-mean_abs, kind="stable")
        top[cls] = [{"rank": r + 1, "feature": feats[j], "unit": units.get(feats[j], ""),
                     "mean_abs_shap": float(mean_abs[j]), "mean_shap_in_class": float(signed[j]),
                     "value_shap_correlation": _corr(X[:, j], values[:, j, c])}
                    for r, j in enumerate(order)]

    out = run / "explain"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "shap_values.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, ids=np.array(ids), labels=np.array(true), predicted=np.array(predicted),
                                feature_names=np.array(feats), label_names=np.array(label_names),
                                values=values.astype(np.float32), base_values=base, X=X)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["class", "rank", "feature", "unit", "mean_abs_shap", "mean_shap_in_class", "value_shap_correlation"])
    for cls, rows in top.items():
        for r in rows:
            w.writerow([cls, r["rank"], r["feature"], r["unit"], f"{r['mean_abs_shap']:.5f}",
                        f"{r['mean_shap_in_class']:.5f}", f"{r['value_shap_correlation']:.3f}"])
    write_text(out / "shap_top_features.csv", buf.getvalue())
    if figures:
        _figure(top, out / "shap_top.png")
    write_json(out / "summary.json", {
        "method": "tree_shap", "package": "shap", "model": "lightgbm", "n_samples": len(ids), "samples": source,
        "sample_noun": words.sample,
        "units": "log-odds (raw LightGBM score) per class",
        "top_features": {cls: [r["feature"] + ("↑" if r["value_shap_correlation"] > 0 else "↓") for r in rows[:5]]
                         for cls, rows in top.items()},
    })
    return out


def _draw_features(axes, x, saliency, info):
    """One feature row: a horizontal bar per feature (its |gradient x input|, scaled to max 1)."""
    from ...core.page import OKABE_ITO, style_axes

    ax = axes[0]
    names = info["coords"].get("feature")
    names = list(names) if names is not None else [str(k) for k in range(len(saliency))]
    ax.barh(range(len(saliency))[::-1], saliency, color=OKABE_ITO[0])
    ax.set_yticks(range(len(saliency))[::-1])
    ax.set_yticklabels(names if info["first_col"] else [""] * len(names), fontsize=7)
    ax.set_xlim(0, 1.05)
    ax.set_title(info["title"], fontsize=8)
    if info["last_row"]:
        ax.set_xlabel("|gradient × input| (max 1)", fontsize=8)
    style_axes(ax)
    return None


def _feature_coords(manifest, shape):
    names = manifest.get("feature_names") or []
    return {"feature": np.array([str(n) for n in names]) if len(names) == shape[0] else None}


def _features_view():
    from .saliency import SaliencyView

    return SaliencyView(
        draw=_draw_features, coords=_feature_coords, panels=1, panel_size=(3.0, 2.6), reduce_last=False,
        times_input=True, min_batch=256, what="each input feature (|gradient × feature value|)",
        class_means_caption="Per class: the mean |gradient × input| of each feature over the samples whose target "
                            "class it is (each sample's attributions scaled to max 1 first).",
        examples_caption="Example rows per true class: each feature's |gradient × input|, scaled to max 1.")


#: how the explain loop draws a feature row of a Keras run (bars of |gradient x input| per feature)
FEATURES_VIEW = _features_view()


def explain_features_run(run_dir: Path, config: dict, data: Path, manifest: dict, *, figures: bool = True,
                         kind: str = "lightgbm", **options) -> Path:
    """The ``explain`` hook of the ``features`` modality: TreeSHAP for LightGBM runs, gradient x
    input through the one saliency loop for Keras runs (see the module docstring).

    Raises
    ------
    EphysError
        See :func:`explain_tabular_run` and
        :func:`ephys.pipelines.blocks.explain.saliency.explain_keras_run`.
    """
    if kind == "lightgbm":
        return explain_tabular_run(run_dir, data_dir=data, figures=figures)
    from .saliency import explain_keras_run

    return explain_keras_run(run_dir, config, data, manifest, FEATURES_VIEW, figures=figures, **options)


def explanation_section(ctx):
    """The report's explanation section of a feature-table run: TreeSHAP (``RUN/explain/shap_top.png``)
    or gradient x input (the saliency loop's files); None when the run is not explained."""
    from ...core.registry import Figure, Section

    explain_dir = Path(ctx.run_dir) / "explain"
    png = explain_dir / "shap_top.png"
    if not png.is_file():
        from .saliency import saliency_section

        return saliency_section(ctx, FEATURES_VIEW)
    text, rows = "", []
    summ = explain_dir / "summary.json"
    if summ.is_file():
        try:
            s = json.loads(summ.read_text(encoding="utf-8"))
            from ...core.nouns import plural

            noun = str(s.get("sample_noun") or "sample")
            n = s.get("n_samples", "?")
            text = (f"TreeSHAP (shap package) on {n} {noun if n == 1 else plural(noun)} ({s.get('samples', '?')}): "
                    "mean |SHAP| of each class's output, in log-odds.")
            rows = [[cls, ", ".join(feats)] for cls, feats in (s.get("top_features") or {}).items()]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
    caption = ("Top features per class by mean |SHAP| of the class's output; red: higher values favour the class, "
               "blue: lower values do (↑/↓ in the table). Full ranking: explain/shap_top_features.csv.")
    return Section("Explanations (SHAP)", text, [Figure(png.read_bytes(), "top features per class (SHAP)", caption,
                                                        "shap_top")],
                   [["class", "top 5 features"]] + rows if rows else None)
