#!/bin/bash
# Submit a hyper-parameter search (make slurm-tune PIPELINE=... MODEL=... TRIALS=... WORKERS=...):
#   tune array (WORKERS tasks; each runs `ephys tune` on the shared study until TRIALS are counted)
#   -> best (afterok: `ephys tune --report`, then trains best.yaml into STUDY/best, evaluates it on
#      the test part once, and writes its report)
# The study is a journal file in EPHYS_STUDY on the shared file system; a task that is requeued
# or killed leaves its trial running, and the next claim fails it and runs it again (resuming its
# run folder). Re-running make slurm-tune resumes the study: finished trials stay finished.
# The dataset must exist (make slurm-all or ephys prepare first).
#
# Settings (environment, with defaults):
#   EPHYS_PIPELINE   sts                  the pipeline whose dataset and first model are the defaults
#   EPHYS_MODEL      the pipeline's first cluster model
#   EPHYS_DATASET    the pipeline's dataset ($EPHYS_DATA/processed/<prepare verb>)
#   EPHYS_TRIALS     20                   trials over all workers
#   EPHYS_WORKERS    4                    array tasks pulling trials at once
#   EPHYS_SPACE      default              search space YAML, or the model's declared one
#   EPHYS_STUDY      $EPHYS_RUNS/tune-<model>-<dataset>
#   EPHYS_TUNE_ARGS  the pipeline's training settings (EPHYS_TRAIN_ARGS), e.g. "--epochs 40 --pruner halving"
#   EPHYS_PARTITION, EPHYS_GPU_GRES, EPHYS_SIF, EPHYS_TIME_TRAIN, EPHYS_MEM_TRAIN, EPHYS_CPUS_TRAIN,
#   EPHYS_TIME_FETCH (best job's report step) as for make slurm-all
#   EPHYS_LOGS       $EPHYS_STUDY/slurm   job logs and jobs.tsv (EPHYS_LOGS=... make slurm-status)
# Every request is checked against the partition first (slurm/preflight.sh, as make slurm-all);
# EPHYS_PREFLIGHT_ONLY=1 stops after the checks.
set -euo pipefail
SLURM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export EPHYS_SLURM_DIR=$SLURM_DIR EPHYS_PREFLIGHT_WHO=slurm-tune
export EPHYS_PIPELINE=${EPHYS_PIPELINE:-sts}
export EPHYS_PARTITION=${EPHYS_PARTITION:-}
export EPHYS_GPU_GRES=${EPHYS_GPU_GRES-gpu:1}
export EPHYS_SIF=${EPHYS_SIF:-}
export EPHYS_DATA=${EPHYS_DATA:-data} EPHYS_RUNS=${EPHYS_RUNS:-runs}
export EPHYS_TIME_FETCH=${EPHYS_TIME_FETCH:-00:30:00}
export EPHYS_TIME_TRAIN=${EPHYS_TIME_TRAIN:-12:00:00} EPHYS_MEM_TRAIN=${EPHYS_MEM_TRAIN:-32G}
export EPHYS_CPUS_TRAIN=${EPHYS_CPUS_TRAIN:-8}
export EPHYS_TRIALS=${EPHYS_TRIALS:-20} EPHYS_WORKERS=${EPHYS_WORKERS:-4} EPHYS_SPACE=${EPHYS_SPACE:-default}
source "$SLURM_DIR/common.sh" >/dev/null
if [ -z "${EPHYS_MODEL:-}" ] || [ -z "${EPHYS_DATASET:-}" ]; then
    plan=$(ephys_cmd --quiet slurm-plan --pipeline "$EPHYS_PIPELINE") || exit 2
    eval "$plan"
    read -r -a models <<< "$EPHYS_MODELS"
    export EPHYS_MODEL=${EPHYS_MODEL:-${models[0]}}
fi
export EPHYS_TUNE_ARGS=${EPHYS_TUNE_ARGS-${EPHYS_TRAIN_ARGS:-}}
if [ ! -f "$EPHYS_DATASET/manifest.json" ] && [ ! -f "$EPHYS_DATASET/index.json" ]; then
    echo "slurm-tune: no prepared dataset at $EPHYS_DATASET (make slurm-all PIPELINE=$EPHYS_PIPELINE, or ephys prepare, first; or set EPHYS_DATASET); nothing was submitted" >&2
    exit 2
fi
export EPHYS_STUDY=${EPHYS_STUDY:-$EPHYS_RUNS/tune-$EPHYS_MODEL-$(basename "$EPHYS_DATASET")}
mkdir -p "$EPHYS_STUDY"
EPHYS_STUDY=$(cd "$EPHYS_STUDY" && pwd)
logs_dir=${EPHYS_LOGS:-$EPHYS_STUDY/slurm}

# the checks render into a temporary folder: a refused run submits nothing
EPHYS_LOGS=$(mktemp -d "${TMPDIR:-/tmp}/ephys-preflight.XXXXXX")
trap 'rm -rf "$EPHYS_LOGS"' EXIT
source "$SLURM_DIR/dag.sh"
source "$SLURM_DIR/preflight.sh"
preflight_step tune "$EPHYS_CPUS_TRAIN" EPHYS_CPUS_TRAIN "$EPHYS_MEM_TRAIN" EPHYS_MEM_TRAIN \
    "$EPHYS_TIME_TRAIN" EPHYS_TIME_TRAIN "$EPHYS_GPU_GRES" EPHYS_GPU_GRES
for t in tune tune-best; do
    render "$SLURM_DIR/$t.sbatch" "$rendered/$t.sbatch"
    preflight_test_only "$t" "$rendered/$t.sbatch"
done
if [ -n "${EPHYS_PREFLIGHT_ONLY:-}" ]; then
    echo "every step fits partition '${EPHYS_PARTITION:-(default)}'; EPHYS_PREFLIGHT_ONLY is set: nothing submitted"
    exit 0
fi
rm -rf "$EPHYS_LOGS"
trap - EXIT
mkdir -p "$logs_dir"
EPHYS_LOGS=$(cd "$logs_dir" && pwd)
export EPHYS_LOGS
rendered="$EPHYS_LOGS/sbatch"
mkdir -p "$rendered"
: > "$EPHYS_LOGS/jobs.tsv"
tune=$(submit tune tune.sbatch --array="0-$((EPHYS_WORKERS - 1))")
submit best tune-best.sbatch --dependency="afterok:$tune" > /dev/null
cat <<MSG
submitted a search of $EPHYS_MODEL on $EPHYS_DATASET: $EPHYS_TRIALS trials, $EPHYS_WORKERS workers
$(column -t < "$EPHYS_LOGS/jobs.tsv" 2>/dev/null || cat "$EPHYS_LOGS/jobs.tsv")
study:    $EPHYS_STUDY   (page: report.html, best configuration: best.yaml)
best run: $EPHYS_STUDY/best   (trained on best.yaml, evaluated on the test part once)
logs:     $EPHYS_LOGS/<step>-<jobid>[_<task>].out
status:   EPHYS_LOGS=$EPHYS_LOGS make slurm-status
MSG
