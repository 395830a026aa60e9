"""Pipeline ``lfp``: single-neuron spiking from local field potentials (after SpikeInference).

SpikeInference (seed ``001_01fb2723e0b1278a``) predicts a neuron's spiking from the LFP with a
bidirectional LSTM. Here: ``sequence`` datasets of LFP windows (raw, band-passed, Hilbert
amplitude and phase; :mod:`.sequence`) with a per-unit spike target, a simulated cohort with a
known answer (:mod:`.synthetic`), the seed's BiLSTM and two registered baselines on the prediction
bin's band amplitude and phase, the ``glm`` and ``lightgbm_bins`` (:mod:`.glm`), what the recipes
ask of the core's cross-validation and leave-one-band-out (:mod:`.cv`), and the ``lfp-sim`` /
``lfp-ratgps`` recipes (:mod:`.recipes`).
"""

from ..blocks.models.lightgbm import LIGHTGBM_DEFAULTS, LIGHTGBM_SPEC
from ..core.models import HParam, ModelSpec
from ..core.prepare import PrepareStep
from ..core.registry import ClusterSteps, Modality, Pipeline, Recipe, register_pipeline
from .params import LfpOptions, SequenceParams

_BINS = "ephys.pipelines.lfp.glm"
_KEEP = HParam(None, int, "input channels read, 0-based indices of the last axis (not set: all; leave-one-band-out "
               "drops a band's)", min=0, many=True)
MODELS = (
    ModelSpec("bilstm", "ephys.pipelines.blocks.models.bilstm:build_bilstm", ("sequence",), None, (),
              "two-layer bidirectional LSTM on LFP windows (the SpikeInference seed: BiLSTM 64 -> 32, dropout 0.2)",
              False, hparams={
                  "dropout": HParam(0.2, float, "dropout rate (fraction of units) after each BiLSTM layer",
                                    min=0, max=1, max_exclusive=True),
                  "units1": HParam(64, int, "LSTM units per direction of the first layer", min=1),
                  "units2": HParam(32, int, "LSTM units per direction of the second layer", min=1),
                  "keep_channels": _KEEP,
                  "input_norm": HParam(True, bool, "leading BatchNormalization of the inputs (momentum 0.9)")}),
    ModelSpec("glm", f"{_BINS}:build_glm", ("sequence",), None, (),
              "logistic-regression GLM on the prediction bin's band amplitude and cos/sin phase of LFP windows "
              "(balanced classes; the spike-phase GLM baseline)", False, kind="sklearn", model_file="model.glm.json",
              trainer=f"{_BINS}:train_bin_model", predictor=f"{_BINS}:bin_model_predictor",
              hparams={"C": HParam(1.0, float, "inverse L2 regularisation strength of the logistic regression",
                                   min=0, min_exclusive=True),
                       "train_on": HParam("unit", str, "unit: fit on this unit's windows; other_units: fit on the "
                                          "other units of the recording (held-out-unit decoding)",
                                          choices=("unit", "other_units")),
                       "keep_channels": _KEEP}),
    ModelSpec("lightgbm_bins", f"{_BINS}:build_lightgbm_bins", ("sequence",), None, (),
              "LightGBM (Ke et al. 2017; default settings, balanced classes) on the GLM's prediction-bin features "
              "of LFP windows", False, kind="lightgbm", model_file="model.lgb.txt",
              trainer=f"{_BINS}:train_bin_model", predictor=f"{_BINS}:bin_model_predictor",
              hparams={**{k: h for k, h in LIGHTGBM_SPEC.hparams.items() if k in LIGHTGBM_DEFAULTS},
                       "class_weight": HParam("balanced", str, "none (not set) or balanced (weights inverse to "
                                              "class frequency)", choices=("none", "balanced")),
                       "keep_channels": _KEEP}),
)

SEQUENCE = Modality(
    "sequence", "windows of multichannel LFP inputs (time, inputs) float32 with a per-unit spike target, "
    "one array for all windows", sample_noun="window", group_noun="recording", examples_title="Example windows",
    predict_batch_size=2048, explain="ephys.pipelines.lfp.explain:explain_sequence_run",
    explanation="ephys.pipelines.lfp.explain:explanation_section")


def _synthetic(out, *, seed=0, size=None, progress=None):
    from .synthetic import fetch_synthetic

    return fetch_synthetic(out, n_participants=size or 5, seed=seed, progress=progress)


def _sim(data, out, *, seed=0, epochs=40, cv_folds=5, hparams=None, log=print):
    from .recipes import reproduce_sim

    return reproduce_sim(data, out, seed=seed, epochs=epochs, cv_folds=cv_folds, hparams=hparams, log=log)


def _ratgps(data, out, *, seed=0, epochs=40, cv_folds=5, hparams=None, log=print):
    from .recipes import reproduce_ratgps

    return reproduce_ratgps(data, out, seed=seed, epochs=epochs, cv_folds=cv_folds, hparams=hparams, log=log)


def _summary(res: dict) -> list[str]:
    from .recipes import summary_lines

    return summary_lines(res)


PREPARE_LFP = PrepareStep(
    "lfp", "Turn LFP recordings and spike times into windows with a per-unit spike target.",
    discover="ephys.pipelines.lfp.sequence:discover", process="ephys.pipelines.lfp.sequence:process",
    collect="ephys.pipelines.lfp.sequence:collect", params=SequenceParams, options=LfpOptions,
    noun="recording", modalities=("sequence",), main_file="index.json",
    predict_dataset="ephys.pipelines.lfp.sequence:unit_dataset",
    description="windows.npy (all windows), one sequence dataset per unit (units/UNIT/manifest.json, group = "
                "recording; `ephys train --model bilstm --data OUT/units/UNIT`), index.json written last. Bands "
                "delta..high gamma below 0.9 x Nyquist, zero-phase filters over each whole recording, Hilbert "
                "amplitude and phase.",
    input_help="An .nwb file (LFP ElectricalSeries + Units table), a .mat file (lfp, fs_hz) with NAME_spikes.csv or "
               "spikes.csv (unit,t_s), an Axona trial folder (.eeg* + tetrode .N + Tint .cut), a folder with lfp.npy + "
               "spikes.csv (unit,t_s) + recording.json (fs_hz), or a folder of such folders (a cohort, e.g. `ephys "
               "fetch synthetic --pipeline lfp`).", out_default="processed/lfp")

PIPELINE = register_pipeline(Pipeline(
    "lfp", "single-neuron spiking from local field potentials (BiLSTM and a GLM on band amplitude/phase; LOBO)",
    modalities=(SEQUENCE,), models=MODELS,
    recipes=(Recipe("lfp-sim", "the simulated cohort (5 participants unless --data names a cohort folder): "
                    "participant-grouped 5-fold CV of the BiLSTM and the GLM per unit, leave-one-band-out and "
                    "its hit rate against the simulated ground truth", _sim, default_data=None, summary=_summary),
             Recipe("lfp-ratgps", "the Axona rat recording (3 LFP channels at 250 Hz, tetrodes 5 and 7 sorted in "
                    "Tint): blocked-time 5-fold CV per unit with a one-window gap, BiLSTM and GLM, LOBO",
                    _ratgps, default_data="../shared/data/lfp_spikes/ratgps", summary=_summary)),
    synthetic=_synthetic, synthetic_size="participants", prepare=(PREPARE_LFP,),
    # one task per unit x participant-grouped fold; the seed's Adam 1e-3
    cluster=ClusterSteps("lfp", ("bilstm",), fetch_size=5,
                         train_args="--epochs 10 --batch-size 128 --lr 1e-3 --patience 3 --dropout 0.2")))
