"""The ``event_patch`` dataset of a simulated cohort: what ``unet1d`` and ``autoencoder`` train on.

Per recording of a ``ephys fetch synthetic --pipeline events`` folder (``recordings.csv``, traces
and ground-truth masks), overlapping patches of the normalised trace with the event mask beside
them (layout: :mod:`ephys.pipelines.events.windows`, :func:`~.windows.write_patch_dataset`);
``group`` = recording, so no recording is on both sides of a split. The folder is written under a
declared prepare step (``ephys prepare event-patches``), run by the core's driver. Then ``ephys train --model unet1d --data OUT`` (or
``--model autoencoder``).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..core.errors import EphysError
from .windows import EventPatchParams

__all__ = ["EventPatchParams", "prepare_event_patches", "discover", "process", "collect"]


def discover(input_path, params=None, labels_csv=None, options=None):
    """The ``prepare event-patches`` step's ``discover`` hook: the recordings of a simulated cohort."""
    from .events_sim import load_cohort

    path = Path(input_path)
    if path.is_file():
        raise EphysError("not a simulated events folder (recordings.csv, traces and masks)", path)
    return load_cohort(path), []


def process(rec: dict, params, out_dir=None, options=None) -> dict:
    """The step's ``process`` hook: one recording cut into normalised patches (:func:`.windows.patch_recording`)."""
    from .windows import patch_recording

    part = patch_recording(rec, params.events_params())
    return {**part, "note": f" ({int(part['has'].sum())} of {len(part['starts'])} patches with events)"}


def collect(out, results: list[dict], params, ctx) -> Path:
    """The step's ``collect`` hook: ``patches.npy``, ``masks.npy`` and ``manifest.json``."""
    from .windows import write_patches

    prm = params.events_params()
    man = write_patches(out, results, prm, provenance={"input": str(Path(ctx.input).resolve()), **asdict(prm),
                                                       "recordings": [r["id"] for r in results]})
    ctx.log(f"{out}: {man['n_samples']} patches of {prm.patch_samples} samples from {len(results)} recordings "
            f"({man['class_counts']['event']} with events)")
    return Path(out) / "manifest.json"


def prepare_event_patches(input: str | Path, out: str | Path, params: EventPatchParams | None = None,
                          log=print) -> Path:
    """Write the patch dataset of the cohort folder ``input`` into ``out`` (``ephys prepare
    event-patches`` from Python); returns ``OUT/manifest.json``.

    Parameters
    ----------
    input : a simulated events folder (``recordings.csv`` naming ``<id>.npy`` traces with
        ``<id>_mask.npy`` masks; :func:`ephys.pipelines.events.events_sim.load_cohort`)
    out : dataset folder (must not hold another dataset)
    params : :class:`EventPatchParams` (default: 1024-sample patches at half overlap, the U-Net's;
        ``EventPatchParams(256)`` for the autoencoder as in ``events-sim``)

    Raises
    ------
    EphysError
        Bad parameters; not a simulated events folder (no ``recordings.csv`` or a missing
        file); ``OUT`` already holds a dataset prepared from other input or parameters.
    """
    from ..core.prepare import ShardOptions, run_prepare
    from . import PREPARE_PATCHES
    from .params import PatchParams

    prm = (params or EventPatchParams()).checked()
    return run_prepare("events", PREPARE_PATCHES, input, out,
                       PatchParams(prm.patch_samples, prm.stride_samples, prm.baseline_ms),
                       run=ShardOptions(scheduler="synchronous"), log=log).main_file
