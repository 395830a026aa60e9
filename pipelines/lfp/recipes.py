"""``ephys reproduce lfp-sim`` and ``ephys reproduce lfp-ratgps``.

Both: prepare ``sequence`` windows (100 ms of raw LFP + Hilbert amplitude and phase of every band
below 0.9 x Nyquist; target: a spike in the window's last 20 ms; ``--hparam after_s`` keeps LFP
after the bin, :mod:`ephys.pipelines.lfp.sequence`), cross-validate the seed's
BiLSTM, the GLM baseline and LightGBM on the GLM's features per unit (registered models, every fold
trained by the core's cross-validation: :mod:`ephys.pipelines.lfp.cv`), run
leave-one-band-out, and write ``OUT/metrics.json`` (BiLSTM at the top, the GLM under
``reference``), ``OUT/predictions_<model>.csv`` and ``OUT/report.md``.

- ``lfp-sim``: the simulated cohort (:mod:`ephys.pipelines.lfp.synthetic`; ``--data`` may name a
  cohort folder written by ``ephys fetch synthetic --pipeline lfp``), participant-grouped
  stratified k-fold, LOBO hit rate against the ground truth. LOBO retrains the BiLSTM (6 bands x
  5 folds x 4 units: most of the recipe's time): the GLM reads only the prediction bin's own
  amplitude and phase, so it cannot name the band of the rebound unit ``reb1``, whose spiking
  follows the gamma bursts of the preceding tens of ms (on the development cohort, seed 1, GLM
  LOBO named 10 of 15 coupled units, BiLSTM LOBO every inh1 and reb1).
- ``lfp-ratgps``: the Axona rat recording (``.eeg*`` at 250 Hz, units of the Tint cuts of every
  tetrode with a ``.cut``), blocked-time k-fold with a one-window gap; LOBO retrains the GLM
  (the 15-minute budget on 2 cores).

Options beyond ``--seed/--epochs/--cv-folds`` come as ``--hparam KEY=VALUE``: recipe keys
(``participants``, ``duration_s`` for the simulation; ``max_train``, ``lobo`` (true/false),
``lobo_model`` (glm | bilstm; default bilstm in ``lfp-sim``, glm in ``lfp-ratgps``), ``batch_size``, ``lr``, ``patience``, ``window_s``, ``bin_s``, ``after_s``,
``target``, ``inputs`` (comma list), ``units`` (comma list of unit ids; default all)); every other key goes to the BiLSTM builder (``units1``,
``units2``, ``dropout``).

The BiLSTM size of both recipes is frozen (:data:`BILSTM_HPARAMS`: 16 -> 8 units, dropout 0.5,
instead of the seed's 64 -> 32, dropout 0.2; ``--hparam units1=64 --hparam units2=32 --hparam
dropout=0.2`` restores the seed). The candidate came from a diagnostic run on the earlier
(60-s, since revised) seed-0 cohort; it was checked on a development cohort of the revised
simulation with seed 1 (the recipe scores seed 0) before the reported run, and is applied
unchanged to the rat recording.
On one fold of that cohort (unit inh1, GLM 0.924) the seed's size scored held-out ROC-AUC 0.923,
its best inner-validation loss at epoch 2 with the training loss already 0.24 (memorising a
fold's few thousand training windows); 32 -> 16 units (amplitude and phase inputs, dropout 0.3)
0.942, 16 -> 8 units (dropout 0.5, every training window) 0.936; the 32 -> 16 network traced
over 8 epochs lost held-out ROC-AUC from the first epoch on (0.942 -> 0.925). Over the five
folds of inh1, 16 -> 8 with dropout 0.5 scored 0.934 on average against the GLM's 0.927. The
smallest of the sizes that did as well was kept, as the rat's folds hold far fewer spike windows
(~270). Training stops after ``patience`` = 2 epochs without a better inner-validation loss.
"""

from __future__ import annotations

from pathlib import Path

