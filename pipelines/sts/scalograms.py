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

The step is declared in :mod:`ephys.pipelines.sts` (parameters: :class:`.params.ScalogramParams`)
and driven by :func:`ephys.pipelines.core.prepare.run_prepare`: cells run in-process, or in
parallel on dask when that pays (``--scheduler auto``, the rule in :mod:`ephys.pipelines.core.runner`;
or always a LocalCluster, SLURM workers, a scheduler address). A cell whose files are already
written with the same parameters is not recomputed, so a killed run resumes; every file is written
under a temporary name and renamed. ``manifest.json`` is written last.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..core.atomic import sha256_file, write_json, write_npy
from ..blocks.signal.cwt import cwt, log_scales
from ..core.errors import EphysError
from ..core.prepare import PrepareOutcome as PrepareResult, ShardOptions, run_prepare
from ..core.runner import SlurmWorkers
from ..blocks.signal.spike_train import bin_spike_train, choose_sweeps
from .params import ScalogramOptions, ScalogramParams

__all__ = ["ScalogramParams", "ScalogramOptions", "PrepareResult", "SlurmWorkers", "prepare_scalograms",
           "scalogram_from_spike_trains", "discover", "process_cell", "collect", "prepare_like", "count_array_tasks"]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


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


def discover(input_path, params: ScalogramParams, labels_csv=None, options: ScalogramOptions | None = None):
    """The cells of INPUT: ``(cells, skipped)`` (the step's ``discover`` hook).

    Local files (:func:`~ephys.pipelines.blocks.readers.patchclamp.discover_cells`) or, with
    ``options.stream``, remote NWB files (:func:`.stream.stream_cells`).
    """
    from ..blocks.readers.patchclamp import discover_cells

    options = options or ScalogramOptions()
    if options.stream:
        from .stream import stream_cells

        cells, skipped = stream_cells(str(input_path), labels_csv, options.include, options.limit)
    else:
        cells, skipped = discover_cells(input_path, labels_csv)
    return cells, [{"path": str(p), "reason": r} for p, r in skipped]


def process_cell(cell, params: ScalogramParams, out_dir: str, options=None) -> dict:
    """Make (or reuse) one cell's scalogram (the step's ``process`` hook; runs on a dask worker).

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
    return {**meta, "note": _bytes_note(meta)}


def _bytes_note(rec: dict) -> str:
    """`` (412 kB of 2.1 MB read)`` for a streamed cell's progress line, else ''."""
    got = [i for i in rec.get("inputs") or [] if i.get("bytes_read") is not None]
    if not got:
        return ""
    n, size = sum(i["bytes_read"] for i in got), sum(i.get("size") or 0 for i in got)
    return f" ({n / 1e3:.0f} kB of {size / 1e6:.1f} MB read)"


def partial_keys(out: Path) -> set:
    """Parameter keys of the cells an unfinished run left in ``OUT/samples/`` (the step's hook)."""
    keys = set()
    for meta in (Path(out) / "samples").glob("*.json"):
        try:
            keys.add(json.loads(meta.read_text()).get("params_key"))
        except (OSError, ValueError):
            continue
    return {k for k in keys if k}


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


def collect(out: Path, results: list[dict], params: ScalogramParams, ctx) -> Path:
    """Write ``manifest.json`` from the cells' records (the step's ``collect`` hook); returns its path.

    Raises
    ------
    EphysError
        No cell could be prepared (the first reasons are named).
    """
    options = ctx.options or ScalogramOptions()
    ok = [r for r in results if r["status"] == "ok"]
    skipped = ctx.skipped
    skipped += [{"path": r["path"], "reason": r["reason"]} for r in results if r["status"] != "ok"]
    skipped += [f for r in ok for f in r.get("skipped_files", [])]
    if not ok:
        reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in skipped[:3])
        raise EphysError(f"no cell could be prepared ({reasons})", ctx.input)
    label_names = sorted({r["label"] for r in ok if r.get("label")})
    _, freqs = log_scales(params.n_scales, params.f_min_hz, params.f_max_hz, 1.0 / params.bin_s, params.wavelet)
    n_sweeps = len(params.rheobase_multiples)
    samples = [{k: r[k] for k in ("id", "file", "label", "group", "source", "rheobase_pA", "sweeps", "inputs",
                                  "n_sweeps_read")} for r in ok]
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
        "provenance": {"input": str(ctx.input) if options.stream else str(Path(ctx.input).resolve()),
                       "labels_csv": str(Path(ctx.labels_csv).resolve()) if ctx.labels_csv else None,
                       "scheduler": ctx.scheduler, "source": "STS, Amprimo et al. 2025"},
    }
    if options.consolidated != "none":
        from ..core.datasets import write_consolidated

        manifest.update(write_consolidated(out, samples, manifest["sample_shape"], options.consolidated))
    return write_json(out / MANIFEST, manifest)


