"""Transfer learning in the core: ``ephys train --init RUN`` starts from a run's weights, freezing the
model's declared feature layers by default (``--freeze features``), unfreezing on request."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ephys, one_line_error
from ephys.pipelines.core.errors import EphysError


def _windows(out, n=48, seed=0, shift=0.0):
    """A tiny event_window dataset: event windows hold a bump, the others noise only."""
    from ephys.pipelines.events.windows import write_window_dataset

    rng = np.random.default_rng(seed)
    t = np.arange(600)
    x = 0.2 * rng.random((n, 600))
    lab = ["event" if k % 2 else "no_event" for k in range(n)]
    for k in range(1, n, 2):
        x[k] += np.exp(-np.clip(t - 250 - shift, 0, None) / 40.0) * (t >= 250 + shift)
    x = (x - x.min(1, keepdims=True)) / np.ptp(x, 1, keepdims=True)
    groups = [f"r{k % 4}" for k in range(n)]
    write_window_dataset(out, x[..., None], lab, groups, np.arange(n) * 0.1, None)
    return out


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    from ephys.pipelines.core.training import TrainConfig, train

    root = tmp_path_factory.mktemp("init")
    data = _windows(root / "source")
    cfg = TrainConfig(model="cnn_bilstm", data=str(data), epochs=1, batch_size=16, lr=1e-3, eager=True,
                      out=str(root / "run-source"), hparams={"width": 4, "lstm": 4})
    return root, train(cfg, log=lambda *_: None)


def _weights(path):
    from ephys.pipelines.core.models import load_keras_model

    m = load_keras_model(path, compile=False)
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in m.layers if layer.get_weights()}


def test_fine_tuning_keeps_the_frozen_convolutions(source_run):
    import yaml

    from ephys.pipelines.core.training import TrainConfig, init_freeze, train

    root, src = source_run
    data = _windows(root / "target", n=32, seed=1, shift=30.0)
    cfg = TrainConfig(model="cnn_bilstm", data=str(data), epochs=2, batch_size=8, lr=1e-2, eager=True,
                      out=str(root / "run-ft"), init=str(src), hparams={"width": 4, "lstm": 4})
    cfg.freeze = init_freeze(cfg)
    assert cfg.freeze == "features"
    run = train(cfg, log=lambda *_: None)
    before, after = _weights(src / "model.keras"), _weights(run / "model.keras")
    for name in ("conv0", "conv1", "conv2"):
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after[name])), name
    # the rest started from the source and trained
    assert any(not np.array_equal(a, b) for a, b in zip(before["bilstm"], after["bilstm"]))
    meta = yaml.safe_load((run / "config.yaml").read_text())
    assert meta["init"] == str(src) and meta["freeze"] == "features"
    import hashlib

    assert meta["init_model_sha256"] == hashlib.sha256((src / "model.keras").read_bytes()).hexdigest()
    assert set(meta["frozen_layers"]) == {"conv0", "conv1", "conv2"}
    assert "proba" in meta["init_layers_loaded"]


def test_unfrozen_fine_tuning_moves_the_convolutions(source_run):
    from ephys.pipelines.core.training import TrainConfig, train

    root, src = source_run
    data = _windows(root / "target2", n=32, seed=2, shift=30.0)
    cfg = TrainConfig(model="cnn_bilstm", data=str(data), epochs=1, batch_size=8, lr=1e-2, eager=True,
                      out=str(root / "run-ft-all"), init=str(src), freeze="none", hparams={"width": 4, "lstm": 4})
    run = train(cfg, log=lambda *_: None)
    before, after = _weights(src / "model.keras"), _weights(run / "model.keras")
    assert any(not np.array_equal(a, b) for a, b in zip(before["conv0"], after["conv0"]))


def test_init_refuses_another_architecture(source_run):
    from ephys.pipelines.core.training import TrainConfig, train

    root, src = source_run
    cfg = TrainConfig(model="cnn_bilstm", data=str(root / "source"), epochs=1, eager=True, out=str(root / "bad"),
                      init=str(src), freeze="features", hparams={"width": 6, "lstm": 4})
    with pytest.raises(EphysError, match="no layer conv0 of the same shape"):
        train(cfg, log=lambda *_: None)
    assert not (root / "bad" / "config.yaml").exists()


def test_init_checked_before_keras(source_run, tmp_path):
    root, src = source_run
    one_line_error(ephys("train", "--model", "cnn_bilstm", "--data", root / "source", "--init", tmp_path / "nope",
                         "--out", tmp_path / "r"), "no such run folder")
    with pytest.raises(EphysError, match="declares no feature layers"):
        from ephys.pipelines.core.models import build_model

        build_model("unet1d", (256, 1), 1, freeze="features", width=2, depth=2)


def test_blocked_split_in_time_with_a_gap():
    from ephys.pipelines.core.validation import blocked_split

    t = np.array([5.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0])
    parts = blocked_split(t, 0.2, 0.2, gap=0.0)
    assert sorted(t[parts["test"]]) == [8.0, 9.0] and sorted(t[parts["val"]]) == [6.0, 7.0]
    parts = blocked_split(t, 0.2, 0.2, gap=1.5)  # samples within 1.5 before a later part are dropped
    assert sorted(t[parts["train"]]) == [0.0, 1.0, 2.0, 3.0, 4.0] and sorted(t[parts["val"]]) == [6.0]
    with pytest.raises(EphysError, match="no train sample"):
        blocked_split(t, 0.5, 0.5)
