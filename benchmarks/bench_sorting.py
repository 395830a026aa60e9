"""``ephys spikes sort`` against SpikeInterface's sorters on generated ground truth.

Recordings come from ``spikeinterface.generate_ground_truth_recording`` (30 kHz): a tetrode
(4 channels, probeinterface's tetrode, 8 units) and a 32-channel probe (2 columns, 20 µm pitch,
20 units), at each noise level (µV, before filtering) and seed; each is saved to a binary folder
first so every sorter reads the same file. In one process, each sorter sorts each recording:
``ephys`` (:func:`ephys.pipelines.spikes.sort.sort_spikes` after the same read / probe /
preprocessing as ``ephys spikes sort``; no quality metrics, no report: sorting only, as
``run_sorter`` does), SpikeInterface's internal ``spykingcircus2`` and ``tridesclous2`` (no
extra install) and ``mountainsort5`` when importable (``pip install -e '.[bench]'``), all with
``n_jobs=1``. Each is scored with ``spikeinterface.comparison.compare_sorter_to_ground_truth``
(match within 0.4 ms, agreement >= 0.5; accuracy = tp / (tp + fn + fp)): mean accuracy,
precision and recall over the ground-truth units, well-detected (accuracy >= 0.8), redundant,
over-merged and false-positive unit counts, units found, wall seconds.

    python benchmarks/bench_sorting.py [--recordings tetrode,probe] [--duration-s 300]
        [--noise-uV 5,10] [--seeds 0,1,2] [--sorters ephys,spykingcircus2,tridesclous2,mountainsort5]
        [--budget-s 900] [--out benchmarks/results/sorting.json] [--real | --real-only]

The JSON holds ``runs`` (one entry per invocation; ``--merge`` appends to an existing file)
and, from ``--real-only``, ``real_tetrodes``. ``--real`` adds the check of :func:`real_tetrodes` (RatGPS tetrodes 5 and 7 against their Tint
cuts; checked, never tuned on); ``--real-only`` runs only that and merges it into ``--out``.

Each sorter first runs once, untimed, on a 10 s recording of each kind (seed 999), so that
imports and numba compilation are not in the wall times (``--no-warmup`` keeps them in). A
sorter whose run on a recording took longer than ``--budget-s`` is skipped on the remaining
recordings of that kind (said in the JSON: ``skipped``). The defaults are the issue's full
design (5 min, two noise levels, three seeds, both recordings); on a small machine run a reduced
version and keep its command line, which the JSON records.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"tetrode": (4, 8), "probe": (32, 20)}


def generate(kind: str, duration_s: float, noise_uV: float, seed: int):
    import spikeinterface.full as si
    from probeinterface import generate_tetrode

    n_ch, n_units = KINDS[kind]
    kw = {}
    if kind == "tetrode":
        probe = generate_tetrode()
        probe.set_device_channel_indices(np.arange(4))
        kw["probe"] = probe
    return si.generate_ground_truth_recording(durations=[duration_s], sampling_frequency=30000.0, num_channels=n_ch,
                                              num_units=n_units, seed=seed,
                                              noise_kwargs=dict(noise_levels=noise_uV, strategy="on_the_fly"), **kw)


def run_ephys(rec, folder: Path):
    from ephys.pipelines.spikes import sort

    r, _ = sort.attach_probe(sort.read_recording(rec))
    sorting, facts = sort.sort_spikes(sort.preprocess(r))
    return sorting


def run_si(name: str, rec, folder: Path):
    import spikeinterface.sorters as ss

    return ss.run_sorter(name, rec, folder=folder, remove_existing_folder=True, verbose=False,
                         raise_error=True, **({"job_kwargs": {"n_jobs": 1}} if name != "mountainsort5" else {}))


def available(name: str) -> bool:
    if name == "ephys":
        return True
    import spikeinterface.sorters as ss

    return name in ss.installed_sorters()


def score(gt, sorting) -> dict:
    import spikeinterface.comparison as sc

    cmp = sc.compare_sorter_to_ground_truth(gt, sorting, exhaustive_gt=True)
    perf = cmp.get_performance()
    return {"mean_accuracy": round(float(perf["accuracy"].mean()), 4),
            "mean_precision": round(float(perf["precision"].mean()), 4),
            "mean_recall": round(float(perf["recall"].mean()), 4),
            "well_detected": int(cmp.count_well_detected_units(0.8)), "redundant": int(cmp.count_redundant_units()),
            "overmerged": int(cmp.count_overmerged_units()),
            "false_positive": int(cmp.count_false_positive_units()),
            "n_units_found": int(len(sorting.get_unit_ids())), "n_gt_units": int(len(gt.get_unit_ids())),
            "accuracy_per_gt_unit": [round(float(a), 3) for a in perf["accuracy"]]}


# ../shared/data beside the clone (a worktree one level deeper looks one level further up)
REAL = next((r / "shared" / "data" / "lfp_spikes" / "ratgps" for r in (ROOT.parent, ROOT.parent.parent)
             if (r / "shared" / "data").is_dir()), ROOT.parent / "shared" / "data" / "lfp_spikes" / "ratgps")


def real_tetrodes(seed: int = 0) -> list[dict]:
    """Check (never tune) ``ephys spikes sort``'s clustering step on the RatGPS tetrodes 5 and 7.

    These files hold snippets (4 channels x 50 samples at 48 kHz), not a continuous recording, so
    detection is Axona's; :func:`ephys.pipelines.spikes.sort.cluster_snippets` clusters them with
    the sort defaults, after dividing each channel by its noise (MAD / 0.6745 of the first 5
    samples of every snippet, before the trigger; a dead channel keeps scale 1). The Tint cut is
    the ground truth, its noise cluster 0 excluded from the ground-truth units (those spikes stay in
    the sorting, as ``compare_sorter_to_ground_truth`` counts them as false positives when they
    land in a matched unit); ``*_units_only``: those spikes left out of the sorting too. Also the ARIs of ``ephys spikes cluster``'s table (all spikes, units
    only). Returns one dict per tetrode.
    """
    import spikeinterface.comparison as scmp
    import spikeinterface.core as sc
    from probeinterface import generate_tetrode

    from ephys.pipelines.blocks.readers.axona import read_cut, read_tetrode
    from ephys.pipelines.spikes.cluster import agreement
    from ephys.pipelines.spikes.params import SORT_DEFAULTS
    from ephys.pipelines.spikes.sort import cluster_snippets, neighbourhoods

    out = []
    for tet in (5, 7):
        spk = read_tetrode(REAL / f"83812141.{tet}")
        ref = read_cut(REAL / f"83812141_{tet}.cut", len(spk.times_s))
        w = np.asarray(spk.waveforms, np.float64)
        noise = np.median(np.abs(w[:, :, :5] - np.median(w[:, :, :5], axis=(0, 2))[None, :, None]), axis=(0, 2)) / 0.6745
        noise = np.where(noise > 0, noise, 1.0)
        z = (w / noise[None, :, None]).astype(np.float32)
        nbrs = neighbourhoods(generate_tetrode().contact_positions, 8)
        chans = np.abs(z).max(axis=2).argmax(axis=1)
        snips = np.take_along_axis(z, nbrs[chans][:, :, None], axis=1)
        t0 = time.perf_counter()
        kw = {k: SORT_DEFAULTS[k] for k in ("method", "n_pcs", "min_cluster_size", "merge_distance")}
        labels, facts = cluster_snippets(snips, chans, nbrs, seed=seed, **kw)
        secs = time.perf_counter() - t0
        samples = np.round(spk.times_s * spk.fs_hz).astype(np.int64)
        order = np.argsort(samples, kind="stable")
        gm = ref[order] != 0
        gt = sc.NumpySorting.from_samples_and_labels([samples[order][gm]], [ref[order][gm]], spk.fs_hz)
        sm = labels[order] >= 0
        srt = sc.NumpySorting.from_samples_and_labels([samples[order][sm]], [labels[order][sm]], spk.fs_hz)
        cmp = scmp.compare_sorter_to_ground_truth(gt, srt, exhaustive_gt=False)
        perf = cmp.get_performance()
        um = sm & gm  # units only: the cut's cluster 0 left out of the sorting too
        srt_u = sc.NumpySorting.from_samples_and_labels([samples[order][um]], [labels[order][um]], spk.fs_hz)
        perf_u = scmp.compare_sorter_to_ground_truth(gt, srt_u, exhaustive_gt=False).get_performance()
        agr = agreement(labels, ref)
        out.append({"tetrode": tet, "n_spikes": int(len(labels)), "n_cut_units": int(len(set(ref.tolist()) - {0})),
                    "n_units_found": int(len(set(labels.tolist()) - {-1})), **facts,
                    "accuracy_per_cut_unit": {str(u): round(float(a), 3) for u, a in perf["accuracy"].items()},
                    "precision_per_cut_unit": {str(u): round(float(a), 3) for u, a in perf["precision"].items()},
                    "recall_per_cut_unit": {str(u): round(float(a), 3) for u, a in perf["recall"].items()},
                    "mean_accuracy": round(float(perf["accuracy"].mean()), 4),
                    "accuracy_per_cut_unit_units_only": {str(u): round(float(a), 3)
                                                         for u, a in perf_u["accuracy"].items()},
                    "mean_accuracy_units_only": round(float(perf_u["accuracy"].mean()), 4),
                    "ari_all_spikes": round(agr["ari"], 4), "ari_units_only": round(agr["units_only"]["ari"], 4),
                    "seconds": round(secs, 2)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", default="tetrode,probe")
    ap.add_argument("--duration-s", type=float, default=300.0)
    ap.add_argument("--noise-uV", default="5,10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sorters", default="ephys,spykingcircus2,tridesclous2,mountainsort5")
    ap.add_argument("--budget-s", type=float, default=900.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sorting.json"))
    ap.add_argument("--real", action="store_true", help="also the check on the RatGPS tetrodes 5 and 7 (shared data)")
    ap.add_argument("--real-only", action="store_true", help="only that check, merged into an existing --out")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed first run of each sorter on a 10 s recording (seed 999)")
    ap.add_argument("--merge", action="store_true", help="add this run to --out's runs instead of replacing them")
    a = ap.parse_args(argv)
    if a.real_only:
        out = Path(a.out)
        res = json.loads(out.read_text()) if out.is_file() else {}
        res["real_tetrodes"] = {"command": "python benchmarks/bench_sorting.py " + " ".join(
            argv if argv is not None else sys.argv[1:]), "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": real_tetrodes()}
        out.write_text(json.dumps(res, indent=2) + "\n")
        return res
    import spikeinterface

    kinds = [k for k in a.recordings.split(",") if k]
    noises = [float(v) for v in a.noise_uV.split(",")]
    seeds = [int(v) for v in a.seeds.split(",")]
    sorters = [s for s in a.sorters.split(",") if s]
    missing = [s for s in sorters if not available(s)]
    sorters = [s for s in sorters if s not in missing]
    rows, skipped = [], {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_sorting_"))
    try:
        if a.warmup:  # start-up costs (imports, numba compilation) out of the timed runs
            for kind in kinds:
                rec, _ = generate(kind, 10.0, noises[0], 999)
                rec.save(folder=tmp / "rec", overwrite=True, n_jobs=1, progress_bar=False)
                rec = spikeinterface.load(tmp / "rec")
                for name in sorters:
                    try:
                        run_ephys(rec, tmp / name) if name == "ephys" else run_si(name, rec, tmp / name)
                    except Exception:  # noqa: BLE001 -- the timed run reports it
                        pass
        for kind in kinds:
            for noise in noises:
                for seed in seeds:
                    rec, gt = generate(kind, a.duration_s, noise, seed)
                    rec.save(folder=tmp / "rec", overwrite=True, n_jobs=1, progress_bar=False)
                    rec = spikeinterface.load(tmp / "rec")
                    for name in sorters:
                        if skipped.get((kind, name)):
                            continue
                        row = {"recording": kind, "n_channels": KINDS[kind][0], "noise_uV": noise, "seed": seed,
                               "duration_s": a.duration_s, "sorter": name}
                        t0 = time.perf_counter()
                        try:
                            sorting = (run_ephys(rec, tmp / name) if name == "ephys" else
                                       run_si(name, rec, tmp / name))
                            row["wall_s"] = round(time.perf_counter() - t0, 2)
                            row.update(score(gt, sorting))
                        except Exception as exc:  # noqa: BLE001 -- a sorter's failure is a result
                            row["wall_s"] = round(time.perf_counter() - t0, 2)
                            row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
                            traceback.print_exc(limit=2)
                        rows.append(row)
                        print(json.dumps({k: v for k, v in row.items() if k != "accuracy_per_gt_unit"}), flush=True)
                        if row["wall_s"] > a.budget_s:
                            skipped[(kind, name)] = f"{name} took {row['wall_s']} s > --budget-s on {kind}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = []
    for kind in kinds:
        for noise in noises:
            for name in sorters:
                rs = [r for r in rows if r["recording"] == kind and r["noise_uV"] == noise and r["sorter"] == name
                      and "mean_accuracy" in r]
                if rs:
                    summary.append({"recording": kind, "noise_uV": noise, "sorter": name, "n_seeds": len(rs),
                                    **{k: round(statistics.mean(r[k] for r in rs), 4)
                                       for k in ("mean_accuracy", "mean_precision", "mean_recall", "well_detected",
                                                 "redundant", "overmerged", "false_positive", "wall_s")}})
    res = {"benchmark": "spike sorting on generated ground truth (spikeinterface.generate_ground_truth_recording)",
           "command": "python benchmarks/bench_sorting.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "settings": {"recordings": {k: {"n_channels": KINDS[k][0], "n_units": KINDS[k][1]} for k in kinds},
                        "duration_s": a.duration_s, "noise_uV": noises, "seeds": seeds, "sorters": sorters,
                        "not_installed": missing, "budget_s": a.budget_s, "n_jobs": 1, "fs_hz": 30000.0,
                        "warmup": "each sorter ran once, untimed, on a 10 s recording (seed 999) first" if a.warmup
                        else "none: the first run of each sorter includes its start-up and compilation",
                        "match": "compare_sorter_to_ground_truth defaults: delta 0.4 ms, match score 0.5; "
                                 "well detected = accuracy >= 0.8"},
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "python": platform.python_version(), "spikeinterface": spikeinterface.__version__},
           "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "skipped": {f"{k}/{n}": v for (k, n), v in skipped.items()}, "summary": summary, "rows": rows}
    if a.real and REAL.is_dir():
        res["real_tetrodes"] = {"rows": real_tetrodes()}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if a.merge and out.is_file() else {}
    doc = {**old, "runs": [*old.get("runs", []), res]}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    for s in summary:
        print(f"{s['recording']:8s} noise {s['noise_uV']:>4g}  {s['sorter']:15s} acc {s['mean_accuracy']:.3f}  "
              f"well {s['well_detected']:.1f}  red {s['redundant']:.1f}  over {s['overmerged']:.1f}  "
              f"fp {s['false_positive']:.1f}  {s['wall_s']:.1f} s")
    return res


if __name__ == "__main__":
    main()
