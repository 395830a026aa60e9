"""Tests for ephys.pipelines.core.models: registry, backbones, custom layers, weights, fetch."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ephys.pipelines.blocks.models import backbones as B  # noqa: E402
from ephys.pipelines.core import models as M  # noqa: E402
from ephys.pipelines.core.errors import EphysError  # noqa: E402

# smallest sizes each keras.applications backbone accepts, to keep the tests fast
SMALL = {"resnet18": 32, "densenet121": 32, "resnet50": 32, "inceptionv3": 75, "mobilenetv2": 32}
#: parameter counts with the declared default hyper-parameters (only input_size made small, which
#: changes no count), 3 classes; measured before the hyper-parameters moved onto the ModelSpecs
BACKBONE_PARAMS = {"resnet18": 11_187_651, "densenet121": 7_040_579, "resnet50": 23_593_859,
                   "inceptionv3": 21_808_931, "mobilenetv2": 2_261_827}
SHAPE = (20, 60, 3)  # (n_scales, n_time, n_sweeps), resized inside the model


def _x(shape=SHAPE, batch=2, seed=0):
    return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)


def _np(v):
    return keras.ops.convert_to_numpy(v)


@pytest.fixture(scope="module")
def rn18():
    """One small ResNet18 classifier on SHAPE (3 classes), shared by tests that only read it."""
    return M.build_model("resnet18", SHAPE, 3, input_size=32)


def _predict(model, x):
    # eager call: no tf.function tracing, much faster than predict() for one tiny batch
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """Empty Keras cache and an unreachable weights server (a closed local port)."""
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(B.WEIGHTS_BASE_URL_ENV, f"http://127.0.0.1:{port}/")
    return home


@pytest.fixture
def http_root(tmp_path):
    """A local http.server on 127.0.0.1 (random port) serving ``root``; yields (root, url)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------- registry


def test_registry_names_and_aliases():
    assert set(M.REGISTRY) >= {"densenet121", "resnet18", "resnet50", "inceptionv3", "mobilenetv2"}
    assert M.resolve_model_name("DenseNet") == "densenet121"
    assert M.resolve_model_name("inception") == "inceptionv3"
    assert M.resolve_model_name("MOBILENET") == "mobilenetv2"
    assert M.resolve_model_name("ResNet-18") == "resnet18"
    assert M.resolve_model_name(" resnet50 ") == "resnet50"
    with pytest.raises(EphysError) as e:
        M.resolve_model_name("vgg16")
    assert "vgg16" in str(e.value) and "densenet121" in str(e.value) and "mobilenetv2" in str(e.value)
    assert M.REGISTRY["inceptionv3"].input_size == 299
    assert M.REGISTRY["resnet18"].imagenet is False


def test_modalities_and_describe():
    five = ["densenet121", "resnet18", "resnet50", "inceptionv3", "mobilenetv2"]
    assert [n for n in M.models_for_modality("scalogram") if n in five] == five  # others may register more
    assert M.models_for_modality("no-such-modality") == []
    assert M.check_modality("densenet", "scalogram") == "densenet121"
    with pytest.raises(EphysError) as e:
        M.check_modality("resnet18", "waveform")
    assert str(e.value).startswith("model resnet18 does not fit modality waveform; models that do:")
    info = {d["name"]: d for d in M.describe_models()}
    assert info["inceptionv3"]["aliases"] == ["inception"]
    assert info["densenet121"]["modalities"] == ["scalogram"]
    assert info["mobilenetv2"]["input_size"] == 224


def test_register_more_models():
    spec = M.ModelSpec("toy1d", lambda s, n, **h: None, ("waveform",), None, ("toy",), "test only", False)
    try:
        M.register(spec)
        assert M.resolve_model_name("TOY") == "toy1d"
        assert "toy1d" in M.models_for_modality("waveform")
        with pytest.raises(EphysError, match="models that do: .*toy1d"):
            M.check_modality("densenet", "waveform")
        with pytest.raises(ValueError):
            M.register(M.ModelSpec("other", spec.builder, ("waveform",), None, ("densenet",), "", False))
    finally:
        M.REGISTRY.pop("toy1d", None)