def prepare_scalograms(input_path: str | Path, out_dir: str | Path, labels_csv: str | Path | None = None,
                       params: ScalogramParams | None = None, workers: int | None = None,
                       scheduler: str = "auto",
                       progress: Callable[[int, int, dict], None] | None = None,
                       shard: tuple[int, int] | None = None,
                       slurm: SlurmWorkers | None = None,
                       consolidated: str | None = "float32", stream: bool = False,
                       include: str | None = None, limit: int | None = None, force: bool = False,
                       n_runs_using: int = 0, log: Callable[[str], None] = print) -> PrepareResult:
    """Prepare a scalogram dataset from a recording file or folder (``ephys prepare scalograms``
    from Python).

    Parameters
    ----------
    input_path : file or folder of NWB/ABF recordings.
    out_dir : dataset folder to create (``manifest.json`` + ``samples/``).
    labels_csv : optional CSV with ``path,label`` (``unknown`` = unlabelled).
    params : ScalogramParams (defaults as in STS).
    workers : dask worker processes for the local cluster (default: all cores).
    scheduler : ``auto`` (in-process unless a LocalCluster would save more than it costs to
        start: the rule in :mod:`ephys.pipelines.core.runner`), ``local`` (always a LocalCluster),
        ``synchronous`` (in-process), ``slurm`` (dask-jobqueue SLURMCluster: ``workers`` sbatch
        jobs, settings in ``slurm``), or a dask scheduler address such as ``tcp://host:8786``.
    progress : called as ``progress(done, total, {"key", "resumed", "result"})`` after each cell.
    shard : ``(k, n)``: prepare only cells ``k, k+n, k+2n, ...`` of the discovery order (one
        SLURM array task's part) and write no manifest; a later run without ``shard`` finds
        every cell done and writes the manifest.
    consolidated : besides ``samples/<cell>.npy``, write all samples as one memory-mappable
        ``samples.npy`` (``"float32"``: values unchanged; ``"float16"``: half the bytes, values
        rounded to 11 significant bits, |error| <= 2.4e-4) that training slices; ``None``: not.
    stream, include, limit : read remote NWB files instead (``input_path`` a URL, a file of
        URLs or a dandiset id; :mod:`.stream`): only the bytes of the sweeps used travel, each
        sample's ``inputs`` records ``bytes_read``.
    force : replace an existing dataset prepared with other parameters (refused otherwise);
        ``n_runs_using`` (runs trained on it) goes in the message.

    A re-run reuses a finished cell only when its recording is unchanged (size + mtime, or
    sha256 when those differ; :func:`same_inputs`); a replaced recording is prepared again.

    Raises
    ------
    EphysError
        Missing input, no recordings, bad labels CSV, impossible parameters, an existing dataset
        with other parameters (without ``force``), or no cell could be prepared.
    """
    from . import PREPARE_SCALOGRAMS

    if consolidated not in (None, "float32", "float16"):
        raise EphysError(f"--consolidated must be float32, float16 or none, not {consolidated!r}")
    options = ScalogramOptions(stream=stream, include=include, limit=limit, consolidated=consolidated or "none")
    return run_prepare("sts", PREPARE_SCALOGRAMS, input_path, out_dir, params or ScalogramParams(),
                       options=options, labels_csv=labels_csv, force=force,
                       run=ShardOptions(scheduler=scheduler, workers=workers, slurm=slurm, shard=shard),
                       n_runs_using=n_runs_using, progress=progress, log=log)


def count_array_tasks(input_path: str | Path, labels_csv: str | Path | None = None,
                      cells_per_task: int = 25) -> int:
    """How many SLURM array tasks ``prepare scalograms --shard K/N`` needs: ceil(cells / per task).

    Raises EphysError on the same bad input as :func:`prepare_scalograms`.
    """
    from ..core.prepare import count_tasks
    from . import PREPARE_SCALOGRAMS

    return count_tasks(PREPARE_SCALOGRAMS, input_path, labels_csv=labels_csv, items_per_task=cells_per_task)


def prepare_like(input_path: str | Path, manifest: dict, out_dir: str | Path, log=print) -> Path:
    """The ``prepare_for_predict`` hook of the ``scalogram`` modality, for datasets whose manifest
    does not name the step that made them: prepare recordings exactly as the dataset of
    ``manifest`` was (its recorded ``parameters``), in-process; labels are not read.

    Raises
    ------
    EphysError
        Parameters this version does not know, or no readable current-clamp cell in the input.
    """
    from ..core.params import from_record

    params = from_record(ScalogramParams, manifest.get("parameters") or {})
    res = prepare_scalograms(input_path, out_dir, labels_csv=None, params=params, scheduler="synchronous", log=log)
    for s in res.skipped:
        log(f"skipped {s['path']}: {s['reason']}")
    return Path(out_dir)


def sample_stats(manifest: dict, indices: list[int]) -> dict[str, "np.ndarray"]:
    """The scalogram modality's ``sample_stats`` hook (a run's training range, ``ephys predict``'s
    out-of-range flags): per cell, from its manifest entry, the median over its chosen sweeps of

    * ``protocol_length_s``: the current step's duration (``step_s`` end - start), s;
    * ``sampling_rate_hz``: the sweep's sampling rate, Hz;
    * ``rheobase_pA``: the cell's rheobase, pA.

    NaN where the entry does not record it (a dataset from an older version)."""
    samples = manifest.get("samples") or []
    out = {k: np.full(len(indices), np.nan) for k in ("protocol_length_s", "sampling_rate_hz", "rheobase_pA")}
    for j, i in enumerate(indices):
        s = samples[i] if 0 <= i < len(samples) else {}
        sweeps = [w for w in (s.get("sweeps") or []) if isinstance(w, dict)]
        steps = [float(w["step_s"][1]) - float(w["step_s"][0]) for w in sweeps
                 if isinstance(w.get("step_s"), (list, tuple)) and len(w["step_s"]) == 2]
        rates = [float(w["fs_hz"]) for w in sweeps if isinstance(w.get("fs_hz"), (int, float))]
        if steps:
            out["protocol_length_s"][j] = float(np.median(steps))
        if rates:
            out["sampling_rate_hz"][j] = float(np.median(rates))
        if isinstance(s.get("rheobase_pA"), (int, float)):
            out["rheobase_pA"][j] = float(s["rheobase_pA"])
    return out
