"""``ephys prepare mer INPUT OUT``: microelectrode recordings -> a feature-table dataset.

Per recording (see :mod:`ephys.pipelines.mer.dsp`): convert to µV (the input's unit: ``--units``,
NWB's, else µV after a plausibility check; :mod:`.readers`), resample to 24 kHz (polyphase) when the
input rate differs, filter (band-pass + 96 notches, causal), remove artifacts (variance ratio on
100-ms windows), then the 9 ML-STIM features of every 1-s segment with 50 % overlap. One row
per segment in ``features.npy`` / ``features.csv`` (unscaled, in the published order), with
``group`` = patient; ``features.csv`` also has ``recording``, ``patient``, ``side``,
``electrode``, ``depth_um``, ``segment_start_s`` (time of the segment's first sample in the
original recording) and ``artifact_fraction`` (of its recording). The manifest lists every
recording (``recordings``) with its artifact fraction, number of segments and, for those with
less than one second left after artifact removal, the reason they have no rows;
``artifact_masks.npz`` holds each recording's detected artifact samples (key ``r{index}``).

Everything is read and checked before anything is written; the manifest is written last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..core.atomic import atomic_path
from ..core.layouts import write_feature_table
from .dsp import (ARTIFACT_THRESHOLD, ARTIFACT_WINDOW_S, FEATURE_NAMES, FS_HZ, NOTCH_HZ, SEGMENT_S, process_fast,
                  resample_ratio)
from .readers import MerRecording, read_input

LABEL_NAMES = ("outside", "inside")
#: detected artifact masks (bool, at 24 kHz), key ``r{index}`` = the index in ``recordings``
MASKS = "artifact_masks.npz"
FEATURE_UNITS = {"mad": "uV", "zero_crossings": "count per 1-s segment"}
PARAMETERS = {
    "fs_hz": FS_HZ,
    "filter": "one Butterworth order 6 band-pass 250-5000 Hz, then iirnotch Q=50 at "
              f"{int(NOTCH_HZ[0])}..{int(NOTCH_HZ[-1])} Hz every 50 Hz ({len(NOTCH_HZ)} notches); causal; "
              "after resampling to 24 kHz",
    "artifact_window_s": ARTIFACT_WINDOW_S,
    "artifact_hop_s": ARTIFACT_WINDOW_S / 2,
    "artifact_threshold": ARTIFACT_THRESHOLD,
    "segment_s": SEGMENT_S,
    "segment_overlap": 0.5,
    "welch_nperseg": int(0.1 * FS_HZ),
    "source": "Sciscenti et al. 2025, ML-STIM, J Neural Eng, doi 10.1088/1741-2552/adf579",
}


def process_recordings(recs: list[MerRecording], progress: Callable[[int, int], None] | None = None):
    """Features and artifact masks of every recording (fast path).

    Returns
    -------
    list of (features (n_seg, 9) float64, clean-to-original sample index (n_clean,) int64,
    artifact mask (n_24k,) bool) per recording.
    """
    out = []
    for i, r in enumerate(recs):
        feats, mask = process_fast(r.signal, r.fs_hz)
        out.append((feats, np.flatnonzero(~mask), mask))
        if progress:
            progress(i + 1, len(recs))
    return out


def discover(input_path, params=None, labels_csv=None, options=None):
    """The ``prepare mer`` step's ``discover`` hook: every recording of INPUT, read in µV and checked
    (:func:`.readers.read_input`; ``options`` is a :class:`.params.MerInput`: unit and rate), plus what
    the reader found (format, files)."""
    recs, info = read_input(input_path, getattr(options, "fs_hz", None), getattr(options, "units", None))
    return recs, [], {"info": info}


def process(rec: MerRecording, params=None, out_dir=None, options=None) -> dict:
    """The step's ``process`` hook: one recording's features (n_seg, 9) float64, the clean-to-original
    sample index and the artifact mask (fast path, :func:`.dsp.process_fast`)."""
    feats, mask = process_fast(rec.signal, rec.fs_hz)
    res = {"feats": feats, "keep_idx": np.flatnonzero(~mask), "mask": mask}
    if feats.shape[0] == 0:  # no full segment: listed with its reason, no row (shown as skipped)
        res["status"] = "no segment"
    return res


def collect(out, results: list[dict], params, ctx) -> Path:
    """The step's ``collect`` hook: the feature table (one row per segment) and the artifact masks."""
    recs, info = ctx.items, ctx.discovered["info"]
    return _write(Path(ctx.input), recs, info, [(r["feats"], r["keep_idx"], r["mask"]) for r in results], out,
                  ctx.log)


