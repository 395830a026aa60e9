#!/bin/bash
# Submit the STS DAG (make slurm-all):
#   fetch -> prepare (array over shards) -> manifest -> train (array over models) -> report (array)
# every step with --dependency=afterok on the one before and --kill-on-invalid-dep=yes, so a
# failed step cancels its dependants (make slurm-status says which failed and which it stopped).
#
# Settings (environment, with defaults):
#   EPHYS_PARTITION   ""            partition; empty = the cluster's default (line dropped)
#   EPHYS_GPU_GRES    "gpu:1"       --gres of the train jobs; empty drops the line (CPU training)
#   EPHYS_SIF         ""            Apptainer image to run ephys from; empty = host install (EPHYS_BIN)
#   EPHYS_DATA        data          data root;   EPHYS_RUNS  runs   run root
#   EPHYS_INPUT       $EPHYS_DATA/raw/synthetic   recordings; if it exists, the fetch job is skipped
#   EPHYS_DATASET     $EPHYS_DATA/processed/scalograms
#   EPHYS_MODELS      "densenet"    space-separated: one train/report array task per model
#   EPHYS_PREPARE_TASKS             array size of prepare [from `ephys prepare tasks`, else 4]
#   EPHYS_PREPARE_ARGS, EPHYS_TRAIN_ARGS   extra options for those verbs
#   EPHYS_TIME_{FETCH,PREPARE,TRAIN}, EPHYS_MEM_{FETCH,PREPARE,TRAIN}, EPHYS_CPUS_TRAIN
#   EPHYS_LOGS        $EPHYS_RUNS/slurm      job logs and jobs.tsv
# Before anything is submitted each step's request is checked against the partition
# (slurm/preflight.sh): a request no node can satisfy is refused with one line naming the
# variable to change (e.g. EPHYS_CPUS_TRAIN=2 on a 2-CPU node), exit 2.
# EPHYS_PREFLIGHT_ONLY=1 stops after these checks (nothing submitted).
set -euo pipefail
SLURM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export EPHYS_SLURM_DIR=$SLURM_DIR
export EPHYS_PARTITION=${EPHYS_PARTITION:-}
export EPHYS_GPU_GRES=${EPHYS_GPU_GRES-gpu:1}
export EPHYS_SIF=${EPHYS_SIF:-}
export EPHYS_DATA=${EPHYS_DATA:-data}
export EPHYS_RUNS=${EPHYS_RUNS:-runs}
export EPHYS_INPUT=${EPHYS_INPUT:-$EPHYS_DATA/raw/synthetic}
export EPHYS_DATASET=${EPHYS_DATASET:-$EPHYS_DATA/processed/scalograms}
export EPHYS_MODELS=${EPHYS_MODELS:-densenet}
export EPHYS_LOGS=${EPHYS_LOGS:-$EPHYS_RUNS/slurm}
export EPHYS_TIME_FETCH=${EPHYS_TIME_FETCH:-00:30:00} EPHYS_MEM_FETCH=${EPHYS_MEM_FETCH:-4G}
export EPHYS_TIME_PREPARE=${EPHYS_TIME_PREPARE:-02:00:00} EPHYS_MEM_PREPARE=${EPHYS_MEM_PREPARE:-8G}
export EPHYS_TIME_TRAIN=${EPHYS_TIME_TRAIN:-12:00:00} EPHYS_MEM_TRAIN=${EPHYS_MEM_TRAIN:-32G}
export EPHYS_CPUS_TRAIN=${EPHYS_CPUS_TRAIN:-8}
source "$SLURM_DIR/common.sh" >/dev/null

mkdir -p "$EPHYS_LOGS"
EPHYS_LOGS=$(cd "$EPHYS_LOGS" && pwd)
rendered="$EPHYS_LOGS/sbatch"
mkdir -p "$rendered"

