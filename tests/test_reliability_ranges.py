"""Reliability, second pass (issue 28): predictions say when their input lies outside the run's
training range, and errors that need no model come before Keras is imported.

The issue's two cases: a cell recorded with 0.5-s steps given to a demo-like STS run (trained on
simulated 1-s steps), and MER segments whose features are 30 times outside the training range.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys

sys.path.insert(0, str(Path(__file__).parent))


def _rows(folder: Path) -> list[dict]:
    return list(csv.DictReader(open(folder / "predictions.csv")))


def test_mer_features_30x_outside_the_training_range_are_flagged(tmp_path):
    """An MLP on MER features; segments 30x larger than anything it trained on: in_training_range
    false with the reason, counted in summary.json, on stderr and at the top of the report."""
    from ephys.pipelines.core.layouts import write_feature_table
    from ephys.pipelines.core.training import TrainConfig, train
    from ephys.pipelines.mer.dsp import FEATURE_NAMES

    rng = np.random.default_rng(0)
    n = 80
    y = ["outside", "inside"] * (n // 2)
    x = np.abs(rng.normal(1.0, 0.2, (n, len(FEATURE_NAMES)))) + np.array([[0.5 * (v == "inside")] for v in y])
    groups = [f"P{k % 4}" for k in range(n)]
    data = tmp_path / "train"
    write_feature_table(data, [f"s{k:03d}" for k in range(n)], x, FEATURE_NAMES, y, ["outside", "inside"],
                        groups=groups)
    run = train(TrainConfig(model="mlp", data=str(data), epochs=2, batch_size=16, out=str(tmp_path / "run"),
                            eager=True), log=lambda m: None)
    rng_rec = json.loads((run / "training_range.json").read_text())
    assert rng_rec["kind"] == "features" and set(rng_rec["statistics"]) == set(FEATURE_NAMES)
    new = x[:10].copy()
    new[:5] *= 30.0  # five segments 30x outside
    given = tmp_path / "new"
    write_feature_table(given, [f"n{k}" for k in range(10)], new, FEATURE_NAMES, [None] * 10, ["outside", "inside"])
    proc = ephys("predict", run, given, tmp_path / "pred", check=0)
    rows = _rows(tmp_path / "pred")
    assert [r["in_training_range"] for r in rows] == ["false"] * 5 + ["true"] * 5
    assert all("outside the training range" in r["range_note"] for r in rows[:5]) and not rows[5]["range_note"]
    assert json.loads((tmp_path / "pred" / "summary.json").read_text())["n_outside_training_range"] == 5
    warn = [ln for ln in proc.stderr.splitlines() if "outside the run's training range" in ln]
    assert len(warn) == 1 and warn[0].startswith("warning: 5 of 10") and "n0:" in warn[0], proc.stderr
    html = (tmp_path / "pred" / "report.html").read_text()
    assert html.index("Outside the training range") < html.index("Counts per predicted class")


def _cells_with_steps(out: Path, step_s: float, monkeypatch) -> Path:
    """Simulated cells whose long-square steps last ``step_s`` (the simulator's protocol, shortened)."""
    from ephys.pipelines.sts import synthetic

    with monkeypatch.context() as m:
        m.setattr(synthetic, "STEP_S", step_s)
        m.setattr(synthetic, "AFTER_S", 1.3 - step_s)
        m.setattr(synthetic, "SWEEP_S", synthetic.BASELINE_S + 1.3)
        synthetic.fetch_synthetic(out, n_per_class=1, seed=11)
    return out


def test_cells_with_half_second_steps_are_flagged_by_a_demo_like_sts_run(tmp_path, tiny_synthetic, monkeypatch):
    """A tiny STS-like run on simulated 1-s step cells; cells with 0.5-s steps (and, where the real
    recordings are present, the real 171116sh_0018.abf) are outside its protocol length."""
    import tiny_models  # noqa: F401  (registers the tiny model)
    from ephys.pipelines.core.predict import predict_run
    from ephys.pipelines.core.training import TrainConfig, train
    from ephys.pipelines.sts.scalograms import prepare_scalograms

    data = tmp_path / "scalograms"
    prepare_scalograms(tiny_synthetic, data, tiny_synthetic / "labels.csv", scheduler="synchronous", log=lambda m: None)
    run = train(TrainConfig(model="tiny_scalogram", data=str(data), epochs=1, batch_size=4,
                            out=str(tmp_path / "run"), eager=True), log=lambda m: None)
    rec = json.loads((run / "training_range.json").read_text())["statistics"]
    assert rec["protocol_length_s"]["min"] == rec["protocol_length_s"]["max"] == pytest.approx(1.0)
    said: list[str] = []
    inputs = [_cells_with_steps(tmp_path / "half", 0.5, monkeypatch)]
    real = SHARED_DATA / "patchclamp" / "abf" / "171116sh_0018.abf"
    if real.is_file():
        inputs.append(real)
    for k, inp in enumerate(inputs):
        out = predict_run(run, inp, tmp_path / f"pred{k}", log=lambda m: None, notice=said.append)
        rows = _rows(out)
        assert rows and all(r["in_training_range"] == "false" for r in rows), rows
        assert all("protocol_length_s 0.5 outside the training range [1, 1]" in r["range_note"] for r in rows)
    assert said and all(s.startswith("warning: ") and "outside the run's training range" in s for s in said)
    # the run's own kind of cells (1-s steps) stay inside it
    same = predict_run(run, _cells_with_steps(tmp_path / "one", 1.0, monkeypatch), tmp_path / "pred-one",
                       log=lambda m: None, notice=said.append)
    assert {r["range_note"].split(" ")[0] for r in _rows(same) if r["in_training_range"] == "false"} <= \
        {"amplitude", "noise", "rheobase_pA"}  # never the protocol or the sampling rate


# ---------------------------------------------------------------------------------------------
# fast errors: checks before the deep-learning import
# ---------------------------------------------------------------------------------------------

_PROBE = """
import sys
sys.argv = ["ephys", *sys.argv[1:]]
from ephys.cli.main import run
try:
    run()
except SystemExit as exc:
    heavy = sorted(m for m in ("keras", "tensorflow", "torch", "jax") if m in sys.modules)
    print("EXIT", exc.code, ",".join(heavy) or "-")
"""


def _fake_run(tmp_path: Path) -> Path:
    """A finished-looking MER run (config, model file, split, its dataset's manifest)."""
    data = tmp_path / "ds"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({
        "modality": "features", "sample_shape": [9], "samples": [], "label_names": ["outside", "inside"],
        "prepared_by": {"pipeline": "mer", "step": "mer", "input": "/x"}, "parameters": {"fs_hz": None}}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"model: mlp\ndata: {data}\nlabel_names: [outside, inside]\n")
    (run / "model.keras").write_bytes(b"PK")
    (run / "split.json").write_text('{"train": [], "val": [], "test": []}')
    return run


@pytest.mark.parametrize("args", [
    ("train", "--model", "densnet"),
    ("train", "--model", "densenet", "--data", "{tmp}/nothing"),
    ("evaluate",),
    ("evaluate", "{tmp}/nothing"),
    ("explain", "{tmp}/nothing"),
    ("report", "{tmp}/nothing"),
    ("predict", "{run}", "{tmp}/recording.set", "{tmp}/out"),
    ("events", "detect", "{tmp}/nothing.abf", "--run", "{tmp}", "--method", "cnn_bilstm"),
    ("spikes", "cluster", "{tmp}/nothing.1", "--embed", "autoencoder"),
], ids=lambda a: " ".join(a[:2]))
def test_errors_that_need_no_model_come_before_keras(tmp_path, args):
    """A typo in --model, evaluate with no run, predict on a .set file ...: the one-line error with
    neither Keras nor TensorFlow imported (speed: benchmarks/bench_errors.py)."""
    run = _fake_run(tmp_path)
    (tmp_path / "recording.set").write_text("trial_date x\n")
    argv = [a.format(tmp=tmp_path, run=run) for a in args]
    env = {**os.environ, "EPHYS_RUNS": str(tmp_path / "runs"), "EPHYS_DATA": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ephys: error: "), proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "EXIT 2 -", (proc.stdout, proc.stderr)
