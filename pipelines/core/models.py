"""The model registry: named builders that turn a prepared sample shape into a model.

Every model is a small builder ``build_<name>(input_shape, n_classes, **hparams) -> keras.Model``
(in ``blocks/models/`` or a pipeline's folder) declared by a pipeline as a :class:`ModelSpec`
with the data modalities it fits and the hyper-parameters it takes (:class:`HParam`: default,
type, meaning, allowed values), and registered here under a canonical name (plus aliases) in
:data:`REGISTRY`. :func:`check_hparams` is the one check of hyper-parameters (unknown keys,
types, ranges; fills the defaults), so builders trust what they get. :func:`build_model` is the
one entry point callers use: it resolves the name, checks the hyper-parameters, builds the model,
loads backbone weights (``"none"``, ``"imagenet"`` or a file path) and freezes the backbone when
asked. :func:`load_keras_model` reads a saved ``.keras`` file after importing
every registered model's module (so their custom layers are known; safe mode stays on).

Nothing here imports Keras at module import time: declaring models is cheap.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import EphysError

__all__ = ["HParam", "Search", "ModelSpec", "REGISTRY", "check_hparams", "register", "resolve_model_name", "resolve_builder",
           "models_for_modality", "check_modality", "build_model", "describe_models", "parse_hparams", "load_keras_model",
           "run_model_spec", "load_predictor", "TARGETS", "model_loss"]


# --------------------------------------------------------------------------------------------
# Hyper-parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    """Where ``ephys tune --space default`` looks for a good value of one setting.

    Either a range (``low``, ``high``; ``log`` samples on a log scale, ``step`` on a grid) or
    ``choices``. Declared beside a hyper-parameter (``HParam(..., search=Search(8, 64))``) or for a
    training setting in ``ModelSpec.search`` (``{"lr": Search(1e-4, 1e-2, log=True)}``); the space
    file of ``ephys tune --space SPACE.yaml`` holds the same keys (``low``, ``high``, ``log``,
    ``step``, ``choices``).

    Raises
    ------
    ValueError
        Neither a range nor choices, ``low`` >= ``high``, ``log`` with ``low`` <= 0, or an empty
        ``choices`` (a programming error in a declaration).
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def __post_init__(self):
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
            if not self.choices:
                raise ValueError("Search choices must not be empty")
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"Search needs low < high or choices, got low={self.low!r} high={self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale Search needs low > 0, got {self.low!r}")

    def describe(self) -> dict:
        """As plain data (the space file's keys): ``{"choices": [...]}`` or ``{"low", "high"[, "log", "step"]}``."""
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter a model declares (``ModelSpec.hparams[name]``).

    Attributes
    ----------
    default : int | float | bool | str | tuple | None
        The value the builder gets when none is given (a tuple for ``many``). ``None``: "not set"
        (the builder then does what ``help`` says, e.g. "all inputs"); a ``None`` given as a
        value also means the default.
    type : type
        ``int``, ``float``, ``bool`` or ``str``. An int is accepted for a float, a number for a
        str (``--hparam`` reads ``8`` as an int), ``0``/``1`` and ``"true"``/``"false"``
        (also yes/no, on/off) for a bool, and a string that reads as the type (``"15"`` for an
        int, as a YAML file may hold); values come back converted to ``type``.
    help : str
        One line for ``ephys models``: what it does, with units.
    choices : tuple | None
        The allowed values (strings match case-insensitively), or None.
    min, max : float | None
        Bounds of a number (of each item for ``many``); inclusive unless ``min_exclusive`` /
        ``max_exclusive``.
    min_exclusive, max_exclusive : bool
        The bound itself is not allowed (``dropout``: ``min=0, max=1, max_exclusive=True`` is
        [0, 1)).
    many : bool
        A non-empty list of ``type`` values: a list/tuple, or a comma-separated string
        (``"0,3,5"``); returned as a list.
    search : Search | None
        Its range in the model's default search space (``ephys tune --space default``); None:
        not searched by default.

    Raises
    ------
    ValueError
        ``type`` not one of int/float/bool/str, or a ``default`` its own checks refuse (a
        programming error in a declaration).
    """

    default: Any
    type: type
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    many: bool = False
    search: Search | None = None

    def __post_init__(self):
        if self.search is not None and not isinstance(self.search, Search):
            raise ValueError(f"HParam search must be a Search, not {self.search!r}")
        if self.type not in _TYPE_NAMES:
            raise ValueError(f"HParam type must be int, float, bool or str, not {self.type!r}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.many and self.default is not None:
            object.__setattr__(self, "default", tuple(self.default))
        if self.default is not None:
            try:
                self.check(self.default)
            except ValueError:
                raise ValueError(f"HParam default {self.default!r} is not {self.what()}") from None

    @property
    def type_name(self) -> str:
        """``"int"``, ``"float"``, ``"bool"``, ``"str"``; ``"int list"`` etc. for ``many``."""
        return _TYPE_NAMES[self.type] + (" list" if self.many else "")

    def range_text(self) -> str:
        """The bounds as text: ``"[0, 1)"``, ``">= 1"``, ``"> 0"``; ``""`` when unbounded."""
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            return f"{'(' if self.min_exclusive else '['}{lo:g}, {hi:g}{')' if self.max_exclusive else ']'}"
        if lo is not None:
            return f"{'>' if self.min_exclusive else '>='} {lo:g}"
        if hi is not None:
            return f"{'<' if self.max_exclusive else '<='} {hi:g}"
        return ""

    def what(self) -> str:
        """What a value must be, for messages: ``"a number in [0, 1)"``, ``"one of last, mean"``,
        ``"a comma-separated list of integers >= 0"``."""
        rng = self.range_text()
        rng = "" if not rng else (f" in {rng}" if rng[0] in "[(" else f" {rng}")
        if self.choices is not None:
            return ("a comma-separated list of: " if self.many else "one of ") + ", ".join(map(str, self.choices))
        if self.many:
            return "a comma-separated list of " + {int: "integers", float: "numbers", bool: "true/false values",
                                                   str: "names"}[self.type] + rng
        return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.type] + rng

    def default_text(self) -> str:
        """The default as a user types it (``"7,4,4,2"``, ``"true"``, ``"-"`` for not set)."""
        d = self.default
        if d is None:
            return "-"
        if isinstance(d, bool):
            return "true" if d else "false"
        if isinstance(d, tuple):
            return ",".join(str(v) for v in d)
        return f"{d:g}" if isinstance(d, float) else str(d)

    def describe(self) -> dict:
        """The declaration as plain data (``describe_models()["hparams"][name]``): ``type`` (str),
        ``default``, ``help``, ``choices`` (list | None), ``min``, ``max``, ``min_exclusive``,
        ``max_exclusive``, ``many``, ``range`` and ``default_text`` (text), ``search`` (its
        :meth:`Search.describe` or None)."""
        return {"type": self.type_name, "default": list(self.default) if isinstance(self.default, tuple) else self.default,
                "help": self.help, "choices": None if self.choices is None else list(self.choices),
                "min": self.min, "max": self.max, "min_exclusive": self.min_exclusive,
                "max_exclusive": self.max_exclusive, "many": self.many, "range": self.range_text(),
                "default_text": self.default_text(),
                "search": None if self.search is None else self.search.describe()}

    def check(self, value):
        """``value`` converted to this hyper-parameter's type (a list for ``many``).

        Raises
        ------
        ValueError
            Wrong type, out of range or not among ``choices`` (no message: the caller names the
            model and key, see :func:`check_hparams`).
        """
        if not self.many:
            return self._one(value)
        if isinstance(value, str):
            items = [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        if not items:
            raise ValueError(value)
        return [self._one(v) for v in items]

    def _one(self, v):
        t = self.type
        if t is bool:
            if isinstance(v, bool):
                return v
            if isinstance(v, numbers.Integral) and int(v) in (0, 1):
                return bool(v)
            if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
                return v.strip().lower() in _TRUE
            raise ValueError(v)
        if isinstance(v, bool) or not isinstance(v, (str, numbers.Real)):
            raise ValueError(v)
        if t is str:
            out = v if isinstance(v, str) else str(v)
            if self.choices is not None:
                match = [c for c in self.choices if str(c).lower() == out.strip().lower()]
                if not match:
                    raise ValueError(v)
                out = match[0]
            return out
        if isinstance(v, str):
            v = v.strip()
            out = int(v) if t is int else float(v)  # ValueError for "abc"
        elif t is int:
            if not float(v).is_integer():
                raise ValueError(v)
            out = int(v)
        else:
            out = float(v)
        if not math.isfinite(out):
            raise ValueError(v)
        lo, hi = self.min, self.max
        if lo is not None and (out < lo or self.min_exclusive and out == lo):
            raise ValueError(v)
        if hi is not None and (out > hi or self.max_exclusive and out == hi):
            raise ValueError(v)
        if self.choices is not None and out not in self.choices:
            raise ValueError(v)
        return out


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
    hparams : dict[str, HParam]
        The hyper-parameters the builder (or trainer) takes, by name, in the order ``ephys
        models`` lists them; :func:`check_hparams` refuses any other and fills the defaults. A
        Keras model that declares ``dropout`` gets ``ephys train --dropout``; one that declares
        ``input_size`` gets ``--input-size``.
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
    search : dict[str, Search]
        Ranges of training settings (``lr``, ``batch_size``, ...) in the model's default search
        space (``ephys tune --space default``), over the core's defaults
        (:data:`ephys.pipelines.core.tune.DEFAULT_SEARCH`); its hyper-parameters' ranges are
        declared on them (:attr:`HParam.search`).
    feature_layers : tuple[str, ...]
        Names of the layers that form the model's feature extractor (e.g. its convolutions):
        what ``ephys train --freeze features`` keeps fixed, the default when a run starts from
        another run's weights (``--init``, transfer learning as miniML retrains its classifier on
        a new preparation). Empty: the model has none to freeze that way.
    shipped : callable, str or None
        ``shipped() -> Path``: the run folder of a trained model that ships with ephys for this
        model (``ephys train --init shipped``), or ``"module:function"``. None: none ships.
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
    hparams: dict[str, HParam] = field(default_factory=dict)
    target: str = "label"
    loss: Callable[..., Any] | str | None = None
    fit_labels: tuple[str, ...] = ()
    after_fit: Callable[..., Any] | str | None = None
    evaluator: Callable[..., dict] | str | None = None
    search: dict[str, Search] = field(default_factory=dict)
    feature_layers: tuple[str, ...] = ()
    shipped: Callable[[], Path] | str | None = None


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
        Empty name, the name already registered (and ``replace`` is false), a name/alias that
        collides with another model's name or alias, or an ``hparams`` entry that is not an
        :class:`HParam`. (A programming error, not a user error.)
    """
    name = str(spec.name).strip().lower()
    if not name:
        raise ValueError("a model needs a name")
    bad = [k for k, v in dict(spec.hparams or {}).items() if not isinstance(v, HParam) or not str(k).isidentifier()]
    if bad:
        raise ValueError(f"model {name}: hparams {bad} must be identifiers mapped to HParam declarations")
    spec.hparams = dict(spec.hparams or {})
    if any(not isinstance(v, Search) for v in dict(spec.search or {}).values()):
        raise ValueError(f"model {name}: search must map setting names to Search declarations")
    spec.search = dict(spec.search or {})
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
    if path.suffix == ".keras":  # a .keras file is a zip archive: a cut-off copy is named as such
        import zipfile

        if path.stat().st_size == 0 or not zipfile.is_zipfile(path):
            raise EphysError(f"cannot load model: damaged file ({path.stat().st_size} bytes, not a complete .keras zip "
                             "archive: truncated by a full disk or an interrupted copy?); copy it again or re-train",
                             path)
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
        (``"keras"`` | ``"lightgbm"``), ``hparams`` (dict: name -> :meth:`HParam.describe`, in
        declaration order), ``target`` (``"label"`` | ``"mask"`` | ``"input"``).
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
            "hparams": {k: h.describe() for k, h in s.hparams.items()},
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

