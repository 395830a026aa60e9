"""1-D convolutional and recurrent networks for short multichannel sequences (Keras 3).

Input ``(n_time, n_channels)`` float32 (e.g. spike snippets: 42 samples x 1 channel); output
softmax probabilities over ``n_classes``. After the spike seed (henryxcham/spike_detection_
classification): a small 1-D CNN and a two-layer GRU (Cho et al. 2014).
"""

from __future__ import annotations

import keras
from keras import layers

from ...core.errors import EphysError

__all__ = ["build_cnn1d", "build_gru"]


def _check_waveform_input(name: str, input_shape, n_classes) -> tuple[int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 2 or shape[0] < 4 or shape[1] < 1:
        raise EphysError(f"model {name} needs waveforms of shape (n_samples >= 4, n_channels), got {shape}")
    if int(n_classes) < 2:
        raise EphysError(f"model {name} needs at least 2 classes, got {n_classes}")
    return shape


def build_cnn1d(input_shape, n_classes: int, dropout: float = 0.3, width: int = 32) -> keras.Model:
    """1-D CNN spike-vs-background classifier (after the spike seed's CNN).

    Input ``(batch, n_samples, n_channels)`` float32 (seed: (42, 1) µV at 30 kHz, or noise
    units); three Conv1D-BatchNorm-ReLU blocks (``width``, 2x, 2x filters; kernels 5, 5, 3;
    max-pool 2 after the first two; the leading BatchNorm makes the model indifferent to the
    µV scale), ``Flatten`` (keeps where in the snippet a feature sits) -> Dense(64) ->
    ``Dropout(dropout)`` -> ``Dense(n_classes, softmax, float32)``. Hyper-parameters (declared in
    the ``spikes`` pipeline, checked by ``build_model``): ``dropout`` (0.3), ``width`` (32). The
    feature extractor is the layer ``"backbone"``.

    Raises
    ------
    EphysError
        A shape that is not (n_samples >= 4, n_channels >= 1), or fewer than 2 classes.
    """
    shape = _check_waveform_input("cnn1d", input_shape, n_classes)
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


def build_gru(input_shape, n_classes: int, dropout: float = 0.3, width: int = 64, bidirectional: bool = False,
              input_norm: str = "batch", pool: str = "last") -> keras.Model:
    """Recurrent (GRU) spike-vs-background classifier (after the spike seed's GRU).

    Input ``(batch, n_samples, n_channels)`` float32, read as a sequence over time;
    BatchNorm over the input -> ``GRU(width, return_sequences)`` -> ``GRU(width)`` ->
    ``Dropout(dropout)`` -> ``Dense(n_classes, softmax, float32)``. Hyper-parameters:
    ``dropout`` (0.3), ``width`` (64), ``bidirectional`` (False: both GRU layers read the
    snippet both ways, ``keras.layers.Bidirectional``, concatenated), ``input_norm``
    (``"batch"``: BatchNormalization of the input; ``"none"``), ``pool`` (``"last"``: the second
    GRU's final state; ``"mean"``: the mean of its states over time). Keras 3 GRU (cuDNN kernel
    on a GPU with the TensorFlow backend). The feature extractor is the layer ``"backbone"``.
    The hyper-parameters are declared in the ``spikes`` pipeline and checked by ``build_model``.

    Raises
    ------
    EphysError
        A shape that is not (n_samples >= 4, n_channels >= 1), or fewer than 2 classes.
    """
    shape = _check_waveform_input("gru", input_shape, n_classes)

    def rnn(layer, name):
        return layers.Bidirectional(layer, name=name) if bidirectional else layer

    inp = keras.Input(shape, name="waveform")
    x = layers.BatchNormalization(name="input_norm")(inp) if input_norm == "batch" else inp
    x = rnn(layers.GRU(width, return_sequences=True, name="gru1"), "bigru1")(x)
    x = rnn(layers.GRU(width, return_sequences=pool == "mean", name="gru2"), "bigru2")(x)
    if pool == "mean":
        x = layers.GlobalAveragePooling1D(name="mean_over_time")(x)
    backbone = keras.Model(inp, x, name="backbone")
    inp2 = keras.Input(shape, name="input")
    h = layers.Dropout(dropout, name="dropout")(backbone(inp2))
    out = layers.Dense(int(n_classes), activation="softmax", dtype="float32", name="predictions")(h)
    return keras.Model(inp2, out, name="gru")

