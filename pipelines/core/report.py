"""Human-readable run report (``ephys report RUN``).

:func:`build_report` writes two renderings of the same content:

``RUN/report.html``
    One self-contained file: inline CSS, every figure embedded as a base64 PNG data URI,
    no JavaScript, no external assets.
``RUN/report.md``
    Markdown whose figures are PNG files under ``RUN/report_files/`` (relative links).

Both are rendered from jinja2 templates kept as strings in this module (no package data).
Every metric is read from ``RUN/metrics.json`` and formatted by :func:`format_number`
(3 decimals for floats, integers as integers, ``n/a`` for null), through
:func:`metrics_table_rows` / :func:`per_class_rows`, so the HTML and the Markdown show the
same strings.

Sections: title (run id, model, date); headline metrics; data (dataset, cells per class and
per split, skipped files); learning curves (``history.csv``); test metrics (per-class table,
confusion matrix counts + row-normalised, one-vs-rest ROC curves from ``predictions.csv``);
examples and explanations drawn by the dataset's modality (its report hooks, see
:class:`ephys.pipelines.core.registry.Modality`), extra sections it adds; configuration table.
Missing optional inputs (metrics.json, predictions.csv, history.csv, explain/, the dataset)
produce a one-line note in their section instead of an error.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import io
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_text
from .errors import EphysError
from .registry import Figure, ReportContext, Section, modality as find_modality
from .datasets import check_same_dataset
from .runfolder import find_dataset, load_run_config, read_manifest, read_split

__all__ = ["build_report", "metrics_table_rows", "per_class_rows", "format_number", "pyplot", "png_bytes",
           "style_axes", "OKABE_ITO"]

# Okabe–Ito colour-blind-safe palette (black last; it doubles as the chance line colour).
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
HEADLINE = [
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro F1"),
    ("roc_auc_ovr", "ROC AUC (one-vs-rest)"),
    ("n_test", "Test cells"),
]
NOT_EVALUATED = "not evaluated yet — run `ephys evaluate RUN`"
NOT_EXPLAINED = "not explained yet — run `ephys explain RUN`"
FIG_DPI = 100
MAX_SKIPPED_SHOWN = 50


# --------------------------------------------------------------------------------------
# Number formatting (the single source of truth for both renderings)
# --------------------------------------------------------------------------------------


def format_number(value, decimals: int = 3) -> str:
    """Format a metric for display.

    ``None``/NaN -> ``"n/a"``; bool -> ``"yes"``/``"no"``; integers (and floats that are
    whole numbers only when ``decimals`` is 0) -> ``"12"``; other numbers -> fixed
    ``decimals`` (``0.8125`` -> ``"0.813"``); anything else -> ``str(value)``.
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return "n/a"
        return f"{float(value):.{decimals}f}"
    return str(value)


def metrics_table_rows(metrics: dict | None) -> list[tuple[str, str]]:
    """Headline metrics as (display name, formatted value) rows, in a fixed order.

    Rows: Accuracy, Balanced accuracy, Macro F1, ROC AUC (one-vs-rest), Test cells — values
    from the flat keys ``accuracy, balanced_accuracy, macro_f1, roc_auc_ovr, n_test`` of
    ``metrics.json`` formatted by :func:`format_number` (missing/null -> ``"n/a"``).
    Returns [] when ``metrics`` is None (run not evaluated).
    """
    if not metrics:
        return []
    return [(name, format_number(metrics.get(key))) for key, name in HEADLINE]


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


def _flatten(d, prefix="") -> list[tuple[str, str]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            if isinstance(v, (list, tuple)):
                text = ", ".join(str(x) for x in v)
            elif isinstance(v, float):
                text = f"{v:g}"
            elif v is None:
                text = "null"
            else:
                text = str(v)
            if len(text) > 300:
                text = text[:297] + "…"
            out.append((key, text))
    return out


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig, dpi: int = FIG_DPI) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _style(ax):
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


#: figure helpers shared with the pipelines' report hooks
pyplot, png_bytes, style_axes = _pyplot, _png, _style


