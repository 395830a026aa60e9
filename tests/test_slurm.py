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


def _wait_for_epoch(state: Path, epoch: int, what: str, timeout_s: float = 600) -> int:
    """Poll a run's checkpoints/state.json until it has finished ``epoch`` (0-based); returns it."""
    import json

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text()).get("epoch", -1) >= epoch:
            return json.loads(state.read_text())["epoch"]
        time.sleep(0.2)
    pytest.fail(f"{what} never reached epoch {epoch + 1}")


def _requeue(job: str) -> None:
    """``scontrol requeue JOB``, as a preemption or a node failure does. SLURM holds the job back until
    the old allocation's credential expires (JobCredentialExpire, 120 s by default): starting it sooner
    on the same node kills it ("Job credential revoked"), so the tests wait that out."""
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)


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


@pytest.mark.slow  # the fold test below requeues too (make test); this one adds the model-array template
def test_requeued_train_job_resumes_from_its_checkpoint(tiny_synthetic, tmp_path):
    env = _env(tmp_path, EPHYS_INPUT=str(tiny_synthetic), EPHYS_MODELS="resnet18",
               EPHYS_TRAIN_ARGS="--weights none --epochs 5 --input-size 48 --patience 100 --eager")
    _submit(env, tmp_path)
    jobs = dict(ln.split("\t") for ln in (tmp_path / "runs" / "slurm" / "jobs.tsv").read_text().splitlines())
    assert "fetch" not in jobs  # the input exists
    state = tmp_path / "runs" / "resnet18-scalograms" / "checkpoints" / "state.json"
    epoch_at_kill = _wait_for_epoch(state, 1, "training")
    assert epoch_at_kill < 4, "training finished before it could be requeued"
    _requeue(f"{jobs['train']}_0")
    st = _wait(env, tmp_path)
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "runs" / "slurm").glob("ephys-train-*.out")))
    assert st.returncode == 0, st.stdout + logs
    assert "resuming" in logs and "from epoch" in logs
    run = tmp_path / "runs" / "resnet18-scalograms"
    epochs = [int(r.split(",")[0]) for r in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(5))
    assert (run / "report.html").exists()


# --- cross-validating pipelines: one array task per fold, aggregate, resubmit, requeue ---------

def _cv_env(tmp: Path, pipeline: str, **extra) -> dict:
    extra = {"EPHYS_MODELS": "", "EPHYS_TRAIN_ARGS": "--epochs 2 --batch-size 64 --lr 3e-3 --dropout 0",
             "EPHYS_PREPARE_ARGS": "", "EPHYS_N_PER_CLASS": "", **extra}
    return _env(tmp, EPHYS_PIPELINE=pipeline, **extra)


def _jobs(tmp: Path) -> list[tuple[str, str]]:
    return [tuple(ln.split("\t")) for ln in (tmp / "runs" / "slurm" / "jobs.tsv").read_text().splitlines()]


def _same(a: dict, b: dict, keys=("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "n_test",
                                   "majority_baseline_accuracy", "confusion_matrix", "per_participant")):
    for k in keys:
        assert a[k] == b[k], (k, a[k], b[k])


def test_mer_lopo_dag_equals_in_process_and_resubmits_only_missing(tmp_path):
    import json

    from conftest import ephys

    env = _cv_env(tmp_path, "mer", EPHYS_FETCH_SIZE="4", EPHYS_MODELS="lightgbm")
    _submit(env, tmp_path)
    st = _wait(env, tmp_path)
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "runs" / "slurm").glob("*.out")))
    assert st.returncode == 0, st.stdout + logs
    assert [s for s, _ in _jobs(tmp_path)] == ["fetch", "prepare", "plan", "train", "aggregate"]
    assert st.stdout.count("  fold lightgbm") == 4 and "4 of 4 folds finished" in st.stdout  # leave-one-patient-out
    cv = tmp_path / "runs" / "cv" / "lightgbm"
    slurm = json.loads((cv / "metrics.json").read_text())
    assert slurm["complete"] and slurm["scheme"] == "lopo" and len(slurm["per_fold"]) == 4
    assert (cv / "report.html").is_file()
    # the same folds in one process give exactly the same numbers
    ephys("train", "--model", "lightgbm", "--data", tmp_path / "data" / "processed" / "mer", "--fold", "all",
          "--out", tmp_path / "inproc", check=0)
    _same(slurm, json.loads((tmp_path / "inproc" / "metrics.json").read_text()))

    # a lost fold: make slurm-all again submits only that fold (no fetch, no prepare) and the aggregate
    import shutil

    shutil.rmtree(cv / "lopo-P02")
    (cv / "metrics.json").unlink()
    proc = _submit(env, tmp_path)
    assert "no fetch job" in proc.stdout and "no prepare job" in proc.stdout and "submitted the 1 without" in proc.stdout
    assert [s for s, _ in _jobs(tmp_path)] == ["train", "aggregate"]
    st = _wait(env, tmp_path)
    assert st.returncode == 0, st.stdout
    train_id = dict(_jobs(tmp_path))["train"]
    assert [p.name for p in (tmp_path / "runs" / "slurm").glob(f"ephys-train-{train_id}_*.out")] == \
        [f"ephys-train-{train_id}_1.out"]
    _same(slurm, json.loads((cv / "metrics.json").read_text()))


