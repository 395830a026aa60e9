#!/bin/bash
# Submit a pipeline's DAG (make slurm-all PIPELINE=sts|spikes|mer|lfp|events). One shape for all:
#   fetch (skipped when the input exists) -> prepare (one job, or an array over shards; skipped
#   when the dataset exists) -> train array -> aggregate (cross-validating pipelines) or
#   evaluate/explain/report (the others)
# The pipeline declares its steps in its registry entry (ClusterSteps: prepare verb, models,
# folds or not, simulated size, training settings); `ephys slurm-plan` prints them as defaults
# here. Cross-validating pipelines (mer: leave-one-patient-out; lfp: participant-grouped 5-fold
# per unit; spikes: one fold per channel; events: the window classifier, 5 folds over recordings) get one train array task per dataset x model x fold,
# listed by `ephys prepare folds` in $EPHYS_LOGS/folds.tsv once the dataset exists (slurm/plan.sh:
# inline when it exists already, else as the `plan` job after prepare). Every step has
# --dependency=afterok on the one before and --kill-on-invalid-dep=yes, so a failed fold stops the
# aggregate (make slurm-status names it). Re-running make slurm-all submits only what is missing:
# no fetch when the input exists, no prepare when the dataset exists, no train task for a fold
# with a finished run (fold.json); a requeued fold resumes from its last epoch.
#
# Settings (environment, with defaults):
#   EPHYS_PIPELINE    sts           which pipeline (make slurm-all PIPELINE=mer sets it)
#   EPHYS_PARTITION   ""            partition; empty = the cluster's default (line dropped)
#   EPHYS_GPU_GRES    "gpu:1"       --gres of the train jobs; empty drops the line (CPU training)
#   EPHYS_SIF         ""            Apptainer image to run ephys from; empty = host install (EPHYS_BIN)
#   EPHYS_DATA        data          data root;   EPHYS_RUNS  runs   run root
#   EPHYS_INPUT       $EPHYS_DATA/raw/synthetic[-PIPELINE]   recordings; if it exists, no fetch job
#   EPHYS_FETCH_SIZE  the pipeline's (sts: 20 cells per class, mer: 20 patients, lfp: 5 participants,
#                     events: 12 recordings); EPHYS_N_PER_CLASS is its older name
#   EPHYS_DATASET     $EPHYS_DATA/processed/<prepare verb>
#   EPHYS_MODELS      the pipeline's (sts: densenet; mer: "mlp lightgbm"; lfp: bilstm; spikes: "cnn1d gru";
#                     events: cnn_bilstm)
#   EPHYS_CV_ARGS     ""            e.g. "--cv grouped --cv-folds 10" (folds; default: the dataset's scheme)
#   EPHYS_ARRAY_MAX   ""            at most this many train tasks at once (sbatch --array=...%N)
#   EPHYS_PREPARE_TASKS             shards of a sharded prepare [from `ephys prepare tasks`, else 4]
#   EPHYS_PREPARE_ARGS, EPHYS_TRAIN_ARGS   extra options for those verbs [the pipeline's]
#   EPHYS_TIME_{FETCH,PREPARE,TRAIN}, EPHYS_MEM_{FETCH,PREPARE,TRAIN}, EPHYS_CPUS_TRAIN
#   EPHYS_LOGS        $EPHYS_RUNS/slurm      job logs, jobs.tsv, folds.tsv
# Before anything is submitted each step's request is checked against the partition
# (slurm/preflight.sh): a request no node can satisfy is refused with one line naming the
# variable to change (e.g. EPHYS_CPUS_TRAIN=2 on a 2-CPU node), exit 2.
# EPHYS_PREFLIGHT_ONLY=1 stops after these checks (nothing submitted).
set -euo pipefail
SLURM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export EPHYS_SLURM_DIR=$SLURM_DIR
export EPHYS_PIPELINE=${EPHYS_PIPELINE:-sts}
export EPHYS_PARTITION=${EPHYS_PARTITION:-}
export EPHYS_GPU_GRES=${EPHYS_GPU_GRES-gpu:1}
export EPHYS_SIF=${EPHYS_SIF:-}
export EPHYS_DATA=${EPHYS_DATA:-data}
export EPHYS_RUNS=${EPHYS_RUNS:-runs}
export EPHYS_LOGS=${EPHYS_LOGS:-$EPHYS_RUNS/slurm}
export EPHYS_TIME_FETCH=${EPHYS_TIME_FETCH:-00:30:00} EPHYS_MEM_FETCH=${EPHYS_MEM_FETCH:-4G}
export EPHYS_TIME_PREPARE=${EPHYS_TIME_PREPARE:-02:00:00} EPHYS_MEM_PREPARE=${EPHYS_MEM_PREPARE:-8G}
export EPHYS_TIME_TRAIN=${EPHYS_TIME_TRAIN:-12:00:00} EPHYS_MEM_TRAIN=${EPHYS_MEM_TRAIN:-32G}
export EPHYS_CPUS_TRAIN=${EPHYS_CPUS_TRAIN:-8}
export EPHYS_CV_ARGS=${EPHYS_CV_ARGS:-} EPHYS_ARRAY_MAX=${EPHYS_ARRAY_MAX:-}
source "$SLURM_DIR/common.sh" >/dev/null