def _fig_learning_curves(hist: dict[str, list[float]]) -> bytes | None:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    panels = [(m, f"val_{m}") for m in ("loss", "accuracy") if m in hist or f"val_{m}" in hist]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.4), squeeze=False, layout="constrained")
    epochs = np.asarray(hist["epoch"], dtype=float)
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
        ax.set_xlabel("epoch")
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


def _fig_roc(true: list[str], probs: np.ndarray, labels: list[str]):
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
    ax.set_title("ROC, one class vs rest (test cells)", fontsize=11)
    ax.set_aspect("equal")
    _style(ax)
    ax.legend(loc="lower right", fontsize=8, frameon=True, framealpha=0.9)
    return _png(fig), aucs


# --------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------

_CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f5f6f8;--card:#fff;--accent:#0072B2;--warn:#b45309}
*{box-sizing:border-box}
body{margin:0;font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,"DejaVu Sans","Liberation Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{background:#1f2937;color:#f9fafb;padding:28px 0 22px}
.wrap{max-width:1120px;margin:0 auto;padding:0 24px}
header .kicker{text-transform:uppercase;letter-spacing:.08em;font-size:12px;color:#9ca3af}
header h1{margin:4px 0 8px;font-size:28px;font-weight:650;word-break:break-all}
header .meta{display:flex;flex-wrap:wrap;gap:8px}
.pill{display:inline-block;background:#374151;color:#e5e7eb;border-radius:999px;padding:2px 12px;font-size:13px}
nav{background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}
nav .wrap{display:flex;flex-wrap:wrap;gap:18px;padding-top:10px;padding-bottom:10px}
nav a{color:var(--muted);text-decoration:none;font-size:14px}
nav a:hover{color:var(--accent)}
section{margin:28px 0}
h2{font-size:20px;margin:0 0 12px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:18px 0 8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;box-shadow:0 1px 2px rgba(0,0,0,.04);margin-bottom:16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:14px;margin-bottom:16px}
.metric .name{color:var(--muted);font-size:13.5px;font-weight:500}
.metric .value{font-size:30px;font-weight:650;font-variant-numeric:tabular-nums;margin:2px 0 6px}
.bar{height:6px;background:#eef0f3;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%;background:var(--accent)}
.notice{border-left:4px solid var(--warn);background:#fffbeb;padding:12px 16px;border-radius:6px;margin:8px 0 16px}
.notice code,.card code{background:#f3f4f6;padding:1px 5px;border-radius:4px;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600;color:#374151}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}
tr.total td{font-weight:600;border-top:2px solid #d1d5db}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
figure{margin:0}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:var(--muted);font-size:13px;margin-top:6px}
.muted{color:var(--muted)}
.kv td:first-child{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;color:#374151;white-space:nowrap}
.kv td:last-child{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;word-break:break-word}
.scroll{max-height:320px;overflow:auto}
footer{color:var(--muted);font-size:13px;padding:24px 0 40px}
@media print{nav{display:none}header{background:#fff;color:#000}.card{box-shadow:none}}
"""

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ephys report — {{ run_id }}</title>
<style>{{ css|safe }}</style></head>
<body>
<header><div class="wrap">
<div class="kicker">ephys run report</div>
<h1>{{ run_id }}</h1>
<div class="meta">
<span class="pill">model: {{ model }}</span><span class="pill">{{ date }}</span>
{% for p in pills %}<span class="pill">{{ p }}</span>{% endfor %}
</div></div></header>
<nav><div class="wrap">
<a href="#summary">Summary</a><a href="#data">Data</a><a href="#training">Training</a>
<a href="#metrics">Test metrics</a><a href="#examples">Examples</a>{% for sec in extra_sections %}<a href="#{{ sec.id }}">{{ sec.title }}</a>{% endfor %}<a href="#explanations">{{ explain_title }}</a><a href="#config">Configuration</a>
</div></nav>
<main class="wrap">

<section id="summary"><h2>Summary</h2>
{% if headline %}
<div class="cards">
{% for name, value, frac in headline %}<div class="card metric"><div class="name">{{ name }}</div><div class="value">{{ value }}</div>
{% if frac is not none %}<div class="bar"><span style="width:{{ '%.1f'|format(100*frac) }}%"></span></div>{% endif %}</div>
{% endfor %}</div>
{% else %}
<div class="notice">Test metrics: not evaluated yet — run <code>ephys evaluate {{ run_arg }}</code></div>
{% endif %}
{% if comparison %}<div class="card"><h3 style="margin-top:0">This model vs {{ comparison.name }}</h3>
{% if comparison.description %}<p class="muted">{{ comparison.description }}</p>{% endif %}
<table><thead><tr><th>test metric</th><th class="num">this model</th><th class="num">{{ comparison.name }}</th><th class="num">difference</th></tr></thead><tbody>
{% for name, a, b, d in comparison.rows %}<tr><td>{{ name }}</td><td class="num">{{ a }}</td><td class="num">{{ b }}</td><td class="num">{{ d }}</td></tr>{% endfor %}
</tbody></table></div>{% endif %}
{% if training_facts %}<div class="cards">
{% for name, value in training_facts %}<div class="card metric"><div class="name">{{ name }}</div><div class="value" style="font-size:22px">{{ value }}</div></div>
{% endfor %}</div>{% endif %}
</section>

<section id="data"><h2>Data</h2>
{% if data.error %}<div class="notice">{{ data.error }}</div>{% else %}
<div class="card">
<table class="kv"><tbody>
<tr><td>dataset</td><td>{{ data.path }}</td></tr>
{% for k, v in data.facts %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
</tbody></table></div>
<div class="card"><h3 style="margin-top:0">Cells per class and split</h3>
<table><thead><tr><th>class</th>{% for c in data.count_cols %}<th class="num">{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in data.count_rows %}<tr{% if loop.last %} class="total"{% endif %}><td>{{ row[0] }}</td>{% for v in row[1:] %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{% if not data.has_split %}<p class="muted">No split.json in the run folder: split counts unavailable.</p>{% endif %}
</div>
<div class="card"><h3 style="margin-top:0">Skipped files ({{ data.n_skipped }})</h3>
{% if data.skipped %}<div class="scroll"><table><thead><tr><th>file</th><th>reason</th></tr></thead><tbody>
{% for p, r in data.skipped %}<tr><td>{{ p }}</td><td>{{ r }}</td></tr>{% endfor %}
</tbody></table></div>{% if data.n_skipped > data.skipped|length %}<p class="muted">… and {{ data.n_skipped - data.skipped|length }} more (see manifest.json).</p>{% endif %}
{% else %}<p class="muted">None: every input file was used.</p>{% endif %}
</div>{% endif %}
</section>

<section id="training"><h2>Training</h2>
{% if figs.learning_curves %}<div class="card"><figure><img alt="learning curves" src="{{ figs.learning_curves }}">
<figcaption>Loss and accuracy per epoch on the training and validation cells (history.csv). Dotted line: epoch with the lowest validation loss.</figcaption></figure></div>
{% elif not cv_rows %}<div class="notice">No history.csv in the run folder.</div>{% endif %}
{% if cv_rows %}<div class="card"><h3 style="margin-top:0">Model selection: cross-validation inside the training split</h3>
<p class="muted">Balanced accuracy over stratified, grouped folds of the training cells only; the test cells were not used. Stage 1: feature set × imputation; stage 2: settings × class weighting.</p>
<div class="scroll"><table><thead><tr><th>stage</th><th>feature set</th><th class="num">features</th><th>imputation</th><th>settings</th><th>class weight</th><th class="num">CV bal. acc.</th><th class="num">± sd</th><th>chosen</th></tr></thead><tbody>
{% for r in cv_rows %}<tr{% if r[8] %} class="total"{% endif %}>{% for v in r[:2] %}<td>{{ v }}</td>{% endfor %}<td class="num">{{ r[2] }}</td>{% for v in r[3:6] %}<td>{{ v }}</td>{% endfor %}<td class="num">{{ r[6] }}</td><td class="num">{{ r[7] }}</td><td>{{ r[8] }}</td></tr>{% endfor %}
</tbody></table></div></div>{% endif %}
</section>

<section id="metrics"><h2>Test metrics</h2>
{% if not evaluated %}<div class="notice">Not evaluated yet — run <code>ephys evaluate {{ run_arg }}</code></div>{% else %}
{% for w in metric_warnings %}<div class="notice">Warning: {{ w }}</div>
{% endfor %}<div class="grid2">
<div class="card"><h3 style="margin-top:0">Headline</h3><table><tbody>
{% for name, value in metric_rows %}<tr><td>{{ name }}</td><td class="num">{{ value }}</td></tr>{% endfor %}
</tbody></table></div>
<div class="card"><h3 style="margin-top:0">Per class</h3><table><thead><tr><th>class</th><th class="num">precision</th><th class="num">recall</th><th class="num">F1</th><th class="num">support</th></tr></thead><tbody>
{% for lab, p, r, f, s in class_rows %}<tr><td>{{ lab }}</td><td class="num">{{ p }}</td><td class="num">{{ r }}</td><td class="num">{{ f }}</td><td class="num">{{ s }}</td></tr>{% endfor %}
</tbody></table></div>
</div>
{% if figs.confusion %}<div class="card"><figure><img alt="confusion matrix" src="{{ figs.confusion }}">
<figcaption>Confusion matrix on the test cells: rows are true classes, columns predictions. Right: each row divided by its total.</figcaption></figure></div>{% endif %}
{% if figs.roc %}<div class="card"><figure><img alt="ROC curves" src="{{ figs.roc }}" style="max-width:560px">
<figcaption>One-vs-rest ROC curves from predictions.csv; AUC in the legend.{% if roc_missing %} No curve for {{ roc_missing|join(', ') }} (no positive or no negative test cell).{% endif %}</figcaption></figure></div>
{% elif roc_note %}<div class="notice">{{ roc_note }}</div>{% endif %}
{% endif %}
</section>

<section id="examples"><h2>{{ examples_title }}</h2>
{% if figs.examples %}<div class="card"><figure><img alt="{{ examples_alt }}" src="{{ figs.examples }}">
<figcaption>{{ examples_caption }}</figcaption></figure></div>
{% else %}<div class="notice">{{ examples_note }}</div>{% endif %}
</section>

{% for sec in extra_sections %}<section id="{{ sec.id }}"><h2>{{ sec.title }}</h2>
{% if sec.text %}<p>{{ sec.text }}</p>{% endif %}
{% for f in sec.figures %}<div class="card"><figure><img alt="{{ f.alt }}" src="{{ figs[f.key] }}">
{% if f.caption %}<figcaption>{{ f.caption }}</figcaption>{% endif %}</figure></div>{% endfor %}
{% if sec.table %}<div class="card scroll"><table><thead><tr>{% for h in sec.table[0] %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for row in sec.table[1:] %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>{% endif %}
</section>
{% endfor %}
<section id="explanations"><h2>{{ explain_title }}</h2>
{% if explanation %}
{% if explanation.text %}<p>{{ explanation.text }}</p>{% endif %}
{% for f in explanation.figures %}<div class="card"><figure><img alt="{{ f.alt }}" src="{{ figs[f.key] }}">
{% if f.caption %}<figcaption>{{ f.caption }}</figcaption>{% endif %}</figure></div>{% endfor %}
{% if explanation.table %}<div class="card"><table><thead><tr>{% for h in explanation.table[0] %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for row in explanation.table[1:] %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>{% endif %}
{% else %}<div class="notice">Not explained yet — run <code>ephys explain {{ run_arg }}</code></div>{% endif %}
</section>

<section id="config"><h2>Configuration</h2>
<div class="card"><table class="kv"><thead><tr><th>key</th><th>value</th></tr></thead><tbody>
{% for k, v in config_rows %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
</tbody></table></div>
</section>
</main>
<footer><div class="wrap">Generated by ephys {{ ephys_version }} on {{ generated }} from {{ run_dir }}.</div></footer>
</body></html>
"""

_MD = """# ephys run report — {{ run_id|md }}

**Model:** {{ model|md }} · **Date:** {{ date }}{% for p in pills %} · {{ p|md }}{% endfor %}

## Summary

{% if metric_rows -%}
| metric | value |
|---|---:|
{% for name, value in metric_rows -%}
| {{ name }} | {{ value }} |
{% endfor %}
{%- else -%}
Test metrics: not evaluated yet — run `ephys evaluate {{ run_arg }}`
{%- endif %}
{% if training_facts %}
{% for name, value in training_facts -%}
- {{ name }}: {{ value }}
{% endfor %}{% endif %}
## Data
{% if data.error %}
{{ data.error|md }}
{% else %}
- dataset: `{{ data.path }}`
{% for k, v in data.facts -%}
- {{ k }}: {{ v|md }}
{% endfor %}
| class |{% for c in data.count_cols %} {{ c }} |{% endfor %}
|---|{% for c in data.count_cols %}---:|{% endfor %}
{% for row in data.count_rows -%}
| {{ row[0]|md }} |{% for v in row[1:] %} {{ v }} |{% endfor %}
{% endfor %}
**Skipped files ({{ data.n_skipped }})**{% if not data.skipped %}: none.{% endif %}
{% if data.skipped %}
| file | reason |
|---|---|
{% for p, r in data.skipped -%}
| {{ p|md }} | {{ r|md }} |
{% endfor %}{% if data.n_skipped > data.skipped|length %}
… and {{ data.n_skipped - data.skipped|length }} more (see manifest.json).
{% endif %}{% endif %}{% endif %}
{% if comparison %}
### This model vs {{ comparison.name|md }}
{% if comparison.description %}
{{ comparison.description|md }}
{% endif %}
| test metric | this model | {{ comparison.name|md }} | difference |
|---|---:|---:|---:|
{% for name, a, b, d in comparison.rows -%}
| {{ name }} | {{ a }} | {{ b }} | {{ d }} |
{% endfor %}
{% endif %}
## Training
{% if files.learning_curves %}
![learning curves]({{ files.learning_curves }})
{% elif not cv_rows %}
No history.csv in the run folder.
{% endif %}
{% if cv_rows %}
Model selection: cross-validation inside the training split (balanced accuracy; test cells unused).

| stage | feature set | features | imputation | settings | class weight | CV bal. acc. | ± sd | chosen |
|---|---|---:|---|---|---|---:|---:|---|
{% for r in cv_rows -%}
| {{ r|join(' | ') }} |
{% endfor %}
{% endif %}
## Test metrics
{% if not evaluated %}
Not evaluated yet — run `ephys evaluate {{ run_arg }}`
{% else %}
{% for w in metric_warnings %}**Warning:** {{ w|md }}

{% endfor %}| class | precision | recall | F1 | support |
|---|---:|---:|---:|---:|
{% for lab, p, r, f, s in class_rows -%}
| {{ lab|md }} | {{ p }} | {{ r }} | {{ f }} | {{ s }} |
{% endfor %}
{% if files.confusion %}![confusion matrix]({{ files.confusion }})
{% endif %}
{% if files.roc %}![ROC curves]({{ files.roc }})
{% elif roc_note %}{{ roc_note }}
{% endif %}{% endif %}
## {{ examples_title }}
{% if files.examples %}
![{{ examples_alt }}]({{ files.examples }})

{{ examples_caption }}
{% else %}
{{ examples_note }}
{% endif %}
{% for sec in extra_sections %}## {{ sec.title }}
{% if sec.text %}
{{ sec.text }}
{% endif %}
{% for f in sec.figures %}
![{{ f.alt }}]({{ files[f.key] }})
{% if f.caption %}
{{ f.caption }}
{% endif %}{% endfor %}
{% if sec.table %}
| {{ sec.table[0]|join(' | ') }} |
|{% for h in sec.table[0] %}---|{% endfor %}
{% for row in sec.table[1:] -%}
| {% for c in row %}{{ c|md }} | {% endfor %}
{% endfor %}{% endif %}
{% endfor %}
## {{ explain_title }}
{% if explanation %}
{% if explanation.text %}{{ explanation.text }}
{% endif %}
{% for f in explanation.figures %}
![{{ f.alt }}]({{ files[f.key] }})
{% endfor %}
{% if explanation.table %}
| {{ explanation.table[0]|join(' | ') }} |
|{% for h in explanation.table[0] %}---|{% endfor %}
{% for row in explanation.table[1:] -%}
| {% for c in row %}{{ c|md }} | {% endfor %}
{% endfor %}{% endif %}
{% else %}
Not explained yet — run `ephys explain {{ run_arg }}`
{% endif %}
## Configuration

| key | value |
|---|---|
{% for k, v in config_rows -%}
| `{{ k }}` | {{ v|md }} |
{% endfor %}
---
Generated by ephys {{ ephys_version }} on {{ generated }}.
"""


def _md_escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _environments():
    import jinja2

    html = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    md = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    md.filters["md"] = _md_escape
    return html.from_string(_HTML), md.from_string(_MD)


# --------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------


def _data_section(run_dir: Path, config: dict, label_names: list[str], split: dict | None):
    """-> (template dict, data_dir or None, manifest or None)."""
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
    cols = ["all cells"]
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
        facts.append(("frequencies", f"{min(f):g}–{max(f):g} Hz ({len(f)} scales, log-spaced)"))
    t = manifest.get("time_s")
    if t and len(t) == 2:
        facts.append(("time window", f"{t[0]:g} to {t[1]:g} s from stimulus onset"))
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


def _comparison(metrics: dict | None) -> dict | None:
    """Side-by-side rows for a run whose metrics.json holds a ``reference`` (another model's
    test metrics on the same cells, e.g. the plain STS recipe): metric, this run, reference,
    difference."""
    ref = (metrics or {}).get("reference")
    if not isinstance(ref, dict) or not isinstance(ref.get("balanced_accuracy", ref.get("macro_f1")), (int, float)):
        return None
    rows = []
    for key, name in (("balanced_accuracy", "Balanced accuracy"), ("accuracy", "Accuracy"),
                      ("macro_f1", "Macro-F1"), ("roc_auc_ovr", "ROC-AUC (one-vs-rest)"), ("n_test", "Test cells")):
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


def build_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Render the run report as ``RUN/report.html`` and ``RUN/report.md``.

    Parameters
    ----------
    run_dir : path
        A run folder (needs ``config.yaml``; uses ``history.csv``, ``split.json``,
        ``metrics.json``, ``predictions.csv``, ``explain/`` and the dataset when present).

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

    figs: dict[str, bytes] = {}
    hist = _read_history(run_dir / "history.csv")
    training_facts = []
    if hist:
        lc = _fig_learning_curves(hist)
        if lc:
            figs["learning_curves"] = lc
        training_facts.append(("Epochs trained", str(len(hist["epoch"]))))
        va = hist.get("val_accuracy")
        if va and np.any(np.isfinite(va)):
            b = int(np.nanargmax(va))
            training_facts.append(("Best val. accuracy", f"{format_number(va[b])} (epoch {hist['epoch'][b]:g})"))

    roc_note, roc_missing = None, []
    if metrics:
        labels = [str(x) for x in (metrics.get("labels") or label_names)]
        cm = metrics.get("confusion_matrix")
        if cm:
            cm_arr = np.asarray(cm, dtype=float)
            if cm_arr.ndim == 2 and cm_arr.shape == (len(labels), len(labels)):
                figs["confusion"] = _fig_confusion(cm_arr, labels)
        preds = _read_predictions(run_dir / "predictions.csv", labels)
        if preds is None:
            roc_note = "No predictions.csv (or no p_<label> columns): ROC curves unavailable."
        else:
            png, aucs = _fig_roc(*preds)
            roc_missing = [lab for lab, a in aucs if a is None]
            if png:
                figs["roc"] = png
            else:
                roc_note = "ROC curves need test cells of at least two classes."

    ctx = ReportContext(run_dir=run_dir, config=config, data_dir=data_dir, manifest=manifest, split=split,
                        label_names=label_names, metrics=metrics)
    mod = None
    if manifest is not None:
        try:
            mod = find_modality(manifest.get("modality"), data_dir / "manifest.json")
        except EphysError as exc:
            data["facts"] = list(data.get("facts") or []) + [("note", exc.one_line())]
    examples_note, examples_caption, examples_alt = "Dataset unavailable: no examples.", "", "examples"
    examples_title = mod.examples_title if mod is not None else "Examples"
    hook = mod.hook("examples") if mod is not None else None
    if mod is not None:
        examples_note = f"No example figure is drawn for {mod.name} datasets."
    if hook is not None:
        got = hook(ctx)
        if isinstance(got, Figure):
            figs["examples"] = got.png
            examples_caption, examples_alt = got.caption, got.alt
        elif got:
            examples_note = str(got)

    explanation = mod.hook("explanation")(ctx) if mod is not None and mod.explanation else None
    explain_figs = []
    if explanation is not None:
        for k, f in enumerate(explanation.figures):
            key = f.key or f"explain_{k}"
            figs[key] = f.png
            explain_figs.append({"key": key, "alt": f.alt, "caption": f.caption})
    extra_sections = []
    for k, sec in enumerate((mod.hook("sections")(ctx) or []) if mod is not None and mod.sections else []):
        fl = []
        for j, f in enumerate(sec.figures):
            key = f.key or f"section{k}_{j}"
            figs[key] = f.png
            fl.append({"key": key, "alt": f.alt, "caption": f.caption})
        extra_sections.append({"id": f"extra{k}", "title": sec.title, "text": sec.text, "figures": fl,
                               "table": sec.table})
    comparison = _comparison(metrics)
    cv_rows = _cv_rows(run_dir / "cv_results.csv")

    # write figures (md) and data URIs (html)
    files_dir = run_dir / "report_files"
    files_dir.mkdir(parents=True, exist_ok=True)
    known = list(dict.fromkeys(["learning_curves", "confusion", "roc", "examples", *figs]))
    for stale in files_dir.glob("*.png"):
        if stale.stem not in known:
            stale.unlink()  # a figure of an earlier render that this one does not have
    files, uris = {}, {}
    for key in known:
        target_path = files_dir / f"{key}.png"
        if key in figs:
            with atomic_path(target_path, suffix=".png") as tmp:
                tmp.write_bytes(figs[key])
            files[key] = f"report_files/{key}.png"
            uris[key] = "data:image/png;base64," + base64.b64encode(figs[key]).decode("ascii")
        else:
            if target_path.exists():
                target_path.unlink()  # stale figure from an earlier render
            files[key] = None
            uris[key] = None

    headline = []
    if metrics:
        for key, name in HEADLINE:
            v = metrics.get(key)
            frac = float(v) if key != "n_test" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
            headline.append((name, format_number(v), None if frac is None else min(max(frac, 0.0), 1.0)))

    pills = []
    pill_keys = (("backend", "backend"), ("keras_version", "keras"), ("epochs", "epochs"), ("weights", "weights"))
    if not config.get("keras_version"):  # a model not trained by Keras (e.g. trees): no epochs, no weights
        pill_keys = (("backend", "backend"), ("backend_version", str(config.get("backend") or "version")))
    for key, name in pill_keys:
        if config.get(key) not in (None, ""):
            pills.append(f"{name}: {config[key]}")
    from .. import __version__

    ctx = {
        "css": _CSS,
        "run_id": run_id,
        "run_arg": str(run_dir),
        "run_dir": str(run_dir),
        "model": str(config.get("model", "unknown")),
        "date": _when(run_dir, config),
        "pills": pills,
        "headline": headline,
        "training_facts": training_facts,
        "evaluated": metrics is not None,
        "metric_rows": metrics_table_rows(metrics),
        "metric_warnings": [str(w) for w in ((metrics or {}).get("warnings") or [])],
        "class_rows": per_class_rows(metrics),
        "data": data,
        "roc_note": roc_note,
        "roc_missing": roc_missing,
        "examples_note": examples_note,
        "examples_caption": examples_caption,
        "explanation": (None if explanation is None else
                        {"title": explanation.title, "text": explanation.text, "figures": explain_figs,
                         "table": explanation.table}),
        "extra_sections": extra_sections,
        "examples_alt": examples_alt,
        "comparison": comparison,
        "cv_rows": cv_rows,
        "examples_title": examples_title,
        "explain_title": explanation.title if explanation is not None else "Explanations",
        "config_rows": _flatten(config),
        "ephys_version": str(config.get("ephys_version") or __version__),
        "generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    html_t, md_t = _environments()
    html = html_t.render(**ctx, figs=uris)
    md = md_t.render(**ctx, files=files)
    html_path = write_text(run_dir / "report.html", html)
    md_path = write_text(run_dir / "report.md", md)
    return html_path, md_path


# --------------------------------------------------------------------------------------
# Cross-validation (``ephys aggregate``): pooled held-out predictions of every fold
# --------------------------------------------------------------------------------------

_CV_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:.25em .8em;text-align:right}
th:first-child,td:first-child{text-align:left}.warn{background:#fff3cd;padding:.6em 1em;border-left:4px solid #E69F00}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs img{max-width:480px}
</style></head><body>
<h1>{{ title }}</h1>
<p>Model <b>{{ m.model }}</b>, {{ m.scheme }} cross-validation: {{ m.n_folds_done }} of {{ m.n_folds_expected }}
folds finished; every number below is computed on held-out samples only, pooled over the folds.</p>
{% if not m.complete %}<p class="warn">Incomplete: no finished run for {{ m.missing_folds|join(', ') }}.
These numbers cover only the folds that finished.</p>{% endif %}
<h2>Pooled held-out metrics</h2>
<table>{% for k, v in headline %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<div class="figs">{% for f in figs %}<img src="data:image/png;base64,{{ f.b64 }}" alt="{{ f.alt }}">{% endfor %}</div>
<h2>Per fold</h2>
<table><tr><th>fold</th><th>held out</th><th>n</th><th>accuracy</th><th>majority baseline</th>
<th>balanced accuracy</th><th>macro F1</th><th>ROC AUC</th></tr>
{% for r in folds %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>
<h2>Per participant</h2>
<table><tr><th>participant</th><th>n</th><th>accuracy</th><th>majority baseline</th><th>balanced accuracy</th><th>ROC AUC</th></tr>
{% for r in groups %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>
<p><small>Generated by ephys aggregate on {{ when }}.</small></p>
</body></html>
"""


def build_cv_report(out: str | Path, metrics: dict, true: list[str], proba: np.ndarray,
                    label_names: list[str]) -> Path:
    """Render ``OUT/report.html`` for pooled cross-validation results (:func:`ephys.pipelines.core.
    crossval.aggregate`): headline metrics beside the majority-class baseline, confusion matrix and
    ROC of the pooled held-out predictions, per-fold and per-participant tables; self-contained."""
    import jinja2

    f = format_number
    headline = [("Accuracy", f(metrics.get("accuracy"))),
                ("Majority-class baseline (training side of each fold)", f(metrics.get("majority_baseline_accuracy"))),
                ("Balanced accuracy", f(metrics.get("balanced_accuracy"))), ("Macro F1", f(metrics.get("macro_f1"))),
                ("ROC AUC (one-vs-rest)", f(metrics.get("roc_auc_ovr"))), ("Held-out samples", str(metrics.get("n_test")))]
    figs = [{"b64": base64.b64encode(_fig_confusion(np.asarray(metrics["confusion_matrix"]), label_names)).decode(),
             "alt": "confusion matrix of the pooled held-out predictions"}]
    roc, _ = _fig_roc(true, proba, label_names)
    if roc is not None:
        figs.append({"b64": base64.b64encode(roc).decode(), "alt": "ROC of the pooled held-out predictions"})
    folds = [[r.get("fold"), ", ".join(r.get("held_out") or []), r.get("n_test"), f(r.get("accuracy")),
              f(r.get("majority_baseline_accuracy")), f(r.get("balanced_accuracy")), f(r.get("macro_f1")),
              f(r.get("roc_auc_ovr"))] for r in metrics.get("per_fold", [])]
    groups = [[g, r["n"], f(r["accuracy"]), f(r["majority_baseline_accuracy"]), f(r["balanced_accuracy"]),
               f(r["roc_auc_ovr"])] for g, r in (metrics.get("per_participant") or {}).items()]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(_CV_HTML).render(
        title=f"Cross-validation: {metrics.get('model')}", m=metrics, headline=headline, figs=figs, folds=folds,
        groups=groups, when=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return write_text(Path(out) / "report.html", html)
