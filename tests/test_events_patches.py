"""events: the patch dataset, and unet1d / autoencoder trained through the core's fit loop (tiny)."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest

from conftest import REPO, ephys, one_line_error
from ephys.pipelines.core.errors import EphysError


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four 1-s simulated recordings (mEPSC-like at 20 kHz, mEPP-like at 10 kHz)."""
    from ephys.pipelines.events.simulate import simulate_recording, write_cohort

    out = tmp_path_factory.mktemp("cohort")
    recs = [simulate_recording(kind, 10.0, 1.0, seed=s, rec_id=f"{kind}_{s}")
            for s, kind in enumerate(("mepsc", "mepsc", "mepp", "mepp"))]
    write_cohort(out, recs)
    return out, recs


@pytest.fixture(scope="module")
def patches256(cohort, tmp_path_factory):
    from ephys.pipelines.events.patches import EventPatchParams, prepare_event_patches

    out = tmp_path_factory.mktemp("p") / "patches"
    prepare_event_patches(cohort[0], out, EventPatchParams(256), log=lambda *_: None)
    return out


def test_patch_dataset_holds_masks_and_gives_back_the_traces(cohort, patches256, tmp_path):
    from ephys.pipelines.core.datasets import load_dataset
    from ephys.pipelines.events.patches import EventPatchParams, prepare_event_patches
    from ephys.pipelines.events.windows import assemble_recordings, normalise_trace

    ds = load_dataset(patches256)
    assert ds.modality == "event_patch" and ds.sample_shape == (256, 1)
    assert set(ds.groups) == {r.id for r in cohort[1]}
    m = ds.load_mask(np.arange(len(ds.ids)))
    # a patch is labelled event exactly when its mask holds an event sample
    assert [lab == "event" for lab in ds.labels] == list(m.reshape(len(ds.ids), -1).max(axis=1) > 0)
    back = assemble_recordings(ds, np.arange(len(ds.ids)))
    for r in cohort[1]:
        b = back[r.id]
        assert b["covered"].all()
        np.testing.assert_array_equal(b["z"], normalise_trace(r.trace.astype(np.float32), r.fs_hz, r.polarity))
        np.testing.assert_array_equal(b["mask"], r.mask)
    # the same OUT with other parameters is refused; bad parameters are refused
    with pytest.raises(EphysError, match="other parameters .*patch_samples 256 -> 512"):
        prepare_event_patches(cohort[0], patches256, EventPatchParams(512), log=lambda *_: None)
    with pytest.raises(EphysError, match="multiple of 8"):
        prepare_event_patches(cohort[0], tmp_path / "bad", EventPatchParams(100), log=lambda *_: None)
    assert not (tmp_path / "bad").exists()
    # the same step from the command line (the declared prepare step)
    proc = ephys("prepare", "event-patches", cohort[0], tmp_path / "cli", "--patch-samples", "256", check=0)
    assert load_dataset(tmp_path / "cli").sample_shape == (256, 1) and proc.stdout.strip().endswith("manifest.json")
    one_line_error(ephys("prepare", "event-patches", cohort[0], tmp_path / "bad2", "--patch-samples", "100"),
                   "multiple of 8")


def _cfg(model, data, out, **kw):
    from ephys.pipelines.core.training import TrainConfig

    hp = {"unet1d": {"width": 4, "depth": 2}, "autoencoder": {"width": 4, "code": 8}}[model]
    return TrainConfig(model=model, data=str(data), epochs=2, batch_size=32, lr=1e-3, patience=5, dropout=0.0,
                       out=str(out), hparams=hp, **kw)


def _split(data):
    from ephys.pipelines.core.datasets import load_dataset

    ds = load_dataset(data)
    part = {"mepsc_0": "train", "mepp_2": "train", "mepsc_1": "val", "mepp_3": "test"}
    return {k: [i for i, g in zip(ds.ids, ds.groups) if part[g] == k] for k in ("train", "val", "test")}