def test_bad_arguments():
    with pytest.raises(EphysError, match="freeze"):
        M.build_model("resnet18", SHAPE, 3, freeze="half")
    with pytest.raises(EphysError, match="learning_rate"):
        M.build_model("resnet18", SHAPE, 3, learning_rate=0.1)
    with pytest.raises(EphysError, match="input_size must be an integer >= 75"):
        M.build_model("inception", SHAPE, 3, input_size=64)
    with pytest.raises(EphysError, match="n_classes"):
        M.build_model("resnet18", SHAPE, 1)
    with pytest.raises(EphysError, match="input shape"):
        M.build_model("resnet18", (20, 60), 3)


# ---------------------------------------------------------------- backbones


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "resnet50", "inceptionv3", "mobilenetv2"])
def test_backbone_builds_and_predicts(name, request):
    if name == "resnet18":
        model = request.getfixturevalue("rn18")
    else:
        model = M.build_model(name, SHAPE, 3, input_size=SMALL[name])
    assert tuple(model.get_layer("backbone").inputs[0].shape[1:]) == (SMALL[name], SMALL[name], 3)
    assert model.count_params() == BACKBONE_PARAMS[name]  # the declared defaults build the same model
    assert model.get_layer("dropout").rate == 0.3
    y = _predict(model, _x(batch=2))
    assert y.shape == (2, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
    assert [type(layer).__name__ for layer in model.layers[1:4]] == [
        "AntialiasResize",
        "ChannelAdapter",
        "ImageNetPreprocess",
    ]


def test_resnet18_parameter_count(rn18):
    # parameter counts do not depend on the input size, so the small shared model will do
    backbone = rn18.get_layer("backbone")
    trainable = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    # torchvision resnet18 without fc: 11,176,512; Keras also counts the BN moving mean/variance
    assert trainable == 11_176_512
    assert backbone.count_params() == 11_176_512 + 9_600
    assert tuple(rn18.get_layer("predictions").kernel.shape) == (512, 3)
    assert trainable + 512 * 1000 + 1000 == 11_689_512  # torchvision resnet18 with its 1000-class fc
    assert tuple(backbone.outputs[0].shape[1:]) == (1, 1, 512)
    assert sum(isinstance(layer, keras.layers.Add) for layer in backbone.layers) == 8  # 4 stages x 2 blocks
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in backbone.layers) == 20  # 17 + 3 projections


@pytest.mark.parametrize("n_sweeps", [1, 2, 3, 5])
def test_channel_adapter_values(n_sweeps):
    x = _x((4, 5, n_sweeps), batch=2)
    y = keras.ops.convert_to_numpy(B.ChannelAdapter()(x))
    assert y.shape == (2, 4, 5, 3)
    if n_sweeps == 1:
        expected = np.repeat(x, 3, axis=-1)
    elif n_sweeps == 2:
        expected = np.concatenate([x, x.mean(axis=-1, keepdims=True)], axis=-1)
    else:
        expected = x[..., :3]
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_model_accepts_1_sweep():  # 2 sweeps: test_save_load_round_trip; 3: the backbone tests
    model = M.build_model("resnet18", (20, 60, 1), 3, input_size=32)
    y = _predict(model, _x((20, 60, 1), batch=1))
    assert y.shape == (1, 3)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("src, dst", [((180, 1200), (224, 224)), ((20, 60), (32, 32)), ((50, 40), (75, 75))])
def test_antialias_resize_matches_keras_resizing(src, dst):
    x = _x((*src, 2), batch=2)
    ours = _np(B.AntialiasResize(*dst)(x))
    theirs = _np(keras.layers.Resizing(*dst, interpolation="bilinear", antialias=True)(x))
    assert ours.shape == (2, *dst, 2)
    np.testing.assert_allclose(ours, theirs, atol=5e-5)


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="jit_compile means torch.compile there")
def test_input_layers_train_under_xla():
    # keras.layers.Resizing(antialias=True) fails here on TensorFlow (ScaleAndTranslate has no XLA kernel)
    inputs = keras.Input((20, 60, 2))
    x = B.AntialiasResize(32, 32)(inputs)
    x = B.ChannelAdapter()(x)
    x = B.ImageNetPreprocess("caffe")(x)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", jit_compile=True)
    history = model.fit(_x((20, 60, 2), batch=4), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "mode, app",
    [("torch", "densenet"), ("caffe", "resnet50"), ("tf", "inception_v3"), ("tf", "mobilenet_v2")],
)
def test_preprocess_matches_keras_applications(mode, app):
    x = _x((6, 7, 3), batch=2)
    ours = keras.ops.convert_to_numpy(B.ImageNetPreprocess(mode)(x))
    theirs = getattr(keras.applications, app).preprocess_input(255.0 * x.copy())
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-5, atol=1e-4)


