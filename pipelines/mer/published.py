"""ML-STIM's published, trained model (Sciscenti et al. 2025), as a Keras model.

What ML-STIM publishes (Biolab-PoliTO/ML-STIM, ``trained_model/``): the parameters of its MLP
(``MLP_parameters.pth``, a PyTorch state dict; 4,178 bytes, sha256 :data:`SHA256`), the min-max
scaling constants fixed on its training set (:data:`FEATURE_MIN`, :data:`FEATURE_MAX`, in the order
of :data:`ephys.pipelines.mer.dsp.FEATURE_NAMES`; ``lib.extract_segment_features_min_max``), and the
rule: sigmoid per 1-s segment, mean over a recording's segments, STN when the mean is >= 0.51
(:data:`THRESHOLD`).

:func:`convert` turns the state dict into a Keras model of the same function: the scaling
(``(x - min) / (max - min)``, a ``Rescaling`` layer) and the clip to [0, 1] (``ReLU(max_value=1)``),
then Linear 9->7->4->4->2->1 (``fc1`` ... ``fc5``; PyTorch stores an ``nn.Linear`` weight as
(out, in), Keras a ``Dense`` kernel as (in, out)) with tanh after the first four, and a sigmoid.
Output: (n, 1) float32, P(inside the STN) per segment.

The repository has no licence: none of its files is in ephys. ``ephys fetch weights ml-stim``
downloads the parameters from GitHub into the user's weights cache (or installs a copy the user
downloaded, ``--file``), checks the checksum and converts them (:mod:`ephys.pipelines.core.published`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import EphysError

#: where ML-STIM publishes its trained parameters (GitHub, default branch main)
URL = "https://raw.githubusercontent.com/Biolab-PoliTO/ML-STIM/main/trained_model/MLP_parameters.pth"
SHA256 = "f294ea7395ce389d320b6af6ebce2733660af5170ff200bd8912a5edfd0a6a2a"
SIZE_BYTES = 4178
#: ML-STIM's min-max scaling constants (its training set), order of ``dsp.FEATURE_NAMES``; mad in µV
FEATURE_MIN = (1.357211, 0.002564, 0.019996, -0.250695, 0.041139, 1644.88, 0.153334, 0.833393, -0.096321)
FEATURE_MAX = (8.707813, 0.016264, 0.073682, 0.133387, 0.16357, 2769.0, 0.435164, 0.936993, 2.680869)
#: ML-STIM's decision threshold on a recording's mean segment probability
THRESHOLD = 0.51
#: layer sizes of ML-STIM's MLP (``trained_model/MLP_architecture.py``)
LAYERS = ((9, 7), (7, 4), (4, 4), (4, 2), (2, 1))
CITATION = ("Sciscenti F, Agostini V, Rizzi L, Lanotte M, Ghislieri M (2025). ML-STIM: Machine Learning for "
            "SubThalamic nucleus Intraoperative Mapping. J Neural Eng. doi:10.1088/1741-2552/adf579")
LICENCE = ("The ML-STIM repository (github.com/Biolab-PoliTO/ML-STIM) states no licence: its parameters are "
           "downloaded from there by each user, for research use, and are not redistributed with ephys.")


def scale(features: np.ndarray) -> np.ndarray:
    """ML-STIM's published scaling: ``(x - FEATURE_MIN) / (FEATURE_MAX - FEATURE_MIN)`` clipped to
    [0, 1]; (n, 9) -> (n, 9) float64."""
    lo, hi = np.asarray(FEATURE_MIN), np.asarray(FEATURE_MAX)
    return np.clip((np.asarray(features, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def check_state_dict(state: dict, where=None) -> None:
    """The keys and shapes of ML-STIM's MLP: ``fc{k}.weight`` (out, in) and ``fc{k}.bias`` (out,).

    Raises
    ------
    EphysError
        A missing or extra key, or a shape that is not ML-STIM's.
    """
    want = {}
    for k, (n_in, n_out) in enumerate(LAYERS, start=1):
        want[f"fc{k}.weight"], want[f"fc{k}.bias"] = (n_out, n_in), (n_out,)
    if set(state) != set(want):
        raise EphysError(f"not ML-STIM's MLP parameters: keys {sorted(state)}; expected {sorted(want)}", where)
    for k, shape in want.items():
        if tuple(state[k].shape) != shape:
            raise EphysError(f"not ML-STIM's MLP parameters: {k} has shape {tuple(state[k].shape)}, expected "
                             f"{shape}", where)


def build_keras(state: dict):
    """The Keras model of ML-STIM from its state dict (see the module docstring): (n, 9) raw features
    -> (n, 1) float32 sigmoid P(inside)."""
    import keras
    from keras import layers

    check_state_dict(state)
    lo, hi = np.asarray(FEATURE_MIN), np.asarray(FEATURE_MAX)
    inp = keras.Input(shape=(len(FEATURE_MIN),), name="features")
    x = layers.Rescaling(scale=(1.0 / (hi - lo)).tolist(), offset=(-lo / (hi - lo)).tolist(),
                         name="published_min_max_scaling")(inp)
    x = layers.ReLU(max_value=1.0, name="clip_0_1")(x)
    dense = []
    for k, (_, n_out) in enumerate(LAYERS, start=1):
        d = layers.Dense(n_out, activation="tanh" if k < len(LAYERS) else None, name=f"fc{k}")
        x = d(x)
        dense.append((d, k))
    out = layers.Activation("sigmoid", name="sigmoid")(x)
    model = keras.Model(inp, out, name="ml_stim")
    for d, k in dense:
        d.set_weights([np.asarray(state[f"fc{k}.weight"], dtype=np.float32).T,
                       np.asarray(state[f"fc{k}.bias"], dtype=np.float32)])
    return model


def convert(path: str | Path):
    """The published model declaration's ``convert`` hook: ``MLP_parameters.pth`` -> Keras model.

    Raises
    ------
    EphysError
        Not a readable tensor-only PyTorch file, or not ML-STIM's architecture.
    """
    from ..blocks.models.torch_state import read_state_dict

    state = read_state_dict(path)
    check_state_dict(state, path)
    return build_keras(state)


def reference_forward(state: dict, features: np.ndarray) -> np.ndarray:
    """ML-STIM's published steps in numpy (scale, clip, the MLP, sigmoid): (n, 9) raw features ->
    (n,) P(inside) float64. For tests and the report's rule; :func:`build_keras` is what predicts."""
    h = scale(features)
    for k in range(1, len(LAYERS) + 1):
        h = h @ np.asarray(state[f"fc{k}.weight"], dtype=np.float64).T + np.asarray(state[f"fc{k}.bias"])
        if k < len(LAYERS):
            h = np.tanh(h)
    return 1.0 / (1.0 + np.exp(-h[:, 0]))
