"""Reliability, second pass (issue 28): output folders, locks, interrupts, leftovers, SLURM start-up.

One rule for every verb that writes a folder (core/outputs.py): another output, or the same
verb's output made from other input or settings, is refused with one line unless --force; a
folder being written is locked; SIGINT / SIGTERM end a verb with one line (exit 130 / 143), dask
clusters closed, nothing half-written. Outputs and inputs are crafted (records, manifests, lock
files) so that each case costs one short CLI call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, ephys, one_line_error

sys.path.insert(0, str(Path(__file__).parent))

NAP_ENV = {"EPHYS_PLUGINS": "nap_plugin", "PYTHONPATH": str(Path(__file__).parent)}


def _record(out: Path, kind: str, settings: dict, inputs: dict | None = None) -> None:
    from ephys.pipelines.core.outputs import OutputFolder

    out.mkdir(parents=True, exist_ok=True)
    OutputFolder(out, kind, settings, inputs or {}).write_record()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _trace(path: Path, seconds: float = 1.0, fs: float = 10000.0) -> Path:
    """A voltage-clamp trace (pA) with a few inward events: enough for `events detect`."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * fs)) / fs
    x = rng.normal(0, 2.0, t.size)
    for on in np.arange(0.05, seconds - 0.05, 0.1):
        k = t >= on
        x[k] -= 20 * (1 - np.exp(-(t[k] - on) / 5e-4)) * np.exp(-(t[k] - on) / 5e-3)
    np.save(path, x.astype(np.float32))
    return path


# ---------------------------------------------------------------------------------------------
# the rule, in the core
# ---------------------------------------------------------------------------------------------


def test_output_folder_rule(tmp_path):
    """Same command and settings: reused; other command / settings / input: refused naming what
    differs, replaced with force; a run or dataset without record: refused; files no ephys command
    wrote: refused even with force; a folder the command shares (accept): kept with force."""
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.outputs import RECORD, OutputFolder

    out = tmp_path / "out"
    with OutputFolder(out, "x run", {"k": 1}, {"input": "/a"}):
        (out / "r.txt").write_text("1")
    assert json.loads((out / RECORD).read_text())["complete"] is True
    with OutputFolder(out, "x run", {"k": 1}, {"input": "/a"}):  # the same: a re-run
        pass
    for kind, settings, inputs, needle in [("y run", {"k": 1}, {"input": "/a"}, "output of `ephys x run`"),
                                           ("x run", {"k": 2}, {"input": "/a"}, "other settings (k 1 -> 2)"),
                                           ("x run", {"k": 1}, {"input": "/b"}, "other input (input '/a' -> '/b')")]:
        with pytest.raises(EphysError, match=f".*{needle.replace('(', '.').replace(')', '.')}.*--force"):
            OutputFolder(out, kind, settings, inputs).__enter__()
        assert (out / "r.txt").is_file()
    with OutputFolder(out, "x run", {"k": 2}, {"input": "/a"}, force=True, log=lambda m: None):
        assert not (out / "r.txt").exists()  # replaced
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: x\n")
    with pytest.raises(EphysError, match="holds a trained run"):
        OutputFolder(run, "x run").__enter__()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(EphysError, match="no ephys command recorded writing"):
        OutputFolder(mine, "x run", force=True).__enter__()
    assert (mine / "notes.txt").read_text() == "my notes"
    with OutputFolder(mine, "x run", force=True, accept=lambda d: True):  # a shared home: others' files stay
        pass
    assert (mine / "notes.txt").is_file()
    # a folder the command created is removed when it fails; an interrupted one too
    for exc in (EphysError("refused"), KeyboardInterrupt()):
        new = tmp_path / f"new-{type(exc).__name__}"
        with pytest.raises(type(exc)):
            with OutputFolder(new, "x run"):
                (new / "half.txt").write_text("half")
                raise exc
        assert not new.exists() and not list(tmp_path.glob(f".{new.name}*"))


def test_folder_lock_live_stale_and_shared(tmp_path):
    """A live holder refuses a second writer (one line naming host, pid, command); a dead one's lock
    (same host) or an old one of another host is removed; shards of one run share."""
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.outputs import STALE_S, FolderLock, _host

    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / f".out.{_host()}-{sleeper.pid}.ephys-lock"
        lock.write_text(json.dumps({"host": _host(), "pid": sleeper.pid, "started": time.time() - 5,
                                    "command": "ephys prepare mer", "share": None}))
        with pytest.raises(EphysError, match=f"being written by another run \\(ephys prepare mer, host .*pid "
                                             f"{sleeper.pid}"):
            FolderLock(out, "ephys prepare mer").acquire()
        assert not out.exists() and len(list(tmp_path.glob("*.ephys-lock"))) == 1  # ours went again
        lock.write_text(json.dumps({"host": _host(), "pid": sleeper.pid, "started": time.time() - 5,
                                    "command": "ephys prepare scalograms", "share": "key1"}))
        with FolderLock(out, "ephys prepare scalograms", share="key1"):  # another shard of the same run
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with FolderLock(out):  # its process is gone: stale
        assert not lock.exists()
    other = tmp_path / ".out.elsewhere-1.ephys-lock"
    other.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": 0, "command": "ephys x"}))
    os.utime(other, (time.time() - STALE_S - 10,) * 2)
    with FolderLock(out):
        assert not other.exists()


