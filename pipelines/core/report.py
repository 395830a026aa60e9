"""Human-readable run report (``ephys report RUN``) and the cross-validation report
(``ephys aggregate``), both built with the one page builder (:mod:`ephys.pipelines.core.page`).

:func:`build_report` writes two renderings of the same page:

``RUN/report.html``
    One self-contained file: the shared style sheet inline, every figure embedded as a base64
    PNG data URI, no JavaScript, no external assets.
``RUN/report.md``
    Markdown whose figures are PNG files under ``RUN/report_files/`` (relative links).

Every metric is read from ``RUN/metrics.json`` and formatted by :func:`format_number`
(3 decimals for floats, integers as integers, ``n/a`` for null), through
:func:`metrics_table_rows` / :func:`per_class_rows`, so the HTML and the Markdown show the
same strings. Samples and groups are called what the dataset calls them
(:func:`ephys.pipelines.core.nouns.nouns`).

Sections: summary (headline cards, the comparison with a reference when metrics.json has one,
training facts: epochs, best epoch counted from 1, the decision threshold when the run has one);
data (dataset, samples per class and per split, skipped files); training (learning curves from
``history.csv``, model selection); test metrics (headline and per-class tables, confusion matrix
counts + row-normalised, one-vs-rest ROC curves from ``predictions.csv``); examples and
explanations drawn by the dataset's modality (its report hooks, see
:class:`ephys.pipelines.core.registry.Modality`), extra sections it adds; configuration.
Missing optional inputs (metrics.json, predictions.csv, history.csv, explain/, the dataset)
produce a one-line note in their section instead of an error.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import EphysError
from .datasets import check_same_dataset
from .nouns import GENERIC, Nouns, nouns
from .page import (OKABE_ITO, Card, Cards, Details, Fig, Grid, Notice, Page, Params, Table, Text, format_number,
                   hook_blocks, png_bytes, pyplot, style_axes)
from .registry import Figure, ReportContext, modality as find_modality
from .runfolder import find_dataset, load_run_config, read_manifest, read_split

__all__ = ["build_report", "build_cv_report", "metrics_table_rows", "per_class_rows", "format_number",
           "decision_facts", "pyplot", "png_bytes", "style_axes", "OKABE_ITO"]

HEADLINE = [
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro F1"),
    ("roc_auc_ovr", "ROC AUC (one-vs-rest)"),
    ("n_test", "Test {samples}"),
]
FIG_DPI = 100
MAX_SKIPPED_SHOWN = 50


def metrics_table_rows(metrics: dict | None, words: Nouns = GENERIC) -> list[tuple[str, str]]:
    """Headline metrics as (display name, formatted value) rows, in a fixed order.

    Rows: Accuracy, Balanced accuracy, Macro F1, ROC AUC (one-vs-rest), Test <samples> (the
    dataset's word, ``words``) — values from the flat keys ``accuracy, balanced_accuracy,
    macro_f1, roc_auc_ovr, n_test`` of ``metrics.json`` formatted by :func:`format_number`
    (missing/null -> ``"n/a"``). Returns [] when ``metrics`` is None (run not evaluated).
    """
    if not metrics:
        return []
    return [(name.format(samples=words.samples), format_number(metrics.get(key))) for key, name in HEADLINE]


def per_class_rows(metrics: dict | None) -> list[tuple[str, str, str, str, str]]:
    """Per-class metrics as (label, precision, recall, f1, support) formatted strings.

    Order: ``metrics["labels"]`` then any other key of ``metrics["per_class"]``.
    """
    if not metrics:
        return []
    per = metrics.get("per_class") or {}
    order = [str(x) for x in (metrics.get("labels") or [])]
    order += [k for k in per if k not in order]
    rows = []
    for lab in order:
        d = per.get(lab) or {}
        rows.append(
            (lab, format_number(d.get("precision")), format_number(d.get("recall")),
             format_number(d.get("f1")), format_number(d.get("support")))
        )
    return rows


def decision_facts(run_dir: str | Path, config: dict, metrics: dict | None, words: Nouns = GENERIC) -> dict | None:
    """The run's decision rule when it is not plain argmax: ``{"threshold": float or None, "on":
    "p_<label>", "text": one sentence}`` from ``RUN/decision.json`` (``--decision val_macro_f1``),
    ``metrics["decision_threshold"]`` or ``config["decision"]``; None for an argmax run."""
    path = Path(run_dir) / "decision.json"
    d = {}
    if path.is_file():
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            d = {}
    threshold = d.get("threshold", (metrics or {}).get("decision_threshold"))
    rule = str(config.get("decision") or "argmax")
    if threshold is None and rule == "argmax":
        return None
    if threshold is None:
        return {"threshold": None, "on": "", "rule": rule,
                "text": f"Decision rule {rule}: no threshold could be chosen (two classes with validation samples "
                        "of both are needed); the predicted class is the most probable one."}
    on = str(d.get("on") or "p_" + str(((metrics or {}).get("labels") or ["", "second class"])[-1]))
    text = f"A {words.sample} is predicted {on[2:]} when {on} ≥ {format_number(float(threshold), 2)}"
    if d.get("chosen_by"):
        text += f", the threshold of best {d['chosen_by']}"
        if d.get("val_macro_f1") is not None:
            text += (f" ({format_number(d['val_macro_f1'])}; {format_number(d.get('val_macro_f1_at_0_5'))} at 0.5, "
                     f"{d.get('n_val', '?')} validation {words.samples})")
    return {"threshold": float(threshold), "on": on, "rule": rule, "text": text + "; the test part was not used."}


# --------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable JSON: {exc}", path) from exc


def _read_csv_rows(path: Path) -> list[dict]:
    """Rows of a CSV file as dicts; EphysError naming the file when it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EphysError(f"unreadable CSV: {exc}", path) from exc


