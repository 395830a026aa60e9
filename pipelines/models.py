"""The shared model registry: named builders that turn a prepared sample shape into a Keras model.

Every model is a small builder ``build_<name>(input_shape, n_classes, **hparams) -> keras.Model``
registered under a canonical name (plus aliases) in :data:`REGISTRY`, with the data modalities it
fits. :func:`build_model` is the one entry point callers use: it resolves the name, builds the
model, loads backbone weights (``"none"``, ``"imagenet"`` or a file path) and freezes the backbone
when asked. Other pipelines add their own models with :func:`register`.

This module holds the image backbones for CWT scalograms (modality ``"scalogram"``). Their input
is the raw prepared sample, ``(n_scales, n_time, n_sweeps)`` float32 in [0, 1]; inside the model:

1. :class:`AntialiasResize` to ``(size, size)``, the backbone's input size: the same numbers as
   ``keras.layers.Resizing(size, size, antialias=True)``, but XLA-compatible (see the class),
2. :class:`ChannelAdapter` to exactly 3 channels,
3. :class:`ImageNetPreprocess`, the backbone's own ``preprocess_input`` applied to ``255 * x``,
4. the backbone sub-model (``include_top=False``), a layer named ``"backbone"``,
5. ``GlobalAveragePooling2D`` -> ``Dropout(dropout)`` -> ``Dense(n_classes, softmax, float32)``.

Model code uses the Keras 3 API only (``keras.layers``, ``keras.ops``, ``keras.applications``),
so the TensorFlow, JAX and PyTorch backends all work (the tests pass on TensorFlow and JAX). The three custom layers are registered with
``keras.saving.register_keras_serializable(package="ephys")``: importing this module is enough
for ``keras.models.load_model`` to read a saved ``.keras`` file (no Lambda layers, safe mode on).

ImageNet weights are the keras.applications "notop" files, kept in Keras' cache
(``$KERAS_HOME/models/`` or ``~/.keras/models/``). :func:`fetch_weights` downloads them there
(``ephys fetch weights NAME``); :func:`build_model` never needs the network when they are cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import keras
import numpy as np
from keras import layers, ops

from .errors import EphysError

__all__ = [
    "ModelSpec",
    "REGISTRY",
    "register",
    "resolve_model_name",
    "models_for_modality",
    "check_modality",
    "build_model",
    "fetch_weights",
    "describe_models",
    "keras_cache_dir",
    "imagenet_weights_file",
    "AntialiasResize",
    "ChannelAdapter",
    "ImageNetPreprocess",
    "resnet18_backbone",
    "build_densenet121",
    "build_resnet18",
    "build_resnet50",
    "build_inceptionv3",
    "build_mobilenetv2",
    "build_cnn1d",
    "build_gru",
]

#: Where keras.applications downloads its weights from; ``base_url`` / ``$EPHYS_WEIGHTS_BASE_URL``
#: replace this prefix (the part after it is kept, so a mirror has the same folder layout).
KERAS_WEIGHTS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHTS_BASE_URL_ENV = "EPHYS_WEIGHTS_BASE_URL"
#: Seconds a stalled connection may stay silent during a weights download.
DOWNLOAD_TIMEOUT_S = 60.0

SCALOGRAM = "scalogram"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """One registered model.

    Attributes
    ----------
    name : str
        Canonical name (lower case), the key in :data:`REGISTRY`.
    builder : Callable
        ``builder(input_shape, n_classes, **hparams)`` returning a ``keras.Model`` (models that
        support ``weights``/``freeze`` in :func:`build_model` name their feature extractor
        layer ``"backbone"``).
    modalities : tuple[str, ...]
        Data modalities the model accepts (e.g. ``"scalogram"``, ``"waveform"``).
    input_size : int | None
        Side of the square image the backbone sees (``None`` when not an image model).
    aliases : tuple[str, ...]
        Other accepted names (case-insensitive).
    description : str
        One line for ``--help`` and docs, with the source paper.
    imagenet : bool
        Whether Keras publishes ImageNet weights for it (``--weights imagenet``).
    kind : str
        ``"keras"`` (trained by gradient descent in :func:`ephys.pipelines.training.train`) or
        ``"lightgbm"`` (gradient-boosted trees on feature tables, :mod:`ephys.pipelines.tabular`;
        its builder returns an unfitted ``LGBMClassifier``).
    """

    name: str
    builder: Callable[..., Any]
    modalities: tuple[str, ...]
    input_size: int | None
    aliases: tuple[str, ...]
    description: str
    imagenet: bool
    kind: str = "keras"


#: Canonical name -> spec. Add entries with :func:`register`, not by assignment.
REGISTRY: dict[str, ModelSpec] = {}


def _key(name: str) -> str:
    """Lookup key: case-insensitive, ignoring '-', '_' and spaces ("ResNet-18" == "resnet18")."""
    return "".join(ch for ch in str(name).strip().lower() if ch not in "-_ ")


def register(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to :data:`REGISTRY` under ``spec.name`` (lower-cased) and its aliases.

    Parameters
    ----------
    spec : ModelSpec
        The model to add.
    replace : bool
        Allow replacing an existing model of the same canonical name.

    Returns
    -------
    ModelSpec
        The stored spec (name and aliases lower-cased, modalities/aliases as tuples).

    Raises
    ------
    ValueError
        Empty name, the name already registered (and ``replace`` is false), or a name/alias that
        collides with another model's name or alias. (A programming error, not a user error.)
    """
    name = str(spec.name).strip().lower()
    if not name:
        raise ValueError("a model needs a name")
    spec.name = name
    spec.aliases = tuple(str(a).strip().lower() for a in spec.aliases)
    spec.modalities = tuple(str(m).strip().lower() for m in spec.modalities)
    if name in REGISTRY and not replace:
        raise ValueError(f"model {name!r} is already registered")
    taken = {}
    for other in REGISTRY.values():
        if other.name == name:
            continue
        for k in (other.name, *other.aliases):
            taken[_key(k)] = other.name
    for k in (name, *spec.aliases):
        if _key(k) in taken:
            raise ValueError(f"model name or alias {k!r} is already used by {taken[_key(k)]!r}")
    REGISTRY[name] = spec
    return spec


