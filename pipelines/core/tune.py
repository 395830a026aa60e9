"""``ephys tune``: a hyper-parameter search as an Optuna study that many processes share.

A study is a folder ``DIR``:

``study.json``           what is searched: dataset (and its fingerprint), model, search space, base
                         training settings, objective, pruner, sampler, fold; written once by the
                         first worker, checked by every later one
``split.json``           the split the trials use: ``train`` / ``val`` (and ``inner`` folds of the
                         training side) plus the ``test`` part, which no trial ever gets
``journal.log``          the Optuna study (``optuna.storages.JournalStorage`` with a
                         ``JournalFileBackend``: a file on a shared file system, no database server;
                         Akiba et al. 2019, KDD, doi:10.1145/3292500.3330701)
``trials/trial-NNNN/``   one normal run folder per trial (``config.yaml`` reproduces it; its
                         ``split.json`` has an empty test part); with inner folds, one run folder per
                         inner fold below it (``inner-K/``)
``heartbeats/``          one file per running trial: who runs it, touched while it runs
``best.yaml``, ``report.html``   from ``ephys tune --report DIR`` (:mod:`ephys.pipelines.core.tune_report`)

The objective is the validation loss on training-side data only: the split's validation part
(the best epoch's ``val_loss``, as early stopping chooses), or with ``inner_folds`` K the mean over
K grouped folds of the training side. The test part is never given to a trial. Bad trials are
pruned from their per-epoch validation loss (Optuna's median rule, or asynchronous successive
halving: Li et al. 2020, MLSys, "A system for massively parallel hyperparameter tuning").

Workers (:func:`work`) claim trials one at a time under a lock beside the journal, so that the
study ends with exactly ``trials`` counted trials however many workers run: none lost, none run
twice. A worker that dies (kill -9, a preempted or requeued SLURM task) leaves its trial running;
the next claim by any worker marks it failed (its process is gone, its worker identity restarted,
or its heartbeat is older than ``grace_s``) and queues a retry with the same parameters, which
resumes the dead trial's run folder from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import write_json, write_text
from .errors import EphysError
from .models import Search

__all__ = ["base_config", "SETTINGS", "DEFAULT_SEARCH", "PRUNERS", "SAMPLERS", "OBJECTIVE", "TrialContext", "default_space",
           "read_space", "apply_params", "create_study", "work", "study_summary", "best_config", "write_best",
           "load_study", "counted", "trial_run_name"]

STUDY_FILE = "study.json"
SPLIT_FILE = "split.json"
JOURNAL = "journal.log"
CLAIM = "claim"
TRIALS = "trials"
BEATS = "heartbeats"
BEST_FILE = "best.yaml"
STUDY_NAME = "ephys"
#: what every trial minimises: the validation loss (cross-entropy for class labels)
OBJECTIVE = "val_loss"
PRUNERS = ("median", "halving", "none")
SAMPLERS = ("tpe", "random", "grid")
#: the training settings (TrainConfig fields) a search space may name, with their types
SETTINGS: dict[str, type] = {"lr": float, "batch_size": int, "dropout": float, "patience": int, "epochs": int,
                             "input_size": int, "freeze": str, "weights": str}
#: the core's default ranges of training settings, for models trained by the core's Keras loop
#: (a model's own ``ModelSpec.search`` overrides them); Adam's useful range for small networks
DEFAULT_SEARCH: dict[str, Search] = {"lr": Search(1e-4, 1e-2, log=True)}
#: seconds without a heartbeat after which a running trial counts as dead
GRACE_S = 120.0
_KILLED = "killed"


# ---------------------------------------------------------------------------------------------
# The search space
# ---------------------------------------------------------------------------------------------


def default_space(spec) -> dict[str, Search]:
    """The space ``--space default`` searches for model ``spec`` (a ModelSpec): the core's
    :data:`DEFAULT_SEARCH` for a Keras model, the model's ``ModelSpec.search`` over it, then each
    declared hyper-parameter's ``HParam.search``.

    Raises
    ------
    EphysError
        The model declares nothing to search (give a space file).
    """
    space = dict(DEFAULT_SEARCH) if spec.trainer is None else {}
    space.update(spec.search or {})
    space.update({k: h.search for k, h in spec.hparams.items() if h.search is not None})
    if not space:
        raise EphysError(f"model {spec.name} declares no default search space; give --space SPACE.yaml "
                         f"(its hyper-parameters: {', '.join(spec.hparams) or 'none'})")
    return space


def _target(name: str, spec, base) -> tuple[str, type]:
    """("setting" | "hparam", value type) of a space entry, or EphysError."""
    if name in spec.hparams and (spec.trainer is not None or name not in SETTINGS or name in (base.hparams or {})):
        return "hparam", spec.hparams[name].type
    if name in SETTINGS and spec.trainer is None:
        return "setting", SETTINGS[name]
    accepts = list(spec.hparams) + ([k for k in SETTINGS if k not in spec.hparams] if spec.trainer is None else [])
    raise EphysError(f"model {spec.name} has no hyper-parameter or training setting {name!r}; a space may name: "
                     f"{', '.join(accepts)}")


def _search_from(name: str, raw, where) -> Search:
    if isinstance(raw, Search):
        return raw
    if isinstance(raw, (list, tuple)):
        raw = {"choices": list(raw)}
    if not isinstance(raw, dict) or not set(raw) <= {"low", "high", "log", "step", "choices"}:
        raise EphysError(f"space entry {name!r} must be a list of choices or a mapping of low, high (log, step) "
                         f"or choices, not {raw!r}", where)
    try:
        return Search(**{k: (tuple(v) if k == "choices" else v) for k, v in raw.items()})
    except (TypeError, ValueError) as exc:
        raise EphysError(f"space entry {name!r}: {exc}", where) from None


def read_space(space: str | Path | dict, spec, base, where=None) -> dict[str, Search]:
    """A search space, checked against the model and the training settings.

    Parameters
    ----------
    space : ``"default"`` (:func:`default_space`), a YAML file path, or a mapping: each key a
        training setting (:data:`SETTINGS`) or one of the model's hyper-parameters; each value
        ``{low: 1e-4, high: 1e-2, log: true}``, ``{low: 8, high: 64, step: 8}``,
        ``{choices: [a, b]}`` or a list (choices).
    spec : ModelSpec
    base : TrainConfig, the settings every trial starts from
    where : path named in errors

    Returns
    -------
    dict[str, Search] in the file's order.

    Raises
    ------
    EphysError
        An unreadable file, an unknown key, a malformed entry, a range of an int that is not
        integral, a string or bool setting without choices, or a bound or choice the setting's
        own checks refuse (e.g. dropout 1.0).
    """
    import yaml

    from .training import check_config

    if isinstance(space, (str, Path)) and str(space) == "default":
        raw: dict = default_space(spec)
    elif isinstance(space, dict):
        raw = space
    else:
        where = where or space
        try:
            raw = yaml.safe_load(Path(space).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise EphysError(f"unreadable search space ({' '.join(str(exc).split())})", space) from None
        if not isinstance(raw, dict) or not raw:
            raise EphysError("a search space is a mapping of setting names to ranges or choices", space)
    out = {}
    for name, entry in raw.items():
        name = str(name)
        s = _search_from(name, entry, where)
        _, typ = _target(name, spec, base)
        if s.choices is None:
            if typ in (str, bool):
                raise EphysError(f"space entry {name!r} takes choices (it is a {typ.__name__}), not a range", where)
            if typ is int and not all(float(v).is_integer() for v in (s.low, s.high, s.step or 1)):
                raise EphysError(f"space entry {name!r} is an integer: low, high and step must be whole", where)
            probes = [s.low, s.high]
        else:
            probes = list(s.choices)
        for v in probes:
            try:
                check_config(apply_params(base, {name: int(v) if typ is int and s.choices is None else v}, spec),
                             source=where or "space")
            except EphysError as exc:
                raise EphysError(f"space entry {name!r}: {exc.message}", where) from None
        out[name] = s
    return out


def _suggest(trial, space: dict[str, Search], spec, base) -> dict:
    params = {}
    for name, s in space.items():
        _, typ = _target(name, spec, base)
        if s.choices is not None:
            params[name] = trial.suggest_categorical(name, list(s.choices))
        elif typ is int:
            params[name] = trial.suggest_int(name, int(s.low), int(s.high), step=int(s.step or 1), log=s.log)
        else:
            params[name] = trial.suggest_float(name, float(s.low), float(s.high), step=s.step, log=s.log)
    return params


def apply_params(base, params: dict, spec):
    """A copy of TrainConfig ``base`` with a trial's ``params`` set: training settings on the
    config, the model's hyper-parameters in ``hparams``."""
    cfg = copy.deepcopy(base)
    cfg.hparams = dict(cfg.hparams or {})
    for name, value in params.items():
        kind, _ = _target(name, spec, base)
        if kind == "setting":
            setattr(cfg, name, value)
        else:
            cfg.hparams[name] = value
    return cfg


