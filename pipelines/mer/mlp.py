"""The ML-STIM multilayer perceptron (Keras 3), with its min-max scaler inside the model.

Architecture (Sciscenti et al. 2025, ML-STIM; ``trained_model/MLP_architecture.py``): 9 features
-> 7 -> 4 -> 4 -> 2 -> output, tanh hidden units. The published model has one sigmoid unit with a
0.51 threshold; the core trains every Keras model with ``n_classes`` softmax outputs and sparse
categorical cross-entropy, and a 2-unit softmax is the same function family as one sigmoid unit
(``softmax([a, b])[1] = sigmoid(b - a)``).

Scaling: ML-STIM scales each feature to [0, 1] with limits hard-coded from its own training set
and clips. Here the limits are learnt from the training fold, inside the model, by
:class:`MinMaxScaling`: a layer with non-trainable ``minimum`` / ``maximum`` weights that, in
training mode only, widens them to cover each training batch. After the first epoch they are
exactly the training set's minimum and maximum; validation, test and prediction calls (training
mode off) never change them. This goes through the core's ordinary ``train()`` — the builder only
gets the input shape, so a scaler adapted before training (``keras.layers.Normalization.adapt``)
is not possible there — and the limits are saved in ``model.keras`` with the weights. During the
first epoch the limits still grow, as BatchNormalization's statistics move early in training.
"""

from __future__ import annotations

import keras
from keras import layers, ops

#: hidden layer widths of ML-STIM's MLP
HIDDEN = (7, 4, 4, 2)


@keras.saving.register_keras_serializable(package="ephys_mer")
class MinMaxScaling(layers.Layer):
    """Min-max scaling to [0, 1] with clipping; the limits come from the training batches.

    Input / output: (batch, n_features) float32. Before any training batch the layer passes
    values through unchanged (the limits are then +inf / -inf).
    """

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.minimum = self.add_weight(shape=(n,), initializer=keras.initializers.Constant(float("inf")),
                                       trainable=False, name="minimum")
        self.maximum = self.add_weight(shape=(n,), initializer=keras.initializers.Constant(float("-inf")),
                                       trainable=False, name="maximum")

    def call(self, x, training=None):
        if training:
            self.minimum.assign(ops.minimum(self.minimum, ops.min(x, axis=0)))
            self.maximum.assign(ops.maximum(self.maximum, ops.max(x, axis=0)))
        lo, hi = self.minimum, self.maximum
        ready = ops.greater(hi, lo)
        span = ops.where(ready, hi - lo, ops.ones_like(hi))
        base = ops.where(ready, lo, ops.zeros_like(lo))
        scaled = ops.clip((x - base) / span, 0.0, 1.0)
        return ops.where(ready, scaled, x)


def build_mlp(input_shape, n_classes: int, hidden=HIDDEN):
    """ML-STIM's MLP for feature rows.

    Parameters
    ----------
    input_shape : ``(n_features,)`` (9 for the ML-STIM table; any width works)
    n_classes : outputs of the softmax head (2 for inside / outside the STN)
    hidden : widths of the tanh hidden layers, positive ints (default ``7,4,4,2``); the
        hyper-parameter declared in the ``mer`` pipeline (``--hparam hidden=8,4``), checked by
        ``build_model``. The published MLP has no dropout, so it declares none and ``ephys
        train --dropout`` does not apply.

    Returns
    -------
    keras.Model (batch, n_features) float32 -> (batch, n_classes) softmax.
    """
    inp = keras.Input(shape=tuple(input_shape), name="features")
    x = MinMaxScaling(name="minmax")(inp)
    for k, width in enumerate(hidden):
        x = layers.Dense(int(width), activation="tanh", name=f"dense_{k}")(x)
    out = layers.Dense(n_classes, activation="softmax", name="head")(x)
    return keras.Model(inp, out, name="mlp_mlstim")
