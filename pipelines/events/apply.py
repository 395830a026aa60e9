"""``ephys events detect``: run trained event detectors on a recording and write ``events.csv``.

Models come from an ``events-sim`` output folder (``runs/cnn_bilstm``, ``runs/unet1d``,
``runs/autoencoder``, the autoencoder threshold and each method's detection settings
(``detection_params``, chosen on that run's calibration recordings) in ``metrics.json``);
``threshold`` needs no model. Sampling rate: the models were trained on traces at the rates listed in that
``metrics.json`` (``train_fs_hz``); a trace at another rate is resampled
(``scipy.signal.resample_poly``) to the nearest of them, or refused with ``resample=False``.

Output folder: ``events_<method>.csv`` per method (columns of
:data:`ephys.pipelines.events.detect.EVENT_COLUMNS`, times in s of the trace; the candidates that
passed the shape check of :mod:`.shape`), ``rejected_<method>.csv`` (those that did not, with the
reason), ``events.nwb`` (:mod:`.nwb`), ``summary.json``
(per method: number of events, frequency in Hz over the analysed time (stimulus samples
excluded), amplitude / rise / decay / charge medians and IQRs; and, with labels, event-level
precision / recall / F1), ``report.html``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np

from ..core.atomic import write_json
from ..core.errors import EphysError
from . import detect as D
from .readers import Trace, check_polarity, read_event_csv, read_trace
from .shape import REJECTED_COLUMNS, ShapeLimits, shape_reason

__all__ = ["load_detectors", "method_probability", "detect_trace", "run_detect", "summarise_events", "ALL_METHODS",
           "check_trace", "check_events", "choose_polarity", "channel_text"]

ALL_METHODS = ("cnn_bilstm", "unet1d", "autoencoder", "threshold")

#: shortest trace (s, outside stimulus samples) detection runs on: a baseline and several decays
MIN_DURATION_S = 0.5
#: robust noise SD a patch-clamp trace can have, per unit: outside it the units are wrong (a trace
#: in nA read as pA has ~1000x too little noise; typical whole-cell noise is 1-10 pA, 0.05-1 mV)
NOISE_RANGE = {"pA": (0.05, 1000.0), "mV": (0.001, 50.0)}
#: a median event amplitude above this in current clamp (mV) is action potentials or stimulus
#: responses, not miniature synaptic events (mEPPs and minis are 0.1-10 mV)
MAX_MEDIAN_MV = 20.0


def check_trace(trace: Trace) -> float:
    """Refuse a trace event detection cannot be trusted on; returns its robust noise SD (trace units).

    Raises
    ------
    EphysError
        Shorter than :data:`MIN_DURATION_S` (or that much outside stimulus steps), flat, or a
        noise level outside :data:`NOISE_RANGE` for its units (a unit mistake).
    """
    analysed = float((~trace.exclude).sum()) / trace.fs_hz
    if trace.duration_s < MIN_DURATION_S:
        raise EphysError(f"the trace is {trace.duration_s * 1e3:.3g} ms long; event detection needs at least "
                         f"{MIN_DURATION_S:g} s of recording", trace.source)
    if analysed < MIN_DURATION_S:
        raise EphysError(f"only {analysed:.3g} s of the {trace.duration_s:.3g}-s trace lie outside stimulus steps "
                         "(the command departs from its holding level almost everywhere: a step protocol, not "
                         "spontaneous activity)", trace.source)
    if not np.ptp(trace.data[~trace.exclude]) > 0:
        raise EphysError("the trace is flat (every sample equal): no noise and no events", trace.source)
    noise = D.trace_noise_sd(trace.data, trace.fs_hz, trace.exclude)
    lo, hi = NOISE_RANGE.get(trace.units, (0.0, np.inf))
    if noise < lo or noise > hi:
        other = {"pA": ("nA", "fA"), "mV": ("V", "µV")}.get(trace.units, ("?", "?"))
        raise EphysError(f"noise level {noise:.3g} {trace.units} (robust SD) is {'below' if noise < lo else 'above'} "
                         f"any patch-clamp recording's ({lo:g}-{hi:g} {trace.units}): is the trace in "
                         f"{other[0] if noise < lo else other[1]} rather than {trace.units}? (.npy: --units; "
                         "other files: their stored unit)", trace.source)
    return noise


def _threshold_count(trace: Trace, polarity: str) -> int:
    prob = np.zeros(trace.n_samples)
    for s0, s1 in trace.segments:
        prob[s0:s1] = D.threshold_probability(trace.data[s0:s1], trace.fs_hz, polarity)
    return len(D.detect_events(trace.data, trace.fs_hz, prob, polarity, None, segments=trace.segments,
                               exclude=trace.exclude))


def _high_passed(trace: Trace) -> np.ndarray:
    """The trace low-passed at 1 kHz minus its 50-ms running median, per segment, stimulus samples
    left out (trace units)."""
    from scipy.ndimage import median_filter

    parts = []
    for s0, s1 in trace.segments:
        y = D.smooth(trace.data[s0:s1], trace.fs_hz, 1000.0)
        w = max(3, int(0.05 * trace.fs_hz))
        step = max(1, w // 15)
        base = median_filter(y[::step], size=max(3, (w // step) | 1), mode="nearest")
        r = y - np.interp(np.arange(y.size), np.arange(0, y.size, step)[: base.size], base)
        parts.append(r[~trace.exclude[s0:s1]])
    return np.concatenate(parts) if parts else np.zeros(0)


def _shape_events(trace: Trace, polarity: str, limits: ShapeLimits) -> list[dict]:
    """The threshold detector's candidates of ``polarity`` that pass the shape check."""
    prob = np.zeros(trace.n_samples)
    for s0, s1 in trace.segments:
        prob[s0:s1] = D.threshold_probability(trace.data[s0:s1], trace.fs_hz, polarity)
    return D.detect_events(trace.data, trace.fs_hz, prob, polarity, None, segments=trace.segments,
                           exclude=trace.exclude, reject=partial(shape_reason, limits=limits))


