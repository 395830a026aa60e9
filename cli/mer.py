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


@mer_app.command("stream")
def stream(
    run: Path = typer.Argument(..., help="A trained run folder (`ephys train --model mlp|lightgbm` on a `prepare mer` dataset)."),
    source: str = typer.Option(..., "--source", help="A file / folder `prepare mer` reads (played in chunks), or lsl:NAME "
                                                     "for a Lab Streaming Layer stream (24 kHz, one channel per electrode)."),
    depth_stream: str = typer.Option(None, "--depth-stream", help="LSL marker stream carrying the depth (EDT, um); each marker starts new recordings."),
    out: Path = typer.Option(None, "--out", help="CSV of every segment prediction and recording summary."),
    chunk_samples: int = typer.Option(2400, "--chunk-samples", min=1, help="FILE source: samples per chunk (2400 = 0.1 s)."),
    fs_hz: float = typer.Option(None, "--fs-hz", help="FILE source: its sampling rate (must be 24000)."),
    idle_s: float = typer.Option(2.0, "--idle-s", help="LSL source: stop after this many seconds without samples."),
):
    """Real-time STN detection: filters keep their state across chunks, one prediction per 1-s segment
    (every 0.5 s) with its processing latency, and the trajectory's STN entry / exit (3-state HMM)
    updated whenever a depth is finished."""
    from ephys.pipelines.mer.stream import stream_run

    from ephys.pipelines.blocks.models.lightgbm import is_tabular_run

    if not is_tabular_run(run):
        common.import_backend()  # a Keras run: load it without the backend's start-up chatter

    def show(ev):
        if ev["event"] == "recording":
            p = "n/a" if ev["p_inside"] is None else f"{ev['p_inside']:.3f}"
            border = ""
            if ev.get("entry_um") is not None:
                border = f"  STN entry {ev['entry_um'] / 1000:.2f} mm, exit {ev['exit_um'] / 1000:.2f} mm"
            common.info(f"{ev['recording']}: {ev['n_segments']} segments, P(inside) {p}, "
                        f"artifacts {ev['artifact_fraction']:.1%}{border}")

    res = stream_run(run, source, out=out, depth_stream=depth_stream, chunk_samples=chunk_samples, fs_hz=fs_hz,
                     idle_s=idle_s, on_event=show)
    lat = res["latency_ms"]
    if lat:
        common.info(f"{len(res['segments'])} segments; latency per segment median {lat['median']:.2f} ms, "
                    f"p95 {lat['p95']:.2f} ms")
    for key, t in res["trajectories"].items():
        e = "none" if t["entry_um"] is None else f"{t['entry_um'] / 1000:.2f} mm"
        x = "none" if t["exit_um"] is None else f"{t['exit_um'] / 1000:.2f} mm"
        common.out.print(f"{key}: STN entry {e}, exit {x}", highlight=False, markup=False)
    if out:
        common.out.print(str(out), highlight=False, markup=False, soft_wrap=True)
