"""Keras 3 models of the events pipeline (``keras.layers`` / ``keras.ops`` only).

* :func:`build_cnn_bilstm` — window classifier after miniML (O'Neill et al. 2025, eLife
  13:RP98485): 1-D convolutions with pooling, a bidirectional LSTM, a dense head; input one
  min-max-scaled window ``(600, 1)``; softmax over (no_event, event). Registered for the
  ``event_window`` modality, so ``ephys train`` applies.
* :func:`build_unet1d` — per-sample event mask, the shape of the mEPP seed's 1-D "MiniUNet"
  (NatashaKhotkina/Neural_network_project): encoder of conv blocks with max-pooling, a bottleneck,
  a decoder with up-sampling and skip connections, sigmoid output ``(L, 1)``. Registered for the
  ``event_patch`` modality with target ``mask`` and the loss :func:`dice_bce`.
* :func:`build_autoencoder` — convolutional autoencoder of fixed-length patches (the seed's
  anomaly detector, after keras.io "Timeseries anomaly detection using an Autoencoder"): the
  reconstruction error is the anomaly score. Registered for ``event_patch`` with target
  ``input`` (mean squared error), fitted on event-free patches only.
"""

from __future__ import annotations

import keras
from keras import layers

from ..core.errors import EphysError

__all__ = ["build_cnn_bilstm", "build_unet1d", "build_autoencoder", "dice_bce"]


@keras.saving.register_keras_serializable(package="ephys_events", name="dice_bce")
def dice_bce(y_true, y_pred):
    """Binary cross-entropy + soft Dice loss of per-sample masks, one value per patch.

    y_true, y_pred : (batch, L, 1) float, 0/1 mask and sigmoid probability. Returns (batch,):
    the mean binary cross-entropy over the patch plus ``1 - (2 |y·p| + 1) / (|y| + |p| + 1)``
    (soft Dice with +1 smoothing, so an event-free patch predicted empty costs 0). Registered
    with Keras so a checkpoint compiled with it loads (resume).

    Source: the mEPP seed's U-Net loss (NatashaKhotkina/Neural_network_project, BCE + Dice);
    Dice loss: Milletari et al. 2016, V-Net, 3DV.
    """
    from keras import ops

    bce = keras.losses.binary_crossentropy(y_true, y_pred)
    inter = ops.sum(y_true * y_pred, axis=(1, 2))
    dice = 1.0 - (2.0 * inter + 1.0) / (ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2)) + 1.0)
    return ops.mean(bce, axis=1) + dice


def build_cnn_bilstm(input_shape, n_classes: int = 2, width: int = 16, lstm: int = 16,
                     dropout: float = 0.2) -> keras.Model:
    """miniML-like window classifier.

    Parameters
    ----------
    input_shape : (window, 1), float32 min-max scaled windows in [0, 1]
    n_classes : 2 (no_event, event)
    width, lstm, dropout : hyper-parameters declared in the ``events`` pipeline (``ephys models``),
        checked by ``build_model``: filters of the first conv (16; miniML uses 32-128), LSTM units
        per direction (16; miniML 64), dropout rate (0.2)

    Returns
    -------
    keras.Model ``(batch, window, 1)`` -> ``(batch, n_classes)`` softmax.
    """
    w, u = int(width), int(lstm)
    inp = keras.Input(shape=tuple(input_shape), name="window")
    x = inp
    for k, (f, ks) in enumerate(((w, 9), (2 * w, 7), (2 * w, 5))):
        # no BatchNorm: with few steps per epoch its moving statistics lag the weights and the
        # early-stopped (best-validation) model then misclassifies in inference mode
        x = layers.Conv1D(f, ks, padding="same", activation="relu", name=f"conv{k}")(x)
        x = layers.MaxPooling1D(3 if k < 2 else 2, name=f"pool{k}")(x)
    x = layers.Bidirectional(layers.LSTM(u), name="bilstm")(x)
    x = layers.Dropout(float(dropout))(x)
    x = layers.Dense(max(8, u), activation="relu")(x)
    out = layers.Dense(n_classes, activation="softmax", name="proba")(x)
    return keras.Model(inp, out, name="cnn_bilstm")


def build_unet1d(input_shape, n_classes: int = 1, width: int = 16, depth: int = 3, kernel: int = 9,
                 dropout: float = 0.0) -> keras.Model:
    """1-D U-Net producing a per-sample event probability.

    Parameters
    ----------
    input_shape : (L, 1), L divisible by 2**depth; float32 standardised patch
    width : filters at the top level (doubled per level); depth : levels (L divisible by 2**depth);
    kernel : convolution length in samples; dropout : unused (accepted so ``--dropout`` is harmless)

    Returns
    -------
    keras.Model ``(batch, L, 1)`` -> ``(batch, L, 1)`` sigmoid.
    """
    w, depth, ks = int(width), int(depth), int(kernel)
    inp = keras.Input(shape=tuple(input_shape), name="patch")
    x, skips = inp, []

    def block(x, f, name):
        for j in range(2):
            x = layers.Conv1D(f, ks, padding="same", name=f"{name}_c{j}")(x)
            x = layers.BatchNormalization(name=f"{name}_bn{j}")(x)
            x = layers.Activation("relu")(x)
        return x

    for lv in range(depth):
        x = block(x, w * 2 ** lv, f"enc{lv}")
        skips.append(x)
        x = layers.MaxPooling1D(2)(x)
    x = block(x, w * 2 ** depth, "mid")
    for lv in reversed(range(depth)):
        x = layers.UpSampling1D(2)(x)
        x = layers.Concatenate()([x, skips[lv]])
        x = block(x, w * 2 ** lv, f"dec{lv}")
    out = layers.Conv1D(1, 1, activation="sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inp, out, name="unet1d")


def build_autoencoder(input_shape, n_classes: int = 0, width: int = 16, kernel: int = 7, code: int = 16,
                      dropout: float = 0.0) -> keras.Model:
    """Convolutional autoencoder of patches ``(L, 1)`` (L divisible by 8) with a dense bottleneck.

    hparams : ``width`` (filters, default 16), ``kernel`` (default 7), ``code`` (bottleneck
    units, default 16: far fewer than L, so noise cannot be copied through)

    Returns
    -------
    keras.Model ``(batch, L, 1)`` -> ``(batch, L, 1)`` reconstruction (linear).
    """
    w, ks, code = int(width), int(kernel), int(code)
    length = int(input_shape[0])
    inp = keras.Input(shape=tuple(input_shape), name="patch")
    x = layers.Conv1D(w, ks, strides=2, padding="same", activation="relu")(inp)
    x = layers.Conv1D(w, ks, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv1D(w, ks, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(code, activation="relu", name="code")(x)
    x = layers.Dense((length // 8) * w, activation="relu")(x)
    x = layers.Reshape((length // 8, w))(x)
    for _ in range(3):
        x = layers.Conv1DTranspose(w, ks, strides=2, padding="same", activation="relu")(x)
    out = layers.Conv1D(1, ks, padding="same", dtype="float32", name="reconstruction")(x)
    return keras.Model(inp, out, name="autoencoder")
