"""Pipeline ``sts``: neuron cell types from whole-cell current-clamp recordings.

Spike Train Scalograms (Amprimo et al. 2025): per cell, the rheobase, ~1.5x and ~2x rheobase
long-square sweeps -> action potentials -> 1-ms spike trains -> complex-Morlet CWT scalograms ->
fine-tuned ImageNet CNNs; and LightGBM on IPFX-style EP features (the STS paper's baseline).

Modules: ``params`` (every step's settings), ``synthetic`` (AdEx cells, the embedded default),
``scalograms`` (``prepare scalograms``), ``ep_features`` (``prepare features``), ``tables`` (the
STS paper's feature tables), ``allen`` / ``dandi`` / ``commands`` (``ephys fetch allen|dandi``),
``baseline`` (``reproduce sts-baseline``), ``saliency`` (scalogram figures in reports and
explanations).
"""

from ..blocks.models.lightgbm import FEATURE_TABLE, LIGHTGBM_SPEC
from ..core.models import HParam, ModelSpec
from ..core.prepare import PrepareStep
from ..core.registry import ClusterSteps, Command, Modality, Pipeline, Recipe, register_pipeline
from .params import (AllenParams, DandiParams, FeatureParams, RemoteOptions, ScalogramOptions, ScalogramParams,
                     SyntheticParams)

_BB = "ephys.pipelines.blocks.models.backbones"
_WEIGHTS = f"{_BB}:imagenet_weights_path"


def _image(name, builder, size, aliases, description, imagenet=True, min_size=32):
    hparams = {
        "dropout": HParam(0.3, float, "dropout rate (fraction of features) before the softmax head",
                          min=0, max=1, max_exclusive=True),
        "input_size": HParam(size, int, "side of the square image the backbone sees, pixels (the scalogram is "
                             "resized to it; smaller is faster, for quick tests)", min=min_size),
        "bn_momentum": HParam(0.9, float, "moving-average momentum of the backbone's BatchNorm statistics (Keras "
                              "convention: 0.9 is PyTorch's 0.1, as the STS seed trained)",
                              min=0, max=1, min_exclusive=True, max_exclusive=True),
    }
    return ModelSpec(name, f"{_BB}:{builder}", ("scalogram",), size, aliases, description, imagenet,
                     imagenet_weights=_WEIGHTS if imagenet else None, hparams=hparams)


MODELS = (
    _image("densenet121", "build_densenet121", 224, ("densenet",),
           "DenseNet-121 (Huang et al. 2017, Densely Connected Convolutional Networks)"),
    _image("resnet18", "build_resnet18", 224, (),
           "ResNet-18 (He et al. 2016, Deep Residual Learning), built in Keras; no ImageNet weights", imagenet=False),
    _image("resnet50", "build_resnet50", 224, (), "ResNet-50 (He et al. 2016, Deep Residual Learning)"),
    _image("inceptionv3", "build_inceptionv3", 299, ("inception",),
           "Inception-v3 (Szegedy et al. 2016, Rethinking the Inception Architecture)", min_size=75),
    _image("mobilenetv2", "build_mobilenetv2", 224, ("mobilenet",),
           "MobileNetV2 (Sandler et al. 2018, Inverted Residuals and Linear Bottlenecks)"),
    LIGHTGBM_SPEC,
)

SCALOGRAM = Modality(
    "scalogram", "CWT scalograms of spike trains, (scales, time, sweeps) float32 in [0, 1], one file per cell",
    sample_noun="cell", examples_title="Example scalograms",
    examples="ephys.pipelines.sts.saliency:report_examples",
    explain="ephys.pipelines.sts.saliency:explain_scalogram_run",
    explanation="ephys.pipelines.sts.saliency:explanation_section",
    prepare_for_predict="ephys.pipelines.sts.scalograms:prepare_like",
    predict_batch_size=8, sample_stats="ephys.pipelines.sts.scalograms:sample_stats")


def _synthetic(out, *, seed=0, size=None, progress=None, n_per_class=None, fs_hz=10_000.0):
    from .synthetic import fetch_synthetic

    return fetch_synthetic(out, n_per_class=n_per_class or size or 20, seed=seed, fs_hz=fs_hz, progress=progress)