def _read_history(path: Path) -> dict[str, list[float]] | None:
    if not path.is_file():
        return None
    rows = _read_csv_rows(path)
    if not rows:
        return None
    cols: dict[str, list[float]] = {}
    for key in rows[0]:
        if key is None:
            continue
        vals = []
        for r in rows:
            try:
                vals.append(float(r.get(key)))
            except (TypeError, ValueError):
                vals.append(float("nan"))
        cols[key.strip()] = vals
    if "epoch" not in cols:
        cols["epoch"] = list(range(len(rows)))
    return cols


def _read_predictions(path: Path, label_names: list[str]):
    """-> (true labels list, probs (n, n_labels) array, labels with p_ columns) or None."""
    if not path.is_file():
        return None
    rows = _read_csv_rows(path)
    if not rows or "true" not in rows[0]:
        return None
    cols = [c for c in rows[0] if c and c.startswith("p_")]
    labels = [c[2:] for c in cols]
    order = [lab for lab in label_names if lab in labels] + [lab for lab in labels if lab not in label_names]
    probs = np.array([[_to_float(r.get("p_" + lab)) for lab in order] for r in rows], dtype=float)
    true = [r.get("true") or "" for r in rows]
    return true, probs, order


def _to_float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _when(run_dir: Path, config: dict) -> str:
    for key in ("created", "date", "finished", "started"):
        val = config.get(key)
        if val:
            if isinstance(val, _dt.datetime):
                return val.strftime("%Y-%m-%d %H:%M")
            try:
                return _dt.datetime.fromisoformat(str(val)).strftime("%Y-%m-%d %H:%M")
            except ValueError:
                return str(val)
    for name in ("model.keras", "config.yaml"):
        p = run_dir / name
        if p.exists():
            return _dt.datetime.fromtimestamp(p.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return "unknown date"


# --------------------------------------------------------------------------------------
# Figures (each returns PNG bytes)
# --------------------------------------------------------------------------------------


_pyplot, _png, _style = pyplot, png_bytes, style_axes


def _fig_learning_curves(hist: dict[str, list[float]]) -> bytes | None:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    panels = [(m, f"val_{m}") for m in ("loss", "accuracy") if m in hist or f"val_{m}" in hist]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.4), squeeze=False, layout="constrained")
    epochs = np.asarray(hist["epoch"], dtype=float) + 1  # history.csv counts from 0; shown from 1
    best = None
    if "val_loss" in hist and np.any(np.isfinite(hist["val_loss"])):
        best = epochs[int(np.nanargmin(hist["val_loss"]))]
    for ax, (tr, va) in zip(axes[0], panels):
        if tr in hist:
            ax.plot(epochs, hist[tr], color=OKABE_ITO[0], lw=2, label="train", marker="o", ms=3)
        if va in hist:
            ax.plot(epochs, hist[va], color=OKABE_ITO[1], lw=2, label="validation", marker="s", ms=3, ls="--")
        if best is not None:
            ax.axvline(best, color="0.5", lw=1, ls=":", label="lowest val loss")
        ax.set_xlabel("epoch (from 1)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(tr, fontsize=11)
        if tr == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        _style(ax)
        ax.legend(frameon=True, framealpha=0.85, edgecolor="none", fontsize=9, loc="best")
    return _png(fig)


def _fig_confusion(cm: np.ndarray, labels: list[str]) -> bytes:
    plt = _pyplot()
    n = len(labels)
    size = max(3.6, 0.55 * n + 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 0.6, size), layout="constrained")
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    fs = 10 if n <= 6 else (8 if n <= 10 else 6)
    for ax, mat, title, fmt in (
        (axes[0], cm.astype(float), "counts", lambda v: f"{int(v)}"),
        (axes[1], norm, "row-normalised (recall on diagonal)", lambda v: f"{v:.2f}"),
    ):
        vmax = mat.max() if mat.size and mat.max() > 0 else 1.0
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=vmax if ax is axes[0] else 1.0)
        for i in range(n):
            for j in range(n):
                v = mat[i, j]
                dark = v > 0.55 * (vmax if ax is axes[0] else 1.0)
                ax.text(j, i, fmt(v), ha="center", va="center", fontsize=fs, color="white" if dark else "#1f2937")
        ax.set_xticks(range(n), labels, rotation=40, ha="right", fontsize=9)
        ax.set_yticks(range(n), labels, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=11)
        cb = fig.colorbar(im, ax=ax, shrink=0.75)
        if ax is axes[0]:
            from matplotlib.ticker import MaxNLocator

            cb.locator = MaxNLocator(integer=True)
            cb.update_ticks()
    return _png(fig)