def resolve_model_name(name: str) -> str:
    """Canonical registry name for ``name`` or one of its aliases.

    Matching is case-insensitive and ignores ``-``, ``_`` and spaces (``"ResNet-18"`` ->
    ``"resnet18"``, ``"DenseNet"`` -> ``"densenet121"``).

    Raises
    ------
    EphysError
        Unknown name; the message lists the known names.
    """
    k = _key(name)
    for spec in REGISTRY.values():
        if k == _key(spec.name) or any(k == _key(a) for a in spec.aliases):
            return spec.name
    raise EphysError(f"unknown model {name!r}; known models: {', '.join(_known_names())}")


def _known_names() -> list[str]:
    out = []
    for spec in REGISTRY.values():
        out.append(spec.name + (f" ({', '.join(spec.aliases)})" if spec.aliases else ""))
    return out


def models_for_modality(modality: str) -> list[str]:
    """Canonical names of the registered models that accept ``modality`` (registration order).

    An unknown modality gives an empty list.
    """
    m = str(modality).strip().lower()
    return [spec.name for spec in REGISTRY.values() if m in spec.modalities]


def check_modality(name: str, modality: str) -> str:
    """Check that model ``name`` fits data ``modality``; return its canonical name.

    Raises
    ------
    EphysError
        Unknown model name, or ``"model X does not fit modality Y; models that do: a, b, c"``.
    """
    canonical = resolve_model_name(name)
    m = str(modality).strip().lower()
    if m not in REGISTRY[canonical].modalities:
        fitting = models_for_modality(m)
        raise EphysError(
            f"model {canonical} does not fit modality {m}; models that do: "
            + (", ".join(fitting) if fitting else "(none registered)")
        )
    return canonical


def describe_models() -> list[dict]:
    """One dict per registered model, for ``--help`` and docs.

    Returns
    -------
    list[dict]
        Keys: ``name`` (str), ``aliases`` (list[str]), ``modalities`` (list[str]),
        ``input_size`` (int | None), ``imagenet`` (bool), ``description`` (str), ``kind``
        (``"keras"`` | ``"lightgbm"``).
    """
    return [
        {
            "name": s.name,
            "aliases": list(s.aliases),
            "modalities": list(s.modalities),
            "input_size": s.input_size,
            "imagenet": s.imagenet,
            "description": s.description,
            "kind": s.kind,
        }
        for s in REGISTRY.values()
    ]


# --------------------------------------------------------------------------------------------
# Custom layers
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="ephys")
class ChannelAdapter(layers.Layer):
    """Map any number of sweep channels to the 3 channels an ImageNet backbone expects.

    Channels-last input ``(batch, height, width, c)``, any float dtype; output
    ``(batch, height, width, 3)`` of the same dtype. No weights (non-trainable).

    - ``c == 3``: identity,
    - ``c == 1``: the channel repeated 3 times,
    - ``c == 2``: ``[a, b, (a + b) / 2]``,
    - ``c > 3``: the first 3 channels.

    Raises
    ------
    ValueError
        At build time, when the channel count is not known statically or is 0.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)

    def build(self, input_shape):
        c = input_shape[-1]
        if c is None or int(c) < 1:
            raise ValueError(f"ChannelAdapter needs a known channel count >= 1, got {c}")
        self.built = True

    def call(self, x):
        c = x.shape[-1]
        if c == 3:
            return x
        if c == 1:
            return ops.concatenate([x, x, x], axis=-1)
        if c == 2:
            a = x[..., 0:1]
            b = x[..., 1:2]
            return ops.concatenate([a, b, (a + b) * 0.5], axis=-1)
        return x[..., :3]

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape[:-1]), 3)


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) float32 weights of 1-D anti-aliased bilinear resampling (half-pixel centres).

    The triangle kernel is widened by the downscale factor when shrinking, as in
    ``tf.image.resize(..., antialias=True)`` / ``jax.image.resize`` / PIL; each column sums to 1.
    """
    inv_scale = n_in / n_out
    kernel_scale = max(inv_scale, 1.0)
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * inv_scale - 0.5
    dist = np.abs(centres[None, :] - np.arange(n_in, dtype=np.float64)[:, None]) / kernel_scale
    w = np.maximum(0.0, 1.0 - dist)
    total = w.sum(axis=0, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0)
    return w.astype(np.float32)


