"""CWT speed: ephys' batched FFT CWT vs PyWavelets' conv and fft methods, one core, one run.

Writes ``benchmarks/results/cwt.json``. Goal (issue #2): >= 50x faster than ``pywt.cwt(...,
method="conv")`` per scalogram of 180 scales x 4800 samples.

    python benchmarks/bench_cwt.py [--n-samples 4800] [--n-scales 180] [--out PATH]
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
import pywt  # noqa: E402

from ephys.pipelines.blocks.signal.cwt import DEFAULT_WAVELET, cwt, cwt_reference, log_scales  # noqa: E402


def _time_ms(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=4800)
    ap.add_argument("--n-scales", type=int, default=180)
    ap.add_argument("--fs-hz", type=float, default=1000.0)
    ap.add_argument("--f-min-hz", type=float, default=2.0)
    ap.add_argument("--f-max-hz", type=float, default=500.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cwt.json")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    # a binned spike train at ~20 Hz in 1 ms bins, the STS input
    signal = (rng.random(args.n_samples) < 0.02).astype(np.float64)
    scales, freqs = log_scales(args.n_scales, args.f_min_hz, args.f_max_hz, args.fs_hz)

    t0 = time.perf_counter()
    ours = cwt(signal, scales)  # first call builds and caches the filter bank
    setup_ms = (time.perf_counter() - t0) * 1e3
    ref = cwt_reference(signal, scales, method="conv")
    rel_err = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))

    ms = {}
    ms["ephys_fft"], t_ours = _time_ms(lambda: cwt(signal, scales), max(20, 4 * args.repeats))
    ms["pywt_conv"], t_conv = _time_ms(lambda: cwt_reference(signal, scales, method="conv"), args.repeats)
    ms["pywt_fft"], t_fft = _time_ms(lambda: cwt_reference(signal, scales, method="fft"), args.repeats)

    result = {
        "benchmark": "cwt",
        "wavelet": DEFAULT_WAVELET,
        "n_scales": args.n_scales,
        "n_samples": args.n_samples,
        "frequency_range_hz": [args.f_min_hz, args.f_max_hz],
        "fs_hz": args.fs_hz,
        "ms_per_scalogram": {k: round(v, 3) for k, v in ms.items()},
        "speedup_vs_pywt_conv": round(ms["pywt_conv"] / ms["ephys_fft"], 2),
        "speedup_vs_pywt_fft": round(ms["pywt_fft"] / ms["ephys_fft"], 2),
        "goal_speedup_vs_pywt_conv": 50,
        "meets_goal": bool(ms["pywt_conv"] / ms["ephys_fft"] >= 50),
        "ephys_filter_bank_setup_ms": round(setup_ms, 3),
        "relative_error_vs_pywt_conv": rel_err,
        "timing": "median wall-clock of repeated calls, one pinned core, same process",
        "raw_ms": {"ephys_fft": t_ours, "pywt_conv": t_conv, "pywt_fft": t_fft},
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "numpy": np.__version__, "pywt": pywt.__version__,
                    "cpus_used": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(json.dumps({k: result[k] for k in ("ms_per_scalogram", "speedup_vs_pywt_conv",
                                              "speedup_vs_pywt_fft", "relative_error_vs_pywt_conv")}))
    return result


if __name__ == "__main__":
    main()
