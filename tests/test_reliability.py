"""Reliability (issue 14): one error path, nothing left behind, data that cannot change silently.

Each class of failure the issue's sweep found has a case here: bad option / config values (one
validation place, before any folder exists), NaN / Inf samples and losses, unwritable outputs,
damaged run and dataset files, a dataset changed under a run, constant predictions, temp files
of live and dead writers. Tiny toy data (tests/toy_modality.py) keeps Keras runs to seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ephys, one_line_error

sys.path.insert(0, str(Path(__file__).parent))
import toy_modality  # noqa: E402

PLUGIN_ENV = {"EPHYS_PLUGINS": "toy_modality", "PYTHONPATH": str(Path(__file__).parent)}


def _toy(tmp_path: Path, name="toy", n_per_class=12, labels=None, x=None) -> Path:
    xs, ys = toy_modality.simulate(n_per_class, seed=1)
    return toy_modality.write_dataset(tmp_path / name, xs if x is None else x, labels or ys)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished toy run (model, split, config), trained in-process."""
    old = os.environ.get("EPHYS_PLUGINS")
    old_path = os.environ.get("PYTHONPATH")
    os.environ["EPHYS_PLUGINS"] = "toy_modality"  # restored below: later tests spawn jobs that inherit it
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), old_path) if p)
    from ephys.pipelines.core.training import TrainConfig, train

    tmp = tmp_path_factory.mktemp("trained")
    data = _toy(tmp)
    run = train(TrainConfig(model="toy_dense", data=str(data), epochs=3, batch_size=8, lr=1e-2,
                            out=str(tmp / "run"), eager=True), log=lambda m: None)
    try:
        yield run, data
    finally:
        for key, value in (("EPHYS_PLUGINS", old), ("PYTHONPATH", old_path)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------------------------------------
# 1. one validation place for options and config.yaml
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt, value, needle", [("--lr", "nan", "--lr"), ("--lr", "0", "--lr"),
                                                ("--lr", "-1", "--lr"), ("--lr", "inf", "--lr"),
                                                ("--seed", "-3", "--seed")])
def test_bad_train_option_refused_before_any_folder(tmp_path, opt, value, needle):
    out = tmp_path / "run"
    proc = ephys("train", "--model", "toy_dense", "--data", tmp_path / "nodata", "--out", out, opt, value,
                 env=PLUGIN_ENV)
    one_line_error(proc, needle, "must be")
    assert not out.exists()


@pytest.mark.parametrize("key, value", [("epochs", 0), ("epochs", -1), ("patience", 0), ("batch_size", 0),
                                        ("lr", ".nan"), ("lr", "'fast'"), ("test_fraction", 1.5)])
def test_bad_config_yaml_value_refused_like_the_option(tmp_path, key, value):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"model: toy_dense\ndata: {tmp_path / 'nodata'}\n{key}: {value}\n")
    out = tmp_path / "run"
    proc = ephys("train", "--config", cfg, "--out", out, env=PLUGIN_ENV)
    one_line_error(proc, str(cfg), f"`{key}` must be")
    assert not out.exists()
    # an option given on the command line overrides (and so fixes) the file's value
    if key == "epochs":
        from ephys.pipelines.core.training import TrainConfig, check_config

        c = TrainConfig.from_yaml(cfg, check=False)
        c.epochs = 2
        check_config(c, source=cfg, options={"epochs"})


def test_usage_errors_are_one_line():
    one_line_error(ephys("train", "--epochs", "0"), "--epochs", "ephys train --help")
    one_line_error(ephys("train", "--no-such-flag"), "--no-such-flag")
    one_line_error(ephys("evaluate", "a", "b"), "unexpected extra argument")


def test_non_finite_samples_and_nan_loss_leave_no_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EPHYS_PLUGINS", "toy_modality")
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.training import TrainConfig, train

    xs, ys = toy_modality.simulate(12, seed=1)
    bad = xs.copy()
    bad[5, 3] = np.inf
    data = _toy(tmp_path, "inf", x=bad, labels=ys)
    cfg = TrainConfig(model="toy_dense", data=str(data), epochs=2, batch_size=8, lr=1e-2,
                      out=str(tmp_path / "run_inf"), eager=True)
    with pytest.raises(EphysError, match="s005 holds NaN or Inf"):
        train(cfg, log=lambda m: None)
    assert not (tmp_path / "run_inf").exists()
    good = _toy(tmp_path, "good")
    cfg = TrainConfig(model="toy_dense", data=str(good), epochs=2, batch_size=8, lr=1e30,
                      out=str(tmp_path / "run_nan"), eager=True)
    with pytest.raises(EphysError, match="training loss became (nan|inf)"):
        train(cfg, log=lambda m: None)
    assert not (tmp_path / "run_nan").exists()  # no config.yaml / split.json / model.keras


