"""The model registry: named builders that turn a prepared sample shape into a model.

Every model is a small builder ``build_<name>(input_shape, n_classes, **hparams) -> keras.Model``
(in ``blocks/models/`` or a pipeline's folder) declared by a pipeline as a :class:`ModelSpec`
with the data modalities it fits, and registered here under a canonical name (plus aliases) in
:data:`REGISTRY`. :func:`build_model` is the one entry point callers use: it resolves the name,
builds the model, loads backbone weights (``"none"``, ``"imagenet"`` or a file path) and freezes
the backbone when asked. :func:`load_keras_model` reads a saved ``.keras`` file after importing
every registered model's module (so their custom layers are known; safe mode stays on).

Nothing here imports Keras at module import time: declaring models is cheap.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import EphysError

__all__ = ["ModelSpec", "REGISTRY", "register", "resolve_model_name", "resolve_builder", "models_for_modality",
           "check_modality", "build_model", "describe_models", "parse_hparams", "load_keras_model", "run_model_spec",
           "load_predictor"]
__all__ += ["TARGETS", "model_loss"]  # what a model learns (ModelSpec.target) and with which loss


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
    builder : Callable or str
        ``builder(input_shape, n_classes, **hparams)`` returning a ``keras.Model`` (models that
        support ``weights``/``freeze`` in :func:`build_model` name their feature extractor
        layer ``"backbone"``); or ``"package.module:function"``, imported when first needed (so
        declaring a model does not import Keras).
    modalities : tuple[str, ...]
        Data modalities the model accepts (e.g. ``"scalogram"``, ``"waveform"``).
    input_size : int | None
        Side of the square image the backbone sees (``None`` when not an image model).
    aliases : tuple[str, ...]
        Other accepted names (case-insensitive).
    description : str
        One line for ``--help`` and docs, with the source paper.
    imagenet : bool
        Whether ImageNet weights exist for it (``--weights imagenet``).
    trainer : callable, str or None
        For models not trained by gradient descent in Keras: ``trainer(cfg, ds, split, run, meta,
        log) -> run`` (e.g. LightGBM's cross-validated fit). None: the core's Keras training.
    predictor : callable, str or None
        ``predictor(run_dir, ds) -> predict(indices) -> proba (n, n_classes) float64`` for such
        models. None: the run's ``model.keras`` applied in batches.
    model_file : str
        The trained model's file name in the run folder (``model.keras``; LightGBM:
        ``model.lgb.txt``).
    imagenet_weights : callable, str or None
        ``imagenet_weights(canonical_name) -> Path`` of the backbone's ImageNet weights file
        (from a cache, downloading when it can; EphysError otherwise), or ``"module:function"``.
    kind : str
        ``"keras"`` (trained by gradient descent in :func:`ephys.pipelines.training.train`) or
        ``"lightgbm"`` (gradient-boosted trees on feature tables, :mod:`ephys.pipelines.tabular`;
        its builder returns an unfitted ``LGBMClassifier``).
    target : str
        What the core's fit loop teaches the model (:data:`TARGETS`): ``"label"`` (the sample's
        class; the model outputs ``(batch, n_classes)`` softmax probabilities), ``"mask"`` (the
        per-point mask the dataset stores beside its samples, ``manifest["mask_array"]``; the
        model outputs ``(batch, *sample_shape)`` probabilities in [0, 1]) or ``"input"`` (the
        sample itself: a reconstruction ``(batch, *sample_shape)``).
    loss : str, callable or None
        The training loss: a Keras loss name (``"mse"``), or a ``loss(y_true, y_pred)`` function
        (or its ``"module:function"``; register it with
        ``keras.saving.register_keras_serializable`` so a checkpoint can be resumed). None: the
        target's default in :data:`TARGETS`.
    fit_labels : tuple[str, ...]
        Fit on the samples of these classes only (train and validation parts; e.g. an anomaly
        model learns the normal class). Empty: every sample of the parts.
    after_fit : callable, str or None
        ``after_fit(run_dir, model, ds, split, log)``, run once the best weights are restored and
        before ``model.keras`` is written; ``split`` holds the ``train`` and ``val`` index arrays
        only (training-side data, never the test part). E.g. an anomaly threshold.
    evaluator : callable, str or None
        ``evaluator(run_dir, config, ds, test_indices, batch_size) -> dict``: the test metrics
        ``ephys evaluate`` writes for a non-``label`` target (a label target is scored by the
        core's classification metrics). None there: evaluate says it does not apply.
    """

    name: str
    builder: Callable[..., Any]
    modalities: tuple[str, ...]
    input_size: int | None
    aliases: tuple[str, ...]
    description: str
    imagenet: bool
    kind: str = "keras"
    model_file: str = "model.keras"
    trainer: Callable[..., Path] | str | None = None
    predictor: Callable[..., Callable] | str | None = None
    imagenet_weights: Callable[[str], Path] | str | None = None
    target: str = "label"
    loss: Callable[..., Any] | str | None = None
    fit_labels: tuple[str, ...] = ()
    after_fit: Callable[..., Any] | str | None = None
    evaluator: Callable[..., dict] | str | None = None


#: what a model learns -> (default loss, metrics compiled with it); see :attr:`ModelSpec.target`
TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "label": ("sparse_categorical_crossentropy", ("accuracy",)),
    "mask": ("binary_crossentropy", ("binary_accuracy",)),
    "input": ("mse", ()),
}


def model_loss(spec: ModelSpec):
    """The loss ``spec`` trains with: its ``loss`` (a Keras name, a function, or a
    ``"module:function"`` string imported now), else its target's default (:data:`TARGETS`)."""
    if spec.loss is None:
        return TARGETS[spec.target][0]
    if callable(spec.loss) or ":" not in str(spec.loss):
        return spec.loss
    return _resolve(spec.loss)