def base_config(config: str | Path | None = None, data: str | Path | None = None, model: str | None = None,
                overrides: dict | None = None, hparams: list[str] | None = None, data_root: str | Path = "data"):
    """The TrainConfig every trial starts from: a run's ``config.yaml`` (``config``) or the
    defaults, with ``data`` (default: the default pipeline's main dataset under ``data_root``),
    ``model``, the non-None ``overrides`` (TrainConfig fields) and ``--hparam`` items set; checked.

    Raises
    ------
    EphysError
        No model; a missing config file; a value out of range (named as its option).
    """
    from .models import parse_hparams
    from .training import TrainConfig, check_config

    if config is not None:
        if not Path(config).is_file():
            raise EphysError("no such config file", config)
        cfg = TrainConfig.from_yaml(config, check=False)
        cfg.out = None
    else:
        from .registry import default_pipeline

        cfg = TrainConfig(data=str(Path(data_root) / (default_pipeline().default_dataset() or "processed")))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if data is not None:
        given["data"] = str(data)
    if model is not None:
        given["model"] = model
    for k, v in given.items():
        setattr(cfg, k, v)
    if hparams:
        cfg.hparams = {**(cfg.hparams or {}), **parse_hparams(hparams)}
    if not cfg.model:
        raise EphysError("--model is required (see `ephys models`)")
    return check_config(cfg, source=config, options=set(given) | ({"hparams"} if hparams else set()))


