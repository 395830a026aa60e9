"""The registry: what each pipeline brings to the core, looked up by name.

The core (training, evaluation, prediction, explanation, reports, ``reproduce``) never names a
pipeline and never tests a modality string. A pipeline is one folder under ``pipelines/`` whose
``__init__.py`` calls :func:`register_pipeline` once with a :class:`Pipeline`: its modalities
(each a :class:`Modality`: how a sample is drawn in a report, which explanation applies, which
extra report sections and metrics it adds, how raw input is prepared for ``ephys predict``), its
models (:class:`ephys.pipelines.core.models.ModelSpec`, registered into the model registry), its
prepare steps (:class:`ephys.pipelines.core.prepare.PrepareStep`: ``ephys prepare NAME``), its extra
commands (:class:`Command`: ``ephys PIPELINE NAME``, or ``ephys fetch NAME``), its ``reproduce``
recipes (:class:`Recipe`), its simulated default (``fetch synthetic``) and how ``make slurm-all``
runs it (:class:`ClusterSteps`). The command line, ``ephys models`` and the docs' reference are built
from these declarations; one pipeline declares itself the default (``default=True``: what ``ephys
train`` and ``ephys fetch synthetic`` use when no dataset or pipeline is named).

Which pipelines exist is the list ``ephys.pipelines.PIPELINES`` (one line per pipeline, like
SpikeInterface's sorter list); ``$EPHYS_PLUGINS`` (comma-separated module names) adds modules
from outside the package, e.g. a lab's own pipeline or the toy modality of the tests.
:func:`load_pipelines` imports them all once; every lookup calls it first.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import EphysError

__all__ = ["resolve", "Figure", "Section", "ReportContext", "Modality", "Recipe", "Pipeline", "ClusterSteps", "register_modality",
           "register_pipeline", "modality", "modalities", "pipeline", "pipelines", "recipe", "recipes",
           "load_pipelines", "PLUGINS_ENV", "Command", "CommandContext", "default_pipeline", "prepare_steps",
           "prepare_step", "published_models", "published_model"]

#: environment variable naming extra modules that register pipelines or modalities
PLUGINS_ENV = "EPHYS_PLUGINS"


@dataclass
class Figure:
    """One figure of a report section: PNG bytes, alt text, a caption (plain text) and ``key``, the
    file stem under ``RUN/report_files/`` (unique within a report; derived from the section when
    empty)."""

    png: bytes
    alt: str
    caption: str = ""
    key: str = ""


@dataclass
class Section:
    """One section of a run report, contributed by a modality or a pipeline.

    Attributes
    ----------
    title : str
    text : str
        A paragraph of plain text (escaped when rendered).
    figures : list[Figure]
    table : list[list[str]] | None
        First row is the header; cells are plain text.
    """

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    table: list[list[str]] | None = None


@dataclass
class ReportContext:
    """What a modality's report hooks get: the run and its dataset, already read and checked.

    Attributes
    ----------
    run_dir : Path
    config : dict          the run's ``config.yaml``
    data_dir : Path | None the prepared dataset the run was trained on (None if unavailable)
    manifest : dict | None that dataset's ``manifest.json``
    split : dict | None    the run's ``split.json`` (sample ids per part)
    label_names : list[str]
    metrics : dict | None  the run's ``metrics.json``
    """

    run_dir: Path
    config: dict
    data_dir: Path | None
    manifest: dict | None
    split: dict | None
    label_names: list[str]
    metrics: dict | None = None


@dataclass
class Modality:
    """A kind of prepared sample (``manifest["modality"]``) and what the core needs to know of it.

    Every hook may also be given as a ``"package.module:function"`` string, imported when first
    used (declaring a modality stays cheap); :meth:`hook` returns the callable.

    Attributes
    ----------
    name : str
        The manifest's ``modality`` value (``scalogram``, ``waveform``, ``features``, ...).
    description : str
        One line for ``ephys models`` and the docs.
    sample_noun : str
        What one sample is called in messages and reports ("cell", "snippet", "segment"); a
        dataset's ``manifest["sample_noun"]`` overrides it (:func:`ephys.pipelines.core.nouns.nouns`).
    group_noun : str
        What one group (the unit a split keeps on one side) is called ("participant", "cell",
        "channel", "recording"); ``manifest["group_noun"]`` overrides it; empty: "group".
    examples_title : str
        Title of the report's examples section.
    examples : callable or None
        ``examples(ctx: ReportContext) -> Figure | str | None``: the report's example figure, or a
        one-line note saying why there is none.
    explain : callable or None
        ``explain(run_dir: Path, config: dict, data_dir: Path, manifest: dict, **options) -> Path``
        writes ``RUN/explain/`` (figures + ``summary.json``) and returns that folder. ``options``
        are those of ``ephys explain`` (``n_examples``, ``method``, ``target``, ``batch_size``,
        ``seed``, ``figures``, ``log``); a hook takes the ones it uses and ``**_`` for the rest.
    explanation : callable or None
        ``explanation(ctx) -> Section | None``: the report's explanation section, from
        ``RUN/explain/``.
    sections : callable or None
        ``sections(ctx) -> list[Section]``: extra report sections (after the metrics).
    extra_metrics : callable or None
        ``extra_metrics(ds, test_indices, proba, y_true) -> dict``: merged into ``metrics.json``.
    prepare_for_predict : callable or None
        ``prepare_for_predict(input_path: Path, manifest: dict, out_dir: Path, log) -> Path``:
        prepare raw recordings for ``ephys predict`` with exactly the parameters recorded in
        ``manifest`` (the run's training dataset), into ``out_dir``; returns the dataset folder.
        Raises :class:`EphysError` for input it cannot prepare.
    predict_batch_size : int
        Samples per ``model.predict`` call in evaluate / predict (small snippets: large batches).
    match_keys : tuple[str, ...]
        Top-level manifest keys that must be equal for ``ephys predict`` to accept a prepared
        dataset (besides ``modality``, ``sample_shape`` and the shared ``parameters``).
    cv : str
        Default cross-validation scheme of ``ephys train --fold`` / ``make slurm-all``
        (:mod:`ephys.pipelines.core.crossval`): ``auto``, ``lopo``, ``grouped`` or ``blocked``.
    sample_stats : callable or None
        ``sample_stats(manifest: dict, indices: list[int]) -> dict[str, array]``: per-sample
        statistics from the samples' manifest entries (e.g. protocol length in s, sampling rate in
        Hz) recorded as part of a run's training range and checked by ``ephys predict``
        (:mod:`ephys.pipelines.core.ranges`), beside the core's amplitude and noise level.
    """

    name: str
    description: str = ""
    sample_noun: str = "sample"
    group_noun: str = ""
    examples_title: str = "Examples"
    examples: Callable[[ReportContext], Any] | str | None = None
    explain: Callable[..., Path] | str | None = None
    explanation: Callable[[ReportContext], Section | None] | str | None = None
    sections: Callable[[ReportContext], list[Section]] | str | None = None
    extra_metrics: Callable[..., dict] | str | None = None
    prepare_for_predict: Callable[..., Path] | str | None = None
    predict_batch_size: int = 8
    match_keys: tuple[str, ...] = ()
    cv: str = "auto"
    sample_stats: Callable[..., dict] | str | None = None

    def hook(self, name: str) -> Callable[..., Any] | None:
        """The hook ``name`` as a callable (a ``"package.module:function"`` string is imported
        now), or None when the modality does not provide it."""
        return resolve(getattr(self, name))


def resolve(target) -> Callable[..., Any] | None:
    """``target`` itself when callable or None; a ``"package.module:function"`` string imported."""
    if target is None or callable(target):
        return target
    mod, _, fn = str(target).partition(":")
    return getattr(importlib.import_module(mod), fn)


@dataclass
class Recipe:
    """An ``ephys reproduce NAME`` recipe: a published comparison end to end.

    Attributes
    ----------
    name : str
    description : str
        One paragraph for ``--help``.
    run : callable
        ``run(data: Path, out: Path, *, seed: int, log, **options) -> dict`` (the metrics); it
        receives only the ``ephys reproduce`` options its signature names.
    default_data : str | None
        Input used when ``--data`` is not given (relative to the working directory).
    summary : callable or None
        ``summary(result: dict) -> list[str]``: lines printed after the run.
    """

    name: str
    description: str
    run: Callable[..., dict]
    default_data: str | None = None
    summary: Callable[[dict], list[str]] | None = None


@dataclass
class CommandContext:
    """What a :class:`Command`'s ``run`` gets from the command line besides its parameters.

    Attributes
    ----------
    info : a progress message (silent with ``--quiet``).
    notice : a message shown even with ``--quiet``.
    progress : ``progress(description, total=None)``, a context manager yielding
        ``advance(n=1, text=None, total=None)`` (a bar on a terminal, plain lines in a batch log).
    import_backend : imports Keras and its backend with their start-up chatter hidden (call it
        before loading a model).
    data_root, runs_root : the data root (``$EPHYS_DATA``) and the runs root (``$EPHYS_RUNS``).
    echo : a result line on stdout (what scripts read).
    """

    info: Callable[[str], None]
    notice: Callable[[str], None]
    progress: Callable[..., Any]
    import_backend: Callable[[], None]
    data_root: Path
    runs_root: Path
    echo: Callable[[str], None] = print


@dataclass
class Command:
    """An extra command a pipeline brings (``ephys spikes cluster``, ``ephys events detect``, ...).

    Attributes
    ----------
    name : the verb.
    summary : first line of ``--help``.
    run : ``run(params, ctx: CommandContext) -> str | Path | None`` (the result path printed on
        stdout), or ``"package.module:function"``.
    params : a dataclass of :func:`ephys.pipelines.core.params.param` fields: its positional
        arguments (``argument=True``) and options, the single source of the CLI and the docs.
    description : the rest of ``--help`` (plain text).
    group : ``""``: mounted under the pipeline (``ephys PIPELINE NAME``); ``"fetch"``: ``ephys fetch NAME``.
    aliases : old spellings at the top level (``ephys NAME``) kept hidden for one release; using
        one prints a one-line deprecation notice.
    """

    name: str
    summary: str
    run: Callable[..., Any] | str
    params: type
    description: str = ""
    group: str = ""
    aliases: tuple[str, ...] = ()

    def hook(self, name: str) -> Callable[..., Any] | None:
        return resolve(getattr(self, name))


@dataclass
class ClusterSteps:
    """How ``make slurm-all PIPELINE=name`` runs a pipeline: the one DAG shape of ``slurm/submit.sh``
    (fetch -> prepare -> train array -> aggregate / report), filled from these fields.

    Attributes
    ----------
    prepare : str
        The ``ephys prepare <verb> INPUT DATASET`` verb.
    models : tuple[str, ...]
        Default ``EPHYS_MODELS``.
    folds : bool
        True: the train array runs one task per dataset x model x cross-validation fold
        (:mod:`ephys.pipelines.core.crossval`, scheme from the dataset), then one aggregate job per
        model. False: one task per model on the dataset's own split, then evaluate / explain / report.
    shards : bool
        ``prepare`` is an array over ``--shard K/N`` (N from ``ephys prepare tasks``), then one job
        collects the manifest.
    fetch_size : int or None
        ``--size`` of ``ephys fetch synthetic --pipeline NAME`` when the input does not exist (None:
        no simulated default; the user must point ``EPHYS_INPUT`` at recordings).
    train_args : str
        Default ``EPHYS_TRAIN_ARGS`` (e.g. the published training settings of its models).
    prepare_args : str
        Default ``EPHYS_PREPARE_ARGS``.
    """

    prepare: str
    models: tuple[str, ...]
    folds: bool = True
    shards: bool = False
    fetch_size: int | None = None
    train_args: str = ""
    prepare_args: str = ""


@dataclass
class Pipeline:
    """One pipeline's declaration (see the module docstring).

    Attributes
    ----------
    name : str
        The name users type (``sts``, ``spikes``, ``mer``, ...).
    description : str
    modalities : tuple[Modality, ...]
        Modalities it introduces (a modality another pipeline already registered may be listed
        again as the same object; a different object of the same name is an error).
    models : tuple[ModelSpec, ...]
        Models it declares (:class:`ephys.pipelines.core.models.ModelSpec`; builders may be
        ``"module:function"`` strings so that declaring them imports no Keras). The model
        registry picks them up when it is first read; the same spec object listed by two
        pipelines is registered once.
    recipes : tuple[Recipe, ...]
    synthetic : callable or None
        ``synthetic(out: Path, *, seed: int, size: int | None, progress) -> Path``: write the
        pipeline's simulated default dataset (``ephys fetch synthetic --pipeline NAME``).
    synthetic_size : str
        What ``--size`` counts for it ("cells per class", "patients", ...).
    synthetic_params : dataclass or None
        Extra settings of its simulated default (``ephys fetch synthetic --pipeline NAME`` options,
        passed to ``synthetic`` as keywords).
    cluster : ClusterSteps or None
        Its steps in ``make slurm-all PIPELINE=name`` (None: not runnable there).
    prepare : tuple[PrepareStep, ...]
        Its ``ephys prepare NAME`` steps (:class:`ephys.pipelines.core.prepare.PrepareStep`); the
        first is its main one (``make slurm-all``, the default dataset of ``ephys train``).
    commands : tuple[Command, ...]
        Its extra commands.
    default : bool
        The pipeline of the front door: ``ephys fetch synthetic`` and ``ephys train`` without a
        dataset use it.
    published : tuple[PublishedModel, ...]
        Trained models other tools published that apply to its data
        (:class:`ephys.pipelines.core.published.PublishedModel`: ``ephys fetch weights NAME``,
        ``ephys predict NAME INPUT``, ``ephys models --published``).
    """

    name: str
    description: str
    modalities: tuple[Modality, ...] = ()
    models: tuple[Any, ...] = ()
    recipes: tuple[Recipe, ...] = ()
    synthetic: Callable[..., Path] | None = None
    synthetic_size: str = ""
    cluster: ClusterSteps | None = None
    synthetic_params: type | None = None
    prepare: tuple[Any, ...] = ()
    commands: tuple[Command, ...] = ()
    default: bool = False
    published: tuple[Any, ...] = ()

    def default_dataset(self) -> str | None:
        """Where its main prepare step writes by default, relative to the data root."""
        return self.prepare[0].out_default if self.prepare else None


_MODALITIES: dict[str, Modality] = {}
_PIPELINES: dict[str, Pipeline] = {}
_RECIPES: dict[str, tuple[Recipe, str]] = {}
_STEPS: dict[str, tuple[Any, str]] = {}
_PUBLISHED: dict[str, tuple[Any, str]] = {}
_LOADED = [False]


def register_modality(m: Modality, replace: bool = False) -> Modality:
    """Add a modality. Registering the same object twice is a no-op.

    Raises
    ------
    ValueError
        Another modality object of the same name is registered (and ``replace`` is false).
    """
    old = _MODALITIES.get(m.name)
    if old is not None and old is not m and not replace:
        raise ValueError(f"modality {m.name!r} is already registered")
    _MODALITIES[m.name] = m
    return m


def register_pipeline(p: Pipeline, replace: bool = False) -> Pipeline:
    """Add a pipeline with its modalities and recipes.

    Raises
    ------
    ValueError
        A pipeline or recipe of the same name exists (and ``replace`` is false).
    """
    if p.name in _PIPELINES and _PIPELINES[p.name] is not p and not replace:
        raise ValueError(f"pipeline {p.name!r} is already registered")
    for m in p.modalities:
        register_modality(m, replace=replace)
    for r in p.recipes:
        if r.name in _RECIPES and _RECIPES[r.name][1] != p.name and not replace:
            raise ValueError(f"recipe {r.name!r} is already registered by {_RECIPES[r.name][1]}")
        _RECIPES[r.name] = (r, p.name)
    for s in p.prepare:
        other = _STEPS.get(s.name)
        if other is not None and other[1] != p.name and not replace:
            raise ValueError(f"prepare step {s.name!r} is already registered by {other[1]}")
        _STEPS[s.name] = (s, p.name)
    for m in p.published:
        other = _PUBLISHED.get(m.name)
        if other is not None and other[1] != p.name and not replace:
            raise ValueError(f"published model {m.name!r} is already registered by {other[1]}")
        _PUBLISHED[m.name] = (m, p.name)
    _PIPELINES[p.name] = p
    return p


def load_pipelines() -> None:
    """Import every pipeline of ``ephys.pipelines.PIPELINES`` and of ``$EPHYS_PLUGINS`` (once).

    Raises
    ------
    EphysError
        A module named in ``$EPHYS_PLUGINS`` cannot be imported.
    """
    if _LOADED[0]:
        return
    _LOADED[0] = True
    from .. import PIPELINES

    for name in PIPELINES:
        importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.{name}")
    for mod in filter(None, (s.strip() for s in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise EphysError(f"cannot import plug-in module {mod!r} ({exc})", PLUGINS_ENV) from None


def modality(name: str, where: str | Path | None = None) -> Modality:
    """The registered modality ``name``.

    Raises
    ------
    EphysError
        No pipeline registers it (the message lists those known).
    """
    load_pipelines()
    m = _MODALITIES.get(str(name))
    if m is None:
        known = ", ".join(sorted(_MODALITIES)) or "none"
        raise EphysError(f"unknown data modality {name!r} (known: {known})", where)
    return m


def modalities() -> dict[str, Modality]:
    """All registered modalities by name."""
    load_pipelines()
    return dict(_MODALITIES)


def pipeline(name: str) -> Pipeline:
    """The registered pipeline ``name``.

    Raises
    ------
    EphysError
        Unknown name (the message lists those known).
    """
    load_pipelines()
    if name not in _PIPELINES:
        raise EphysError(f"unknown pipeline {name!r}; known: {', '.join(sorted(_PIPELINES))}")
    return _PIPELINES[name]


def pipelines() -> dict[str, Pipeline]:
    """All registered pipelines by name, in registration order."""
    load_pipelines()
    return dict(_PIPELINES)


def recipe(name: str) -> Recipe:
    """The ``reproduce`` recipe ``name``.

    Raises
    ------
    EphysError
        Unknown name (the message lists those known).
    """
    load_pipelines()
    if name not in _RECIPES:
        raise EphysError(f"unknown comparison {name!r}; known: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name][0]


def recipes() -> dict[str, Recipe]:
    """All ``reproduce`` recipes by name."""
    load_pipelines()
    return {k: v[0] for k, v in sorted(_RECIPES.items())}


def default_pipeline() -> Pipeline:
    """The pipeline that declares ``default=True`` (else the first registered).

    Raises
    ------
    EphysError
        No pipeline is registered.
    """
    ps = pipelines()
    for p in ps.values():
        if p.default:
            return p
    if not ps:
        raise EphysError("no pipeline is registered")
    return next(iter(ps.values()))


def prepare_steps() -> dict[str, tuple[Any, str]]:
    """Every prepare step by name: ``{name: (PrepareStep, pipeline name)}``, in registration order."""
    load_pipelines()
    return dict(_STEPS)


def prepare_step(name: str) -> tuple[Any, str]:
    """The prepare step ``name`` and its pipeline's name.

    Raises
    ------
    EphysError
        Unknown step (the message lists those known).
    """
    steps = prepare_steps()
    if name not in steps:
        raise EphysError(f"unknown prepare step {name!r}; known: {', '.join(steps)}")
    return steps[name]


def published_models() -> dict[str, tuple[Any, str]]:
    """Every declared published model by name: ``{name: (PublishedModel, pipeline name)}``."""
    load_pipelines()
    return dict(_PUBLISHED)


def published_model(name: str) -> tuple[Any, str]:
    """The published model ``name`` and its pipeline's name.

    Raises
    ------
    EphysError
        Unknown name (the message lists those known).
    """
    models = published_models()
    if name not in models:
        raise EphysError(f"unknown published model {name!r}; known: {', '.join(models) or 'none'}")
    return models[name]