from ..core.atomic import write_text
from ..core.errors import EphysError

_RECIPE_KEYS = ("participants", "duration_s", "max_train", "lobo", "lobo_model", "batch_size", "lr", "patience",
                "window_s", "bin_s", "after_s", "target", "inputs", "units", "eager")


#: the frozen BiLSTM size of both recipes (see the module docstring); --hparam overrides a key
BILSTM_HPARAMS = {"units1": 16, "units2": 8, "dropout": 0.5}


def _split_hparams(hparams: dict | None):
    hp = {**BILSTM_HPARAMS, **dict(hparams or {})}
    rec = {k: hp.pop(k) for k in list(hp) if k in _RECIPE_KEYS}
    return rec, hp


def _params(rec: dict):
    from .sequence import SequenceParams

    p = SequenceParams()
    for k in ("window_s", "bin_s", "after_s", "target"):
        if k in rec:
            setattr(p, k, type(getattr(p, k))(rec[k]))
    if "inputs" in rec:
        p.inputs = tuple(s.strip() for s in str(rec["inputs"]).split(",") if s.strip())
    return p


def _run(recordings, out: Path, scheme: str, *, seed, epochs, cv_folds, rec, hp, log, name,
         max_train: int = 8000, patience: int = 2, oracle: bool = False, lobo_model: str = "glm") -> dict:
    from .cv import cross_validate
    from .sequence import prepare_lfp

    prepared = prepare_lfp(recordings, out / "prepared", _params(rec), log=log)
    metrics = cross_validate(prepared, out, scheme=scheme, n_folds=cv_folds, epochs=epochs, seed=seed,
                             bilstm_hparams=hp, batch_size=int(rec.get("batch_size", 128)),
                             lr=float(rec.get("lr", 1e-3)), patience=int(rec.get("patience", patience)),
                             max_train=int(rec.get("max_train", max_train)) or None,
                             lobo=bool(rec.get("lobo", True)), lobo_model=str(rec.get("lobo_model", lobo_model)),
                             units=[u.strip() for u in str(rec["units"]).split(",")] if "units" in rec else None,
                             eager=bool(rec.get("eager", False)), log=log)
    metrics["recipe"] = name
    from ..core.atomic import write_json
    from .descriptive import spike_lfp_summary, sta_figure

    desc = spike_lfp_summary(recordings)
    write_json(out / "spike_lfp.json", desc)
    sta_figure(desc, out / "spike_triggered_lfp.png")
    metrics["descriptive"] = {"file": "spike_lfp.json", "figure": "spike_triggered_lfp.png", "max_ppc": {
        k: max(((b, v) for b, v in d["ppc"].items() if v is not None), key=lambda bv: bv[1], default=(None, None))
        for k, d in desc.items()}}

    if scheme == "blocked":  # one animal: also train on the other units, score the held-out one
        from .heldout_units import held_out_units

        metrics["held_out_units"] = held_out_units(out / "prepared", n_folds=cv_folds, seed=seed, log=log)
    if oracle:  # simulated recordings: the true intensity scored like a model (the ceiling), and the
        # simulator's formulas read from the LFP at population parameters (a ceiling for LFP models)
        ceiling = oracle_metrics(out / "prepared", recordings, keys=set(metrics["per_unit"]))
        if ceiling:
            metrics["oracle"] = ceiling
            metrics["plug_in"] = oracle_metrics(out / "prepared", recordings, keys=set(metrics["per_unit"]),
                                                source="plug_in")
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", report_md(metrics))
    from .report import build_lfp_report

    build_lfp_report(out, metrics, recordings, log=log)
    return metrics