class _Registry(dict):
    """A dict that imports the pipelines (which declare the models) the first time it is read."""

    def _load(self):
        from .registry import load_pipelines, pipelines

        load_pipelines()
        for p in pipelines().values():  # cheap: a few specs, skipped when already registered
            for spec in p.models:
                if dict.get(self, str(spec.name).strip().lower()) is not spec:
                    register(spec)

    def __getitem__(self, k):
        self._load()
        return dict.__getitem__(self, k)

    def __contains__(self, k):
        self._load()
        return dict.__contains__(self, k)

    def __iter__(self):
        self._load()
        return dict.__iter__(self)

    def __len__(self):
        self._load()
        return dict.__len__(self)

    def get(self, k, default=None):
        self._load()
        return dict.get(self, k, default)

    def keys(self):
        self._load()
        return dict.keys(self)

    def values(self):
        self._load()
        return dict.values(self)

    def items(self):
        self._load()
        return dict.items(self)


#: Canonical name -> spec, filled by the pipelines' declarations (see
#: :func:`ephys.pipelines.core.registry.load_pipelines`, run on first read). Add entries with
#: :func:`register`, not by assignment.
REGISTRY: dict[str, ModelSpec] = _Registry()


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
    if spec.target not in TARGETS:
        raise ValueError(f"model {name!r}: target must be one of {', '.join(TARGETS)}, not {spec.target!r}")
    spec.fit_labels = tuple(str(c) for c in spec.fit_labels)
    if dict.__contains__(REGISTRY, name) and not replace:  # dict methods: no pipeline loading here
        raise ValueError(f"model {name!r} is already registered")
    taken = {}
    for other in dict.values(REGISTRY):
        if other.name == name:
            continue
        for k in (other.name, *other.aliases):
            taken[_key(k)] = other.name
    for k in (name, *spec.aliases):
        if _key(k) in taken:
            raise ValueError(f"model name or alias {k!r} is already used by {taken[_key(k)]!r}")
    REGISTRY[name] = spec
    return spec


def _resolve(target):
    """A callable, or ``"package.module:function"`` imported now."""
    if callable(target):
        return target
    import importlib

    mod, _, fn = str(target).partition(":")
    return getattr(importlib.import_module(mod), fn)


def resolve_hook(target) -> Callable[..., Any]:
    """A ModelSpec hook (``trainer``, ``predictor``, ...) as a callable."""
    return _resolve(target)


def resolve_builder(spec: ModelSpec) -> Callable[..., Any]:
    """The builder function of ``spec`` (importing its module when given as ``"module:function"``)."""
    return _resolve(spec.builder)


def load_keras_model(path: str | os.PathLike, compile: bool = True):
    """``keras.models.load_model(path)`` after importing every registered model's module, so the
    custom layers they define are known to Keras (safe mode stays on).

    Raises
    ------
    EphysError
        The file is missing, truncated or not a Keras model (one line naming the file).
    """
    import keras

    from .registry import load_pipelines

    load_pipelines()
    for spec in REGISTRY.values():
        if spec.kind == "keras":
            resolve_builder(spec)
    path = Path(path)
    if not path.is_file():
        raise EphysError("model file not found", path)
    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as exc:  # keras raises many types (ValueError, TypeError, OSError, zipfile errors)
        msg = " ".join(str(exc).split())[:300]
        raise EphysError(f"cannot load model: {type(exc).__name__}: {msg}", path) from None


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
        (``"keras"`` | ``"lightgbm"``), ``target`` (``"label"`` | ``"mask"`` | ``"input"``).
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
            "target": s.target,
        }
        for s in REGISTRY.values()
    ]


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
):
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
        if not spec.imagenet or spec.imagenet_weights is None:
            raise EphysError(
                f"{canonical} has no Keras ImageNet weights; pass --weights PATH (a backbone weights file) "
                "or --weights none"
            )
        weights_file = _resolve(spec.imagenet_weights)(canonical)  # before building: fail fast offline
    elif wkey.lower() != "none":
        weights_file = Path(wkey).expanduser()
        if not weights_file.is_file():
            raise EphysError("weights file not found", path=weights_file)

    model = resolve_builder(spec)(input_shape, n_classes, **hparams)

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



def run_model_spec(config: dict) -> ModelSpec | None:
    """The registered spec of a run's ``config["model"]``, or None if no pipeline registers it."""
    try:
        return REGISTRY[resolve_model_name(str(config.get("model")))]
    except EphysError:
        return None


def load_predictor(run_dir: str | os.PathLike, config: dict, ds, batch_size: int = 8):
    """A function ``predict(indices) -> proba`` (n, n_classes) float64 applying the run's trained
    model to samples ``indices`` of dataset ``ds`` (:class:`ephys.pipelines.core.datasets.Dataset`).
    For a ``mask`` or ``input`` target (:attr:`ModelSpec.target`) it returns the model's output
    as it is, (n, *sample_shape) float64: per-point probabilities, or the reconstruction.

    Keras runs load ``RUN/model.keras`` and predict in batches of ``batch_size``; models with a
    ``predictor`` hook (e.g. LightGBM) use it.

    Raises
    ------
    EphysError
        The model file is missing or unreadable.
    """
    import numpy as np

    run_dir = Path(run_dir)
    spec = run_model_spec(config)
    if spec is not None and spec.predictor is not None:
        return _resolve(spec.predictor)(run_dir, ds)
    model = load_keras_model(run_dir / "model.keras")

    def predict(indices):
        idx = np.asarray(indices, dtype=np.int64)
        parts = [np.asarray(model.predict(ds.load(idx[i:i + batch_size]), verbose=0))
                 for i in range(0, idx.size, batch_size)]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 0))

    return predict