#: ``--polarity auto``: one sign wins on shape when it has at least this many candidates with
#: event shape and this many times the other sign's
AUTO_MIN_EVENTS, AUTO_RATIO = 5, 2.0
#: ``--polarity auto``: otherwise the skew of the high-passed trace decides when at least this large
AUTO_MIN_SKEW = 0.2


def choose_polarity(trace: Trace, limits: ShapeLimits = ShapeLimits()) -> tuple[str, str, dict]:
    """``--polarity auto``: the sign of the trace's events, why, and the evidence.

    The plain threshold detector is run for both signs and its candidates pass the shape check
    (:func:`ephys.pipelines.events.shape.shape_reason`); a sign with at least
    :data:`AUTO_MIN_EVENTS` candidates of event shape and :data:`AUTO_RATIO` times the other's
    wins. Otherwise the skew of the high-passed trace (:func:`_high_passed`; events of one sign
    make its distribution lean their way) decides when ``|skew| >=`` :data:`AUTO_MIN_SKEW`;
    otherwise the recording mode's usual sign (inward currents in voltage clamp, depolarisations
    in current clamp).

    Returns
    -------
    (``"negative"`` | ``"positive"``, one sentence, {"negative": n, "positive": n, "skew": float})
    """
    from scipy.stats import skew

    n = {pol: len(_shape_events(trace, pol, limits)) for pol in ("negative", "positive")}
    hp = _high_passed(trace)
    sk = float(skew(hp)) if hp.size > 2 and np.ptp(hp) > 0 else 0.0
    ev = {**n, "skew": sk}
    counts = f"{n['negative']} negative and {n['positive']} positive threshold candidates with event shape"
    big = max(n, key=n.get)
    small = "positive" if big == "negative" else "negative"
    mode = trace.mode.replace("_", " ")
    if n[big] >= AUTO_MIN_EVENTS and n[big] >= AUTO_RATIO * max(n[small], 1):
        pol, why = big, f"{counts} (skew of the high-passed trace {sk:+.2f})"
    elif abs(sk) >= AUTO_MIN_SKEW:
        pol = "positive" if sk > 0 else "negative"
        why = f"skew of the high-passed trace {sk:+.2f} ({counts}: no clear winner)"
    else:
        return trace.polarity, f"no clear sign ({counts}, skew {sk:+.2f}): the usual sign in {mode}", ev
    if pol != trace.polarity:
        kind = ("outward currents, or an inverted trace" if trace.mode == "voltage_clamp" else
                "hyperpolarising events (IPSPs), an inverted trace, or a current stored as a potential")
        why += f"; not the usual sign in {mode}: {kind}"
    return pol, why, ev


