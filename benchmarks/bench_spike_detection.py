"""Spike-detection throughput: ephys' detection vs SpikeInterface's peak detection, one core.

Writes ``benchmarks/results/spike_detection.json``. Goal (issue #5): ephys at least as fast as
SpikeInterface (``speedup_vs_spikeinterface >= 1``) on the same recording, with the same
filtering and threshold, finding the same spikes.

What is compared (one synthetic channel, 30 kHz, float64, µV; default 60 s = 1.8 M samples):

* ``full`` -- raw trace to spike times, the headline number:
    ephys: :func:`ephys.pipelines.spikes.waveforms.detect_spikes` (zero-phase Butterworth band-pass
    300-8000 Hz order 4 + 50 Hz notch Q 30, noise = MAD of the whole filtered trace,
    threshold -5 x noise, 1 ms refractory period, snippets cut);
    SpikeInterface: ``bandpass_filter(freq_min=300, freq_max=8000, filter_order=4)`` (SOS,
    forward-backward = zero phase, as ours) -> ``notch_filter(freq=50, q=30)`` ->
    ``get_noise_levels(method="mad")`` -> ``detect_peaks(method="by_channel",
    peak_sign="neg", detect_threshold=5, exclude_sweep_ms=1.0)``, ``n_jobs=1``, 1 s chunks.
* ``detection_only`` -- on the already filtered trace (ours, computed once): ephys
  ``detect_spikes(..., filtered=True)`` (includes its MAD noise estimate) vs SpikeInterface
  ``detect_peaks`` on a ``NumpyRecording`` of that trace, given our noise level (so the
  thresholds are identical and SpikeInterface does not pay for its noise estimate).

The two detectors define an event differently: ephys reports the first sample of a threshold
crossing, SpikeInterface the sample of the local minimum (isolated within ``exclude_sweep_ms``).
Agreement is therefore counted with a tolerance: a detection matches a known spike (the
trough of the inserted waveform) within ``--tol-ms`` (0.5 ms), and the two detectors' events
match each other within the same tolerance.

    python benchmarks/bench_spike_detection.py [--duration-s 60] [--repeats 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# one core: pin the process and every BLAS/FFT thread pool before numpy is imported
os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")})
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import numpy as np  # noqa: E402

from ephys.pipelines.spikes.waveforms import DetectionParams, bandpass_notch, detect_spikes, noise_level  # noqa: E402

FS = 30000.0


def synthetic_recording(duration_s: float, seed: int = 0, rate_hz: float = 20.0, noise_uV: float = 10.0,
                        amp_uV: float = 150.0) -> tuple[np.ndarray, np.ndarray]:
    """White noise + biphasic spikes (trough at the known sample) >= 5 ms apart + 50 Hz hum + DC."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * FS)
    x = rng.normal(0.0, noise_uV, n)
    slots = np.arange(2, n // 150 - 2)
    times = np.sort(rng.choice(slots, int(rate_hz * duration_s), replace=False)) * 150
    t = np.arange(-30, 60)
    wave = -amp_uV * np.exp(-0.5 * (t / 4.0) ** 2) + 0.4 * amp_uV * np.exp(-0.5 * ((t - 14) / 8.0) ** 2)
    x[times[:, None] + t[None, :]] += wave
    x += 80.0 * np.sin(2 * np.pi * 50.0 * np.arange(n) / FS) + 300.0
    return x, times.astype(np.int64)


def _match(found: np.ndarray, ref: np.ndarray, tol: int) -> int:
    """Number of ``ref`` events with a ``found`` event within ``tol`` samples (one-to-one, greedy)."""
    found = np.sort(found)
    used = np.zeros(found.size, bool)
    hits = 0
    for r in ref:
        lo, hi = np.searchsorted(found, [r - tol, r + tol + 1])
        free = np.flatnonzero(~used[lo:hi])
        if free.size:
            k = lo + free[np.argmin(np.abs(found[lo:hi][free] - r))]
            used[k] = True
            hits += 1
    return hits


def _scores(found: np.ndarray, truth: np.ndarray, tol: int) -> dict:
    hits = _match(found, truth, tol)
    return {"n_detected": int(found.size), "true_positives": hits,
            "recall": round(hits / max(truth.size, 1), 4), "precision": round(hits / max(found.size, 1), 4)}


def _time(fn, repeats: int) -> tuple[float, list[float], object]:
    out = fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--k", type=float, default=5.0, help="threshold in MADs (SpikeInterface's default 5)")
    ap.add_argument("--tol-ms", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "spike_detection.json")
    args = ap.parse_args(argv)

    try:
        import spikeinterface
        import spikeinterface.core as si
        from spikeinterface.preprocessing import bandpass_filter, notch_filter
        from spikeinterface.sortingcomponents.peak_detection import detect_peaks
    except ImportError:
        sys.exit("SpikeInterface is missing: pip install -e '.[bench]' (or `make bench`)")

    x, truth = synthetic_recording(args.duration_s)
    n = x.size
    params = DetectionParams(band_hz=(300.0, 8000.0), notch_hz=50.0, order=4, k=args.k, noise="mad",
                             refractory_ms=1.0)
    job = {"n_jobs": 1, "chunk_duration": "1s", "progress_bar": False}
    si_kwargs = {"peak_sign": "neg", "detect_threshold": args.k, "exclude_sweep_ms": 1.0}
    tol = int(round(args.tol_ms * FS / 1000.0))

    def si_full():
        rec = si.NumpyRecording([x[:, None]], sampling_frequency=FS)
        rec = bandpass_filter(rec, freq_min=300.0, freq_max=8000.0, filter_order=4)
        rec = notch_filter(rec, freq=50.0, q=30)
        noise = si.get_noise_levels(rec, method="mad", return_in_uV=False, random_slices_kwargs={"seed": 0},
                                   n_jobs=1, progress_bar=False)
        return detect_peaks(rec, method="by_channel", method_kwargs={**si_kwargs, "noise_levels": noise},
                            job_kwargs=job)["sample_index"]

    y = bandpass_notch(x, FS, params.band_hz, params.notch_hz, params.order)
    noise_y = np.array([noise_level(y, "mad")])
    rec_y = si.NumpyRecording([y[:, None]], sampling_frequency=FS)

    def si_detect():
        return detect_peaks(rec_y, method="by_channel", method_kwargs={**si_kwargs, "noise_levels": noise_y},
                            job_kwargs=job)["sample_index"]

    res_t = {}
    res_t["ephys_full"], raw_ef, ours = _time(lambda: detect_spikes(x, FS, params)[0], args.repeats)
    res_t["spikeinterface_full"], raw_sf, theirs = _time(si_full, args.repeats)
    res_t["ephys_detection_only"], raw_ed, ours_d = _time(lambda: detect_spikes(y, FS, params, filtered=True)[0],
                                                          args.repeats)
    res_t["spikeinterface_detection_only"], raw_sd, theirs_d = _time(si_detect, args.repeats)
    sps = {k: round(n / v) for k, v in res_t.items()}

    # ephys reports the crossing onset (before the trough): compare each detector to the truth
    # and to each other within the tolerance
    agree = {
        "tolerance_ms": args.tol_ms,
        "n_true_spikes": int(truth.size),
        "ephys_vs_truth": _scores(np.asarray(ours), truth, tol),
        "spikeinterface_vs_truth": _scores(np.asarray(theirs, dtype=np.int64), truth, tol),
        "ephys_events_matched_by_spikeinterface": _match(np.asarray(theirs, dtype=np.int64), np.asarray(ours), tol),
        "spikeinterface_events_matched_by_ephys": _match(np.asarray(ours), np.asarray(theirs, dtype=np.int64), tol),
        "detection_only_same_as_full": {"ephys": bool(np.array_equal(ours, ours_d)),
                                        "spikeinterface_events_matched": _match(np.asarray(theirs_d, dtype=np.int64),
                                                                                np.asarray(theirs, dtype=np.int64), 0)},
    }
    speed = res_t["spikeinterface_full"] / res_t["ephys_full"]
    result = {
        "benchmark": "spike_detection",
        "recording": {"fs_hz": FS, "duration_s": args.duration_s, "n_samples": n, "channels": 1,
                      "dtype": "float64", "spikes": "biphasic, 150 µV trough, 20 Hz, >= 5 ms apart",
                      "noise_uV": 10.0, "hum": "80 µV at 50 Hz + 300 µV DC"},
        "compared": {
            "full": "raw trace -> spike times. ephys detect_spikes (sosfiltfilt band-pass 300-8000 Hz order 4, "
                    "filtfilt notch 50 Hz Q 30, MAD noise of the whole trace, -5 x MAD, 1 ms refractory, snippets) vs "
                    "SpikeInterface bandpass_filter(300, 8000, order 4, forward-backward SOS) + notch_filter(50, q 30) "
                    "+ get_noise_levels(mad) + detect_peaks(by_channel, neg, 5 MAD, exclude_sweep_ms 1.0)",
            "detection_only": "the same, on the trace already filtered by ephys; SpikeInterface is given ephys' "
                              "noise level (identical threshold), ephys computes its own",
        },
        "samples_per_s": sps,
        "seconds": {k: round(v, 4) for k, v in res_t.items()},
        "speedup_vs_spikeinterface": round(speed, 2),
        "speedup_vs_spikeinterface_detection_only": round(res_t["spikeinterface_detection_only"]
                                                          / res_t["ephys_detection_only"], 2),
        "goal_speedup_vs_spikeinterface": 1,
        "meets_goal": bool(speed >= 1),
        "agreement": agree,
        "timing": f"median wall-clock of {args.repeats} calls after one warm-up, one pinned core, n_jobs=1, "
                  "same process",
        "raw_s": {"ephys_full": raw_ef, "spikeinterface_full": raw_sf, "ephys_detection_only": raw_ed,
                  "spikeinterface_detection_only": raw_sd},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "numpy": np.__version__,
                    "scipy": __import__("scipy").__version__, "spikeinterface": spikeinterface.__version__,
                    "cpus_used": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(args.out)
    print(json.dumps({"samples_per_s": sps, "speedup_vs_spikeinterface": result["speedup_vs_spikeinterface"],
                      "speedup_detection_only": result["speedup_vs_spikeinterface_detection_only"],
                      "ephys_vs_truth": agree["ephys_vs_truth"],
                      "spikeinterface_vs_truth": agree["spikeinterface_vs_truth"]}, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
