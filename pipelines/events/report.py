"""Figures and the self-contained ``report.html`` of the events recipes and of ``ephys events
detect`` (matplotlib, Agg), pages of the shared page builder (:mod:`ephys.pipelines.core.page`).

``events-sim``: headline F1 per method, the method table (F1, precision, recall, F1 per SNR,
speed), F1 against SNR, trace stretches with true and detected events per method and the U-Net
mask against ground truth, the average detected event with its single-exponential decay fit,
amplitude and inter-event-interval histograms.

``events detect`` on one trace: a summary in words and numbers (the analysed channel and the
polarity with the reasons for each, events, rate, amplitude, kinetics and shape-check rejections
per method; agreement with labels when given), the whole trace with every event and rejected
candidate marked, the busiest second without stimulus, galleries of the smallest and largest
accepted events and of rejected candidates, amplitude / rise / decay / inter-event-interval
histograms and the average event per method; the raw ``summary.json`` only in a collapsed block
at the end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.page import Card, Cards, Details, Fig, Notice, Page, Table, Text, format_number as fmt, png_bytes

__all__ = ["write_sim_report", "trace_report"]

_COLORS = {"cnn_bilstm": "tab:blue", "unet1d": "tab:green", "autoencoder": "tab:purple", "threshold": "tab:gray",
           "miniml": "tab:red", "template": "tab:orange", "deconvolution": "tab:brown"}


def _png(fig) -> bytes:
    return png_bytes(fig, dpi=90, tight=True)


def _average_event(x: np.ndarray, fs: float, events: list[dict], sign: float):
    ms = fs / 1000.0
    pre, post = int(2 * ms), int(20 * ms)
    snips = []
    for e in events:
        i = int(round(e["onset_s"] * fs))
        if i - pre >= 0 and i + post < x.size:
            s = x[i - pre:i + post]
            snips.append(s - np.median(s[:pre]))
    if not snips:
        return None
    avg = np.mean(snips, axis=0)
    t = (np.arange(avg.size) - pre) / ms
    return t, avg


def _avg_fig(x, fs, events, sign, units, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.optimize import curve_fit

    r = _average_event(x, fs, events, sign)
    fig, ax = plt.subplots(figsize=(5, 3))
    if r is None:
        ax.text(0.5, 0.5, "no events", ha="center")
        return fig, None
    t, avg = r
    ax.plot(t, avg, color="k", lw=1, label=f"average of {len(events)} events")
    k = int(np.argmax(sign * avg))
    tt, yy = t[k:], avg[k:]
    tau = None
    if tt.size < 4:  # the average peaks at its end: nothing to fit
        ax.set_xlabel("time from onset (ms)")
        ax.set_ylabel(units)
        ax.set_title(title)
        return fig, None
    try:
        with np.errstate(all="ignore"):  # trial steps of the fit may overflow; a failed fit draws no curve
            popt, _ = curve_fit(lambda u, a, tau, c: a * np.exp(-(u - t[k]) / tau) + c, tt, yy,
                                p0=(avg[k], 3.0, 0.0), maxfev=4000)
        tau = float(popt[1])
        ax.plot(tt, popt[0] * np.exp(-(tt - t[k]) / popt[1]) + popt[2], "r--", label=f"fit tau {tau:.2f} ms")
    except (RuntimeError, ValueError, TypeError):  # TypeError: fewer points than parameters
        pass
    ax.set_xlabel("time from onset (ms)")
    ax.set_ylabel(units)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig, tau


def _bins(v: np.ndarray, n: int = 30) -> int:
    """``n`` bins, or one when the values span (almost) nothing (e.g. perfectly regular events)."""
    v = np.asarray(v, dtype=float)
    return n if v.size > 1 and np.ptp(v) > 1e-6 * max(1.0, float(np.abs(v).max())) else 1


def _hists(events: list[dict], units: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(7, 2.6))
    amps = np.array([e["amplitude"] for e in events])
    on = np.sort([e["onset_s"] for e in events])
    iei = np.diff(on) * 1e3 if on.size > 1 else np.array([])
    axs[0].hist(np.abs(amps), bins=_bins(np.abs(amps)), color="tab:blue")
    axs[0].set_xlabel(f"|amplitude| ({units})")
    axs[1].hist(iei, bins=_bins(iei), color="tab:green")
    axs[1].set_xlabel("inter-event interval (ms)")
    fig.suptitle(title, fontsize=9)
    return fig


def _stretch(x, fs, truth_on, dets: dict, t0: float, dur: float, units: str, title: str, mask=None, pmask=None,
             exclude=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i0, i1 = int(t0 * fs), min(x.size, int((t0 + dur) * fs))
    t = np.arange(i0, i1) / fs
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(t, x[i0:i1], color="k", lw=0.5)
    lo, hi = float(np.min(x[i0:i1])), float(np.max(x[i0:i1]))
    span = hi - lo or 1.0
    if mask is not None:
        ax.fill_between(t, lo, lo + 0.08 * span, where=mask[i0:i1] > 0, color="tab:orange", alpha=0.5,
                        label="true mask", step="mid")
    if pmask is not None:
        ax.fill_between(t, lo - 0.1 * span, lo - 0.02 * span, where=pmask[i0:i1] > 0.5, color="tab:green",
                        alpha=0.5, label="U-Net mask", step="mid")
    if exclude is not None and exclude[i0:i1].any():
        ax.fill_between(t, lo, hi, where=exclude[i0:i1], color="yellow", alpha=0.3, label="excluded (stimulus)")
    if truth_on is not None:
        sel = [v for v in truth_on if t0 <= v < t0 + dur]
        ax.plot(sel, [hi + 0.05 * span] * len(sel), "v", color="tab:orange", ms=6, label="true onset")
    for k, (m, ev) in enumerate(dets.items()):
        sel = [e["onset_s"] for e in ev if t0 <= e["onset_s"] < t0 + dur]
        ax.plot(sel, [hi + (0.12 + 0.07 * k) * span] * len(sel), "|", color=_COLORS.get(m, f"C{k}"), ms=8,
                mew=2, label=m)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(units)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right", ncol=4)
    return fig


def _f1_vs_snr(methods: dict, extra: dict | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for m, e in {**methods, **(extra or {})}.items():
        snrs = sorted(e["by_snr"], key=float)
        ax.plot([float(s) for s in snrs], [e["by_snr"][s]["f1"] for s in snrs], "o-", label=m,
                color=_COLORS.get(m))
    ax.set_xscale("log")
    ax.set_xlabel("SNR (mean amplitude / noise SD)")
    ax.set_ylabel("event F1 (±1 ms)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    return fig


def write_sim_report(out: Path, metrics: dict, test: list[dict], events: dict) -> Path:
    """``OUT/report.html`` of the ``events-sim`` recipe."""
    import matplotlib

    matplotlib.use("Agg")
    methods = metrics["methods"]
    snrs = list(next(iter(methods.values()))["by_snr"])
    best = metrics.get("best_on_test", "cnn_bilstm")
    page = Page("events-sim: simulated mEPP-/mEPSC-like events", kicker="ephys events report",
                pills=[f"{len(test)} held-out recordings", f"onsets matched within ±{metrics['tolerance_ms']:g} ms"],
                source=str(out))
    page.section("Summary",
                 Cards([Card(f"F1 {m}", fmt(e["f1"]), f"precision {fmt(e['precision'])} · recall {fmt(e['recall'])}",
                             frac=e["f1"]) for m, e in methods.items()]),
                 Text(f"Event F1 on {len(test)} held-out recordings, onsets matched one to one within "
                      f"±{metrics['tolerance_ms']:g} ms; detection settings chosen on separate calibration recordings."),
                 Table([[m, fmt(e["f1"]), fmt(e["precision"]), fmt(e["recall"])]
                        + [fmt(v["f1"]) for v in e["by_snr"].values()] + [f"{e['seconds_per_minute']:.2f}"]
                        for m, e in methods.items()],
                       ["method", "F1", "precision", "recall"] + [f"F1 SNR {s}" for s in snrs] + ["s / min of trace"]))
    page.section("F1 against SNR", Fig(_png(_f1_vs_snr(methods)), "F1 against SNR", "Pooled over held-out recordings.",
                                        "f1_snr"))
    traces = []
    for r in test[:2] + [t for t in test if t["snr"] == min(x["snr"] for x in test)][:1]:
        dets = {m: events.get((m, r["id"]), []) for m in methods}
        fig = _stretch(r["x"], r["fs_hz"], r["truth"]["onset_s"], dets, 0.0, 1.0, r["units"],
                       f"{r['id']} (first second)", mask=r["mask"], pmask=events.get(("unet1d_prob", r["id"])))
        traces.append(Fig(_png(fig), f"trace {r['id']}", "Black: trace; triangles: true onsets; ticks: detections; "
                          "orange band: true mask; green band (below): U-Net mask > 0.5."))
    page.section("Traces", *traces)
    avg = []
    for r in test[:2]:
        sign = 1.0 if r["polarity"] == "positive" else -1.0
        ev = events.get((best, r["id"]), [])
        fig, tau = _avg_fig(r["x"], r["fs_hz"], ev, sign, r["units"], f"average event, {r['id']} ({best})")
        avg.append(Fig(_png(fig), f"average event {r['id']}",
                       f"Fitted decay tau {tau:.2f} ms; true decay taus "
                       f"{np.median(r['truth']['decay_tau_ms']):.2f} ms median" if tau else "No fit."))
        avg.append(Fig(_png(_hists(ev, r["units"], f"{r['id']} ({best})")), f"histograms {r['id']}",
                       f"Amplitudes and inter-event intervals of the events {best} detected."))
    page.section(f"Average events and histograms ({best})", *avg)
    return page.write(out)


def _stat(d: dict | None, digits: int = 2) -> str:
    """``median [q25–q75]`` of a :func:`ephys.pipelines.events.apply.summarise_events` entry."""
    if not d or d.get("median") is None:
        return "n/a"
    return f"{d['median']:.{digits}f} [{d['q25']:.{digits}f}–{d['q75']:.{digits}f}]"


def _overview(x, fs, segments, exclude, events: list[dict], rejected: list[dict], units: str, title: str,
              max_points: int = 4000):
    """The whole trace (min / max envelope per pixel column) with every accepted event (tick above)
    and every rejected candidate (cross below) marked; sweeps laid end to end."""
    plt = _plt()
    n = x.size
    step = max(1, n // max_points)
    m = (n // step) * step
    t = np.arange(0, m, step) / fs
    lo = x[:m].reshape(-1, step).min(axis=1)
    hi = x[:m].reshape(-1, step).max(axis=1)
    fig, ax = plt.subplots(figsize=(10, 3.0))
    ax.fill_between(t, lo, hi, color="0.25", lw=0, step="mid")
    if exclude is not None and exclude.any():
        ex = exclude[:m].reshape(-1, step).any(axis=1)
        ax.fill_between(t, -1e12, 1e12, where=ex, color="yellow", alpha=0.3, lw=0, label="stimulus (excluded)")
    for s0, _ in segments[1:]:
        ax.axvline(s0 / fs, color="0.7", lw=0.6)
    # the y range of the analysed samples: a membrane-test step must not flatten the events
    keep = ~exclude[:m].reshape(-1, step).any(axis=1) if exclude is not None else np.ones(lo.size, bool)
    y0, y1 = (float(lo[keep].min()), float(hi[keep].max())) if keep.any() else (float(lo.min()), float(hi.max()))
    span = (y1 - y0) or 1.0
    top, bottom = y1 + 0.06 * span, y0 - 0.06 * span
    ax.set_ylim(bottom - 0.06 * span, top + 0.06 * span)
    ax.plot([e["onset_s"] for e in events], [top] * len(events), "|", color="tab:blue", ms=7, mew=1,
            label=f"{len(events)} events")
    if rejected:
        ax.plot([e["onset_s"] for e in rejected], [bottom] * len(rejected), "x", color="tab:red", ms=4, mew=0.8,
                label=f"{len(rejected)} rejected candidates")
    ax.set_xlabel("time (s; sweeps end to end, grey lines between sweeps)")
    ax.set_ylabel(units)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right", ncol=3)
    return fig


def _densest_second(events: list[dict], duration_s: float, exclude, fs: float, dur: float = 1.0) -> float:
    """Start (s) of the ``dur``-long stretch with the most events and no stimulus sample."""
    on = np.sort([e["onset_s"] for e in events])
    if not on.size:
        return 0.0
    best, best_n = 0.0, -1
    for t0 in np.arange(0.0, max(duration_s - dur, 0.0) + 1e-9, dur / 4):
        i0, i1 = int(t0 * fs), int((t0 + dur) * fs)
        if exclude is not None and exclude[i0:i1].any():
            continue
        k = int(np.searchsorted(on, t0 + dur) - np.searchsorted(on, t0))
        if k > best_n:
            best, best_n = float(t0), k
    return best


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _gallery(x, fs, items: list[dict], units: str, title: str, labels: list[str], ncol: int = 6):
    """Small multiples of candidates (5 ms before to 30 ms after the onset, baseline subtracted)."""
    plt = _plt()
    nrow = max(1, int(np.ceil(len(items) / ncol)))
    fig, axs = plt.subplots(nrow, ncol, figsize=(1.7 * ncol, 1.45 * nrow + 0.35), squeeze=False)
    pre, post = int(5e-3 * fs), int(30e-3 * fs)
    for k, ax in enumerate(axs.ravel()):
        ax.set_xticks([])
        ax.tick_params(labelsize=6)
        if k >= len(items):
            ax.axis("off")
            continue
        i = int(round(items[k]["onset_s"] * fs))
        a, b = max(0, i - pre), min(x.size, i + post)
        y = x[a:b]
        base = float(np.median(x[a:i])) if i > a else float(y[0])
        ax.plot((np.arange(a, b) - i) / fs * 1e3, y - base, color="k", lw=0.6)
        ax.axvline(0, color="tab:blue", lw=0.5, ls=":")
        ax.set_title(labels[k], fontsize=6)
    fig.suptitle(f"{title} (5 ms before to 30 ms after the onset; {units})", fontsize=8)
    fig.tight_layout()
    return fig


def _kinetics_hists(events: list[dict], units: str, title: str):
    """Amplitude, 10-90 % rise, decay tau and inter-event-interval histograms (2 x 2)."""
    plt = _plt()
    fig, axs = plt.subplots(1, 4, figsize=(10, 2.4))
    on = np.sort([e["onset_s"] for e in events])
    vals = [(np.abs([e["amplitude"] for e in events]), f"|amplitude| ({units})"),
            (np.array([e["rise_10_90_ms"] for e in events]), "10-90 % rise (ms)"),
            (np.array([e["decay_tau_ms"] for e in events]), "decay tau (ms)"),
            (np.diff(on) * 1e3 if on.size > 1 else np.array([]), "inter-event interval (ms)")]
    for ax, (v, label) in zip(axs, vals):
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        if label.startswith("decay") and v.size > 20:  # a few poor fits (tau of seconds) must not squash it
            hi = float(np.percentile(v, 99))
            clipped = int((v > hi).sum())
            v = v[v <= hi]
            if clipped:
                label += f" ({clipped} > {hi:.3g} not shown)"
        if v.size:
            ax.hist(v, bins=_bins(v), color="tab:blue")
        else:
            ax.text(0.5, 0.5, "none", ha="center", transform=ax.transAxes)
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axs[0].set_ylabel("events")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def trace_report(out: Path, trace, events: dict, summary: dict, title: str, rejected: dict | None = None) -> Path:
    """``OUT/report.html`` for detections on one real trace (no ground truth needed).

    Summary in words and numbers first (analysed channel and why, polarity and why, events,
    rate, kinetics and shape-check rejections per method; agreement with labels when given); then
    the whole trace with every event and rejected candidate marked, the busiest second of the
    trace with each method's detections, galleries of the smallest and largest accepted events
    and of rejected candidates with their reasons, the amplitude / rise / decay / IEI histograms
    and the average event per method; the raw ``summary.json`` collapsed at the end.
    ``trace``: anything with ``data``, ``fs_hz``, ``units``, ``exclude`` (and ``segments``).
    """
    rejected = rejected or {}
    sign = 1.0 if summary.get("polarity") == "positive" else -1.0
    units = str(summary.get("units") or "")
    per = summary.get("methods") or {}
    fs = float(trace.fs_hz)
    segments = list(getattr(trace, "segments", None) or [(0, trace.data.size)])
    page = Page(title, kicker="ephys events detect",
                pills=[f"{summary.get('fs_hz', 0):g} Hz", units, f"{summary.get('polarity')} events",
                       f"methods: {', '.join(per)}"], source=str(out))
    cards = []
    for m, s in per.items():
        rate = s.get("frequency_hz")
        cards.append(Card(f"{m}: events", f"{s.get('n_events', 0):,}",
                          f"{fmt(rate, 2)} Hz · amplitude {_stat(s.get('amplitude'))} {units}"))
        if "n_rejected" in s:
            cards.append(Card(f"{m}: rejected by shape", f"{s['n_rejected']:,}",
                              f"of {s.get('n_candidates', 0):,} candidates"))
    analysed, excluded = summary.get("analysed_s") or 0.0, summary.get("excluded_s") or 0.0
    words = (f"{summary.get('source')}: {summary.get('duration_s', 0):.1f} s of "
             f"{str(summary.get('mode') or 'trace').replace('_', ' ')} at {summary.get('fs_hz', 0):g} Hz in "
             f"{summary.get('n_segments', 1)} segment(s); {analysed:.1f} s analysed ({excluded:.1f} s of stimulus "
             f"excluded).")
    blocks = [Cards(cards), Text(words)]
    if summary.get("channel"):
        blocks.append(Text(f"Channel: {summary['channel']}."))
    blocks.append(Text(f"Polarity: {summary.get('polarity')} ({summary.get('polarity_reason') or 'given'})."))
    shp = summary.get("shape_check") or {}
    if shp:
        blocks.append(Text("Shape check: " + ("off (every candidate kept)." if not shp.get("enabled", True) else
                                              f"not both rise (10–90 %) and half-width under "
                                              f"{shp['min_half_width_ms']:g} ms (a glitch), amplitude ≥ "
                                              f"{shp.get('min_amplitude_sd', 0):g} noise SDs, rise ≤ "
                                              f"{shp['max_rise_ms']:g} ms, back to half amplitude within "
                                              f"{shp['max_decay_ms']:g} ms of the peak. Rejected candidates: "
                                              "OUT/rejected_METHOD.csv with the reason.")))
    rows = [[m, s.get("n_events", 0), s.get("n_rejected", "n/a"), fmt(s.get("frequency_hz"), 2),
             _stat(s.get("amplitude")), _stat(s.get("rise_10_90_ms")), _stat(s.get("decay_tau_ms")),
             _stat(s.get("iei_ms"), 1), fmt(s.get("seconds_per_minute"), 2)] for m, s in per.items()]
    blocks.append(Table(rows, ["method", "events", "rejected", "rate (Hz)", f"amplitude ({units}) median [IQR]",
                               "rise 10–90 (ms)", "decay tau (ms)", "inter-event interval (ms)", "s / min of trace"],
                        numeric=[False, True, True, True, False, False, False, False, True]))
    reasons = {m: s.get("rejected_by_reason") for m, s in per.items() if s.get("rejected_by_reason")}
    if reasons:
        blocks.append(Table([[m, k, v] for m, r in reasons.items() for k, v in r.items()],
                            ["method", "why rejected", "candidates"], numeric=[False, False, True],
                            title="Rejected by the shape check"))
    scored = {m: s for m, s in per.items() if "f1" in s}
    if scored:
        blocks.append(Table([[m, fmt(s.get("f1")), fmt(s.get("precision")), fmt(s.get("recall"))]
                             for m, s in scored.items()], ["method", "F1", "precision", "recall"],
                            title="Agreement with the given labels"))
    if not any(s.get("n_events") for s in per.values()):
        blocks.append(Notice("No event detected by any method."))
    page.section("Summary", *blocks)

    figs = []
    for m, ev in events.items():
        figs.append(Fig(_png(_overview(trace.data, fs, segments, trace.exclude, ev, rejected.get(m, []), trace.units,
                                       f"whole trace ({m})")), f"whole trace {m}",
                        "Every accepted event (blue ticks above) and rejected candidate (red crosses below); "
                        "yellow: stimulus samples excluded from detection.", f"overview_{m}"))
    first = next(iter(events.values()), [])
    t0 = _densest_second(first, trace.data.size / fs, trace.exclude, fs)
    figs.append(Fig(_png(_stretch(trace.data, fs, None, events, t0, 1.0, trace.units,
                                  f"the busiest second: {t0:.2f}-{t0 + 1:.2f} s", exclude=trace.exclude)),
                    "busiest second", "The second with the most events (no stimulus in it), each method's "
                    "detections as ticks.", "trace"))
    page.section("Trace", *figs)

    gal = []
    for m, ev in events.items():
        by_amp = sorted(ev, key=lambda e: abs(e["amplitude"]))
        if by_amp:
            small, large = by_amp[:6], by_amp[-6:][::-1]
            gal.append(Fig(_png(_gallery(trace.data, fs, small, trace.units, f"{m}: smallest accepted",
                                         [f"{e['onset_s']:.3f} s, {e['amplitude']:.3g}" for e in small])),
                           f"smallest {m}", "The six smallest accepted events.", f"small_{m}"))
            gal.append(Fig(_png(_gallery(trace.data, fs, large, trace.units, f"{m}: largest accepted",
                                         [f"{e['onset_s']:.3f} s, {e['amplitude']:.3g}" for e in large])),
                           f"largest {m}", "The six largest accepted events.", f"large_{m}"))
        rej = rejected.get(m, [])
        if rej:
            pick = [rej[int(i)] for i in np.unique(np.linspace(0, len(rej) - 1, min(12, len(rej))).astype(int))]
            gal.append(Fig(_png(_gallery(trace.data, fs, pick, trace.units, f"{m}: rejected candidates",
                                         [f"{e['onset_s']:.3f} s: {str(e.get('reason', '')).split(':')[0]}"
                                          for e in pick])),
                           f"rejected {m}", f"{len(pick)} of the {len(rej)} rejected candidates, spread over the "
                           "trace, each titled with its reason (rejected_" + m + ".csv lists all).", f"rejected_{m}"))
    if gal:
        page.section("Galleries", *gal)

    figs = []
    for m, ev in events.items():
        figs.append(Fig(_png(_kinetics_hists(ev, trace.units, m)), f"histograms {m}",
                        f"Amplitude, 10–90 % rise, decay tau and inter-event interval of the events {m} accepted.",
                        f"hist_{m}"))
        fig, tau = _avg_fig(trace.data, fs, ev, sign, trace.units, f"average event ({m})")
        figs.append(Fig(_png(fig), f"average event {m}", f"Decay tau of the average: {tau:.2f} ms." if tau else
                        "No decay fit.", f"avg_{m}"))
    page.section("Kinetics", *figs)
    page.section("Raw summary", Details.json("summary.json", summary))
    return page.write(out)
