#!/bin/bash
# The cross-validation part of the DAG, once the dataset exists: list the dataset x model x fold
# tasks (`ephys prepare folds`, written to $EPHYS_LOGS/folds.tsv: the array task id is the row's
# `task`), submit a train array of only the folds without a finished run (fold.json), throttled
# by EPHYS_ARRAY_MAX, and one aggregate job after them. Run inline by submit.sh when the dataset
# is already prepared, else as the `plan` job after prepare.
set -euo pipefail
source "$EPHYS_SLURM_DIR/common.sh" >/dev/null
source "$EPHYS_SLURM_DIR/dag.sh"
n=$(ephys_cmd --quiet prepare folds "$EPHYS_DATASET" --models "$EPHYS_MODELS" --runs "$EPHYS_RUNS" \
    --tasks-file "$EPHYS_LOGS/folds.tsv" ${EPHYS_CV_ARGS:-})
missing=$(awk -F'\t' 'NR > 1 && $7 == 0 {print $1}' "$EPHYS_LOGS/folds.tsv" | paste -sd, -)
dep=()
if [ -n "$missing" ]; then
    train=$(submit train train.sbatch --array="${missing}${EPHYS_ARRAY_MAX:+%$EPHYS_ARRAY_MAX}")
    dep=(--dependency="afterok:$train")
    echo "$n fold tasks; submitted the $(tr ',' '\n' <<< "$missing" | wc -l) without a finished run as array $train"
else
    echo "$n fold tasks; every fold has a finished run: nothing to train"
fi
aggregate=$(submit aggregate aggregate.sbatch "${dep[@]}")
echo "aggregate: job $aggregate -> $EPHYS_RUNS/cv/<model>/metrics.json, report.html"
