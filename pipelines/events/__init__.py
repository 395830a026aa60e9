"""Pipeline ``events``: miniature end-plate potentials and miniature synaptic currents.

Continuous traces (ABF, NWB, ``.npy``) -> per-sample event probabilities from a miniML-like
window classifier (``cnn_bilstm``), a 1-D U-Net mask (``unet1d``), a convolutional autoencoder's
anomaly score (``autoencoder``) or a plain threshold -> one shared detection step (onset, peak,
amplitude, 10-90 % rise, decay tau, charge) -> ``events.csv`` per recording.

All three networks are registered models trained by the core's fit loop (``ephys train``):
``cnn_bilstm`` on ``event_window`` datasets (class label), ``unet1d`` (target: the per-sample
event mask) and ``autoencoder`` (target: its input, fitted on event-free patches) on
``event_patch`` datasets (:func:`ephys.pipelines.events.patches.prepare_event_patches`).

Modules: ``readers`` (traces and labels), ``simulate`` (the seeded simulated default with ground
truth), ``windows`` (window / patch layouts), ``patches`` (the patch dataset from a cohort
folder), ``models`` (Keras builders, the U-Net's loss), ``seg`` (U-Net and autoencoder inference,
threshold and test metrics), ``detect`` (the detection step), ``shape`` (the event-shape check),
``nwb`` (``events detect``'s NWB output), ``metrics`` (event F1, IoU),
``events_sim`` and ``minis`` (the ``reproduce`` recipes), ``apply`` (``ephys events detect``),
``report``.
"""

from ..core.models import HParam, ModelSpec
from ..core.prepare import PrepareStep
from ..core.registry import ClusterSteps, Command, Modality, Pipeline, Recipe, register_pipeline
from .params import DetectParams, PatchParams, WindowParams
from .simparams import SimParams

_SEG = "ephys.pipelines.events.seg:"
MODELS = (
    ModelSpec("cnn_bilstm", "ephys.pipelines.events.models:build_cnn_bilstm", ("event_window",), None, ("miniml",),
              "CNN + bidirectional LSTM window classifier after miniML (O'Neill et al. 2025, eLife)", False,
              feature_layers=("conv0", "conv1", "conv2"), shipped="ephys.pipelines.events.shipped:shipped_model_run",
              hparams={
                  "width": HParam(16, int, "filters of the first convolution (the next two have twice as many; "
                                  "miniML uses 32-128)", min=1),
                  "lstm": HParam(16, int, "LSTM units per direction (miniML: 64)", min=1),
                  "dropout": HParam(0.2, float, "dropout rate (fraction of units) after the LSTM",
                                    min=0, max=1, max_exclusive=True)}),
    ModelSpec("unet1d", "ephys.pipelines.events.models:build_unet1d", ("event_patch",), None, (),
              "1-D U-Net: per-sample event mask of a patch, BCE + Dice loss (the mEPP seed's MiniUNet)", False,
              target="mask", loss="ephys.pipelines.events.models:dice_bce", evaluator=_SEG + "evaluate_mask",
              hparams={"width": HParam(16, int, "filters at the top level (doubled per level)", min=1),
                       "depth": HParam(3, int, "levels of the U (patch length divisible by 2**depth)", min=1),
                       "kernel": HParam(9, int, "convolution length in samples", min=1),
                       "dropout": HParam(0.0, float, "unused (accepted so --dropout is harmless)", min=0, max=1,
                                         max_exclusive=True)}),
    ModelSpec("autoencoder", "ephys.pipelines.events.models:build_autoencoder", ("event_patch",), None, (),
              "convolutional autoencoder of event-free patches; anomaly score = reconstruction error (after "
              "keras.io timeseries anomaly detection)", False,
              target="input", loss="mse", fit_labels=("no_event",), after_fit=_SEG + "choose_anomaly_threshold",
              evaluator=_SEG + "evaluate_anomaly",
              hparams={"width": HParam(16, int, "filters of each convolution", min=1),
                       "kernel": HParam(7, int, "convolution length in samples", min=1),
                       "code": HParam(16, int, "bottleneck units (far fewer than the patch length)", min=1),
                       "dropout": HParam(0.0, float, "unused (accepted so --dropout is harmless)", min=0, max=1,
                                         max_exclusive=True)}),
)

EVENT_WINDOW = Modality(
    "event_window", "600-sample windows of a current or voltage trace, each min-max scaled, (600, 1) float32",
    sample_noun="window", group_noun="recording", examples_title="Example windows", predict_batch_size=512,
    explain="ephys.pipelines.events.explain:explain_window_run",
    explanation="ephys.pipelines.events.explain:explanation_section")

