"""Event-level and mask metrics.

Event matching is one-to-one: a detected onset and a true onset match when they lie within
``tol_s`` of each other (default ±1 ms); the pairing maximises the number of matches (optimal
assignment, ``scipy.optimize.linear_sum_assignment``, on the pairs within tolerance, closer
pairs preferred). Precision = matched / detected, recall = matched / true, F1 their harmonic mean
(0 when nothing matches; precision is 1 by convention when nothing was detected and nothing was
true).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_TOL_S", "match_events", "event_prf", "mask_iou", "kinetics_errors"]

#: default onset-matching tolerance (s): ±1 ms
DEFAULT_TOL_S = 1e-3


def match_events(true_s, detected_s, tol_s: float = DEFAULT_TOL_S) -> list[tuple[int, int]]:
    """One-to-one matching of onsets within ``tol_s``; returns (true index, detected index) pairs.

    Parameters
    ----------
    true_s, detected_s : 1-D arrays of onset times (s)
    tol_s : tolerance (s), inclusive
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse import coo_matrix

    t = np.asarray(true_s, dtype=np.float64)
    d = np.asarray(detected_s, dtype=np.float64)
    if not t.size or not d.size:
        return []
    order_t, order_d = np.argsort(t), np.argsort(d)
    ts, ds = t[order_t], d[order_d]
    # candidate pairs within tolerance (sorted sweep)
    ii, jj = [], []
    lo = 0
    for i, v in enumerate(ts):
        while lo < ds.size and ds[lo] < v - tol_s - 1e-12:
            lo += 1
        j = lo
        while j < ds.size and ds[j] <= v + tol_s + 1e-12:
            ii.append(i)
            jj.append(j)
            j += 1
    if not ii:
        return []
    ii, jj = np.array(ii), np.array(jj)
    # solve each connected block of candidate pairs separately (small assignment problems)
    g = coo_matrix((np.ones(ii.size), (ii, jj + ts.size)), shape=(ts.size + ds.size,) * 2)
    _, comp = connected_components(g, directed=False)
    pairs = []
    for c in np.unique(comp[ii]):
        sel = comp[ii] == c
        ri, ci = np.unique(ii[sel]), np.unique(jj[sel])
        big = 1e6
        cost = np.full((ri.size, ci.size), big)
        pos_r = {v: k for k, v in enumerate(ri)}
        pos_c = {v: k for k, v in enumerate(ci)}
        for a, b in zip(ii[sel], jj[sel]):
            # matches first (cost < 1), then nearer pairs
            cost[pos_r[a], pos_c[b]] = abs(ts[a] - ds[b]) / (tol_s + 1e-12) * 1e-3
        r, k = linear_sum_assignment(cost)
        for a, b in zip(r, k):
            if cost[a, b] < big:
                pairs.append((int(order_t[ri[a]]), int(order_d[ci[b]])))
    return sorted(pairs)


def event_prf(true_s, detected_s, tol_s: float = DEFAULT_TOL_S) -> dict:
    """Event-level precision, recall, F1 and counts (``tp``, ``fp``, ``fn``) with ``tol_s``."""
    n_t, n_d = len(np.atleast_1d(true_s)), len(np.atleast_1d(detected_s))
    tp = len(match_events(true_s, detected_s, tol_s))
    prec = tp / n_d if n_d else (1.0 if n_t == 0 else 0.0)
    rec = tp / n_t if n_t else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "tp": tp, "fp": n_d - tp, "fn": n_t - tp,
            "n_true": n_t, "n_detected": n_d, "tolerance_ms": tol_s * 1e3}


def mask_iou(true_mask, pred_mask) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(true_mask).astype(bool), np.asarray(pred_mask).astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def kinetics_errors(truth: dict, events: list[dict], tol_s: float = DEFAULT_TOL_S) -> dict:
    """Median relative errors of amplitude, 10-90 % rise and decay tau over matched events."""
    det_on = np.array([e["onset_s"] for e in events])
    pairs = match_events(truth["onset_s"], det_on, tol_s)
    out = {}
    for key, tkey in (("amplitude", "amplitude"), ("rise_10_90_ms", "rise_10_90_ms"), ("decay_tau_ms", "decay_tau_ms")):
        if tkey not in truth or not pairs:
            out[f"{key}_median_rel_error"] = None
            continue
        rel = [abs(events[j][key] - truth[tkey][i]) / abs(truth[tkey][i]) for i, j in pairs
               if np.isfinite(events[j][key]) and truth[tkey][i] != 0]
        out[f"{key}_median_rel_error"] = float(np.median(rel)) if rel else None
    return out