def test_save_load_round_trip(tmp_path):
    model = M.build_model("resnet18", (20, 60, 2), 3, input_size=32, dropout=0.5)
    x = _x((20, 60, 2), batch=3)
    before = _predict(model, x)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True: no Lambda layers to refuse
    np.testing.assert_array_equal(_predict(loaded, x), before)
    assert loaded.get_layer("to_rgb").__class__ is B.ChannelAdapter
    assert loaded.get_layer("imagenet_preprocess").mode == "torch"
    assert loaded.get_layer("dropout").rate == 0.5


def test_freeze_full_trains_only_head(rn18):
    assert rn18.get_layer("backbone").trainable
    assert len(rn18.trainable_weights) == 2 + len(rn18.get_layer("backbone").trainable_weights) > 2

    model = M.build_model("resnet18", SHAPE, 3, input_size=32, freeze="full")
    backbone = model.get_layer("backbone")
    assert backbone.trainable is False and backbone.trainable_weights == []
    names = sorted(w.path for w in model.trainable_weights)
    assert names == ["predictions/bias", "predictions/kernel"]

    before = [_np(w) for w in backbone.weights]  # includes BN moving statistics
    # eager: skips tracing the training step, 3x faster for a single step
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", run_eagerly=True)
    model.fit(_x(batch=4), np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    for w, b in zip(backbone.weights, before):
        np.testing.assert_array_equal(_np(w), b)


# ---------------------------------------------------------------- weights from a file


def test_weights_from_backbone_file(tmp_path, rn18):
    source = rn18
    path = tmp_path / "rn18_backbone.weights.h5"
    source.get_layer("backbone").save_weights(path)
    # a different input size and class count: the backbone weights still fit
    model = M.build_model("resnet18", (30, 40, 1), 5, weights=str(path), input_size=64)
    for a, b in zip(model.get_layer("backbone").weights, source.get_layer("backbone").weights):
        np.testing.assert_array_equal(_np(a), _np(b))


def test_weights_file_missing_or_incompatible(tmp_path, rn18):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(EphysError) as e:
        M.build_model("resnet18", SHAPE, 3, weights=missing, input_size=32)
    assert str(missing) in str(e.value) and "\n" not in str(e.value)

    wrong = tmp_path / "rn18_backbone.weights.h5"
    rn18.get_layer("backbone").save_weights(wrong)
    with pytest.raises(EphysError) as e:
        M.build_model("mobilenetv2", SHAPE, 3, weights=wrong, input_size=32)
    assert str(wrong) in str(e.value) and "\n" not in str(e.value)

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(EphysError) as e:
        M.build_model("resnet18", SHAPE, 3, weights=garbage, input_size=32)
    assert str(garbage) in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- ImageNet weights, offline


@pytest.mark.parametrize("name", ["densenet", "resnet50", "inception", "mobilenet"])
def test_imagenet_offline_points_to_fetch(offline_cache, name):
    with pytest.raises(EphysError) as e:
        M.build_model(name, SHAPE, 3, weights="imagenet", input_size=SMALL[M.resolve_model_name(name)])
    msg = str(e.value)
    assert "ephys fetch weights" in msg and M.resolve_model_name(name) in msg and "\n" not in msg
    assert list(offline_cache.rglob("*.h5")) == []  # nothing half-downloaded left behind


def test_resnet18_has_no_imagenet(offline_cache):
    with pytest.raises(EphysError, match="no Keras ImageNet weights.*--weights PATH"):
        M.build_model("resnet18", SHAPE, 3, weights="imagenet")
    with pytest.raises(EphysError, match="no Keras ImageNet weights"):
        B.fetch_weights("resnet18")


def _save_notop_h5(model, path: Path) -> None:
    """Write weights in the legacy Keras h5 layout of the keras.applications notop files."""
    try:
        import h5py
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    except ImportError:  # private API moved: a legacy full-model .h5 loads the same way
        model.save(path)
        return
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)


