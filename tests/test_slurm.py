"""The sbatch templates and `make slurm-all` on a real SLURM (../shared/tools/slurm-local up).

Skips, saying why, when no scheduler answers. `.ci/run` brings the local one up first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _scheduler_up() -> bool:
    if not shutil.which("sbatch"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "up" in out.stdout


pytestmark = pytest.mark.skipif(not _scheduler_up(),
                                reason="no SLURM scheduler answers (run ../shared/tools/slurm-local up)")


def _env(tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update({
        "EPHYS_DATA": str(tmp / "data"), "EPHYS_RUNS": str(tmp / "runs"), "EPHYS_GPU_GRES": "",
        "EPHYS_BIN": str(Path(sys.executable).with_name("ephys")), "EPHYS_N_PER_CLASS": "2",
        "EPHYS_PREPARE_TASKS": "2", "EPHYS_PREPARE_ARGS": "--n-scales 16", "EPHYS_MODELS": "mobilenetv2",
        "EPHYS_TRAIN_ARGS": "--weights none --epochs 2 --input-size 32 --eager",
        "EPHYS_MEM_FETCH": "2G", "EPHYS_MEM_PREPARE": "2G", "EPHYS_MEM_TRAIN": "3G", "EPHYS_CPUS_TRAIN": "1",
        "EPHYS_EAGER": "1",
    })
    env.update(extra)
    return env


def _wait(env: dict, cwd: Path, timeout_s: float = 900) -> subprocess.CompletedProcess:
    deadline = time.time() + timeout_s
    while True:
        st = subprocess.run(["bash", str(REPO / "slurm" / "status.sh")], cwd=cwd, env=env,
                            capture_output=True, text=True)
        if st.returncode != 3 or time.time() > deadline:
            return st
        time.sleep(3)


def _submit(env, cwd):
    proc = subprocess.run(["bash", str(REPO / "slurm" / "submit.sh")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_slurm_all_runs_the_sts_dag(tmp_path):
    env = _env(tmp_path)
    proc = _submit(env, tmp_path)
    assert "logs:" in proc.stdout and "reports:" in proc.stdout
    jobs = (tmp_path / "runs" / "slurm" / "jobs.tsv").read_text().split()
    assert jobs[0::2] == ["fetch", "prepare", "manifest", "train", "report"]
    # the rendered train script has no --gres line when EPHYS_GPU_GRES is empty
    rendered = (tmp_path / "runs" / "slurm" / "sbatch" / "train.sbatch").read_text()
    assert "--gres" not in rendered and "--requeue" in rendered and "@" not in rendered.replace("$@", "")
    st = _wait(env, tmp_path)
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "runs" / "slurm").glob("*.out")))
    assert st.returncode == 0, st.stdout + logs
    assert "FAILED" not in st.stdout and st.stdout.count("COMPLETED") == 5
    run = tmp_path / "runs" / "mobilenetv2-scalograms"
    assert (run / "report.html").exists() and (run / "metrics.json").exists()
    assert (tmp_path / "data" / "processed" / "scalograms" / "manifest.json").exists()


def test_failed_step_stops_its_dependants(tmp_path):
    env = _env(tmp_path, EPHYS_MODELS="nosuchmodel")
    _submit(env, tmp_path)
    st = _wait(env, tmp_path)
    assert st.returncode == 1, st.stdout
    lines = {ln.split()[0]: ln for ln in st.stdout.splitlines() if ln.strip()}
    assert "failed" in lines["train"], st.stdout
    assert "stopped because train failed" in lines["report"], st.stdout


def test_dask_on_slurm_gives_the_same_scalograms(tiny_synthetic, tmp_path):
    import json

    import numpy as np

    from ephys.pipelines.sts.scalograms import ScalogramParams, SlurmWorkers, prepare_scalograms

    small = ScalogramParams(n_scales=16)
    a = prepare_scalograms(tiny_synthetic, tmp_path / "slurm", None, small, scheduler="slurm", workers=2,
                           slurm=SlurmWorkers(memory="2GB", walltime="00:20:00",
                                              log_directory=str(tmp_path / "dask-logs")))
    b = prepare_scalograms(tiny_synthetic, tmp_path / "sync", None, small, scheduler="synchronous")
    ma = json.loads(a.manifest_path.read_text())
    assert ma["provenance"]["scheduler"] == "slurm" and a.n_ok == 12
    for s in ma["samples"]:
        np.testing.assert_array_equal(np.load(tmp_path / "slurm" / s["file"]), np.load(tmp_path / "sync" / s["file"]))
    assert list((tmp_path / "dask-logs").glob("*.err")) or list((tmp_path / "dask-logs").glob("*.out"))


def test_requeued_train_job_resumes_from_its_checkpoint(tiny_synthetic, tmp_path):
    import json

    env = _env(tmp_path, EPHYS_INPUT=str(tiny_synthetic), EPHYS_MODELS="resnet18",
               EPHYS_TRAIN_ARGS="--weights none --epochs 5 --input-size 48 --patience 100 --eager")
    _submit(env, tmp_path)
    jobs = dict(ln.split("\t") for ln in (tmp_path / "runs" / "slurm" / "jobs.tsv").read_text().splitlines())
    assert "fetch" not in jobs  # the input exists
    state = tmp_path / "runs" / "resnet18-scalograms" / "checkpoints" / "state.json"
    deadline = time.time() + 600
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text()).get("epoch", -1) >= 1:
            break
        time.sleep(1)
    else:
        pytest.fail("training never reached epoch 2")
    epoch_at_kill = json.loads(state.read_text())["epoch"]
    assert epoch_at_kill < 4, "training finished before it could be requeued"
    subprocess.run(["scontrol", "requeue", f"{jobs['train']}_0"], check=True, capture_output=True)
    st = _wait(env, tmp_path)
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "runs" / "slurm").glob("ephys-train-*.out")))
    assert st.returncode == 0, st.stdout + logs
    assert "resuming" in logs and "from epoch" in logs
    run = tmp_path / "runs" / "resnet18-scalograms"
    epochs = [int(r.split(",")[0]) for r in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(5))
    assert (run / "report.html").exists()
