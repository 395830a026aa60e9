"""Pipeline ``lfp``: single-neuron spiking from local field potentials (after SpikeInference).

SpikeInference (seed ``001_01fb2723e0b1278a``) predicts a neuron's spiking from the LFP with a
bidirectional LSTM. Here: ``sequence`` datasets of LFP windows (raw, band-passed, Hilbert
amplitude and phase; :mod:`.sequence`) with a per-unit spike target, a simulated cohort with a
known answer (:mod:`.synthetic`), the seed's BiLSTM and two registered baselines on the prediction
bin's band amplitude and phase, the ``glm`` and ``lightgbm_bins`` (:mod:`.glm`), what the recipes
ask of the core's cross-validation and leave-one-band-out (:mod:`.cv`), and the ``lfp-sim`` /
``lfp-ratgps`` recipes (:mod:`.recipes`).
"""

from ..core.models import ModelSpec
from ..core.registry import Modality, ClusterSteps, Pipeline, Recipe, register_pipeline

_BINS = "ephys.pipelines.lfp.glm"
MODELS = (
    ModelSpec("bilstm", "ephys.pipelines.blocks.models.bilstm:build_bilstm", ("sequence",), None, (),
              "two-layer bidirectional LSTM on LFP windows (the SpikeInference seed: BiLSTM 64 -> 32, dropout 0.2)",
              False),
    ModelSpec("glm", f"{_BINS}:build_glm", ("sequence",), None, (),
              "logistic-regression GLM on the prediction bin's band amplitude and cos/sin phase of LFP windows "
              "(balanced classes; the spike-phase GLM baseline)", False, kind="sklearn", model_file="model.glm.json",
              trainer=f"{_BINS}:train_bin_model", predictor=f"{_BINS}:bin_model_predictor"),
    ModelSpec("lightgbm_bins", f"{_BINS}:build_lightgbm_bins", ("sequence",), None, (),
              "LightGBM (Ke et al. 2017; default settings, balanced classes) on the GLM's prediction-bin features "
              "of LFP windows", False, kind="lightgbm", model_file="model.lgb.txt",
              trainer=f"{_BINS}:train_bin_model", predictor=f"{_BINS}:bin_model_predictor"),
)

SEQUENCE = Modality(
    "sequence", "windows of multichannel LFP inputs (time, inputs) float32 with a per-unit spike target, "
    "one array for all windows", sample_noun="window", examples_title="Example windows",
    predict_batch_size=2048)


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


PIPELINE = register_pipeline(Pipeline(
    "lfp", "single-neuron spiking from local field potentials (BiLSTM and a GLM on band amplitude/phase; LOBO)",
    modalities=(SEQUENCE,), models=MODELS,
    recipes=(Recipe("lfp-sim", "the simulated cohort (5 participants unless --data names a cohort folder): "
                    "participant-grouped 5-fold CV of the BiLSTM and the GLM per unit, leave-one-band-out and "
                    "its hit rate against the simulated ground truth", _sim, default_data=None, summary=_summary),
             Recipe("lfp-ratgps", "the Axona rat recording (3 LFP channels at 250 Hz, tetrodes 5 and 7 sorted in "
                    "Tint): blocked-time 5-fold CV per unit with a one-window gap, BiLSTM and GLM, LOBO",
                    _ratgps, default_data="../shared/data/lfp_spikes/ratgps", summary=_summary)),
    synthetic=_synthetic, synthetic_size="participants",
    # one task per unit x participant-grouped fold; the seed's Adam 1e-3
    cluster=ClusterSteps("lfp", ("bilstm",), fetch_size=5,
                         train_args="--epochs 10 --batch-size 128 --lr 1e-3 --patience 3 --dropout 0.2")))
