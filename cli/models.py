"""``ephys models``: what the registry holds, and the hyper-parameters each model declares."""

from __future__ import annotations

import typer
from rich.table import Table

from . import common


def models(
    name: str = typer.Argument(None, metavar="NAME", help="A model name or alias: list its hyper-parameters only."),
    hparams: bool = typer.Option(False, "--hparams", help="Also list every model's hyper-parameters."),
    published: bool = typer.Option(False, "--published", help="List the published models of other tools instead: source, licence note, citation (`ephys fetch weights NAME`, `ephys predict NAME INPUT`)."),
):
    """List the registered models and the data they fit.

    With --hparams or a model NAME: each hyper-parameter's type, default, allowed values and
    meaning (set one with `ephys train --hparam KEY=VALUE`). With --published: the published models
    of other tools, with their source, licence note and citation."""
    if published:
        return _print_published()
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


def _print_published() -> None:
    """One block per published model: what it does, where it comes from, its rule, licence and citation."""
    from ephys.pipelines.core.published import describe_published

    for d in describe_published():
        lines = [f"{d['name']}  (pipeline {d['pipeline']}; in the weights cache: {'yes' if d['fetched'] else 'no'})",
                 f"  what:     {d['summary']}", f"  source:   {d['source']}",
                 f"            {d['size']:,} bytes, sha256 {d['sha256']}", f"  decision: {d['decision']}",
                 f"  licence:  {d['licence']}", f"  cite:     {d['citation']}"]
        common.out.print("\n".join(lines) + "\n", highlight=False, markup=False, soft_wrap=True)