def reproduce_sim(data, out, *, seed: int = 0, epochs: int = 40, cv_folds: int = 5, hparams: dict | None = None,
                  log=print) -> dict:
    """``reproduce lfp-sim`` (see the module docstring); ``data`` None or a cohort folder."""
    from .readers import read_lfp_recordings
    from .synthetic import DURATION_S, fetch_synthetic

    out = Path(out)
    rec, hp = _split_hparams(hparams)
    if data is None or str(data) in ("", "."):
        data = fetch_synthetic(out / "cohort", n_participants=int(rec.get("participants", 5)), seed=seed,
                               duration_s=float(rec.get("duration_s", DURATION_S)))
    recordings = read_lfp_recordings(data)
    return _run(recordings, out, "grouped", seed=seed, epochs=epochs, cv_folds=cv_folds, rec=rec, hp=hp,
                log=log, name="lfp-sim", oracle=True, lobo_model="bilstm")


def oracle_metrics(prepared: Path, recordings, keys=None, source: str = "true") -> dict | None:
    """The ceilings on the simulated cohort, scored on every window of the prepared datasets (the
    same windows the cross-validated models are scored on), per recording/unit, pooled and pooled
    over the coupled units: ROC-AUC / PR-AUC of the bin probability from

    - ``source="true"`` (``oracle``): the simulator's true intensity
      (:func:`ephys.pipelines.lfp.synthetic.oracle_bin_probability`), what no model reading the
      LFP can beat;
    - ``source="plug_in"`` (``plug_in``): the simulator's formulas applied to the drives as the LFP
      shows them, at population parameters (:func:`ephys.pipelines.lfp.synthetic.
      plug_in_probability`): what a model that knew the generating formulas, trained on other
      participants, would score with the models' band filters.

    None when no recording carries an ``intensity.npy`` (not simulated). ``keys`` (set of
    ``recording/unit``): only those (the units that were cross-validated)."""
    import json

    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    from ..core.datasets import load_dataset
    from .sequence import load_index
    from .synthetic import bin_probability, oracle_bin_probability, plug_in_probability

    index = load_index(prepared)
    by_name = {r.name: r for r in recordings}
    folders = {r.name: Path(r.sources[0]).parent for r in recordings}
    plug_in = {}
    per_unit, ys, ps, coupled = {}, [], [], []
    for unit, uinfo in index["units"].items():
        smp = load_dataset(prepared / uinfo["dataset"]).manifest["samples"]
        for rec_name in sorted({s["group"] for s in smp}):
            sel = [s for s in smp if s["group"] == rec_name]
            t_s = np.array([s["t_s"] for s in sel])
            p = oracle_bin_probability(folders.get(rec_name, Path("/nonexistent")), unit, t_s, float(index["bin_s"]))
            if p is None:
                return None
            if source == "plug_in":
                rec = by_name[rec_name]
                if rec_name not in plug_in:
                    meta = json.loads((folders[rec_name] / "recording.json").read_text())
                    plug_in[rec_name] = plug_in_probability(rec.lfp, rec.fs_hz, meta["units"])
                p = bin_probability(plug_in[rec_name][unit], rec.fs_hz, rec.t0_s, t_s, float(index["bin_s"]))
            y = np.array([s["label"] == "spike" for s in sel], dtype=np.int64)
            key = f"{rec_name}/{unit}"
            if keys is not None and key not in keys:
                continue
            ok = np.unique(y).size == 2
            per_unit[key] = {"roc_auc": float(roc_auc_score(y, p)) if ok else None,
                             "pr_auc": float(average_precision_score(y, p)) if ok else None,
                             "positive_rate": float(y.mean())}
            ys.append(y)
            ps.append(p)
            coupled.append(bool(((uinfo.get("info") or {}).get(rec_name) or {}).get("band")))
    y, p = np.concatenate(ys), np.concatenate(ps)
    c = np.concatenate([np.full(a.size, f) for a, f in zip(ys, coupled)])
    out = {"what": "the simulator's true bin probability scored like a model (the ceiling)" if source == "true" else
           "the simulator's formulas on the LFP's band amplitude and phase, population parameters (a ceiling "
           "for models trained on other participants; not a strict bound)",
           "roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
           "positive_rate": float(y.mean()), "per_unit": per_unit}
    if c.any() and np.unique(y[c]).size == 2:
        out["pooled_coupled"] = {"roc_auc": float(roc_auc_score(y[c], p[c])),
                                 "pr_auc": float(average_precision_score(y[c], p[c]))}
    return out