@keras.saving.register_keras_serializable(package="ephys")
class AntialiasResize(layers.Layer):
    """Anti-aliased bilinear resize of channels-last images to ``(height, width)``.

    Numerically ``keras.layers.Resizing(height, width, antialias=True)`` (to ~1e-5), written as
    two matrix products with fixed resampling matrices (``keras.ops.einsum``), so it works on
    every backend *and* under XLA: TensorFlow's anti-aliased resize op (``ScaleAndTranslate``)
    has no XLA kernel, so a model holding ``Resizing(antialias=True)`` fails to train with
    ``jit_compile=True`` (Keras' ``"auto"`` on a GPU). Anti-aliasing matters here because a
    scalogram's time axis (typically 1200 bins) shrinks about 5x to 224: plain bilinear would
    read only ~2 of every 5 time bins.

    Input ``(batch, h, w, c)`` float, output ``(batch, height, width, c)`` same dtype. No weights
    (the matrices are rebuilt from the config, never saved).

    Raises
    ------
    ValueError
        Non-positive target size, or an input whose height/width is not known at build time.
    """

    def __init__(self, height: int, width: int, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.height = int(height)
        self.width = int(width)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"AntialiasResize needs a positive size, got {height}x{width}")

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None:
            raise ValueError(f"AntialiasResize needs a static input height and width, got {input_shape}")
        h, w = int(h), int(w)
        self._mh = None if h == self.height else _resize_matrix(h, self.height)
        self._mw = None if w == self.width else _resize_matrix(w, self.width)
        # contract the axis first that leaves the smaller intermediate tensor
        self._width_first = h * self.width <= self.height * w
        self.built = True

    def call(self, x):
        def along_h(t):
            if self._mh is None:
                return t
            return ops.einsum("bhwc,hu->buwc", t, ops.convert_to_tensor(self._mh, dtype=t.dtype))

        def along_w(t):
            if self._mw is None:
                return t
            return ops.einsum("bhwc,wv->bhvc", t, ops.convert_to_tensor(self._mw, dtype=t.dtype))

        return along_h(along_w(x)) if self._width_first else along_w(along_h(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width)
        return config


#: the modes of keras.applications.imagenet_utils.preprocess_input
_PREPROCESS_MODES = ("torch", "caffe", "tf")


@keras.saving.register_keras_serializable(package="ephys")
class ImageNetPreprocess(layers.Layer):
    """A backbone's ImageNet input scaling, for inputs in [0, 1].

    Equals ``keras.applications.<app>.preprocess_input(255 * x)`` for the given mode, written
    with ``keras.ops`` so every backend (and model saving) works. Input and output
    ``(batch, height, width, 3)`` channels-last RGB, same float dtype. No weights.

    Modes
    -----
    ``"torch"`` (DenseNet, ResNet18): ``(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``.
    ``"caffe"`` (ResNet50): RGB -> BGR, ``255 * x - [103.939, 116.779, 123.68]``.
    ``"tf"`` (InceptionV3, MobileNetV2): ``2 * x - 1``, i.e. [-1, 1].

    Raises
    ------
    ValueError
        Unknown ``mode``, or an input whose last axis is not 3.
    """

    def __init__(self, mode: str = "torch", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if mode not in _PREPROCESS_MODES:
            raise ValueError(f"ImageNetPreprocess mode must be one of {_PREPROCESS_MODES}, got {mode!r}")
        self.mode = mode

    def build(self, input_shape):
        if input_shape[-1] != 3:
            raise ValueError(f"ImageNetPreprocess needs 3 channels, got {input_shape[-1]}")
        self.built = True

    def call(self, x):
        if self.mode == "tf":
            return x * 2.0 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor([0.485, 0.456, 0.406], dtype=x.dtype)
            std = ops.convert_to_tensor([0.229, 0.224, 0.225], dtype=x.dtype)
            return (x - mean) / std
        # caffe: RGB -> BGR, zero-centred on the ImageNet BGR mean, no scaling
        mean = ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=x.dtype)
        return ops.flip(x, axis=-1) * 255.0 - mean

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


# --------------------------------------------------------------------------------------------
# Image classifier scaffolding
# --------------------------------------------------------------------------------------------

_IMAGE_HPARAMS = ("dropout", "input_size", "bn_momentum")
#: BatchNorm moving-average momentum of every backbone BN layer. Keras applications use 0.99;
#: the STS seed trained torchvision backbones, whose momentum 0.1 is Keras' 0.9. With the few
#: steps per epoch of a small cell dataset, 0.99 leaves the inference-time statistics far from
#: the training ones for many epochs (validation stuck at chance while training accuracy is 1).
DEFAULT_BN_MOMENTUM = 0.9


def _image_hparams(name: str, hparams: dict, default_size: int, min_size: int) -> tuple[float, int]:
    """Validate the hyper-parameters of an image backbone: (dropout, input_size)."""
    unknown = sorted(set(hparams) - set(_IMAGE_HPARAMS))
    if unknown:
        raise EphysError(
            f"model {name} has no hyper-parameter {', '.join(unknown)}; it accepts: {', '.join(_IMAGE_HPARAMS)}"
        )
    dropout = hparams.get("dropout", 0.3)
    try:
        dropout = float(0.3 if dropout is None else dropout)
    except (TypeError, ValueError):
        raise EphysError(f"model {name}: dropout must be a number in [0, 1), got {dropout!r}") from None
    if not 0.0 <= dropout < 1.0:
        raise EphysError(f"model {name}: dropout must be in [0, 1), got {dropout}")
    size = hparams.get("input_size")
    if size is None:
        size = default_size
    if isinstance(size, bool) or not isinstance(size, int) and not (isinstance(size, float) and size.is_integer()):
        raise EphysError(f"model {name}: input_size must be an integer, got {size!r}")
    size = int(size)
    if size < min_size:
        raise EphysError(f"model {name}: input_size must be >= {min_size}, got {size}")
    return dropout, size


def _bn_momentum(name: str, hparams: dict) -> float:
    value = hparams.get("bn_momentum")
    try:
        value = float(DEFAULT_BN_MOMENTUM if value is None else value)
    except (TypeError, ValueError):
        raise EphysError(f"model {name}: bn_momentum must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < value < 1.0:
        raise EphysError(f"model {name}: bn_momentum must be in (0, 1), got {value}")
    return value


def _check_image_input(name: str, input_shape, n_classes) -> tuple[tuple[int, int, int], int]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise EphysError(f"model {name}: input shape must be (n_scales, n_time, n_sweeps), got {input_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise EphysError(
            f"model {name}: input shape must be (n_scales, n_time, n_sweeps) with positive sizes, got {input_shape!r}"
        )
    try:
        ok = not isinstance(n_classes, bool) and int(n_classes) == n_classes and int(n_classes) >= 2
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise EphysError(f"model {name}: n_classes must be an integer >= 2, got {n_classes!r}")
    return shape, int(n_classes)


def _image_classifier(
    name: str,
    input_shape,
    n_classes: int,
    backbone_fn: Callable[[tuple[int, int, int]], keras.Model],
    preprocess_mode: str,
    default_size: int,
    min_size: int,
    hparams: dict,
) -> keras.Model:
    """AntialiasResize -> ChannelAdapter -> ImageNetPreprocess -> backbone -> GAP -> Dropout -> Dense."""
    shape, n_classes = _check_image_input(name, input_shape, n_classes)
    dropout, size = _image_hparams(name, hparams, default_size, min_size)
    inputs = keras.Input(shape=shape, dtype="float32", name="scalogram")
    x = AntialiasResize(size, size, name="resize")(inputs)
    x = ChannelAdapter(name="to_rgb")(x)
    x = ImageNetPreprocess(preprocess_mode, name="imagenet_preprocess")(x)
    backbone = backbone_fn((size, size, 3))
    momentum = _bn_momentum(name, hparams)
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum
    x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"ephys_{name}")


# --------------------------------------------------------------------------------------------
# ResNet18 (not in keras.applications)
# --------------------------------------------------------------------------------------------

_BN_EPS = 1e-5  # as torchvision's ResNet
_BN_MOMENTUM = 0.9  # = PyTorch momentum 0.1


def _conv_init():
    # He et al. 2015 ("Delving Deep into Rectifiers") normal init, fan_out as torchvision ResNet
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def _basic_block(x, filters: int, stride: int, name: str):
    """ResNet BasicBlock: 3x3 conv/stride-BN-ReLU-3x3 conv-BN, + shortcut, ReLU."""
    in_filters = x.shape[-1]
    if stride != 1 or in_filters != filters:
        shortcut = layers.Conv2D(
            filters, 1, strides=stride, use_bias=False, kernel_initializer=_conv_init(), name=f"{name}_0_conv"
        )(x)
        shortcut = layers.BatchNormalization(epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    y = layers.ZeroPadding2D(1, name=f"{name}_1_pad")(x)
    y = layers.Conv2D(
        filters, 3, strides=stride, use_bias=False, kernel_initializer=_conv_init(), name=f"{name}_1_conv"
    )(y)
    y = layers.BatchNormalization(epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name=f"{name}_1_bn")(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = layers.ZeroPadding2D(1, name=f"{name}_2_pad")(y)
    y = layers.Conv2D(filters, 3, use_bias=False, kernel_initializer=_conv_init(), name=f"{name}_2_conv")(y)
    y = layers.BatchNormalization(epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name=f"{name}_2_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def resnet18_backbone(input_shape: tuple[int, int, int], name: str = "backbone") -> keras.Model:
    """ResNet-18 feature extractor (no top), He et al. 2016, "Deep Residual Learning for Image
    Recognition" (CVPR), the torchvision layout.

    Stem: 7x7/2 conv (64) + BN + ReLU + 3x3/2 max-pool; then BasicBlocks x [2, 2, 2, 2] with
    64-128-256-512 filters, stride 2 at the first block of stages 3-5, and a projection
    shortcut (1x1 conv/2 + BN) where the shape changes. Padding is explicit (``ZeroPadding2D`` +
    ``valid`` convolutions) so it matches PyTorch's symmetric padding exactly.

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(height, width, 3)``, channels last; height and width >= 32.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        ``(batch, h, w, 3)`` float -> ``(batch, ceil(h/32), ceil(w/32), 512)`` (for h, w
        divisible by 32, ``h/32``). 11,176,512 trainable parameters (+ 9,600 BN moving
        statistics); with a 1000-class dense head 11,689,512, as torchvision's resnet18.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, kernel_initializer=_conv_init(), name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)  # after ReLU, zero padding == -inf padding
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=2):
        x = _basic_block(x, filters, stride, name=f"conv{stage}_block1")
        x = _basic_block(x, filters, 1, name=f"conv{stage}_block2")
    return keras.Model(inputs, x, name=name)


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def build_densenet121(input_shape, n_classes: int, **hparams) -> keras.Model:
    """DenseNet-121 scalogram classifier. Huang et al. 2017, "Densely Connected Convolutional
    Networks" (CVPR); backbone ``keras.applications.DenseNet121`` (include_top=False).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    **hparams
        ``dropout`` (float in [0, 1), default 0.3); ``input_size`` (int >= 32, default 224;
        smaller only for quick tests); ``bn_momentum`` (default 0.9, see ``DEFAULT_BN_MOMENTUM``).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax. Random
        initialisation; :func:`build_model` loads weights. Preprocessing: torch mode.

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2, unknown or out-of-range hyper-parameter.
    """
    return _image_classifier(
        "densenet121",
        input_shape,
        n_classes,
        lambda s: keras.applications.DenseNet121(include_top=False, weights=None, input_shape=s, name="backbone"),
        "torch",
        224,
        32,
        hparams,
    )


def build_resnet18(input_shape, n_classes: int, **hparams) -> keras.Model:
    """ResNet-18 scalogram classifier. He et al. 2016, "Deep Residual Learning for Image
    Recognition" (CVPR); backbone :func:`resnet18_backbone` (Keras has no ResNet18 and no
    ImageNet weights for it).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    **hparams
        ``dropout`` (float in [0, 1), default 0.3); ``input_size`` (int >= 32, default 224); ``bn_momentum`` (default 0.9, see ``DEFAULT_BN_MOMENTUM``).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax.
        Preprocessing: torch mode.

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2, unknown or out-of-range hyper-parameter.
    """
    return _image_classifier(
        "resnet18", input_shape, n_classes, lambda s: resnet18_backbone(s, name="backbone"), "torch", 224, 32, hparams
    )


def build_resnet50(input_shape, n_classes: int, **hparams) -> keras.Model:
    """ResNet-50 scalogram classifier. He et al. 2016, "Deep Residual Learning for Image
    Recognition" (CVPR); backbone ``keras.applications.ResNet50`` (include_top=False).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    **hparams
        ``dropout`` (float in [0, 1), default 0.3); ``input_size`` (int >= 32, default 224); ``bn_momentum`` (default 0.9, see ``DEFAULT_BN_MOMENTUM``).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax.
        Preprocessing: caffe mode (BGR, ImageNet mean subtracted).

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2, unknown or out-of-range hyper-parameter.
    """
    return _image_classifier(
        "resnet50",
        input_shape,
        n_classes,
        lambda s: keras.applications.ResNet50(include_top=False, weights=None, input_shape=s, name="backbone"),
        "caffe",
        224,
        32,
        hparams,
    )


def build_inceptionv3(input_shape, n_classes: int, **hparams) -> keras.Model:
    """Inception-v3 scalogram classifier. Szegedy et al. 2016, "Rethinking the Inception
    Architecture for Computer Vision" (CVPR); backbone ``keras.applications.InceptionV3``
    (include_top=False).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    **hparams
        ``dropout`` (float in [0, 1), default 0.3); ``input_size`` (int >= 75, default 299); ``bn_momentum`` (default 0.9, see ``DEFAULT_BN_MOMENTUM``).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax.
        Preprocessing: tf mode ([-1, 1]).

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2, unknown or out-of-range hyper-parameter.
    """
    return _image_classifier(
        "inceptionv3",
        input_shape,
        n_classes,
        lambda s: keras.applications.InceptionV3(include_top=False, weights=None, input_shape=s, name="backbone"),
        "tf",
        299,
        75,
        hparams,
    )


def build_mobilenetv2(input_shape, n_classes: int, **hparams) -> keras.Model:
    """MobileNetV2 (alpha 1.0) scalogram classifier. Sandler et al. 2018, "MobileNetV2:
    Inverted Residuals and Linear Bottlenecks" (CVPR); backbone
    ``keras.applications.MobileNetV2`` (include_top=False).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    **hparams
        ``dropout`` (float in [0, 1), default 0.3); ``input_size`` (int >= 32, default 224); ``bn_momentum`` (default 0.9, see ``DEFAULT_BN_MOMENTUM``).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax.
        Preprocessing: tf mode ([-1, 1]).

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2, unknown or out-of-range hyper-parameter.
    """
    return _image_classifier(
        "mobilenetv2",
        input_shape,
        n_classes,
        lambda s: keras.applications.MobileNetV2(
            include_top=False, weights=None, input_shape=s, alpha=1.0, name="backbone"
        ),
        "tf",
        224,
        32,
        hparams,
    )


register(
    ModelSpec(
        "densenet121",
        build_densenet121,
        (SCALOGRAM,),
        224,
        ("densenet",),
        "DenseNet-121 (Huang et al. 2017, Densely Connected Convolutional Networks)",
        True,
    )
)
register(
    ModelSpec(
        "resnet18",
        build_resnet18,
        (SCALOGRAM,),
        224,
        (),
        "ResNet-18 (He et al. 2016, Deep Residual Learning), built in Keras; no ImageNet weights",
        False,
    )
)
register(
    ModelSpec(
        "resnet50",
        build_resnet50,
        (SCALOGRAM,),
        224,
        (),
        "ResNet-50 (He et al. 2016, Deep Residual Learning)",
        True,
    )
)
register(
    ModelSpec(
        "inceptionv3",
        build_inceptionv3,
        (SCALOGRAM,),
        299,
        ("inception",),
        "Inception-v3 (Szegedy et al. 2016, Rethinking the Inception Architecture)",
        True,
    )
)
register(
    ModelSpec(
        "mobilenetv2",
        build_mobilenetv2,
        (SCALOGRAM,),
        224,
        ("mobilenet",),
        "MobileNetV2 (Sandler et al. 2018, Inverted Residuals and Linear Bottlenecks)",
        True,
    )
)


# --------------------------------------------------------------------------------------------
# 1-D models for extracellular spike waveforms (modality "waveform")
# --------------------------------------------------------------------------------------------

WAVEFORM = "waveform"


_WAVEFORM_HPARAMS = ("dropout", "width")


def _waveform_width(name: str, hparams: dict, default: int) -> int:
    w = hparams.get("width")
    if w is None:
        return default
    if isinstance(w, bool) or not (isinstance(w, int) or isinstance(w, float) and w.is_integer()) or w < 1:
        raise EphysError(f"model {name}: width must be a positive integer, got {w!r}")
    return int(w)


def _waveform_hparams(name: str, input_shape, n_classes, hparams: dict,
                      extra: tuple[str, ...] = ()) -> tuple[tuple[int, int], float]:
    accepted = _WAVEFORM_HPARAMS + extra
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise EphysError(f"model {name} has no hyper-parameter {', '.join(unknown)}; "
                         f"it accepts: {', '.join(accepted)}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 2 or shape[0] < 4 or shape[1] < 1:
        raise EphysError(f"model {name} needs waveforms of shape (n_samples >= 4, n_channels), got {shape}")
    if int(n_classes) < 2:
        raise EphysError(f"model {name} needs at least 2 classes, got {n_classes}")
    dropout = hparams.get("dropout")
    try:
        dropout = float(0.3 if dropout is None else dropout)
    except (TypeError, ValueError):
        raise EphysError(f"model {name}: dropout must be a number in [0, 1), got {dropout!r}") from None
    if isinstance(hparams.get("dropout"), bool) or not 0.0 <= dropout < 1.0:
        raise EphysError(f"model {name}: dropout must be in [0, 1), got {hparams.get('dropout')!r}")
    return shape, dropout


def build_cnn1d(input_shape, n_classes: int, **hparams) -> keras.Model:
    """1-D CNN spike-vs-background classifier (after the spike seed's CNN).

    Input ``(batch, n_samples, n_channels)`` float32 (seed: (42, 1) µV at 30 kHz, or noise
    units); three Conv1D-BatchNorm-ReLU blocks (``width``, 2x, 2x filters; kernels 5, 5, 3;
    max-pool 2 after the first two; the leading BatchNorm makes the model indifferent to the
    µV scale), ``Flatten`` (keeps where in the snippet a feature sits) -> Dense(64) ->
    ``Dropout(dropout)`` -> ``Dense(n_classes, softmax, float32)``. Hyper-parameters: ``dropout``
    (0.3), ``width`` (32). The feature extractor is the layer ``"backbone"``.
    """
    shape, dropout = _waveform_hparams("cnn1d", input_shape, n_classes, hparams)
    width = _waveform_width("cnn1d", hparams, 32)
    inp = keras.Input(shape, name="waveform")
    x = layers.BatchNormalization(name="input_norm")(inp)
    for k, (f, ks) in enumerate(((width, 5), (2 * width, 5), (2 * width, 3))):
        x = layers.Conv1D(f, ks, padding="same", use_bias=False, name=f"conv{k + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{k + 1}")(x)
        x = layers.Activation("relu", name=f"relu{k + 1}")(x)
        if k < 2 and x.shape[1] >= 8:
            x = layers.MaxPooling1D(2, name=f"pool{k + 1}")(x)
    feats = layers.Flatten(name="flatten")(x)
    backbone = keras.Model(inp, feats, name="backbone")
    inp2 = keras.Input(shape, name="input")
    h = layers.Dense(64, activation="relu", name="fc")(backbone(inp2))
    h = layers.Dropout(dropout, name="dropout")(h)
    out = layers.Dense(int(n_classes), activation="softmax", dtype="float32", name="predictions")(h)
    return keras.Model(inp2, out, name="cnn1d")


_GRU_HPARAMS = ("bidirectional", "input_norm", "pool")


def _choice(name: str, key: str, value, options: tuple, default):
    v = default if value is None else value
    if v not in options:
        raise EphysError(f"model {name}: {key} must be one of {', '.join(map(str, options))}, got {value!r}")
    return v


def build_gru(input_shape, n_classes: int, **hparams) -> keras.Model:
    """Recurrent (GRU) spike-vs-background classifier (after the spike seed's GRU).

    Input ``(batch, n_samples, n_channels)`` float32, read as a sequence over time;
    BatchNorm over the input -> ``GRU(width, return_sequences)`` -> ``GRU(width)`` ->
    ``Dropout(dropout)`` -> ``Dense(n_classes, softmax, float32)``. Hyper-parameters:
    ``dropout`` (0.3), ``width`` (64), ``bidirectional`` (False: both GRU layers read the
    snippet both ways, ``keras.layers.Bidirectional``, concatenated), ``input_norm``
    (``"batch"``: BatchNormalization of the input; ``"none"``), ``pool`` (``"last"``: the second
    GRU's final state; ``"mean"``: the mean of its states over time). Keras 3 GRU (cuDNN kernel
    on a GPU with the TensorFlow backend). The feature extractor is the layer ``"backbone"``.
    """
    shape, dropout = _waveform_hparams("gru", input_shape, n_classes, hparams, _GRU_HPARAMS)
    width = _waveform_width("gru", hparams, 64)
    bidir = _choice("gru", "bidirectional", hparams.get("bidirectional"), (False, True), False)
    norm = _choice("gru", "input_norm", hparams.get("input_norm"), ("batch", "none"), "batch")
    pool = _choice("gru", "pool", hparams.get("pool"), ("last", "mean"), "last")

    def rnn(layer, name):
        return layers.Bidirectional(layer, name=name) if bidir else layer

    inp = keras.Input(shape, name="waveform")
    x = layers.BatchNormalization(name="input_norm")(inp) if norm == "batch" else inp
    x = rnn(layers.GRU(width, return_sequences=True, name="gru1"), "bigru1")(x)
    x = rnn(layers.GRU(width, return_sequences=pool == "mean", name="gru2"), "bigru2")(x)
    if pool == "mean":
        x = layers.GlobalAveragePooling1D(name="mean_over_time")(x)
    backbone = keras.Model(inp, x, name="backbone")
    inp2 = keras.Input(shape, name="input")
    h = layers.Dropout(dropout, name="dropout")(backbone(inp2))
    out = layers.Dense(int(n_classes), activation="softmax", dtype="float32", name="predictions")(h)
    return keras.Model(inp2, out, name="gru")


register(ModelSpec("cnn1d", build_cnn1d, (WAVEFORM,), None, ("cnn",),
                   "1-D CNN for spike waveforms (after the spike seed, henryxcham/spike_detection_classification)",
                   False))
register(ModelSpec("gru", build_gru, (WAVEFORM,), None, (),
                   "two-layer GRU for spike waveforms (Cho et al. 2014; after the spike seed)", False))


# --------------------------------------------------------------------------------------------
# Gradient-boosted trees for feature tables (modality "features")
# --------------------------------------------------------------------------------------------

FEATURES = "features"


def _build_lightgbm(input_shape, n_classes: int, **hparams):
    from .tabular import build_lightgbm

    return build_lightgbm(input_shape, n_classes, **hparams)


register(ModelSpec("lightgbm", _build_lightgbm, (FEATURES,), None, ("lgbm", "lgb"),
                   "LightGBM gradient-boosted trees on EP feature tables (Ke et al. 2017; the STS paper's baseline)",
                   False, kind="lightgbm"))


# --------------------------------------------------------------------------------------------
# ImageNet weights: Keras cache and download
# --------------------------------------------------------------------------------------------

#: canonical name -> (path under KERAS_WEIGHTS_BASE_URL, md5 or None) of the "notop" weights file,
#: exactly as keras.applications (keras 3.x) fetches it; the cache file name is the last part.
_IMAGENET_NOTOP: dict[str, tuple[str, str | None]] = {
    "densenet121": (
        "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "30ee3e1110167f948a6b9946edeeb738",
    ),
    "resnet50": (
        "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    "inceptionv3": (
        "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "bcbd6486424b2319ff4ef7d526e38f63",
    ),
    # keras.applications.MobileNetV2 passes no file_hash for its weights
    "mobilenetv2": (
        "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        None,
    ),
}


def keras_cache_dir() -> Path:
    """Keras' weights cache folder, resolved now: ``$KERAS_HOME/models`` if ``KERAS_HOME`` is
    set, else ``~/.keras/models`` (``/tmp/.keras/models`` when the home folder is not writable).

    Unlike Keras, which reads ``KERAS_HOME`` once at import, this honours the current environment.
    The folder may not exist yet.
    """
    home = os.environ.get("KERAS_HOME")
    if home:
        base = Path(home).expanduser()
    else:
        user = Path("~").expanduser()
        base = (user if os.access(user, os.W_OK) else Path("/tmp")) / ".keras"
    return base / "models"


def _cache_candidates() -> list[Path]:
    primary = keras_cache_dir()
    out = [primary]
    # keras.utils.get_file falls back to /tmp/.keras when the cache base is not writable
    fallback = Path("/tmp/.keras/models")
    if not os.access(primary.parent, os.W_OK) and fallback != primary:
        out.append(fallback)
    return out


def _imagenet_entry(name: str) -> tuple[str, str, str | None]:
    """(canonical, relative path, md5) of a model's ImageNet notop file, or EphysError."""
    canonical = resolve_model_name(name)
    if canonical not in _IMAGENET_NOTOP:
        raise EphysError(
            f"{canonical} has no Keras ImageNet weights; pass --weights PATH (a backbone weights file) "
            "or --weights none"
        )
    rel, md5 = _IMAGENET_NOTOP[canonical]
    return canonical, rel, md5


def imagenet_weights_file(name: str) -> str:
    """File name Keras caches the ImageNet notop weights of model ``name`` under.

    Raises
    ------
    EphysError
        Unknown model, or one without Keras ImageNet weights (resnet18).
    """
    return _imagenet_entry(name)[1].rsplit("/", 1)[-1]


def _file_ok(path: Path, md5: str | None) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    if md5 is None:
        return True
    algo = hashlib.sha256 if len(md5) == 64 else hashlib.md5
    h = algo()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest() == md5


def _cached_weights(fname: str, md5: str | None) -> Path | None:
    for folder in _cache_candidates():
        if _file_ok(folder / fname, md5):
            return folder / fname
    return None


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def fetch_weights(name: str, base_url: str | None = None) -> Path:
    """Download the ImageNet "notop" weights of model ``name`` into Keras' cache.

    Uses ``keras.utils.get_file(fname, origin, cache_subdir="models", file_hash=...)`` with the
    file name, URL and hash keras.applications use, so Keras itself would find the file too. A
    file already cached with the right hash is not downloaded again. The download goes to a
    temporary folder inside the cache and is renamed into place only after the hash check, so
    an interrupted download never leaves a truncated file behind.

    Parameters
    ----------
    name : str
        Model name or alias (``densenet121``, ``resnet50``, ``inceptionv3``, ``mobilenetv2``).
    base_url : str | None
        Replaces ``https://storage.googleapis.com/tensorflow/keras-applications/`` (a mirror,
        or a local server in tests), keeping the relative path (e.g.
        ``mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5``).
        Default: ``$EPHYS_WEIGHTS_BASE_URL`` if set, else Keras' own URL. The expected hash
        is Keras' in every case (MobileNetV2 has none in Keras).

    Returns
    -------
    Path
        The cached file, ``keras_cache_dir() / fname``.

    Raises
    ------
    EphysError
        Unknown model; no Keras ImageNet weights for it (resnet18); the download failed
        (network, HTTP error, hash mismatch) or the cache folder is not writable (one line).
    """
    canonical, rel, md5 = _imagenet_entry(name)
    fname = rel.rsplit("/", 1)[-1]
    cached = _cached_weights(fname, md5)
    if cached is not None:
        return cached
    base = base_url or os.environ.get(WEIGHTS_BASE_URL_ENV) or KERAS_WEIGHTS_BASE_URL
    origin = base.rstrip("/") + "/" + rel
    folder = keras_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        fallback = Path("/tmp/.keras/models")  # where keras.utils.get_file would go too
        try:
            fallback.mkdir(parents=True, exist_ok=True)
        except OSError:
            raise EphysError(f"cannot create the Keras cache folder: {e.strerror or e}", path=folder) from None
        folder = fallback
    staging = Path(tempfile.mkdtemp(prefix=".ephys-fetch-", dir=folder))
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            got = keras.utils.get_file(
                fname, origin, cache_subdir="models", cache_dir=str(staging), file_hash=md5
            )
        final = folder / fname
        os.replace(got, final)
    except Exception as e:  # get_file raises a bare Exception for URL errors, ValueError for hashes
        raise EphysError(f"cannot download ImageNet weights for {canonical} from {origin}: {e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _imagenet_weights_path(canonical: str) -> Path:
    """Cached notop file for ``canonical``, downloading it if possible; EphysError otherwise."""
    _, rel, md5 = _imagenet_entry(canonical)
    cached = _cached_weights(rel.rsplit("/", 1)[-1], md5)
    if cached is not None:
        return cached
    try:
        return fetch_weights(canonical)
    except EphysError as e:
        raise EphysError(
            f"ImageNet weights for {canonical} are not in the Keras cache and cannot be downloaded "
            f"(no network?); run `ephys fetch weights {canonical}` on a machine that is online, "
            f"or pass --weights none / --weights PATH ({e.one_line()})"
        ) from None


# --------------------------------------------------------------------------------------------
# build_model
# --------------------------------------------------------------------------------------------

# Keras 3 only *warns* (and keeps the random initialisation) for parts of a .weights.h5 file
# that do not match the model; such a partial load is an error here.
_PARTIAL_LOAD = re.compile(r"skipp|could not be loaded|freshly|mismatch|not found in", re.IGNORECASE)


def _load_backbone_weights(backbone: keras.Model, path: Path, canonical: str) -> None:
    """``backbone.load_weights(path)``; any failure or partial load -> one-line EphysError."""
    error: str | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            backbone.load_weights(str(path))
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
    partial = [w for w in caught if _PARTIAL_LOAD.search(str(w.message))]
    if error is None and partial:
        error = f"only part of the backbone was loaded ({len(partial)} warnings, e.g. {partial[0].message})"
    if error is not None:
        reason = " ".join(error.split())
        if len(reason) > 300:
            reason = reason[:300] + "..."
        raise EphysError(
            f"cannot load these weights into the {canonical} backbone ({reason}); expected a "
            f"keras.applications notop .h5 file or a .weights.h5 saved from a {canonical} backbone",
            path=path,
        )
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

_FREEZE = ("none", "full")


def parse_hparams(items) -> dict:
    """``["KEY=VALUE", ...]`` (``ephys train --hparam``) -> ``{KEY: value}``.

    A value is read as an int (``128``), else a float (``0.25``, ``1e-3``), else a bool
    (``true`` / ``false``, any case), else kept as a string. A key given twice keeps the last
    value. Which keys a model accepts is checked by its builder (see :func:`build_model`).

    Raises
    ------
    EphysError
        An item without ``=`` or with an empty key.
    """
    out: dict = {}
    for item in items or ():
        key, sep, raw = str(item).partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise EphysError(f"--hparam must be KEY=VALUE (e.g. width=128), got {item!r}")
        value: object
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = {"true": True, "false": False}.get(raw.lower(), raw)
        out[key] = value
    return out


def build_model(
    name: str,
    input_shape,
    n_classes: int,
    weights: str | os.PathLike | None = "none",
    freeze: str = "none",
    **hparams,
) -> keras.Model:
    """Build registered model ``name`` for samples of ``input_shape`` and ``n_classes`` classes.

    Parameters
    ----------
    name : str
        Model name or alias (case-insensitive), see :func:`describe_models`.
    input_shape : tuple[int, ...]
        Shape of one prepared sample, without the batch axis; for the image backbones
        ``(n_scales, n_time, n_sweeps)`` float32 in [0, 1], n_sweeps >= 1 (typ. (180, 1200, 3)).
    n_classes : int
        Number of classes (>= 2).
    weights : str | PathLike | None
        ``"none"`` (or None): random initialisation. ``"imagenet"``: Keras' ImageNet notop
        weights for the backbone, from Keras' cache (downloaded there when missing and the
        network allows; see :func:`fetch_weights`). Anything else: a weights file for the
        backbone, loaded with ``backbone.load_weights(path)``: a keras.applications notop
        ``.h5`` file (as ``ephys fetch weights`` downloads) or a ``.weights.h5`` saved from a
        backbone (``model.get_layer("backbone").save_weights("x.weights.h5")``).
    freeze : str
        ``"none"``: everything trainable. ``"full"``: ``backbone.trainable = False`` (its
        BatchNorm layers then run in inference mode); only the head trains.
    **hparams
        Builder hyper-parameters (image backbones: ``dropout``, ``input_size``,
        ``bn_momentum``; ``cnn1d``: ``dropout``, ``width``; ``gru``: also ``bidirectional``,
        ``input_norm``, ``pool``); an unknown key raises
        EphysError naming the keys the model accepts.

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax
        probabilities. The feature extractor is ``model.get_layer("backbone")``. Seeding
        (``keras.utils.set_random_seed``) is the caller's job.

    Raises
    ------
    EphysError
        Unknown model; bad ``weights``/``freeze``/hyper-parameter/shape; ImageNet weights
        requested for a model without them (resnet18) or not cached and not downloadable
        (message points to ``ephys fetch weights NAME``); a weights file that is missing or
        does not fit the backbone (message names the file).
    """
    canonical = resolve_model_name(name)
    spec = REGISTRY[canonical]
    freeze_mode = str(freeze if freeze is not None else "none").strip().lower()
    if freeze_mode not in _FREEZE:
        raise EphysError(f"--freeze must be one of {', '.join(_FREEZE)}, got {freeze!r}")

    weights_file: Path | None = None
    wkey = "none" if weights is None else str(weights).strip()
    if wkey.lower() == "imagenet":
        if not spec.imagenet or canonical not in _IMAGENET_NOTOP:
            raise EphysError(
                f"{canonical} has no Keras ImageNet weights; pass --weights PATH (a backbone weights file) "
                "or --weights none"
            )
        weights_file = _imagenet_weights_path(canonical)  # before building: fail fast offline
    elif wkey.lower() != "none":
        weights_file = Path(wkey).expanduser()
        if not weights_file.is_file():
            raise EphysError("weights file not found", path=weights_file)

    model = spec.builder(input_shape, n_classes, **hparams)

    backbone = None
    if weights_file is not None or freeze_mode != "none":
        try:
            backbone = model.get_layer("backbone")
        except ValueError:
            raise EphysError(f"model {canonical} has no backbone, so --weights/--freeze do not apply") from None

    if weights_file is not None:
        _load_backbone_weights(backbone, weights_file, canonical)

    if freeze_mode == "full":
        backbone.trainable = False
    return model