# ---------------------------------------------------------------------------------------------
# The study folder
# ---------------------------------------------------------------------------------------------


def _storage(study_dir: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(study_dir / JOURNAL)))


@contextmanager
def _claim_lock(study_dir: Path):
    """The lock every claim holds (a symlink lock: safe on NFS, broken after 30 s by a waiter when
    its holder died)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    target = study_dir / CLAIM
    if not target.exists():
        target.touch()
    lock = JournalFileSymlinkLock(str(target), grace_period=30)
    lock.acquire()
    try:
        yield
    finally:
        try:
            lock.release()
        except RuntimeError:  # broken by a waiter after the grace period: it is theirs now
            pass


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EphysError(f"unreadable study file ({' '.join(str(exc).split())})", path) from None


def load_study(study_dir: str | Path) -> tuple[dict, dict]:
    """``(study.json, split.json)`` of a study folder.

    Raises
    ------
    EphysError
        Not a study folder (no study.json: run ``ephys tune`` first).
    """
    d = Path(study_dir)
    if not (d / STUDY_FILE).is_file():
        raise EphysError("not a study folder (no study.json): start it with `ephys tune --data ... --study DIR`", d)
    return _read_json(d / STUDY_FILE), _read_json(d / SPLIT_FILE)


def _plan_split(cfg, ds, fold, scheme, n_folds, inner_folds) -> dict:
    """Sample ids of train / val / test (and inner folds of the training side)."""
    from .crossval import _fold_split, plan_folds, select_fold
    from .training import plan_split
    from .validation import grouped_kfold

    if fold is not None:
        plan = plan_folds(ds, scheme, n_folds, cfg.seed)
        _, f = select_fold(plan, fold)
        ids = _fold_split(ds, f, cfg.seed)
        out = {"name": f.name, "scheme": plan.scheme, **ids}
    else:
        if cfg.split in (None, "", "auto"):
            cfg.split = str(ds.manifest.get("default_split") or "grouped")
        split = plan_split(cfg, ds)
        out = {"name": cfg.split, "scheme": None, **{k: [ds.ids[i] for i in v] for k, v in split.items()}}
    if not out["val"] and not inner_folds:
        raise EphysError("the split has no validation part to score trials on; give --inner-folds K "
                         "(or a --val-fraction > 0 in the base config)", ds.root)
    if inner_folds:
        pos = {s: i for i, s in enumerate(ds.ids)}
        side = np.array(sorted(pos[s] for s in out["train"] + out["val"]), dtype=np.int64)
        folds = grouped_kfold([ds.labels[i] for i in side], [ds.groups[i] for i in side], inner_folds, cfg.seed,
                              prefix="inner")
        out["inner"] = [[ds.ids[i] for i in side[f.test]] for f in folds]
    test = set(out["test"])
    assert not test.intersection(out["train"] + out["val"]), "a test sample on the training side"
    return out


def _definition(base, spec, space, trials, pruner, sampler, fold, scheme, n_folds, inner_folds, ds) -> dict:
    from .training import _VOLATILE

    settings = {k: v for k, v in asdict(base).items() if k not in _VOLATILE and k != "out"}
    return {"version": 1, "model": spec.name, "data": str(Path(base.data).resolve()),
            "dataset_fingerprint": ds.fingerprint(), "space": {k: s.describe() for k, s in space.items()},
            "objective": OBJECTIVE, "direction": "minimize", "trials": int(trials), "pruner": pruner,
            "sampler": sampler, "fold": None if fold is None else str(fold), "scheme": scheme, "n_folds": n_folds,
            "inner_folds": int(inner_folds), "base": settings}


#: keys of study.json that may differ between the workers of one study
_FREE = {"trials"}


def create_study(study_dir: str | Path, base, space="default", trials: int = 20, pruner: str = "median",
                 sampler: str = "tpe", fold=None, scheme: str | None = None, n_folds: int = 5,
                 inner_folds: int = 0) -> dict:
    """Create the study in ``study_dir`` (or check that the one there is the same search); returns
    its definition (``study.json``). Safe to call from many workers at once.

    Parameters
    ----------
    base : TrainConfig, settings every trial starts from (``data`` and ``model`` required)
    space : see :func:`read_space`
    trials : how many trials the study runs (completed, pruned or failed in their objective)
    pruner : ``median`` (Optuna's MedianPruner: 3 trials first, from the second epoch),
        ``halving`` (asynchronous successive halving) or ``none``
    sampler : ``tpe`` (Optuna's default), ``random``, or ``grid`` (every combination of
        choices: each space entry must be choices)
    fold, scheme, n_folds : search inside one outer cross-validation fold (its held-out part is the
        test part) instead of the dataset's split
    inner_folds : 0: score trials on the split's validation part; K >= 2: the mean over K grouped
        folds of the training side

    Raises
    ------
    EphysError
        Bad settings, space, pruner or sampler; a study folder that holds another search (naming
        what differs).
    """
    import optuna

    from . import models
    from .atomic import check_writable_dir
    from .datasets import load_dataset
    from .training import check_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    d = Path(study_dir)
    if pruner not in PRUNERS:
        raise EphysError(f"--pruner must be one of {', '.join(PRUNERS)}, not {pruner!r}")
    if sampler not in SAMPLERS:
        raise EphysError(f"--sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")
    if not isinstance(trials, int) or trials < 1:
        raise EphysError(f"--trials must be an integer >= 1, not {trials!r}")
    if inner_folds and inner_folds < 2:
        raise EphysError(f"--inner-folds must be 0 (the validation part) or >= 2, not {inner_folds}")
    base = copy.deepcopy(base)
    check_config(base, source=getattr(base, "_source", None))
    base.model = models.resolve_model_name(base.model)
    base.data = str(Path(base.data).resolve())
    spec = models.REGISTRY[base.model]
    if spec.target != "label" and spec.trainer is not None:
        raise EphysError(f"{spec.name} has its own trainer and learns a {spec.target} target: nothing to tune by "
                         "validation loss")
    space = read_space(space, spec, base)
    if sampler == "grid" and any(s.choices is None for s in space.values()):
        raise EphysError("--sampler grid needs choices for every space entry (ranges: "
                         + ", ".join(k for k, s in space.items() if s.choices is None) + ")")
    ds = load_dataset(base.data)
    models.check_modality(base.model, ds.modality)
    check_writable_dir(d, "study folder")
    d.mkdir(parents=True, exist_ok=True)
    split = _plan_split(base, ds, fold, scheme, n_folds, inner_folds)  # outside the lock: it may take a while
    want = _definition(base, spec, space, trials, pruner, sampler, fold, split["scheme"] or scheme, n_folds,
                       inner_folds, ds)
    with _claim_lock(d):
        if (d / STUDY_FILE).is_file():
            have = _read_json(d / STUDY_FILE)
            diff = sorted(k for k in set(want) | set(have) if k not in _FREE and want.get(k) != have.get(k))
            if diff:
                raise EphysError(f"the study folder holds another search ({', '.join(diff)} differ); give another "
                                 "--study DIR", d / STUDY_FILE)
            return have
        optuna.create_study(study_name=STUDY_NAME, storage=_storage(d), direction="minimize", load_if_exists=True)
        write_json(d / SPLIT_FILE, split)
        write_json(d / STUDY_FILE, want)
        return want


def _sampler(defn: dict, n_done: int):
    """A sampler seeded by the study seed and the number of trials so far: two workers never draw
    the same random start, and a study's draws do not depend on which worker claims."""
    import optuna

    seed = int(defn["base"].get("seed", 0)) * 100_003 + n_done
    if defn["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if defn["sampler"] == "grid":
        # one seed for all: the grid's order is shuffled by it, and grid ids must mean the same everywhere
        return optuna.samplers.GridSampler({k: v["choices"] for k, v in defn["space"].items()},
                                           seed=int(defn["base"].get("seed", 0)))
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(name: str):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _open(d: Path, defn: dict, n_done: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=STUDY_NAME, storage=_storage(d), sampler=_sampler(defn, n_done),
                             pruner=_pruner(defn["pruner"]))


def counted(trial) -> bool:
    """Whether a trial counts towards the study's ``trials``: everything but a trial whose worker
    died (that one is retried)."""
    from optuna.trial import TrialState

    return not (trial.state == TrialState.FAIL and trial.user_attrs.get("failed") == _KILLED)


def trial_run_name(trial) -> str:
    """The run folder of a trial under ``trials/``: a retry resumes the folder of the trial it retries."""
    return trial.user_attrs.get("run") or f"trial-{trial.number:04d}"


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------


def _worker_id() -> str:
    """Who this process is: EPHYS_WORKER, else the SLURM array task (a requeued task keeps it),
    else host:pid."""
    if os.environ.get("EPHYS_WORKER"):
        return os.environ["EPHYS_WORKER"]
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return f"slurm-{job}_{task}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm-{os.environ['SLURM_JOB_ID']}"
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead(trial, beats: Path, me: str, grace_s: float) -> str | None:
    """Why a RUNNING trial's worker is gone, or None while it may be alive."""
    from .atomic import _pid_alive

    a = trial.user_attrs
    host, pid, worker = a.get("host"), a.get("pid"), a.get("worker")
    if host == socket.gethostname() and pid is not None and int(pid) != os.getpid() and not _pid_alive(int(pid)):
        return f"its process {pid} on {host} is gone"
    if worker == me and pid is not None and (host != socket.gethostname() or int(pid) != os.getpid()):
        return f"its worker {worker} restarted"
    beat = beats / f"trial-{trial.number:04d}"
    last = beat.stat().st_mtime if beat.exists() else (trial.datetime_start.timestamp()
                                                         if trial.datetime_start else time.time())
    if time.time() - last > grace_s:
        return f"no heartbeat for {time.time() - last:.0f} s"
    return None


def _claim(d: Path, defn: dict, trials: int, me: str, grace_s: float, log):
    """Under the lock: fail and requeue dead trials, then ask for the next trial (a queued retry
    first) unless ``trials`` are already counted. Returns (study, trial, params) or None."""
    from optuna.trial import TrialState

    from . import models
    from .training import TrainConfig

    spec = models.REGISTRY[defn["model"]]
    base = TrainConfig(**defn["base"])
    with _claim_lock(d):
        study = _open(d, defn)
        storage = study._storage
        beats = d / BEATS
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            why = _dead(t, beats, me, grace_s)
            if why is None:
                continue
            storage.set_trial_user_attr(t._trial_id, "failed", _KILLED)
            storage.set_trial_user_attr(t._trial_id, "failed_because", why)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"run": trial_run_name(t),
                                                      "retry_of": t.user_attrs.get("retry_of", t.number)})
            log(f"trial {t.number} failed ({why}); queued again, it resumes {TRIALS}/{trial_run_name(t)}")
        all_trials = study.get_trials(deepcopy=False)
        waiting = [t for t in all_trials if t.state == TrialState.WAITING]
        n = sum(counted(t) for t in all_trials)
        if not waiting and n >= trials:
            return None
        study = _open(d, defn, n_done=len(all_trials))
        trial = study.ask()
        params = _suggest(trial, {k: _search_from(k, v, d / STUDY_FILE) for k, v in defn["space"].items()},
                          spec, base)
        for k, v in (("worker", me), ("host", socket.gethostname()), ("pid", os.getpid())):
            trial.set_user_attr(k, v)
        if "run" not in trial.user_attrs:
            trial.set_user_attr("run", f"trial-{trial.number:04d}")
        beats.mkdir(exist_ok=True)
        write_text(beats / f"trial-{trial.number:04d}", f"{me}\n")
        return study, trial, params


