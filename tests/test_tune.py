"""ephys tune: a study shared by processes (none lost, none run twice), resume after kill -9,
pruning, an objective that never reads the test part, best.yaml round trip; tracking."""

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

sys.path.insert(0, str(Path(__file__).parent))
import toy_modality  # noqa: E402  (registers the toy pipeline in this process)

from ephys.pipelines.core import tune  # noqa: E402
from ephys.pipelines.core.errors import EphysError  # noqa: E402
from ephys.pipelines.core.models import REGISTRY, Search  # noqa: E402
from ephys.pipelines.core.training import TrainConfig  # noqa: E402

PLUGIN_ENV = {"EPHYS_PLUGINS": "toy_modality", "PYTHONPATH": str(Path(__file__).parent), "EPHYS_EAGER": "1"}


def _toy(path: Path, n_per_class: int = 20, seed: int = 1) -> Path:
    x, y = toy_modality.simulate(n_per_class, seed=seed)
    return toy_modality.write_dataset(path, x, y)


def _trials(study: Path):
    from optuna.trial import TrialState

    defn, _ = tune.load_study(study)
    ts = tune._open(study, defn).get_trials(deepcopy=False)
    return ts, TrialState


def test_space_default_file_and_refusals(tmp_path):
    spec = REGISTRY["toy_dense"]
    base = TrainConfig(model="toy_dense", data=str(tmp_path))
    assert tune.default_space(spec) == {"lr": tune.DEFAULT_SEARCH["lr"], "units": Search(4, 32, log=True)}
    f = tmp_path / "space.yaml"
    f.write_text("lr: {low: 1.0e-4, high: 1.0e-2, log: true}\nunits: [4, 8]\nbatch_size: {low: 4, high: 16, step: 4}\n")
    space = tune.read_space(f, spec, base)
    assert space["units"].choices == (4, 8) and space["batch_size"].step == 4
    cfg = tune.apply_params(base, {"lr": 0.003, "units": 8, "batch_size": 12}, spec)
    assert (cfg.lr, cfg.batch_size, cfg.hparams) == (0.003, 12, {"units": 8}) and base.hparams == {}
    for text, needle in (("unitz: [4, 8]", "no hyper-parameter or training setting 'unitz'"),
                         ("dropout: {low: 0.1, high: 1.0}", "dropout"),
                         ("units: {low: 4.5, high: 9}", "must be whole"),
                         ("freeze: {low: 1, high: 2}", "takes choices"),
                         ("lr: {low: 0.1, high: 0.01}", "low < high"),
                         ("units: [0, 4]", "units")):
        f.write_text(text + "\n")
        with pytest.raises(EphysError, match=needle):
            tune.read_space(f, spec, base)


