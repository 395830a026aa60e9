"""MER (ML-STIM) speed: the plain reference vs the fast path on a 10-s 24-kHz recording, one core.

Writes ``benchmarks/results/mer.json``: ``ms_per_recording`` for each (median over repeats, in
the same run), ``speedup_vs_reference``, the feature agreement of the fast path with the plain one
(per feature the largest ``|fast - plain| / |plain|`` over every segment; skewness, whose value can
be near zero, also as an absolute difference) on the benchmark recording, three more simulated
regions and, when ``../shared/data`` is there, the real sigInspect recordings (read as mV), and the
streaming latency per 1-s segment at 24 and 44.1 kHz (processing time from the arrival of the chunk
holding a segment's last sample to its features and an MLP prediction; 0.1-s chunks). Goals (issues
#10, #25): >= 20x faster than the plain implementation; every feature within 1e-3 relative
(skewness 1e-4 absolute); <= 5 ms per segment in the stream.

    python benchmarks/bench_mer.py [--repeats 7] [--out PATH] [--shared-data PATH]
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
os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import numpy as np  # noqa: E402

from ephys.pipelines.mer import dsp, stream, synthetic  # noqa: E402



def _times_ms(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (this process) milliseconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return wall, cpu


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mer.json")
    ap.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data",
                    help="the real data folder (its mer/siginspect recordings join the agreement check)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    x, _ = synthetic.simulate_recording(rng, "stn", 0.3, args.duration_s, 1.0, 0.4, True, True)

    t0 = time.perf_counter()
    f_fast, m_fast = dsp.process_fast(x)  # first call builds the impulse response and caches
    setup_ms = (time.perf_counter() - t0) * 1e3
    f_ref, m_ref = dsp.process_reference(x)
    ref_times, ref_cpu = _times_ms(lambda: dsp.process_reference(x), args.repeats)
    fast_times, fast_cpu = _times_ms(lambda: dsp.process_fast(x), args.repeats * 5)
    ref_ms, fast_ms = statistics.median(ref_times), statistics.median(fast_times)

    zc = dsp.FEATURE_NAMES.index("zero_crossings")
    sk = dsp.FEATURE_NAMES.index("skewness")
    scale = np.abs(f_ref).max(axis=0)
    rel = np.abs(f_fast - f_ref) / scale
    per_feature = {n: float(rel[:, j].max()) for j, n in enumerate(dsp.FEATURE_NAMES) if j != zc}
    zc_diff = int(np.abs(f_fast[:, zc] - f_ref[:, zc]).max())
    # agreement per feature, |fast - plain| / |plain|, over several recordings (and the real ones)
    signals = [("benchmark stn", x)]
    for region in ("above", "gap", "snr"):
        signals.append((region, synthetic.simulate_recording(rng, region, 0.5, 7.3, 1.0, 0.4, True, True)[0]))
    real = args.shared_data / "mer" / "siginspect"
    if real.is_dir():
        from ephys.pipelines.mer.readers import read_input

        signals += [(r.id, r.signal) for r in read_input(real, units="mV")[0]]
    worst_rel, worst_abs, n_segs, masks_all = np.zeros(9), np.zeros(9), 0, True
    for _, sig in signals:
        fr, mr = dsp.process_reference(sig)
        ff, mf = dsp.process_fast(sig)
        masks_all &= bool(np.array_equal(mr, mf))
        if fr.shape[0]:
            worst_rel = np.maximum(worst_rel, (np.abs(ff - fr) / np.abs(fr)).max(axis=0))
            worst_abs = np.maximum(worst_abs, np.abs(ff - fr).max(axis=0))
            n_segs += fr.shape[0]

    # streaming: 0.1-s chunks; time the pushes that complete a segment, plus an MLP forward pass
    w = [rng.normal(size=s) for s in ((9, 7), (7,), (7, 4), (4,), (4, 4), (4,), (4, 2), (2,), (2, 2), (2,))]

    def mlp(f):
        h = np.clip(f, 0, 1)
        for k in range(0, len(w), 2):
            h = h @ w[k] + w[k + 1]
            h = np.tanh(h) if k < len(w) - 2 else h
        e = np.exp(h - h.max(axis=1, keepdims=True))
        return e[:, 1] / e.sum(axis=1)

    def stream_latency(sig, fs):
        lat = []
        chunk = int(round(fs / 10))
        for _ in range(3):
            rs = stream.RecordingStream(fs)
            for pos in range(0, sig.size, chunk):
                t = time.perf_counter()
                feats = rs.push(sig[pos:pos + chunk])
                if feats.shape[0]:
                    mlp(feats)
                    lat.append((time.perf_counter() - t) * 1e3 / feats.shape[0])
        return lat

    lat = stream_latency(x, 24000.0)
    from scipy.signal import resample_poly

    lat44 = stream_latency(resample_poly(x.astype(np.float64), 147, 80), 44100.0)
    res = {
        "benchmark": "mer",
        "signal": f"simulated STN recording, {args.duration_s:g} s at 24 kHz, with artifacts and mains",
        "n_segments": int(f_ref.shape[0]),
        "artifact_fraction": float(m_ref.mean()),
        "masks_equal": bool(np.array_equal(m_ref, m_fast)),
        "ms_per_recording": {"reference": round(ref_ms, 2), "fast": round(fast_ms, 2)},
        "ms_per_recording_min": {"reference": round(min(ref_times), 2), "fast": round(min(fast_times), 2)},
        "speedup_vs_reference": round(ref_ms / fast_ms, 1),
        "speedup_vs_reference_min": round(min(ref_times) / min(fast_times), 1),
        "cpu_ms_per_recording": {"reference": round(statistics.median(ref_cpu), 2),
                                 "fast": round(statistics.median(fast_cpu), 2)},
        "speedup_vs_reference_cpu": round(statistics.median(ref_cpu) / statistics.median(fast_cpu), 1),
        "goal_speedup": 20,
        "max_feature_rel_diff": max(per_feature.values()),
        "feature_rel_diff": per_feature,
        "zero_crossings_max_abs_diff": zc_diff,
        "agreement": {"recordings": [n for n, _ in signals], "n_segments": n_segs, "masks_equal": masks_all,
                      "max_rel_diff": {n: float(f"{worst_rel[j]:.3g}") for j, n in enumerate(dsp.FEATURE_NAMES)},
                      "skewness_max_abs_diff": float(f"{worst_abs[sk]:.3g}"),
                      "goal": "1e-3 relative; skewness 1e-4 absolute"},
        "fast_first_call_ms": round(setup_ms, 1),
        "stream_ms_per_segment": {"median": round(statistics.median(lat), 3),
                                  "p95": round(float(np.percentile(lat, 95)), 3), "max": round(max(lat), 3),
                                  "n": len(lat)},
        "stream_44k1_ms_per_segment": {"median": round(statistics.median(lat44), 3),
                                       "p95": round(float(np.percentile(lat44, 95)), 3), "max": round(max(lat44), 3),
                                       "n": len(lat44)},
        "goal_stream_ms_per_segment": 5,
        "repeats": {"reference": args.repeats, "fast": args.repeats * 5},
        "cores": 1,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "machine": platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "note": "median wall time (and CPU time of this process) on one pinned core of a shared machine; reference = the published algorithm "
                "stage by stage (lfilter x 98 in float32, window loop, one Welch pair per segment)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
