"""Tests for ephys.pipelines.core.explain (saliency maps) on a tiny fake run built in tmp_path.

``make_fake_run`` is also used by tests/test_report.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
yaml = pytest.importorskip("yaml")

from ephys.pipelines.core.errors import EphysError  # noqa: E402
from ephys.pipelines.core.explain import explain_run, input_gradients, saliency_maps  # noqa: E402

LABELS = ["Excitatory", "Pvalb", "Vip/Lamp5"]
SHAPE = (16, 32, 3)
REGION = (slice(0, 8), slice(0, 16))  # rows (scales) 0-7, time bins 0-15: what the "region" model sees


def conv_model(seed: int = 0):
    """Input((16,32,3)) -> Conv2D -> GlobalAveragePooling2D -> Dense softmax."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(SHAPE)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(len(LABELS), activation="softmax")(h)
    return keras.Model(inp, out)


def region_model(seed: int = 0):
    """A model that only sees REGION of the input (Cropping2D): gradients elsewhere must be 0."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(SHAPE)
    h = keras.layers.Cropping2D(((0, SHAPE[0] - 8), (0, SHAPE[1] - 16)))(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(len(LABELS), activation="softmax")(h)
    return keras.Model(inp, out)


def make_fake_run(
    root: Path,
    *,
    model=None,
    with_metrics: bool = True,
    with_model: bool = True,
    with_explain_inputs: bool = True,
    n_per_class: int = 6,
) -> tuple[Path, Path]:
    """Write a fake DATA and RUN under ``root``; return (run_dir, data_dir).

    DATA: n_per_class cells per class of shape (16, 32, 3) float32 in [0, 1] (+1 unlabelled
    cell), frequencies descending 200 -> 2 Hz, time window -0.1..1.0 s, one skipped file.
    RUN: config.yaml, model.keras (``model`` or conv_model()), history.csv, split.json and,
    if ``with_metrics``, predictions.csv + metrics.json computed with sklearn.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    rng = np.random.default_rng(0)
    data = root / "DATA"
    (data / "samples").mkdir(parents=True)
    samples, by_label = [], {}
    for k, lab in enumerate(LABELS + [None]):
        for j in range(n_per_class if lab else 1):
            cid = f"cell_{k}_{j}" if lab else "cell_unlabelled"
            x = rng.random(SHAPE, dtype=np.float32) * 0.3
            x[2 + 4 * k : 6 + 4 * k, 8:24, :] += 0.6  # a class-dependent frequency band
            np.save(data / "samples" / f"{cid}.npy", np.clip(x, 0, 1).astype(np.float32))
            samples.append(
                {"id": cid, "file": f"samples/{cid}.npy", "label": lab, "group": cid, "source": f"raw/{cid}.nwb",
                 "sweeps": [{"sweep_id": f"s{i}", "stim_amp_pA": 40.0 * (i + 1), "n_spikes": i} for i in range(3)],
                 "rheobase_pA": 40.0}
            )
            if lab:
                by_label.setdefault(lab, []).append(cid)
    manifest = {
        "modality": "scalogram", "format_version": 1, "ephys_version": "0.1.0", "created": "2024-05-01T12:00:00",
        "sample_shape": list(SHAPE), "dtype": "float32", "axes": ["frequency", "time", "sweep"],
        "frequencies_hz": np.geomspace(200.0, 2.0, SHAPE[0]).tolist(), "time_s": [-0.1, 1.0],
        "value": "log-magnitude CWT, normalised to [0,1] per cell", "label_names": LABELS,
        "samples": samples, "skipped": [{"path": "raw/bad.nwb", "reason": "voltage-clamp only"}],
        "parameters": {}, "provenance": {},
    }
    (data / "manifest.json").write_text(json.dumps(manifest))

    run = root / "RUN"
    run.mkdir()
    split = {"train": [], "val": [], "test": []}
    for lab in LABELS:
        ids = by_label[lab]
        split["test"] += ids[:2]
        split["val"] += ids[2:3]
        split["train"] += ids[3:]
    (run / "split.json").write_text(json.dumps(split))
    config = {
        "model": "tiny_cnn", "data": str(data), "weights": None, "freeze": False, "epochs": 5, "batch_size": 4,
        "lr": 0.001, "seed": 0, "label_names": LABELS, "run_id": "run-test-001", "ephys_version": "0.1.0",
        "keras_version": keras.__version__, "backend": keras.backend.backend(),
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with open(run / "history.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"])
        for e in range(5):
            w.writerow([e, 1.1 - 0.15 * e, 0.4 + 0.1 * e, 1.15 - 0.1 * e, 0.35 + 0.08 * e, 0.001])

    model = model if model is not None else conv_model()
    if with_model:
        model.save(run / "model.keras")
    if with_metrics:
        by_id = {s["id"]: s for s in samples}
        x = np.stack([np.load(data / by_id[i]["file"]) for i in split["test"]])
        probs = np.asarray(model.predict(x, verbose=0), dtype=float)
        y_true = [by_id[i]["label"] for i in split["test"]]
        y_pred = [LABELS[k] for k in probs.argmax(1)]
        with open(run / "predictions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "true", "predicted"] + [f"p_{lab}" for lab in LABELS])
            for i, t, p, pr in zip(split["test"], y_true, y_pred, probs):
                w.writerow([i, t, p] + [f"{v:.6f}" for v in pr])
        prec, rec, f1, sup = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
        metrics = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0)),
            "roc_auc_ovr": float(roc_auc_score(y_true, probs / probs.sum(1, keepdims=True), multi_class="ovr", labels=LABELS)),
            "n_test": len(y_true),
            "labels": LABELS,
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=LABELS).tolist(),
            "per_class": {
                lab: {"precision": float(prec[k]), "recall": float(rec[k]), "f1": float(f1[k]), "support": int(sup[k])}
                for k, lab in enumerate(LABELS)
            },
        }
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run, data