# ---------------------------------------------------------------------------------------------
# every verb that writes a folder
# ---------------------------------------------------------------------------------------------


def _dataset(out: Path, step: str, pipeline: str, parameters: dict, input_path: str, modality="features") -> None:
    out.mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({
        "modality": modality, "samples": [], "prepared_by": {"pipeline": pipeline, "step": step, "input": input_path},
        "parameters": parameters}))


@pytest.mark.parametrize("step, pipeline, params_cls, extra", [
    ("mer", "mer", "ephys.pipelines.mer.params:MerParams", ()),  # no setting of its own: an old record differs
    ("lfp", "lfp", "ephys.pipelines.lfp.params:SequenceParams", ("--window-s", "0.2")),
    ("spikes", "spikes", "ephys.pipelines.spikes.params:SpikesParams", ("--normalise", "channel")),
    ("features", "sts", "ephys.pipelines.sts.params:FeatureParams", ("--preset", "sts")),
])
def test_prepare_refuses_another_dataset_other_settings_or_input(tmp_path, step, pipeline, params_cls, extra):
    """`prepare mer|lfp|spikes|features` into a scalogram dataset, or over its own dataset made with
    other settings or from other input: refused, the dataset untouched."""
    from ephys.pipelines.core import params as P
    from ephys.pipelines.core.registry import resolve

    inp = tmp_path / "input"
    inp.mkdir()
    cls = resolve(params_cls)
    rec, key = P.as_record(P.check(cls())), P.params_key(P.check(cls()))
    cases = [("scal", ("prepare", step, inp), ("scalograms", "sts", {"key": "k"}, str(inp), "scalogram"),
              "holds a scalogram dataset made by `prepare scalograms`"),
             ("other", ("prepare", step, inp, *extra),
              (step, pipeline, {**rec, "key": key} if extra else {**rec, "filter": "an older filter", "key": "0" * 16},
               str(inp.resolve())), "prepared with other parameters"),
             ("fromelsewhere", ("prepare", step, inp), (step, pipeline, {**rec, "key": key}, "/elsewhere/recordings"),
              "prepared from other input (/elsewhere/recordings ->")]
    for name, args, made, needle in cases:
        out = tmp_path / name
        _dataset(out, *made)
        before = _files(out)
        one_line_error(ephys(*args[:3], out, *args[3:]), str(out), needle, "--force")
        assert _files(out) == before


def test_fetch_synthetic_refuses_another_seed(tmp_path):
    """`fetch synthetic OUT --seed 7` over seed 0 (any pipeline): refused; the same seed again: fine."""
    out = tmp_path / "ev"
    ephys("fetch", "synthetic", out, "--pipeline", "events", "--size", "1", check=0)
    before = _files(out)
    one_line_error(ephys("fetch", "synthetic", out, "--pipeline", "events", "--size", "1", "--seed", "7"),
                   str(out), "other settings (seed 0 -> 7)", "--force")
    assert _files(out) == before
    mer = tmp_path / "mer"
    _record(mer, "fetch synthetic", {"pipeline": "mer", "seed": 0, "size": 1})
    (mer / "data.npz").write_bytes(b"x")
    one_line_error(ephys("fetch", "synthetic", mer, "--pipeline", "mer", "--size", "1", "--seed", "7"),
                   str(mer), "seed 0 -> 7")
    assert (mer / "data.npz").read_bytes() == b"x"


def test_aggregate_and_detect_refuse_a_run_folder(tmp_path):
    """`aggregate CV --out <finished run>` and `events detect TRACE <run folder>` leave the run alone."""
    run = tmp_path / "run"
    run.mkdir()
    for name, text in (("config.yaml", "model: mlp\n"), ("metrics.json", "{}"), ("report.html", "<p>run</p>")):
        (run / name).write_text(text)
    before = _files(run)
    (tmp_path / "cv").mkdir()
    one_line_error(ephys("aggregate", tmp_path / "cv", "--out", run), str(run), "holds a trained run", "--force")
    one_line_error(ephys("events", "detect", _trace(tmp_path / "t.npy"), run, "--fs-hz", "10000"), str(run),
                   "holds a trained run")
    assert _files(run) == before


