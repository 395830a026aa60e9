"""``ephys fetch``: get data and model weights (a pipeline's simulated default, published weights)."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from ephys.pipelines.core import registry

from . import common
from .options import command_from, parameters, values

fetch_app = typer.Typer(help="Get data or model weights (run it on a machine with internet).",
                        no_args_is_help=True)


def _synthetic(kw: dict) -> None:
    p = registry.pipeline(kw["pipeline"]) if kw.get("pipeline") else registry.default_pipeline()
    if p.synthetic is None:
        raise common.EphysError(f"pipeline {p.name} has no simulated default", "--pipeline")
    own = _own_names(p)
    for other in registry.pipelines().values():
        wrong = [i.name for i in parameters_of(other) if i.name not in own and kw.get(i.name) not in (None, False)]
        if wrong:
            raise common.EphysError(f"--{wrong[0].replace('_', '-')} is an option of --pipeline {other.name}")
    extra = vars(values(p.synthetic_params, kw)) if p.synthetic_params is not None else {}
    out = Path(kw["out"]) if kw.get("out") else common.synthetic_dir(p.name)
    from ephys.pipelines.core.outputs import OutputFolder

    settings = {"pipeline": p.name, "seed": kw.get("seed") or 0, "size": kw.get("size"), **extra}
    with OutputFolder(out, "fetch synthetic", settings, force=bool(kw.get("force")), log=common.notice), \
            common.progress_bar(f"simulating ({p.synthetic_size or 'items'})") as advance:
        last = [0]

        def progress(done, n):
            advance(done - last[0], total=n)
            last[0] = done

        path = p.synthetic(out, seed=kw.get("seed") or 0, size=kw.get("size"), progress=progress, **extra)
    common.out.print(str(path or out), highlight=False, markup=False, soft_wrap=True)


def parameters_of(p):
    from ephys.pipelines.core.params import describe

    return describe(p.synthetic_params) if p.synthetic_params is not None else []


def _own_names(p) -> set[str]:
    return {i.name for i in parameters_of(p)}


def _synthetic_params() -> list[inspect.Parameter]:
    default = registry.default_pipeline().name
    names = ", ".join(n for n, p in registry.pipelines().items() if p.synthetic is not None)
    params = [
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None, default=typer.Argument(
            None, help="Output folder [default: DATA/raw/synthetic-PIPELINE; the default pipeline's: DATA/raw/synthetic].",
            show_default=False)),
        inspect.Parameter("pipeline", inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=typer.Option(
            None, "--pipeline", help=f"Whose simulated default: {names} [default: {default}].")),
        inspect.Parameter("size", inspect.Parameter.KEYWORD_ONLY, annotation=int | None, default=typer.Option(
            None, "--size", min=1, help="How much to simulate, in the pipeline's unit: " + "; ".join(
                f"{n}: {p.synthetic_size}" for n, p in registry.pipelines().items() if p.synthetic_size) + ".")),
        inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, annotation=int, default=typer.Option(
            0, "--seed", help="Random seed (same seed, same files).")),
        inspect.Parameter("force", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
            False, "--force", help="Replace OUT when it holds other output (another seed, size or pipeline).")),
    ]
    seen = {p.name for p in params}
    for n, p in registry.pipelines().items():
        if p.synthetic_params is not None:
            extra = [q for q in parameters(p.synthetic_params, prefix=f"{n}: ") if q.name not in seen]
            seen |= {q.name for q in extra}
            params += extra
    return params


_DOC = "Simulate a pipeline's default dataset; the same seed writes the same files."


def register_synthetic() -> None:
    """``ephys fetch synthetic`` with every pipeline's simulation settings (called when the app is built)."""
    fetch_app.command("synthetic", help=_DOC)(command_from(_synthetic, _synthetic_params(), _DOC))


@fetch_app.command("weights")
def fetch_weights(
    model: str = typer.Argument(..., metavar="MODEL", help="A backbone with ImageNet weights, e.g. densenet121 (`ephys models` shows which), or a published model (`ephys models --published`)."),
    base_url: str = typer.Option(None, "--base-url", help="Mirror to download from instead of the default (backbones: Keras' URL or env EPHYS_WEIGHTS_BASE_URL; published models: replaces the URL's scheme and host)."),
    file: Path = typer.Option(None, "--file", help="Published models: install this copy of the published file (downloaded elsewhere) instead of downloading; its checksum is checked the same way."),
):
    """Download model weights into the cache: a backbone's ImageNet weights, or a published model's.

    Run it where there is internet; `ephys train --weights imagenet` and `ephys predict NAME` then work
    offline (copy ~/.keras/models or set `KERAS_HOME`). A published model's file is checksum-verified
    and converted once to Keras."""
    if model in registry.published_models():
        common.import_backend()  # the conversion builds a Keras model
        from ephys.pipelines.core.published import fetch_published

        path = fetch_published(model, file=file, base_url=base_url, log=common.info)
    elif file is not None:
        raise common.EphysError(f"--file installs published models only; {model} is not one", "--file")
    else:
        common.import_backend()
        from ephys.pipelines.blocks.models.backbones import fetch_weights as run

        path = run(model, base_url=base_url)
    common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)
