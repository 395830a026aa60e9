"""``OUT/report.html`` of the lfp recipes: one self-contained page of the shared page builder
(:mod:`ephys.pipelines.core.page`: style sheet, figures embedded as base64 PNG, no JavaScript;
``png_bytes``, ``style_axes``, ``format_number``, the Okabe-Ito palette), its sections kept as
:class:`~ephys.pipelines.core.registry.Section` / :class:`~ephys.pipelines.core.registry.Figure`
records.

Sections (each from files the recipe already wrote; a missing input leaves a one-line note):

- summary cards: pooled ROC-AUC of both models, PR-AUC beside the positive rate, LOBO hit rate
  (simulated cohort), held-out-unit ROC-AUC (one animal);
- example traces: for the unit with the most test-window spikes, 4 s of raw LFP, its band-passed
  signals (filtered over the whole recording, as the models' inputs), the true spikes and both
  models' held-out P(spike) per prediction bin (``predictions_<model>.csv``);
- per-unit table (ROC-AUC, PR-AUC, rate r, balanced accuracy per model; held-out-unit and
  oracle and plug-in ROC-AUC when present);
- ROC and PR curves of both models, pooled held-out predictions (thin lines: per unit);
- leave-one-band-out: pooled ΔROC-AUC per band with the 95 % CI over folds, and a per-unit
  heat map (the named band marked, the ground truth when simulated);
- held-out units: per unit, the GLM trained on the unit itself vs on the other units;
- spike-LFP context: spike-triggered LFP averages per unit and the PPC per unit and channel:band
  (``spike_lfp.json``; whole recordings, descriptive).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..core.page import (OKABE_ITO, Card, Cards, Notice, Page, Table, Text, format_number as fmt, hook_blocks,
                         png_bytes, pyplot, style_axes)
from ..core.registry import Figure, Section

__all__ = ["build_lfp_report"]

MODEL_COLOURS = {"bilstm": OKABE_ITO[0], "glm": OKABE_ITO[1]}

def _read_predictions(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    return {"unit": np.array([r["unit"] for r in rows]), "t_s": np.array([float(r["t_s"]) for r in rows]),
            "y": np.array([int(r["spike"]) for r in rows]), "p": np.array([float(r["p_spike"]) for r in rows]),
            "fold": np.array([r["fold"] for r in rows])}


def _models(m: dict) -> list[tuple[str, dict]]:
    out = [(m["model"], m)]
    if m.get("reference"):
        out.append((m["reference"]["model"], m["reference"]))
    out += [(name, part) for name, part in (m.get("also") or {}).items()]
    return out


def _fig_traces(rec, unit: str, preds: dict, bands: dict, seconds: float = 4.0) -> Figure | None:
    from ..blocks.signal.bands import band_signals

    key = f"{rec.name}/{unit}"
    first = next(iter(preds.values()))
    sel = first["unit"] == key
    if not sel.any() or unit not in rec.units:
        return None
    t_bins, y_bins = first["t_s"][sel], first["y"][sel]
    # the stretch of held-out bins with the most spikes (a window of `seconds`)
    order = np.argsort(t_bins)
    t_bins, y_bins = t_bins[order], y_bins[order]
    starts = t_bins[:: max(1, len(t_bins) // 400)]
    counts = [int(y_bins[(t_bins >= s) & (t_bins < s + seconds)].sum()) for s in starts]
    t_a = float(starts[int(np.argmax(counts))])
    t_b = t_a + seconds
    i0 = max(0, int((t_a - rec.t0_s) * rec.fs_hz))
    i1 = min(rec.lfp.shape[0], int((t_b - rec.t0_s) * rec.fs_hz))
    if i1 - i0 < 4:
        return None
    t = rec.t0_s + np.arange(i0, i1) / rec.fs_hz
    sig = band_signals(rec.lfp[:, :1], rec.fs_hz, bands)  # whole recording, zero phase (as the inputs)
    plt = pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(10.5, 6.4), sharex=True, gridspec_kw={"height_ratios": [1, 2, 1.4]})
    axes[0].plot(t, rec.lfp[i0:i1, 0], color="0.2", lw=0.7)
    axes[0].set_ylabel(f"LFP {rec.channel_names[0]}", fontsize=9)
    axes[0].set_title(f"{key}: held-out stretch {t_a:.1f}-{t_b:.1f} s", fontsize=10)
    for k, (b, (filt, amp, _)) in enumerate(sig.items()):
        x = filt[i0:i1, 0]
        s = np.std(x) or 1.0
        off = -3.0 * k
        axes[1].plot(t, x / s + off, lw=0.7, color=OKABE_ITO[k % 7])
        axes[1].plot(t, amp[i0:i1, 0] / s + off, lw=0.7, color=OKABE_ITO[k % 7], alpha=0.45)
    axes[1].set_yticks([-3.0 * k for k in range(len(sig))], list(sig), fontsize=8)
    for k, lab in enumerate(axes[1].get_yticklabels()):
        lab.set_color(OKABE_ITO[k % 7])
    axes[1].set_ylabel("bands (z-scored; pale: envelope)", fontsize=9)
    spk = rec.units[unit]
    spk = spk[(spk >= t_a) & (spk < t_b)]
    axes[2].vlines(spk, 0, 0.12, color="k", lw=1, label="true spikes")
    for name, pr in preds.items():
        s2 = pr["unit"] == key
        tt, pp = pr["t_s"][s2], pr["p"][s2]
        w = (tt >= t_a) & (tt < t_b)
        o = np.argsort(tt[w])
        axes[2].step(tt[w][o], pp[w][o], where="post", lw=1.1, color=MODEL_COLOURS.get(name, OKABE_ITO[2]),
                     label=f"{name} P(spike)")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_ylabel("held-out P(spike)", fontsize=9)
    axes[2].set_xlabel("time (s)", fontsize=9)
    axes[2].legend(fontsize=8, loc="upper right", ncol=3, frameon=False)
    for ax in axes:
        style_axes(ax)
    fig.tight_layout()
    return Figure(png_bytes(fig), f"example traces of {key}",
                  f"{key}, {t_a:.1f}-{t_b:.1f} s (the {seconds:g} s of held-out bins with the most spikes): raw LFP "
                  f"of channel {rec.channel_names[0]}, its band-passed signals (z-scored, offset; pale: Hilbert "
                  "envelope), the unit's true spikes (ticks) and each model's held-out P(spike) per prediction bin.",
                  "traces")


def _fig_roc_pr(preds: dict) -> Figure | None:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.3))
    drawn = False
    base, top = None, 0.0
    for name, pr in preds.items():
        c = MODEL_COLOURS.get(name, OKABE_ITO[2])
        for u in sorted(set(pr["unit"].tolist())):
            s = pr["unit"] == u
            if np.unique(pr["y"][s]).size == 2:
                f, tp, _ = roc_curve(pr["y"][s], pr["p"][s])
                a1.plot(f, tp, color=c, lw=0.5, alpha=0.3)
        if np.unique(pr["y"]).size < 2:
            continue
        f, tp, _ = roc_curve(pr["y"], pr["p"])
        a1.plot(f, tp, color=c, lw=2, label=f"{name} pooled (AUC {roc_auc_score(pr['y'], pr['p']):.3f})")
        prec, rec, _ = precision_recall_curve(pr["y"], pr["p"])
        a2.plot(rec, prec, color=c, lw=2, label=f"{name} (AP {average_precision_score(pr['y'], pr['p']):.3f})")
        top = max(top, float(prec[rec >= 0.02].max()) if (rec >= 0.02).any() else 0.0)
        base = float(pr["y"].mean())
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    a1.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":", label="chance")
    a2.axhline(base, color="k", lw=0.8, ls=":", label=f"positive rate {base:.3f}")
    a1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (held-out windows)")
    # rare spikes: a 0-1 precision axis would flatten every curve onto the positive rate
    a2.set(xlabel="recall", ylabel="precision", title="precision-recall (held-out windows)",
           ylim=(0, min(1.02, max(4 * base, 1.15 * top))))
    for ax in (a1, a2):
        style_axes(ax)
        ax.legend(fontsize=8, frameon=False)
        ax.title.set_fontsize(11)
    fig.tight_layout()
    return Figure(png_bytes(fig), "ROC and precision-recall curves",
                  "Pooled out-of-fold predictions of every unit (thick) and each unit alone (thin). A PR curve at "
                  "the positive rate is chance (the precision axis is cut to the curves' range).", "rocpr")


def _fig_lobo(lobo: dict) -> list[Figure]:
    bands = lobo.get("bands") or []
    pooled = lobo.get("pooled") or {}
    if not bands:
        return []
    plt = pyplot()
    figs = []
    d = np.array([pooled.get(b, {}).get("delta_roc_auc") if pooled.get(b, {}).get("delta_roc_auc") is not None
                  else np.nan for b in bands], dtype=float)
    ci = [pooled.get(b, {}).get("ci95") or [None, None] for b in bands]
    lo = np.array([d[k] - c[0] if c[0] is not None else 0 for k, c in enumerate(ci)])
    hi = np.array([c[1] - d[k] if c[1] is not None else 0 for k, c in enumerate(ci)])
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.bar(bands, np.nan_to_num(d), yerr=[np.nan_to_num(lo), np.nan_to_num(hi)], color=OKABE_ITO[0], capsize=4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("ΔROC-AUC (all bands − without)", fontsize=9)
    ax.set_title(f"leave-one-band-out ({lobo.get('model')}), pooled over units; 95 % CI over folds", fontsize=10)
    style_axes(ax)
    fig.tight_layout()
    figs.append(Figure(png_bytes(fig), "LOBO bars", "Mean ΔROC-AUC per band over every unit's folds; whiskers: "
                       "t-based 95 % confidence interval over folds. Positive: the band carries information the "
                       "others do not.", "lobo"))
    per = lobo.get("per_unit") or {}
    if per:
        keys = list(per)
        mat = np.array([[per[k].get(b) if per[k].get(b) is not None else np.nan for b in bands] for k in keys])
        fig, ax = plt.subplots(figsize=(1.1 * len(bands) + 3, 0.32 * len(keys) + 1.6))
        v = np.nanmax(np.abs(mat)) if np.isfinite(mat).any() else 1.0
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-v, vmax=v, aspect="auto")
        named, truth = lobo.get("named_band") or {}, lobo.get("ground_truth_band") or {}
        for i, k in enumerate(keys):
            if named.get(k) in bands:
                ax.text(bands.index(named[k]), i, "●", ha="center", va="center", fontsize=8)
            if truth.get(k) in bands:
                ax.add_patch(pyplot().Rectangle((bands.index(truth[k]) - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5,
                                                ec="k"))
        ax.set_xticks(range(len(bands)), bands, fontsize=8, rotation=30)
        ax.set_yticks(range(len(keys)), keys, fontsize=7)
        fig.colorbar(im, ax=ax, label="ΔROC-AUC")
        fig.tight_layout()
        figs.append(Figure(png_bytes(fig), "LOBO per unit", "ΔROC-AUC per unit (out-of-fold predictions); dot: the "
                           "band LOBO names (largest Δ); box: the simulator's generating band, when known.", "lobo_unit"))
    return figs


def _fig_heldout(m: dict, hu: dict) -> Figure | None:
    per = hu.get("per_unit") or {}
    own = {}
    for name, part in _models(m):
        if name == "glm":
            own = part.get("per_unit") or {}
    keys = list(per)
    if not keys:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(keys) + 2), 3.6))
    x = np.arange(len(keys))
    a_own = [((own.get(k) or {}).get("roc_auc")) for k in keys]
    a_ho = [per[k].get("roc_auc") for k in keys]
    ax.bar(x - 0.2, [v if v is not None else np.nan for v in a_own], 0.4, color=OKABE_ITO[1],
           label="GLM trained on the unit itself")
    ax.bar(x + 0.2, [v if v is not None else np.nan for v in a_ho], 0.4, color=OKABE_ITO[2],
           label="GLM trained on the other units")
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    lo = np.nanmin([v for v in a_own + a_ho if v is not None] + [0.5])
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_xticks(x, [k.rsplit("/", 1)[-1] for k in keys], fontsize=8)
    ax.set_ylabel("held-out ROC-AUC", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    style_axes(ax)
    fig.tight_layout()
    return Figure(png_bytes(fig), "held-out units", "Same blocked time folds: ROC-AUC on the test blocks of a unit "
                  "whose spikes trained the model (orange) or did not (green). Dotted: chance.", "heldout")


def _fig_sta(desc: dict, max_units: int = 16) -> Figure | None:
    keys = [k for k in desc if "sta" in desc[k]][:max_units]
    if not keys:
        return None
    plt = pyplot()
    cols = min(4, len(keys))
    rows = int(np.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.3 * rows), squeeze=False)
    for ax, k in zip(axes.ravel(), keys):
        t = np.asarray(desc[k]["sta_t_s"]) * 1000
        for c, trace in enumerate(desc[k]["sta"]):
            ax.plot(t, trace, lw=1, color=OKABE_ITO[c % 7], label=f"ch{c + 1}")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(f"{k} (n={desc[k]['n_spikes']})", fontsize=8)
        style_axes(ax)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6, frameon=False)
    fig.supxlabel("ms from spike", fontsize=9)
    fig.tight_layout()
    return Figure(png_bytes(fig), "spike-triggered LFP averages",
                  f"Mean raw LFP around every spike, per channel (first {len(keys)} units).", "sta")


def _fig_ppc(desc: dict) -> Figure | None:
    keys = [k for k in desc if desc[k].get("ppc")]
    if not keys:
        return None
    cols = list(desc[keys[0]]["ppc"])
    mat = np.array([[desc[k]["ppc"].get(c) if desc[k]["ppc"].get(c) is not None else np.nan for c in cols]
                    for k in keys])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(min(16, 0.42 * len(cols) + 3), 0.3 * len(keys) + 2.0))
    v = np.nanmax(np.abs(mat)) if np.isfinite(mat).any() else 1.0
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-v, vmax=v, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=60, ha="right")
    ax.set_yticks(range(len(keys)), keys, fontsize=7)
    fig.colorbar(im, ax=ax, label="PPC")
    fig.tight_layout()
    return Figure(png_bytes(fig), "pairwise phase consistency",
                  "PPC (Vinck et al. 2010) of each unit's spikes to the Hilbert phase of every channel:band; 0 = no "
                  "phase locking, unbiased by the spike count.", "ppc")


def _unit_table(m: dict) -> list[list[str]]:
    models = _models(m)
    hu = (m.get("held_out_units") or {}).get("per_unit") or {}
    orc = (m.get("oracle") or {}).get("per_unit") or {}
    plug = (m.get("plug_in") or {}).get("per_unit") or {}
    head = ["unit", "positive rate", "spike bins"]
    for name, _ in models:
        head += [f"{name} ROC-AUC", f"{name} PR-AUC", f"{name} rate r", f"{name} bal. acc."]
    if hu:
        head.append("GLM, other units: ROC-AUC")
    if orc:
        head.append("oracle ROC-AUC")
    if plug:
        head.append("plug-in ROC-AUC")
    rows = [head]
    for k, u0 in m.get("per_unit", {}).items():
        r = [k, fmt(u0.get("positive_rate"), 4), fmt(u0.get("n_positive"))]
        for _, part in models:
            u = (part.get("per_unit") or {}).get(k) or {}
            r += [fmt(u.get("roc_auc")), fmt(u.get("pr_auc")), fmt(u.get("rate_correlation")),
                  fmt(u.get("balanced_accuracy"))]
        if hu:
            r.append(fmt((hu.get(k) or {}).get("roc_auc")))
        if orc:
            r.append(fmt((orc.get(k) or {}).get("roc_auc")))
        if plug:
            r.append(fmt((plug.get(k) or {}).get("roc_auc")))
        rows.append(r)
    pooled = ["pooled", fmt(m.get("positive_rate"), 4), fmt((m.get("pooled") or {}).get("n_positive"))]
    for _, part in models:
        pooled += [fmt(part.get("roc_auc")), fmt(part.get("pr_auc")), fmt(part.get("rate_correlation")),
                   fmt(part.get("balanced_accuracy"))]
    if hu:  # its pooled number covers every held-out unit, the same set only when all units were cross-validated
        pooled.append(fmt(m["held_out_units"].get("roc_auc")) if set(hu) == set(m.get("per_unit", {}))
                      else "see Held-out units")
    if orc:
        pooled.append(fmt(m["oracle"].get("roc_auc")))
    if plug:
        pooled.append(fmt(m["plug_in"].get("roc_auc")))
    rows.append(pooled)
    return rows


def build_lfp_report(out: str | Path, metrics: dict, recordings=None, log=print) -> Path:
    """Write ``OUT/report.html`` for an lfp recipe (see the module docstring).

    Parameters
    ----------
    out : the recipe's output folder (``predictions_<model>.csv``, ``spike_lfp.json``, ``prepared/``)
    metrics : the recipe's metrics dict (as in ``metrics.json``)
    recordings : the :class:`LfpRecording` list the recipe read (for the example traces; None: no traces)

    Returns the report's path. Never raises on a missing optional input (a note instead).
    """
    import json

    out = Path(out)
    models = _models(metrics)
    preds = {name: p for name, _ in models if (p := _read_predictions(out / f"predictions_{name}.csv")) is not None}
    notes, sections = [], []
    desc = None
    if (out / "spike_lfp.json").is_file():
        desc = json.loads((out / "spike_lfp.json").read_text())
    bands = {}
    if (out / "prepared" / "index.json").is_file():
        bands = json.loads((out / "prepared" / "index.json").read_text()).get("bands") or {}

    # example traces
    sec = Section("Example traces")
    if preds and recordings and bands:
        first = next(iter(preds.values()))
        by_key = {}
        for k in set(first["unit"].tolist()):
            by_key[k] = int(first["y"][first["unit"] == k].sum())
        best = max(by_key, key=by_key.get)
        rec_name, unit = best.rsplit("/", 1)
        rec = next((r for r in recordings if r.name == rec_name), None)
        f = _fig_traces(rec, unit, preds, bands) if rec is not None else None
        if f:
            sec.figures.append(f)
    if not sec.figures:
        sec.text = "No example traces (no held-out predictions or recordings at hand)."
    sections.append(sec)

    sections.append(Section("Per-unit metrics", "Every number is from held-out windows (out-of-fold); balanced "
                            "accuracy at the threshold fitted on each fold's training side. rate r: Pearson "
                            "correlation of predicted and observed spike counts in 100 ms bins.",
                            table=_unit_table(metrics)))
    f = _fig_roc_pr(preds) if preds else None
    sections.append(Section("ROC and PR curves", figures=[f] if f else [],
                            text="" if f else "No predictions_<model>.csv with both classes."))
    lobo = metrics.get("lobo")
    if lobo:
        hit = lobo.get("hit_rate")
        txt = (f"LOBO named the simulator's generating band for {lobo.get('n_hits')}/{lobo.get('n_coupled')} coupled "
               f"units ({fmt(hit, 2)})." if hit is not None else "No ground truth: the bars describe, they do not score.")
        sections.append(Section(f"Leave-one-band-out ({lobo.get('model')})", txt, figures=_fig_lobo(lobo)))
    hu = metrics.get("held_out_units")
    if hu and not hu.get("skipped"):
        f = _fig_heldout(metrics, hu)
        sections.append(Section("Held-out units", f"{hu.get('what', '')}. Pooled ROC-AUC {fmt(hu.get('roc_auc'))}, "
                                f"PR-AUC {fmt(hu.get('pr_auc'))} (positive rate {fmt(hu.get('positive_rate'), 4)}).",
                                figures=[f] if f else []))
    if desc:
        figs = [f for f in (_fig_sta(desc), _fig_ppc(desc)) if f]
        sections.append(Section("Spike-LFP context (descriptive)", "Computed on the whole recordings; no model is "
                                "fitted on these numbers.", figures=figs))
    else:
        notes.append("No spike_lfp.json: spike-triggered averages and PPC not shown.")

    name0, m0 = models[0]
    cards = [Card(f"{name0} pooled ROC-AUC", fmt(m0.get("roc_auc")), f"PR-AUC {fmt(m0.get('pr_auc'))} · positive rate "
                  f"{fmt(m0.get('positive_rate'), 4)}")]
    for name, part in models[1:]:
        cards.append(Card(f"{name} pooled ROC-AUC", fmt(part.get("roc_auc")), f"PR-AUC {fmt(part.get('pr_auc'))} (reference)"))
    cards.append(Card(f"{name0} rate r (100 ms)", fmt(m0.get("rate_correlation")), "predicted vs observed counts"))
    if lobo and lobo.get("hit_rate") is not None:
        cards.append(Card("LOBO hit rate", fmt(lobo["hit_rate"], 2), f"{lobo.get('n_hits')}/{lobo.get('n_coupled')} coupled units"))
    if hu and hu.get("roc_auc") is not None:
        cards.append(Card("held-out units ROC-AUC", fmt(hu["roc_auc"]), "GLM trained on the other units"))
    if metrics.get("oracle"):
        cards.append(Card("oracle ROC-AUC", fmt(metrics["oracle"].get("roc_auc")), "true simulated intensity (ceiling)"))
    if metrics.get("plug_in"):
        cards.append(Card("plug-in ROC-AUC", fmt(metrics["plug_in"].get("roc_auc")),
                          "simulator's formulas on the LFP, population parameters"))
    schemes = sorted(set((metrics.get("scheme") or {}).values()))
    intro = (f"Cross-validation: {', '.join(schemes) or '?'}, {metrics.get('n_folds')} folds; window "
             f"{metrics.get('window_s')} s, prediction bin {metrics.get('prediction_bin_s')} s ({metrics.get('target')}). "
             "No recording (or time block) is on both sides of a split; thresholds come from the training folds.")
    pills = [f"models: {', '.join(n for n, _ in models)}", f"{len(metrics.get('per_unit') or {})} unit datasets"]
    page = Page(str(metrics.get("recipe", "lfp")), kicker="ephys lfp report", pills=pills, source=str(out))
    page.section("Summary", Cards(cards), Text(intro, muted=True), *[Notice(w) for w in notes])
    for sec in sections:
        blocks = hook_blocks(sec)
        if sec.table:  # every column but the unit's name holds numbers
            blocks[-1] = Table(sec.table[1:], sec.table[0], numeric=[False] + [True] * (len(sec.table[0]) - 1),
                               scroll=True)
        page.section(sec.title, *blocks)
    path = page.write(out)
    log(f"report: {path}")
    return path
