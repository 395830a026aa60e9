"""Pipeline ``spikes``: extracellular spike detection, spike-vs-noise classification, clustering.

Modules: ``params`` (every step's settings), ``waveforms`` (snippet sets and raw traces ->
``waveform`` datasets; ``reproduce spikes-seed``), ``cluster`` / ``cluster_report`` / ``commands``
(``ephys spikes cluster`` on Axona tetrode files), ``sort`` / ``sort_report`` (``ephys spikes sort``
on continuous recordings), ``figures`` (waveform figures in reports and
explanations).
"""

from ..core.models import HParam, ModelSpec, Search
from ..core.prepare import PrepareStep
from ..core.registry import ClusterSteps, Command, Modality, Pipeline, Recipe, register_pipeline
from .params import ClusterParams, SortParams, SpikesParams

_SEQ = "ephys.pipelines.blocks.models.sequence"

MODELS = (
    ModelSpec("cnn1d", f"{_SEQ}:build_cnn1d", ("waveform",), None, ("cnn",),
              "1-D CNN for spike waveforms (after the spike seed, henryxcham/spike_detection_classification)", False,
              hparams={
                  "dropout": HParam(0.3, float, "dropout rate (fraction of units) before the softmax head",
                                    min=0, max=1, max_exclusive=True, search=Search(0.0, 0.5)),
                  "width": HParam(32, int, "filters of the first convolution (the next two have twice as many)",
                                  min=1, search=Search(8, 64, log=True))}),
    ModelSpec("gru", f"{_SEQ}:build_gru", ("waveform",), None, (),
              "two-layer GRU for spike waveforms (Cho et al. 2014; after the spike seed)", False,
              hparams={
                  "dropout": HParam(0.3, float, "dropout rate (fraction of units) before the softmax head",
                                    min=0, max=1, max_exclusive=True, search=Search(0.0, 0.5)),
                  "width": HParam(64, int, "units of each GRU layer (per direction)", min=1,
                                  search=Search(16, 128, log=True)),
                  "bidirectional": HParam(False, bool, "both GRU layers read the snippet both ways (concatenated)",
                                          search=Search(choices=(False, True))),
                  "input_norm": HParam("batch", str, "batch: BatchNormalization of the input; none: raw input",
                                       choices=("batch", "none")),
                  "pool": HParam("last", str, "last: the second GRU's final state; mean: its states averaged "
                                 "over time", choices=("last", "mean"))}),
)

WAVEFORM = Modality(
    "waveform", "extracellular spike snippets, (time, channels) float32, one array for all snippets",
    sample_noun="snippet", group_noun="channel", examples_title="Example waveforms",
    examples="ephys.pipelines.spikes.figures:report_examples",
    explain="ephys.pipelines.spikes.figures:explain_waveform_run",
    explanation="ephys.pipelines.spikes.figures:explanation_section",
    prepare_for_predict="ephys.pipelines.spikes.waveforms:prepare_like",
    predict_batch_size=1024, match_keys=("fs_hz", "normalise", "time_ms"))


def _seed(data, out, *, seed=0, epochs=40, normalise="channel", log=print):
    from .waveforms import reproduce_seed

    return reproduce_seed(data, out, epochs=epochs, seed=seed, normalise=normalise, log=log)


def _seed_summary(res: dict) -> list[str]:
    lines = [f"{m}: test macro-F1 {r['macro_f1']:.3f}  accuracy {r['accuracy']:.4f}  "
             f"(validation macro-F1 {r['val_macro_f1']:.3f}; inference {r['inference_s_test']:.3f} s)"
             for m, r in res["models"].items()]
    lines.append(f"best on validation: {res['best_model']}; test macro-F1 {res['macro_f1']:.3f}")
    return lines


_W = "ephys.pipelines.spikes.waveforms"
PREPARE_SPIKES = PrepareStep(
    "spikes", "Turn extracellular spike snippets or a raw trace into a waveform dataset.",
    discover=f"{_W}:discover", process=f"{_W}:process", collect=f"{_W}:collect", params=SpikesParams,
    noun="channel", modalities=("waveform",),
    description="Snippet sets keep their labels (background / spike; group = channel) and offer the seed's split "
                "(`ephys train --split seed`: train 9, 16, 33 / validation 11 / test 40). A raw trace is "
                "band-passed (zero-phase, 300-8000 Hz), notched, thresholded at -3 SD with a 1 ms refractory "
                "period, and cut into 0.4 ms + 1.0 ms snippets (unlabelled).",
    input_help="A folder of labelled snippet sets (channel_spikes_CH.npy, channel_background_CH.npy: the spike "
               "seed's layout) or a raw extracellular trace (.npy in µV with --fs-hz, or .nwb with an "
               "ElectricalSeries).", out_default="processed/spikes")

COMMANDS = (
    Command("cluster", "Cluster the spikes of one Axona tetrode file (spike sorting).",
            "ephys.pipelines.spikes.commands:cluster", ClusterParams, aliases=("cluster",),
            description="Writes OUT/clusters.csv, OUT/embedding.npy, OUT/cluster_metrics.json (quality per "
                        "cluster: isolation distance, L-ratio, ISI violations, SNR, rate; with --cut: ARI / NMI, "
                        "confusion table, best matches) and OUT/report.html / .md."),
    Command("sort", "Sort the spikes of a continuous recording (any format SpikeInterface reads).",
            "ephys.pipelines.spikes.commands:sort", SortParams,
            description="Band-pass (and common median reference on probes) with spikeinterface.preprocessing, "
                        "detect locally exclusive negative peaks, cluster PCA features of the snippets (ISO-SPLIT), "
                        "merge clusters of matching mean waveforms, then SpikeInterface's quality metrics. Writes "
                        "OUT/sorting/ (a NumpyFolderSorting: spikeinterface.load), OUT/units.csv, OUT/units.nwb "
                        "(NWB Units table), OUT/sort.json and OUT/report.html / .md."),
)

PIPELINE = register_pipeline(Pipeline(
    "spikes", "extracellular spike detection, spike-vs-noise CNN/GRU, clustering of tetrode spikes",
    modalities=(WAVEFORM,), models=MODELS,
    recipes=(Recipe("spikes-seed",
                    "1-D CNN and GRU spike vs background on the spike seed's channels: train on 9/16/33 "
                    "(early stopping on 11), evaluate on 40, choose the best model on 11; the seed's "
                    "published numbers under `reference`",
                    _seed, default_data="../shared/data/spikes", summary=_seed_summary),),
    # no simulated default: EPHYS_INPUT names snippet sets (e.g. ../shared/data/spikes); one fold per channel
    prepare=(PREPARE_SPIKES,), commands=COMMANDS,
    cluster=ClusterSteps("spikes", ("cnn1d", "gru"), train_args="--epochs 40 --batch-size 256 --lr 1e-3 --patience 6")))
