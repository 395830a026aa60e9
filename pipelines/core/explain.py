"""``ephys explain RUN``: the explanation that applies to the run's modality.

The run's dataset names its modality; the modality's ``explain`` hook (see
:class:`ephys.pipelines.core.registry.Modality`) writes ``RUN/explain/`` (figures and a
``summary.json`` saying what was computed): input-gradient saliency through the one loop of
:mod:`ephys.pipelines.blocks.explain.saliency` for Keras models (the modality only says how a sample
is drawn), TreeSHAP for LightGBM on feature tables, whatever a pipeline registers for its own
modalities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import EphysError
from .runfolder import find_dataset, load_run_config, read_manifest, read_split  # noqa: F401  (re-exported)

__all__ = ["explain_run", "input_gradients", "saliency_maps", "METHODS", "TARGETS"]

METHODS = ("gradient", "smoothgrad")
TARGETS = ("predicted", "true")


def input_gradients(model, x, class_index):
    """See :func:`ephys.pipelines.blocks.explain.saliency.input_gradients`."""
    from ..blocks.explain.saliency import input_gradients as f

    return f(model, x, class_index)


def saliency_maps(model, x, class_index, method: str = "gradient", **kw):
    """See :func:`ephys.pipelines.blocks.explain.saliency.saliency_maps`."""
    from ..blocks.explain.saliency import saliency_maps as f

    return f(model, x, class_index, method=method, **kw)


def explain_run(
    run_dir: str | Path,
    n_examples_per_class: int = 2,
    method: str = "gradient",
    progress: Callable[[int, int, str], None] | None = None,
    *,
    target: str = "predicted",
    data_dir: str | Path | None = None,
    batch_size: int = 16,
    figures: bool = True,
) -> Path:
    """Explain a run's test samples and write ``RUN/explain/`` (the modality's explanation:
    saliency maps for Keras networks, TreeSHAP for LightGBM on feature tables).

    Parameters
    ----------
    run_dir : path
        A run folder made by ``ephys train`` (needs ``model.keras``, ``config.yaml`` and the
        dataset named by ``config.yaml: data``).
    n_examples_per_class : int >= 1
        Samples per class shown in ``examples.png`` (correctly classified, most confident first,
        then misclassified ones).
    method : "gradient" | "smoothgrad"
        Plain input gradient, or SmoothGrad (16 noisy copies, sigma = 0.15 of the sample range).
    progress : callable(done: int, total: int, message: str) or None
        Called after each batch of samples.
    target : "predicted" | "true"
        Which class probability is differentiated: the predicted class (default) or the true
        label (samples without a label fall back to the predicted class). Class means average
        the maps of the samples whose target class is that class.
    data_dir : path or None
        Override the dataset location recorded in ``config.yaml``.
    batch_size : int
        Samples per forward/backward pass.
    figures : bool
        False skips ``examples.png`` and ``class_means.png`` (faster; npz + summary only).

    Returns
    -------
    Path
        ``RUN/explain``. Files written: see the module docstring.

    Raises
    ------
    EphysError
        No model.keras / config.yaml, dataset not found, samples the modality cannot explain,
        ids in split.json not in the manifest, nothing to explain, model input / output shapes
        not matching the dataset.
    """
    run_dir = Path(run_dir)
    if method not in METHODS:
        raise EphysError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise EphysError(f"unknown saliency target {target!r}; choose one of {', '.join(TARGETS)}")
    if int(n_examples_per_class) < 1:
        raise EphysError("n_examples_per_class must be at least 1")
    if not run_dir.is_dir():
        raise EphysError("not a run folder (no such directory) — run `ephys train` first", run_dir)
    if not (run_dir / "config.yaml").is_file() and not any(run_dir.glob("model.*")):
        raise EphysError("no model.keras — run `ephys train` first", run_dir)
    config = load_run_config(run_dir)
    data = find_dataset(run_dir, config, data_dir)
    manifest = read_manifest(data)
    from .models import REGISTRY, resolve_model_name

    try:
        spec = REGISTRY[resolve_model_name(str(config.get("model")))]
    except EphysError:
        spec = None
    model_file = spec.model_file if spec is not None else "model.keras"
    if not (run_dir / model_file).is_file():
        raise EphysError(f"no {model_file} — run `ephys train` first", run_dir)
    from .registry import modality

    mod = modality(manifest.get("modality"), data / "manifest.json")
    hook = mod.hook("explain")
    if hook is None:
        raise EphysError(f"no explanation is registered for {mod.name} datasets", data / "manifest.json")
    return hook(run_dir, config, data, manifest, n_examples=int(n_examples_per_class), method=method,
                target=target, batch_size=int(batch_size), figures=figures, progress=progress,
                kind=spec.kind if spec is not None else "keras")