# fill @VAR@ from the environment; an #SBATCH line whose value is empty is dropped
render() {
    local src=$1 dst=$2 line var
    : > "$dst.part"
    while IFS= read -r line || [ -n "$line" ]; do
        while [[ $line =~ @([A-Z_]+)@ ]]; do
            var=${BASH_REMATCH[1]}
            if [[ -z ${!var:-} && $line == "#SBATCH"* ]]; then continue 2; fi
            line=${line//@$var@/${!var:-}}
        done
        printf '%s\n' "$line" >> "$dst.part"
    done < "$src"
    mv "$dst.part" "$dst"
}

submit() {  # submit STEP TEMPLATE [sbatch options...] -> prints the job id
    local step=$1 template=$2; shift 2
    render "$SLURM_DIR/$template" "$rendered/$template"
    local id
    id=$(sbatch --parsable --kill-on-invalid-dep=yes "$@" "$rendered/$template")
    id=${id%%;*}
    printf '%s\t%s\n' "$step" "$id" >> "$EPHYS_LOGS/jobs.tsv"
    echo "$id"
}

# nothing is submitted unless every step's request fits the partition (slurm/preflight.sh)
source "$SLURM_DIR/preflight.sh"
[ -e "$EPHYS_INPUT" ] || preflight_step fetch 1 - "$EPHYS_MEM_FETCH" EPHYS_MEM_FETCH "$EPHYS_TIME_FETCH" EPHYS_TIME_FETCH
preflight_step prepare 1 - "$EPHYS_MEM_PREPARE" EPHYS_MEM_PREPARE "$EPHYS_TIME_PREPARE" EPHYS_TIME_PREPARE
preflight_step manifest 1 - "$EPHYS_MEM_FETCH" EPHYS_MEM_FETCH "$EPHYS_TIME_FETCH" EPHYS_TIME_FETCH
preflight_step train "$EPHYS_CPUS_TRAIN" EPHYS_CPUS_TRAIN "$EPHYS_MEM_TRAIN" EPHYS_MEM_TRAIN \
    "$EPHYS_TIME_TRAIN" EPHYS_TIME_TRAIN "$EPHYS_GPU_GRES" EPHYS_GPU_GRES
preflight_step report 1 - "$EPHYS_MEM_TRAIN" EPHYS_MEM_TRAIN "$EPHYS_TIME_FETCH" EPHYS_TIME_FETCH
for t in fetch prepare manifest train report; do
    render "$SLURM_DIR/$t.sbatch" "$rendered/$t.sbatch"
    [ "$t" = fetch ] && [ -e "$EPHYS_INPUT" ] && continue
    preflight_test_only "$t" "$rendered/$t.sbatch"
done
if [ -n "${EPHYS_PREFLIGHT_ONLY:-}" ]; then
    echo "every step fits partition '${EPHYS_PARTITION:-(default)}'; EPHYS_PREFLIGHT_ONLY is set: nothing submitted"
    exit 0
fi

read -r -a models <<< "$EPHYS_MODELS"
: > "$EPHYS_LOGS/jobs.tsv"
dep=()
if [ -e "$EPHYS_INPUT" ]; then
    echo "input $EPHYS_INPUT exists: no fetch job"
    n_tasks=${EPHYS_PREPARE_TASKS:-$(ephys_cmd --quiet prepare tasks "$EPHYS_INPUT")}
else
    fetch=$(submit fetch fetch.sbatch)
    dep=(--dependency="afterok:$fetch")
    n_tasks=${EPHYS_PREPARE_TASKS:-4}
fi
export EPHYS_PREPARE_TASKS=$n_tasks
prepare=$(submit prepare prepare.sbatch "${dep[@]}" --array="0-$((n_tasks - 1))")
manifest=$(submit manifest manifest.sbatch --dependency="afterok:$prepare")
train=$(submit train train.sbatch --dependency="afterok:$manifest" --array="0-$((${#models[@]} - 1))")
report=$(submit report report.sbatch --dependency="afterok:$train" --array="0-$((${#models[@]} - 1))")

cat <<MSG
submitted the STS DAG ($n_tasks prepare tasks, models: $EPHYS_MODELS):
$(column -t < "$EPHYS_LOGS/jobs.tsv" 2>/dev/null || cat "$EPHYS_LOGS/jobs.tsv")
logs:     $EPHYS_LOGS/<step>-<jobid>[_<task>].out   (rendered scripts in $rendered)
dataset:  $EPHYS_DATASET
runs:     $(for m in "${models[@]}"; do printf '%s ' "$EPHYS_RUNS/$m-$(basename "$EPHYS_DATASET")"; done)
reports:  <run>/report.html
status:   make slurm-status   (resume after a failure: fix it and run make slurm-all again;
          finished cells and epochs are not redone)
MSG