EVENT_PATCH = Modality(
    "event_patch", "overlapping patches of a normalised trace (events upward, robust SD units), (L, 1) float32, "
    "with the per-sample event mask beside them", sample_noun="patch", examples_title="Example patches",
    predict_batch_size=64)


def _sim(data, out, *, seed=0, epochs=8, log=print):
    from .events_sim import run_events_sim

    return run_events_sim(data, out, seed=seed, epochs=epochs, log=log)


def _sim_summary(res: dict) -> list[str]:
    lines = []
    for m, e in res["methods"].items():
        snr = "  ".join(f"SNR {s}: F1 {v['f1']:.2f}" for s, v in e["by_snr"].items())
        lines.append(f"{m}: F1 {e['f1']:.3f} (P {e['precision']:.2f}, R {e['recall']:.2f})  {snr}  "
                     f"[{e['seconds_per_minute']:.2f} s per minute of trace]")
    return lines


def _minis(data, out, *, seed=0, epochs=15, cv_folds=5, log=print):
    from .minis import run_minis

    return run_minis(data, out, seed=seed, epochs=epochs, cv_folds=cv_folds, log=log)


def _minis_summary(res: dict) -> list[str]:
    return [f"window classifier, {res['cv']}: accuracy {res['accuracy']:.3f} (majority baseline "
            f"{res['majority_baseline']:.3f}), ROC-AUC {res['roc_auc']:.3f}, n = {res['n_windows']}"]


def _default(data, out, *, seed=0, epochs=6, n_train=1, duration_s=10.0, log=print):
    from .default_model import run_default_model

    return run_default_model(data, out, seed=seed, epochs=epochs, n_train=int(n_train), duration_s=float(duration_s),
                             log=log)


def _default_summary(res: dict) -> list[str]:
    return [f"model {res['model_bytes'] / 1024:.0f} KiB, sha256 {res['model_sha256'][:16]}..., training windows "
            f"{res['data_fingerprint'][:16]}...; copy it into the package with "
            "ephys.pipelines.events.default_model.install(OUT)"]


def _families(data, out, *, run=None, n_recordings=5, duration_s=10.0, log=print):
    from .default_model import run_family_benchmark

    return run_family_benchmark(data, out, run=run, n_recordings=int(n_recordings), duration_s=float(duration_s),
                                log=log)


def _families_summary(res: dict) -> list[str]:
    return [f"mean F1 over family x SNR (coloured noise): " + ", ".join(f"{m} {v:.3f}" for m, v in
                                                                      res["mean_f1_coloured"].items()),
            f"default method: {res['default_method']} ({res['default_rule']})"]


def _transfer(data, out, *, seed=0, epochs=40, cv_folds=5, init=None, sizes="25,50,100,200,400", log=print):
    from .transfer import run_transfer_curve

    return run_transfer_curve(data, out, seed=seed, epochs=epochs, cv_folds=cv_folds, init=init,
                              sizes=tuple(int(s) for s in str(sizes).replace(" ", "").split(",") if s), log=log)


def _transfer_summary(res: dict) -> list[str]:
    return [f"{r['n_train']} windows: from scratch {r['scratch']['accuracy']:.3f}, fine-tuned "
            f"{r['fine_tuned']['accuracy']:.3f} (held-out accuracy, {r['n_folds']} blocked folds)"
            for r in res["curve"]]


def _synthetic(out, *, seed=0, size=None, progress=None, families=(), duration_s=10.0, **options):
    if families:  # the kinetics families users' recordings come in
        from .families import synthetic_families

        return synthetic_families(out, families=tuple(families), seed=seed, size=size, progress=progress,
                                  duration_s=duration_s, **options)
    from .simulate import synthetic

    return synthetic(out, seed=seed, size=size, progress=progress, duration_s=duration_s)


PREPARE_EVENTS = PrepareStep(
    "events", "Cut labelled windows from event traces for the window classifier (an event_window dataset).",
    discover="ephys.pipelines.events.prepare:discover", process="ephys.pipelines.events.prepare:process",
    collect="ephys.pipelines.events.prepare:collect", params=WindowParams, noun="recording",
    modalities=("event_window",),
    description="A simulated cohort: 600-sample windows of every recording (event / no_event, min-max scaled; "
                "group = recording). A miniML HDF5 windows file (events, scores, raw_indices): its windows, scaled "
                "the same way, labelled by score (2 = unlabelled). For `ephys train --model cnn_bilstm` (and "
                "`--fold K`: cross-validation over recordings) and `ephys predict`.",
    input_help="A simulated events folder (`ephys fetch synthetic --pipeline events`) or a miniML HDF5 windows "
               "file (.h5).", input_default="raw/synthetic-events", out_default="processed/events")