def test_detect_and_cluster_refuse_an_earlier_result_of_other_settings(tmp_path):
    """`events detect` and `spikes cluster` into their own earlier result made with other settings:
    refused; --force replaces it."""
    trace = _trace(tmp_path / "t.npy")
    out = tmp_path / "det"
    ephys("events", "detect", trace, out, "--fs-hz", "10000", check=0)
    before = _files(out)
    one_line_error(ephys("events", "detect", trace, out, "--fs-hz", "10000", "--polarity", "positive"), str(out),
                   "other settings (polarity 'auto' -> 'positive')", "--force")
    assert _files(out) == before
    from ephys.pipelines.core.outputs import OutputFolder
    from ephys.pipelines.spikes.params import ClusterParams

    clu = tmp_path / "clu"
    clu.mkdir()
    OutputFolder.of_params(clu, "spikes cluster", ClusterParams(tetrode=str(tmp_path / "t.1"), out=str(clu)),
                           ("tetrode", "cut")).write_record()  # what `spikes cluster t.1 clu` (gmm) records
    (clu / "clusters.csv").write_text("spike,time_s,cluster\n")
    one_line_error(ephys("spikes", "cluster", tmp_path / "t.1", clu, "--method", "dbscan"), str(clu),
                   "other settings", "method 'gmm' -> 'dbscan'")
    assert (clu / "clusters.csv").is_file()


def test_a_locked_folder_refuses_a_second_writer(tmp_path):
    """While a live run holds OUT's lock, prepare / fetch / cluster / detect into OUT refuse in one line."""
    from ephys.pipelines.core.outputs import _host

    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".out.{_host()}-{sleeper.pid}.ephys-lock").write_text(json.dumps(
            {"host": _host(), "pid": sleeper.pid, "started": time.time(), "command": "ephys prepare lfp"}))
        for args in (("prepare", "mer", tmp_path, out), ("fetch", "synthetic", out, "--pipeline", "events"),
                     ("spikes", "cluster", tmp_path / "t.1", out),
                     ("events", "detect", _trace(tmp_path / "t.npy"), out, "--fs-hz", "10000")):
            one_line_error(ephys(*args), str(out), "is being written by another run (ephys prepare lfp",
                           f"pid {sleeper.pid}")
            assert not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_scheduler_slurm_without_sbatch_is_one_line(tmp_path):
    """`prepare --scheduler slurm` with no sbatch on PATH: one line, nothing left (no hang)."""
    out = tmp_path / "out"
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if not (Path(p) / "sbatch").exists())
    proc = ephys("prepare", "naps", "3", out, "--scheduler", "slurm", env={**NAP_ENV, "PATH": path}, timeout=120)
    one_line_error(proc, "--scheduler slurm", "no `sbatch` on PATH")
    assert not out.exists()


def _path_without_slurm(tmp_path: Path, stub: bool) -> str:
    """A PATH with the shell tools submit.sh uses and no SLURM (``stub``: SLURM tools that answer
    nothing, so the checks after "is SLURM here" run)."""
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sh", "env", "dirname", "basename", "mktemp", "cat", "rm", "mkdir", "awk", "grep", "sed",
                 "tr", "sort", "tail", "head", "cut", "column", "date", "hostname", "pwd"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if stub:
        for tool in ("sbatch", "sinfo", "scontrol"):
            (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
            (bin_dir / tool).chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("case, env, needle", [
    ("no SLURM", {}, "no `sbatch` on PATH"),
    ("bad time", {"EPHYS_TIME_TRAIN": "soon"}, "EPHYS_TIME_TRAIN=soon is not a SLURM time limit"),
    ("bad memory", {"EPHYS_MEM_PREPARE": "lots"}, "EPHYS_MEM_PREPARE=lots is not a memory size"),
    ("no image", {"EPHYS_SIF": "/nowhere/ephys.sif"}, "EPHYS_SIF=/nowhere/ephys.sif: no such image file"),
])
def test_slurm_all_refuses_before_submitting(tmp_path, case, env, needle):
    """`make slurm-all` without SLURM, with a malformed time or memory, or a missing image: one line,
    exit 2, nothing submitted (instead of exit 127, a bash arithmetic error, `apptainer: not found`)."""
    path = _path_without_slurm(tmp_path, stub=case != "no SLURM")
    proc = subprocess.run([str(Path(path) / "bash"), str(REPO / "slurm" / "submit.sh")], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "PATH": path, "EPHYS_RUNS": str(tmp_path / "runs"),
                                             "EPHYS_BIN": str(Path(sys.executable).parent / "ephys"), **env})
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "nothing was submitted" in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# interrupts
# ---------------------------------------------------------------------------------------------