_FREEZE = ("none", "full", "features")


def parse_hparams(items) -> dict:
    """``["KEY=VALUE", ...]`` (``ephys train --hparam``) -> ``{KEY: value}``.

    A value is read as an int (``128``), else a float (``0.25``, ``1e-3``), else a bool
    (``true`` / ``false``, any case), else kept as a string. A key given twice keeps the last
    value. Which keys a model accepts, and their types and ranges, is checked by
    :func:`check_hparams` against the model's declaration.

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


def check_hparams(spec_or_name: ModelSpec | str, given: dict | None, where: str = "--hparam") -> dict:
    """Check hyper-parameters ``given`` against a model's declaration; return them complete.

    Parameters
    ----------
    spec_or_name : ModelSpec | str
        The model (a spec, or a name or alias in :data:`REGISTRY`).
    given : dict | None
        ``{name: value}`` (``--hparam`` values after :func:`parse_hparams`, a config.yaml's
        ``hparams``, keyword arguments). A ``None`` value means the default.
    where : str
        Where the values came from, put first in messages (``"--hparam"``, ``"`hparams`"``);
        ``""``: nothing.

    Returns
    -------
    dict
        Every declared hyper-parameter, in declaration order: the given value converted to its
        declared type (see :class:`HParam`), else the default.

    Raises
    ------
    EphysError
        An unknown model; a key the model does not declare (one line naming the model and the
        keys it accepts); a value of the wrong type, out of range or not among the choices
        (naming the model, the key and what it must be).
    """
    spec = spec_or_name if isinstance(spec_or_name, ModelSpec) else REGISTRY[resolve_model_name(spec_or_name)]
    given = dict(given or {})
    declared = spec.hparams or {}
    prefix = f"{where}: " if where else ""
    unknown = [k for k in given if k not in declared]
    if unknown:
        accepts = ", ".join(declared) if declared else "none"
        raise EphysError(f"{prefix}model {spec.name} has no hyper-parameter {', '.join(map(str, unknown))}; "
                         f"it accepts: {accepts}")
    out = {}
    for key, hp in declared.items():
        value = given.get(key)
        if value is None:
            out[key] = list(hp.default) if isinstance(hp.default, tuple) else hp.default
            continue
        try:
            out[key] = hp.check(value)
        except (ValueError, TypeError, OverflowError):
            raise EphysError(f"{prefix}model {spec.name}: {key} must be {hp.what()}, not {value!r}") from None
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
        BatchNorm layers then run in inference mode); only the head trains. ``"features"``: the
        layers the spec names in :attr:`ModelSpec.feature_layers` are not trainable (e.g. the
        convolutions of a window classifier fine-tuned from another run, ``--init``).
    **hparams
        Hyper-parameters the model declares (``ModelSpec.hparams``, listed by ``ephys models``;
        e.g. image backbones: ``dropout``, ``input_size``, ``bn_momentum``), checked and
        completed with the defaults by :func:`check_hparams` before the builder sees them.

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
    hparams = check_hparams(spec, hparams, where="")  # before any weights are looked for
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

    if freeze_mode == "features":
        if not spec.feature_layers:
            raise EphysError(f"model {canonical} declares no feature layers, so --freeze features does not apply")
        for layer_name in spec.feature_layers:
            model.get_layer(layer_name).trainable = False
    backbone = None
    if weights_file is not None or freeze_mode == "full":
        try:
            backbone = model.get_layer("backbone")
        except ValueError:
            raise EphysError(f"model {canonical} has no backbone, so --weights/--freeze do not apply") from None

    if weights_file is not None:
        _load_backbone_weights(backbone, weights_file, canonical)

    if freeze_mode == "full":
        backbone.trainable = False
    return model



def init_model_file(init: str, model: str) -> Path:
    """The model file ``ephys train --init INIT`` starts from: ``INIT/model.keras`` of a run
    folder (whose ``config.yaml`` must name the same model), a ``.keras`` file, or ``shipped``
    (the run that ships for ``model``, :attr:`ModelSpec.shipped`). Reads YAML only (no Keras).

    Raises
    ------
    EphysError
        No such run or file; a run of another model; a run with no trained model yet; ``shipped``
        for a model none ships for.
    """
    import yaml

    canonical = resolve_model_name(model)
    spec = REGISTRY[canonical]
    key = str(init).strip()
    if key.lower() == "shipped":
        if spec.shipped is None:
            raise EphysError(f"no trained {canonical} model ships with ephys; pass --init RUN", "--init")
        run = Path(_resolve(spec.shipped)() if isinstance(spec.shipped, str) else spec.shipped())
    else:
        run = Path(key).expanduser()
    if run.is_file():
        if run.suffix != ".keras":
            raise EphysError("--init takes a run folder or a .keras model file", run)
        return run
    if not run.is_dir():
        raise EphysError("--init: no such run folder or model file", run)
    cfg_path = run / "config.yaml"
    if cfg_path.is_file():
        try:
            other = (yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}).get("model")
        except (OSError, yaml.YAMLError):
            other = None
        if other is not None and resolve_model_name(str(other)) != canonical:
            raise EphysError(f"--init: that run trained {other}, not {canonical}; the weights must fit the same "
                             "architecture", run)
    f = run / spec.model_file
    if not f.is_file():
        raise EphysError(f"--init: the run holds no {spec.model_file} (not trained to the end?)", run)
    return f


def load_init_weights(model, path: str | os.PathLike, feature_layers: tuple[str, ...] = ()) -> dict:
    """Copy the weights of the model saved in ``path`` into ``model``, layer by layer by name,
    where every weight's shape agrees (transfer learning: the same architecture, possibly another
    number of classes). Layers without weights are skipped; a layer whose shapes differ (e.g. a
    head of another size) keeps its fresh initialisation.

    Returns
    -------
    dict: ``loaded`` (layer names whose weights were copied), ``kept`` (layers left as built).

    Raises
    ------
    EphysError
        The file does not load, or one of ``feature_layers`` (the layers a transfer must carry)
        is missing there or has other shapes.
    """
    src = load_keras_model(path, compile=False)
    by_name = {layer.name: layer for layer in src.layers}
    loaded, kept = [], []
    for layer in model.layers:
        mine = layer.get_weights()
        if not mine:
            continue
        other = by_name.get(layer.name)
        theirs = other.get_weights() if other is not None else []
        if len(theirs) == len(mine) and all(a.shape == b.shape for a, b in zip(mine, theirs)):
            layer.set_weights(theirs)
            loaded.append(layer.name)
        else:
            kept.append(layer.name)
    missing = [n for n in feature_layers if n not in loaded]
    if missing:
        raise EphysError(f"--init: the model there has no layer {missing[0]} of the same shape (another "
                         "architecture or other hyper-parameters, e.g. --hparam width?)", path)
    return {"loaded": loaded, "kept": kept}


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
