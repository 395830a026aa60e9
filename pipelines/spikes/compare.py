"""A sorting measured against ground truth the way the field does it: SpikeInterface's comparison.

:func:`compare_to_ground_truth` wraps ``spikeinterface.comparison.compare_sorter_to_ground_truth``
with its defaults (the SpikeForest / SpikeInterface convention): a ground-truth spike and a sorted
spike coincide when within 0.4 ms; each ground-truth unit is matched to at most one sorted unit
(Hungarian assignment on the agreement score = coincident / (n_gt + n_sorted - coincident)) when
that score is >= 0.5; per ground-truth unit accuracy = tp / (tp + fn + fp), precision =
tp / (tp + fp), recall = tp / (tp + fn); a sorted unit is *well detected* when its matched score
is >= 0.8, *redundant* when unmatched but its best score is >= 0.2, *over-merged* when it scores
> 0.2 with two or more ground-truth units, a *false positive* when unmatched and below 0.2.
(Buccino et al. 2020, eLife 9:e61834; Magland et al. 2020, eLife 9:e55167.)

:func:`labels_to_sorting` turns per-spike labels (snippets with known times, as ``ephys spikes
cluster`` clusters them) into a ``NumpySorting``, leaving a noise label out; :func:`compare_labels`
compares such labels with reference labels (a Tint cut: its cluster 0 left out of the ground
truth). :func:`fig_agreement` draws the agreement matrix with ``spikeinterface.widgets``.
"""

from __future__ import annotations

import numpy as np

#: ``compare_sorter_to_ground_truth`` settings used (its defaults)
DELTA_MS = 0.4
MATCH_SCORE = 0.5
WELL_DETECTED_SCORE = 0.8
REDUNDANT_SCORE = 0.2
OVERMERGED_SCORE = 0.2

RULE = (f"spikeinterface.comparison.compare_sorter_to_ground_truth: spikes coincide within {DELTA_MS} ms; "
        f"ground-truth units matched (Hungarian) at agreement >= {MATCH_SCORE}; accuracy = tp / (tp + fn + fp); "
        f"well detected: matched agreement >= {WELL_DETECTED_SCORE}; redundant: unmatched, best agreement >= "
        f"{REDUNDANT_SCORE}; over-merged: agreement > {OVERMERGED_SCORE} with 2+ ground-truth units; false "
        f"positive: unmatched, best agreement < {REDUNDANT_SCORE}. Redundant / over-merged / false-positive "
        "counts treat the ground truth as exhaustive (every unit present is in it).")


def labels_to_sorting(samples: np.ndarray, labels: np.ndarray, fs_hz: float, noise: int | None = None):
    """A one-segment ``spikeinterface.core.NumpySorting`` of per-spike labels.

    Parameters
    ----------
    samples : int (n_spikes,), spike times in samples (any order)
    labels : int (n_spikes,), unit per spike
    fs_hz : sampling rate, Hz
    noise : label left out of the sorting (unsorted spikes: -1 for ephys, 0 for a Tint cut), or None
    """
    import spikeinterface.core as sc

    samples, labels = np.asarray(samples, np.int64), np.asarray(labels, np.int64)
    order = np.argsort(samples, kind="stable")
    samples, labels = samples[order], labels[order]
    keep = labels != noise if noise is not None else np.ones(labels.size, bool)
    return sc.NumpySorting.from_samples_and_labels([samples[keep]], [labels[keep]], float(fs_hz))


