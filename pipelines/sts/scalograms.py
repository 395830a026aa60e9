"""STS pipeline, prepare step: current-clamp recordings -> one CWT scalogram per cell.

Seed: Spike Train Scalograms (Amprimo et al. 2025, ``spike-trains-scalograms``). Per cell:

1. read every current-clamp sweep (NWB via pynwb, ABF via pyabf; :mod:`.readers`);
2. choose the suprathreshold long-square sweeps (rheobase, ~1.5x and ~2x rheobase;
   :func:`.spike_train.choose_sweeps`);
3. detect action potentials (dV/dt threshold + peak confirmation, IPFX rule) and bin each chosen
   sweep's spike train in 1 ms bins over a window aligned to the step onset;
4. complex-Morlet CWT over log-spaced scales (fast path :func:`.cwt.cwt`), magnitude,
   log10, then min-max normalisation **per cell** to [0, 1] (no statistics shared across cells,
   so nothing leaks between training and test cells);
5. write ``samples/<cell>.npy`` (float32, scales x time x sweeps) and ``samples/<cell>.json``.

Cells run in-process, or in parallel on dask when that pays (``--scheduler auto``, the rule in
:mod:`.runner`; or always a LocalCluster, SLURM workers, a scheduler address). A cell whose
files are already written with the same parameters is not recomputed, so a killed run resumes;
every file is written under a temporary name and renamed. ``manifest.json`` is written last.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..core.atomic import check_writable_dir, remove_stale_parts, sha256_file, write_json, write_npy
from ..blocks.signal.cwt import DEFAULT_WAVELET, cwt, log_scales
from ..core.errors import EphysError
from ..blocks.signal.spike_train import DEFAULT_RHEOBASE_MULTIPLES, bin_spike_train, choose_sweeps

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class ScalogramParams:
    """Parameters of ``ephys prepare scalograms`` (all recorded in the manifest).

    n_scales : CWT scales (rows), default 180 as in STS.
    f_min_hz, f_max_hz : pseudo-frequency range of the scales (Hz); f_max <= 0.5 / bin_s.
    bin_s : spike-train bin width, seconds (STS: 1 ms).
    window_s : time window of the spike train relative to the step onset, seconds.
    rheobase_multiples : which suprathreshold sweeps become the channels.
    wavelet : PyWavelets complex Morlet name.
    log_floor : added to |W| before log10 so silent stretches stay finite.
    precision : wavelet-integral grid 2**precision (PyWavelets uses 12; 16 keeps the 2 Hz rows
        free of the staircase speckle 12 gives at scales of several hundred samples).
    """

    n_scales: int = 180
    f_min_hz: float = 2.0
    f_max_hz: float = 500.0
    bin_s: float = 0.001
    window_s: tuple[float, float] = (-0.1, 1.1)
    rheobase_multiples: tuple[float, ...] = DEFAULT_RHEOBASE_MULTIPLES
    wavelet: str = DEFAULT_WAVELET
    log_floor: float = 1e-3
    precision: int = 16

    def check(self) -> "ScalogramParams":
        """Refuse impossible parameters with the option to change, before any folder or worker.

        Raises
        ------
        EphysError
            ``--n-scales`` < 4; ``--bin-ms`` not > 0; ``--f-min`` not > 0; ``--f-min`` >=
            ``--f-max``; ``--f-max`` above the Nyquist frequency of the bins; a ``--window``
            whose end is not after its start, or shorter than 4 bins.
        """
        fin = lambda v: isinstance(v, (int, float)) and np.isfinite(v)  # noqa: E731
        if not (isinstance(self.n_scales, int) and self.n_scales >= 4):
            raise EphysError(f"--n-scales must be an integer >= 4, not {self.n_scales!r}")
        if not (fin(self.bin_s) and self.bin_s > 0):
            raise EphysError(f"--bin-ms must be > 0, not {self.bin_s * 1e3:g}")
        if not (fin(self.f_min_hz) and self.f_min_hz > 0):
            raise EphysError(f"--f-min must be > 0 Hz, not {self.f_min_hz:g}")
        if not (fin(self.f_max_hz) and self.f_max_hz > self.f_min_hz):
            raise EphysError(f"--f-max ({self.f_max_hz:g} Hz) must be above --f-min ({self.f_min_hz:g} Hz)")
        if self.f_max_hz > 0.5 / self.bin_s:
            raise EphysError(f"--f-max {self.f_max_hz:g} Hz is above the Nyquist frequency of "
                             f"{self.bin_s * 1e3:g} ms bins ({0.5 / self.bin_s:g} Hz)")
        w0, w1 = self.window_s
        if not (fin(w0) and fin(w1) and w1 > w0):
            raise EphysError(f"--window END must be after START (seconds around the step onset), not {w0:g} {w1:g}")
        if self.n_time < 4:
            raise EphysError(f"--window {w0:g} {w1:g} holds only {self.n_time} bins of {self.bin_s * 1e3:g} ms; "
                             "widen it or use smaller --bin-ms")
        return self

    def key(self) -> str:
        """Short hash identifying these parameters (a finished cell is reused only if equal)."""
        blob = json.dumps(asdict(self), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def n_time(self) -> int:
        return int(round((self.window_s[1] - self.window_s[0]) / self.bin_s))


def scalogram_from_spike_trains(trains: np.ndarray, params: ScalogramParams) -> np.ndarray:
    """Spike trains -> normalised log-magnitude scalogram.

    Parameters
    ----------
    trains : np.ndarray, shape (n_sweeps, n_time), spike counts per bin
    params : ScalogramParams

    Returns
    -------
    np.ndarray, shape (n_scales, n_time, n_sweeps), float32 in [0, 1]
        Rows go from ``f_max_hz`` (row 0) down to ``f_min_hz``. All zeros when no sweep has a
        spike in the window.
    """
    scales, _ = log_scales(params.n_scales, params.f_min_hz, params.f_max_hz, 1.0 / params.bin_s,
                           params.wavelet)
    mag = cwt(np.asarray(trains, dtype=np.float32), scales, params.wavelet, precision=params.precision)  # (sweeps, scales, time)
    logm = np.log10(mag + params.log_floor)
    lo, hi = float(logm.min()), float(logm.max())
    out = np.zeros_like(logm) if hi - lo <= 1e-12 else (logm - lo) / (hi - lo)
    return np.ascontiguousarray(np.transpose(out, (1, 2, 0)), dtype=np.float32)


def process_cell(cell, out_dir: str, params: ScalogramParams) -> dict:
    """Make (or reuse) one cell's scalogram. Runs on a dask worker.

    Returns a sample record (``{"status": "ok", ...}``) or ``{"status": "skipped", "path":
    ..., "reason": ...}``. Never raises for a bad recording: the reason is reported instead.
    """
    from ..blocks.readers.patchclamp import read_cell  # imported here so workers import lazily
    from ..blocks.readers.remote import input_records

    out = Path(out_dir)
    npy = out / "samples" / f"{cell.cell_id}.npy"
    meta_path = out / "samples" / f"{cell.cell_id}.json"
    if npy.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("params_key") == params.key():
                inputs = same_inputs(meta.get("inputs") or [], cell.paths)
                if inputs is not None:  # the recording is unchanged: reuse the scalogram
                    if inputs != meta.get("inputs"):  # same bytes, new mtime: record it
                        meta["inputs"] = inputs
                        write_json(meta_path, meta)
                    meta["label"] = cell.label  # labels may change without recomputing
                    meta["resumed"] = True
                    return meta
        except (OSError, ValueError):
            pass
    bad_files: list[tuple[str, str]] = []
    try:
        sweeps = read_cell(cell, bad_files)
    except EphysError as exc:
        return {"status": "skipped", "id": cell.cell_id, "path": cell.source, "reason": exc.message}
    except Exception as exc:  # a reader library failing on a broken file
        return {"status": "skipped", "id": cell.cell_id, "path": cell.source,
                "reason": f"unreadable ({type(exc).__name__}: {exc})"[:300]}
    choice = choose_sweeps(sweeps, params.rheobase_multiples)
    if choice is None:
        return {"status": "skipped", "id": cell.cell_id, "path": cell.source,
                "reason": f"no depolarising step evoked a spike in {len(sweeps)} current-clamp sweeps "
                          "(rheobase not reached)"}
    trains, sweep_info = [], []
    for k, target in zip(choice.chosen, choice.targets_pA):
        sw, sp = sweeps[k], choice.spikes[k]
        rel = sp.peak_s - sw.stim_start_s
        trains.append(bin_spike_train(rel, params.window_s, params.bin_s))
        sweep_info.append({"sweep_id": sw.sweep_id, "stim_amp_pA": round(float(sw.stim_amp_pA), 3),
                           "target_pA": round(target, 3), "n_spikes": int(len(sp)),
                           "n_spikes_in_window": int(trains[-1].sum()),
                           "step_s": [round(float(sw.stim_start_s), 6), round(float(sw.stim_end_s), 6)],
                           "fs_hz": float(sw.fs_hz)})
    scal = scalogram_from_spike_trains(np.stack(trains), params)
    if not np.isfinite(scal).all():  # checked on the float32 array as stored
        return {"status": "skipped", "id": cell.cell_id, "path": cell.source,
                "reason": f"scalogram holds {int((~np.isfinite(scal)).sum())} NaN/Inf values"}
    write_npy(npy, scal)
    meta = {"status": "ok", "id": cell.cell_id, "file": f"samples/{cell.cell_id}.npy",
            "label": cell.label, "group": cell.cell_id, "source": cell.source,
            "inputs": [input_record(p) for p in cell.paths if Path(str(p)).is_file()]
                      + input_records([p for p in cell.paths if not Path(str(p)).is_file()]),
            "n_sweeps_read": len(sweeps), "rheobase_pA": round(choice.rheobase_pA, 3),
            "sweeps": sweep_info, "params_key": params.key(),
            "skipped_files": [{"path": p, "reason": r} for p, r in bad_files]}
    write_json(meta_path, meta)
    return meta


def input_record(path: str | Path) -> dict:
    """``{"path", "size", "mtime_ns", "sha256"}`` of an input file (what resume compares)."""
    st = Path(path).stat()
    return {"path": str(path), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
            "sha256": sha256_file(path)}


def same_inputs(recorded: list[dict], paths) -> list[dict] | None:
    """The input records of ``paths`` if every file is the one ``recorded`` (same size and mtime,
    or, when those differ, the same sha256); None when a file changed, appeared or went.

    A cell whose recording was replaced is therefore prepared again on resume, and the manifest's
    checksums stay those of the files actually used.
    """
    if any("://" in str(p) for p in paths):  # streamed input: nothing local to compare
        return recorded
    paths = [str(p) for p in paths if Path(p).is_file()]
    by_path = {str(r.get("path")): r for r in recorded}
    if sorted(by_path) != sorted(paths):
        return None
    now = []
    for p in paths:
        r, st = by_path[p], Path(p).stat()
        if r.get("size") == st.st_size and r.get("mtime_ns") == st.st_mtime_ns and r.get("sha256"):
            now.append(r)
            continue
        if st.st_size != r.get("size", st.st_size):
            return None
        digest = sha256_file(p)
        if digest != r.get("sha256"):
            return None
        now.append({"path": p, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256": digest})
    return now


def check_existing_dataset(out: Path, params: ScalogramParams, force: bool = False, n_runs_using: int = 0,
                           log: Callable[[str], None] = print) -> None:
    """Refuse to prepare into a dataset made with other parameters, unless ``force``.

    Compares ``params`` with the existing ``manifest.json``'s ``parameters`` (or, for a dataset
    whose shards are not yet merged, with the ``params_key`` of the cells in ``samples/``). With
    ``force`` the old manifest and samples are removed first (``log`` says how many runs used the
    dataset: their ``evaluate`` / ``predict`` / ``report`` will refuse the new one).

    Raises
    ------
    EphysError
        Other parameters, without ``force``: names each parameter that differs (old -> new) and
        how many runs used the dataset.
    """
    new = {**json.loads(json.dumps(asdict(params), default=list)), "key": params.key()}
    diffs: list[str] = []
    mpath = out / MANIFEST
    if mpath.is_file():
        try:
            old = json.loads(mpath.read_text(encoding="utf-8")).get("parameters") or {}
        except (OSError, ValueError) as exc:
            raise EphysError(f"unreadable manifest ({' '.join(str(exc).split())}); pass --force to replace "
                             "the dataset", mpath) from None
        if old.get("key") != new["key"]:
            diffs = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                     if k != "key" and old.get(k) != new.get(k)] or ["parameter key"]
    elif (out / "samples").is_dir():
        keys = set()
        for meta in (out / "samples").glob("*.json"):
            try:
                keys.add(json.loads(meta.read_text()).get("params_key"))
            except (OSError, ValueError):
                continue
        if keys - {new["key"]}:
            diffs = [f"cells in samples/ were prepared with other parameters (keys {', '.join(sorted(map(str, keys - {new['key']})))})"]
    if not diffs:
        return
    used = (f"; {n_runs_using} trained run{'s' if n_runs_using != 1 else ''} used it" if n_runs_using else
            "; no trained run under the runs folder used it")
    if not force:
        raise EphysError(f"dataset was prepared with other parameters ({'; '.join(diffs[:6])}){used}; "
                         "pass --force to replace it, or choose another OUT", out)
    log(f"replacing {out} (other parameters: {'; '.join(diffs[:6])}){used}")
    mpath.unlink(missing_ok=True)
    for f in list((out / "samples").glob("*.npy")) + list((out / "samples").glob("*.json")):
        f.unlink(missing_ok=True)


@dataclass
class PrepareResult:
    """What :func:`prepare_scalograms` did: the manifest written (None for a ``--shard`` run),
    cells prepared (``n_ok``, of which ``n_resumed`` were already done) and skipped files with
    their reasons (``[{"path", "reason"}]``)."""

    manifest_path: Path | None
    n_ok: int
    n_resumed: int
    skipped: list[dict] = field(default_factory=list)


@dataclass
class SlurmWorkers:
    """dask-jobqueue ``SLURMCluster`` settings for ``--scheduler slurm`` (one worker per job).

    queue : partition ('' = the cluster default); cores, memory : per worker job;
    walltime : per job (HH:MM:SS); extra : more ``#SBATCH`` directives, e.g. ``--account=lab``;
    log_directory : where the worker jobs' logs go.
    """

    queue: str = ""
    cores: int = 1
    memory: str = "4GB"
    walltime: str = "01:00:00"
    extra: tuple[str, ...] = ()
    log_directory: str | None = None


def _client(scheduler: str, workers: int | None, slurm: SlurmWorkers | None = None):
    """A dask Client: 'local' -> LocalCluster, 'synchronous' -> None, 'slurm' -> dask-jobqueue
    SLURMCluster (one sbatch job per worker), else a scheduler address."""
    if scheduler == "synchronous":
        return None, None
    from dask.distributed import Client, LocalCluster

    if scheduler == "slurm":
        from dask_jobqueue import SLURMCluster

        sw = slurm or SlurmWorkers()
        try:
            cluster = SLURMCluster(queue=sw.queue or None, cores=sw.cores, processes=1, memory=sw.memory,
                                   walltime=sw.walltime, job_extra_directives=list(sw.extra),
                                   log_directory=sw.log_directory, scheduler_options={"dashboard_address": ":0"},
                                   job_name="ephys-dask", silence_logs="error")
            cluster.scale(jobs=workers or 2)
            client = Client(cluster)
            client.wait_for_workers(1, timeout=600)
        except Exception as exc:  # sbatch missing or refusing the job: say so in one line
            raise EphysError(f"could not start dask workers on SLURM ({type(exc).__name__}: {exc})".splitlines()[0],
                             "--scheduler slurm") from None
        return client, cluster

    if scheduler in ("local", "", None):
        n = workers or max(1, (os.cpu_count() or 1))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=40)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise EphysError(f"cannot connect to dask scheduler ({exc})", scheduler) from None


def prepare_scalograms(input_path: str | Path, out_dir: str | Path, labels_csv: str | Path | None = None,
                       params: ScalogramParams | None = None, workers: int | None = None,
                       scheduler: str = "auto",
                       progress: Callable[[int, int, dict], None] | None = None,
                       shard: tuple[int, int] | None = None,
                       slurm: SlurmWorkers | None = None,
                       consolidated: str | None = "float32", stream: bool = False,
                       include: str | None = None, limit: int | None = None, force: bool = False,
                       n_runs_using: int = 0, log: Callable[[str], None] = print) -> PrepareResult:
    """Prepare a scalogram dataset from a recording file or folder.

    Parameters
    ----------
    input_path : file or folder of NWB/ABF recordings.
    out_dir : dataset folder to create (``manifest.json`` + ``samples/``).
    labels_csv : optional CSV with ``path,label`` (``unknown`` = unlabelled).
    params : ScalogramParams (defaults as in STS).
    workers : dask worker processes for the local cluster (default: all cores).
    scheduler : ``auto`` (in-process unless a LocalCluster would save more than it costs to
        start: the rule in :mod:`.runner`), ``local`` (always a LocalCluster), ``synchronous``
        (in-process),
        ``slurm`` (dask-jobqueue SLURMCluster: ``workers`` sbatch jobs, settings in ``slurm``),
        or a dask scheduler address such as ``tcp://host:8786``.
    progress : called as ``progress(done, total, record)`` after each cell.
    shard : ``(k, n)``: prepare only cells ``k, k+n, k+2n, ...`` of the discovery order (one
        SLURM array task's part) and write no manifest; a later run without ``shard`` finds
        every cell done and writes the manifest.
    consolidated : besides ``samples/<cell>.npy``, write all samples as one memory-mappable
        ``samples.npy`` (``"float32"``: values unchanged; ``"float16"``: half the bytes, values
        rounded to 11 significant bits, |error| <= 2.4e-4) that training slices; ``None``: not.
    stream, include, limit : read remote NWB files instead (``input_path`` a URL, a file of
        URLs or a dandiset id; :mod:`.stream`): only the bytes of the sweeps used travel, each
        sample's ``inputs`` records ``bytes_read``.

    force : replace an existing dataset prepared with other parameters (refused otherwise;
        :func:`check_existing_dataset`); ``n_runs_using`` (runs trained on it) goes in the message.

    A re-run reuses a finished cell only when its recording is unchanged (size + mtime, or
    sha256 when those differ; :func:`same_inputs`); a replaced recording is prepared again.

    Raises
    ------
    EphysError
        Missing input, no recordings, bad labels CSV, impossible parameters, an existing dataset
        with other parameters (without ``force``), or no cell could be prepared.
    """
    from ..blocks.readers.patchclamp import discover_cells

    params = (params or ScalogramParams()).check()
    if consolidated not in (None, "float32", "float16"):
        raise EphysError(f"--consolidated must be float32, float16 or none, not {consolidated!r}")
    out = Path(out_dir)
    if stream:
        from .stream import stream_cells

        cells, skipped = stream_cells(str(input_path), labels_csv, include, limit)
    else:
        cells, skipped = discover_cells(input_path, labels_csv)
    skipped = [{"path": str(p), "reason": r} for p, r in skipped]
    if shard is not None:
        k, n = shard
        if not (n >= 1 and 0 <= k < n):
            raise EphysError(f"--shard {k}/{n}: need 0 <= K < N")
        cells = cells[k::n]
    import time

    check_writable_dir(out, "dataset folder")
    check_existing_dataset(out, params, force, n_runs_using, log)
    started = time.time()
    created = not out.exists()
    try:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        remove_stale_parts(out / "samples", started)  # a killed run's leftovers; a live shard's stay

        from .runner import run_cells

        results = run_cells(process_cell, cells, (str(out), params), scheduler, workers,
                            lambda sch, w: _client(sch, w, slurm), progress, key=lambda c: c.cell_id)

        order = {c.cell_id: i for i, c in enumerate(cells)}
        results.sort(key=lambda r: order.get(r.get("id"), 0))
        ok = [r for r in results if r["status"] == "ok"]
        skipped += [{"path": r["path"], "reason": r["reason"]} for r in results if r["status"] != "ok"]
        skipped += [f for r in ok for f in r.get("skipped_files", [])]
        if shard is not None:  # one array task's part: the manifest is written by the full run
            return PrepareResult(None, len(ok), sum(1 for r in ok if r.get("resumed")), skipped)
        if not ok:
            reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in skipped[:3])
            raise EphysError(f"no cell could be prepared ({reasons})", input_path)

        label_names = sorted({r["label"] for r in ok if r.get("label")})
        _, freqs = log_scales(params.n_scales, params.f_min_hz, params.f_max_hz, 1.0 / params.bin_s,
                              params.wavelet)
        n_sweeps = len(params.rheobase_multiples)
        samples = []
        for r in ok:
            rec = {k: r[k] for k in ("id", "file", "label", "group", "source", "rheobase_pA", "sweeps",
                                     "inputs", "n_sweeps_read")}
            samples.append(rec)
        manifest = {
            "modality": "scalogram",
            "format_version": FORMAT_VERSION,
            "ephys_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "sample_shape": [params.n_scales, params.n_time, n_sweeps],
            "dtype": "float32",
            "axes": ["frequency", "time", "sweep"],
            "frequencies_hz": [round(float(f), 6) for f in freqs],
            "time_s": [float(params.window_s[0]), float(params.window_s[1])],
            "time_bin_s": params.bin_s,
            "sweep_channels": [f"{m:g}x rheobase" for m in params.rheobase_multiples],
            "value": "log10 |CWT| of the binned spike train (complex Morlet), min-max normalised to [0,1] per cell",
            "label_names": label_names,
            "n_labelled": sum(1 for r in ok if r.get("label")),
            "n_unlabelled": sum(1 for r in ok if not r.get("label")),
            "samples": samples,
            "skipped": skipped,
            "parameters": {**asdict(params), "key": params.key()},
            "provenance": {"input": str(input_path) if stream else str(Path(input_path).resolve()),
                           "labels_csv": str(Path(labels_csv).resolve()) if labels_csv else None,
                           "scheduler": scheduler, "source": "STS, Amprimo et al. 2025"},
        }
        if consolidated:
            from ..core.datasets import write_consolidated

            manifest.update(write_consolidated(out, samples, manifest["sample_shape"], consolidated))
        path = write_json(out / MANIFEST, manifest)
        return PrepareResult(path, len(ok), sum(1 for r in ok if r.get("resumed")), skipped)
    except BaseException:
        if created:  # a failed first run leaves no empty OUT/ or OUT/samples/
            _remove_empty_tree(out)
        raise


def _remove_empty_tree(folder: Path) -> None:
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def count_array_tasks(input_path: str | Path, labels_csv: str | Path | None = None,
                      cells_per_task: int = 25) -> int:
    """How many SLURM array tasks ``prepare scalograms --shard K/N`` needs: ceil(cells / per task).

    Raises EphysError on the same bad input as :func:`prepare_scalograms`.
    """
    from ..blocks.readers.patchclamp import discover_cells

    if cells_per_task < 1:
        raise EphysError(f"--cells-per-task must be >= 1, got {cells_per_task}")
    cells, _ = discover_cells(input_path, labels_csv)
    return max(1, -(-len(cells) // cells_per_task))


def prepare_like(input_path: str | Path, manifest: dict, out_dir: str | Path, log=print) -> Path:
    """The ``prepare_for_predict`` hook of the ``scalogram`` modality: prepare recordings exactly
    as the dataset of ``manifest`` was (same sweeps rule, CWT and normalisation: its recorded
    ``parameters``), in-process; labels are not read. Returns the dataset folder.

    Raises
    ------
    EphysError
        No readable current-clamp cell in the input (each skipped file is listed in the manifest).
    """
    raw = {k: v for k, v in (manifest.get("parameters") or {}).items() if k != "key"}
    known = {f for f in ScalogramParams.__dataclass_fields__}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise EphysError(f"the run's dataset was prepared with parameters this version does not know: "
                         f"{', '.join(unknown)}")
    for k in ("window_s", "rheobase_multiples"):
        if k in raw:
            raw[k] = tuple(raw[k])
    params = ScalogramParams(**raw)
    res = prepare_scalograms(input_path, out_dir, labels_csv=None, params=params, scheduler="synchronous")
    if res.n_ok == 0:
        reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in res.skipped[:3])
        raise EphysError(f"no cell could be prepared ({reasons})", input_path)
    for s in res.skipped:
        log(f"skipped {s['path']}: {s['reason']}")
    return Path(out_dir)