def reproduce_ratgps(data, out, *, seed: int = 0, epochs: int = 40, cv_folds: int = 5,
                     hparams: dict | None = None, log=print) -> dict:
    """``reproduce lfp-ratgps`` (see the module docstring).

    Raises
    ------
    EphysError
        ``data`` is not one Axona recording.
    """
    from .readers import read_lfp_recordings

    rec, hp = _split_hparams(hparams)
    recordings = read_lfp_recordings(data)
    if len(recordings) != 1:
        raise EphysError(f"expected one recording (one animal), found {len(recordings)}", data)
    # one animal, ~300-850 spikes per unit: every spike window of a fold's training side and no_spike
    # windows up to 1500 in all, early stopping after 2 epochs without a better validation loss
    return _run(recordings, Path(out), "blocked", seed=seed, epochs=epochs, cv_folds=cv_folds, rec=rec, hp=hp,
                log=log, name="lfp-ratgps", max_train=1500, patience=2)


def _f(v, nd=3):
    return "n/a" if v is None else f"{v:.{nd}f}"


def summary_lines(m: dict) -> list[str]:
    """Lines printed after a recipe: pooled numbers of both models and the LOBO hit rate."""
    lines = [f"{m['model']}: pooled ROC-AUC {_f(m['roc_auc'])}  PR-AUC {_f(m['pr_auc'])} (positive rate "
             f"{_f(m['positive_rate'])})  rate r {_f(m['rate_correlation'])}"]
    ref = m.get("reference")
    if ref:
        lines.append(f"{ref['model']} (reference): pooled ROC-AUC {_f(ref['roc_auc'])}  PR-AUC {_f(ref['pr_auc'])}  "
                     f"rate r {_f(ref['rate_correlation'])}")
    for part in (m.get("also") or {}).values():
        lines.append(f"{part['model']}: pooled ROC-AUC {_f(part['roc_auc'])}  PR-AUC {_f(part['pr_auc'])}  "
                     f"rate r {_f(part['rate_correlation'])}")
    if m.get("pooled_coupled"):
        others = [p for p in [ref, *(m.get("also") or {}).values()] if p and p.get("pooled_coupled")]
        lines.append(f"{m['model']} pooled over the coupled (simulated) units: ROC-AUC {_f(m['pooled_coupled']['roc_auc'])}"
                     + "".join(f"; {p['model']} {_f(p['pooled_coupled']['roc_auc'])}" for p in others))
    orc = m.get("oracle")
    if orc:
        lines.append(f"oracle (true simulated intensity, the ceiling): pooled ROC-AUC {_f(orc['roc_auc'])}"
                     + (f"; over the coupled units {_f(orc['pooled_coupled']['roc_auc'])}"
                        if orc.get("pooled_coupled") else ""))
    plug = m.get("plug_in")
    if plug:
        lines.append(f"plug-in (the simulator's formulas on the LFP, population parameters): pooled ROC-AUC "
                     f"{_f(plug['roc_auc'])}" + (f"; over the coupled units {_f(plug['pooled_coupled']['roc_auc'])}"
                                                 if plug.get("pooled_coupled") else ""))
    lobo = m.get("lobo")
    if lobo and lobo.get("hit_rate") is not None:
        lines.append(f"LOBO ({lobo['model']}): generating band named for {lobo['n_hits']}/{lobo['n_coupled']} "
                     f"coupled units ({_f(lobo['hit_rate'], 2)})")
    hu = m.get("held_out_units")
    if hu and hu.get("roc_auc") is not None:
        lines.append(f"held-out units (GLM trained on the other units): pooled ROC-AUC {_f(hu['roc_auc'])}")
    return lines


