"""A test plug-in (``EPHYS_PLUGINS=nap_plugin``) whose verbs take their time, so that a test can
interrupt them: ``ephys nap sleep OUT`` (a command writing an output folder through the core's
OutputFolder) and ``ephys prepare naps N OUT`` (N items of ``--seconds`` each, through the core's
prepare driver and dask runner). Each says ``started`` on stderr once it is under way."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.core.params import param
from ephys.pipelines.core.prepare import PrepareStep
from ephys.pipelines.core.registry import Command, Pipeline, register_pipeline


@dataclass
class SleepParams:
    """``ephys nap sleep OUT``."""

    out: str = param(None, "Output folder.", argument=True)
    seconds: float = param(30.0, "How long.", min=0.0)
    force: bool = param(False, "Replace OUT.")


def sleep(p, ctx):
    from ephys.pipelines.core.outputs import OutputFolder

    with OutputFolder.of_params(Path(p.out), "nap sleep", p, log=ctx.notice):
        (Path(p.out) / "partial.txt").write_text("half")
        print("started", file=sys.stderr, flush=True)
        time.sleep(p.seconds)
    return Path(p.out)


@dataclass
class NapParams:
    """``ephys prepare naps``."""

    seconds: float = param(0.5, "Seconds per item.", min=0.0)


@dataclass
class NapOptions:
    """Run options."""

    note: Optional[str] = param(None, "Unused.")


def discover(input_path, params, labels_csv=None, options=None):
    try:
        n = int(str(input_path).rsplit("/", 1)[-1])
    except ValueError:
        raise EphysError("INPUT is a number of items", input_path) from None
    return [{"id": f"nap{i:03d}"} for i in range(n)], []


def process(item, params, out_dir, options=None):
    time.sleep(params.seconds)
    return {"id": item["id"]}


def collect(out, results, params, ctx):
    from ephys.pipelines.core.atomic import write_json

    return write_json(Path(out) / "manifest.json", {"modality": "naps", "samples": [r["id"] for r in results]})


register_pipeline(Pipeline(
    "nap", "verbs that take their time (tests of interrupts)",
    prepare=(PrepareStep("naps", "N items of --seconds each.", discover, process, collect, params=NapParams,
                         options=NapOptions, noun="nap", cache=True),),
    commands=(Command("sleep", "Sleep inside an output folder.", sleep, SleepParams),)))
