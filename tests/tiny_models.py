"""A test plug-in (``EPHYS_PLUGINS=tiny_models``): a tiny model for the scalogram modality, so a
test can train a "demo-like" STS run in seconds (average pooling + one dense layer)."""

from __future__ import annotations

from ephys.pipelines.core.models import ModelSpec
from ephys.pipelines.core.registry import Pipeline, register_pipeline


def build_tiny_scalogram(input_shape, n_classes):
    import keras
    from keras import layers

    inp = keras.Input(tuple(input_shape))
    x = layers.AveragePooling2D((30, 100))(inp)
    x = layers.Flatten()(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="tiny_scalogram")


register_pipeline(Pipeline("tiny", "tiny models for tests", models=(
    ModelSpec("tiny_scalogram", build_tiny_scalogram, ("scalogram",), None, (), "pooled scalogram + softmax", False),)))