def test_fetch_weights_from_local_server_then_build_offline(http_root, offline_cache, monkeypatch):
    root, url = http_root
    rel, md5 = B._IMAGENET_NOTOP["mobilenetv2"]
    assert md5 is None  # keras.applications.MobileNetV2 checks no hash, so any file is accepted
    served = root / rel
    served.parent.mkdir(parents=True)
    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(224, 224, 3))
    _save_notop_h5(source, served)

    got = B.fetch_weights("mobilenet", base_url=url)
    assert got == offline_cache / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert got.read_bytes() == served.read_bytes()
    assert B.imagenet_weights_file("mobilenetv2") == got.name
    assert [p.name for p in (offline_cache / "models").iterdir()] == [got.name]  # staging folder removed

    served.unlink()  # cached now: neither the server nor the network is needed any more
    model = M.build_model("mobilenetv2", SHAPE, 3, weights="imagenet", input_size=32)
    for a, b in zip(model.get_layer("backbone").weights, source.weights):
        np.testing.assert_array_equal(_np(a), _np(b))
    assert B.fetch_weights("mobilenetv2") == got  # cache hit, no download


def test_fetch_weights_env_base_url(http_root, offline_cache, monkeypatch):
    root, url = http_root
    rel, _ = B._IMAGENET_NOTOP["mobilenetv2"]
    (root / rel).parent.mkdir(parents=True)
    (root / rel).write_bytes(b"x" * 100)
    monkeypatch.setenv(B.WEIGHTS_BASE_URL_ENV, url)
    got = B.fetch_weights("mobilenetv2")
    assert got.read_bytes() == b"x" * 100


def test_fetch_weights_404_and_bad_hash(http_root, offline_cache):
    root, url = http_root
    with pytest.raises(EphysError) as e:
        B.fetch_weights("densenet121", base_url=url)
    msg = str(e.value)
    assert "404" in msg and "densenet121" in msg and "\n" not in msg

    rel, _ = B._IMAGENET_NOTOP["densenet121"]
    (root / rel).parent.mkdir(parents=True)
    (root / rel).write_bytes(b"not the real densenet weights")
    with pytest.raises(EphysError) as e:
        B.fetch_weights("densenet121", base_url=url)
    assert "hash" in str(e.value) and "\n" not in str(e.value)
    assert list((offline_cache / "models").iterdir()) == []  # the bad file never entered the cache


def test_bn_momentum_defaults_to_seed_value_and_is_validated():
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.blocks.models.backbones import DEFAULT_BN_MOMENTUM
    from ephys.pipelines.core.models import build_model

    m = build_model("resnet18", (16, 32, 3), 2, input_size=32)
    bns = [l for l in m.get_layer("backbone").layers if l.__class__.__name__ == "BatchNormalization"]
    assert bns and all(l.momentum == DEFAULT_BN_MOMENTUM == 0.9 for l in bns)
    m = build_model("mobilenetv2", (16, 32, 3), 2, input_size=32, bn_momentum=0.99)
    assert all(l.momentum == 0.99 for l in m.get_layer("backbone").layers
               if l.__class__.__name__ == "BatchNormalization")
    with pytest.raises(EphysError):
        build_model("mobilenetv2", (16, 32, 3), 2, input_size=32, bn_momentum=1.5)


# ---------------------------------------------------------------- hyper-parameters (data on the ModelSpec)


def test_check_hparams_refuses_unknown_keys_naming_the_accepted_ones():
    with pytest.raises(EphysError) as e:
        M.check_hparams("gru", {"widht": 3})
    msg = str(e.value)
    assert msg == ("--hparam: model gru has no hyper-parameter widht; it accepts: dropout, width, bidirectional, "
                   "input_norm, pool")
    with pytest.raises(EphysError, match="^model resnet18 has no hyper-parameter learning_rate; it accepts: dropout, "
                                         "input_size, bn_momentum$"):
        M.build_model("resnet18", SHAPE, 3, learning_rate=0.1)  # refused before anything is built
    with pytest.raises(EphysError, match="unknown model 'vgg16'"):
        M.check_hparams("vgg16", {})