# ------------------------------------------------------------------ input_gradients


def test_input_gradients_match_finite_differences():
    keras.utils.set_random_seed(1)
    inp = keras.Input((4, 5, 2))
    h = keras.layers.Flatten()(inp)
    out = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inp, out)
    x = np.random.default_rng(1).random((2, 4, 5, 2)).astype(np.float32)
    cls = np.array([0, 2])
    g = input_gradients(model, x, cls)
    assert g.shape == x.shape and g.dtype == np.float32

    eps = 1e-2
    x64 = x.astype(np.float64)
    for b in range(2):
        for idx in [(0, 0, 0), (3, 4, 1), (1, 2, 0), (2, 1, 1)]:
            xp, xm = x64.copy(), x64.copy()
            xp[(b,) + idx] += eps
            xm[(b,) + idx] -= eps
            pp = keras.ops.convert_to_numpy(model(xp.astype(np.float32)))[b, cls[b]]
            pm = keras.ops.convert_to_numpy(model(xm.astype(np.float32)))[b, cls[b]]
            fd = (pp - pm) / (2 * eps)
            assert g[(b,) + idx] == pytest.approx(fd, rel=0.05, abs=2e-4)


def test_input_gradients_zero_outside_region_and_scalar_class():
    model = region_model()
    x = np.random.default_rng(2).random((3,) + SHAPE).astype(np.float32)
    g = input_gradients(model, x, 1)
    outside = np.ones(SHAPE[:2], bool)
    outside[REGION] = False
    assert np.all(g[:, outside, :] == 0)
    assert np.all(np.abs(g[:, REGION[0], REGION[1], :]).reshape(3, -1).max(axis=1) > 0)


def test_saliency_maps_shape_range():
    model = conv_model()
    x = np.random.default_rng(3).random((4,) + SHAPE).astype(np.float32)
    for method in ("gradient", "smoothgrad"):
        m = saliency_maps(model, x, [0, 1, 2, 0], method=method, n_noise=3)
        assert m.shape == (4,) + SHAPE[:2] and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0 and np.allclose(m.reshape(4, -1).max(1), 1.0)
    with pytest.raises(EphysError):
        saliency_maps(model, x, 0, method="occlusion")


# ------------------------------------------------------------------ explain_run