def _interrupt(args, sig, wait_for: str, env: dict, timeout: float = 120.0) -> tuple[int, str]:
    """Run ``ephys ARGS``, send ``sig`` once ``wait_for`` shows on its stderr; (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "ephys.cli.main", *map(str, args)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fd, seen, t0 = proc.stderr.fileno(), b"", time.time()
    os.set_blocking(fd, False)
    while wait_for.encode() not in seen and proc.poll() is None and time.time() - t0 < timeout:
        try:
            seen += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.05)
    proc.send_signal(sig)
    os.set_blocking(fd, True)
    _, rest = proc.communicate(timeout=60)
    return proc.returncode, (seen + (rest or b"")).decode(errors="replace")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_is_one_line_and_leaves_nothing(tmp_path, sig, code):
    """Ctrl-C / SIGTERM (SLURM's time limit) during a verb that writes a folder: one line, exit
    130 / 143, the half-written folder and the lock removed."""
    out = tmp_path / "out"
    rc, err = _interrupt(("nap", "sleep", out, "--seconds", "60"), sig, "started", NAP_ENV)
    lines = [ln for ln in err.splitlines() if ln.strip() and ln.strip() != "started"]
    assert rc == code and lines == ["ephys: interrupted; re-run the same command to resume"], (rc, err)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_sigterm_closes_the_dask_cluster_and_the_run_resumes(tmp_path):
    """SIGTERM while a prepare runs on a dask LocalCluster: one line, exit 143, no worker process
    left, the lock gone; the same command then resumes (finished items reused) and completes."""
    out = tmp_path / "out"
    mark = f"ephys-test-{os.getpid()}-{time.time_ns()}"
    env = {**NAP_ENV, "EPHYS_TEST_MARK": mark}
    rc, err = _interrupt(("prepare", "naps", "20", out, "--scheduler", "local", "--workers", "1", "--seconds",
                          "0.2"), signal.SIGTERM, "naps: 2/20", env, timeout=180)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("naps:")]
    assert rc == 143 and lines == ["ephys: interrupted; re-run the same command to resume"], (rc, err)
    time.sleep(1.0)
    left = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and mark.encode() in (p / "environ").read_bytes():
                left.append(p.name)
        except OSError:
            continue
    assert not left, f"dask processes left running: {left}"
    assert not list(tmp_path.glob(".out.*ephys-lock"))
    done = len(list((out / ".items").glob("*.pkl")))
    assert done >= 1
    proc = ephys("prepare", "naps", "20", out, "--seconds", "0", "--scheduler", "synchronous", env=env)
    assert proc.returncode == 2 and "other parameters" in proc.stderr  # --seconds is part of the dataset
    ephys("prepare", "naps", "20", out, "--seconds", "0.2", "--scheduler", "synchronous", env=env, check=0)
    assert len(json.loads((out / "manifest.json").read_text())["samples"]) == 20


# ---------------------------------------------------------------------------------------------
# what a killed (kill -9) run leaves: removed by the next run
# ---------------------------------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_killed_runs_leave_nothing_the_next_run_keeps(tmp_path):
    """A trainer's `.model.lgb.*.part.txt` and predict's `.OUT.*.part` folder of a killed process
    are removed by the next run into the same place."""
    from ephys.pipelines.core.atomic import _host_tag
    from ephys.pipelines.core.layouts import write_feature_table
    from ephys.pipelines.core.training import TrainConfig, train

    rng = np.random.default_rng(0)
    y = ["a", "b"] * 30
    x = rng.normal(0, 1, (60, 3)) + np.array([[0.0 if v == "a" else 2.0] * 3 for v in y])
    data = tmp_path / "table"
    write_feature_table(data, [f"s{i}" for i in range(60)], x, ["f1", "f2", "f3"], y, ["a", "b"],
                        groups=[f"g{i // 2}" for i in range(60)])
    run = tmp_path / "ref"
    run.mkdir()
    dead = _dead_pid()
    part = run / f".model.lgb.{_host_tag()}-{dead}.abc123.part.txt"
    part.write_bytes(b"")
    train(TrainConfig(model="lightgbm", data=str(data), out=str(run), hparams={"cv_folds": 2}), log=lambda m: None)
    assert (run / "model.lgb.txt").is_file() and not part.exists()
    assert json.loads((run / "training_range.json").read_text())["kind"] == "features"
    out = tmp_path / "pred"
    stale = tmp_path / f".pred.{_host_tag()}-{dead}.xyz_1.part"
    stale.mkdir()
    ephys("predict", run, data, out, check=0)
    assert (out / "predictions.csv").is_file() and not stale.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred")]