def test_two_processes_share_one_journal(tmp_path):
    """Two `ephys tune` processes on one study: exactly N trials, each run once, by both workers."""
    data = _toy(tmp_path / "toy", n_per_class=30)
    study = tmp_path / "study"
    cmd = [sys.executable, "-m", "ephys.cli.main", "--quiet", "tune", "--data", str(data), "--model", "toy_dense",
           "--trials", "6", "--study", str(study), "--epochs", "3", "--batch-size", "16", "--pruner", "none",
           "--sampler", "random"]
    env = {**os.environ, **PLUGIN_ENV, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ts, S = _trials(study)
    assert [t.state for t in ts] == [S.COMPLETE] * 6  # none lost, none beyond N
    assert sorted(t.number for t in ts) == list(range(6))
    runs = sorted(p.name for p in (study / "trials").iterdir())
    assert runs == [f"trial-{k:04d}" for k in range(6)]
    for t in ts:  # each trial trained exactly once: one history row per epoch
        rows = (study / "trials" / tune.trial_run_name(t) / "history.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]
        cfg = yaml.safe_load((study / "trials" / tune.trial_run_name(t) / "config.yaml").read_text())
        assert cfg["lr"] == pytest.approx(t.params["lr"]) and cfg["hparams"]["units"] == t.params["units"]
    workers = {t.user_attrs["worker"] for t in ts}
    assert len(workers) == 2, workers  # both processes ran trials
    assert not list((study / "heartbeats").iterdir())


def test_resume_after_kill_9(tmp_path):
    data = _toy(tmp_path / "toy", n_per_class=30)
    study = tmp_path / "study"
    args = ["tune", "--data", data, "--model", "toy_dense", "--trials", "1", "--study", study, "--epochs", "12",
            "--batch-size", "16", "--patience", "100", "--pruner", "none"]
    env = {**os.environ, **PLUGIN_ENV, "TF_CPP_MIN_LOG_LEVEL": "3"}
    a = subprocess.Popen([sys.executable, "-m", "ephys.cli.main", *map(str, args)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = study / "trials" / "trial-0000" / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and a.poll() is None:
        if state.exists() and json.loads(state.read_text()).get("epoch", -1) >= 2:
            break
        time.sleep(0.05)
    assert a.poll() is None, "the first worker finished before it could be killed"
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert killed_at < 11
    b = ephys(*args, env=PLUGIN_ENV, check=0)
    assert "trial 0 failed (its process" in b.stderr and "resuming" in b.stderr, b.stderr
    ts, S = _trials(study)
    dead = [t for t in ts if t.state == S.FAIL]
    assert len(dead) == 1 and dead[0].number == 0 and dead[0].user_attrs["failed"] == "killed"
    retry = [t for t in ts if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].state == S.COMPLETE and retry[0].params == dead[0].params
    assert len(ts) == 2 and sum(tune.counted(t) for t in ts) == 1
    # the retry resumed the killed trial's run folder: every epoch once, in order
    rows = (study / "trials" / "trial-0000" / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(12))
    assert sorted(p.name for p in (study / "trials").iterdir()) == ["trial-0000"]


def test_pruning_on_a_toy_objective(tmp_path):
    """Median and successive-halving pruners stop trials whose per-step values lag."""
    data = _toy(tmp_path / "toy", n_per_class=10)
    for pruner in ("median", "halving"):
        study = tmp_path / pruner
        tune.create_study(study, TrainConfig(model="toy_dense", data=str(data)),
                          {"lr": {"low": 1e-4, "high": 1e-1, "log": True}}, trials=14, pruner=pruner, sampler="random")

        def objective(ctx):
            value = 0.0
            for step in range(8):  # a curve that ends higher the larger lr is
                value = ctx.params["lr"] * 10 + 1.0 / (step + 1)
                stop = ctx.report(step, value)
                assert stop is True or stop is False  # what train's on_epoch needs to end a run
                if stop:
                    break
            return value

        s = tune.work(study, objective=objective, log=lambda m: None)
        ts, S = _trials(study)
        pruned = [t for t in ts if t.state == S.PRUNED]
        complete = [t for t in ts if t.state == S.COMPLETE]
        assert s["n"] == 14 and pruned and complete, (pruner, [t.state for t in ts])
        assert all(len(t.intermediate_values) < 8 for t in pruned)
        assert min(t.params["lr"] for t in pruned) > min(t.params["lr"] for t in complete)


def test_on_epoch_true_ends_a_training_run(tmp_path):
    from ephys.pipelines.core.training import train

    data = _toy(tmp_path / "toy", n_per_class=6)
    run = train(TrainConfig(model="toy_dense", data=str(data), epochs=6, patience=100, eager=True,
                            out=str(tmp_path / "run")), on_epoch=lambda e, logs: e >= 1, log=lambda m: None)
    assert len((run / "history.csv").read_text().splitlines()) == 3  # header + epochs 1 and 2
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["stopped_by"] == "caller" and (run / "model.keras").is_file()


def _poisoned(path: Path) -> Path:
    """A toy dataset with a published split whose test part has every label flipped: a search that
    read it would prefer a model that learnt nothing."""
    x, y = toy_modality.simulate(24, seed=3)
    data = toy_modality.write_dataset(path, x, y)
    man = json.loads((data / "manifest.json").read_text())
    groups = sorted({s["group"] for s in man["samples"]}, key=lambda g: int(g[1:]))
    test, val = groups[::4], groups[1::4]
    for s in man["samples"]:
        if s["group"] in test:
            s["label"] = "rising" if s["label"] == "falling" else "falling"
    man["splits"] = {"fixed": {"test": test, "val": val, "train": [g for g in groups if g not in test + val]}}
    (data / "manifest.json").write_text(json.dumps(man))
    return data


@pytest.fixture(scope="module")
def poisoned_study(tmp_path_factory):
    from ephys.pipelines.core.datasets import Dataset

    tmp = tmp_path_factory.mktemp("poisoned")
    data = _poisoned(tmp / "toy")
    study = tmp / "study"
    base = TrainConfig(model="toy_dense", data=str(data), split="fixed", epochs=8, patience=100, batch_size=8)
    tune.create_study(study, base, {"lr": [0.05, 1e-7]}, trials=2, pruner="none", sampler="grid")
    loaded: list[int] = []
    original = Dataset.load

    def spy(self, indices, *a, **k):
        loaded.extend(int(i) for i in np.atleast_1d(indices))
        return original(self, indices, *a, **k)

    Dataset.load = spy
    try:
        tune.work(study, log=lambda m: None, eager=True)
    finally:
        Dataset.load = original
    return data, study, loaded


def test_objective_never_reads_the_test_part(poisoned_study):
    import keras

    from ephys.pipelines.core.datasets import load_dataset

    data, study, loaded = poisoned_study
    ds = load_dataset(data)
    _, split = tune.load_study(study)
    test = {i for i, s in enumerate(ds.ids) if s in set(split["test"])}
    assert test and loaded and not test.intersection(loaded)
    ts, S = _trials(study)
    by_lr = {t.params["lr"]: t for t in ts}
    assert set(by_lr) == {0.05, 1e-7} and all(t.state == S.COMPLETE for t in ts)
    for t in ts:  # the trials' run folders never held the test part
        assert json.loads((study / "trials" / tune.trial_run_name(t) / "split.json").read_text())["test"] == []
    assert tune.study_summary(study)["best"]["params"] == {"lr": 0.05}
    # ... while the test part would have chosen the model that learnt nothing
    idx = np.array(sorted(test))
    loss = {}
    for lr, t in by_lr.items():
        model = keras.models.load_model(study / "trials" / tune.trial_run_name(t) / "model.keras")
        p = np.clip(model.predict(ds.load(idx), verbose=0), 1e-7, 1)
        loss[lr] = float(-np.mean(np.log(p[np.arange(idx.size), ds.y(idx)])))
    assert loss[1e-7] < loss[0.05], loss


def test_best_yaml_round_trip_and_study_page(poisoned_study, tmp_path):
    from ephys.pipelines.core.training import train
    from ephys.pipelines.core.tune_report import build_tune_report

    data, study, _ = poisoned_study
    html, best = build_tune_report(study)
    page = html.read_text()
    assert "Best configuration" in page and "best.yaml" in page and "Importances" in page
    assert best.read_text().splitlines()[1].startswith("# ephys train --config")
    cfg = TrainConfig.from_yaml(best)
    want, _ = tune.best_config(study)
    assert cfg.fingerprint() == want.fingerprint() and cfg.lr == 0.05 and cfg.split == "fixed"
    cfg.out, cfg.eager = str(tmp_path / "best"), True
    run = train(cfg, log=lambda m: None)
    _, split = tune.load_study(study)
    got = json.loads((run / "split.json").read_text())
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(split[k]) for k in ("train", "val", "test")}


def test_cli_refusals(tmp_path):
    data = _toy(tmp_path / "toy", n_per_class=10)
    base = ["tune", "--data", data, "--model", "toy_dense", "--study", tmp_path / "s"]
    one_line_error(ephys(*base, "--pruner", "hyperband", env=PLUGIN_ENV), "--pruner", "median")
    one_line_error(ephys(*base, "--sampler", "grid", env=PLUGIN_ENV), "--sampler grid", "lr")
    one_line_error(ephys("tune", "--report", tmp_path, env=PLUGIN_ENV), "not a study folder")
    tune.create_study(tmp_path / "s", TrainConfig(model="toy_dense", data=str(data)), "default", trials=2)
    one_line_error(ephys(*base, "--epochs", "3", env=PLUGIN_ENV), "holds another search", "base")


def test_track_mlflow_logs_a_run(poisoned_study, tmp_path):
    pytest.importorskip("mlflow", reason="MLflow is an optional extra (pip install 'ephys[track]')")
    import mlflow

    from ephys.pipelines.core.tracking import log_run, parse_track

    _, study, _ = poisoned_study
    uri = parse_track("mlflow", tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    run_id = log_run(study / "trials" / "trial-0000", uri, experiment="t", params={"trial": 0})
    got = mlflow.MlflowClient(uri).get_run(run_id)
    assert got.data.params["model"] == "toy_dense" and got.data.params["trial"] == "0"
    hist = mlflow.MlflowClient(uri).get_metric_history(run_id, "val_loss")
    assert [m.step for m in hist] == list(range(8))
    assert (tmp_path / "mlartifacts").is_dir() and not (Path.cwd() / "mlruns").exists()


def test_inner_folds_and_an_outer_fold_keep_the_test_part_out(tmp_path):
    data = _toy(tmp_path / "toy", n_per_class=10)
    base = TrainConfig(model="toy_dense", data=str(data), epochs=1, batch_size=8)
    # inner folds: grouped folds of the training side, one run folder each, the mean is the value
    tune.create_study(tmp_path / "inner", base, {"units": [4]}, trials=1, sampler="grid", inner_folds=3)
    s = tune.work(tmp_path / "inner", log=lambda m: None, eager=True)
    _, split = tune.load_study(tmp_path / "inner")
    side = sorted(split["train"] + split["val"])
    assert sorted(x for f in split["inner"] for x in f) == side and not set(side) & set(split["test"])
    runs = sorted((tmp_path / "inner" / "trials" / "trial-0000").glob("inner-*"))
    assert [r.name for r in runs] == ["inner-1", "inner-2", "inner-3"]
    vals = [json.loads((r / "train_summary.json").read_text())["best_val_loss"] for r in runs]
    assert s["best"]["value"] == pytest.approx(np.mean(vals))
    for r, fold in zip(runs, split["inner"]):
        got = json.loads((r / "split.json").read_text())
        assert sorted(got["val"]) == sorted(fold) and got["test"] == []
    # an outer fold: its held-out part is the test part; the trials see only its training side
    tune.create_study(tmp_path / "outer", base, {"units": [4]}, trials=1, sampler="grid", fold=1, scheme="grouped",
                      n_folds=3)
    defn, split = tune.load_study(tmp_path / "outer")
    assert split["name"] == "fold-1" and defn["fold"] == "1" and split["test"]
    from ephys.pipelines.core.crossval import plan_folds
    from ephys.pipelines.core.datasets import load_dataset

    ds = load_dataset(data)
    held = plan_folds(ds, "grouped", 3, 0).folds[1].test
    assert sorted(split["test"]) == sorted(ds.ids[i] for i in held)
    tune.work(tmp_path / "outer", log=lambda m: None, eager=True)
    assert "--fold 1 --cv grouped --cv-folds 3" in tune.write_best(tmp_path / "outer").read_text()