@pytest.mark.parametrize("model, given, needle", [
    ("gru", {"width": "abc"}, "model gru: width must be an integer >= 1, not 'abc'"),
    ("gru", {"width": 2.5}, "width must be an integer >= 1, not 2.5"),
    ("gru", {"width": True}, "width must be an integer >= 1, not True"),
    ("gru", {"width": 0}, "width must be an integer >= 1, not 0"),
    ("gru", {"dropout": 1.0}, "dropout must be a number in [0, 1), not 1.0"),
    ("gru", {"dropout": float("nan")}, "dropout must be a number in [0, 1)"),
    ("gru", {"pool": "max"}, "pool must be one of last, mean, not 'max'"),
    ("gru", {"bidirectional": "maybe"}, "bidirectional must be true or false, not 'maybe'"),
    ("mobilenetv2", {"bn_momentum": 1.5}, "bn_momentum must be a number in (0, 1), not 1.5"),
    ("inceptionv3", {"input_size": 64}, "input_size must be an integer >= 75, not 64"),
    ("bilstm", {"keep_channels": "0,x"}, "keep_channels must be a comma-separated list of integers >= 0"),
    ("mlp", {"hidden": "4,0"}, "hidden must be a comma-separated list of integers >= 1, not '4,0'"),
    ("lightgbm", {"imputation": "mean"}, "imputation must be one of native, median, not 'mean'"),
    ("lightgbm", {"subsample": 0}, "subsample must be a number in (0, 1], not 0"),
])
def test_check_hparams_refuses_bad_types_and_ranges(model, given, needle):
    with pytest.raises(EphysError) as e:
        M.check_hparams(model, given, where="")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_check_hparams_fills_defaults_and_converts_types():
    assert M.check_hparams("gru", {}) == {"dropout": 0.3, "width": 64, "bidirectional": False,
                                         "input_norm": "batch", "pool": "last"}
    hp = M.check_hparams("gru", {"dropout": 0, "width": "8", "bidirectional": "true", "pool": "MEAN",
                                 "input_norm": None})
    assert hp == {"dropout": 0.0, "width": 8, "bidirectional": True, "input_norm": "batch", "pool": "mean"}
    assert isinstance(hp["dropout"], float) and isinstance(hp["width"], int)  # an int is fine for a float
    assert M.check_hparams("gru", {"width": 16.0})["width"] == 16  # YAML may write a whole number as 16.0
    assert M.check_hparams("bilstm", {"keep_channels": "0,3,5"})["keep_channels"] == [0, 3, 5]
    assert M.check_hparams("bilstm", {})["keep_channels"] is None  # not set: all channels
    assert M.check_hparams("mlp", {"hidden": 8})["hidden"] == [8]  # --hparam hidden=8 reads an int
    assert M.check_hparams("mlp", {})["hidden"] == [7, 4, 4, 2]
    assert M.check_hparams("inceptionv3", {})["input_size"] == 299
    assert M.check_hparams("densenet", {})["input_size"] == 224


def test_hparam_declarations_are_checked():
    with pytest.raises(ValueError):
        M.HParam(1, list, "not a declared type")
    with pytest.raises(ValueError):
        M.HParam(0.5, float, "default out of its own range", max=0.1)
    with pytest.raises(ValueError):
        M.HParam("c", str, "default not a choice", choices=("a", "b"))
    h = M.HParam(0.2, float, "x", min=0, max=1, max_exclusive=True)
    assert h.range_text() == "[0, 1)" and h.what() == "a number in [0, 1)" and h.type_name == "float"
    with pytest.raises(ValueError, match="HParam"):
        M.register(M.ModelSpec("toy_bad_hp", lambda s, n: None, ("waveform",), None, (), "", False,
                               hparams={"width": 3}))
    assert "toy_bad_hp" not in M.REGISTRY


def test_every_model_declares_its_hparams_as_its_builder_defaults():
    import inspect

    for spec in M.REGISTRY.values():
        assert all(h.help for h in spec.hparams.values()), spec.name
        params = inspect.signature(M.resolve_builder(spec)).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue  # e.g. lightgbm: resolves its settings itself from the declaration
        for key, h in spec.hparams.items():
            default = params[key].default
            assert (list(default) if isinstance(default, tuple) else default) == M.check_hparams(spec, {})[key], \
                (spec.name, key)
        assert set(spec.hparams) == set(list(params)[2:]), spec.name  # no undeclared builder argument
    info = {d["name"]: d for d in M.describe_models()}
    assert list(info["gru"]["hparams"]) == ["dropout", "width", "bidirectional", "input_norm", "pool"]
    assert info["gru"]["hparams"]["pool"] == {
        "type": "str", "default": "last", "help": info["gru"]["hparams"]["pool"]["help"], "choices": ["last", "mean"],
        "min": None, "max": None, "min_exclusive": False, "max_exclusive": False, "many": False, "range": "",
        "default_text": "last", "search": None}
    assert info["gru"]["hparams"]["width"]["search"] == {"low": 16, "high": 128, "log": True}
    assert info["mlp"]["hparams"]["hidden"]["default"] == [7, 4, 4, 2]


