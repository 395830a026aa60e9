"""``ephys cluster`` speed: embedding + clustering of 10,000 tetrode spikes on one core.

Writes ``benchmarks/results/cluster.json`` (CPU seconds of the pinned core, and wall seconds). Goal (issue #13): a tetrode of 10,000 spikes
clustered in <= 10 s on one core with the default method (features + Gaussian mixture with
BIC + the entropy merge + the noise rule; quality metrics and agreement included, the report figures not). The spikes
are the first 10,000 of RatGPS tetrode 7 (``../shared/data/lfp_spikes/ratgps/83812141.7``, a real
recording) written to a temporary Axona file; without the shared data, a simulated tetrode of
the same size (5 units with distinct channel ratios plus Gaussian noise).

    python benchmarks/bench_cluster.py [--n-spikes 10000] [--repeats 3] [--out PATH] [--table] [--diagnostics]

``--table`` (needs the shared data) also records, in the same JSON, how the default was chosen
and the tetrode x method table: every candidate of :data:`CANDIDATES` run on RatGPS tetrodes 5
and 7 with the Tint cuts used for scoring only (units-only and all-spikes ARI, NMI, clusters,
noise spikes, seconds) for seeds 0, 1, 2, the selection rule of :func:`choose` (on the seed
means), and the other methods (seed 0). ``--diagnostics`` records the ceilings of
:func:`diagnostics` (they use the cut: why the missed goals are hard, not methods).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# one core: pin the process and every BLAS thread pool before numpy is imported
os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import numpy as np  # noqa: E402

from ephys.pipelines.spikes.cluster import DEFAULTS, cluster_tetrode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "lfp_spikes" / "ratgps" / "83812141.7"


def _write_axona(path: Path, waveforms: np.ndarray, times_s: np.ndarray, timebase: int = 96000) -> None:
    n, n_ch, n_s = waveforms.shape
    head = (f"num_chans {n_ch}\r\ntimebase {timebase} hz\r\nbytes_per_timestamp 4\r\nsamples_per_spike {n_s}\r\n"
            f"sample_rate 48000 hz\r\nbytes_per_sample 1\r\nduration {int(np.ceil(times_s[-1]))}\r\n"
            f"num_spikes {n}\r\ndata_start").encode()
    ts = np.round(np.asarray(times_s) * timebase).astype(">u4")
    rec = np.zeros((n, n_ch, 4 + n_s), np.uint8)
    rec[:, :, :4] = ts.view(np.uint8).reshape(n, 1, 4)
    rec[:, :, 4:] = np.clip(np.round(waveforms), -128, 127).astype(np.int8).view(np.uint8)
    path.write_bytes(head + rec.tobytes() + b"\r\ndata_end\r\n")


def _spikes(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    if REAL.is_file():
        from ephys.pipelines.blocks.readers.axona import read_tetrode

        s = read_tetrode(REAL)
        if len(s.times_s) >= n:
            return s.waveforms[:n], s.times_s[:n], f"{REAL.name}, first {n} spikes"
    rng = np.random.default_rng(0)
    k = np.arange(50)
    shape = np.exp(-0.5 * ((k - 10) / 2.0) ** 2) - 0.3 * np.exp(-0.5 * ((k - 20) / 5.0) ** 2)
    gains = rng.uniform(20, 110, (5, 4))
    unit = rng.integers(0, 5, n)
    w = gains[unit][:, :, None] * shape[None, None, :] + rng.normal(0, 6, (n, 4, 50))
    return w, np.sort(rng.uniform(0, 1200, n)), f"simulated, {n} spikes, 5 units"


#: candidate settings for the default (issue 13), tried on tetrodes 5 and 7 only: feature set x merge step
#: (the second round), the log amplitude, and the posterior noise rule (the third round)
#: and the entropy merge step (the fourth)
_FEATS = {"peak,trough,energy,pc | PCA 8": {"kinds": ("peak", "trough", "energy", "pc"), "n_dims": 8},
          "p2p,energy | all": {"kinds": ("p2p", "energy"), "n_dims": 0},
          "p2p,energy,pc | PCA 8": {"kinds": ("p2p", "energy", "pc"), "n_dims": 8},
          "logp2p | all": {"kinds": ("logp2p",), "n_dims": 0},
          "logp2p,pc | PCA 8": {"kinds": ("logp2p", "pc"), "n_dims": 8}}
MERGES = (0.0, 1.5, 2.0)
POSTERIORS = (0.8, 0.9, 0.95)
CANDIDATES = {f"gmm | {f} | merge {m:g}": {**_FEATS[f], "merge_dip": m}
              for f in list(_FEATS)[:3] for m in MERGES}
CANDIDATES.update({f"gmm | logp2p | all | merge {m:g}": {**_FEATS["logp2p | all"], "merge_dip": m} for m in (0.0, 1.5)})
CANDIDATES["gmm | logp2p,pc | PCA 8 | merge 0"] = {**_FEATS["logp2p,pc | PCA 8"], "merge_dip": 0.0}
CANDIDATES.update({f"gmm | {f} | merge 0 | posterior {p:g}": {**_FEATS[f], "merge_dip": 0.0, "min_posterior": p}
                   for f in ("p2p,energy | all", "logp2p | all") for p in POSTERIORS})
#: the entropy merge step (Baudry et al. 2010; the fourth round), nats per spike
ENTROPY_GAINS = (0.1, 0.2, 0.3)
CANDIDATES.update({f"gmm | {f} | entropy merge {h:g}": {**_FEATS[f], "merge_dip": 0.0, "merge_entropy_gain": h}
                   for f in ("p2p,energy | all", "logp2p | all") for h in ENTROPY_GAINS})
#: every candidate is run with each of these seeds (k-means initialisation of the mixture, PCA solver)
SEEDS = (0, 1, 2)
#: issue 13's goals: units-only ARI per tetrode, and all-spikes ARI above the previous default's
GOALS = {"units_only_ari_min": {5: 0.6, 7: 0.8}, "all_ari_above": {5: 0.107, 7: 0.119}}
#: the other methods of the table (not candidates for the default)
OTHERS = {"isosplit | peak,trough,energy,pc | PCA 8": {"method": "isosplit", "kinds": ("peak", "trough", "energy", "pc"),
                                                         "n_dims": 8},
          "isosplit | p2p,energy | all": {"method": "isosplit", "kinds": ("p2p", "energy"), "n_dims": 0},
          "isosplit | logp2p | all": {"method": "isosplit", "kinds": ("logp2p",), "n_dims": 0},
          "hdbscan | p2p,energy | all": {"method": "hdbscan", "kinds": ("p2p", "energy"), "n_dims": 0},
          "hdbscan | logp2p | all": {"method": "hdbscan", "kinds": ("logp2p",), "n_dims": 0},
          "hdbscan | peaks 3 (the first default)": {"method": "hdbscan", "features": "peaks", "n_dims": 3}}


def _row(tet: int, name: str, kw: dict, tmp: Path, seed: int = 0) -> dict:
    data = REAL.parent
    t0 = time.perf_counter()
    r = cluster_tetrode(data / f"83812141.{tet}", tmp / f"{tet}-{seed}-{len(name)}-{abs(hash(name))}",
                        data / f"83812141_{tet}.cut", report=False, seed=seed, **kw)
    return {"tetrode": tet, "candidate": name, "seed": seed,
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
            "units_only_ari": round(r["units_only"]["ari"], 3), "units_only_nmi": round(r["units_only"]["nmi"], 3),
            "ari": round(r["ari"], 3), "nmi": round(r["nmi"], 3), "n_clusters": r["n_clusters"],
            "n_noise": r["n_noise"], "n_merges": r.get("n_merges"),
            # SpikeInterface's comparison, the cut's units as ground truth (cut noise kept / left out)
            "mean_accuracy": r["comparison"]["mean_accuracy"], "well_detected": r["comparison"]["well_detected"],
            "mean_accuracy_units_only": r["comparison_units_only"]["mean_accuracy"],
            "well_detected_units_only": r["comparison_units_only"]["well_detected"],
            "seconds": round(time.perf_counter() - t0, 2)}


def seed_means(rows: list[dict]) -> dict[str, dict]:
    """Per candidate and tetrode: the mean, min and max over seeds of units-only and all-spikes ARI."""
    acc: dict[tuple, list] = {}
    for r in rows:
        acc.setdefault((r["candidate"], r["tetrode"]), []).append(r)
    out: dict[str, dict] = {}
    for (cand, tet), rs in acc.items():
        uo, al = [r["units_only_ari"] for r in rs], [r["ari"] for r in rs]
        out.setdefault(cand, {})[str(tet)] = {
            "units_only_ari": round(statistics.mean(uo), 3), "units_only_ari_range": [min(uo), max(uo)],
            "ari": round(statistics.mean(al), 3), "ari_range": [min(al), max(al)],
            "nmi": round(statistics.mean(r["nmi"] for r in rs), 3),
            "n_clusters": [r["n_clusters"] for r in rs], "seconds": round(statistics.mean(r["seconds"] for r in rs), 2),
            "seeds": [r["seed"] for r in rs]}
    return out


def choose(rows: list[dict]) -> tuple[str, dict]:
    """The selection rule, on the means over seeds: most of the four goals met over both tetrodes,
    then the highest mean (over the two tetrodes) units-only ARI."""
    by: dict[str, dict] = {}
    for cand, per in seed_means(rows).items():
        met = sum(int(per[str(t)]["units_only_ari"] >= GOALS["units_only_ari_min"][t])
                  + int(per[str(t)]["ari"] > GOALS["all_ari_above"][t]) for t in (5, 7))
        by[cand] = {"goals_met": met,
                    "mean_units_only_ari": round((per["5"]["units_only_ari"] + per["7"]["units_only_ari"]) / 2, 3),
                    **{f"tetrode_{t}": per[str(t)] for t in (5, 7)}}
    best = max(by, key=lambda c: (by[c]["goals_met"], by[c]["mean_units_only_ari"]))
    return best, by


def table() -> dict:
    """The ``--table`` part (see the module docstring): every candidate on tetrodes 5 and 7 for
    each seed, the other methods at seed 0, and the choice of :func:`choose`; returns the dict
    stored under ``table`` in the results JSON. Needs ``../shared/data``."""
    rows, others = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in CANDIDATES.items():
            for tet in (5, 7):
                for seed in SEEDS:
                    rows.append(_row(tet, name, kw, Path(tmp), seed))
                    print(json.dumps(rows[-1]), flush=True)
        for name, kw in OTHERS.items():  # not candidates: seed 0 only
            for tet in (5, 7):
                others.append(_row(tet, name, kw, Path(tmp), 0))
                print(json.dumps(others[-1]), flush=True)
    best, by = choose(rows)
    return {"selection_rule": "on RatGPS tetrodes 5 and 7 only (Tint cuts for scoring only), each candidate run "
                              "with seeds 0, 1, 2: the candidate whose seed-mean ARIs meet the most "
                              "of issue 13's four goals (units-only ARI >= 0.6 / 0.8, all-spikes ARI above "
                              "0.107 / 0.119 on tetrodes 5 / 7), ties broken by the mean units-only ARI; not a "
                              "held-out estimate (no other tetrode file is in ../shared/data)",
            "goals": {k: {str(t): v for t, v in g.items()} for k, g in GOALS.items()},
            "seeds": list(SEEDS), "chosen": best, "candidates": by, "rows": rows,
            "other_methods_by_seed_mean": seed_means(others), "other_methods": others}


def diagnostics(seed: int = 0) -> dict:
    """Why the missed goals are hard: ceilings that use the Tint cut (so they are not methods).

    Per tetrode: (1) the Tint units' own quality (isolation distance, L-ratio: a unit with
    isolation distance < 20 is not a separated cloud by the usual convention); (2) the oracle
    ceiling of over-clustering + merging: a Gaussian mixture with k components on all spikes,
    each component then given the Tint label most of its spikes carry (all-spikes ARI), or the
    unit most of its unit spikes carry (units-only ARI) -- no merge rule can do better than this
    oracle on that mixture; (3) a mixture fitted to the Tint-unit spikes alone with the true
    number of units (the noise removed by hand); (4) the field's quality rule as a noise rule:
    the default mixture's clusters with isolation distance (in the clustered space) < 20 relabelled
    noise; (5) the frozen default on each half of the recording (same tetrodes: a stability check,
    not a held-out estimate).
    """
    from sklearn.metrics import adjusted_rand_score as ari
    from sklearn.mixture import GaussianMixture

    from ephys.pipelines.blocks.readers.axona import read_cut, read_tetrode
    from ephys.pipelines.spikes.cluster import _isolation_sq, gmm_bic, outlier_noise, waveform_features
    from ephys.pipelines.spikes.cluster_quality import cluster_quality

    out: dict = {"seed": seed, "note": diagnostics.__doc__.split("\n\n")[1].strip()}
    for tet in (5, 7):
        s = read_tetrode(REAL.parent / f"83812141.{tet}")
        ref = read_cut(REAL.parent / f"83812141_{tet}.cut", len(s.times_s))
        u = ref != 0
        q = cluster_quality(s.waveforms, s.times_s, np.where(u, ref, -1), float(s.times_s[-1]))
        d: dict = {"tint_units": [{k: v for k, v in r.items() if k in ("cluster", "n_spikes", "isolation_distance",
                                                                         "l_ratio", "isi_violation_fraction", "snr")}
                                  for r in q],
                   "n_noise": int((~u).sum()), "n_unit_spikes": int(u.sum())}
        for kinds in (("logp2p",), ("p2p", "energy")):
            f, _ = waveform_features(s.waveforms, kinds=kinds, seed=seed)
            key = ",".join(kinds)
            ceil = []
            for k in (6, 10, 15, 20, 30):
                lab = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(f).predict(f)
                to_all = {c: int(np.bincount(ref[lab == c]).argmax()) for c in np.unique(lab)}
                to_unit = {c: int(np.bincount(ref[(lab == c) & u]).argmax()) if ((lab == c) & u).any() else -1
                           for c in np.unique(lab)}
                ceil.append({"k": k, "raw_units_only_ari": round(ari(ref[u], lab[u]), 3),
                             "oracle_all_ari": round(ari(ref, np.array([to_all[c] for c in lab])), 3),
                             "oracle_units_only_ari": round(ari(ref[u], np.array([to_unit[c] for c in lab])[u]), 3)})
            n_units = len(set(ref[u].tolist()))
            g = GaussianMixture(n_units, covariance_type="full", reg_covar=1e-4, random_state=seed, n_init=3).fit(f[u])
            lab, _ = gmm_bic(f, seed=seed)
            lab, _ = outlier_noise(f, lab)
            rule = lab.copy()
            for c in set(lab.tolist()) - {-1}:
                if _isolation_sq(f, lab == c) < 20.0:
                    rule[lab == c] = -1
            d[key] = {"oracle_merge_ceiling": ceil,
                      "units_only_fit_true_k_units_only_ari": round(ari(ref[u], g.predict(f[u])), 3),
                      "isolation_noise_rule": {"units_only_ari": round(ari(ref[u], rule[u]), 3),
                                               "ari": round(ari(ref, rule), 3),
                                               "n_clusters": int(len(set(rule.tolist()) - {-1})),
                                               "n_noise": int((rule == -1).sum())},
                      "gmm_bic": {"units_only_ari": round(ari(ref[u], lab[u]), 3), "ari": round(ari(ref, lab), 3)}}
            print(tet, key, json.dumps(d[key]), flush=True)
        # (5) stability on subsets: the frozen default on each half of the recording (time order)
        from ephys.pipelines.spikes.cluster import cluster_embedding, spike_features

        halves = []
        n = len(ref)
        for name, sl in (("first half", slice(0, n // 2)), ("second half", slice(n // 2, n))):
            f = spike_features(s.waveforms[sl], DEFAULTS["features"], DEFAULTS["n_dims"], seed,
                               kinds=tuple(DEFAULTS["kinds"]))
            lab, p = cluster_embedding(f, DEFAULTS["method"], min_cluster_size=DEFAULTS["min_cluster_size"],
                                       max_k=DEFAULTS["max_k"], p_outlier=DEFAULTS["p_outlier"], seed=seed,
                                       merge_dip=DEFAULTS["merge_dip"], min_posterior=DEFAULTS["min_posterior"],
                                       merge_entropy_gain=DEFAULTS["merge_entropy_gain"])
            r = ref[sl]
            halves.append({"part": name, "n_spikes": int(r.size), "n_clusters": int(len(set(lab.tolist()) - {-1})),
                           "units_only_ari": round(ari(r[r != 0], lab[r != 0]), 3), "ari": round(ari(r, lab), 3)})
        d["default_on_halves"] = halves
        print(tet, "halves", json.dumps(halves), flush=True)
        out[str(tet)] = d
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-spikes", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cluster.json")
    ap.add_argument("--table", action="store_true", help="also the selection grid and the method table (shared data)")
    ap.add_argument("--diagnostics", action="store_true", help="also the ceilings that use the cut (shared data)")
    a = ap.parse_args(argv)
    tab = table() if a.table and REAL.is_file() else None
    diag = diagnostics() if a.diagnostics and REAL.is_file() else None
    w, t, source = _spikes(a.n_spikes)
    runs, cpu, facts = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.1"
        _write_axona(path, w, t)
        for r in range(a.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            res = cluster_tetrode(path, Path(tmp) / f"out{r}", report=False)
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            facts = {"n_clusters": res["n_clusters"], "n_noise": res["n_noise"],
                     "embed_and_cluster_s": res["seconds"]}
    out = {"benchmark": "cluster", "goal_s": 10.0, "n_spikes": int(len(t)), "source": source,
           "defaults": {k: (list(v) if isinstance(v, tuple) else v) for k, v in DEFAULTS.items()},
           "median_cpu_s": round(statistics.median(cpu), 3), "cpu_s": [round(x, 3) for x in cpu],
           "median_wall_s": round(statistics.median(runs), 3), "wall_s": [round(x, 3) for x in runs],
           "meets_goal": bool(statistics.median(cpu) <= 10.0), **facts,
           "note": "the goal is judged on CPU time of the one pinned core (process time): on a shared machine the "
                   "wall time also counts the time other processes held that core",
           "what": "cluster_tetrode(report=False): read, features, mixture + BIC, noise rule, quality metrics, "
                   "CSV / NPY / JSON written",
           "cores": 1, "python": sys.version.split()[0], "machine": platform.machine(),
           "processor": platform.processor() or platform.machine()}
    if (tab is None or diag is None) and a.out.is_file():  # keep the last recorded table / diagnostics
        old = json.loads(a.out.read_text())
        tab = old.get("table") if tab is None else tab
        diag = old.get("diagnostics") if diag is None else diag
    if tab:
        out["table"] = tab
    if diag:
        out["diagnostics"] = diag
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