# before anything else: SLURM itself, the image, the requested times and memory (one line each, exit 2)
_stop() { echo "slurm-all: $*; nothing was submitted" >&2; exit 2; }
for tool in sbatch sinfo scontrol; do
    command -v "$tool" >/dev/null 2>&1 || _stop "no \`$tool\` on PATH: run this on a SLURM login node (or load the SLURM module)"
done
if [ -n "$EPHYS_SIF" ]; then
    [ -f "$EPHYS_SIF" ] || _stop "EPHYS_SIF=$EPHYS_SIF: no such image file (build it with make sif, or unset EPHYS_SIF to run the host install)"
    command -v apptainer >/dev/null 2>&1 || _stop "EPHYS_SIF is set but \`apptainer\` is not on PATH (module load apptainer?)"
fi
for v in EPHYS_TIME_FETCH EPHYS_TIME_PREPARE EPHYS_TIME_TRAIN; do
    [[ ${!v} =~ ^(infinite|UNLIMITED|([0-9]+-)?[0-9]+(:[0-9]+){0,2})$ ]] \
        || _stop "$v=${!v} is not a SLURM time limit (MM, HH:MM:SS or D-HH:MM:SS, e.g. 12:00:00)"
done
for v in EPHYS_MEM_FETCH EPHYS_MEM_PREPARE EPHYS_MEM_TRAIN; do
    [[ ${!v^^} =~ ^[0-9]+([KMGT]B?)?$ ]] || _stop "$v=${!v} is not a memory size (e.g. 8G, 4000M)"
done
[[ $EPHYS_CPUS_TRAIN =~ ^[1-9][0-9]*$ ]] || _stop "EPHYS_CPUS_TRAIN=$EPHYS_CPUS_TRAIN is not a positive number of CPUs"

# the pipeline's declared steps, as defaults (a variable set above or by the user wins)
# EPHYS_N_PER_CLASS: the STS-era name of EPHYS_FETCH_SIZE, still honoured
[ -n "${EPHYS_N_PER_CLASS:-}" ] && export EPHYS_FETCH_SIZE=${EPHYS_FETCH_SIZE:-$EPHYS_N_PER_CLASS}
plan=$(ephys_cmd --quiet slurm-plan --pipeline "$EPHYS_PIPELINE") || exit 2
eval "$plan"
if [ ! -e "$EPHYS_INPUT" ] && [ -z "$EPHYS_FETCH_SIZE" ]; then
    echo "slurm-all: $EPHYS_INPUT does not exist and pipeline $EPHYS_PIPELINE has no simulated default: set EPHYS_INPUT to its recordings; nothing was submitted" >&2
    exit 2
fi
dataset_ready() { [ -f "$EPHYS_DATASET/manifest.json" ] || [ -f "$EPHYS_DATASET/index.json" ]; }

# the checks render into a temporary folder: a refused or check-only run writes nothing under runs/
logs_dir=$EPHYS_LOGS
EPHYS_LOGS=$(mktemp -d "${TMPDIR:-/tmp}/ephys-preflight.XXXXXX")
trap 'rm -rf "$EPHYS_LOGS"' EXIT
source "$SLURM_DIR/dag.sh"
# job log names: <step>-<job id>, an array's <step>-<array id>_<task>
export EPHYS_PREPARE_LOG=$([ "$EPHYS_SHARDS" = 1 ] && echo "%A_%a" || echo "%j")