def check_events(trace: Trace, events: dict, polarity: str, polarity_given: bool, log=print) -> None:
    """Refuse results that say the input is not what detection assumes.

    Raises
    ------
    EphysError
        Current-clamp events of median amplitude above :data:`MAX_MEDIAN_MV` (action potentials).
        With a polarity given explicitly (``polarity_given``), far more threshold events of the
        other sign only draw a warning through ``log`` (``--polarity auto`` already chose the
        sign with more events of event shape).
    """
    if trace.units == "mV":
        for m, ev in events.items():
            amps = np.abs([e["amplitude"] for e in ev])
            if amps.size >= 3 and float(np.median(amps)) > MAX_MEDIAN_MV:
                raise EphysError(f"{m} found {amps.size} events of median amplitude {np.median(amps):.3g} mV: these "
                                 "are action potentials or stimulus responses, not miniature synaptic events (a "
                                 "current-clamp step recording?)", trace.source)
    if not polarity_given:
        return
    other = "positive" if polarity == "negative" else "negative"
    n_given = len(events["threshold"]) if "threshold" in events else _threshold_count(trace, polarity)
    n_other = _threshold_count(trace, other)
    if n_other >= 10 and n_other >= 5 * max(n_given, 1):
        log(f"warning: {trace.source}: {n_given} events of {polarity} polarity but {n_other} of {other} "
            f"(threshold detector): the trace looks inverted or recorded in the other clamp mode ({trace.units}, "
            f"{trace.mode.replace('_', ' ')}); --polarity auto would choose {other}")


def load_detectors(run_dir: str | Path | None, methods) -> dict:
    """Models of an ``events-sim`` folder for ``methods``.

    Raises
    ------
    EphysError
        A method that needs a model but no (or an incomplete) run folder.
    """
    from ..core.models import load_keras_model

    out: dict = {"train_fs_hz": None}
    needs = [m for m in methods if m != "threshold"]
    if not needs:
        return out
    if run_dir is None:
        raise EphysError(f"methods {', '.join(needs)} need --run (an `ephys reproduce events-sim` folder)", "--run")
    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not mpath.is_file():
        raise EphysError("no metrics.json: not an events-sim output folder", run_dir)
    meta = json.loads(mpath.read_text())
    out["train_fs_hz"] = meta.get("train_fs_hz")
    for m in needs:  # the per-sample models need no loss to predict (runs of older versions load too)
        out[m] = load_keras_model(run_dir / "runs" / m / "model.keras", compile=m == "cnn_bilstm")
    out["autoencoder_threshold"] = meta.get("autoencoder_threshold")
    if "autoencoder" in needs and out["autoencoder_threshold"] is None:
        from .seg import read_threshold

        out["autoencoder_threshold"] = read_threshold(run_dir / "runs" / "autoencoder")
    # detection settings chosen on the run's calibration recordings (older runs: the defaults)
    out["params"] = {m: D.DetectionParams(**{**v, "search_ms": tuple(v["search_ms"])})
                     for m, v in (meta.get("detection_params") or {}).items()}
    return out


class _FixedBatch:
    """A Keras model whose ``predict`` runs fixed-shape batches (:func:`.seg.predict_padded`), for
    callers that call ``model.predict(x, batch_size=..., verbose=0)`` chunk by chunk."""

    def __init__(self, model):
        self.model = model

    def predict(self, x, batch_size: int = 512, verbose=0):
        from .seg import predict_padded

        return predict_padded(self.model, x, batch_size)


def method_probability(method: str, det: dict, x: np.ndarray, fs_hz: float, polarity: str) -> np.ndarray:
    """Per-sample event probability (n,) of ``method`` for trace ``x``."""
    from .windows import normalise_trace

    if method == "threshold":
        return D.threshold_probability(x, fs_hz, polarity)
    if method == "cnn_bilstm":
        from .windows import window_probability

        return window_probability(_FixedBatch(det["cnn_bilstm"]), x, polarity)
    from . import seg

    z = normalise_trace(x, fs_hz, polarity)
    if method == "unet1d":
        return seg.predict_unet(det["unet1d"], z)
    if method == "autoencoder":
        return (seg.anomaly_score(det["autoencoder"], z, fs_hz) > float(det["autoencoder_threshold"])).astype(float)
    raise EphysError(f"unknown method {method!r}; known: {', '.join(ALL_METHODS)}", "--method")