def _fig_roc(true: list[str], probs: np.ndarray, labels: list[str], what: str = "test samples"):
    """-> (png bytes or None, list of (label, auc or None))."""
    from sklearn.metrics import auc, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.6), layout="constrained")
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="chance")
    aucs = []
    styles = ["-", "--", "-.", ":"]
    drawn = 0
    y_true = np.array(true)
    for k, lab in enumerate(labels):
        pos = y_true == lab
        score = probs[:, k]
        ok = np.isfinite(score)
        if pos[ok].all() or not pos[ok].any():
            aucs.append((lab, None))
            continue
        fpr, tpr, _ = roc_curve(pos[ok], score[ok])
        a = float(auc(fpr, tpr))
        aucs.append((lab, a))
        ax.plot(fpr, tpr, lw=2, color=OKABE_ITO[k % 7], ls=styles[(k // 7) % 4],
                label=f"{lab} (AUC {format_number(a)})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None, aucs
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC, one class vs rest ({what})", fontsize=11)
    ax.set_aspect("equal")
    _style(ax)
    ax.legend(loc="lower right", fontsize=8, frameon=True, framealpha=0.9)
    return _png(fig), aucs



# --------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------


def _data_section(run_dir: Path, config: dict, label_names: list[str], split: dict | None):
    """-> (dict of the data section's content, data_dir or None, manifest or None)."""
    try:
        data_dir = find_dataset(run_dir, config)
        manifest = read_manifest(data_dir)
    except EphysError as exc:
        return {"error": f"Dataset unavailable ({exc.one_line()}); data summary and examples omitted."}, None, None
    check_same_dataset(config.get("dataset_fingerprint"), manifest, run_dir / "config.yaml", data_dir)
    samples = manifest["samples"]
    label_of = {str(s.get("id")): s.get("label") for s in samples}
    totals = Counter(s.get("label") for s in samples)
    names = list(label_names) + sorted({str(k) for k in totals if k is not None and k not in label_names})
    cols = [f"all {nouns(manifest).samples}"]
    split_counts = {}
    if split:
        for part in ("train", "val", "test"):
            split_counts[part] = Counter(label_of.get(i) for i in split[part])
            cols.append(part)
    rows = []
    for name in names + ([None] if totals.get(None) else []):
        row = [name if name is not None else "(unlabelled)", str(totals.get(name, 0))]
        row += [str(split_counts[p].get(name, 0)) for p in split_counts]
        rows.append(row)
    total_row = ["total", str(len(samples))] + [str(len(split[p])) for p in split_counts]
    rows.append(total_row)
    skipped = manifest.get("skipped") or []
    facts = []
    for key, name in (("modality", "modality"), ("sample_shape", "sample shape"), ("axes", "axes"), ("value", "values")):
        if manifest.get(key) is not None:
            v = manifest[key]
            facts.append((name, " × ".join(map(str, v)) if key == "sample_shape" else (", ".join(v) if isinstance(v, list) else str(v))))
    f = manifest.get("frequencies_hz")
    if f:
        facts.append(("frequencies", f"{min(f):g}–{max(f):g} Hz ({len(f)} values)"))
    t = manifest.get("time_s")
    if t and len(t) == 2:
        facts.append(("time axis", f"{t[0]:g} to {t[1]:g} s"))
    if manifest.get("created"):
        facts.append(("prepared", str(manifest["created"])))
    section = {
        "error": None,
        "path": str(data_dir),
        "facts": facts,
        "count_cols": cols,
        "count_rows": rows,
        "has_split": bool(split),
        "n_skipped": len(skipped),
        "skipped": [
            (str(s.get("path", "?")), str(s.get("reason", ""))) if isinstance(s, dict) else (str(s), "")
            for s in skipped[:MAX_SKIPPED_SHOWN]
        ],
    }
    return section, data_dir, manifest


def _comparison(metrics: dict | None, words: Nouns = GENERIC) -> dict | None:
    """Side-by-side rows for a run whose metrics.json holds a ``reference`` (another model's
    test metrics on the same samples, e.g. a published recipe): metric, this run, reference,
    difference."""
    ref = (metrics or {}).get("reference")
    if not isinstance(ref, dict) or not isinstance(ref.get("balanced_accuracy", ref.get("macro_f1")), (int, float)):
        return None
    rows = []
    for key, name in (("balanced_accuracy", "Balanced accuracy"), ("accuracy", "Accuracy"),
                      ("macro_f1", "Macro-F1"), ("roc_auc_ovr", "ROC-AUC (one-vs-rest)"),
                      ("n_test", f"Test {words.samples}")):
        a, b = metrics.get(key), ref.get(key)
        if a is None and b is None:
            continue
        diff = (format_number(a - b) if isinstance(a, (int, float)) and isinstance(b, (int, float))
                and key != "n_test" else "")
        if diff and not diff.startswith("-") and diff != "—":
            diff = "+" + diff
        rows.append((name, format_number(a), format_number(b), diff))
    pa, pb = metrics.get("per_class") or {}, ref.get("per_class") or {}
    for cls in pa:
        ra, rb = (pa.get(cls) or {}).get("recall"), (pb.get(cls) or {}).get("recall")
        diff = format_number(ra - rb) if isinstance(ra, (int, float)) and isinstance(rb, (int, float)) else ""
        if diff and not diff.startswith("-") and diff != "—":
            diff = "+" + diff
        rows.append((f"Recall {cls}", format_number(ra), format_number(rb), diff))
    return {"name": str(ref.get("name") or ref.get("model") or "reference"),
            "description": str(ref.get("description") or ""), "rows": rows,
            "confusion": ref.get("confusion_matrix"), "labels": ref.get("labels")}


def _cv_rows(path: Path) -> list[tuple[str, ...]]:
    """Rows of ``cv_results.csv`` (LightGBM model selection inside the training split)."""
    if not path.is_file():
        return []
    out = []
    for r in _read_csv_rows(path):
        out.append((r.get("stage", ""), r.get("feature_set", ""), r.get("n_features", ""), r.get("imputation", ""),
                    r.get("settings", ""), r.get("class_weight", ""), r.get("cv_balanced_accuracy", ""),
                    r.get("cv_std", ""), "yes" if str(r.get("chosen")) == "True" else ""))
    return out



def _training_facts(run_dir: Path, hist: dict | None) -> list[Card]:
    """Epochs trained, the best epoch (counted from 1, as the console counts) and the best
    validation accuracy, from ``history.csv`` and ``train_summary.json``."""
    cards = []
    summ = {}
    if (run_dir / "train_summary.json").is_file():
        try:
            summ = json.loads((run_dir / "train_summary.json").read_text(encoding="utf-8")) or {}
        except (OSError, ValueError):
            summ = {}
    if hist:
        cards.append(Card("Epochs trained", str(len(hist["epoch"])), small=True))
    best = summ.get("best_epoch")
    if isinstance(best, (int, float)):
        shown = int(best) + (0 if summ.get("epochs_counted_from") == 1 else 1)
        monitor = next((k[5:] for k in summ if k.startswith("best_") and k != "best_epoch"), "")
        cards.append(Card("Best epoch", str(shown), f"lowest {monitor}; its weights are the model's" if monitor else "",
                          small=True))
    if hist:
        va = hist.get("val_accuracy")
        if va and np.any(np.isfinite(va)):
            b = int(np.nanargmax(va))
            cards.append(Card("Best val. accuracy", format_number(va[b]), f"epoch {int(hist['epoch'][b]) + 1}",
                              small=True))
    return cards


def build_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Render the run report as ``RUN/report.html`` and ``RUN/report.md``.

    Parameters
    ----------
    run_dir : path
        A run folder (needs ``config.yaml``; uses ``history.csv``, ``split.json``,
        ``metrics.json``, ``predictions.csv``, ``decision.json``, ``train_summary.json``,
        ``explain/`` and the dataset when present).

    Returns
    -------
    (Path, Path)
        ``RUN/report.html`` (self-contained; figures as base64 PNG data URIs; typically
        0.3–2 MB) and ``RUN/report.md`` (figures as ``report_files/*.png``, written too).

    Raises
    ------
    EphysError
        ``RUN`` is not a folder or has no / an unreadable ``config.yaml``; an existing
        ``metrics.json`` / ``history.csv`` / ``predictions.csv`` / ``split.json`` is unreadable.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    run_id = str(config.get("run_id") or run_dir.name)
    split = read_split(run_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.is_file() else None
    if metrics is not None and not isinstance(metrics, dict):
        raise EphysError("metrics.json is not a mapping", metrics_path)
    label_names = [str(x) for x in (config.get("label_names") or (metrics or {}).get("labels") or [])]

    data, data_dir, manifest = _data_section(run_dir, config, label_names, split)
    if manifest is not None and not label_names:
        label_names = [str(x) for x in manifest.get("label_names") or []]
    mod = None
    if manifest is not None:
        try:
            mod = find_modality(manifest.get("modality"), data_dir / "manifest.json")
        except EphysError as exc:
            data["facts"] = list(data.get("facts") or []) + [("note", exc.one_line())]
    words = nouns(manifest, mod) if manifest is not None else GENERIC
    run_arg = str(run_dir)

    pills = [f"model: {config.get('model', 'unknown')}", _when(run_dir, config)]
    pill_keys = (("backend", "backend"), ("keras_version", "keras"), ("epochs", "epochs"), ("weights", "weights"))
    if not config.get("keras_version"):  # a model not trained by Keras (e.g. trees): no epochs, no weights
        pill_keys = (("backend", "backend"), ("backend_version", str(config.get("backend") or "version")))
    pills += [f"{name}: {config[key]}" for key, name in pill_keys if config.get(key) not in (None, "")]
    page = Page(run_id, kicker="ephys run report", pills=pills, source=str(run_dir))

    # summary
    hist = _read_history(run_dir / "history.csv")
    decision = decision_facts(run_dir, config, metrics, words)
    summary = []
    if metrics:
        cards = []
        for key, name in HEADLINE:
            v = metrics.get(key)
            frac = (float(v) if key != "n_test" and isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) else None)
            cards.append(Card(name.format(samples=words.samples), format_number(v),
                              frac=None if frac is None else min(max(frac, 0.0), 1.0)))
        summary.append(Cards(cards))
    else:
        summary.append(Notice("Test metrics: not evaluated yet — run", f"ephys evaluate {run_arg}"))
    comparison = _comparison(metrics, words)
    if comparison:
        summary.append(Table(comparison["rows"], ["test metric", "this model", comparison["name"], "difference"],
                             title=f"This model vs {comparison['name']}", caption=comparison["description"]))
    facts = _training_facts(run_dir, hist)
    if decision:
        facts.append(Card("Decision threshold", "argmax" if decision["threshold"] is None
                          else format_number(decision["threshold"], 2),
                          f"on {decision['on']}, chosen on the validation part" if decision["on"] else decision["rule"],
                          small=True))
    if facts:
        summary.append(Cards(facts))
    page.section("Summary", *summary)

    # data
    if data.get("error"):
        page.section("Data", Notice(data["error"]))
    else:
        skipped = (Table(data["skipped"], ["file", "reason"], title=f"Skipped files ({data['n_skipped']})",
                         scroll=True,
                         caption=(f"… and {data['n_skipped'] - len(data['skipped'])} more (see manifest.json)."
                                  if data["n_skipped"] > len(data["skipped"]) else ""))
                   if data["skipped"] else Text("Skipped files: none, every input file was used.", muted=True))
        page.section("Data",
                     Table([("dataset", data["path"])] + list(data["facts"]), kv=True),
                     Table(data["count_rows"], ["class", *data["count_cols"]], total=True,
                           title=f"{words.samples.capitalize()} per class and split",
                           caption="" if data["has_split"] else
                           "No split.json in the run folder: split counts unavailable."),
                     skipped)

    # training
    training = []
    lc = _fig_learning_curves(hist) if hist else None
    cv_rows = _cv_rows(run_dir / "cv_results.csv")
    if lc:
        training.append(Fig(lc, "learning curves", f"Loss and accuracy per epoch (counted from 1) on the training and "
                            f"validation {words.samples} (history.csv). Dotted line: the epoch with the lowest "
                            "validation loss.", "learning_curves"))
    elif not cv_rows:
        training.append(Notice("No history.csv in the run folder."))
    if cv_rows:
        training.append(Table([list(r) for r in cv_rows],
                              ["stage", "feature set", "features", "imputation", "settings", "class weight",
                               "CV bal. acc.", "± sd", "chosen"],
                              title="Model selection: cross-validation inside the training split",
                              caption=f"Balanced accuracy over stratified, grouped folds of the training "
                                      f"{words.samples} only; the test {words.samples} were not used. Stage 1: "
                                      "feature set × imputation; stage 2: settings × class weighting.",
                              highlight={k for k, r in enumerate(cv_rows) if r[8]}, scroll=True))
    page.section("Training", *training)

    # test metrics
    tm = []
    if not metrics:
        tm.append(Notice("Not evaluated yet — run", f"ephys evaluate {run_arg}"))
    else:
        tm += [Notice(f"Warning: {w}") for w in (metrics.get("warnings") or [])]
        if decision:
            tm.append(Text(decision["text"]))
        tm.append(Grid([Table(metrics_table_rows(metrics, words), title="Headline", numeric=[False, True]),
                        Table(per_class_rows(metrics), ["class", "precision", "recall", "F1", "support"],
                              title="Per class", numeric=[False, True, True, True, True])]))
        labels = [str(x) for x in (metrics.get("labels") or label_names)]
        cm = metrics.get("confusion_matrix")
        if cm:
            cm_arr = np.asarray(cm, dtype=float)
            if cm_arr.ndim == 2 and cm_arr.shape == (len(labels), len(labels)):
                tm.append(Fig(_fig_confusion(cm_arr, labels), "confusion matrix",
                              f"Confusion matrix on the test {words.samples}: rows are true classes, columns "
                              "predictions. Right: each row divided by its total.", "confusion"))
        preds = _read_predictions(run_dir / "predictions.csv", labels)
        if preds is None:
            tm.append(Notice("No predictions.csv (or no p_<label> columns): ROC curves unavailable."))
        else:
            png, aucs = _fig_roc(*preds, what=f"test {words.samples}")
            missing = [lab for lab, a in aucs if a is None]
            if png:
                tm.append(Fig(png, "ROC curves", "One-vs-rest ROC curves from predictions.csv; AUC in the legend."
                              + (f" No curve for {', '.join(missing)} (no positive or no negative test "
                                 f"{words.sample})." if missing else ""), "roc", max_width=560))
            else:
                tm.append(Notice(f"ROC curves need test {words.samples} of at least two classes."))
    page.section("Test metrics", *tm)

    # the modality's sections
    ctx = ReportContext(run_dir=run_dir, config=config, data_dir=data_dir, manifest=manifest, split=split,
                        label_names=label_names, metrics=metrics)
    examples_note = "Dataset unavailable: no examples." if mod is None else f"No example figure is drawn for {mod.name} datasets."
    hook = mod.hook("examples") if mod is not None else None
    got = hook(ctx) if hook is not None else None
    if isinstance(got, Figure):
        page.section(mod.examples_title, Fig(got.png, got.alt, got.caption, "examples"), id="examples")
    else:
        page.section(mod.examples_title if mod is not None else "Examples", Notice(str(got) if got else examples_note),
                     id="examples")
    for sec in ((mod.hook("sections")(ctx) or []) if mod is not None and mod.sections else []):
        page.section(sec.title, *hook_blocks(sec))
    from .predictions import step_of

    step = step_of(manifest)  # the sections of the step that prepared the run's dataset
    for sec in ((step.hook("sections")(ctx) or []) if step is not None and step.sections else []):
        page.section(sec.title, *hook_blocks(sec))
    explanation = mod.hook("explanation")(ctx) if mod is not None and mod.explanation else None
    if explanation is not None:
        page.section(explanation.title, *hook_blocks(explanation), id="explanations")
    else:
        page.section("Explanations", Notice("Not explained yet — run", f"ephys explain {run_arg}"), id="explanations")
    page.section("Configuration", Params(config))
    html_path = page.write(run_dir, md=True)
    return html_path, run_dir / "report.md"


# --------------------------------------------------------------------------------------
# Cross-validation (``ephys aggregate``): pooled held-out predictions of every fold
# --------------------------------------------------------------------------------------


def build_cv_report(out: str | Path, metrics: dict, true: list[str], proba: np.ndarray,
                    label_names: list[str], datasets=()) -> Path:
    """Render ``OUT/report.html`` for pooled cross-validation results (:func:`ephys.pipelines.core.
    crossval.aggregate`): headline cards beside the majority-class baseline, confusion matrix and
    ROC of the pooled held-out predictions, per-fold and per-group tables; self-contained.

    ``datasets``: the cross-validated dataset folders (their nouns name samples and groups)."""
    words = next((w for w in (_dataset_words(d) for d in datasets) if w is not GENERIC), GENERIC)
    f = format_number
    page = Page(f"Cross-validation: {metrics.get('model')}", kicker="ephys cross-validation report",
                pills=[f"model: {metrics.get('model')}", f"scheme: {metrics.get('scheme')}",
                       f"{metrics.get('n_folds_done')} of {metrics.get('n_folds_expected')} folds"],
                source=str(out))
    cards = [Card(name, f(metrics.get(key)), frac=metrics.get(key) if isinstance(metrics.get(key), float) else None)
             for key, name in (("accuracy", "Accuracy"),
                               ("majority_baseline_accuracy", "Majority-class baseline"),
                               ("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro F1"),
                               ("roc_auc_ovr", "ROC AUC (one-vs-rest)"))]
    cards.append(Card(f"Held-out {words.samples}", f(metrics.get("n_test"))))
    summary = [Cards(cards),
               Text(f"{metrics.get('scheme')} cross-validation: {metrics.get('n_folds_done')} of "
                    f"{metrics.get('n_folds_expected')} folds finished; every number is computed on held-out "
                    f"{words.samples} only, pooled over the folds. The majority-class baseline predicts each fold's "
                    "training-side majority class.")]
    if not metrics.get("complete", True):
        summary.insert(0, Notice(f"Incomplete: no finished run for {', '.join(metrics.get('missing_folds') or [])}. "
                                 "These numbers cover only the folds that finished."))
    page.section("Summary", *summary)
    figs = [Fig(_fig_confusion(np.asarray(metrics["confusion_matrix"]), label_names),
                "confusion matrix of the pooled held-out predictions",
                "Rows: true classes; columns: predictions. Right: each row divided by its total.", "confusion")]
    roc, _ = _fig_roc(true, proba, label_names, what=f"held-out {words.samples}")
    if roc is not None:
        figs.append(Fig(roc, "ROC of the pooled held-out predictions", "One-vs-rest ROC; AUC in the legend.", "roc"))
    page.section("Pooled held-out predictions", Grid(figs))
    folds = [[r.get("fold"), ", ".join(r.get("held_out") or []), r.get("n_test"), f(r.get("accuracy")),
              f(r.get("majority_baseline_accuracy")), f(r.get("balanced_accuracy")), f(r.get("macro_f1")),
              f(r.get("roc_auc_ovr"))] for r in metrics.get("per_fold", [])]
    page.section("Per fold", Table(folds, ["fold", "held out", "n", "accuracy", "majority baseline",
                                           "balanced accuracy", "macro F1", "ROC AUC"], scroll=len(folds) > 16))
    groups = [[g, r["n"], f(r["accuracy"]), f(r["majority_baseline_accuracy"]), f(r["balanced_accuracy"]),
               f(r["roc_auc_ovr"])] for g, r in (metrics.get("per_participant") or {}).items()]
    page.section(f"Per {words.group}", Table(groups, [words.group, "n", "accuracy", "majority baseline",
                                                       "balanced accuracy", "ROC AUC"], scroll=len(groups) > 16))
    if metrics.get("per_dataset"):
        rows = [[d, r["n"], f(r["accuracy"]), f(r["majority_baseline_accuracy"]), f(r["balanced_accuracy"]),
                 f(r["roc_auc_ovr"])] for d, r in metrics["per_dataset"].items()]
        page.section("Per dataset", Table(rows, ["dataset", "n", "accuracy", "majority baseline", "balanced accuracy",
                                                 "ROC AUC"]))
    page.section("Raw numbers", Details.json("metrics.json", metrics))
    return page.write(out)


def _dataset_words(data_dir) -> Nouns:
    from .nouns import dataset_nouns

    return dataset_nouns(data_dir)
