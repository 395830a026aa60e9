#!/bin/bash
# make slurm-status: the state of every job make slurm-all submitted (from $EPHYS_LOGS/jobs.tsv),
# naming the step that failed and the steps it stopped. Exit 0 when all COMPLETED, 1 on a
# failure, 3 while jobs are still pending or running.
set -euo pipefail
EPHYS_RUNS=${EPHYS_RUNS:-runs}
EPHYS_LOGS=${EPHYS_LOGS:-$EPHYS_RUNS/slurm}
jobs="$EPHYS_LOGS/jobs.tsv"
[ -f "$jobs" ] || { echo "no $jobs: run make slurm-all first" >&2; exit 2; }
rc=0 failed=""
while IFS=$'\t' read -r step id; do
    # one state per array task; squeue for live jobs, sacct (if accounting is on) or scontrol after
    states=$(squeue -h -j "$id" -o "%T" 2>/dev/null | sort | uniq -c | awk '{printf "%s×%s ", $2, $1}')
    if [ -z "$states" ]; then
        states=$(sacct -n -X -j "$id" -o State 2>/dev/null | awk 'NF{print $1}' | sort | uniq -c | awk '{printf "%s×%s ", $2, $1}' || true)
    fi
    if [ -z "$states" ]; then
        states=$(scontrol show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | sort | uniq -c | awk '{printf "%s×%s ", $2, $1}' || true)
    fi
    states=${states:-UNKNOWN}
    note=""
    case "$states" in
        *FAILED*|*TIMEOUT*|*OUT_OF_MEMORY*|*NODE_FAIL*) note="<- failed"; failed="$step"; rc=1 ;;
        *CANCELLED*|*DependencyNeverSatisfied*) note="<- stopped${failed:+ because $failed failed}"; rc=1 ;;
        *PENDING*|*RUNNING*|*REQUEUED*|*CONFIGURING*|*COMPLETING*) [ $rc -eq 0 ] && rc=3 ;;
    esac
    printf '%-9s %-10s %s %s\n' "$step" "$id" "$states" "$note"
done < "$jobs"
exit $rc