@pytest.mark.parametrize("name, shape, hp, n_params", [
    ("cnn1d", (42, 1), {}, 64_486),
    ("gru", (42, 1), {}, 37_958),
    ("gru", (42, 1), {"bidirectional": True, "pool": "mean", "input_norm": "none"}, 100_482),
    ("bilstm", (25, 12), {}, 80_818),
    ("bilstm", (25, 12), {"keep_channels": "0,3,5", "input_norm": False}, 76_162),
    ("cnn_bilstm", (600, 1), {}, 15_762),
    ("mlp", (9,), {}, 156),
    ("mlp", (9,), {"hidden": "5,3"}, 94),
])
def test_declared_defaults_build_the_same_models_as_before(name, shape, hp, n_params):
    """Parameter counts measured with the builders' own checks, before the hyper-parameters became
    declarations: the declared defaults (and given values) build the same networks."""
    model = M.build_model(name, shape, 2, **hp)
    assert model.count_params() == n_params
    rates = [ly.rate for ly in model.layers if isinstance(ly, keras.layers.Dropout)]
    assert rates == {"cnn1d": [0.3], "gru": [0.3], "bilstm": [0.2, 0.2], "cnn_bilstm": [0.2], "mlp": []}[name]


def test_lightgbm_declared_defaults_are_lightgbms():
    pytest.importorskip("lightgbm")
    from ephys.pipelines.blocks.models.lightgbm import LIGHTGBM_DEFAULTS

    est = M.build_model("lightgbm", (5,), 2)
    params = est.get_params()
    assert {k: params[k] for k in LIGHTGBM_DEFAULTS} == LIGHTGBM_DEFAULTS
    assert params["random_state"] == 0 and params["subsample_freq"] == 0


def test_train_config_checks_decision_and_hparams_in_the_core(tmp_path):
    import yaml

    from ephys.pipelines.core.training import TrainConfig, check_config, model_hparams

    with pytest.raises(EphysError, match="^--decision must be argmax or val_macro_f1, not 'best'$"):
        check_config(TrainConfig(data="ds", model="gru", decision="best"))
    check_config(TrainConfig(data="ds", model="gru", decision="val_macro_f1"))
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": "ds", "model": "gru", "decision": "Argmax"}))
    with pytest.raises(EphysError, match="`decision` must be argmax or val_macro_f1") as e:
        TrainConfig.from_yaml(cfg_file)
    assert str(e.value).startswith(str(cfg_file))
    cfg_file.write_text(yaml.safe_dump({"data": "ds", "model": "gru", "hparams": {"widht": 8}}))
    with pytest.raises(EphysError, match="`hparams`: model gru has no hyper-parameter widht; it accepts: dropout"):
        TrainConfig.from_yaml(cfg_file)
    with pytest.raises(EphysError, match="^--hparam: model gru: width must be an integer >= 1, not 'x'$"):
        check_config(TrainConfig(data="ds", model="gru", hparams={"width": "x"}), options={"hparams"})
    with pytest.raises(EphysError, match="^--input-size: model cnn1d has no hyper-parameter input_size"):
        check_config(TrainConfig(data="ds", model="cnn1d", input_size=64), options={"input_size"})
    with pytest.raises(EphysError, match="^--input-size: model inceptionv3: input_size must be an integer >= 75"):
        check_config(TrainConfig(data="ds", model="inception", input_size=64), options={"input_size"})
    check_config(TrainConfig(data="ds", model="no-such-model"))  # left to train(), which lists the known models
    # what train() gives each model: --dropout only to models that declare one, --hparam over it
    assert model_hparams(TrainConfig(model="gru"), M.REGISTRY["gru"]) == {"dropout": 0.3}
    assert model_hparams(TrainConfig(model="gru", hparams={"dropout": 0.1}), M.REGISTRY["gru"]) == {"dropout": 0.1}
    assert model_hparams(TrainConfig(model="mlp", dropout=0.5), M.REGISTRY["mlp"]) == {}
    assert model_hparams(TrainConfig(model="resnet18", input_size=48), M.REGISTRY["resnet18"]) == {
        "dropout": 0.3, "input_size": 48}
    assert model_hparams(TrainConfig(model="lightgbm", hparams={"tune": True}, input_size=48),
                         M.REGISTRY["lightgbm"]) == {"tune": True}