def prepare_mer(input_path: str | Path, out: str | Path, fs_hz: float | None = None,
                progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None,
                units: str | None = None) -> Path:
    """Prepare ``input_path`` (ML-STIM folder / files, CSV / ``.npy`` columns) into ``out``
    (``ephys prepare mer`` from Python).

    Parameters
    ----------
    fs_hz : sampling rate of the input in Hz (default the file's, else 24 kHz); other rates are
        resampled to 24 kHz before filtering and the manifest records it.
    units : the input's unit, ``uV`` | ``mV`` | ``V`` (default the file's, else µV after a
        plausibility check; see :mod:`.readers`).
    progress : ``progress(done, total)`` after each recording.

    Returns
    -------
    Path of the written ``manifest.json``.

    Raises
    ------
    EphysError
        Any bad input (see :mod:`ephys.pipelines.mer.readers`), or no recording with a full
        second left after artifact removal (recordings without one are listed in the manifest
        with their reason when others have rows).
    """
    from ..core.prepare import ShardOptions, run_prepare
    from . import PREPARE_MER
    from .params import MerInput, MerParams

    res = run_prepare("mer", PREPARE_MER, input_path, out, MerParams(), options=MerInput(units=units, fs_hz=fs_hz),
                      run=ShardOptions(scheduler="synchronous"),
                      progress=(lambda d, t, _: progress(d, t)) if progress else None, log=log or (lambda m: None))
    return res.main_file


def _write(input_path: Path, recs, info, results, out, log) -> Path:
    ids, X, labels, groups = [], [], [], []
    extra = {k: [] for k in ("recording", "patient", "side", "electrode", "depth_um", "segment_start_s",
                             "artifact_fraction")}
    records = []
    for r, (feats, keep_idx, mask) in zip(recs, results):
        frac = float(mask.mean()) if mask.size else 0.0
        rec = {"id": r.id, "patient": r.patient, "side": r.side, "electrode": r.electrode,
               "depth_um": None if np.isnan(r.depth_um) else r.depth_um,
               "label": None if r.label is None else LABEL_NAMES[r.label], "n_samples": int(r.signal.size),
               "fs_hz_in": r.fs_hz, "units_in": r.units_in, "artifact_fraction": round(frac, 6),
               "n_segments": int(feats.shape[0]),
               "source": r.source, "row": r.row}
        if feats.shape[0] == 0:
            rec["reason"] = (f"less than {SEGMENT_S:g} s left after artifact removal "
                             f"({keep_idx.size / FS_HZ:.2f} s of {mask.size / FS_HZ:.2f} s)")
        records.append(rec)
        step = int(SEGMENT_S * FS_HZ / 2)
        for k in range(feats.shape[0]):
            ids.append(f"{r.id}_s{k:03d}")
            X.append(feats[k])
            labels.append(None if r.label is None else LABEL_NAMES[r.label])
            groups.append(r.patient)
            extra["recording"].append(r.id)
            extra["patient"].append(r.patient)
            extra["side"].append(r.side)
            extra["electrode"].append(r.electrode)
            extra["depth_um"].append("" if np.isnan(r.depth_um) else f"{r.depth_um:g}")
            extra["segment_start_s"].append(f"{keep_idx[k * step] / FS_HZ:.4f}")
            extra["artifact_fraction"].append(f"{frac:.4f}")
    if not ids:
        from ..core.errors import EphysError

        raise EphysError(f"no recording has a full {SEGMENT_S:g}-s segment left after artifact removal (e.g. "
                         f"{records[0]['id']}: {records[0].get('reason', 'no segment')}): no feature row to write",
                         input_path)
    rates = sorted({r.fs_hz for r in recs})
    resampled = {f"{fs:g}": f"resampled to {FS_HZ} Hz (scipy.signal.resample_poly, up/down "
                 f"{'/'.join(map(str, resample_ratio(fs)))})" for fs in rates if fs != FS_HZ}
    provenance = {"input": str(Path(input_path)), "format": info["format"], "files": info["files"],
                  "ephys_version": __version__, "parameters": PARAMETERS, "input_fs_hz": rates,
                  "input_units": sorted({r.units_in for r in recs}), "signal_unit": "uV",
                  "resampling": resampled or "none (input at 24 kHz)"}
    out = Path(out)
    with atomic_path(out / MASKS, suffix=".npz") as tmp:  # the detected artifacts, per recording
        np.savez_compressed(tmp, **{f"r{i:05d}": res[2] for i, res in enumerate(results)})
    n_skipped = sum(1 for r in records if r.get("reason"))
    if log:
        log(f"{len(recs)} recordings, {len(ids)} segments; {n_skipped} recordings without a full second "
            "after artifact removal")
    return write_feature_table(
        out, ids, np.asarray(X, dtype=np.float64).reshape(len(ids), len(FEATURE_NAMES)), FEATURE_NAMES, labels, LABEL_NAMES, groups=groups, feature_units=FEATURE_UNITS,
        provenance=provenance, extra_columns=extra,
        extra_manifest={"pipeline": "mer", "fs_hz": FS_HZ, "sample_noun": "segment", "group_noun": "patient",
                        "recordings": records, "artifact_masks": MASKS, "default_split": "grouped",
                        "cv": "lopo"})
