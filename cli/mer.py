"""``ephys prepare mer`` and ``ephys mer ...``: the microelectrode-recording (STN) pipeline."""

from __future__ import annotations

from pathlib import Path

import typer

from . import common

mer_app = typer.Typer(help="Microelectrode recordings in DBS surgery (STN detection): real-time tools.",
                      no_args_is_help=True)


def prepare_mer(
    input: Path = typer.Argument(None, help="ML-STIM folder (data.npz + metadata.csv), its .npz or metadata .csv, "
                                            "or a CSV / .npy of columns (one electrode each) [default: DATA/raw/synthetic-mer]."),
    out: Path = typer.Argument(None, help="Dataset folder to write [default: DATA/processed/mer]."),
    fs_hz: float = typer.Option(None, "--fs-hz", help="Sampling rate of the input (Hz) [24000]; other rates are "
                                                      "resampled to 24 kHz (polyphase) before filtering."),
):
    """Per recording: resample to 24 kHz, band-pass 250-5000 Hz + 96 notches (causal), variance-ratio
    artifact removal (100-ms windows), then the 9 ML-STIM features of every 1-s segment (50 % overlap)
    -> a feature table (one row per segment, group = patient) for `ephys train --model mlp|lightgbm`."""
    from ephys.pipelines.mer.prepare import prepare_mer as run

    input = input or common.data_root() / "raw" / "synthetic-mer"
    out = out or common.data_root() / "processed" / "mer"
    with common.progress_bar("recordings") as advance:
        last = [0]

        def progress(done, total):
            advance(done - last[0], total=total)
            last[0] = done

        path = run(input, out, fs_hz=fs_hz, progress=progress, log=common.info)
    common.out.print(str(path), highlight=False, markup=False, soft_wrap=True)
