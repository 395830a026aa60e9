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

_HPARAMS = ("dropout", "units1", "units2", "keep_channels", "input_norm")


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


def _positive_int(name, key, value, default):
    if value is None:
        return default
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
        raise EphysError(f"model {name}: {key} must be a positive integer, got {value!r}")
    return int(value)


def build_bilstm(input_shape, n_classes: int, **hparams) -> keras.Model:
    """The seed's two-layer bidirectional LSTM.

    Input ``(batch, n_time, n_channels)`` float32 (e.g. 25 samples x 57 LFP inputs); output
    ``(batch, n_classes)`` softmax. Hyper-parameters: ``units1`` (64), ``units2`` (32),
    ``dropout`` (0.2 in the seed), ``keep_channels`` (list of channel indices or a comma string;
    default all), ``input_norm`` (true: leading BatchNormalization).

    Raises
    ------
    EphysError
        Unknown hyper-parameter, a bad value, a shape that is not (time >= 2, channels >= 1),
        or a channel index out of range.
    """
    name = "bilstm"
    unknown = sorted(set(hparams) - set(_HPARAMS))
    if unknown:
        raise EphysError(f"model {name} has no hyper-parameter {', '.join(unknown)}; it accepts: {', '.join(_HPARAMS)}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 2 or shape[0] < 2 or shape[1] < 1:
        raise EphysError(f"model {name} needs windows of shape (n_time >= 2, n_channels), got {shape}")
    u1 = _positive_int(name, "units1", hparams.get("units1"), 64)
    u2 = _positive_int(name, "units2", hparams.get("units2"), 32)
    dropout = float(0.2 if hparams.get("dropout") is None else hparams["dropout"])
    if not 0.0 <= dropout < 1.0:
        raise EphysError(f"model {name}: dropout must be in [0, 1), got {dropout!r}")
    keep = hparams.get("keep_channels")
    if isinstance(keep, str):
        keep = [int(v) for v in keep.split(",") if v.strip()]
    inputs = keras.Input(shape, name="window")
    x = inputs
    if keep is not None:
        keep = [int(v) for v in keep]
        if not keep or min(keep) < 0 or max(keep) >= shape[1]:
            raise EphysError(f"model {name}: keep_channels must index 0..{shape[1] - 1}")
        x = SelectChannels(keep, name="select_channels")(x)
    if hparams.get("input_norm", True):
        x = layers.BatchNormalization(momentum=0.9, name="input_norm")(x)
    x = layers.Bidirectional(layers.LSTM(u1, return_sequences=True), name="bilstm1")(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Bidirectional(layers.LSTM(u2), name="bilstm2")(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(int(n_classes), activation="softmax", dtype="float32", name="proba")(x)
    return keras.Model(inputs, out, name=name)