def _resample(trace: Trace, rates, allow: bool) -> Trace:
    if not rates or any(abs(trace.fs_hz - r) < 1e-6 * r for r in rates):
        return trace
    target = min(rates, key=lambda r: abs(np.log(r / trace.fs_hz)))
    if not allow:
        raise EphysError(f"sampling rate {trace.fs_hz:g} Hz: the models were trained at "
                         f"{', '.join(f'{r:g}' for r in rates)} Hz (drop --no-resample to resample)", trace.source)
    from scipy.signal import resample_poly

    fr = Fraction(target / trace.fs_hz).limit_denominator(1000)
    parts, segs, excl, start = [], [], [], 0
    for s0, s1 in trace.segments:
        y = resample_poly(trace.data[s0:s1], fr.numerator, fr.denominator)
        e = resample_poly(trace.exclude[s0:s1].astype(float), fr.numerator, fr.denominator) > 0.01
        parts.append(y)
        excl.append(e)
        segs.append((start, start + y.size))
        start += y.size
    return Trace(np.concatenate(parts), target, trace.units, trace.mode, segs, np.concatenate(excl), trace.source,
                 {**trace.meta, "resampled_from_hz": trace.fs_hz})


def detect_trace(trace: Trace, det: dict, methods, polarity: str,
                 limits: ShapeLimits = ShapeLimits()) -> tuple[dict, dict, dict]:
    """Events per method on one trace, each method's candidates through the shape check
    (:func:`ephys.pipelines.events.shape.shape_reason` with ``limits``, inside
    :func:`ephys.pipelines.events.detect.detect_events`).

    Returns (accepted events by method, rejected candidates by method (with ``reason``), seconds
    by method).
    """
    events, rejected, secs = {}, {}, {}
    for m in methods:
        t0 = time.perf_counter()
        prob = np.zeros(trace.n_samples)
        for s0, s1 in trace.segments:
            prob[s0:s1] = method_probability(m, det, trace.data[s0:s1], trace.fs_hz, polarity)
        rejected[m] = []
        events[m] = D.detect_events(trace.data, trace.fs_hz, prob, polarity, det.get("params", {}).get(m),
                                    segments=trace.segments, exclude=trace.exclude,
                                    reject=partial(shape_reason, limits=limits), rejected=rejected[m])
        secs[m] = time.perf_counter() - t0
    return events, rejected, secs


def _stats(v) -> dict:
    v = np.asarray([a for a in v if np.isfinite(a)], dtype=np.float64)
    if not v.size:
        return {"median": None, "q25": None, "q75": None, "n": 0}
    q = np.percentile(v, [25, 50, 75])
    return {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2]), "n": int(v.size)}


def summarise_events(events: list[dict], analysed_s: float) -> dict:
    """Frequency (Hz) and distributions of amplitude, rise, decay, charge and IEI."""
    on = np.sort([e["onset_s"] for e in events])
    return {"n_events": len(events), "frequency_hz": len(events) / analysed_s if analysed_s else None,
            "amplitude": _stats([e["amplitude"] for e in events]),
            "rise_10_90_ms": _stats([e["rise_10_90_ms"] for e in events]),
            "decay_tau_ms": _stats([e["decay_tau_ms"] for e in events]),
            "charge": _stats([e["charge"] for e in events]),
            "iei_ms": _stats(np.diff(on) * 1e3 if on.size > 1 else [])}


def channel_text(trace: Trace) -> str:
    """The analysed channel in words, e.g. ``ADC 0 'IN 0' (pA): amplifier telegraph ...``."""
    m = trace.meta
    if m.get("format") == "abf":
        return (f"ADC {m.get('channel')} '{m.get('adc_name', '')}' ({m.get('adc_units', trace.units)}), "
                f"{trace.mode.replace('_', ' ')}; chosen by {m.get('channel_reason', '?')}")
    if m.get("format") == "nwb":
        return f"series {', '.join(m.get('series', []))} ({trace.units}, {trace.mode.replace('_', ' ')})"
    return f"the array ({trace.units}, {trace.mode.replace('_', ' ')}, as --units says)"