def test_write_npy_refuses_values_that_overflow_the_cast(tmp_path):
    from ephys.pipelines.core.atomic import write_npy
    from ephys.pipelines.core.errors import EphysError

    x = np.array([1.0, 1e300]).astype(np.float32)  # the cast makes Inf
    with pytest.raises(EphysError, match="1 of 2 values are not finite"):
        write_npy(tmp_path / "x.npy", x, require_finite=True)
    assert not list(tmp_path.iterdir())


def test_small_class_refused_with_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("EPHYS_PLUGINS", "toy_modality")
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.training import TrainConfig, train

    xs, ys = toy_modality.simulate(12, seed=1)
    ys = list(ys)
    ys[0] = "falilng"  # a typo: one group (g0 has two samples, s000 and s001; the toy names no group noun)
    ys[1] = "falilng"
    data = toy_modality.write_dataset(tmp_path / "typo", xs, ys)
    m = json.loads((data / "manifest.json").read_text())
    m["label_names"] = sorted(set(ys))
    (data / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EphysError, match=r"fewer than 2 labelled groups.*'falilng' 1 \(all classes"):
        train(TrainConfig(model="toy_dense", data=str(data), epochs=1, out=str(tmp_path / "r"), eager=True),
              log=lambda m: None)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------
# 2. unwritable outputs, damaged files
# ---------------------------------------------------------------------------------------------


def test_unwritable_outputs_are_one_line_in_every_writing_verb(tmp_path, tiny_synthetic):
    afile = tmp_path / "afile"
    afile.write_text("x")
    # output is a file / its parent is a file: refused before any work
    one_line_error(ephys("train", "--model", "toy_dense", "--data", tmp_path, "--out", afile, env=PLUGIN_ENV),
                   str(afile), "is a file")
    one_line_error(ephys("train", "--model", "toy_dense", "--data", tmp_path, "--out", afile / "run",
                         env=PLUGIN_ENV), str(afile), "is a file")
    one_line_error(ephys("prepare", "scalograms", tiny_synthetic, afile / "ds", "--scheduler", "synchronous"),
                   str(afile), "is a file")
    one_line_error(ephys("prepare", "features", tiny_synthetic, afile), str(afile), "is a file")
    one_line_error(ephys("fetch", "synthetic", afile / "x"), str(afile))


def test_check_writable_names_the_blocking_path(tmp_path, monkeypatch):
    from ephys.pipelines.core import atomic
    from ephys.pipelines.core.errors import EphysError

    (tmp_path / "f").write_text("")
    with pytest.raises(EphysError, match="is a file"):
        atomic.check_writable_dir(tmp_path / "f" / "a" / "b")
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: False)  # as a user without permission
    with pytest.raises(EphysError, match="permission denied|read-only") as e:
        atomic.check_writable_dir(tmp_path / "new" / "deeper")
    assert str(tmp_path) in str(e.value) and not (tmp_path / "new").exists()


def test_os_errors_while_writing_become_one_line(tmp_path):
    import errno

    from ephys.pipelines.core.atomic import os_error, write_text
    from ephys.pipelines.core.errors import EphysError

    e = os_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x")))
    assert e.one_line() == f"{tmp_path / 'x'}: cannot write: read-only file system"
    (tmp_path / "f").write_text("")
    with pytest.raises(EphysError, match="cannot write"):
        write_text(tmp_path / "f" / "out.txt", "hello")


