"""Prepared datasets (``manifest.json`` + arrays) and grouped train/validation/test splits.

Every pipeline's ``prepare`` writes a folder with a ``manifest.json`` naming its modality
(scalogram, waveform, feature table, sequence, mask), the sample shape, the label names and one
record per sample with its ``group`` (cell, participant or channel). Splits never put one group
on both sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EphysError


@dataclass
class Dataset:
    """A prepared dataset.

    Attributes
    ----------
    root : Path
    manifest : dict
    ids, groups : list[str]
    labels : list[str | None]      (None = unlabelled)
    label_names : list[str]
    """

    root: Path
    manifest: dict
    ids: list[str]
    groups: list[str]
    labels: list[str | None]
    label_names: list[str]

    @property
    def modality(self) -> str:
        return self.manifest["modality"]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["sample_shape"])

    def path_of(self, i: int) -> Path:
        """File of sample ``i`` (per-sample layout only)."""
        return self.root / self.manifest["samples"][i]["file"]

    def where(self, i: int) -> Path:
        """The file that holds sample ``i`` (its own ``.npy``, or the dataset's one array file)."""
        name = self.manifest.get("array")
        return self.root / name if name else self.path_of(i)

    @property
    def array(self) -> np.ndarray | None:
        """The dataset's one array (memory-mapped), for the single-array layout; else None.

        Single-array layout (e.g. waveforms): ``manifest["array"]`` names one ``.npy`` file of
        shape (n_samples, *sample_shape) and sample ``i`` is its row ``samples[i]["row"]``.
        """
        name = self.manifest.get("array")
        if not name:
            return None
        if getattr(self, "_array", None) is None:
            self._array = load_npy(self.root / name, mmap_mode="r")
            self._rows = np.array([s["row"] for s in self.manifest["samples"]], dtype=np.int64)
        return self._array

    def load(self, indices, dtype=np.float32) -> np.ndarray:
        """Stack samples ``indices`` into one array of ``dtype`` (default float32), shape
        (len(indices), *sample_shape). A consolidated array (``manifest["array"]``) is sliced
        (memory-mapped rows, no file opened per sample).

        Works for both layouts: one ``.npy`` file per sample (``samples[i]["file"]``, e.g.
        scalograms) or one array file for all samples (``manifest["array"]``, e.g. waveforms,
        feature tables — these are read as float64 by LightGBM, whose histogram bins shift
        with float32 rounding).

        ``dtype=None`` keeps the storage dtype (a float16 consolidated array is then delivered as
        float16: half the bytes, and no float16 -> float32 conversion on the CPU, which numpy
        does slowly; the model casts on its device).
        """
        arr = self.array
        if arr is not None:
            rows = self._rows[np.asarray(indices, dtype=np.int64)]
            return np.asarray(arr[rows], dtype=dtype or arr.dtype)
        return np.stack([load_npy(self.path_of(i)).astype(dtype or self.storage_dtype, copy=False)
                         for i in indices])

    def load_mask(self, indices, dtype=np.float32) -> np.ndarray:
        """Per-point masks of samples ``indices`` (segmentation targets), shape
        (len(indices), *sample_shape), ``dtype`` (default float32; 0/1 values).

        The masks live beside the samples: ``manifest["mask_array"]`` names one ``.npy`` file of
        shape (n_samples, *sample_shape) whose row ``samples[i]["row"]`` is sample ``i``'s mask
        (single-array layout only).

        Raises
        ------
        EphysError
            The dataset stores no masks.
        """
        name = self.manifest.get("mask_array")
        if not name:
            raise EphysError("the dataset stores no per-sample masks (no mask_array in its manifest)",
                             self.root / "manifest.json")
        if getattr(self, "_mask", None) is None:
            self.array  # noqa: B018 - reads the rows
            self._mask = load_npy(self.root / name, mmap_mode="r")
        rows = self._rows[np.asarray(indices, dtype=np.int64)]
        return np.asarray(self._mask[rows], dtype=dtype)

    @property
    def storage_dtype(self) -> np.dtype:
        """dtype the samples are stored in: the consolidated array's (float16 when the dataset
        was consolidated so), else ``manifest["dtype"]`` (float32 by default)."""
        arr = self.array
        return arr.dtype if arr is not None else np.dtype(self.manifest.get("dtype", "float32"))

    def fingerprint(self) -> str:
        """:func:`dataset_fingerprint` of the manifest, computed once per Dataset (a
        cross-validation trains many folds of one dataset)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = dataset_fingerprint(self.manifest)
        return self._fingerprint

    def labelled_indices(self) -> np.ndarray:
        return np.array([i for i, lab in enumerate(self.labels) if lab], dtype=np.int64)

    def y(self, indices) -> np.ndarray:
        """Integer class indices (into ``label_names``) for labelled samples ``indices``."""
        pos = {n: k for k, n in enumerate(self.label_names)}
        return np.array([pos[self.labels[i]] for i in indices], dtype=np.int64)


CONSOLIDATED = "samples.npy"


def write_consolidated(root: str | Path, samples: list[dict], sample_shape, dtype: str = "float32",
                       name: str = CONSOLIDATED) -> dict:
    """Write one memory-mappable array of all per-sample ``.npy`` files of a dataset.

    ``samples``: manifest records with ``"file"`` (relative to ``root``), each of shape
    ``sample_shape``; sample ``i`` becomes row ``i`` (``samples[i]["row"] = i`` is set). The
    array, shape ``(len(samples), *sample_shape)``, ``dtype`` float32 (values unchanged) or
    float16 (half the bytes; values in [0, 1] are rounded to 11 significant bits: absolute error
    <= 2**-12 ~ 2.4e-4 near 1, smaller below), is written under a temporary name and renamed.
    The per-sample files stay (shards and resume use them).

    Returns the manifest fields to add: ``{"array": name, "array_dtype": dtype}``.

    Raises
    ------
    EphysError
        Unknown dtype, or a sample file of another shape.
    """
    from .atomic import atomic_path

    if dtype not in ("float32", "float16"):
        raise EphysError(f"consolidated dtype must be float32 or float16, not {dtype!r}")
    root = Path(root)
    shape = (len(samples), *[int(v) for v in sample_shape])
    with atomic_path(root / name, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        for i, s in enumerate(samples):
            x = np.load(root / s["file"], mmap_mode="r")
            if x.shape != shape[1:]:
                raise EphysError(f"sample {s['file']} has shape {x.shape}, not {shape[1:]}", root)
            out[i] = x
            s["row"] = i
        out.flush()
        del out
    return {"array": name, "array_dtype": dtype}


#: manifest keys that do not change what the samples are (a resumed prepare rewrites them)
_NOT_CONTENT = ("created", "ephys_version", "provenance", "prepared_by", "skipped", "fingerprint")


def dataset_fingerprint(manifest: dict) -> str:
    """A short hash of what a prepared dataset holds: every manifest field except the volatile
    ones (creation time, version, provenance, skipped files): sample ids, files/rows, labels,
    groups, input checksums, shape and preparation parameters.

    ``ephys train`` records it in ``config.yaml`` (``dataset_fingerprint``); ``evaluate``,
    ``predict`` and ``report`` refuse a dataset whose fingerprint changed under the run. A
    re-run of ``prepare`` that changed nothing gives the same fingerprint.

    Returns
    -------
    str, 16 hex digits.
    """
    import hashlib

    def strip(o):  # file times are bookkeeping for resume, not content (the sha256 is)
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in ("mtime_ns", "resumed")}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    content = strip({k: v for k, v in manifest.items() if k not in _NOT_CONTENT})
    blob = json.dumps(content, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check_same_dataset(recorded: str | None, manifest: dict, where: str | Path, data_dir: str | Path) -> None:
    """Refuse a dataset that changed since a run was trained on it.

    Parameters
    ----------
    recorded : the run's ``config.yaml`` ``dataset_fingerprint`` (None for runs from before it
        was recorded: nothing is checked).
    manifest : the dataset's manifest now. where : the run's config.yaml (named in the error).

    Raises
    ------
    EphysError
        The fingerprints differ.
    """
    if not recorded:
        return
    now = dataset_fingerprint(manifest)
    if now != str(recorded):
        raise EphysError(f"the dataset {data_dir} changed since this run was trained on it (fingerprint "
                         f"{now}, the run recorded {recorded}: re-prepared with other parameters or inputs); "
                         "re-train the run, or restore the dataset", where)


def load_npy(path: str | Path, mmap_mode: str | None = None, hint: str = "re-run `ephys prepare`") -> np.ndarray:
    """``np.load`` of an array file with damage reported as one line naming the file.

    ``hint`` ends the message (default: the advice for a prepared dataset's arrays; pass ``""``
    for input files, which ephys did not write).

    Raises
    ------
    EphysError
        Missing, empty (0 bytes), truncated or not a ``.npy`` file (pickled objects refused).
    """
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    try:
        if path.stat().st_size == 0:
            raise EphysError(f"empty file (0 bytes{tail})", path)
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise EphysError(f"array file is missing{' (' + hint + ')' if hint else ''}", path) from None
    except (EOFError, ValueError, OSError) as exc:  # truncated, not .npy, pickled
        raise EphysError(f"damaged array file (truncated or not .npy; {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]}{tail})", path) from None


def load_dataset(root: str | Path) -> Dataset:
    """Open a prepared dataset folder.

    Raises
    ------
    EphysError
        Folder or manifest missing, manifest unreadable, or a sample file missing.
    """
    root = Path(root)
    mpath = root / "manifest.json"
    if not root.exists():
        raise EphysError("no such dataset folder; run `ephys prepare` first", root)
    if not mpath.is_file():
        raise EphysError("not a prepared dataset (no manifest.json); run `ephys prepare` first", root)
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EphysError(f"unreadable manifest ({' '.join(str(exc).split())})", mpath) from None
    if not isinstance(manifest, dict):
        raise EphysError("manifest is not a JSON object", mpath)
    for key in ("modality", "samples", "label_names"):
        if key not in manifest:
            raise EphysError(f"manifest has no '{key}' field", mpath)
    samples = manifest["samples"]
    if not isinstance(samples, list) or not all(isinstance(x, dict) and "id" in x for x in samples):
        raise EphysError("manifest 'samples' is not a list of records with an 'id'", mpath)
    if manifest.get("array"):
        apath = root / manifest["array"]
        if not apath.is_file():
            raise EphysError(f"array file {manifest['array']} is missing (re-run `ephys prepare`)", root)
        shape = load_npy(apath, mmap_mode="r").shape
        rows = [s.get("row") for s in samples]
        if any(not isinstance(r, int) or not 0 <= r < shape[0] for r in rows):
            raise EphysError(f"manifest sample rows do not fit {manifest['array']} ({shape[0]} rows)", mpath)
        if manifest.get("mask_array"):
            mshape = load_npy(root / manifest["mask_array"], mmap_mode="r").shape
            if mshape != shape:
                raise EphysError(f"mask array {manifest['mask_array']} has shape {mshape}, the samples "
                                 f"{shape}", mpath)
    for s in samples:
        if "file" in s:
            f = root / s["file"]
            if not f.is_file():
                raise EphysError(f"sample file {s['file']} is missing (re-run `ephys prepare`)", root)
            if f.stat().st_size == 0:
                raise EphysError("empty sample file (0 bytes; re-run `ephys prepare`)", f)
    return Dataset(root=root, manifest=manifest, ids=[s["id"] for s in samples],
                   groups=[s.get("group", s["id"]) for s in samples],
                   labels=[s.get("label") or None for s in samples],
                   label_names=list(manifest["label_names"]))


def grouped_split(labels: list[str], groups: list[str], test_fraction: float = 0.2,
                  val_fraction: float = 0.2, seed: int = 0) -> dict[str, list[int]]:
    """Stratified split by group into train / val / test index lists.

    Groups (cells, participants, channels) are shuffled within each class (a group's class is
    its first sample's label) and dealt so each class contributes ~``test_fraction`` of its
    groups to test and ~``val_fraction`` of the rest to validation, with at least one group per
    class in test and in validation when the class has three or more groups. No group appears in
    two parts.

    Returns
    -------
    dict with keys ``train``, ``val``, ``test``: sorted lists of sample indices.
    """
    rng = np.random.default_rng(seed)
    group_label: dict[str, str] = {}
    for lab, g in zip(labels, groups):
        group_label.setdefault(g, lab)
    part_of_group: dict[str, str] = {}
    for cls in sorted(set(group_label.values())):
        gs = sorted(g for g, lab in group_label.items() if lab == cls)
        rng.shuffle(gs)
        n = len(gs)
        n_test = int(round(n * test_fraction))
        n_val = int(round((n - n_test) * val_fraction))
        if n >= 3:
            n_test, n_val = max(1, n_test), max(1, n_val)
        elif n == 2:
            n_test, n_val = 1, 0
        for k, g in enumerate(gs):
            part_of_group[g] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    out = {"train": [], "val": [], "test": []}
    for i, g in enumerate(groups):
        out[part_of_group[g]].append(i)
    return out


def named_split(groups: list[str], splits: dict, name: str, where: str | Path | None = None
                ) -> dict[str, list[int]]:
    """A published split offered by a dataset's manifest, as index lists into ``groups``.

    Parameters
    ----------
    groups : list[str]
        Group (cell, participant, channel) of each candidate sample.
    splits : dict
        ``manifest["splits"]``: ``{name: {"train": [group, ...], "val": [...], "test": [...]}}``
        (e.g. the spike seed's ``"seed"``: channels 9, 16, 33 / 11 / 40).
    name : str
        Which split.

    Returns
    -------
    dict with keys ``train``, ``val``, ``test``: sorted lists of positions in ``groups``;
    samples whose group is in no part are left out.

    Raises
    ------
    EphysError
        Unknown split name (the message lists those offered), a group on two sides, or a
        train or test part with no sample.
    """
    splits = splits or {}
    if name not in splits:
        offered = ", ".join(sorted(splits)) or "none"
        raise EphysError(f"the dataset offers no split named {name!r} (offered: {offered}; "
                         "'grouped' is the random grouped split)", where)
    spec = splits[name]
    part_of: dict[str, str] = {}
    for part in ("train", "val", "test"):
        for g in spec.get(part) or []:
            g = str(g)
            if g in part_of:
                raise EphysError(f"split {name!r} puts group {g} in both {part_of[g]} and {part}", where)
            part_of[g] = part
    out = {"train": [], "val": [], "test": []}
    for i, g in enumerate(groups):
        part = part_of.get(str(g))
        if part:
            out[part].append(i)
    for part in ("train", "test"):
        if not out[part]:
            raise EphysError(f"split {name!r} has no labelled sample in its {part} part", where)
    return out
