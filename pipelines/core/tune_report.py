"""``ephys tune --report DIR``: the page of a search (``DIR/report.html``) and its ``DIR/best.yaml``.

Sections: summary (best validation loss, trials by state, what the search cost), best trials, the
best configuration (as ``best.yaml`` holds it, with the command that trains it and evaluates it on
the test part once), the objective against each searched setting, Optuna's parameter
importances (fANOVA: Hutter et al. 2014, ICML, "An efficient approach for assessing
hyperparameter importance"), the optimisation history and the trials' validation curves, every
trial, and the study's definition. Built with the one page builder (:mod:`ephys.pipelines.core.page`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .tune import OBJECTIVE, _open, counted, load_study, study_summary, trial_run_name, write_best

__all__ = ["build_tune_report"]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _duration(s: float) -> str:
    s = float(s)
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def _fig_params(complete, space: dict) -> bytes | None:
    from .page import OKABE_ITO, png_bytes, pyplot, style_axes

    names = list(space)
    if not complete or not names:
        return None
    plt = pyplot()
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.9 * nrows), squeeze=False, layout="constrained")
    values = np.array([t.value for t in complete])
    best = int(np.argmin(values))
    for ax, name in zip(axes.flat, names):
        xs = [t.params.get(name) for t in complete]
        if "choices" in space[name]:
            cats = [str(c) for c in space[name]["choices"]]
            pos = np.array([cats.index(str(x)) if str(x) in cats else -1 for x in xs], dtype=float)
            jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(pos))
            ax.scatter(pos + jitter, values, s=22, color=OKABE_ITO[0], alpha=0.8)
            ax.scatter([pos[best]], [values[best]], s=60, color=OKABE_ITO[5], zorder=3)
            ax.set_xticks(range(len(cats)), cats, fontsize=8)
        else:
            x = np.array(xs, dtype=float)
            ax.scatter(x, values, s=22, color=OKABE_ITO[0], alpha=0.8)
            ax.scatter([x[best]], [values[best]], s=60, color=OKABE_ITO[5], zorder=3)
            if space[name].get("log"):
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on a short range
        ax.set_xlabel(name)
        ax.set_ylabel(OBJECTIVE)
        style_axes(ax)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return png_bytes(fig)


def _fig_history(trials) -> bytes | None:
    from optuna.trial import TrialState

    from .page import OKABE_ITO, png_bytes, pyplot, style_axes

    done = [t for t in trials if t.state == TrialState.COMPLETE]
    curves = [t for t in trials if t.intermediate_values]
    if not done and not curves:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
    ax = axes[0]
    if done:
        num = np.array([t.number for t in done])
        val = np.array([t.value for t in done])
        ax.scatter(num, val, s=20, color=OKABE_ITO[0], label="completed trial")
        order = np.argsort(num)
        ax.step(num[order], np.minimum.accumulate(val[order]), where="post", color=OKABE_ITO[5], label="best so far")
        ax.legend(fontsize=8, frameon=False)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(OBJECTIVE)
    style_axes(ax)
    ax = axes[1]
    for t in curves:
        steps = sorted(t.intermediate_values)
        pruned = t.state == TrialState.PRUNED
        ax.plot(np.array(steps) + 1, [t.intermediate_values[s] for s in steps], lw=1.2,
                color="0.65" if pruned else OKABE_ITO[0], alpha=0.9, ls="--" if pruned else "-")
    ax.set_xlabel("epoch (from 1; inner folds one after another)")
    ax.set_ylabel("validation loss")
    ax.set_title("trials' validation curves (dashed grey: pruned)", fontsize=10)
    style_axes(ax)
    return png_bytes(fig)


def build_tune_report(study_dir: str | Path) -> tuple[Path, Path | None]:
    """Write ``DIR/report.html`` and, once a trial has completed, ``DIR/best.yaml``; return both
    paths (None for best.yaml when no trial completed).

    Raises
    ------
    EphysError
        Not a study folder.
    """
    from optuna.trial import TrialState

    from .page import Card, Cards, Details, Fig, Notice, Page, Params, Table, Text

    d = Path(study_dir)
    defn, split = load_study(d)
    summary = study_summary(d)
    study = _open(d, defn)
    trials = study.get_trials(deepcopy=False)
    complete = sorted([t for t in trials if t.state == TrialState.COMPLETE], key=lambda t: t.value)
    best_path = write_best(d) if complete else None
    best = summary["best"]
    fold = f"outer fold {defn['fold']} ({defn['scheme']})" if defn["fold"] is not None else f"split {split['name']}"
    scored = (f"the mean over {defn['inner_folds']} grouped inner folds of the training side" if defn["inner_folds"]
              else f"its validation part ({len(split['val'])} samples)")
    page = Page(f"Search of {defn['model']} on {Path(defn['data']).name}", kicker="ephys tune",
                pills=[f"{summary['n']}/{summary['trials']} trials", f"pruner {defn['pruner']}",
                       f"sampler {defn['sampler']}", fold], source=str(d))
    cards = [Card(f"Best {OBJECTIVE}", best["value"] if best else None,
                  f"trial {best['number']}" if best else "no completed trial yet"),
             Card("Trials", f"{summary['complete']} / {summary['pruned']} / {summary['failed']}",
                  "completed / pruned / failed", small=True),
             Card("Search cost", _duration(summary["seconds"]), f"trial time summed; {_duration(summary['wall_s'])} "
                  "from first start to last end", small=True)]
    if best and best.get("val_balanced_accuracy") is not None:
        cards.insert(1, Card("Its validation balanced accuracy", best["val_balanced_accuracy"],
                             frac=best["val_balanced_accuracy"]))
    notes = [Notice(f"{summary['running']} trial(s) still running, {summary['waiting']} queued: the page shows the "
                    "study as it is now.")] if summary["running"] or summary["waiting"] else []
    if summary["killed"]:
        notes.append(Text(f"{summary['killed']} trial(s) lost their worker and were run again with the same "
                          "settings (resuming their run folders).", muted=True))
    page.section("Summary", Cards(cards), *notes,
                 Text(f"Each trial trained on the training side of the {fold} and was scored by {OBJECTIVE} on "
                      f"{scored}. The test part ({len(split['test'])} samples) was given to no trial."))
    space_names = list(defn["space"])
    if complete:
        page.section("Best trials", Table(
            [[t.number, t.value, t.user_attrs.get("val_balanced_accuracy"), *[_fmt(t.params.get(k)) for k in space_names],
              trial_run_name(t)] for t in complete[:10]],
            ["trial", OBJECTIVE, "val balanced accuracy", *space_names, "run folder"], highlight={0}))
        cmd = best_path.read_text().splitlines()[1].lstrip("# ")
        page.section("Best configuration",
                     Text("best.yaml holds the base settings with the best trial's values. Train it on the whole "
                          "training side and evaluate it on the test part, once:"),
                     Notice("command", cmd), Params(best["params"], title="searched settings"))
        fig = _fig_params(complete, defn["space"])
        page.section(f"{OBJECTIVE} against each setting", Fig(fig, "objective against each setting",
                     "Each dot a completed trial; the best in orange.") if fig else None)
        try:
            import optuna

            imp = optuna.importance.get_param_importances(study)
            page.section("Importances", Table([[k, v] for k, v in imp.items()], ["setting", "importance"],
                         caption=f"Optuna's fANOVA importances: the share of the objective's variance over the "
                                 f"{len(complete)} completed trials each setting explains (few trials: a rough guide)."))
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            page.section("Importances", Notice(f"not computed: {' '.join(str(exc).split())[:200]}"))
    else:
        page.section("Best trials", Notice("No trial has completed yet."))
    hist = _fig_history(trials)
    if hist:
        page.section("History", Fig(hist, "optimisation history", "Left: each completed trial's objective and the "
                     "best so far. Right: the validation loss each trial reported per epoch (what pruning compares)."))
    page.section("Trials", Table(
        [[t.number, t.state.name.lower() + ("" if counted(t) else " (worker lost; retried)"),
          t.value, *[_fmt(t.params.get(k)) for k in space_names], t.user_attrs.get("seconds"),
          t.user_attrs.get("worker", ""), t.user_attrs.get("error") or t.user_attrs.get("failed_because") or ""]
         for t in trials],
        ["trial", "state", OBJECTIVE, *space_names, "seconds", "worker", "note"], scroll=len(trials) > 16))
    page.section("Study", Params({k: v for k, v in defn.items() if k not in ("base", "space")}, title="search"),
                 Params(defn["space"], title="space"), Params(defn["base"], title="base settings"),
                 Details.json("summary", summary))
    return page.write(d), best_path