def test_lfp_cohort_dag_equals_in_process(tmp_path):
    import json

    from conftest import ephys

    args = "--epochs 1 --batch-size 128 --lr 1e-3 --patience 3 --dropout 0.2"
    # windows every 200 ms instead of every 20-ms bin: 10x fewer windows; two of the four units: the same code path
    env = _cv_env(tmp_path, "lfp", EPHYS_FETCH_SIZE="2", EPHYS_TRAIN_ARGS=args,
                  EPHYS_PREPARE_ARGS="--stride-s 0.2 --units inh1,exc1")
    _submit(env, tmp_path)
    st = _wait(env, tmp_path)
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "runs" / "slurm").glob("*.out")))
    assert st.returncode == 0, st.stdout + logs
    units = sorted(p.name for p in (tmp_path / "data" / "processed" / "lfp" / "units").iterdir())
    n = st.stdout.count("  fold bilstm")
    assert units == ["exc1", "inh1"] and n == 2 * len(units), st.stdout  # per unit, one fold per held-out participant
    slurm = json.loads((tmp_path / "runs" / "cv" / "bilstm" / "metrics.json").read_text())
    assert slurm["complete"] and set(slurm["per_dataset"]) == set(units) and set(slurm["per_participant"]) == {"P01", "P02"}
    # one unit's folds in one process: the same numbers as its array tasks
    u = units[0]
    ephys("train", "--model", "bilstm", "--data", tmp_path / "data" / "processed" / "lfp" / "units" / u,
          "--fold", "all", "--out", tmp_path / "inproc" / u, *args.split(), check=0)
    inproc = json.loads((tmp_path / "inproc" / u / "metrics.json").read_text())
    row = slurm["per_dataset"][u]
    for k in ("accuracy", "balanced_accuracy", "roc_auc_ovr", "majority_baseline_accuracy"):
        assert inproc[k] == row[k], (k, inproc[k], row[k])
    assert [f["roc_auc_ovr"] for f in inproc["per_fold"]] == \
        [f["roc_auc_ovr"] for f in slurm["per_fold"] if f["dataset"] == u]


def test_requeued_fold_resumes_and_a_failed_fold_is_named(tmp_path):
    env = _cv_env(tmp_path, "mer", EPHYS_FETCH_SIZE="2", EPHYS_MODELS="mlp nosuchmodel", EPHYS_ARRAY_MAX="1",
                  EPHYS_TRAIN_ARGS="--epochs 8 --patience 100 --batch-size 64 --lr 3e-3 --dropout 0")
    _submit(env, tmp_path)
    state = tmp_path / "runs" / "cv" / "mlp" / "lopo-P01" / "checkpoints" / "state.json"
    assert _wait_for_epoch(state, 1, "fold lopo-P01") < 6, "the fold finished before it could be requeued"
    train_id = dict(_jobs(tmp_path))["train"]
    _requeue(f"{train_id}_0")
    st = _wait(env, tmp_path)
    assert st.returncode == 1, st.stdout
    lines = [ln for ln in st.stdout.splitlines() if ln.strip()]
    assert all("COMPLETED" in ln for ln in lines if "fold mlp" in ln), st.stdout
    assert sum("<- failed fold" in ln for ln in lines if "fold nosuchmodel" in ln) == 2, st.stdout
    assert "stopped because train failed" in next(ln for ln in lines if ln.startswith("aggregate")), st.stdout
    log = (tmp_path / "runs" / "slurm" / f"ephys-train-{train_id}_0.out").read_text()
    assert "resuming" in log and "from epoch" in log
    run = tmp_path / "runs" / "cv" / "mlp" / "lopo-P01"
    assert [int(r.split(",")[0]) for r in (run / "history.csv").read_text().splitlines()[1:]] == list(range(8))
    assert (run / "fold.json").is_file()


# --- make slurm-tune: a search as an array of workers sharing one study, then the best run -----

def test_make_slurm_tune_two_workers(tmp_path):
    """`make slurm-tune` with 2 workers x 4 one-epoch trials of the toy model: every trial run once,
    by the array's workers, then the best configuration trained, evaluated on the test part, reported."""
    sys.path.insert(0, str(Path(__file__).parent))
    import toy_modality

    from ephys.pipelines.core import tune

    x, y = toy_modality.simulate(12, seed=1)
    data = toy_modality.write_dataset(tmp_path / "toy", x, y)
    study, logs = tmp_path / "study", tmp_path / "runs" / "slurm"
    env = _env(tmp_path, EPHYS_PLUGINS="toy_modality", PYTHONPATH=str(Path(__file__).parent), EPHYS_DATASET=str(data),
               EPHYS_STUDY=str(study), EPHYS_LOGS=str(logs), EPHYS_TUNE_ARGS="--epochs 1 --pruner none")
    proc = subprocess.run(["make", "-s", "-o", "install", "slurm-tune", "PIPELINE=toy", "MODEL=toy_dense", "TRIALS=4",
                           "WORKERS=2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [ln.split("\t")[0] for ln in (logs / "jobs.tsv").read_text().splitlines()] == ["tune", "best"]
    st = _wait(env, tmp_path)
    out = "\n".join(p.read_text() for p in sorted(logs.glob("*.out")))
    assert st.returncode == 0, st.stdout + out
    assert len(list(logs.glob("ephys-tune-*_0.out"))) == 1 and len(list(logs.glob("ephys-tune-*_1.out"))) == 1
    s = tune.study_summary(study)
    assert (s["n"], s["complete"], s["failed"], s["running"]) == (4, 4, 0, 0)
    assert sorted(p.name for p in (study / "trials").iterdir()) == [f"trial-{k:04d}" for k in range(4)]
    job = (logs / "jobs.tsv").read_text().splitlines()[0].split("\t")[1]
    defn, _ = tune.load_study(study)
    workers = {t.user_attrs["worker"] for t in tune._open(study, defn).get_trials()}
    assert workers <= {f"slurm-{job}_0", f"slurm-{job}_1"}, workers
    assert (study / "best.yaml").is_file() and (study / "report.html").is_file()
    assert (study / "best" / "metrics.json").is_file() and (study / "best" / "report.html").is_file()