def test_explain_run_outputs(tmp_path):
    run, data = make_fake_run(tmp_path, with_metrics=False)
    calls = []
    out = explain_run(run, n_examples_per_class=2, progress=lambda d, t, m: calls.append((d, t)))
    assert out == run / "explain"
    for name in ("saliency.npz", "summary.json", "examples.png", "class_means.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert calls and calls[-1] == (6, 6)
    z = np.load(out / "saliency.npz")  # no pickle needed
    split = json.loads((run / "split.json").read_text())
    assert list(z["ids"]) == split["test"]
    maps = z["maps"]
    assert maps.shape == (6, 16, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert z["class_means"].shape == (3, 16, 32) and np.isfinite(z["class_means"]).all()
    assert int(z["class_counts"].sum()) == 6
    assert set(z["predicted"]) <= set(LABELS)
    assert list(z["labels"]) == [s.split("_")[1] and LABELS[int(s.split("_")[1])] for s in split["test"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 6 and summary["samples"] == "test split" and summary["target"] == "predicted"
    assert not list(out.glob("*.part*"))  # atomic writes left no temporaries


def test_explain_zero_saliency_outside_the_region_the_model_sees(tmp_path):
    run, _ = make_fake_run(tmp_path, model=region_model(), with_metrics=False)
    out = explain_run(run, target="true", figures=False)
    z = np.load(out / "saliency.npz")
    maps = z["maps"]
    outside = np.ones(SHAPE[:2], bool)
    outside[REGION] = False
    assert np.all(maps[:, outside] == 0), "saliency leaks outside the only region the model sees"
    assert np.allclose(maps[:, REGION[0], REGION[1]].reshape(len(maps), -1).max(1), 1.0)
    assert np.all(z["class_means"][:, outside] == 0)
    assert list(z["target_class"]) == list(z["labels"])


def test_explain_falls_back_to_labelled_cells_without_test_split(tmp_path):
    run, _ = make_fake_run(tmp_path, with_metrics=False, n_per_class=2)
    (run / "split.json").write_text(json.dumps({"train": [], "val": [], "test": []}))
    out = explain_run(run, n_examples_per_class=1, method="smoothgrad", figures=False)
    z = np.load(out / "saliency.npz")
    assert len(z["ids"]) == 6 and "cell_unlabelled" not in set(z["ids"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == "all labelled cells" and summary["method"] == "smoothgrad"
    assert not (out / "examples.png").exists()


def test_explain_without_model_is_an_ephys_error(tmp_path):
    run, _ = make_fake_run(tmp_path, with_metrics=False, with_model=False)
    with pytest.raises(EphysError) as exc:
        explain_run(run)
    assert "model.keras" in str(exc.value) and str(run) in str(exc.value)
    assert "\n" not in str(exc.value)
    with pytest.raises(EphysError):
        explain_run(tmp_path / "no_such_run")


def test_explain_unknown_test_id_is_an_ephys_error(tmp_path):
    run, _ = make_fake_run(tmp_path, with_metrics=False, n_per_class=2)
    (run / "split.json").write_text(json.dumps({"train": [], "val": [], "test": ["ghost"]}))
    with pytest.raises(EphysError, match="split.json"):
        explain_run(run)


# ------------------------------------------------------------------ one loop for every Keras modality


def _tiny_run(root: Path, data: Path, model, label_names, test_ids) -> Path:
    """A run folder around an untrained ``model`` (config.yaml, split.json, model.keras)."""
    run = root / "run"
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    (run / "split.json").write_text(json.dumps({"train": [], "val": [], "test": list(test_ids)}))
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "tiny", "data": str(data), "label_names": label_names,
                                                     "seed": 0, "run_id": root.name}))
    return run


def _waveform_run(root: Path) -> Path:
    """A waveform dataset (two classes, 42-sample snippets, the spikes pipeline's layout) and an
    untrained Conv1D run on it."""
    from ephys.pipelines.core.datasets import load_dataset
    from ephys.pipelines.spikes.waveforms import prepare_waveform_sets

    rng = np.random.default_rng(0)
    sets = root / "sets"
    sets.mkdir(parents=True)
    t = np.arange(42) - 12
    shape = -np.exp(-0.5 * (t / 1.5) ** 2)
    for ch in ("1", "2"):
        np.save(sets / f"channel_spikes_{ch}.npy", 100 * (shape + 0.1 * rng.normal(size=(6, 42))))
        np.save(sets / f"channel_background_{ch}.npy", 20 * rng.normal(size=(6, 42)))
    prepare_waveform_sets(sets, root / "ds")
    ds = load_dataset(root / "ds")
    keras.utils.set_random_seed(0)
    inp = keras.Input((42, 1))
    h = keras.layers.Conv1D(3, 5, padding="same", activation="tanh")(inp)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(h))
    test = [i for i, g in zip(ds.ids, ds.groups) if g == "2"]
    return _tiny_run(root, root / "ds", keras.Model(inp, out), ds.label_names, test)


def _feature_run(root: Path) -> Path:
    """A feature-table dataset (3 features in different units) and an untrained MLP run on it."""
    from ephys.pipelines.core.layouts import write_feature_table

    rng = np.random.default_rng(1)
    n = 24
    labels = ["in" if k % 2 else "out" for k in range(n)]
    X = np.column_stack([rng.normal(size=n) * 3, rng.normal(size=n) * 0.1, np.array([k % 2 for k in range(n)]) * 2.0])
    ids = [f"s{k}" for k in range(n)]
    write_feature_table(root / "ds", ids, X, ["rms_uv", "ratio", "power_db"], labels, ["in", "out"],
                        groups=[f"p{k % 4}" for k in range(n)])
    keras.utils.set_random_seed(0)
    inp = keras.Input((3,))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(4, activation="tanh")(inp))
    return _tiny_run(root, root / "ds", keras.Model(inp, out), ["in", "out"], ids[:8])


def test_one_loop_explains_scalogram_waveform_and_feature_runs(tmp_path):
    """Scalograms, waveforms and feature rows (gradient x input) go through the same loop: the
    same files, the same summary keys, maps in [0, 1] whose shape is the modality's, and the run
    report's explanation section instead of "not explained yet"."""
    from ephys.pipelines.core.report import build_report

    scal, _ = make_fake_run(tmp_path / "scal", with_metrics=False, n_per_class=2)
    runs = {"scalogram": (scal, (16, 32)), "waveform": (_waveform_run(tmp_path / "wave"), (42,)),
            "features": (_feature_run(tmp_path / "feat"), (3,))}
    summaries, npz_keys = {}, {}
    for kind, (run, map_shape) in runs.items():
        out = explain_run(run, n_examples_per_class=1)
        assert sorted(p.name for p in out.iterdir()) == ["class_means.png", "examples.png", "saliency.npz",
                                                          "summary.json"], kind
        s = json.loads((out / "summary.json").read_text())
        z = np.load(out / "saliency.npz")
        split = json.loads((run / "split.json").read_text())
        assert list(z["ids"]) == split["test"] and s["n_samples"] == len(split["test"]), kind
        assert z["maps"].shape == (len(split["test"]),) + map_shape, kind
        assert z["maps"].min() >= 0 and np.allclose(z["maps"].reshape(len(z["maps"]), -1).max(1), 1.0), kind
        assert z["class_means"].shape == (len(z["label_names"]),) + map_shape
        summaries[kind], npz_keys[kind] = s, set(z.files)
        html = build_report(run)[0].read_text()
        assert "ephys explain" not in html and 'alt="mean saliency per class"' in html, kind
    assert summaries["scalogram"].keys() == summaries["waveform"].keys() == summaries["features"].keys()
    common = {"ids", "labels", "predicted", "target_class", "probabilities", "maps", "class_means", "class_counts",
              "label_names"}
    assert npz_keys["scalogram"] - common == {"frequencies_hz", "time_s"}
    assert npz_keys["waveform"] - common == {"time_ms"} and npz_keys["features"] - common == {"feature"}
    assert summaries["features"]["saliency"].startswith("|d p_target / d input x input|")
    # each modality's own words: its sample noun and what the gradient is taken of
    assert summaries["waveform"]["sample_noun"] == "snippet" and "waveform" in summaries["waveform"]["what"]
    assert summaries["scalogram"]["sample_noun"] == "cell" and "scalogram" in summaries["scalogram"]["what"]
    peak = summaries["features"]["per_class"]["in"]["peak"]
    assert peak is None or peak["feature"] in {"rms_uv", "ratio", "power_db"}


def test_feature_run_attributions_are_gradient_times_input(tmp_path):
    """For a softmax of a linear map of the features, |d p_c / d x_j * x_j| is known in closed form."""
    run = _feature_run(tmp_path)
    keras.utils.set_random_seed(0)
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp))
    model.save(run / "model.keras")
    out = explain_run(run, figures=False, target="true")
    z = np.load(out / "saliency.npz")
    from ephys.pipelines.core.datasets import load_dataset

    ds = load_dataset(tmp_path / "ds")
    x = ds.load(np.arange(8)).astype(np.float64)
    W = keras.ops.convert_to_numpy(model.layers[-1].kernel).astype(np.float64)
    p = keras.ops.convert_to_numpy(model(x.astype(np.float32))).astype(np.float64)
    tgt = np.array([list(z["label_names"]).index(t) for t in z["labels"]])
    # d softmax_c / d x_j = p_c * (W[j, c] - sum_k p_k W[j, k])
    grad = p[np.arange(8), tgt][:, None] * (W[:, tgt].T - p @ W.T)
    a = np.abs(grad * x)
    expected = a / a.max(axis=1, keepdims=True)
    np.testing.assert_allclose(z["maps"], expected, atol=1e-4)