def compare_to_ground_truth(gt, sorting) -> tuple[dict, object]:
    """Compare ``sorting`` with the ground-truth sorting ``gt`` (both SpikeInterface sortings).

    Returns
    -------
    (summary, comparison) : ``summary`` is JSON-ready: ``rule``, ``n_gt_units``, ``n_units``, the
        means over ground-truth units of ``accuracy`` / ``precision`` / ``recall``
        (``mean_accuracy``...), ``well_detected`` / ``redundant`` / ``overmerged`` /
        ``false_positive`` counts, ``per_unit`` (one dict per ground-truth unit: ``gt_unit``,
        ``matched_unit`` (None when unmatched), ``agreement``, ``accuracy``, ``precision``,
        ``recall``, ``n_gt_spikes``, ``tp``, ``fn``, ``fp``) and ``agreement`` (the ordered
        agreement matrix: ``gt_units``, ``units``, ``scores`` rows per ground-truth unit);
        ``comparison`` is the ``GroundTruthComparison`` (for :func:`fig_agreement`).
    """
    import spikeinterface.comparison as scmp

    cmp = scmp.compare_sorter_to_ground_truth(gt, sorting, delta_time=DELTA_MS, match_score=MATCH_SCORE,
                                              well_detected_score=WELL_DETECTED_SCORE,
                                              redundant_score=REDUNDANT_SCORE, overmerged_score=OVERMERGED_SCORE,
                                              exhaustive_gt=True)
    perf = cmp.get_performance()
    counts = cmp.get_performance(method="raw_count")
    match = cmp.hungarian_match_12

    def _id(u):
        return u.item() if hasattr(u, "item") else u

    def _num(v):
        v = float(v)
        return round(v, 4) if np.isfinite(v) else None

    per_unit = []
    for u in gt.get_unit_ids():
        m = match[u]
        matched = None if (m == -1 or m == "") else _id(m)
        per_unit.append({"gt_unit": _id(u), "matched_unit": matched,
                         "agreement": None if matched is None else _num(cmp.agreement_scores.at[u, m]),
                         "accuracy": _num(perf.at[u, "accuracy"]), "precision": _num(perf.at[u, "precision"]),
                         "recall": _num(perf.at[u, "recall"]), "n_gt_spikes": int(counts.at[u, "num_gt"]),
                         "tp": int(counts.at[u, "tp"]), "fn": int(counts.at[u, "fn"]), "fp": int(counts.at[u, "fp"])})
    ordered = cmp.get_ordered_agreement_scores()

    def _mean(key):
        vals = [p[key] for p in per_unit if p[key] is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    summary = {"rule": RULE, "n_gt_units": len(per_unit), "n_units": int(len(sorting.get_unit_ids())),
               "mean_accuracy": _mean("accuracy"), "mean_precision": _mean("precision"),
               "mean_recall": _mean("recall"),
               "well_detected": int(cmp.count_well_detected_units(WELL_DETECTED_SCORE)),
               "redundant": int(cmp.count_redundant_units()), "overmerged": int(cmp.count_overmerged_units()),
               "false_positive": int(cmp.count_false_positive_units()), "per_unit": per_unit,
               "agreement": {"gt_units": [_id(u) for u in ordered.index], "units": [_id(u) for u in ordered.columns],
                             "scores": [[round(float(v), 4) for v in row] for row in ordered.to_numpy()]}}
    return summary, cmp


def compare_labels(times_s: np.ndarray, fs_hz: float, labels: np.ndarray, ref: np.ndarray,
                   noise: int = -1, ref_noise: int = 0) -> tuple[dict, object]:
    """:func:`compare_to_ground_truth` of per-spike ``labels`` against reference labels ``ref``.

    Parameters
    ----------
    times_s : float (n_spikes,), spike times, s (the same spikes in both labellings)
    fs_hz : sampling rate the times are rounded to, Hz
    labels : int (n_spikes,), sorted unit per spike; ``noise`` (unsorted) spikes are left out of the sorting
    ref : int (n_spikes,), reference unit per spike (a Tint cut); ``ref_noise`` spikes are left out of the
        ground truth (they stay in the sorting: a matched unit holding them counts them as false positives)
    """
    samples = np.round(np.asarray(times_s, np.float64) * fs_hz).astype(np.int64)
    gt = labels_to_sorting(samples, ref, fs_hz, noise=ref_noise)
    srt = labels_to_sorting(samples, labels, fs_hz, noise=noise)
    return compare_to_ground_truth(gt, srt)


def summary_line(c: dict) -> str:
    """One line of a comparison summary: mean accuracy and the unit counts."""
    acc = "n/a" if c["mean_accuracy"] is None else f"{c['mean_accuracy']:.3f}"
    return (f"mean accuracy {acc}, {c['well_detected']} of {c['n_gt_units']} units well detected, "
            f"{c['redundant']} redundant, {c['overmerged']} over-merged, {c['false_positive']} false positive")


def per_unit_rows(c: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-ground-truth-unit table of a comparison summary."""
    def f(v):
        return "–" if v is None else f"{v:.3f}"

    head = ["Ground-truth unit", "Spikes", "Matched unit", "Agreement", "Accuracy", "Precision", "Recall"]
    rows = [[str(p["gt_unit"]), str(p["n_gt_spikes"]), "–" if p["matched_unit"] is None else str(p["matched_unit"]),
             f(p["agreement"]), f(p["accuracy"]), f(p["precision"]), f(p["recall"])] for p in c["per_unit"]]
    return head, rows


def fig_agreement(cmp, gt_word: str = "ground-truth unit", word: str = "sorted unit") -> bytes:
    """PNG of the ordered agreement matrix (``spikeinterface.widgets.plot_agreement_matrix``, matplotlib
    on Agg): rows the ground-truth units, columns the sorted units, the matched scores written in."""
    import spikeinterface.widgets as sw

    from ..core.page import png_bytes, pyplot

    plt = pyplot()
    n1, n2 = len(cmp.sorting1.get_unit_ids()), len(cmp.sorting2.get_unit_ids())
    fig, ax = plt.subplots(figsize=(min(14.0, max(4.0, 2.0 + 0.45 * n2)), min(12.0, max(3.0, 1.8 + 0.45 * n1))))
    sw.plot_agreement_matrix(cmp, ordered=True, count_text=True, unit_ticks=True, backend="matplotlib", ax=ax)
    ax.set_ylabel(gt_word, fontsize=10)
    ax.set_xlabel(word, fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)