def report_md(m: dict) -> str:
    """A plain Markdown report of a recipe's metrics (per-unit table, LOBO table)."""
    parts = [m] + ([m["reference"]] if m.get("reference") else []) + list((m.get("also") or {}).values())
    models = [p["model"] for p in parts]
    per = {p["model"]: p["per_unit"] for p in parts}
    out = [f"# {m.get('recipe', 'lfp')}", "",
           f"Cross-validation: {', '.join(sorted(set(m['scheme'].values())))}, {m['n_folds']} folds; window "
           f"{m['window_s']} s, prediction bin {m['prediction_bin_s']} s ({m['target']}). Every number is from "
           "held-out windows; thresholds were fitted on the training side of each fold.", "", *summary_lines(m), "",
           "| unit | positive rate | " + " | ".join(f"{x} ROC-AUC | {x} PR-AUC | {x} rate r | {x} bal. acc."
                                                    for x in models) + " |",
           "|---|---:|" + "---:|" * (4 * len(models))]
    orc_units = (m.get("oracle") or {}).get("per_unit") or {}
    plug_units = (m.get("plug_in") or {}).get("per_unit") or {}
    for extra, name in ((orc_units, "oracle"), (plug_units, "plug-in")):
        if extra:
            out[-2] = out[-2][:-1] + f"| {name} ROC-AUC |"
            out[-1] += "---:|"
    for k in m["per_unit"]:
        cells = [k, _f(m["per_unit"][k]["positive_rate"], 4)]
        for x in models:
            u = per[x].get(k, {})
            cells += [_f(u.get("roc_auc")), _f(u.get("pr_auc")), _f(u.get("rate_correlation")),
                      _f(u.get("balanced_accuracy"))]
        for extra in (orc_units, plug_units):
            if extra:
                cells.append(_f((extra.get(k) or {}).get("roc_auc")))
        out.append("| " + " | ".join(cells) + " |")
    lobo = m.get("lobo")
    if lobo:
        out += ["", f"## Leave-one-band-out ({lobo['model']}): ΔROC-AUC (all bands minus without the band)", "",
                "| unit | " + " | ".join(lobo["bands"]) + " | named | truth |", "|---|" + "---:|" * len(lobo["bands"]) + "---|---|"]
        for k, d in lobo["per_unit"].items():
            out.append("| " + " | ".join([k] + [_f(d.get(b)) for b in lobo["bands"]] +
                                         [str(lobo["named_band"].get(k)), str(lobo["ground_truth_band"].get(k, "?"))]) + " |")
        out.append("| pooled (95% CI over folds) | " + " | ".join(
            f"{_f(v['delta_roc_auc'])} [{_f(v['ci95'][0])}, {_f(v['ci95'][1])}]" for v in lobo["pooled"].values()) + " | | |")
    desc = m.get("descriptive")
    if desc:
        out += ["", "## Spike-LFP context (whole recordings, descriptive)", "",
                "Highest pairwise phase consistency (PPC, Vinck et al. 2010) per unit, channel:band:", ""]
        out += [f"- {k}: {bv[0]} PPC {_f(bv[1], 4)}" for k, bv in desc["max_ppc"].items()]
        out += ["", f"![spike-triggered LFP averages]({desc['figure']})"]
    hu = m.get("held_out_units")
    if hu and hu.get("per_unit"):
        out += ["", "## Held-out units (GLM trained on the other units, same time folds)", "", hu["what"] + ".", "",
                "| held-out unit | ROC-AUC | PR-AUC | positive rate |", "|---|---:|---:|---:|"]
        out += [f"| {k} | {_f(d['roc_auc'])} | {_f(d['pr_auc'])} | {_f(d['positive_rate'], 4)} |"
                for k, d in {**hu["per_unit"], "pooled": hu["pooled"]}.items()]
    out += ["", "The same content with figures: report.html."]
    return "\n".join(out) + "\n"
