"""``ephys models``: what the registry holds, and the hyper-parameters each model declares."""

from __future__ import annotations

import typer
from rich.table import Table

from . import common


def models(
    name: str = typer.Argument(None, metavar="NAME", help="A model name or alias: list its hyper-parameters only."),
    hparams: bool = typer.Option(False, "--hparams", help="Also list every model's hyper-parameters."),
):
    """List the registered models and the data they fit.

    With --hparams or a model NAME: each hyper-parameter's type, default, allowed values and
    meaning (set one with `ephys train --hparam KEY=VALUE`)."""
    from ephys.pipelines.core.models import describe_models, resolve_model_name

    described = describe_models()
    if name is not None:
        canonical = resolve_model_name(name)
        _print_hparams([d for d in described if d["name"] == canonical])
        return
    t = Table("model", "aliases", "modalities", "input", "ImageNet")
    t.add_column("hyper-parameters (--hparam)", overflow="fold")
    for d in described:
        t.add_row(d["name"], ", ".join(d.get("aliases", ())), ", ".join(d.get("modalities", ())),
                  str(d.get("input_size") or "-"), "yes" if d.get("imagenet") else "no",
                  ", ".join(d.get("hparams") or {}) or "-")
    common.out.print(t)
    if hparams:
        _print_hparams(described)
    else:
        common.info("types, defaults and ranges: `ephys models --hparams` or `ephys models NAME`")


def _print_hparams(described: list[dict]) -> None:
    """One table per model: hyper-parameter, type, default, allowed values, meaning."""
    for d in described:
        t = Table(title=f"{d['name']} hyper-parameters", title_justify="left")
        t.add_column("name", no_wrap=True)
        t.add_column("type", no_wrap=True)
        t.add_column("default", overflow="fold")
        t.add_column("allowed", overflow="fold")
        t.add_column("meaning", overflow="fold", ratio=1)
        for key, h in (d.get("hparams") or {}).items():
            allowed = ", ".join(map(str, h["choices"])) if h.get("choices") else (h.get("range") or "-")
            t.add_row(key, h["type"], h["default_text"], allowed, h["help"])
        if not d.get("hparams"):
            t.add_row("-", "", "", "", "(none)")
        common.out.print(t)