PREPARE_PATCHES = PrepareStep(
    "event-patches", "A simulated cohort -> overlapping trace patches with their event masks (U-Net, autoencoder).",
    discover="ephys.pipelines.events.patches:discover", process="ephys.pipelines.events.patches:process",
    collect="ephys.pipelines.events.patches:collect", params=PatchParams, noun="recording",
    modalities=("event_patch",),
    description="Per recording: the trace normalised (baseline removed with a running median, events upward, "
                "robust SD units) and cut into overlapping patches with the per-sample event mask beside them; "
                "group = recording. For `ephys train --model unet1d` (or `--model autoencoder` with "
                "--patch-samples 256).",
    input_help="A simulated events folder (`ephys fetch synthetic --pipeline events`).",
    input_default="raw/synthetic-events", out_default="processed/event-patches")

COMMANDS = (
    Command("detect", "Detect miniature synaptic events in a continuous trace with each method.",
            "ephys.pipelines.events.commands:detect", DetectParams,
            description="Analyses the channel the recording mode names (the current in voltage clamp, the "
                        "potential in current clamp; --channel overrides) with the sign of its events (--polarity "
                        "auto: decided from the trace, and said why). Every method's candidates pass an "
                        "event-shape check (not a glitch, not below noise, a rise and a decay back to half "
                        "amplitude within the limits). Measures each event (onset, peak, amplitude, 10-90 % rise, "
                        "decay tau, charge) and writes OUT/events_METHOD.csv, OUT/rejected_METHOD.csv (each "
                        "rejected candidate with its reason), OUT/events.nwb (an NWB EventsTable per method; the "
                        "source is named, never modified), OUT/summary.json and OUT/report.html. Stimulus samples "
                        "(an episodic ABF's command steps, e.g. a membrane test) are excluded."),
)

PIPELINE = register_pipeline(Pipeline(
    "events", "miniature synaptic events (mEPPs, mEPSCs): window classifier, 1-D U-Net, autoencoder, threshold",
    modalities=(EVENT_WINDOW, EVENT_PATCH), models=MODELS,
    recipes=(Recipe("events-sim", "simulated mEPP-/mEPSC-like cohort at SNR 2.5/5/10: train cnn_bilstm, unet1d, "
                    "autoencoder on training recordings, detect on held-out recordings, event-level F1 per SNR "
                    "(onsets within ±1 ms), report; --data a `fetch synthetic --pipeline events` folder "
                    "(simulated afresh when absent)", _sim, default_data="data/raw/synthetic-events",
                    summary=_sim_summary),
             Recipe("minis", "cnn_bilstm on miniML's real granule-cell windows, cross-validated in contiguous "
                    "blocks of raw_indices; accuracy beside the majority baseline, ROC-AUC; miniML's "
                    "published numbers under `reference`", _minis, default_data="../shared/data/minis",
                    summary=_minis_summary),
             Recipe("events-default", "train the window classifier that ships with ephys on simulated kinetics "
                    "families (fast mEPSC, mIPSC, NMJ mEPP/mEJC; SNR 2-10; coloured noise with labelled glitches "
                    "and steps), choose its detection settings on calibration recordings; OUT/shipped.json "
                    "records recipe, seed, data fingerprint and sha256 (--hparam n_train=N, duration_s=S)",
                    _default, summary=_default_summary),
             Recipe("events-families", "held-out simulated test sets per kinetics family and SNR 2, 3, 5, 10 (and "
                    "fast mEPSCs on real event-free noise from --data): event F1 with 95 % bootstrap intervals of "
                    "the shipped window classifier (or --hparam run=FOLDER) and the calibrated threshold; names "
                    "the default method", _families, default_data="../shared/data/events/171116sh_0020.abf",
                    summary=_families_summary),
             Recipe("minis-transfer", "learning curve on miniML's scored windows: held-out accuracy vs labelled "
                    "training windows (--hparam sizes=25,50,...), blocked folds of raw_indices, cnn_bilstm from "
                    "scratch beside fine-tuned from a simulation-trained run (--hparam init=RUN; default the "
                    "shipped model) with its convolutions frozen", _transfer, default_data="../shared/data/minis",
                    summary=_transfer_summary)),
    synthetic=_synthetic, synthetic_size="recordings", synthetic_params=SimParams, prepare=(PREPARE_EVENTS, PREPARE_PATCHES), commands=COMMANDS,
    # the window classifier, cross-validated over recordings (the events-sim recipe's settings)
    cluster=ClusterSteps("events", ("cnn_bilstm",), fetch_size=12,
                         train_args="--epochs 8 --batch-size 64 --lr 2e-3 --patience 4 --dropout 0.2 "
                                    "--hparam width=16 --hparam lstm=16")))
