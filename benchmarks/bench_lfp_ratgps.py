"""``ephys reproduce lfp-ratgps`` wall time against its goal (issue #11: within 15 minutes on 2 CPU cores).

Runs the recipe once on ``../shared/data/lfp_spikes/ratgps`` (skips, saying so, when absent) and
writes ``benchmarks/results/lfp_ratgps.json``: wall seconds, the goal, the peak resident memory
(``getrusage`` ``ru_maxrss`` of this process, which runs the recipe in-process), CPU count, the
load average at start and end (a shared machine makes the wall time an upper bound), and the
pooled and per-unit ROC-AUC of both models.

    python benchmarks/bench_lfp_ratgps.py [--epochs 40] [--out PATH]

``--epochs`` defaults to the recipe's (40, with early stopping after 2 epochs without a better
inner-validation loss), so the benchmark times ``ephys reproduce lfp-ratgps`` as a user runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lfp_spikes" / "ratgps"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lfp_ratgps.json")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return {}
    from ephys.pipelines.lfp.recipes import reproduce_ratgps

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        m = reproduce_ratgps(DATA, Path(tmp) / "run", epochs=args.epochs, log=lambda s: None)
    wall = time.perf_counter() - t0
    res = {"benchmark": "reproduce lfp-ratgps", "wall_s": round(wall, 1), "goal_s": 900, "meets_goal": wall <= 900,
           "epochs": args.epochs, "cpu_count": os.cpu_count(), "load_average_start": load0,
           "load_average_end": os.getloadavg(), "platform": platform.platform(),
           "cpu_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime
                          + resource.getrusage(resource.RUSAGE_SELF).ru_stime, 1),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
           "bilstm_pooled_roc_auc": m["roc_auc"], "glm_pooled_roc_auc": m["reference"]["roc_auc"],
           "per_unit_roc_auc": {k: {"bilstm": v["roc_auc"], "glm": m["reference"]["per_unit"][k]["roc_auc"]}
                                for k, v in m["per_unit"].items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