def _array_dataset(root: Path, modality: str, x: np.ndarray, labels, extra: dict) -> Path:
    """A single-array dataset of ``modality`` (rows of ``x``), groups of 4 samples."""
    root.mkdir(parents=True)
    np.save(root / "x.npy", x.astype(np.float32))
    names = sorted(set(labels))
    samples = [{"id": f"w{k}", "row": k, "label": lab, "group": f"g{k // 4}"} for k, lab in enumerate(labels)]
    (root / "manifest.json").write_text(json.dumps({"modality": modality, "sample_shape": list(x.shape[1:]),
                                                    "array": "x.npy", "label_names": names, "samples": samples,
                                                    **extra}))
    return root


@pytest.mark.parametrize("kind", ["event_window", "sequence"])
def test_window_and_sequence_views_through_the_one_loop(tmp_path, kind):
    """The events and lfp explain hooks are views on the same loop: windows reduced to saliency
    over time; LFP sequences keep one map per input (channel:band)."""
    from ephys.pipelines.events.explain import explain_window_run
    from ephys.pipelines.lfp.explain import explain_sequence_run

    rng = np.random.default_rng(2)
    n, t = 16, 50
    labels = ["event" if k % 2 else "no_event" for k in range(n)]
    if kind == "event_window":
        x, extra, hook, map_shape = rng.random((n, t, 1)), {"fs_hz": 5000.0}, explain_window_run, (t,)
    else:
        x = rng.normal(size=(n, t, 3))
        extra, hook, map_shape = {"fs_hz": 1000.0, "channels": ["ch1:theta", "ch1:gamma", "ch2:theta"]}, \
            explain_sequence_run, (t, 3)
    data = _array_dataset(tmp_path / "ds", kind, x, labels, extra)
    keras.utils.set_random_seed(0)
    inp = keras.Input(x.shape[1:])
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(keras.layers.Dense(2, activation="tanh")(inp)))
    run = _tiny_run(tmp_path, data, keras.Model(inp, out), sorted(set(labels)), [f"w{k}" for k in range(8)])
    manifest = json.loads((data / "manifest.json").read_text())
    out_dir = hook(run, yaml.safe_load((run / "config.yaml").read_text()), data, manifest, n_examples=1)
    z = np.load(out_dir / "saliency.npz")
    assert z["maps"].shape == (8,) + map_shape and np.allclose(z["maps"].reshape(8, -1).max(1), 1.0)
    assert z["time_ms"][1] == pytest.approx(1000.0 / extra["fs_hz"])
    if kind == "sequence":
        assert list(z["input"]) == extra["channels"]
    s = json.loads((out_dir / "summary.json").read_text())
    assert s["sample_noun"] == "window" and (out_dir / "class_means.png").is_file()