def _reason_counts(rejected: list[dict]) -> dict:
    out: dict[str, int] = {}
    for e in rejected:
        k = str(e.get("reason", "")).split(":")[0]
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run_detect(path: str | Path, out: str | Path, *, run_dir=None, methods=("threshold",), fs_hz=None,
               units=None, polarity="auto", labels=None, resample: bool = True, channel=None, report: bool = True,
               shape: ShapeLimits = ShapeLimits(), nwb: bool = True, log=print, import_backend=None) -> dict:
    """Read a trace, detect with each method, write the output folder; returns ``summary.json``.
    ``import_backend`` (optional) is called once the inputs are checked, before a model is loaded.

    Writes ``events_METHOD.csv`` (accepted events), ``rejected_METHOD.csv`` (candidates without
    event shape, :data:`ephys.pipelines.events.shape.REJECTED_COLUMNS`, with the reason),
    ``summary.json`` (channel and why, polarity and why, the shape limits, per method counts and
    distributions), ``events.nwb`` (:func:`ephys.pipelines.events.nwb.write_events_nwb`, when
    ``nwb``) and ``report.html``.

    Raises
    ------
    EphysError
        Unreadable trace or labels (names the file, row, field), unknown method, missing models,
        a sampling rate the models were not trained at with ``resample=False``, a trace detection
        cannot be trusted on (:func:`check_trace`) or results that say so (:func:`check_events`),
        a report that cannot be drawn (names ``OUT/report.html``).
    """
    methods = list(methods)
    for m in methods:
        if m not in ALL_METHODS:
            raise EphysError(f"unknown method {m!r}; known: {', '.join(ALL_METHODS)}", "--method")
    trace = read_trace(path, fs_hz=fs_hz, units=units, channel=channel)
    auto = polarity in (None, "", "auto")
    pol = check_polarity(None if auto else polarity, trace)
    truth = read_event_csv(labels, trace.duration_s) if labels else None
    check_trace(trace)
    if import_backend is not None and any(m != "threshold" for m in methods):
        import_backend()  # only now: every input has been checked
    det = load_detectors(run_dir, methods)
    trace = _resample(trace, det.get("train_fs_hz"), resample)
    if auto:
        pol, why, evidence = choose_polarity(trace, shape)
    else:
        why, evidence = "given by --polarity", {}
    events, rejected, secs = detect_trace(trace, det, methods, pol, shape)
    check_events(trace, events, pol, not auto, log)
    out = Path(out)
    analysed = float((~trace.exclude).sum()) / trace.fs_hz
    summary = {"source": str(path), "fs_hz": trace.fs_hz, "units": trace.units, "mode": trace.mode,
               "channel": channel_text(trace), "channel_index": trace.meta.get("channel"),
               "polarity": pol, "polarity_reason": why, "polarity_evidence": evidence,
               "duration_s": trace.duration_s, "analysed_s": analysed,
               "n_segments": len(trace.segments), "excluded_s": trace.duration_s - analysed,
               "shape_check": {**asdict(shape)}, "methods": {}}
    for m, ev in events.items():
        D.events_to_csv(out / f"events_{m}.csv", ev)
        D.events_to_csv(out / f"rejected_{m}.csv", rejected[m], REJECTED_COLUMNS)
        s = summarise_events(ev, analysed)
        s["n_candidates"] = len(ev) + len(rejected[m])
        s["n_rejected"] = len(rejected[m])
        s["rejected_by_reason"] = _reason_counts(rejected[m])
        s["seconds_per_minute"] = secs[m] / (trace.duration_s / 60.0)
        if truth is not None:
            from .metrics import event_prf

            s.update({k: v for k, v in event_prf(truth["onset_s"], [e["onset_s"] for e in ev]).items()})
        summary["methods"][m] = s
    if nwb:
        from .nwb import write_events_nwb

        summary["nwb"] = write_events_nwb(out / "events.nwb", trace, events, summary).name
    write_json(out / "summary.json", summary)
    if report:
        from .report import trace_report

        try:
            trace_report(out, trace, events, summary, f"events in {Path(path).name}", rejected=rejected)
        except EphysError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to draw is reported as one line
            raise EphysError(f"the report could not be drawn ({type(exc).__name__}: {str(exc)[:160]})",
                             out / "report.html") from exc
    return summary