def test_damaged_run_and_dataset_files_name_the_file(trained, tmp_path):
    import shutil

    run0, data0 = trained
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(run0, run)
    shutil.copytree(data0, data)
    cfg = (run / "config.yaml").read_text().replace(str(data0.resolve()), str(data.resolve()))
    (run / "config.yaml").write_text(cfg)
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.evaluation import evaluate_run

    def fails(path, needle):
        with pytest.raises(EphysError) as e:
            evaluate_run(run)
        line = e.value.one_line()
        assert line.startswith(f"{path}: ") and needle in line and "\n" not in line, line

    # truncated model: through the CLI once (one line, exit 2), the rest in-process
    model = run / "model.keras"
    keep = model.read_bytes()
    model.write_bytes(keep[: len(keep) // 3])
    one_line_error(ephys("evaluate", run, env=PLUGIN_ENV), str(model), "cannot load model")
    fails(model, "cannot load model")
    model.write_bytes(keep)
    # bad JSON split
    split = run / "split.json"
    good_split = split.read_text()
    split.write_text('{"train": [')
    fails(split, "unreadable JSON")
    split.write_text(good_split)
    # 0-byte and truncated arrays
    arr = data / "sequences.npy"
    good_arr = arr.read_bytes()
    arr.write_bytes(b"")
    fails(arr, "empty file")
    arr.write_bytes(good_arr[:100])
    fails(arr, "damaged array file")
    arr.write_bytes(good_arr)
    # bad YAML
    (run / "config.yaml").write_text("model: [unclosed\n")
    fails(run / "config.yaml", "unreadable YAML")


# ---------------------------------------------------------------------------------------------
# 3. a dataset that changed under a run; 4. constant predictions
# ---------------------------------------------------------------------------------------------


def test_dataset_changed_under_run_is_refused(trained, tmp_path):
    import shutil

    from ephys.pipelines.core.datasets import dataset_fingerprint
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.evaluation import evaluate_run
    from ephys.pipelines.core.runfolder import load_run_config

    run0, data0 = trained
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(run0, run)
    shutil.copytree(data0, data)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(str(data0.resolve()),
                                                                            str(data.resolve())))
    m = json.loads((data / "manifest.json").read_text())
    assert load_run_config(run)["dataset_fingerprint"] == dataset_fingerprint(m)
    m["created"] = "another day"  # volatile: a resumed prepare rewrites it
    (data / "manifest.json").write_text(json.dumps(m))
    metrics = evaluate_run(run)
    assert "constant_prediction" in metrics and isinstance(metrics["warnings"], list)
    m["parameters"]["scale"] = 2.0  # re-prepared with other parameters
    (data / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EphysError, match="changed since this run was trained"):
        evaluate_run(run)


def test_constant_predictions_flagged():
    from ephys.pipelines.core.evaluation import prediction_warnings

    same = np.array([[0.6, 0.4], [0.7, 0.3], [0.55, 0.45]])
    assert prediction_warnings(same, ["a", "b"])[0].startswith("constant prediction: all 3")
    assert prediction_warnings(np.array([[0.6, 0.4], [0.3, 0.7]]), ["a", "b"]) == []


# ---------------------------------------------------------------------------------------------
# 5. temp files of live writers survive, those of dead ones go
# ---------------------------------------------------------------------------------------------


def test_remove_stale_parts_spares_live_writers(tmp_path):
    from ephys.pipelines.core.atomic import _host_tag, remove_stale_parts

    host = _host_tag()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / f".a.{host}-{os.getpid()}.xyz.part.npy"
    gone = tmp_path / f".b.{host}-{dead.pid}.xyz.part.npy"
    other_host_new = tmp_path / ".c.elsewhere-1.xyz.part.npy"
    old_style = tmp_path / ".d.abc123.part.npy"
    for p in (live, gone, other_host_new, old_style):
        p.write_text("")
    young_old_style = tmp_path / ".e.abc123.part.npy"
    old = time.time() - 3600
    os.utime(old_style, (old, old))
    started = time.time() - 5
    young_old_style.write_text("")  # written after our start: someone else's, in flight
    n = remove_stale_parts(tmp_path, started=started)
    assert n == 2
    assert live.exists() and other_host_new.exists() and young_old_style.exists()
    assert not gone.exists() and not old_style.exists()


# ---------------------------------------------------------------------------------------------
# 3. prepare: other parameters refused, changed inputs re-prepared, parameters checked first
# ---------------------------------------------------------------------------------------------


def test_scalogram_parameters_checked_before_any_folder(tiny_synthetic, tmp_path):
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.sts.scalograms import ScalogramParams

    out = tmp_path / "ds"
    one_line_error(ephys("prepare", "scalograms", tiny_synthetic, out, "--window", "1.1", "-0.1"), "--window")
    assert not out.exists()
    for kw, needle in [({"f_min_hz": 0.0}, "--f-min"), ({"f_min_hz": 400.0, "f_max_hz": 100.0}, "--f-max"),
                       ({"window_s": (0.0, 0.0)}, "--window"), ({"bin_s": 0.0}, "--bin-ms"),
                       ({"bin_s": -0.001}, "--bin-ms"), ({"window_s": (0.0, 0.002)}, "--window")]:
        with pytest.raises(EphysError, match=needle):
            ScalogramParams(**kw).check()


def test_prepare_refuses_other_parameters_and_reprepares_changed_inputs(tiny_synthetic, tmp_path):
    import shutil

    from ephys.pipelines.core.datasets import dataset_fingerprint
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.sts.scalograms import ScalogramParams, prepare_scalograms

    raw = tmp_path / "raw"
    shutil.copytree(tiny_synthetic, raw)
    out = tmp_path / "ds"
    p16 = ScalogramParams(n_scales=16, window_s=(-0.05, 0.45))
    res = prepare_scalograms(raw, out, raw / "labels.csv", params=p16, scheduler="synchronous")
    m1 = json.loads(res.manifest_path.read_text())
    # other parameters: refused in one line naming what differs; --force replaces
    proc = ephys("prepare", "scalograms", raw, out, "--scheduler", "synchronous", "--n-scales", "20",
                 "--window", "-0.05", "0.45")
    one_line_error(proc, str(out), "n_scales 16 -> 20", "--force")
    assert json.loads((out / "manifest.json").read_text()) == m1
    # a replaced recording is prepared again; the manifest records the new file's checksum
    files = sorted(raw.glob("*.nwb"))
    victim, donor = files[0], files[-1]
    shutil.copyfile(donor, victim)
    res = prepare_scalograms(raw, out, raw / "labels.csv", params=p16, scheduler="synchronous")
    assert res.n_resumed == res.n_ok - 1
    m2 = json.loads(res.manifest_path.read_text())
    from ephys.pipelines.core.atomic import sha256_file

    recorded = {i["path"]: i["sha256"] for s in m2["samples"] for i in s["inputs"]}
    assert recorded[str(victim)] == sha256_file(victim)
    assert dataset_fingerprint(m2) != dataset_fingerprint(m1)
    # touching a file (same bytes, new mtime) reuses the cell
    os.utime(files[1], None)
    res = prepare_scalograms(raw, out, raw / "labels.csv", params=p16, scheduler="synchronous")
    assert res.n_resumed == res.n_ok
    assert dataset_fingerprint(json.loads(res.manifest_path.read_text())) == dataset_fingerprint(m2)
    with pytest.raises(EphysError):
        prepare_scalograms(raw, out, raw / "labels.csv", params=ScalogramParams(n_scales=20, window_s=(-0.05, 0.45)),
                           scheduler="synchronous")
    res = prepare_scalograms(raw, out, raw / "labels.csv", params=ScalogramParams(n_scales=20, window_s=(-0.05, 0.45)),
                             scheduler="synchronous", force=True, log=lambda m: None)
    assert json.loads(res.manifest_path.read_text())["sample_shape"][0] == 20 and res.n_resumed == 0


# ---------------------------------------------------------------------------------------------
# 4. labels: stripped, case-insensitive (warned), conflicting rows refused, comments allowed
# ---------------------------------------------------------------------------------------------


def test_labels_normalised_and_conflicts_refused(tiny_synthetic, tmp_path):
    from ephys.pipelines.blocks.readers.patchclamp import _read_labels_csv
    from ephys.pipelines.core.errors import EphysError

    files = sorted(tiny_synthetic.glob("*.nwb"))[:4]
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n# a comment line\n"
                   + "".join(f"{f},{lab}\n" for f, lab in zip(files, ["Excitatory", "excitatory ", "Excitatory", "pv"])))
    with pytest.warns(UserWarning, match="'excitatory' -> 'Excitatory'"):
        rows = _read_labels_csv(csv)
    assert [r[2] for r in rows] == ["Excitatory", "Excitatory", "Excitatory", "pv"]
    csv.write_text(f"path,label\n{files[0]},pv\n{files[0]},sst\n")
    with pytest.raises(EphysError, match="rows 2 and 3 give .* different labels"):
        _read_labels_csv(csv)