_RECORDINGS = ("A recording (.nwb, .abf) or a folder of them; with --stream: an NWB URL, a file of URLs, or a "
               "dandiset id (000020).")
_LABELS = "CSV with columns path,label (path relative to the CSV; 'unknown' = unlabelled)."

PREPARE_SCALOGRAMS = PrepareStep(
    "scalograms", "Turn current-clamp recordings into one CWT scalogram per cell (the STS input).",
    discover="ephys.pipelines.sts.scalograms:discover", process="ephys.pipelines.sts.scalograms:process_cell",
    collect="ephys.pipelines.sts.scalograms:collect", partial_keys="ephys.pipelines.sts.scalograms:partial_keys",
    params=ScalogramParams, options=ScalogramOptions, cache=False, noun="cell", modalities=("scalogram",),
    description="Per cell: choose the rheobase, ~1.5x and ~2x rheobase long-square sweeps, detect spikes "
                "(dV/dt threshold, IPFX rule), bin the spike trains (1 ms), complex-Morlet CWT, log-magnitude, "
                "normalise -> float32 (scales x time x sweeps). A re-run skips finished cells.",
    input_help=_RECORDINGS, input_default="raw/synthetic", input_text=True, out_default="processed/scalograms",
    labels=_LABELS)

PREPARE_FEATURES = PrepareStep(
    "features", "Compute a table of electrophysiological features per cell from current-clamp recordings.",
    discover="ephys.pipelines.sts.ep_features:discover_features",
    process="ephys.pipelines.sts.ep_features:process_features",
    collect="ephys.pipelines.sts.ep_features:collect_features",
    params=FeatureParams, options=RemoteOptions, noun="cell", modalities=("features",),
    description="Per cell: electrophysiological features from its long-square sweeps, as IPFX defines them "
                "(Gouwens et al. 2019): rheobase, f-I slope, first-spike shape at rheobase, latency / ISI / "
                "adaptation on the hero sweep, input resistance, tau, sag, Vrest -> a features dataset "
                "(features.npy, features.csv, manifest.json). --preset sts imports the STS paper's tables instead.",
    input_help=_RECORDINGS, input_default="raw/synthetic", input_text=True, out_default="processed/features",
    labels=_LABELS)

COMMANDS = (
    Command("dandi", "Download NWB files of a DANDI dandiset with the dandi client.", "ephys.pipelines.sts.commands:fetch_dandi",
            DandiParams, group="fetch",
            description="Resumable (verified files are skipped, partial ones continued), parallel, checked against "
                        "DANDI's sha256 / dandi-etag, listed in OUT/fetch_manifest.csv."),
    Command("allen", "Download the Allen Cell Types Database's specimen table, labels and NWB files.",
            "ephys.pipelines.sts.commands:fetch_allen", AllenParams, group="fetch",
            description="The specimen table (cell_types_specimen_details.csv), per-cell NWB files, and labels.csv / "
                        "specimen_labels.csv with the Cre line -> STS class mapping (Excitatory, Pvalb, Sst, "
                        "Vip/Lamp5; see ephys.pipelines.sts.allen.sts_class_from_cre)."),
)


def _baseline(data, out, *, seed=0, cv_folds=5, log=print):
    from .baseline import reproduce_sts_baseline

    return reproduce_sts_baseline(data, out, seed=seed, cv_folds=cv_folds, log=log)


PIPELINE = register_pipeline(Pipeline(
    "sts", "neuron cell types from patch-clamp recordings (CWT scalograms -> ImageNet CNNs; LightGBM on EP features)",
    modalities=(SCALOGRAM, FEATURE_TABLE), models=MODELS,
    recipes=(Recipe("sts-baseline",
                    "LightGBM on the STS paper's EP feature tables and split: the STS recipe and ours "
                    "(features, imputation and settings chosen by cross-validation inside the training split), "
                    "evaluated once on the STS test split, explained (SHAP) and reported",
                    _baseline, default_data="../shared/data/sts"),),
    synthetic=_synthetic, synthetic_size="cells per class", synthetic_params=SyntheticParams,
    prepare=(PREPARE_SCALOGRAMS, PREPARE_FEATURES), commands=COMMANDS, default=True,
    cluster=ClusterSteps("scalograms", ("densenet",), folds=False, shards=True, fetch_size=20)))
