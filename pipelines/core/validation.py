"""Validation schemes that cannot leak: named fold generators every pipeline reuses.

Each scheme returns a list of :class:`Fold` (sample indices into the arrays it was given). No
group (participant, patient, animal, recording) is ever on both sides of a fold, and
``blocked_time_folds`` leaves a gap between training and test windows so that overlapping windows
never straddle the boundary. Pass a fold to :func:`ephys.pipelines.core.training.train` as
``split_ids`` (see :func:`fold_split_ids`), with the validation part for early stopping drawn from
the training side only (:func:`inner_validation`).

Sources: scikit-learn's ``LeaveOneGroupOut`` / ``StratifiedGroupKFold`` (the splitters used here);
blocked cross-validation with a gap for serially correlated samples: Roberts et al. 2017,
Ecography 40:913 ("Cross-validation strategies for data with temporal, spatial, hierarchical, or
phylogenetic structure").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import EphysError

__all__ = ["Fold", "leave_one_group_out", "grouped_kfold", "blocked_time_folds", "inner_validation",
           "fold_split_ids", "check_no_leak"]


@dataclass
class Fold:
    """One fold: ``name`` (e.g. ``"lopo-P07"``, ``"fold-2"``), sorted ``train`` / ``test`` index
    arrays (int64), and what was held out (``held_out``: group names or a block description)."""

    name: str
    train: np.ndarray
    test: np.ndarray
    held_out: list[str] = field(default_factory=list)


def leave_one_group_out(groups, prefix: str = "lopo") -> list[Fold]:
    """Leave-one-group-out (e.g. leave-one-patient-out): one fold per distinct group.

    Parameters
    ----------
    groups : sequence of str, length n_samples

    Returns
    -------
    list[Fold], sorted by group name; fold ``k`` tests exactly the samples of group ``k``.

    Raises
    ------
    EphysError
        Fewer than two groups.
    """
    g = np.asarray([str(x) for x in groups])
    names = sorted(set(g.tolist()))
    if len(names) < 2:
        raise EphysError(f"leave-one-group-out needs at least 2 groups, found {len(names)}")
    idx = np.arange(g.size)
    return [Fold(f"{prefix}-{n}", idx[g != n], idx[g == n], [n]) for n in names]


def grouped_kfold(y, groups, n_folds: int = 5, seed: int = 0, prefix: str = "fold") -> list[Fold]:
    """Stratified group k-fold (``sklearn.model_selection.StratifiedGroupKFold``, shuffled, seeded).

    Parameters
    ----------
    y : array-like of int or str, length n_samples (stratification target)
    groups : sequence of str, length n_samples
    n_folds : int, 2 <= n_folds <= number of groups

    Raises
    ------
    EphysError
        Fewer groups than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    g = np.asarray([str(x) for x in groups])
    n_groups = len(set(g.tolist()))
    if n_folds < 2 or n_groups < n_folds:
        raise EphysError(f"{n_folds}-fold grouped cross-validation needs at least {max(n_folds, 2)} groups, "
                         f"found {n_groups}")
    skf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    out = []
    for k, (tr, te) in enumerate(skf.split(np.zeros(g.size), np.asarray(y), g)):
        out.append(Fold(f"{prefix}-{k}", np.sort(tr), np.sort(te), sorted(set(g[te].tolist()))))
    return out


