"""``ephys prepare NAME``: the one driver behind every pipeline's prepare step.

A pipeline declares a :class:`PrepareStep`: its parameters (a dataclass of
:func:`ephys.pipelines.core.params.param` fields: the CLI options, the manifest's ``parameters`` and
the docs), and three hooks:

``discover(input, params, labels_csv, options) -> (items, skipped[, info])``
    what there is to prepare (cells, recordings, channel sets), cheaply, before anything is
    written; ``skipped`` lists ``{"path", "reason"}`` for input it cannot use; ``info`` (a dict,
    optional) reaches ``collect`` as ``ctx.discovered``.
``process(item, params, out_dir, options) -> result``
    the work for ONE item (the only heavy part), run in-process or on dask workers by
    :func:`ephys.pipelines.core.runner.run_items`, so every step gets ``--workers``,
    ``--scheduler``, ``--slurm-*`` and ``--shard K/N``. With ``cache`` (default) the core keeps each
    result under ``OUT/.items/`` (one file per item, written atomically), so a killed run resumes
    and SLURM array tasks (``--shard``) prepare their part; a step whose ``process`` writes its own
    per-item files (and skips finished ones) says ``cache=False``.
``collect(out, results, params, ctx) -> Path``
    writes the dataset from the results (in discovery order) and returns its main file
    (``manifest.json``), written last.

The driver (:func:`run_prepare`) checks the parameters and the output folder before anything is
read, refuses a folder that holds another kind of output or a dataset made with other parameters
(``--force`` replaces it), records ``prepared_by`` (pipeline and step), ``parameters`` and their
``key`` in the main file, and leaves nothing behind when the input is refused. A dataset's
``prepared_by`` lets ``ephys predict`` prepare raw input exactly as the run's training data was
(:func:`prepare_like`).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import params as P
from .params import param
from .atomic import atomic_path, check_writable_dir, remove_stale_parts, write_json
from .errors import EphysError
from .runner import SlurmWorkers, check_scheduler, make_client, run_items

__all__ = ["PrepareStep", "PrepareContext", "PrepareOutcome", "run_prepare", "prepare_like", "parse_shard",
           "count_tasks", "ITEMS_DIR", "ShardOptions", "PrepareRunOptions"]

#: where the core keeps per-item results of a step with ``cache=True`` until the dataset is written
ITEMS_DIR = ".items"


@dataclass
class PrepareStep:
    """One ``ephys prepare NAME`` step of a pipeline (see the module docstring).

    Attributes
    ----------
    name : the verb (``ephys prepare NAME``).
    summary : first line of ``--help`` (what it makes from what).
    description : the rest of ``--help`` and the docs page (plain text).
    discover, process, collect : the hooks (callables or ``"package.module:function"`` strings).
    params : the parameters dataclass (recorded in the manifest; part of the dataset's identity).
    options : a dataclass of run options that do not change the dataset (e.g. where to read from,
        an extra copy of the arrays); not recorded in ``parameters``.
    input_help : help of INPUT. ``input_default`` : INPUT when not given, relative to the data root
        (None: INPUT is required). ``input_text`` : INPUT may be a URL or an id, not only a path.
    out_default : OUT when not given, relative to the data root.
    labels : help of ``--labels`` ('' = the step reads no labels CSV). The default is
        ``INPUT/labels.csv`` when that file exists.
    cache : the core keeps each item's result under ``OUT/.items/`` (see the module docstring).
    noun : what one item is, for progress lines ("recording", "cell", "channel").
    main_file : the dataset's main file that ``collect`` returns.
    item_key : ``item_key(item) -> str`` naming an item (default: its ``id``).
    modalities : the modalities of the datasets it writes (docs; datasets from before
        ``prepared_by`` was recorded are matched to their step by it).
    partial_keys : for ``cache=False`` steps, ``partial_keys(out) -> set`` of the parameter keys of
        the per-item files an unfinished run left (another key: the dataset is refused unless ``--force``).
    predict_dataset : ``predict_dataset(out, trained_manifest) -> Path``: for a step that writes
        several datasets into OUT, the one that matches a run's training dataset (``ephys predict``).
    predict_options : its ``options`` describe the input (its unit, its sampling rate) rather than
        how to run: ``ephys predict`` offers them for raw input and hands them to this step.
    predictions : ``predictions(ctx: PredictionContext) -> list[Section] | None``
        (:mod:`ephys.pipelines.core.predictions`): writes ``ephys predict``'s ``predictions.csv`` for
        datasets of this step (e.g. one row per recording) and its extra files; returns extra report
        sections. Without it the core writes one row per sample.
    sections : ``sections(ctx: ReportContext) -> list[Section]``: extra sections of the report of a
        run trained on a dataset of this step (after the modality's).
    """

    name: str
    summary: str
    discover: Callable[..., Any] | str
    process: Callable[..., Any] | str
    collect: Callable[..., Any] | str
    params: type | None = None
    options: type | None = None
    description: str = ""
    input_help: str = "Recordings to prepare."
    input_default: str | None = None
    input_text: bool = False
    out_default: str = ""
    labels: str = ""
    cache: bool = True
    noun: str = "item"
    main_file: str = "manifest.json"
    item_key: Callable[[Any], str] | str | None = None
    modalities: tuple[str, ...] = ()
    partial_keys: Callable[[Path], set] | str | None = None
    predict_dataset: Callable[[Path, dict], Path] | str | None = None
    predict_options: bool = False
    predictions: Callable[..., Any] | str | None = None
    sections: Callable[..., Any] | str | None = None

    def hook(self, name: str) -> Callable[..., Any] | None:
        from .registry import resolve

        return resolve(getattr(self, name))

    def key_of(self, item) -> str:
        """The item's key: ``item_key(item)``, else its ``id`` / ``cell_id`` attribute or key, else ``str``."""
        fn = self.hook("item_key")
        if fn is not None:
            return str(fn(item))
        for attr in ("id", "cell_id", "name"):
            v = item.get(attr) if isinstance(item, dict) else getattr(item, attr, None)
            if v is not None:
                return str(v)
        return str(item)


@dataclass
class PrepareRunOptions:
    """The options every ``ephys prepare`` step has: how it runs, not what it makes."""

    labels: Optional[Path] = param(None, "CSV with columns path,label (path relative to the CSV; 'unknown' = "
                                   "unlabelled).", default_text="INPUT/labels.csv if present")
    force: bool = param(False, "Replace a dataset in OUT made by another step, from other input or with other "
                        "parameters (refused otherwise; runs trained on it will then refuse it).")
    shard: Optional[str] = param(None, "K/N: prepare only every N-th item from the K-th (0-based; one SLURM array "
                                 "task, e.g. $SLURM_ARRAY_TASK_ID/N); writes no dataset: run once more without "
                                 "--shard to write it (finished items are reused).")
    workers: Optional[int] = param(None, "dask worker processes of the local cluster, or SLURM worker jobs.",
                                   min=1, default_text="all cores")
    scheduler: str = param("auto", "auto (in-process unless a dask LocalCluster saves more time than its ~8 s "
                           "start-up), local (always a LocalCluster), synchronous (one process), slurm "
                           "(dask-jobqueue: --workers sbatch jobs), or a scheduler address tcp://HOST:PORT.")
    slurm_queue: str = param("", "--scheduler slurm: partition of the worker jobs.", envvar="EPHYS_PARTITION",
                             default_text="the cluster's")
    slurm_cores: int = param(1, "--scheduler slurm: cores per worker job.", min=1)
    slurm_memory: str = param("4GB", "--scheduler slurm: memory per worker job.")
    slurm_walltime: str = param("01:00:00", "--scheduler slurm: walltime per worker job (HH:MM:SS).")
    slurm_extra: tuple[str, ...] = param((), "--scheduler slurm: an extra #SBATCH directive, e.g. "
                                         "--slurm-extra=--account=lab (repeatable).")

    def run_options(self, out: Path) -> "ShardOptions":
        """These options as :class:`ShardOptions` (SLURM worker logs under ``OUT/dask-logs``)."""
        return ShardOptions(scheduler=self.scheduler, workers=self.workers, shard=parse_shard(self.shard),
                            slurm=SlurmWorkers(queue=self.slurm_queue, cores=self.slurm_cores,
                                               memory=self.slurm_memory, walltime=self.slurm_walltime,
                                               extra=tuple(self.slurm_extra), log_directory=str(out / "dask-logs")))


@dataclass
class ShardOptions:
    """How the per-item work runs: ``scheduler`` (:data:`ephys.pipelines.core.runner.SCHEDULERS`
    or an address), ``workers``, ``slurm`` (worker-job settings), ``shard`` ``(k, n)``."""

    scheduler: str = "auto"
    workers: int | None = None
    slurm: SlurmWorkers | None = None
    shard: tuple[int, int] | None = None


@dataclass
class PrepareContext:
    """What ``collect`` gets besides the results.

    Attributes
    ----------
    input : INPUT as given (a path, or a URL / id for steps with ``input_text``).
    labels_csv : the labels CSV used (or None).
    options : the step's run options (dataclass instance or None).
    skipped : ``{"path", "reason"}`` for every input that could not be used (discovery and items).
    scheduler : the scheduler the items ran on.
    log : progress messages (silent with ``--quiet``).
    pipeline, step : who prepares.
    notice : warnings worth a line even with ``--quiet``.
    items : the discovered items, in the order of ``results``.
    discovered : what ``discover`` returned besides items and skipped (a dict; empty when nothing).
    stamp : ``{"prepared_by", "parameters"}`` as the core records them in the main file; a step that
        writes several datasets (one per unit, ...) puts it in each of their manifests too, so that
        ``ephys predict`` can prepare raw input for a run trained on any of them.
    """

    input: Any
    labels_csv: Path | None
    options: Any
    skipped: list[dict]
    scheduler: str
    log: Callable[[str], None]
    pipeline: str
    step: str
    notice: Callable[[str], None] = print
    items: list = field(default_factory=list)
    discovered: dict = field(default_factory=dict)
    stamp: dict = field(default_factory=dict)


@dataclass
class PrepareOutcome:
    """What :func:`run_prepare` did: the main file written (None for a ``--shard`` run), items
    prepared (``n_ok``, of which ``n_resumed`` were done before) and skipped input with reasons."""

    main_file: Path | None
    n_ok: int
    n_resumed: int
    skipped: list[dict] = field(default_factory=list)

    @property
    def manifest_path(self) -> Path | None:
        """The main file (the name the scalogram step's result used)."""
        return self.main_file


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(k, n)``; None stays None.

    Raises
    ------
    EphysError
        Not ``K/N`` with integers ``0 <= K < N`` (naming ``--shard``).
    """
    if text is None:
        return None
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise EphysError(f"--shard must look like K/N (e.g. 3/10), not {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise EphysError(f"--shard {k}/{n}: need 0 <= K < N")
    return k, n


def _read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _items_key(folder: Path) -> set[str]:
    keys = set()
    for f in (folder / ITEMS_DIR).glob("*.pkl"):
        try:
            with open(f, "rb") as fh:
                keys.add(str(pickle.load(fh).get("params_key")))
        except Exception:  # an unreadable cache file is recomputed, not trusted
            continue
    return keys


#: top-level keys by which a JSON file is recognised as a dataset's main file
_DATASET_KEYS = ("modality", "prepared_by", "units", "samples")


def _old_dataset(out: Path, step: PrepareStep) -> dict | None:
    """The main file's content of an existing dataset in ``out`` (any kind), else None."""
    for name in dict.fromkeys((step.main_file, "manifest.json", "index.json")):
        m = _read_json(out / name)
        if m is not None and any(k in m for k in _DATASET_KEYS):
            return m
    return None


def check_existing(out: Path, pipeline: str, step: PrepareStep, record: dict, key: str, inputs: dict,
                   force: bool = False, n_runs_using: int = 0, log: Callable[[str], None] = print) -> None:
    """Refuse to prepare into a folder holding another kind of output, or this step's dataset made
    from other parameters or other input, unless ``force`` (then the old dataset is removed).

    Raises
    ------
    EphysError
        Naming what differs (the step, each parameter old -> new, the input) and how many trained
        runs used the old dataset; or ``out`` holds files that are not an ephys dataset.
    """
    if not out.exists() or not out.is_dir() or not any(out.iterdir()):
        return
    from .outputs import read_record

    rec = read_record(out)
    if rec is not None and not str(rec.get("kind", "")).startswith("prepare "):
        if not force:
            raise EphysError(f"holds the output of `ephys {rec.get('kind')}`; pass --force to replace it, or choose "
                             "another OUT", out)
        log(f"replacing {out} (it held the output of `ephys {rec.get('kind')}`)")
        _remove_dataset(out)
        return
    old = _old_dataset(out, step)
    what, diffs = "", []
    if old is not None:
        by = old.get("prepared_by") or {}
        if by and (by.get("pipeline"), by.get("step")) != (pipeline, step.name):
            what = f"holds a {old.get('modality') or 'dataset'} dataset made by `prepare {by.get('step')}`"
        elif not by and old.get("modality") and step.name != _legacy_step(old):
            what = f"holds a {old.get('modality')} dataset made by another prepare step"
        else:
            was = old.get("parameters") or {}
            if was.get("key") != key:
                what = "dataset was prepared with other parameters"
                both = [k for k in sorted(set(was) & set(record)) if k != "key" and was[k] != record[k]]
                diffs = [f"{k} {was.get(k)!r} -> {record.get(k)!r}" for k in both or sorted(set(was) | set(record))
                         if k != "key" and was.get(k) != record.get(k)] or ["parameter key"]
            elif by.get("input") is not None and by.get("input") != inputs.get("input"):
                what = "dataset was prepared from other input"
                diffs = [f"{by.get('input')} -> {inputs.get('input')}"]
    else:
        keys = _partial_keys(out, step)
        if keys - {key}:
            what = "dataset was prepared with other parameters"
            diffs = ["items of an unfinished run were prepared with other parameters (keys "
                     + ", ".join(sorted(map(str, keys - {key}))) + ")"]
        elif not keys and not _resumable(out):
            raise EphysError("exists and holds files that are not an ephys dataset; choose an empty or new OUT", out)
    if not what:
        return
    used = (f"; {n_runs_using} trained run{'s' if n_runs_using != 1 else ''} used it" if n_runs_using else
            "; no trained run under the runs folder used it")
    detail = f" ({'; '.join(diffs[:6])})" if diffs else ""
    if not force:
        raise EphysError(f"{what}{detail}{used}; pass --force to replace it, or choose another OUT", out)
    log(f"replacing {out} ({what}{detail}){used}")
    _remove_dataset(out)


def _partial_keys(out: Path, step: PrepareStep) -> set[str]:
    """Parameter keys of the per-item results an unfinished run left in ``out``."""
    from .registry import resolve

    keys = _items_key(out)
    hook = resolve(step.partial_keys)
    if hook is not None:
        keys |= set(hook(out))
    return keys


def _legacy_step(manifest: dict) -> str | None:
    """The step that wrote a manifest from before ``prepared_by`` was recorded (None: unknown)."""
    from .registry import pipelines

    mod = manifest.get("modality")
    for p in pipelines().values():
        for s in p.prepare:
            if mod in s.modalities and (manifest.get("pipeline") in (None, p.name)):
                return s.name
    return None


def _resumable(out: Path) -> bool:
    """A folder of a killed run of this driver: only hidden part files, ``samples/`` or ``.items/``."""
    return all(p.name.startswith(".") or p.name in ("samples", "dask-logs") for p in out.iterdir())


def _remove_dataset(out: Path) -> None:
    for p in out.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _process_one(item, process, params, out: str, options, key: str, pkey: str, cache: bool):
    """Run on a worker: the step's ``process`` for one item, through the ``.items/`` cache."""
    from .registry import resolve

    if cache:
        path = Path(out) / ITEMS_DIR / f"{key}.pkl"
        if path.is_file():
            try:
                with open(path, "rb") as fh:
                    saved = pickle.load(fh)
                if saved.get("params_key") == pkey:
                    return {"_resumed": True, "_key": key, "result": saved["result"]}
            except Exception:
                pass
    result = resolve(process)(item, params, out, options)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".pkl") as tmp:
            with open(tmp, "wb") as fh:
                pickle.dump({"params_key": pkey, "result": result}, fh, protocol=pickle.HIGHEST_PROTOCOL)
    reused = bool(result.get("resumed")) if isinstance(result, dict) else False  # a step's own resume
    return {"_resumed": reused, "_key": key, "result": result}


def _input_record(input_path) -> str:
    s = str(input_path)
    if "://" in s:
        return s
    try:
        return str(Path(s).resolve())
    except OSError:
        return s


def run_prepare(pipeline: str, step: PrepareStep, input_path, out: str | Path, params=None, *,
                options=None, labels_csv: str | Path | None = None, force: bool = False,
                run: ShardOptions | None = None, n_runs_using: int = 0,
                progress: Callable[[int, int, dict], None] | None = None,
                log: Callable[[str], None] = print, notice: Callable[[str], None] | None = None) -> PrepareOutcome:
    """Prepare ``input_path`` into ``out`` with ``step`` (see the module docstring).

    Parameters
    ----------
    pipeline : the declaring pipeline's name (recorded in ``prepared_by``).
    step : the :class:`PrepareStep`.
    input_path, out : INPUT and OUT.
    params : an instance of ``step.params`` (default: its defaults); checked here.
    options : an instance of ``step.options`` (default: its defaults).
    labels_csv : a labels CSV for steps that read one.
    force : replace a dataset made with other parameters / by another step.
    run : scheduler, workers, SLURM worker settings, shard.
    n_runs_using : trained runs that used the old dataset (said when it is replaced).
    progress : ``progress(done, total, {"key", "resumed", "result"})`` after each item.
    log, notice : messages (``notice``: warnings shown even with ``--quiet``).

    Returns
    -------
    PrepareOutcome

    Raises
    ------
    EphysError
        Bad parameters or input (nothing is written), an output folder that holds another dataset
        (without ``force``), an unwritable OUT, another run writing OUT, or no item could be prepared.
    """
    run = run or ShardOptions()
    params = P.check(params if params is not None else step.params()) if step.params is not None else None
    options = options if options is not None else (step.options() if step.options is not None else None)
    if options is not None:
        P.check(options)
    scheduler = check_scheduler(run.scheduler)
    out = Path(out)
    check_writable_dir(out, "dataset folder")
    record = P.as_record(params) if params is not None else {}
    pkey = P.params_key(params) if params is not None else "none"
    inputs = {"input": _input_record(input_path)}
    from .outputs import FolderLock

    with FolderLock(out, f"ephys prepare {step.name}", share=pkey if run.shard is not None else None):
        return _prepare_locked(pipeline, step, input_path, out, params, options, labels_csv, force, run, n_runs_using,
                               progress, log, notice, scheduler, record, pkey, inputs)


def _prepare_locked(pipeline, step, input_path, out: Path, params, options, labels_csv, force, run, n_runs_using,
                    progress, log, notice, scheduler, record, pkey, inputs) -> PrepareOutcome:
    """:func:`run_prepare` once OUT is locked against other writers."""
    from .registry import resolve

    check_existing(out, pipeline, step, record, pkey, inputs, force, n_runs_using, log)
    found = resolve(step.discover)(input_path, params, labels_csv, options)
    items, skipped = found[0], [dict(s) for s in found[1]]
    discovered = dict(found[2]) if len(found) > 2 else {}
    if run.shard is not None:
        k, n = run.shard
        items = items[k::n]
    created = not out.exists()
    started = time.time()
    ok = False
    try:
        out.mkdir(parents=True, exist_ok=True)
        for folder in [out, *(d for d in out.iterdir() if d.is_dir())]:  # a killed run's temp files
            remove_stale_parts(folder, started)
        keys = [step.key_of(it) for it in items]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise EphysError(f"two inputs have the same name {sorted(dup)[0]!r}; rename one", input_path)
        order = {k: i for i, k in enumerate(keys)}
        jobs = list(zip(items, keys))

        shown = (lambda d, t, r: progress(d, t, {"key": r["_key"], "resumed": r["_resumed"],
                                                 "result": r["result"]})) if progress else None
        res = run_items(_Job(step.process, params, str(out), options, pkey, step.cache), jobs, (), scheduler,
                        run.workers, lambda sch, w: make_client(sch, w, run.slurm), shown,
                        key=lambda j: j[1])
        res.sort(key=lambda r: order.get(r["_key"], 0))
        n_resumed = sum(1 for r in res if r["_resumed"])
        results = [r["result"] for r in res]
        if run.shard is not None:
            ok = True
            return PrepareOutcome(None, len(results), n_resumed, skipped)
        stamp = {"prepared_by": {"pipeline": pipeline, "step": step.name, **inputs},
                 "parameters": {**record, "key": pkey}}
        ctx = PrepareContext(input_path, Path(labels_csv) if labels_csv else None, options, skipped, scheduler,
                             log, pipeline, step.name, notice or log, items=items, discovered=discovered,
                             stamp=stamp)
        main = Path(resolve(step.collect)(out, results, params, ctx))
        _stamp(main, stamp)
        if step.cache and (out / ITEMS_DIR).is_dir():
            shutil.rmtree(out / ITEMS_DIR, ignore_errors=True)
        ok = True
        n_ok = sum(1 for r in results if not (isinstance(r, dict) and r.get("status") not in (None, "ok")))
        return PrepareOutcome(main, n_ok, n_resumed, ctx.skipped)
    finally:
        if not ok and created:
            import sys

            if not isinstance(sys.exc_info()[1], KeyboardInterrupt):  # a refused input leaves nothing
                shutil.rmtree(out, ignore_errors=True)
            elif out.is_dir() and not any(p for p in out.iterdir() if p.name != "dask-logs"):  # interrupted before any item
                shutil.rmtree(out, ignore_errors=True)


class _Job:
    """The picklable per-item callable handed to the runner (dask ships it to workers)."""

    def __init__(self, process, params, out, options, pkey, cache):
        self.process, self.params, self.out, self.options, self.pkey, self.cache = \
            process, params, out, options, pkey, cache

    def __call__(self, job):
        item, key = job
        return _process_one(item, self.process, self.params, self.out, self.options, key, self.pkey, self.cache)


def _stamp(main: Path, stamp: dict) -> None:
    """Record ``prepared_by`` and (when the step did not) ``parameters`` in the main file."""
    m = _read_json(main)
    if m is None:
        return
    m["prepared_by"] = stamp["prepared_by"]
    if not isinstance(m.get("parameters"), dict) or not m["parameters"]:
        m["parameters"] = dict(stamp["parameters"])
    else:
        m["parameters"].setdefault("key", stamp["parameters"]["key"])
    write_json(main, m)


def count_tasks(step: PrepareStep, input_path, params=None, labels_csv=None, options=None,
                items_per_task: int = 25) -> int:
    """How many SLURM array tasks ``--shard K/N`` needs for ``input_path``: ceil(items / per task).

    Raises
    ------
    EphysError
        ``items_per_task`` < 1, or the input is refused by the step's ``discover``.
    """
    from .registry import resolve

    if items_per_task < 1:
        raise EphysError(f"--items-per-task must be >= 1, not {items_per_task}")
    params = P.check(params if params is not None else step.params()) if step.params is not None else None
    options = options if options is not None else (step.options() if step.options is not None else None)
    items = resolve(step.discover)(input_path, params, labels_csv, options)[0]
    return max(1, -(-len(items) // items_per_task))


def prepare_like(input_path, manifest: dict, out_dir: str | Path, log: Callable[[str], None] = print,
                 options: dict | None = None) -> Path | None:
    """Prepare raw ``input_path`` exactly as the dataset of ``manifest`` was (its recorded step and
    ``parameters``), in-process and without labels; returns the dataset folder, or None when the
    manifest names no step (a dataset from before steps were recorded).

    ``options``: what the input is (``{"units": "mV"}``; None values = not given), for a step whose
    options describe its input (:attr:`PrepareStep.predict_options`).

    Raises
    ------
    EphysError
        The recorded step is unknown to this version, its parameters are not understood, an option
        the step does not take, or the input is refused by the step.
    """
    from .registry import pipeline as find_pipeline, pipelines

    by = dict(manifest.get("prepared_by") or {})
    if not by.get("step"):  # a dataset from before steps were recorded: the one step that makes its kind
        cands = [(p.name, s.name) for p in pipelines().values() for s in p.prepare
                 if manifest.get("modality") in s.modalities and manifest.get("pipeline") in (None, p.name)]
        if len(cands) != 1:
            return None
        by = {"pipeline": cands[0][0], "step": cands[0][1]}
    p = find_pipeline(str(by.get("pipeline")))
    steps = {s.name: s for s in p.prepare}
    if by["step"] not in steps:
        raise EphysError(f"the run's dataset was made by `prepare {by['step']}`, which this version lacks")
    step = steps[by["step"]]
    params = P.from_record(step.params, manifest.get("parameters") or {}) if step.params is not None else None
    given = {k: v for k, v in (options or {}).items() if v is not None}
    opts = None
    if given:
        names = {i.name for i in P.describe(step.options)} if step.options is not None and step.predict_options else set()
        if set(given) - names:
            bad = sorted(set(given) - names)[0]
            raise EphysError(f"`prepare {step.name}` input takes no {P.option_name(bad)}", P.option_name(bad))
        opts = P.from_options(step.options, given)
    res = run_prepare(p.name, step, input_path, out_dir, params, options=opts, run=ShardOptions(scheduler="synchronous"),
                      log=log)
    for s in res.skipped:
        log(f"skipped {s['path']}: {s['reason']}")
    pick = step.hook("predict_dataset")
    return Path(pick(Path(out_dir), manifest)) if pick is not None else Path(out_dir)