def test_unet1d_trains_resumes_and_evaluates_through_the_core(patches256, tmp_path, monkeypatch):
    from ephys.pipelines.core import training
    from ephys.pipelines.core.evaluation import evaluate_run

    run = tmp_path / "unet"
    cfg = _cfg("unet1d", patches256, run)
    split = _split(patches256)

    class Killed(Exception):
        pass

    def kill(epoch, logs):
        raise Killed()

    monkeypatch.setattr(training, "_remove_run", lambda *a: None)  # a SIGKILL cleans nothing up
    with pytest.raises(Killed):
        training.train(cfg, on_epoch=kill, log=lambda *_: None, split_ids=split)
    assert not (run / "model.keras").exists()
    lines = []
    training.train(_cfg("unet1d", patches256, run), log=lines.append, split_ids=split)  # loss function reloads
    assert any("resuming" in ln and "from epoch 2" in ln for ln in lines), lines
    hist = (run / "history.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in hist[1:]] == [0, 1] and "val_loss" in hist[0]
    assert "binary_accuracy" in hist[0]
    assert (run / "model.keras").is_file() and (run / "config.yaml").is_file()
    m = evaluate_run(run)
    assert m["target"] == "mask" and m["n_test"] == len(split["test"]) and 0 <= m["iou"] <= 1
    assert m["n_points"] == 256 * len(split["test"]) and "accuracy" in m


def test_autoencoder_fits_event_free_patches_and_sets_its_threshold(patches256, tmp_path, monkeypatch):
    from ephys.pipelines.core import training
    from ephys.pipelines.core.datasets import load_dataset
    from ephys.pipelines.core.evaluation import evaluate_run

    ds = load_dataset(patches256)
    seen = []
    real = training._Batches

    def spy(ds_, indices, *a, **k):
        seen.append(np.asarray(indices))
        return real(ds_, indices, *a, **k)

    monkeypatch.setattr(training, "_Batches", spy)
    run = tmp_path / "ae"
    training.train(_cfg("autoencoder", patches256, run), log=lambda *_: None, split_ids=_split(patches256))
    assert seen and all(ds.labels[i] == "no_event" for part in seen for i in part)  # train and val parts
    thr = json.loads((run / "threshold.json").read_text())
    assert thr["threshold"] > 0 and "training" in thr["source"]
    assert sorted(thr["recordings"]) == ["mepp_2", "mepsc_0", "mepsc_1"]  # never the test recording
    m = evaluate_run(run)
    assert m["target"] == "input" and m["reconstruction_mse_event_free"] > 0 and "threshold.json" in m["decision"]


def test_cli_trains_unet1d_on_a_patch_dataset(patches256, tmp_path):
    run = tmp_path / "cli-unet"
    ephys("train", "--model", "unet1d", "--data", patches256, "--epochs", "1", "--batch-size", "32",
          "--lr", "1e-3", "--hparam", "width=4", "--hparam", "depth=2", "--out", run, "--quiet", check=0)
    assert (run / "model.keras").is_file()
    split = json.loads((run / "split.json").read_text())
    grp = lambda ids: {i.split(":")[0] for i in ids}  # noqa: E731
    assert not grp(split["train"]) & (grp(split["val"]) | grp(split["test"]))
    proc = ephys("evaluate", run, check=0)
    assert json.loads((run / "metrics.json").read_text())["target"] == "mask", proc.stderr
    one_line_error(ephys("predict", run, patches256, tmp_path / "pred"), "mask target")


def test_events_pipeline_fits_no_keras_model_itself():
    """Every network of pipelines/events trains through the core's fit loop: no `.fit(` call."""
    for f in sorted((REPO / "pipelines" / "events").glob("*.py")):
        calls = [ast.unparse(n) for n in ast.walk(ast.parse(f.read_text()))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "fit"]
        assert not calls, (f.name, calls)


def test_patch_models_are_registered_with_their_targets():
    from ephys.pipelines.core.models import REGISTRY, models_for_modality

    assert models_for_modality("event_patch") == ["unet1d", "autoencoder"]
    assert REGISTRY["unet1d"].target == "mask" and REGISTRY["autoencoder"].target == "input"
    assert REGISTRY["autoencoder"].fit_labels == ("no_event",)
