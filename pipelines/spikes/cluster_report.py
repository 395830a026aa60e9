"""Report of one ``ephys cluster`` run: ``OUT/report.html`` (self-contained) and ``OUT/report.md``.

Shows the numbers of ``cluster_metrics.json`` (clusters, noise, silhouette; the quality table
per cluster -- spikes, rate, ISI violations, SNR, isolation distance, L-ratio -- where a single
unit (large isolation distance, L-ratio near 0, few ISI violations) and a multi-unit cluster
look different; with a Tint cut: ARI / NMI against it, all spikes and units only, the
silhouette of the manual units in the same embedding, SpikeInterface's comparison with the cut's
units as ground truth -- per-unit accuracy / precision / recall, well-detected / redundant /
over-merged / false-positive counts and the agreement matrix --, the confusion table and the best
match per manual unit), the embedding coloured by cluster and by manual unit, and the mean waveform
(± 1 SD) of every cluster and every manual unit on each tetrode channel, and the parameters of
the run as a table. One page of the shared page builder (:mod:`ephys.pipelines.core.page`):
figures are base64 data URIs in the HTML, ``report_files/*.png`` beside the Markdown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.page import (OKABE_ITO, Card, Cards, Fig, Notice, Page, Params, Table, Text, png_bytes as _png,
                         pyplot as _pyplot, style_axes as _style)

#: at most this many points are drawn per scatter (a seeded subset; all are clustered)
MAX_POINTS = 6000


def _colours(ids: list[int], noise: int) -> dict[int, str]:
    plt = _pyplot()
    units = [i for i in ids if i != noise]
    pal = OKABE_ITO[:-1] if len(units) <= 7 else [plt.get_cmap("tab20")(k % 20) for k in range(len(units))]
    out = {u: pal[k % len(pal)] for k, u in enumerate(units)}
    out[noise] = "#b0b0b0"
    return out


def _project_2d(emb: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if emb.shape[1] <= 2:
        e = emb if emb.shape[1] == 2 else np.column_stack([emb[:, 0], np.zeros(len(emb))])
        return e, ["dim 1", "dim 2"]
    c = emb - emb.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T, ["PC 1 of the embedding", "PC 2 of the embedding"]


def _fig_embedding(xy, axes_names, labels, ref, seed: int = 0) -> bytes:
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.choice(len(xy), MAX_POINTS, replace=False)) if len(xy) > MAX_POINTS else np.arange(len(xy))
    panels = [("clusters (noise grey)", labels, -1, "cluster")]
    if ref is not None:
        panels.append(("manual units (Tint; cluster 0 grey)", ref, 0, "unit"))
    fig, axs = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.6), squeeze=False)
    for ax, (title, lab, noise, word) in zip(axs[0], panels):
        ids = sorted(set(lab.tolist()))
        col = _colours(ids, noise)
        for i in ([noise] if noise in ids else []) + [i for i in ids if i != noise]:
            m = lab[sel] == i
            name = ("noise" if noise == -1 else "0 (noise)") if i == noise else f"{word} {i}"
            ax.scatter(xy[sel][m, 0], xy[sel][m, 1], s=3, alpha=0.5, color=col[i], label=f"{name} ({int((lab == i).sum())})",
                       rasterized=True, linewidths=0)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(axes_names[0], fontsize=10)
        ax.set_ylabel(axes_names[1], fontsize=10)
        _style(ax)
        if len(ids) <= 12:
            ax.legend(fontsize=8, markerscale=4, frameon=False, loc="best")
    fig.tight_layout()
    return _png(fig)


def _fig_waveforms(waveforms, lab, noise: int, word: str, fs_hz: float) -> bytes:
    plt = _pyplot()
    n, n_ch, n_s = waveforms.shape
    t_ms = np.arange(n_s) / fs_hz * 1e3
    ids = [i for i in sorted(set(lab.tolist())) if i != noise]
    col = _colours(ids + [noise], noise)
    fig, axs = plt.subplots(1, n_ch, figsize=(3.0 * n_ch, 3.0), sharey=True, squeeze=False)
    for c, ax in enumerate(axs[0]):
        for i in ids:
            w = waveforms[lab == i, c, :]
            mu, sd = w.mean(axis=0), w.std(axis=0)
            ax.plot(t_ms, mu, color=col[i], lw=1.6, label=f"{word} {i} ({len(w)})")
            ax.fill_between(t_ms, mu - sd, mu + sd, color=col[i], alpha=0.15, linewidth=0)
        ax.set_title(f"channel {c + 1}", fontsize=10)
        ax.set_xlabel("time (ms)", fontsize=9)
        _style(ax)
    axs[0][0].set_ylabel("ADC units (mean ± SD)", fontsize=9)
    if ids and len(ids) <= 12:
        axs[0][-1].legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    return _png(fig)


def _fmt(v, d=3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{d}f}"
    return str(v)


def _quality_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    head = ["Cluster", "Spikes", "Rate (Hz)", "ISI < 2 ms", "SNR", "Best channel", "Isolation distance", "L-ratio",
            "Looks like"]
    rows = []
    for q in res.get("quality", []):
        isi = q["isi_violation_fraction"]
        rows.append([str(q["cluster"]), str(q["n_spikes"]), _fmt(q["rate_hz"], 2),
                     "–" if isi is None else f"{isi:.2%}", _fmt(q["snr"], 2), str(q["best_channel"]),
                     _fmt(q["isolation_distance"], 1), _fmt(q["l_ratio"], 4), q.get("looks_like", "–")])
    return head, rows


def _confusion_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    c = res["confusion"]
    head = ["cluster \\ manual unit"] + [("0 (noise)" if u == 0 else str(u)) for u in c["units"]]
    rows = [[("noise" if k == -1 else str(k))] + [str(v) for v in row] for k, row in zip(c["clusters"], c["table"])]
    return head, rows


def _best_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    head = ["Manual unit", "Spikes", "Best match cluster", "Precision", "Recall", "F1"]
    rows = [[str(b["unit"]), str(b["n_unit"]), "–" if b["cluster"] is None else str(b["cluster"]),
             _fmt(b["precision"]), _fmt(b["recall"]), _fmt(b["f1"])] for b in res["confusion"]["best_match"]]
    return head, rows


def build_cluster_report(out_dir: str | Path, res: dict, emb: np.ndarray, labels: np.ndarray,
                         waveforms: np.ndarray, ref: np.ndarray | None, fs_hz: float,
                         comparison=None) -> tuple[Path, Path]:
    """Write ``OUT/report.html`` and ``OUT/report.md`` (+ ``OUT/report_files/*.png``).

    Parameters
    ----------
    out_dir : the cluster run's folder
    res : the metrics dict of :func:`ephys.pipelines.cluster.cluster_tetrode`
    emb : float (n_spikes, d), the clustered embedding (projected to its 2 main axes when d > 2)
    labels : int (n_spikes,), cluster per spike (-1 = noise)
    waveforms : float (n_spikes, n_channels, n_samples), ADC units
    ref : int (n_spikes,) Tint unit per spike (0 = noise) or None
    fs_hz : waveform sampling rate, Hz
    comparison : the ``GroundTruthComparison`` behind ``res["comparison"]`` (draws the agreement matrix), or None

    Returns
    -------
    (html path, markdown path); every file is written via a temporary name and renamed.
    """
    out = Path(out_dir)
    xy, names = _project_2d(np.asarray(emb, dtype=np.float64))
    figs = {"embedding": _fig_embedding(xy, names, labels, ref, res.get("seed", 0)),
            "cluster_waveforms": _fig_waveforms(waveforms, labels, -1, "cluster", fs_hz)}
    if ref is not None:
        figs["unit_waveforms"] = _fig_waveforms(waveforms, ref, 0, "unit", fs_hz)

    tet = Path(res["input"]).name
    rows = [("Tetrode file", tet), ("Spikes", res["n_spikes"]),
            ("Embedding", f"{res['embed']} ({res['n_dims']} dims)"), ("Clustering", res["method"]),
            ("Clusters", res["n_clusters"]), ("Noise spikes (-1)", res["n_noise"]),
            ("Silhouette (clusters, noise excluded)", _fmt(res.get("silhouette")))]
    cards = [Card("Spikes", f"{res['n_spikes']:,}"), Card("Clusters", str(res["n_clusters"]), res["method"]),
             Card("Noise spikes", f"{res['n_noise']:,}"),
             Card("Silhouette", _fmt(res.get("silhouette")), "clusters, noise excluded")]
    if "ari" in res:
        r = res["reference"]
        rows += [("Manual units (Tint)", f"{r['n_units']} (+ {r['n_noise']} in cluster 0)"),
                 ("ARI vs manual, all spikes", _fmt(res["ari"])), ("NMI vs manual, all spikes", _fmt(res["nmi"]))]
        cards.append(Card("ARI vs manual", _fmt(res["ari"]), f"all spikes; {r['n_units']} manual units"))
        if "units_only" in res:
            u = res["units_only"]
            rows += [("ARI vs manual, units only", _fmt(u["ari"])), ("NMI vs manual, units only", _fmt(u["nmi"]))]
        rows.append(("Silhouette of the manual units in this embedding", _fmt(r.get("silhouette"))))
    if "comparison" in res:
        c = res["comparison"]
        rows += [("Mean accuracy vs manual units (SpikeInterface)", _fmt(c["mean_accuracy"])),
                 ("Well detected / redundant / over-merged / false positive",
                  f"{c['well_detected']} / {c['redundant']} / {c['overmerged']} / {c['false_positive']}")]
        if "comparison_units_only" in res:
            cu = res["comparison_units_only"]
            rows.append(("Mean accuracy vs manual units, units only", f"{_fmt(cu['mean_accuracy'])} "
                                                                    f"({cu['well_detected']} well detected)"))
        cards.append(Card("Mean accuracy", _fmt(c["mean_accuracy"]),
                          f"{c['well_detected']} of {c['n_gt_units']} manual units well detected"))
    if "autoencoder" in res:
        a = res["autoencoder"]
        rows.append(("Autoencoder", f"hidden {a['hidden']}, {a['epochs']} epochs, batch {a['batch_size']}, "
                                    f"lr {a['lr']:g}, explained variance {a['explained_variance']:.3f}"))
    params = {k: res[k] for k in ("eps", "min_samples", "min_cluster_size", "max_k", "k_bic", "k_isosplit",
                                  "p_outlier", "noise_rule", "min_posterior", "n_ambiguous", "merge_rule", "entropy_merge_rule",
                                  "n_entropy_merges",
                                  "feature_kinds", "seed") if k in res}
    note = ("ARI / NMI compare with the manual sorting; the silhouette (Rousseeuw 1987) is internal: "
            "mean over the clustered spikes of (b - a) / max(a, b) in the embedding, Euclidean, noise left out. "
            "The manual labels were not used to fit or choose anything.")
    captions = {
        "embedding": f"The embedding ({names[0]} vs {names[1]}), coloured by cluster"
                     + (" and by manual unit." if ref is not None else "."),
        "cluster_waveforms": "Mean waveform ± 1 SD of each cluster on each channel.",
        "unit_waveforms": "Mean waveform ± 1 SD of each manual (Tint) unit on each channel.",
    }
    alts = {"embedding": "embedding", "cluster_waveforms": "cluster waveforms", "unit_waveforms": "unit waveforms"}

    page = Page(tet, kicker="ephys cluster", pills=[res["method"], f"embedding: {res['embed']}"], source=str(out))
    page.section("Summary", Notice(f"Warning: {res['warning']}") if res.get("warning") else None, Cards(cards),
                 Table(rows, numeric=[False, True]), Text(note, muted=True))
    page.section("Parameters", Params(params))
    if res.get("quality"):
        head, trows = _quality_rows(res)
        page.section("Quality per cluster", Table(trows, head, caption=res.get("quality_rule", "")))
    if "comparison" in res:
        from .compare import fig_agreement, per_unit_rows

        head, trows = per_unit_rows(res["comparison"])
        if "comparison_units_only" in res:
            acc = {p["gt_unit"]: p["accuracy"] for p in res["comparison_units_only"]["per_unit"]}
            head = head + ["Accuracy, units only"]
            trows = [r + [_fmt(acc.get(p["gt_unit"]))] for r, p in zip(trows, res["comparison"]["per_unit"])]
        parts = [Table(trows, head, caption="Each manual unit (ground truth) matched to at most one cluster; "
                                            "units only: the cut's cluster-0 spikes left out of the clusters too. "
                                            + res["comparison"]["rule"])]
        if comparison is not None:
            parts.append(Fig(fig_agreement(comparison, "manual unit (Tint)", "cluster"), "agreement matrix",
                             "Agreement matrix (spikeinterface.widgets.plot_agreement_matrix): agreement = "
                             "coincident spikes / (unit + cluster - coincident), ordered by best match; the "
                             "best match of each manual unit written in.", "agreement_matrix"))
        page.section("Accuracy per manual unit (SpikeInterface comparison)", *parts)
    if "confusion" in res:
        head, trows = _confusion_rows(res)
        page.section("Confusion: clusters × manual units", Table(
            trows, head, caption="Spike counts; rows are clusters (noise = -1), columns the manual units "
                                 "(0 = Tint noise)."))
        head, trows = _best_rows(res)
        page.section("Best match per manual unit", Table(
            trows, head, caption="The cluster of highest F1 for each manual unit; precision = share of the cluster's "
                                 "spikes in the unit, recall = share of the unit's spikes in the cluster."))
    page.section("Figures", *[Fig(png, alts[key], captions[key], key) for key, png in figs.items()])
    html_path = page.write(out, md=True)
    return html_path, out / "report.md"