@dataclass
class TrialContext:
    """What an objective gets: the trial's ``params``, its run folder ``run``, the study's
    definition ``study`` and ``split`` (sample ids; the test part is there only to be excluded),
    the base :class:`~ephys.pipelines.core.training.TrainConfig` ``base``, ``report(step, value)``
    (returns True when the trial should stop: pruned), and ``attrs`` to record with the trial."""

    number: int
    params: dict
    run: Path
    study: dict
    split: dict
    base: object
    report: Callable[[int, float], bool]
    attrs: dict
    log: Callable[[str], None]
    dataset: object = None


class _Beat:
    """Touch a trial's heartbeat file every ``every`` seconds in a daemon thread."""

    def __init__(self, path: Path, every: float):
        self.path, self.every, self.stop = path, every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(self.every):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.path.unlink(missing_ok=True)


def work(study_dir: str | Path, trials: int | None = None, objective: Callable[[TrialContext], float] | None = None,
         log: Callable[[str], None] = print, grace_s: float = GRACE_S, track: str | None = None,
         max_trials: int | None = None, eager: bool = False) -> dict:
    """Run trials of the study in ``study_dir`` until ``trials`` (default: study.json's) are
    counted; returns :func:`study_summary`. Many workers (processes, nodes) may run at once.

    Parameters
    ----------
    objective : ``objective(ctx) -> value`` to minimise; default: train the model with the trial's
        settings and return the best validation loss (:func:`train_objective`). Raising
        ``optuna.TrialPruned`` prunes the trial; an EphysError fails it (counted, not retried).
    grace_s : a running trial whose heartbeat is older than this is declared dead
    track : an MLflow tracking URI: each finished trial's run is logged there
        (:func:`ephys.pipelines.core.tracking.log_run`)
    max_trials : stop this worker after this many trials of its own (None: until the study is done)
    eager : train eagerly (``ephys train --eager``: no graph build; tiny CPU runs)

    Raises
    ------
    EphysError
        Not a study folder; an objective error that is not an EphysError is recorded (the trial
        fails) and re-raised.
    """
    import optuna
    from optuna.trial import TrialState

    d = Path(study_dir)
    defn, split = load_study(d)
    target = int(trials or defn["trials"])
    me = _worker_id()
    objective = objective or train_objective
    ds = None
    if objective is train_objective:
        from .datasets import check_same_dataset, load_dataset

        ds = load_dataset(defn["data"])
        check_same_dataset(defn["dataset_fingerprint"], ds.manifest, d / STUDY_FILE, ds.root)
    from .training import TrainConfig

    base = TrainConfig(**defn["base"])
    base.eager = bool(eager)
    done_here = 0
    while max_trials is None or done_here < max_trials:
        claimed = _claim(d, defn, target, me, grace_s, log)
        if claimed is None:
            break
        study, trial, params = claimed
        run = d / TRIALS / trial.user_attrs["run"]
        beat = _Beat(d / BEATS / f"trial-{trial.number:04d}", max(0.5, grace_s / 4))
        state = {"pruned": False}

        def report(step: int, value: float, trial=trial, study=study) -> bool:
            if not np.isfinite(value):
                return False
            trial.report(float(value), int(step))
            state["pruned"] = state["pruned"] or bool(trial.should_prune())  # pruners answer numpy bools
            return state["pruned"]

        attrs: dict = {}
        ctx = TrialContext(trial.number, params, run, defn, split, base, report, attrs, log, ds)
        log(f"trial {trial.number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))
        t0 = time.time()
        try:
            value = objective(ctx)
            if state["pruned"]:
                raise optuna.TrialPruned()
        except optuna.TrialPruned:
            _finish(study, trial, attrs, t0, state=TrialState.PRUNED)
            log(f"trial {trial.number}: pruned")
        except EphysError as exc:
            attrs["failed"] = "error"
            attrs["error"] = exc.message[:500]
            _finish(study, trial, attrs, t0, state=TrialState.FAIL)
            log(f"trial {trial.number}: failed: {exc.message}")
        except Exception as exc:
            attrs["failed"] = "error"
            attrs["error"] = f"{type(exc).__name__}: {exc}"[:500]
            _finish(study, trial, attrs, t0, state=TrialState.FAIL)
            raise
        else:
            _finish(study, trial, attrs, t0, value=value)
            log(f"trial {trial.number}: {OBJECTIVE} {value:.4g}")
        finally:
            beat.close()
        if track and run.is_dir():
            from .tracking import log_run

            log_run(run, track, experiment=f"ephys-tune-{d.resolve().name}",
                    params={**params, "trial": trial.number}, tags={"study": str(d.resolve())})
        done_here += 1
    return study_summary(d)


def _finish(study, trial, attrs: dict, t0: float, value: float | None = None, state=None) -> None:
    """Record ``attrs`` and the result; a trial another worker declared dead meanwhile keeps that
    verdict (its retry runs it)."""
    from optuna.exceptions import UpdateFinishedTrialError

    attrs["seconds"] = round(time.time() - t0, 2)
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if value is not None:
            study.tell(trial, float(value))
        else:
            study.tell(trial, state=state)
    except (UpdateFinishedTrialError, RuntimeError) as exc:
        # a trial declared dead meanwhile; or GridSampler's study.stop() once the grid is done,
        # which Optuna allows only inside optimize() (the result is stored before it raises)
        if "finished" not in str(exc).lower() and "Study.stop" not in str(exc):
            raise


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------------------------
# The default objective: train with the trial's settings, score on training-side data
# ---------------------------------------------------------------------------------------------


def _history(run: Path) -> list[dict]:
    import csv

    path = run / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _val_scores(run: Path, ds, val_ids: list[str]) -> dict:
    """Log loss, accuracy and balanced accuracy of a trained run on validation samples."""
    from sklearn import metrics as skm

    from .models import load_predictor
    from .runfolder import load_run_config

    pos = {s: i for i, s in enumerate(ds.ids)}
    idx = np.array([pos[s] for s in val_ids], dtype=np.int64)
    proba = load_predictor(run, load_run_config(run), ds, 256)(idx)
    proba = np.clip(proba, 1e-7, 1)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 rows: sum to 1 exactly
    y = ds.y(idx)
    k = len(ds.label_names)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")  # a fold without some class
        bal = float(skm.balanced_accuracy_score(y, proba.argmax(1)))
    return {"val_log_loss": float(skm.log_loss(y, proba, labels=list(range(k)))),
            "val_accuracy": float(np.mean(proba.argmax(1) == y)), "val_balanced_accuracy": bal}


def train_objective(ctx: TrialContext) -> float:
    """Train the trial's configuration on the training side of the study's split and return its
    validation loss: the best epoch's ``val_loss`` (a model with its own trainer: the validation
    log loss of its predictions), or the mean over the inner folds. Every epoch's ``val_loss`` is
    reported for pruning (step = inner fold x epochs + epoch). The trial's run folders get the
    split without its test part, so nothing of the test part is read.

    Raises
    ------
    EphysError
        From training (e.g. a loss that became NaN): the trial fails.
    """
    from . import models
    from .training import train

    spec = models.REGISTRY[ctx.study["model"]]
    cfg = apply_params(ctx.base, ctx.params, spec)
    cfg.split = ctx.split["name"]
    s = ctx.split
    parts = ([(ctx.run, s["train"], s["val"])] if not s.get("inner") else
             [(ctx.run / f"inner-{k + 1}", [x for j, f in enumerate(s["inner"]) if j != k for x in f], val)
              for k, val in enumerate(s["inner"])])
    values, scores, stop = [], [], [False]
    for k, (run, fit, val) in enumerate(parts):
        offset = k * cfg.epochs
        for row in _history(run):  # a resumed trial reports what its run already did
            if row.get("val_loss"):
                stop[0] = ctx.report(offset + int(row["epoch"]), float(row["val_loss"])) or stop[0]
        c = copy.deepcopy(cfg)
        c.out = str(run)

        def on_epoch(epoch, logs, offset=offset):
            if "val_loss" in logs:
                stop[0] = ctx.report(offset + epoch, logs["val_loss"]) or stop[0]
            return stop[0]

        train(c, on_epoch=on_epoch, log=ctx.log, split_ids={"train": list(fit), "val": list(val), "test": []},
              dataset=ctx.dataset)
        summary = json.loads((run / "train_summary.json").read_text()) if (run / "train_summary.json").is_file() else {}
        if spec.trainer is not None:  # no epochs: the validation log loss of its predictions
            sc = _val_scores(run, ctx.dataset, list(val))
            values.append(sc["val_log_loss"])
            scores.append(sc)
        else:
            best = summary.get("best_val_loss")
            if best is None:
                raise EphysError("the trial's run recorded no validation loss", run)
            values.append(float(best))
            if spec.target == "label":
                scores.append(_val_scores(run, ctx.dataset, list(val)))
        ctx.attrs.setdefault("epochs", []).append(summary.get("epochs_run"))
        if stop[0]:
            break
    for key in ("val_accuracy", "val_balanced_accuracy"):
        if scores:
            ctx.attrs[key] = float(np.mean([sc[key] for sc in scores]))
    return float(np.mean(values))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def study_summary(study_dir: str | Path) -> dict:
    """Counts and the best trial of a study: ``trials`` (target), ``n`` (counted), ``complete``,
    ``pruned``, ``failed`` (in their objective), ``killed`` (retried), ``running``, ``waiting``,
    ``best`` ({number, value, params, run} or None), ``seconds`` (summed trial time, s) and
    ``wall_s`` (first start to last end)."""
    from optuna.trial import TrialState

    d = Path(study_dir)
    defn, _ = load_study(d)
    study = _open(d, defn)
    ts = study.get_trials(deepcopy=False)
    by = {s: [t for t in ts if t.state == s] for s in TrialState}
    complete = by[TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    starts = [t.datetime_start.timestamp() for t in ts if t.datetime_start]
    ends = [t.datetime_complete.timestamp() for t in ts if t.datetime_complete]
    return {"trials": int(defn["trials"]), "n": sum(counted(t) for t in ts), "complete": len(complete),
            "pruned": len(by[TrialState.PRUNED]),
            "failed": sum(1 for t in by[TrialState.FAIL] if counted(t)),
            "killed": sum(1 for t in by[TrialState.FAIL] if not counted(t)),
            "running": len(by[TrialState.RUNNING]), "waiting": len(by[TrialState.WAITING]),
            "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params,
                                               "run": str(d / TRIALS / trial_run_name(best)),
                                               **{k: best.user_attrs.get(k) for k in ("val_balanced_accuracy",
                                                                                       "val_accuracy")}},
            "seconds": round(sum(float(t.user_attrs.get("seconds", 0)) for t in ts), 1),
            "wall_s": round(max(ends) - min(starts), 1) if starts and ends else 0.0}


def best_config(study_dir: str | Path):
    """The best trial's TrainConfig (base settings + its parameters; ``out`` unset, ``split`` the
    study's split), or EphysError when no trial completed."""
    from . import models
    from .training import TrainConfig

    d = Path(study_dir)
    defn, split = load_study(d)
    best = study_summary(d)["best"]
    if best is None:
        raise EphysError("no trial of the study has completed yet", d)
    base = TrainConfig(**defn["base"])
    cfg = apply_params(base, best["params"], models.REGISTRY[defn["model"]])
    cfg.out = None
    cfg.split = split["name"] if defn["fold"] is None else "auto"
    return cfg, best


def write_best(study_dir: str | Path) -> Path:
    """Write ``DIR/best.yaml``: the best trial's configuration for ``ephys train --config``, with
    the command that trains it (and then evaluates it on the test part, once) as a comment."""
    import yaml

    d = Path(study_dir)
    defn, _ = load_study(d)
    cfg, best = best_config(d)
    fold = "" if defn["fold"] is None else (f" --fold {defn['fold']}" + (f" --cv {defn['scheme']}" if defn["scheme"] else "")
                                            + f" --cv-folds {defn['n_folds']}")
    head = (f"# the best of {defn['trials']} trials of {d} (trial {best['number']}, {OBJECTIVE} {best['value']:.6g})\n"
            f"# ephys train --config {d / BEST_FILE}{fold} --out RUN && ephys evaluate RUN\n")
    body = {k: v for k, v in asdict(cfg).items() if k in {f.name for f in fields(cfg)} and k != "out"}
    return write_text(d / BEST_FILE, head + yaml.safe_dump(body, sort_keys=False))
