"""Image backbones (ImageNet CNNs in Keras 3) and their ImageNet weights.

The builders here for CWT scalograms (modality ``"scalogram"``). Their input
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

from ...core.errors import EphysError
from ...core.models import resolve_model_name

__all__ = ["AntialiasResize", "ChannelAdapter", "ImageNetPreprocess", "resnet18_backbone", "build_densenet121",
           "build_resnet18", "build_resnet50", "build_inceptionv3", "build_mobilenetv2", "fetch_weights",
           "keras_cache_dir", "imagenet_weights_file", "imagenet_weights_path"]

#: Where keras.applications downloads its weights from; ``base_url`` / ``$EPHYS_WEIGHTS_BASE_URL``
#: replace this prefix (the part after it is kept, so a mirror has the same folder layout).
KERAS_WEIGHTS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHTS_BASE_URL_ENV = "EPHYS_WEIGHTS_BASE_URL"
#: Seconds a stalled connection may stay silent during a weights download.
DOWNLOAD_TIMEOUT_S = 60.0


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

#: BatchNorm moving-average momentum of every backbone BN layer. Keras applications use 0.99;
#: the STS seed trained torchvision backbones, whose momentum 0.1 is Keras' 0.9. With the few
#: steps per epoch of a small cell dataset, 0.99 leaves the inference-time statistics far from
#: the training ones for many epochs (validation stuck at chance while training accuracy is 1).
DEFAULT_BN_MOMENTUM = 0.9


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
    dropout: float,
    size: int,
    momentum: float,
) -> keras.Model:
    """AntialiasResize -> ChannelAdapter -> ImageNetPreprocess -> backbone -> GAP -> Dropout -> Dense.

    The hyper-parameters come checked (the model's declaration, ``ModelSpec.hparams``)."""
    shape, n_classes = _check_image_input(name, input_shape, n_classes)
    inputs = keras.Input(shape=shape, dtype="float32", name="scalogram")
    x = AntialiasResize(size, size, name="resize")(inputs)
    x = ChannelAdapter(name="to_rgb")(x)
    x = ImageNetPreprocess(preprocess_mode, name="imagenet_preprocess")(x)
    backbone = backbone_fn((size, size, 3))
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


def build_densenet121(input_shape, n_classes: int, dropout: float = 0.3, input_size: int = 224,
                      bn_momentum: float = DEFAULT_BN_MOMENTUM) -> keras.Model:
    """DenseNet-121 scalogram classifier. Huang et al. 2017, "Densely Connected Convolutional
    Networks" (CVPR); backbone ``keras.applications.DenseNet121`` (include_top=False).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    dropout, input_size, bn_momentum
        Hyper-parameters as declared in the ``sts`` pipeline (``ephys models``), checked by
        :func:`~ephys.pipelines.core.models.build_model`: dropout rate in [0, 1) (0.3), the
        backbone's square input side in pixels (>= 32, default 224; smaller only for quick
        tests), BatchNorm momentum (0.9, see ``DEFAULT_BN_MOMENTUM``).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax. Random
        initialisation; :func:`build_model` loads weights. Preprocessing: torch mode.

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2.
    """
    return _image_classifier(
        "densenet121",
        input_shape,
        n_classes,
        lambda s: keras.applications.DenseNet121(include_top=False, weights=None, input_shape=s, name="backbone"),
        "torch",
        dropout,
        input_size,
        bn_momentum,
    )


def build_resnet18(input_shape, n_classes: int, dropout: float = 0.3, input_size: int = 224,
                   bn_momentum: float = DEFAULT_BN_MOMENTUM) -> keras.Model:
    """ResNet-18 scalogram classifier. He et al. 2016, "Deep Residual Learning for Image
    Recognition" (CVPR); backbone :func:`resnet18_backbone` (Keras has no ResNet18 and no
    ImageNet weights for it).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    dropout, input_size, bn_momentum
        Hyper-parameters as declared in the ``sts`` pipeline (``ephys models``), checked by
        :func:`~ephys.pipelines.core.models.build_model`: dropout rate in [0, 1) (0.3), the
        backbone's square input side in pixels (>= 32, default 224), BatchNorm momentum (0.9).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax.
        Preprocessing: torch mode.

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2.
    """
    return _image_classifier(
        "resnet18", input_shape, n_classes, lambda s: resnet18_backbone(s, name="backbone"), "torch",
        dropout, input_size, bn_momentum,
    )


def build_resnet50(input_shape, n_classes: int, dropout: float = 0.3, input_size: int = 224,
                   bn_momentum: float = DEFAULT_BN_MOMENTUM) -> keras.Model:
    """ResNet-50 scalogram classifier. He et al. 2016, "Deep Residual Learning for Image
    Recognition" (CVPR); backbone ``keras.applications.ResNet50`` (include_top=False).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    dropout, input_size, bn_momentum
        Hyper-parameters as declared in the ``sts`` pipeline (``ephys models``), checked by
        :func:`~ephys.pipelines.core.models.build_model`: dropout rate in [0, 1) (0.3), the
        backbone's square input side in pixels (>= 32, default 224), BatchNorm momentum (0.9).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax.
        Preprocessing: caffe mode (BGR, ImageNet mean subtracted).

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2.
    """
    return _image_classifier(
        "resnet50",
        input_shape,
        n_classes,
        lambda s: keras.applications.ResNet50(include_top=False, weights=None, input_shape=s, name="backbone"),
        "caffe",
        dropout,
        input_size,
        bn_momentum,
    )


def build_inceptionv3(input_shape, n_classes: int, dropout: float = 0.3, input_size: int = 299,
                      bn_momentum: float = DEFAULT_BN_MOMENTUM) -> keras.Model:
    """Inception-v3 scalogram classifier. Szegedy et al. 2016, "Rethinking the Inception
    Architecture for Computer Vision" (CVPR); backbone ``keras.applications.InceptionV3``
    (include_top=False).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    dropout, input_size, bn_momentum
        Hyper-parameters as declared in the ``sts`` pipeline (``ephys models``), checked by
        :func:`~ephys.pipelines.core.models.build_model`: dropout rate in [0, 1) (0.3), the
        backbone's square input side in pixels (>= 75, default 299), BatchNorm momentum (0.9).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax.
        Preprocessing: tf mode ([-1, 1]).

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2.
    """
    return _image_classifier(
        "inceptionv3",
        input_shape,
        n_classes,
        lambda s: keras.applications.InceptionV3(include_top=False, weights=None, input_shape=s, name="backbone"),
        "tf",
        dropout,
        input_size,
        bn_momentum,
    )


def build_mobilenetv2(input_shape, n_classes: int, dropout: float = 0.3, input_size: int = 224,
                      bn_momentum: float = DEFAULT_BN_MOMENTUM) -> keras.Model:
    """MobileNetV2 (alpha 1.0) scalogram classifier. Sandler et al. 2018, "MobileNetV2:
    Inverted Residuals and Linear Bottlenecks" (CVPR); backbone
    ``keras.applications.MobileNetV2`` (include_top=False).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(n_scales, n_time, n_sweeps)`` of one prepared sample (float32 in [0, 1]).
    n_classes : int
        Number of classes, >= 2.
    dropout, input_size, bn_momentum
        Hyper-parameters as declared in the ``sts`` pipeline (``ephys models``), checked by
        :func:`~ephys.pipelines.core.models.build_model`: dropout rate in [0, 1) (0.3), the
        backbone's square input side in pixels (>= 32, default 224), BatchNorm momentum (0.9).

    Returns
    -------
    keras.Model
        ``(batch, *input_shape)`` float32 -> ``(batch, n_classes)`` float32 softmax.
        Preprocessing: tf mode ([-1, 1]).

    Raises
    ------
    EphysError
        Bad input shape, ``n_classes`` < 2.
    """
    return _image_classifier(
        "mobilenetv2",
        input_shape,
        n_classes,
        lambda s: keras.applications.MobileNetV2(
            include_top=False, weights=None, input_shape=s, alpha=1.0, name="backbone"
        ),
        "tf",
        dropout,
        input_size,
        bn_momentum,
    )


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


def imagenet_weights_path(canonical: str) -> Path:
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