# ---------------------------------------------------------------------------------------------
# 6. SLURM: requests checked against the partition before submitting; status never silent
# ---------------------------------------------------------------------------------------------


def _scheduler_up() -> bool:
    import shutil

    if not shutil.which("sbatch"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "up" in out.stdout


needs_slurm = pytest.mark.skipif(not _scheduler_up(), reason="no SLURM scheduler answers")
REPO = Path(__file__).resolve().parents[1]


def _slurm_env(tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "EPHYS_"))}
    env.update({"EPHYS_DATA": str(tmp / "data"), "EPHYS_RUNS": str(tmp / "runs"), "EPHYS_GPU_GRES": "",
                "EPHYS_SIF": "", "EPHYS_BIN": str(Path(sys.executable).with_name("ephys")),
                "EPHYS_PREPARE_TASKS": "2"})
    env.update(extra)
    return env


def _node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True).stdout.split()
    return max(int(c) for c in out)


@needs_slurm
def test_slurm_all_refuses_a_request_the_partition_cannot_hold(tmp_path):
    cpus = _node_cpus()
    env = _slurm_env(tmp_path, EPHYS_CPUS_TRAIN=str(cpus + 1))  # as a user would: only GRES and SIF set
    proc = subprocess.run(["bash", str(REPO / "slurm" / "submit.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"EPHYS_CPUS_TRAIN={cpus}" in lines[0] and "nothing was submitted" in lines[0]
    assert proc.stdout.strip() == "", proc.stdout
    assert not (tmp_path / "runs" / "slurm" / "jobs.tsv").exists()
    for extra, var in (({"EPHYS_MEM_TRAIN": "100T"}, "EPHYS_MEM_TRAIN="), ({"EPHYS_GPU_GRES": "gpu:1"}, "EPHYS_GPU_GRES="),
                       ({"EPHYS_PARTITION": "no_such_partition"}, "EPHYS_PARTITION")):
        proc = subprocess.run(["bash", str(REPO / "slurm" / "submit.sh")], cwd=tmp_path,
                              env=_slurm_env(tmp_path, **{"EPHYS_CPUS_TRAIN": "1", "EPHYS_MEM_TRAIN": "1G", **extra}),
                              capture_output=True, text=True, timeout=120)
        if var == "EPHYS_GPU_GRES=" and proc.returncode == 0:
            continue  # a cluster with GPUs
        assert proc.returncode == 2 and var in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    ok = subprocess.run(["bash", str(REPO / "slurm" / "submit.sh")], cwd=tmp_path,
                        env=_slurm_env(tmp_path, EPHYS_CPUS_TRAIN="1", EPHYS_MEM_TRAIN="1G", EPHYS_MEM_PREPARE="1G",
                                       EPHYS_MEM_FETCH="1G", EPHYS_PREFLIGHT_ONLY="1"),
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "every step fits" in ok.stdout, ok.stderr
    assert not (tmp_path / "runs").exists(), "a refused or check-only slurm-all wrote under runs/"


@needs_slurm
def test_slurm_status_reads_logs_of_forgotten_jobs_and_shows_pending_reasons(tmp_path):
    logs = tmp_path / "runs" / "slurm"
    logs.mkdir(parents=True)
    env = _slurm_env(tmp_path)
    status = ["bash", str(REPO / "slurm" / "status.sh")]
    (logs / "jobs.tsv").write_text("")
    st = subprocess.run(status, env=env, capture_output=True, text=True)
    assert st.returncode == 2 and "lists no job" in st.stderr
    # ids the scheduler never knew: read from the logs' exit lines, or said to be unknown
    (logs / "jobs.tsv").write_text("prepare\t99999901\ntrain\t99999902\nreport\t99999903\n")
    (logs / "ephys-prepare-99999901_0.out").write_text("[ephys] job 99999901 task 0 exit 0 at now\n")
    (logs / "ephys-train-99999902_0.out").write_text("...\n[ephys] job 99999902 task 0 exit 1 at now\n")
    st = subprocess.run(status, env=env, capture_output=True, text=True)
    rows = {ln.split()[0]: ln for ln in st.stdout.splitlines()}
    assert st.returncode == 1, st.stdout + st.stderr
    assert "COMPLETED" in rows["prepare"] and "from its log" in rows["prepare"]
    assert "FAILED(exit=1" in rows["train"] and "failed" in rows["train"]
    assert "UNKNOWN" in rows["report"] and "stopped because train failed" in rows["report"]
    # a pending job shows why it waits
    script = tmp_path / "hold.sh"
    script.write_text("#!/bin/bash\nsleep 30\n")
    jid = subprocess.run(["sbatch", "--parsable", "--hold", "-o", "/dev/null", str(script)],
                         capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    try:
        (logs / "jobs.tsv").write_text(f"train\t{jid}\n")
        st = subprocess.run(status, env=env, capture_output=True, text=True)
        assert st.returncode == 3 and "PENDING(" in st.stdout, st.stdout
    finally:
        subprocess.run(["scancel", jid])


# ---------------------------------------------------------------------------------------------
# 7. EP features: R_in / tau / sag from the test pulse inside F–I sweeps; NaN reasons; flags
# ---------------------------------------------------------------------------------------------


def _fi_cell(r_mohm=200.0, tau_ms=20.0, vrest=-70.0, fs=10_000.0, seed=0):
    """A passive cell recorded with the pyABF F–I shape: every 2 s sweep holds a -50 pA, 200 ms
    test pulse at 0.05 s, then a 0.8 s depolarising step (0, 20, ..., 80 pA) at 0.4 s."""
    from ephys.pipelines.blocks.readers.sweeps import Sweep

    rng = np.random.default_rng(seed)
    n = int(2.0 * fs)
    t = np.arange(n) / fs
    sweeps = []
    for k, amp in enumerate([0.0, 20.0, 40.0, 60.0, 80.0]):
        i = np.zeros(n)
        i[(t >= 0.05) & (t < 0.25)] = -50.0
        i[(t >= 0.4) & (t < 1.2)] = amp
        v = np.empty(n)
        v[0] = vrest
        dt = 1.0 / fs
        for j in range(1, n):  # exact step of dV/dt = (-(V - Vrest) + R I) / tau
            target = vrest + r_mohm * 1e-3 * i[j - 1]
            v[j] = target + (v[j - 1] - target) * np.exp(-dt / (tau_ms * 1e-3))
        v += rng.normal(0, 0.03, n)
        sweeps.append(Sweep(f"s{k}", v, i, fs, stim_amp_pA=amp, stim_start_s=0.4, stim_end_s=1.2))
    return sweeps


def test_ri_tau_sag_from_the_test_pulse_inside_fi_sweeps():
    from ephys.pipelines.sts.ep_features import cell_features, test_pulse_sweep

    sweeps = _fi_cell()
    pulse = test_pulse_sweep(sweeps[2])
    assert pulse is not None and abs(pulse.stim_amp_pA + 50) < 1 and abs(pulse.stim_start_s - 0.05) < 1e-3
    cf = cell_features(sweeps)
    assert abs(cf.values["ri"] - 200.0) < 10, cf.values["ri"]
    assert abs(cf.values["tau"] - 20.0) < 3, cf.values["tau"]
    assert abs(cf.values["sag"]) < 0.05  # a passive membrane does not sag
    assert "test pulse inside 5 sweeps" in cf.info["ri_tau_source"]
    # features that need spikes are NaN, each with its reason
    assert np.isnan(cf.values["threshold_v_long_square"])
    assert "rheobase not reached" in cf.info["nan_reasons"]["threshold_v_long_square"]
    assert "ri" not in cf.info["nan_reasons"] and cf.info["plausibility"] == []
    # a mis-offset recording (rest near 0 mV) is flagged, not passed silently
    off = cell_features(_fi_cell(vrest=-0.9))
    assert any(f.startswith("resting potential -1") and "outside [-100, -40] mV" in f for f in off.info["plausibility"])


def test_prepare_spikes_options_checked_first(tmp_path):
    out = tmp_path / "ds"
    one_line_error(ephys("prepare", "spikes", tmp_path, out, "--fs-hz", "-30000"), "--fs-hz")
    one_line_error(ephys("prepare", "spikes", tmp_path, out, "--pre-ms", "-1"), "--pre-ms")
    assert not out.exists()


def test_non_numeric_sts_feature_values_are_reported():
    import pandas as pd

    from ephys.pipelines.sts.tables import _report_non_numeric

    raw = pd.DataFrame({"tau": ["12.5", "fast", "", "9"], "ri": ["n/a"] * 4})
    num = raw.apply(pd.to_numeric, errors="coerce").astype(float)
    with pytest.warns(UserWarning) as rec:
        _report_non_numeric(raw, num, Path("ephys.csv"))
    text = " | ".join(str(w.message) for w in rec)
    assert "tau: 1 of 4 (e.g. 'fast')" in text and "ri: 4 of 4" in text and "no numeric value at all (all missing): ri" in text
