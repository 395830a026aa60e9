"""Time to the one-line error of mistakes that need no model (issue 28, "fast errors").

Each command below is a user mistake that no deep-learning library is needed to report: a typo
in ``--model``, ``evaluate`` with no run, ``predict`` on a ``.set`` file, a missing trace or
tetrode. It is run as a user runs it (``ephys ...`` in a fresh process, so the import of the
command line counts) ``--repeat`` times; reported per command: the median and the slowest wall
time, the exit code, and whether Keras / TensorFlow were imported before the error (they must
not be). Goal: every one within 2 s (it took 15-21 s when the backend was imported first).

Writes ``benchmarks/results/errors.json``.

    python benchmarks/bench_errors.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = """
import sys
sys.argv = ["ephys", *sys.argv[1:]]
from ephys.cli.main import run
try:
    run()
except SystemExit as exc:
    heavy = sorted(m for m in ("keras", "tensorflow", "torch", "jax") if m in sys.modules)
    print("EXIT", exc.code, ",".join(heavy) or "-")
"""

CASES = {
    "train: typo in --model": ["train", "--model", "densnet"],
    "train: no such dataset": ["train", "--model", "densenet", "--data", "{tmp}/nothing"],
    "evaluate: no run": ["evaluate"],
    "explain: no such run": ["explain", "{tmp}/nothing"],
    "report: no such run": ["report", "{tmp}/nothing"],
    "predict: a .set file": ["predict", "{run}", "{tmp}/recording.set", "{tmp}/out"],
    "predict: no such run": ["predict", "{tmp}/nothing", "{tmp}/recording.set"],
    "events detect --run: no such trace": ["events", "detect", "{tmp}/nothing.abf", "--run", "{tmp}", "--method",
                                           "cnn_bilstm"],
    "spikes cluster --embed autoencoder: no such tetrode": ["spikes", "cluster", "{tmp}/nothing.1", "--embed",
                                                           "autoencoder"],
}


def _fake_run(tmp: Path) -> Path:
    data = tmp / "ds"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({
        "modality": "features", "sample_shape": [9], "samples": [], "label_names": ["outside", "inside"],
        "prepared_by": {"pipeline": "mer", "step": "mer", "input": "/x"}, "parameters": {"fs_hz": None}}))
    run = tmp / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"model: mlp\ndata: {data}\nlabel_names: [outside, inside]\n")
    (run / "model.keras").write_bytes(b"PK")
    (run / "split.json").write_text('{"train": [], "val": [], "test": []}')
    (tmp / "recording.set").write_text("trial_date x\n")
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "errors.json")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run = _fake_run(tmp)
        env = {**os.environ, "EPHYS_RUNS": str(tmp / "runs"), "EPHYS_DATA": str(tmp / "data")}
        for name, argv in CASES.items():
            argv = [a.format(tmp=tmp, run=run) for a in argv]
            times, last = [], ""
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env,
                                      cwd=tmp, timeout=300)
                times.append(time.perf_counter() - t0)
                last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
            _, code, heavy = (last.split() + ["?", "?", "?"])[:3]
            results[name] = {"command": "ephys " + " ".join(a.replace(str(tmp), "TMP") for a in argv),
                             "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                             "exit_code": code, "deep_learning_imported": heavy != "-",
                             "error": next((ln for ln in proc.stderr.splitlines() if ln.startswith("ephys:")), "")
                             .replace(str(tmp), "TMP")}
            print(f"{name:55s} {results[name]['median_s']:6.2f} s (max {results[name]['max_s']:.2f})  "
                  f"exit {code}  heavy: {heavy}")
    out = {"benchmark": "errors", "goal_s": 2.0, "repeat": args.repeat, "machine": platform.platform(),
           "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d"),
           "all_within_goal": all(r["max_s"] <= 2.0 for r in results.values()),
           "no_deep_learning_import": not any(r["deep_learning_imported"] for r in results.values()),
           "cases": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
