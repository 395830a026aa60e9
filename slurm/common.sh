# Sourced by every ephys sbatch template: where things are and how to call ephys.
#   EPHYS_SIF   empty: run `ephys` from the host (EPHYS_BIN, default `ephys` on PATH);
#               else:  `apptainer exec [--nv] $EPHYS_SIF ephys ...` (--nv when EPHYS_GPU_GRES is set)
#   EPHYS_DATA  data root (default ./data), EPHYS_RUNS run root (default ./runs)
set -euo pipefail
export EPHYS_DATA=${EPHYS_DATA:-data}
export EPHYS_RUNS=${EPHYS_RUNS:-runs}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

ephys_cmd() {
    if [ -n "${EPHYS_SIF:-}" ]; then
        apptainer exec ${EPHYS_GPU_GRES:+--nv} --bind "$PWD" "$EPHYS_SIF" ephys "$@"
    else
        "${EPHYS_BIN:-ephys}" "$@"
    fi
}

echo "[ephys] job ${SLURM_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-none} on $(hostname) at $(date -Is)"
# the last line of every job log: its exit status (make slurm-status reads it once the scheduler
# has forgotten the job); only inside a job, not when submit.sh sources this file
if [ -n "${SLURM_JOB_ID:-}" ]; then
    trap 'echo "[ephys] job ${SLURM_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-none} exit $? at $(date -Is)"' EXIT
fi
