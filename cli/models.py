"""``ephys models``: what the registry holds."""

from __future__ import annotations

import typer
from rich.table import Table

from . import common


def models():
    """List the models: name, aliases, the data modality they fit, input size."""
    common.import_backend()
    from ephys.pipelines.core.models import describe_models

    t = Table("model", "aliases", "modalities", "input", "ImageNet")
    for d in describe_models():
        t.add_row(d["name"], ", ".join(d.get("aliases", ())), ", ".join(d.get("modalities", ())),
                  str(d.get("input_size") or "-"), "yes" if d.get("imagenet") else "no")
    common.out.print(t)