# nothing is submitted unless every step's request fits the partition (slurm/preflight.sh)
source "$SLURM_DIR/preflight.sh"
steps=()
[ -e "$EPHYS_INPUT" ] || steps+=(fetch)
if ! dataset_ready; then steps+=(prepare); [ "$EPHYS_SHARDS" = 1 ] && steps+=(manifest); fi
if [ "$EPHYS_FOLDS" = 1 ]; then steps+=(plan train aggregate); else steps+=(train report); fi
for t in "${steps[@]}"; do
    case $t in
        prepare) preflight_step prepare 1 - "$EPHYS_MEM_PREPARE" EPHYS_MEM_PREPARE "$EPHYS_TIME_PREPARE" EPHYS_TIME_PREPARE ;;
        train) preflight_step train "$EPHYS_CPUS_TRAIN" EPHYS_CPUS_TRAIN "$EPHYS_MEM_TRAIN" EPHYS_MEM_TRAIN \
                   "$EPHYS_TIME_TRAIN" EPHYS_TIME_TRAIN "$EPHYS_GPU_GRES" EPHYS_GPU_GRES ;;
        report) preflight_step report 1 - "$EPHYS_MEM_TRAIN" EPHYS_MEM_TRAIN "$EPHYS_TIME_FETCH" EPHYS_TIME_FETCH ;;
        *) preflight_step "$t" 1 - "$EPHYS_MEM_FETCH" EPHYS_MEM_FETCH "$EPHYS_TIME_FETCH" EPHYS_TIME_FETCH ;;
    esac
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
rendered="$EPHYS_LOGS/sbatch"
mkdir -p "$rendered"

read -r -a models <<< "$EPHYS_MODELS"
: > "$EPHYS_LOGS/jobs.tsv"
rm -f "$EPHYS_LOGS/folds.tsv"
dep=()
if [ -e "$EPHYS_INPUT" ]; then
    echo "input $EPHYS_INPUT exists: no fetch job"
else
    fetch=$(submit fetch fetch.sbatch)
    dep=(--dependency="afterok:$fetch")
fi
n_tasks=1
if dataset_ready; then
    echo "dataset $EPHYS_DATASET exists: no prepare job"
elif [ "$EPHYS_SHARDS" = 1 ]; then
    if [ -e "$EPHYS_INPUT" ]; then n_tasks=${EPHYS_PREPARE_TASKS:-$(ephys_cmd --quiet prepare tasks "$EPHYS_INPUT" --step "$EPHYS_PREPARE_VERB")}
    else n_tasks=${EPHYS_PREPARE_TASKS:-4}; fi
    export EPHYS_PREPARE_TASKS=$n_tasks
    prepare=$(submit prepare prepare.sbatch "${dep[@]}" --array="0-$((n_tasks - 1))")
    manifest=$(submit manifest manifest.sbatch --dependency="afterok:$prepare")
    dep=(--dependency="afterok:$manifest")
else
    prepare=$(submit prepare prepare.sbatch "${dep[@]}")
    dep=(--dependency="afterok:$prepare")
fi
if [ "$EPHYS_FOLDS" = 1 ]; then
    if dataset_ready && [ ${#dep[@]} -eq 0 ]; then
        bash "$SLURM_DIR/plan.sh"
    else
        submit plan plan.sbatch "${dep[@]}" > /dev/null
    fi
    outputs="$EPHYS_RUNS/cv/<model>/<fold>/ (one run folder per fold), $EPHYS_RUNS/cv/<model>/metrics.json, report.html"
else
    train=$(submit train train.sbatch "${dep[@]}" --array="0-$((${#models[@]} - 1))${EPHYS_ARRAY_MAX:+%$EPHYS_ARRAY_MAX}")
    submit report report.sbatch --dependency="afterok:$train" --array="0-$((${#models[@]} - 1))" > /dev/null
    outputs="$(for m in "${models[@]}"; do printf '%s ' "$EPHYS_RUNS/$m-$(basename "$EPHYS_DATASET")"; done)(report.html in each)"
fi

cat <<MSG
submitted the $EPHYS_PIPELINE DAG (models: $EPHYS_MODELS):
$(column -t < "$EPHYS_LOGS/jobs.tsv" 2>/dev/null || cat "$EPHYS_LOGS/jobs.tsv")
logs:     $EPHYS_LOGS/<step>-<jobid>[_<task>].out   (rendered scripts in $rendered)
dataset:  $EPHYS_DATASET
runs:     $outputs
reports:  see runs
status:   make slurm-status   (per fold for cross-validating pipelines; after a failure fix it and
          run make slurm-all again: only what is missing is submitted)
MSG
