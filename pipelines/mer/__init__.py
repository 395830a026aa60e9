"""Pipeline ``mer``: subthalamic-nucleus (STN) detection in intraoperative microelectrode recordings.

After ML-STIM (Sciscenti et al. 2025, J Neural Eng, doi 10.1088/1741-2552/adf579): per
recording (one depth of one electrode, ~10 s at 24 kHz, in µV) resampling to 24 kHz, the published
causal band-pass + notch filtering, variance-ratio artifact removal and 9 features per 1-s segment;
an MLP (or LightGBM) tells inside from outside the STN; ML-STIM's own trained model applies too
(``ephys fetch weights ml-stim``, ``ephys predict ml-stim INPUT OUT``). Beyond ML-STIM, the
trajectory's STN entry and exit: a three-state left-to-right HMM, and a four-state decoder with an
STN-vs-SNr classifier (Valsky et al. 2017) where the SNr is labelled.

Modules: ``dsp`` (filters, artifact removal, features: the plain reference and the fast path; the
streaming resampler), ``readers`` (ML-STIM ``.npz`` + metadata CSV; CSV / ``.npy`` columns; NWB;
units), ``synthetic`` (the simulated default), ``prepare`` (``ephys prepare mer``), ``mlp`` (the
ML-STIM MLP with its scaler inside), ``published`` (ML-STIM's trained model as Keras),
``predictions`` (``ephys predict`` per recording, the trajectory section of ``ephys report``),
``trajectory`` (the decoders along depth), ``recipe`` (``ephys reproduce mer-sim``), ``stream``
(``ephys mer stream``, real time).
"""

from ..blocks.models.lightgbm import FEATURE_TABLE, LIGHTGBM_SPEC
from ..core.models import HParam, ModelSpec
from ..core.prepare import PrepareStep
from ..core.published import PublishedModel
from ..core.registry import ClusterSteps, Command, Pipeline, Recipe, register_pipeline
from . import published as _published
from .params import MerInput, MerParams, StreamParams

MLP_SPEC = ModelSpec("mlp", "ephys.pipelines.mer.mlp:build_mlp", ("features",), None, ("mlstim",),
                     "ML-STIM multilayer perceptron 9-7-4-4-2, tanh, min-max scaler fitted on the training data "
                     "inside the model (Sciscenti et al. 2025)", False,
                     hparams={"hidden": HParam((7, 4, 4, 2), int, "widths of the tanh hidden layers, units "
                                               "(ML-STIM: 7,4,4,2)", min=1, many=True)})


def segment_features(signal, fs_hz=24000):
    """The ``(n_segments, 9)`` float64 ML-STIM features of one recording, exactly as
    ``ephys prepare mer`` computes them (see :func:`ephys.pipelines.mer.dsp.segment_features`)."""
    from .dsp import segment_features as _run

    return _run(signal, fs_hz)


def _synthetic(out, *, seed=0, size=None, progress=None):
    from .synthetic import fetch_synthetic

    return fetch_synthetic(out, n_patients=size or 4, seed=seed, max_electrodes=2, progress=progress)


def _mer_sim(data, out, *, seed=0, epochs=40, log=print):
    from .recipe import reproduce_mer_sim

    return reproduce_mer_sim(data, out, seed=seed, epochs=epochs, log=log)


def _mer_sim_summary(res):
    from .recipe import summary_lines

    return summary_lines(res)


PREPARE_MER = PrepareStep(
    "mer", "Compute the 9 ML-STIM features of every 1-s segment of microelectrode recordings.",
    discover="ephys.pipelines.mer.prepare:discover", process="ephys.pipelines.mer.prepare:process",
    collect="ephys.pipelines.mer.prepare:collect", params=MerParams, options=MerInput, noun="recording",
    modalities=("features",),
    description="Per recording: convert to µV (--units, or the file's), resample to 24 kHz, band-pass 250-5000 Hz + 96 notches (causal), variance-ratio "
                "artifact removal (100-ms windows), then the 9 ML-STIM features of every 1-s segment (50 % overlap) "
                "-> one row per segment, group = patient, for `ephys train --model mlp|lightgbm`.",
    input_help="ML-STIM folder (data.npz + metadata.csv), its .npz or metadata .csv, NWB files, or a CSV / .npy of "
               "columns (one electrode each).", input_default="raw/synthetic-mer", out_default="processed/mer",
    predict_options=True, predictions="ephys.pipelines.mer.predictions:write_predictions",
    sections="ephys.pipelines.mer.predictions:run_sections")

ML_STIM = PublishedModel(
    "ml-stim", "ML-STIM's trained MLP (Sciscenti et al. 2025): inside / outside the STN from the 9 features of each "
               "1-s MER segment; per recording the mean segment probability >= 0.51 is STN",
    url=_published.URL, sha256=_published.SHA256, size=_published.SIZE_BYTES, licence=_published.LICENCE,
    citation=_published.CITATION, convert="ephys.pipelines.mer.published:convert", prepare="mer",
    label_names=("outside", "inside"), threshold=_published.THRESHOLD,
    decision="sigmoid per 1-s segment; a recording is STN when the mean over its segments is >= 0.51; features "
             "min-max scaled with the published constants and clipped to [0, 1]",
    input_range=(_published.FEATURE_MIN, _published.FEATURE_MAX))

COMMANDS = (
    Command("stream", "Real-time STN detection on a file played in chunks or a Lab Streaming Layer stream.",
            "ephys.pipelines.mer.commands:stream", StreamParams,
            description="Any sampling rate above 10 kHz (resampled to 24 kHz chunk by chunk by the offline path's "
                        "polyphase filter); the resampler and the filters keep their state across chunks, one "
                        "prediction per 1-s segment (every 0.5 s) with "
                        "its processing latency, and the trajectory's STN entry / exit (3-state HMM) updated "
                        "whenever a depth is finished."),
)

PIPELINE = register_pipeline(Pipeline(
    "mer", "STN detection in intraoperative microelectrode recordings (ML-STIM features, MLP / LightGBM, "
           "HMM borders)",
    modalities=(FEATURE_TABLE,), models=(MLP_SPEC, LIGHTGBM_SPEC),
    recipes=(Recipe("mer-sim",
                    "simulated cohort of 20 patients (ML-STIM format): leave-one-patient-out MLP and LightGBM, "
                    "per-segment and per-recording metrics, STN entry / exit along depth by the 3-state HMM and by "
                    "the four-state decoder with a leave-one-patient-out STN-vs-SNr classifier, side by side",
                    _mer_sim, default_data=None, summary=_mer_sim_summary),),
    synthetic=_synthetic, synthetic_size="patients",
    # leave-one-patient-out (the dataset says lopo); the recipe's MLP settings (ML-STIM: no dropout)
    prepare=(PREPARE_MER,), commands=COMMANDS, published=(ML_STIM,),
    cluster=ClusterSteps("mer", ("mlp", "lightgbm"), fetch_size=20,
                         train_args="--epochs 40 --batch-size 64 --lr 3e-3 --patience 6 --dropout 0")))

__all__ = ["segment_features", "PIPELINE", "MLP_SPEC"]
