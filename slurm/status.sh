#!/bin/bash
# make slurm-status: the state of every job make slurm-all submitted (from $EPHYS_LOGS/jobs.tsv),
# naming the step that failed and the steps it stopped, and why a pending job waits
# (PENDING(Resources), PENDING(PartitionConfig): a request the partition cannot satisfy,
# PENDING(Dependency)). A job the scheduler no longer knows (no accounting, purged) is read from
# its log's last line ("[ephys] job ... exit N"). Always prints one line per step.
# Exit 3 while any job is pending or running, then 1 if a step failed (or was stopped), 0 when
# every job COMPLETED.
set -uo pipefail
EPHYS_RUNS=${EPHYS_RUNS:-runs}
EPHYS_LOGS=${EPHYS_LOGS:-$EPHYS_RUNS/slurm}
jobs="$EPHYS_LOGS/jobs.tsv"
[ -f "$jobs" ] || { echo "slurm-status: no $jobs: run make slurm-all first" >&2; exit 2; }
[ -s "$jobs" ] || { echo "slurm-status: $jobs lists no job (make slurm-all refused or was interrupted before submitting)" >&2; exit 2; }

count() { sort | uniq -c | awk '{printf "%s×%s ", $2, $1}'; }

# state of job ID from its log files (the scheduler forgot it): COMPLETED / FAILED(exit N) / UNKNOWN
from_logs() {
    local id=$1 f last rc out=""
    for f in "$EPHYS_LOGS"/*-"$id".out "$EPHYS_LOGS"/*-"$id"_*.out; do
        [ -f "$f" ] || continue
        last=$(grep '^\[ephys\] job .* exit [0-9]*' "$f" | tail -1)
        if [ -z "$last" ]; then out+="UNKNOWN(no-exit-line-in:$(basename "$f"))"$'\n'; continue; fi
        rc=$(sed -n 's/.* exit \([0-9]*\) at .*/\1/p' <<< "$last")
        if [ "$rc" = 0 ]; then out+="COMPLETED"$'\n'; else out+="FAILED(exit=$rc,log=$(basename "$f"))"$'\n'; fi
    done
    printf '%s' "$out" | awk 'NF' | count
}

active=0 bad=0 failed="" n=0
while IFS=$'\t' read -r step id; do
    [ -n "${step:-}" ] || continue
    n=$((n + 1))
    # one state per array task: squeue for queued/running jobs (a job waiting on a dependency
    # that can never be met is STOPPED; a pending job shows its reason), sacct when accounting
    # is on, else scontrol, else the job logs
    states=$( (squeue -h -j "$id" -o "%T %r" 2>/dev/null || true) \
             | awk '{ if ($2 == "DependencyNeverSatisfied") print "STOPPED";
                      else if ($1 == "PENDING" && $2 != "" && $2 != "None") print "PENDING(" $2 ")";
                      else print $1 }' | count)
    if [ -z "$states" ]; then
        states=$( (sacct -n -X -j "$id" -o State 2>/dev/null || true) | awk 'NF{print $1}' | count)
    fi
    if [ -z "$states" ]; then
        states=$( (scontrol show job "$id" 2>/dev/null || true) | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | count)
    fi
    src=""
    if [ -z "$states" ]; then
        states=$(from_logs "$id"); src="(scheduler forgot the job; from its log)"
    fi
    if [ -z "$states" ]; then
        states="UNKNOWN"; src="(the scheduler forgot the job and it left no log in $EPHYS_LOGS: never started, or cancelled while pending)"
    fi
    note=""
    case "$states" in
        *FAILED*|*TIMEOUT*|*OUT_OF_MEMORY*|*NODE_FAIL*|*BOOT_FAIL*) note="<- failed"; failed=${failed:-$step}; bad=1 ;;
        *CANCELLED*|*STOPPED*|UNKNOWN*) note="<- stopped${failed:+ because $failed failed}"; bad=1 ;;
    esac
    case "$states" in
        *PartitionConfig*|*ReqNodeNotAvail*|*QOSMaxCpu*|*AssocMax*)
            note="<- can never start as requested: lower its request (make slurm-all checks this before submitting)" ;;
    esac
    case "$states" in
        *PENDING*|*RUNNING*|*REQUEUED*|*CONFIGURING*|*COMPLETING*|*SUSPENDED*) active=1 ;;
    esac
    printf '%-9s %-10s %s %s %s\n' "$step" "$id" "$states" "$note" "$src"
done < "$jobs"
[ $n -gt 0 ] || { echo "slurm-status: $jobs lists no job" >&2; exit 2; }

# cross-validation: one line per fold (task of folds.tsv), from the train array's tasks, their
# logs, or the fold's finished run (fold.json) when it was done before this submission
folds="$EPHYS_LOGS/folds.tsv"
train_id=$(awk -F'\t' '$1 == "train" {print $2}' "$jobs" | tail -1)
if [ -f "$folds" ]; then
    n_done=0 n_all=0
    while IFS=$'\t' read -r task dataset model fold cv_dir run done; do
        [ "$task" = task ] && continue
        n_all=$((n_all + 1))
        st=""
        if [ -f "$run/fold.json" ]; then st="COMPLETED"; n_done=$((n_done + 1))
        elif [ -n "$train_id" ]; then
            st=$( (squeue -h -r -j "${train_id}_${task}" -o "%T %r" 2>/dev/null || true) | awk 'NR==1{
                    if ($1 == "PENDING" && $2 != "" && $2 != "None") print "PENDING(" $2 ")"; else print $1 }')
            if [ -z "$st" ]; then
                f="$EPHYS_LOGS/ephys-train-${train_id}_${task}.out"
                if [ -f "$f" ]; then
                    rc=$(grep '^\[ephys\] job .* exit [0-9]*' "$f" | tail -1 | sed -n 's/.* exit \([0-9]*\) at .*/\1/p')
                    case "$rc" in 0) st="COMPLETED" ;; "") st="UNKNOWN(no exit line)" ;;
                                  *) st="FAILED(exit=$rc,log=$(basename "$f"))"; bad=1 ;; esac
                else st="NOT-STARTED"; fi
            fi
        else st="NOT-SUBMITTED"; fi
        case "$st" in *FAILED*) mark="<- failed fold" ;; *) mark="" ;; esac
        printf '  fold %-10s %-28s %s %s\n' "$model" "$(basename "$dataset")/$fold" "$st" "$mark"
    done < "$folds"
    echo "  $n_done of $n_all folds finished"
fi
[ $active -eq 1 ] && exit 3
[ $bad -eq 1 ] && exit 1
exit 0
