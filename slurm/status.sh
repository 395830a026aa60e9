#!/bin/bash
# make slurm-status: the state of every job make slurm-all submitted (from $EPHYS_LOGS/jobs.tsv),
# naming the step that failed and the steps it stopped. Exit 3 while any job is pending or
# running, then 1 if a step failed (or was stopped), 0 when every job COMPLETED.
set -euo pipefail
EPHYS_RUNS=${EPHYS_RUNS:-runs}
EPHYS_LOGS=${EPHYS_LOGS:-$EPHYS_RUNS/slurm}
jobs="$EPHYS_LOGS/jobs.tsv"
[ -f "$jobs" ] || { echo "no $jobs: run make slurm-all first" >&2; exit 2; }

count() { sort | uniq -c | awk '{printf "%s×%s ", $2, $1}'; }

active=0 bad=0 failed=""
while IFS=$'\t' read -r step id; do
    # one state per array task: squeue for queued/running jobs (a job waiting on a dependency
    # that can never be met is STOPPED), sacct when accounting is on, else scontrol
    states=$(squeue -h -j "$id" -o "%T %r" 2>/dev/null \
             | awk '{print ($2 == "DependencyNeverSatisfied") ? "STOPPED" : $1}' | count)
    if [ -z "$states" ]; then
        states=$(sacct -n -X -j "$id" -o State 2>/dev/null | awk 'NF{print $1}' | count || true)
    fi
    if [ -z "$states" ]; then
        states=$(scontrol show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | count || true)
    fi
    states=${states:-UNKNOWN}
    note=""
    case "$states" in
        *FAILED*|*TIMEOUT*|*OUT_OF_MEMORY*|*NODE_FAIL*|*BOOT_FAIL*) note="<- failed"; failed=${failed:-$step}; bad=1 ;;
        *CANCELLED*|*STOPPED*) note="<- stopped${failed:+ because $failed failed}"; bad=1 ;;
    esac
    case "$states" in
        *PENDING*|*RUNNING*|*REQUEUED*|*CONFIGURING*|*COMPLETING*|*SUSPENDED*) active=1 ;;
    esac
    printf '%-9s %-10s %s %s\n' "$step" "$id" "$states" "$note"
done < "$jobs"
[ $active -eq 1 ] && exit 3
[ $bad -eq 1 ] && exit 1
exit 0
