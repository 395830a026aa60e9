"""Figures and the self-contained ``report.html`` of the events recipes (matplotlib, Agg).

Sections: trace stretches with true and detected events per method, the average detected event
with its single-exponential decay fit, amplitude and inter-event-interval histograms, F1 against
SNR per method, U-Net mask against ground truth.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from ..core.atomic import write_text

__all__ = ["write_sim_report", "trace_report"]

_COLORS = {"cnn_bilstm": "tab:blue", "unet1d": "tab:green", "autoencoder": "tab:purple", "threshold": "tab:gray",
           "miniml": "tab:red", "template": "tab:orange", "deconvolution": "tab:brown"}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fig(title: str, b64: str, caption: str) -> str:
    return (f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>"
            f"<p>{html.escape(caption)}</p>")


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
    try:
        popt, _ = curve_fit(lambda u, a, tau, c: a * np.exp(-(u - t[k]) / tau) + c, tt, yy,
                            p0=(avg[k], 3.0, 0.0), maxfev=4000)
        tau = float(popt[1])
        ax.plot(tt, popt[0] * np.exp(-(tt - t[k]) / popt[1]) + popt[2], "r--", label=f"fit tau {tau:.2f} ms")
    except (RuntimeError, ValueError):
        pass
    ax.set_xlabel("time from onset (ms)")
    ax.set_ylabel(units)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig, tau


def _hists(events: list[dict], units: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(7, 2.6))
    amps = np.array([e["amplitude"] for e in events])
    on = np.sort([e["onset_s"] for e in events])
    axs[0].hist(np.abs(amps), bins=30, color="tab:blue")
    axs[0].set_xlabel(f"|amplitude| ({units})")
    axs[1].hist(np.diff(on) * 1e3 if on.size > 1 else [], bins=30, color="tab:green")
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
    parts = ["<html><head><meta charset='utf-8'><title>events-sim</title></head><body>",
             "<h1>events-sim: simulated mEPP-/mEPSC-like events</h1>",
             f"<p>Held-out recordings: {len(test)}. Onsets matched one to one within "
             f"±{metrics['tolerance_ms']:g} ms.</p>"]
    rows = ["<table border=1 cellpadding=3><tr><th>method</th><th>F1</th><th>precision</th><th>recall</th>"
            + "".join(f"<th>F1 SNR {s}</th>" for s in next(iter(metrics["methods"].values()))["by_snr"])
            + "<th>s / min of trace</th></tr>"]
    for m, e in metrics["methods"].items():
        rows.append(f"<tr><td>{m}</td><td>{e['f1']:.3f}</td><td>{e['precision']:.3f}</td><td>{e['recall']:.3f}</td>"
                    + "".join(f"<td>{v['f1']:.3f}</td>" for v in e["by_snr"].values())
                    + f"<td>{e['seconds_per_minute']:.2f}</td></tr>")
    parts.append("".join(rows) + "</table>")
    parts.append(_fig("F1 against SNR", _png(_f1_vs_snr(metrics["methods"])), "Pooled over held-out recordings."))
    for r in test[:2] + [t for t in test if t["snr"] == min(x["snr"] for x in test)][:1]:
        dets = {m: events.get((m, r["id"]), []) for m in metrics["methods"]}
        fig = _stretch(r["x"], r["fs_hz"], r["truth"]["onset_s"], dets, 0.0, 1.0, r["units"],
                       f"{r['id']} (first second)", mask=r["mask"], pmask=events.get(("unet1d_prob", r["id"])))
        parts.append(_fig(f"Trace {r['id']}", _png(fig), "Black: trace; triangles: true onsets; ticks: detections; "
                          "orange band: true mask; green band (below): U-Net mask > 0.5."))
    best = metrics.get("best_on_test", "cnn_bilstm")
    for r in test[:2]:
        sign = 1.0 if r["polarity"] == "positive" else -1.0
        ev = events.get((best, r["id"]), [])
        fig, tau = _avg_fig(r["x"], r["fs_hz"], ev, sign, r["units"], f"average event, {r['id']} ({best})")
        parts.append(_fig(f"Average event {r['id']}", _png(fig),
                          f"Fitted decay tau {tau:.2f} ms; true decay taus "
                          f"{np.median(r['truth']['decay_tau_ms']):.2f} ms median" if tau else "no fit"))
        parts.append(_fig(f"Histograms {r['id']}", _png(_hists(ev, r["units"], f"{r['id']} ({best})")), ""))
    parts.append("</body></html>")
    return write_text(Path(out) / "report.html", "\n".join(parts))


def trace_report(out: Path, trace, events: dict, summary: dict, title: str) -> Path:
    """``OUT/report.html`` for detections on one real trace (no ground truth)."""
    import matplotlib

    matplotlib.use("Agg")
    sign = 1.0 if summary.get("polarity") == "positive" else -1.0
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>",
             f"<h1>{html.escape(title)}</h1>", "<pre>" + html.escape(_summary_text(summary)) + "</pre>"]
    fig = _stretch(trace.data, trace.fs_hz, None, events, 0.0, 1.0, trace.units, "first second of sweep 1",
                   exclude=trace.exclude)
    parts.append(_fig("Trace", _png(fig), "Yellow: stimulus samples excluded from detection."))
    for m, ev in events.items():
        fig, tau = _avg_fig(trace.data, trace.fs_hz, ev, sign, trace.units, f"average event ({m})")
        parts.append(_fig(f"Average event {m}", _png(fig), f"decay tau of the average: {tau:.2f} ms" if tau else ""))
        parts.append(_fig(f"Histograms {m}", _png(_hists(ev, trace.units, m)), ""))
    parts.append("</body></html>")
    return write_text(Path(out) / "report.html", "\n".join(parts))


def _summary_text(summary: dict) -> str:
    import json

    return json.dumps(summary, indent=1, default=str)[:6000]
