"""Report of one ``ephys spikes sort`` run: ``OUT/report.html`` (self-contained) and ``OUT/report.md``.

Shows the summary of ``sort.json`` (recording, probe, peaks, units, timings), the quality
metrics per unit (SpikeInterface's: SNR, ISI violations, presence ratio, amplitude cutoff,
isolation distance, L-ratio, firing rate), and per unit its mean waveform on every channel, its
inter-spike-interval histogram, its autocorrelogram and its spike amplitudes over time; with a ground truth, SpikeInterface's
comparison (per-unit accuracy / precision / recall, unit counts, the agreement matrix). One page
of the shared page builder (:mod:`ephys.pipelines.core.page`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.page import OKABE_ITO, Card, Cards, Fig, Page, Params, Table, Text, png_bytes, pyplot, style_axes

#: at most this many units get figures (all are in the table)
MAX_UNITS_SHOWN = 24


def _grid(n: int, ncols: int = 6, size=(2.2, 1.8)):
    plt = pyplot()
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, min(ncols, max(n, 1)), figsize=(size[0] * min(ncols, max(n, 1)), size[1] * nrows),
                             squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def _colour(i: int) -> str:
    return OKABE_ITO[i % (len(OKABE_ITO) - 1)]


def _fig_waveforms(temps: np.ndarray, ids, fs_hz: float) -> bytes:
    """Mean waveform (µV) of each unit, channels side by side."""
    n, n_s, n_ch = temps.shape
    fig, axes = _grid(n)
    t = np.arange(n_s)
    for i, ax in enumerate(axes[:n]):
        for c in range(n_ch):
            ax.plot(t + c * (n_s + 4), temps[i, :, c], color=_colour(i), lw=1)
        ax.set_title(f"unit {ids[i]}", fontsize=9)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
        style_axes(ax)
    axes[0].set_ylabel("µV", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _fig_isi(trains_s: list[np.ndarray], ids) -> bytes:
    fig, axes = _grid(len(ids))
    bins = np.arange(0, 50.5, 1.0)
    for i, ax in enumerate(axes[:len(ids)]):
        isi = np.diff(trains_s[i]) * 1e3
        ax.hist(isi[isi < 50], bins=bins, color=_colour(i))
        ax.axvline(1.5, color="k", lw=0.8, ls="--")
        ax.set_title(f"unit {ids[i]}", fontsize=9)
        ax.tick_params(labelsize=7)
        style_axes(ax)
    axes[0].set_xlabel("ISI (ms)", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _fig_acg(trains_s: list[np.ndarray], ids, window_ms: float = 50.0, bin_ms: float = 1.0) -> bytes:
    fig, axes = _grid(len(ids))
    edges = np.arange(-window_ms, window_ms + bin_ms / 2, bin_ms)
    for i, ax in enumerate(axes[:len(ids)]):
        t = np.asarray(trains_s[i]) * 1e3
        lags = []
        j0 = 0
        for j in range(t.size):  # pairs within the window (sorted spike train)
            while t[j] - t[j0] > window_ms:
                j0 += 1
            lags.append(t[j0:j] - t[j])
        lags = np.concatenate(lags) if lags else np.zeros(0)
        lags = np.concatenate([lags, -lags])
        ax.hist(lags, bins=edges, color=_colour(i))
        ax.set_title(f"unit {ids[i]}", fontsize=9)
        ax.tick_params(labelsize=7)
        style_axes(ax)
    axes[0].set_xlabel("lag (ms)", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _fig_amplitudes(trains_s: list[np.ndarray], amps: dict, ids) -> bytes:
    fig, axes = _grid(len(ids))
    for i, ax in enumerate(axes[:len(ids)]):
        ax.plot(trains_s[i], amps[ids[i]], ".", ms=1.5, color=_colour(i))
        ax.set_title(f"unit {ids[i]}", fontsize=9)
        ax.tick_params(labelsize=7)
        style_axes(ax)
    axes[0].set_xlabel("time (s)", fontsize=8)
    axes[0].set_ylabel("amplitude (µV)", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


_HEAD = {"num_spikes": "spikes", "firing_rate": "rate (Hz)", "presence_ratio": "presence", "snr": "SNR",
         "isi_violations_ratio": "ISI viol. ratio", "amplitude_cutoff": "amp. cutoff",
         "isolation_distance": "isolation dist.", "l_ratio": "L-ratio"}


def build_sort_report(out_dir: str | Path, res: dict, sorting, temps: np.ndarray, amplitudes: dict | None,
                      comparison=None) -> Path:
    """Write ``OUT/report.html`` and ``OUT/report.md`` (+ ``OUT/report_files/``).

    Parameters
    ----------
    out_dir : the sort's output folder
    res : the ``sort.json`` dict of :func:`ephys.pipelines.spikes.sort.sort_recording`
    sorting : the SpikeInterface sorting (one segment)
    temps : float (n_units, n_samples, n_channels), mean waveforms, µV
    amplitudes : {unit id: float (n_spikes,) µV} or None (no amplitude figure)
    comparison : the ``GroundTruthComparison`` behind ``res["comparison"]`` (draws the agreement matrix), or None

    Returns
    -------
    Path of ``report.html`` (every file written via a temporary name).
    """
    out = Path(out_dir)
    fs = sorting.get_sampling_frequency()
    ids = list(sorting.get_unit_ids())[:MAX_UNITS_SHOWN]
    trains = [sorting.get_unit_spike_train(u, segment_index=0) / fs for u in ids]
    name = Path(res["input"]).name if res["input"].startswith("/") else res["input"]
    page = Page(name, kicker="ephys spikes sort", pills=[f"{res['n_units']} units", f"{res['n_channels']} channels",
                                                          f"{res['duration_s']:.1f} s"], source=str(out))
    cards = [Card("Units", str(res["n_units"])), Card("Peaks detected", f"{res['n_peaks']:,}"),
             Card("Sorted spikes", f"{res['n_sorted_spikes']:,}"),
             Card("Sorting time", f"{res['seconds_sort']:.1f} s", "read + filter + detect + cluster")]
    rows = [("Recording", res["input"]), ("Probe", res["probe"]), ("Sampling rate (Hz)", res["fs_hz"]),
            ("Clusters before the template merge", res["n_clusters_before_merge"]),
            ("Template merges", res["n_merges"]), ("Total time incl. metrics and outputs (s)", res["seconds_total"])]
    if "comparison" in res:
        c = res["comparison"]
        cards.append(Card("Mean accuracy", "–" if c["mean_accuracy"] is None else f"{c['mean_accuracy']:.3f}",
                          f"{c['well_detected']} of {c['n_gt_units']} ground-truth units well detected"))
    page.section("Summary", Cards(cards), Table(rows, numeric=[False, True]))
    if "comparison" in res:
        from .compare import fig_agreement, per_unit_rows

        c = res["comparison"]
        head, trows = per_unit_rows(c)
        crows = [("Ground truth", c.get("ground_truth", "")), ("Ground-truth units", c["n_gt_units"]),
                 ("Sorted units", c["n_units"]), ("Mean accuracy / precision / recall",
                                                  " / ".join("–" if c[k] is None else f"{c[k]:.3f}" for k in
                                                             ("mean_accuracy", "mean_precision", "mean_recall"))),
                 ("Well detected / redundant / over-merged / false positive",
                  f"{c['well_detected']} / {c['redundant']} / {c['overmerged']} / {c['false_positive']}")]
        parts = [Table(crows, numeric=[False, True]),
                 Table(trows, head, scroll=len(trows) > 20, caption=c["rule"])]
        if comparison is not None:
            parts.append(Fig(fig_agreement(comparison), "agreement matrix",
                             "Agreement matrix (spikeinterface.widgets.plot_agreement_matrix): agreement = "
                             "coincident spikes / (ground-truth + sorted - coincident), ordered by best match; "
                             "the best match of each ground-truth unit written in.", "agreement_matrix"))
        page.section("Against the ground truth (SpikeInterface comparison)", *parts)
    page.section("Parameters", Params({**res["preprocessing"], **res["settings"]}))
    cols = [c for c in _HEAD if res["units"] and c in res["units"][0]]
    trows = [[str(u["unit_id"]), u.get("best_channel", "")] + [u.get(c) for c in cols] for u in res["units"]]
    page.section("Quality metrics", Table(
        trows, ["unit", "best channel"] + [_HEAD[c] for c in cols], scroll=len(trows) > 20,
        caption="SpikeInterface quality metrics (spikeinterface.metrics): SNR = template peak / noise (MAD) on the "
                "best channel; ISI violations ratio (Hill et al. 2011, 1.5 ms); presence ratio; amplitude cutoff "
                "(Hill et al. 2011); isolation distance and L-ratio (Schmitzer-Torbert et al. 2005) on 3 PCs per "
                "channel."))
    figs = [Fig(_fig_waveforms(temps[:len(ids)], ids, fs), "waveforms",
                "Mean waveform of each unit (µV, preprocessed), channels side by side.", "waveforms"),
            Fig(_fig_isi(trains, ids), "ISI histograms",
                "Inter-spike intervals under 50 ms, 1 ms bins; dashed: 1.5 ms.", "isi"),
            Fig(_fig_acg(trains, ids), "autocorrelograms", "Autocorrelograms, ±50 ms, 1 ms bins.", "acg")]
    if amplitudes is not None:
        figs.append(Fig(_fig_amplitudes(trains, amplitudes, ids), "amplitudes",
                        "Spike amplitude (µV, best channel) over the recording.", "amplitudes"))
    if len(sorting.get_unit_ids()) > MAX_UNITS_SHOWN:
        figs.insert(0, Text(f"Figures show the first {MAX_UNITS_SHOWN} units; the table lists all.", muted=True))
    page.section("Units", *figs)
    return page.write(out, md=True)