def blocked_time_folds(t, n_folds: int = 5, gap: float = 0.0, prefix: str = "block") -> list[Fold]:
    """Contiguous time blocks as test folds, with a gap removed from training on both sides.

    Parameters
    ----------
    t : array-like of float, length n_samples
        Each sample's time (e.g. window start, s) — or any monotone position.
    n_folds : int
        Number of equal-duration blocks.
    gap : float
        Training samples within ``gap`` (same unit as ``t``) of a test block are dropped; use at
        least the window length so overlapping windows never straddle the boundary.

    Raises
    ------
    EphysError
        Fewer samples than folds, or a fold left with no training sample.
    """
    t = np.asarray(t, dtype=np.float64)
    if t.size < n_folds or n_folds < 2:
        raise EphysError(f"blocked cross-validation needs at least {max(n_folds, 2)} samples, found {t.size}")
    edges = np.linspace(t.min(), t.max() + 1e-9, n_folds + 1)
    out = []
    for k in range(n_folds):
        lo, hi = edges[k], edges[k + 1]
        test = np.flatnonzero((t >= lo) & (t < hi))
        train = np.flatnonzero((t < lo - gap) | (t >= hi + gap))
        if train.size == 0 or test.size == 0:
            raise EphysError(f"blocked fold {k} has no training or no test sample (gap {gap} too large?)")
        out.append(Fold(f"{prefix}-{k}", train, test, [f"[{lo:g}, {hi:g})"]))
    return out


def blocked_split(t, test_fraction: float = 0.2, val_fraction: float = 0.2, gap: float = 0.0
                  ) -> dict[str, np.ndarray]:
    """One train / validation / test split in time: the latest ``test_fraction`` of the samples (by
    ``t``) test, the ``val_fraction`` before them validate, the earliest train; samples within
    ``gap`` (unit of ``t``, e.g. the window length) before the start of the next part are dropped,
    so overlapping windows are never on two sides.

    Returns
    -------
    dict ``train`` / ``val`` / ``test``: int64 index arrays into ``t``, sorted.

    Raises
    ------
    EphysError
        A part left empty (too few samples, or a gap too large).
    """
    t = np.asarray(t, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    n = t.size
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))
    parts = {"train": order[: n - n_test - n_val], "val": order[n - n_test - n_val: n - n_test],
             "test": order[n - n_test:]}
    for early, late in (("train", "val"), ("val", "test"), ("train", "test")):
        if parts[late].size and parts[early].size:
            start = t[parts[late]].min()
            parts[early] = parts[early][t[parts[early]] < start - gap]
    empty = [k for k in ("train", "test") if not parts[k].size]
    if empty:
        raise EphysError(f"the blocked split leaves no {empty[0]} sample ({n} samples, gap {gap:g})")
    return {k: np.sort(v) for k, v in parts.items()}


def inner_validation(fold: Fold, groups, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training side into (fit, validation) by group, for early stopping.

    Whole groups go to validation (about ``fraction`` of the training groups, at least one when
    there are two or more); with a single training group the last ``fraction`` of its samples
    (in index order, i.e. time order for windows) is used instead.

    Returns
    -------
    (fit_indices, val_indices): int64 arrays, disjoint, union = ``fold.train``.
    """
    g = np.asarray([str(x) for x in groups])[fold.train]
    names = sorted(set(g.tolist()))
    if len(names) >= 2:
        rng = np.random.default_rng(seed)
        rng.shuffle(names)
        n_val = max(1, int(round(fraction * len(names))))
        val_groups = set(names[:n_val])
        is_val = np.array([x in val_groups for x in g])
    else:
        cut = int(round((1 - fraction) * fold.train.size))
        is_val = np.arange(fold.train.size) >= cut
    return fold.train[~is_val], fold.train[is_val]


def fold_split_ids(ids, fit, val, test) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` sample-id lists for ``train(cfg, split_ids=...)``."""
    ids = list(ids)
    return {"train": [ids[i] for i in fit], "val": [ids[i] for i in val], "test": [ids[i] for i in test]}


def check_no_leak(groups, *parts) -> None:
    """Raise EphysError if any group appears in two of the index arrays ``parts``."""
    g = np.asarray([str(x) for x in groups])
    seen: dict[str, int] = {}
    for k, part in enumerate(parts):
        for name in set(g[np.asarray(part, dtype=np.int64)].tolist()):
            if name in seen and seen[name] != k:
                raise EphysError(f"group {name} is on both sides of a split")
            seen[name] = k
