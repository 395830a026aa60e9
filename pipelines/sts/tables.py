"""The STS paper's feature-table dataset: Allen "PatchClamp" + Patch-seq EP features, labels, split.

Source: Amprimo et al. 2025, *Spike Train Scalograms (STS)* (smilies-polito/spike-trains-scalograms,
``data/Split``), whose LightGBM baseline classifies 5,590 mouse visual-cortex neurons from the
electrophysiological (EP) feature tables the Allen Institute computed with IPFX:

- ``PatchClamp_EP_features.csv`` — Allen Cell Types "PatchClamp" cells (Gouwens et al. 2019,
  Nat Neurosci 22:1182), keyed by ``specimen_id`` (its ``id`` column is the feature record's
  own id, not the cell's);
- ``PatchSeq_EP_features.csv`` — Patch-seq cells of DANDI 000020 (Gouwens et al. 2020, Cell
  183:935), keyed by ``cell_specimen_id``;
- ``cell_types_GouwensAll_new.txt`` — ``Label specimen_id`` lines; labels Excitatory, Pvalb, Sst,
  Vip/Lamp5 and Unsure (Unsure is kept out of training and scoring);
- ``Train_split.csv`` / ``Test_split.csv`` — ``specimen_id, Seq|Clamp``, no header.

What the importer keeps (one row per cell of either table; the columns both tables share):

- every shared feature measured in mV, pA, MΩ, ms or without unit (30 columns);
- **not** the 15 absolute time stamps (``*_t_long_square``, ``*_t_ramp``, ``*_t_short_square``):
  they are seconds since the start of the sweep, and the two datasets start their stimuli at
  different times (spikes at ~1.1 s in PatchClamp, ~0.6 s in Patch-seq), so as features they
  mostly say which dataset a cell came from — and the datasets' class mixes differ (80 % of the
  Excitatory cells are PatchClamp). Their differences are physiology, so we keep those instead:
  per protocol, AP rise time (threshold→peak), delays peak→fast trough, peak→trough,
  peak→slow trough (ms), AP height (peak − threshold) and fast AHP depth
  (threshold − fast trough) (mV) — 18 derived columns, 48 features in all.

Named feature sets in the manifest (``ephys train --model lightgbm --hparam feature_set=NAME``):

- ``sts_recipe`` — the STS baseline's input: the long-square features common to both tables
  (16, absolute time stamps dropped). LightGBM with default settings on it scores balanced
  accuracy 0.904 on the STS test split here (the issue's reference: 0.905);
- ``long_square`` — ``sts_recipe`` + the 6 derived long-square kinetics (22);
- ``long_square+short_square`` — and the short-square (3 ms pulse) features (35);
- ``all`` — and the ramp features (48).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import EphysError
from ..core.layouts import write_feature_table

CLAMP_TABLE = "PatchClamp_EP_features.csv"
SEQ_TABLE = "PatchSeq_EP_features.csv"
LABELS_FILE = "cell_types_GouwensAll_new.txt"
TRAIN_SPLIT = "Train_split.csv"
TEST_SPLIT = "Test_split.csv"

#: the four STS classes, in the order models index them (Amprimo et al. 2025)
STS_CLASSES = ("Excitatory", "Pvalb", "Sst", "Vip/Lamp5")
#: label of cells the STS authors could not assign; kept in the table, never trained or scored on
UNSURE = "Unsure"
PROTOCOLS = ("long_square", "short_square", "ramp")

#: shared features without a protocol suffix, with units (Allen Cell Types feature glossary)
CELL_FEATURES = {
    "adaptation": "",            # IPFX adaptation index of the hero sweep's ISIs
    "avg_isi": "ms",             # mean inter-spike interval, hero sweep
    "f_i_curve_slope": "Hz/pA",  # slope of firing rate vs step current
    "latency": "s",              # stimulus onset -> first spike, rheobase sweep
    "ri": "MOhm",                # input resistance
    "sag": "",                   # sag ratio, most hyperpolarising step
    "tau": "ms",                 # membrane time constant
    "vm_for_sag": "mV",          # membrane potential at which sag was measured
    "vrest": "mV",               # resting membrane potential
}
#: per-protocol features kept as they are, with units
PROTOCOL_FEATURES = {
    "threshold_v": "mV", "peak_v": "mV", "fast_trough_v": "mV", "trough_v": "mV",
    "slow_trough_v": "mV", "threshold_i": "pA", "upstroke_downstroke_ratio": "",
}
#: derived per-protocol features: name -> (unit, formula on the Allen columns, scale)
DERIVED = {
    "ap_rise_ms": ("ms", ("peak_t", "threshold_t"), 1e3),
    "fast_trough_delay_ms": ("ms", ("fast_trough_t", "peak_t"), 1e3),
    "trough_delay_ms": ("ms", ("trough_t", "peak_t"), 1e3),
    "slow_trough_delay_ms": ("ms", ("slow_trough_t", "peak_t"), 1e3),
    "ap_height_mv": ("mV", ("peak_v", "threshold_v"), 1.0),
    "fast_ahp_mv": ("mV", ("threshold_v", "fast_trough_v"), 1.0),
}


def _read_csv(path: Path, **kw):
    import pandas as pd

    if not path.is_file():
        raise EphysError("missing (the STS data folder needs PatchClamp_EP_features.csv, PatchSeq_EP_features.csv, "
                         "cell_types_GouwensAll_new.txt, Train_split.csv and Test_split.csv)", path)
    try:
        return pd.read_csv(path, **kw)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable CSV ({str(exc).splitlines()[0]})", path) from None


def _need(df, cols, path: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise EphysError(f"missing columns {missing[:5]}{' …' if len(missing) > 5 else ''}", path)


def _column_names() -> tuple[list[str], dict[str, str]]:
    names, units = [], {}
    for f, u in CELL_FEATURES.items():
        names.append(f)
        units[f] = u
    for proto in PROTOCOLS:
        for f, u in PROTOCOL_FEATURES.items():
            names.append(f"{f}_{proto}")
            units[f"{f}_{proto}"] = u
        for f, (u, _, _) in DERIVED.items():
            names.append(f"{f}_{proto}")
            units[f"{f}_{proto}"] = u
    return names, units


def feature_sets(names: list[str]) -> dict[str, list[str]]:
    """The named feature sets of the STS dataset (see the module docstring)."""
    recipe = list(CELL_FEATURES) + [f"{f}_long_square" for f in PROTOCOL_FEATURES]
    ls = recipe + [f"{f}_long_square" for f in DERIVED]
    ss = ls + [f"{f}_short_square" for f in (*PROTOCOL_FEATURES, *DERIVED)]
    return {"sts_recipe": recipe, "long_square": ls, "long_square+short_square": ss, "all": list(names)}


def _table(df, id_col: str, path: Path):
    """Allen feature table -> DataFrame indexed by specimen id with our column names (float)."""
    import pandas as pd

    raw = [*CELL_FEATURES] + [f"{f}_{p}" for p in PROTOCOLS for f in PROTOCOL_FEATURES]
    raw += sorted({f"{c}_{p}" for p in PROTOCOLS for _, pair, _ in DERIVED.values() for c in pair} - set(raw))
    _need(df, [id_col, *raw], path)
    ids = pd.to_numeric(df[id_col], errors="coerce")
    if ids.isna().any():
        raise EphysError(f"column {id_col} has {int(ids.isna().sum())} non-numeric specimen ids", path)
    if ids.duplicated().any():
        raise EphysError(f"specimen ids repeat in {id_col} (e.g. {int(ids[ids.duplicated()].iloc[0])})", path)
    num = df[raw].apply(pd.to_numeric, errors="coerce").astype(float)
    _report_non_numeric(df[raw], num, path)
    inf = np.isinf(num.to_numpy())
    if inf.any():
        r, c = (int(v) for v in np.argwhere(inf)[0])
        raise EphysError(f"{int(inf.sum())} infinite feature values (first: row {r + 2}, column {raw[c]}, "
                         f"specimen {int(ids.iloc[r])}: {df[raw[c]].iloc[r]}); a missing value is an empty cell",
                         path)
    num.index = ids.astype(np.int64).astype(str)
    out = pd.DataFrame(index=num.index)
    names, _ = _column_names()
    for name in names:
        for proto in PROTOCOLS:
            stem = name[: -len(proto) - 1] if name.endswith("_" + proto) else None
            if stem in DERIVED:
                _, (a, b), scale = DERIVED[stem]
                out[name] = (num[f"{a}_{proto}"] - num[f"{b}_{proto}"]) * scale
                break
        else:
            out[name] = num[name]
    return out


def _report_non_numeric(raw, num, path: Path) -> None:
    """One warning per feature column whose values are text that is not a number (counted, with
    an example) and one for columns with no value at all: they become NaN, so they should not
    do so silently."""
    import warnings

    bad = []
    for col in raw.columns:
        given = raw[col].notna() & (raw[col].astype(str).str.strip() != "")
        text = given & num[col].isna()
        if int(text.sum()):
            bad.append(f"{col}: {int(text.sum())} of {len(raw)} (e.g. {str(raw[col][text].iloc[0])!r})")
    empty = [c for c in raw.columns if num[c].isna().all()]
    if bad:
        warnings.warn(f"{path}: non-numeric feature values read as missing: {'; '.join(bad[:6])}"
                      + (f" and {len(bad) - 6} more columns" if len(bad) > 6 else ""), UserWarning, stacklevel=3)
    if empty:
        warnings.warn(f"{path}: feature columns with no numeric value at all (all missing): "
                      f"{', '.join(empty[:8])}" + (f" and {len(empty) - 8} more" if len(empty) > 8 else ""),
                      UserWarning, stacklevel=3)


def _split_ids(path: Path) -> list[tuple[str, str]]:
    df = _read_csv(path, header=None, names=["sid", "src"], dtype=str, skipinitialspace=True)
    if df.empty:
        raise EphysError("no rows: a split file lists 'specimen_id, Seq|Clamp' per line", path)
    rows = []
    for k, (sid, src) in enumerate(zip(df["sid"], df["src"]), start=1):
        sid, src = str(sid).strip(), str(src).strip()
        if not sid.isdigit() or src not in ("Seq", "Clamp"):
            raise EphysError(f"line {k}: expected 'specimen_id, Seq|Clamp', got {sid!r}, {src!r}", path)
        rows.append((sid, src))
    return rows


def load_sts_tables(data_dir: str | Path):
    """Read the five STS files into (features DataFrame, label per id, source per id, split).

    Returns
    -------
    features : pandas.DataFrame, float64, index = specimen id (str), columns = the 48 feature
        names of :func:`_column_names` (NaN where the Allen table has no value)
    labels : dict[str, str] — specimen id -> class (Unsure included)
    source : dict[str, str] — specimen id -> ``"Clamp"`` or ``"Seq"`` (which table it came from)
    split : dict ``{"train": [ids], "val": [], "test": [ids]}``

    Raises
    ------
    EphysError
        A file missing or unreadable, a column missing, a specimen id in both tables or in both
        split files, a split id that is in neither table or whose Seq/Clamp tag disagrees with
        its table, or an unknown label.
    """
    import pandas as pd

    d = Path(data_dir)
    if not d.is_dir():
        raise EphysError("no such STS data folder", d)
    clamp = _table(_read_csv(d / CLAMP_TABLE), "specimen_id", d / CLAMP_TABLE)
    seq = _table(_read_csv(d / SEQ_TABLE, index_col=0), "cell_specimen_id", d / SEQ_TABLE)
    both = clamp.index.intersection(seq.index)
    if len(both):
        raise EphysError(f"specimen {both[0]} is in both {CLAMP_TABLE} and {SEQ_TABLE}", d)
    feats = pd.concat([clamp, seq])
    source = {**{i: "Clamp" for i in clamp.index}, **{i: "Seq" for i in seq.index}}

    lab_path = d / LABELS_FILE
    lab = _read_csv(lab_path, sep=r"\s+", header=None, names=["label", "sid"], dtype=str)
    labels: dict[str, str] = {}
    for k, (name, sid) in enumerate(zip(lab["label"], lab["sid"]), start=1):
        if name not in STS_CLASSES and name != UNSURE:
            raise EphysError(f"line {k}: unknown label {name!r} (expected one of {', '.join(STS_CLASSES)}, {UNSURE})", lab_path)
        if sid in labels and labels[sid] != name:
            raise EphysError(f"specimen {sid} has two labels ({labels[sid]}, {name})", lab_path)
        labels[str(sid)] = name

    split = {"train": [], "val": [], "test": []}
    seen: dict[str, str] = {}
    for part, fname in (("train", TRAIN_SPLIT), ("test", TEST_SPLIT)):
        for sid, src in _split_ids(d / fname):
            if sid in seen:
                raise EphysError(f"specimen {sid} is in both the {seen[sid]} and the {part} split", d / fname)
            if sid not in source:
                raise EphysError(f"specimen {sid} is in neither feature table", d / fname)
            if source[sid] != src:
                raise EphysError(f"specimen {sid} is tagged {src} but is in the {source[sid]} table", d / fname)
            seen[sid] = part
            split[part].append(sid)
    return feats, labels, source, split


def prepare_sts_features(input_dir: str | Path, out: str | Path, log: Callable[[str], None] = print) -> Path:
    """Build the STS feature-table dataset (``ephys prepare features --preset sts``).

    Parameters
    ----------
    input_dir : folder holding the five STS files (``../shared/data/sts``)
    out : dataset folder to write (see :mod:`ephys.pipelines.feature_table`)

    Returns
    -------
    Path of the written ``manifest.json``. Every cell of both tables is a row (group = specimen
    id); cells labelled Unsure or not labelled at all have label None. The manifest offers the
    published split as ``splits["sts"]`` (train / test, no validation part: model selection is
    cross-validation inside the training split) and the feature sets of :func:`feature_sets`.

    Raises
    ------
    EphysError
        See :func:`load_sts_tables`.
    """
    feats, labels, source, split = load_sts_tables(input_dir)
    names, units = _column_names()
    ids = list(feats.index)
    y = [labels.get(i) if labels.get(i) in STS_CLASSES else None for i in ids]
    unlabelled_in_split = [i for part in ("train", "test") for i in split[part] if labels.get(i) not in STS_CLASSES]
    if unlabelled_in_split:
        log(f"note: {len(unlabelled_in_split)} split cells have no class label (Unsure or unlisted); "
            "they are kept out of training and scoring")
    src = Path(input_dir).resolve()
    manifest = write_feature_table(
        out, ids, feats[names].to_numpy(dtype=np.float64), names, y, STS_CLASSES,
        feature_units=units,
        splits={"sts": split},
        provenance={"preset": "sts", "source": str(src),
                    "files": [CLAMP_TABLE, SEQ_TABLE, LABELS_FILE, TRAIN_SPLIT, TEST_SPLIT],
                    "reference": "Amprimo et al. 2025 (STS), data/Split; Gouwens et al. 2019, 2020",
                    "dropped": "absolute *_t_* time stamps (sweep-relative, differ between the datasets)"},
        extra_columns={"source": [source[i] for i in ids]},
        extra_manifest={"feature_sets": feature_sets(names), "default_split": "sts", "sample_noun": "cell",
                        "group_noun": "cell"},
    )
    counts = {c: sum(1 for i in split["train"] + split["test"] if labels.get(i) == c) for c in STS_CLASSES}
    log(f"{len(ids)} cells ({sum(1 for v in source.values() if v == 'Clamp')} PatchClamp, "
        f"{sum(1 for v in source.values() if v == 'Seq')} Patch-seq), {len(names)} features; split "
        f"{len(split['train'])} train / {len(split['test'])} test; "
        + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return Path(manifest)
