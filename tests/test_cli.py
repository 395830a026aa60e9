"""The CLI as a user meets it: help, version, bad input (one line, exit 2), the whole chain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ephys, one_line_error


def test_help_for_every_verb():
    top = ephys("--help", check=0).stdout
    for verb in ("fetch", "prepare", "train", "evaluate", "explain", "report"):
        assert verb in top
    for args in (["fetch", "--help"], ["fetch", "synthetic", "--help"], ["fetch", "weights", "--help"],
                 ["prepare", "scalograms", "--help"], ["train", "--help"], ["evaluate", "--help"],
                 ["explain", "--help"], ["report", "--help"]):
        out = ephys(*args, check=0).stdout
        assert "Usage" in out and len(out) > 200, args


def test_version_names_keras_backend_and_gpu():
    out = ephys("--version", check=0).stdout
    assert out.startswith("ephys 0.")
    assert "keras 3." in out and "backend " in out and "gpu " in out


def test_missing_path(tmp_path):
    one_line_error(ephys("prepare", "scalograms", tmp_path / "nope", tmp_path / "out"), "nope", "no such")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_non_nwb_file(tmp_path):
    bad = tmp_path / "fake.nwb"
    bad.write_text("this is not HDF5")
    proc = ephys("prepare", "scalograms", bad, tmp_path / "out", "--scheduler", "synchronous")
    one_line_error(proc, "fake.nwb")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(ephys("prepare", "scalograms", tmp_path / "empty", tmp_path / "out"), "empty", "no recordings")


def test_labels_csv_naming_a_missing_cell(tiny_synthetic, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + f"{tiny_synthetic}/does_not_exist.nwb,Pvalb\n")
    one_line_error(ephys("prepare", "scalograms", tiny_synthetic, tmp_path / "out", "--labels", labels),
                    "does_not_exist.nwb")


def test_train_without_dataset_and_unknown_model(tmp_path):
    one_line_error(ephys("train", "--model", "densenet", "--data", tmp_path / "nothing"), "nothing")
    one_line_error(ephys("train", "--model", "vgg99", "--data", tmp_path), "vgg99")
    one_line_error(ephys("evaluate", tmp_path), "config.yaml")


def test_train_refuses_bad_hparam_and_decision_before_any_work(tmp_path):
    run = tmp_path / "run"
    one_line_error(ephys("train", "--model", "gru", "--data", tmp_path, "--hparam", "widht=3", "--out", run),
                   "--hparam: model gru has no hyper-parameter widht", "accepts: dropout, width")
    one_line_error(ephys("train", "--model", "cnn", "--data", tmp_path, "--hparam", "width=abc", "--out", run),
                   "--hparam: model cnn1d: width must be an integer >= 1, not 'abc'")
    one_line_error(ephys("train", "--model", "gru", "--data", tmp_path, "--decision", "best", "--out", run),
                   "--decision must be argmax or val_macro_f1, not 'best'")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"model": "gru", "data": str(tmp_path), "decision": "max"}))
    one_line_error(ephys("train", "--config", cfg, "--out", run), "config.yaml", "`decision` must be argmax")
    assert not run.exists()
    # the check imports no Keras (so it answers in about a second)
    code = ("import sys; from ephys.pipelines.core.training import TrainConfig, check_config; "
            "from ephys.pipelines.core.models import describe_models; describe_models(); "
            "check_config(TrainConfig(data='ds', model='gru', hparams={'width': 8})); "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)


def test_models_lists_hparams():
    out = ephys("models", check=0).stdout
    assert "bn_momentum" in out and "keep_channels" in out and "hidden" in out  # names, per model
    full = ephys("models", "--hparams", check=0).stdout
    for model in ("densenet121", "gru", "mlp", "cnn_bilstm", "bilstm", "lightgbm"):
        assert f"{model} hyper-parameters" in full
    gru = ephys("models", "GRU", check=0).stdout
    assert "gru hyper-parameters" in gru and "densenet121" not in gru
    assert "last, mean" in gru and "[0, 1)" in gru and "0.3" in gru and "int" in gru
    one_line_error(ephys("models", "vgg16"), "unknown model 'vgg16'")


def test_whole_chain_on_tiny_synthetic(tiny_synthetic, tmp_path):
    data = tmp_path / "scalograms"
    ephys("prepare", "scalograms", tiny_synthetic, data, "--scheduler", "synchronous", "--n-scales", "48",
          check=0)
    man = json.loads((data / "manifest.json").read_text())
    assert man["modality"] == "scalogram" and man["sample_shape"] == [48, 1200, 3]
    assert man["label_names"] == ["Excitatory", "Pvalb", "Sst", "Vip/Lamp5"]
    assert len(man["samples"]) == 12 and not man["skipped"]
    x = np.load(data / man["samples"][0]["file"])
    assert x.shape == (48, 1200, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1

    # --weights imagenet with an empty Keras cache and no network: one line, nothing written
    offline = {"KERAS_HOME": str(tmp_path / "keras_home"), "EPHYS_WEIGHTS_BASE_URL": "http://127.0.0.1:9/"}
    proc = ephys("train", "--data", data, "--model", "mobilenetv2", "--weights", "imagenet",
                 "--out", tmp_path / "imagenet_run", env=offline)
    one_line_error(proc, "ephys fetch weights mobilenetv2", "--weights none")
    assert not (tmp_path / "imagenet_run").exists()

    run = tmp_path / "run"
    ephys("train", "--data", data, "--model", "mobilenetv2", "--weights", "none", "--epochs", "2",
          "--input-size", "64", "--out", run, "--quiet", check=0)
    for name in ("config.yaml", "model.keras", "history.csv", "split.json", "checkpoints/last.keras"):
        assert (run / name).exists(), name
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train"]) & set(split["test"]) and not set(split["val"]) & set(split["test"])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"] == "mobilenetv2" and cfg["seed"] == 0 and cfg["label_names"] == man["label_names"]

    ephys("evaluate", run, check=0)
    m = json.loads((run / "metrics.json").read_text())
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "labels", "confusion_matrix", "per_class"):
        assert k in m
    assert m["n_test"] == len(split["test"]) == int(np.sum(m["confusion_matrix"]))
    preds = (run / "predictions.csv").read_text().splitlines()
    assert preds[0].startswith("id,true,predicted,p_Excitatory")
    assert {ln.split(",")[0] for ln in preds[1:]} == set(split["test"])

    ephys("explain", run, check=0)
    assert (run / "explain" / "saliency.npz").exists()
    html = ephys("report", run, check=0).stdout.strip()
    assert html.endswith("report.html") and Path(html).exists() and (run / "report.md").exists()

    # the same command again: nothing to redo
    again = ephys("train", "--data", data, "--model", "mobilenetv2", "--weights", "none", "--epochs", "2",
                  "--input-size", "64", "--out", run, check=0)
    assert "nothing to do" in again.stderr
    # a different configuration in the same folder is refused
    one_line_error(ephys("train", "--data", data, "--model", "mobilenetv2", "--epochs", "3",
                          "--input-size", "64", "--out", run), "different configuration")
    # config.yaml reproduces the run
    rerun = tmp_path / "rerun"
    ephys("train", "--config", run / "config.yaml", "--out", rerun, "--quiet", check=0)
    assert json.loads((rerun / "split.json").read_text()) == split


def test_train_resumes_after_kill(tiny_synthetic, tmp_path):
    data = tmp_path / "scalograms"
    ephys("prepare", "scalograms", tiny_synthetic, data, "--scheduler", "synchronous", "--n-scales", "16",
          check=0)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--model", "resnet18", "--weights", "none", "--epochs", "6",
            "--input-size", "48", "--patience", "100", "--out", run, "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "ephys.cli.main", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    state = run / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text()).get("epoch", -1) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "model.keras").exists()
    done_before = json.loads(state.read_text())["epoch"]
    resumed = ephys(*args[:-1], check=0)
    assert f"from epoch {done_before + 2}" in resumed.stderr  # the next epoch, counted from 1 as the bar counts
    epochs = [int(r.split(",")[0]) for r in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(6))
    assert (run / "model.keras").exists()
    assert not list(run.rglob(".*.part*"))
