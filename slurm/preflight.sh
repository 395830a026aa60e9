#!/bin/bash
# Sourced by submit.sh before anything is submitted: does each step's request (CPUs, memory,
# GRES, time) fit the partition? A request no node can ever satisfy would sit in PENDING
# (Reason=PartitionConfig / Resources) forever; instead the submission is refused with one line
# naming the variable to change. Node limits come from `sinfo -N` (CPUs, memory, GRES per node)
# and the partition's MaxTime; `sbatch --test-only` then checks the rendered script as a whole.

# memory like 32G / 512M / 1T / 4000 (MB) -> MB
_mem_mb() {
    local v=${1^^}
    case "$v" in
        *T|*TB) v=${v%B}; echo $(( ${v%T} * 1024 * 1024 )) ;;
        *G|*GB) v=${v%B}; echo $(( ${v%G} * 1024 )) ;;
        *M|*MB) v=${v%B}; echo $(( ${v%M} )) ;;
        *K|*KB) v=${v%B}; echo $(( ${v%K} / 1024 )) ;;
        *) echo $(( v )) ;;
    esac
}

# SLURM times: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; "infinite"/"UNLIMITED" -> -1 (minutes)
_minutes() {
    local t=$1 d=0 h=0 m=0 s=0
    case "$t" in infinite|UNLIMITED|NONE|"") echo -1; return ;; esac
    if [[ $t == *-* ]]; then d=${t%%-*}; t=${t#*-}; IFS=: read -r h m s <<< "$t"
    else
        IFS=: read -r a b c <<< "$t"
        if [ -n "${c:-}" ]; then h=$a m=$b s=$c; elif [ -n "${b:-}" ]; then m=$a s=$b; else m=$a; fi
    fi
    echo $(( 10#${d:-0} * 1440 + 10#${h:-0} * 60 + 10#${m:-0} + (10#${s:-0} > 0 ? 1 : 0) ))
}

_refuse() {
    echo "${EPHYS_PREFLIGHT_WHO:-slurm-all}: $*; nothing was submitted" >&2
    exit 2
}

# preflight_step STEP CPUS CPUS_VAR MEM MEM_VAR TIME TIME_VAR GRES GRES_VAR
preflight_step() {
    local step=$1 cpus=$2 cpus_var=$3 mem=$4 mem_var=$5 time=$6 time_var=$7 gres=${8:-} gres_var=${9:-}
    local part=${EPHYS_PARTITION:-}
    if [ -z "$part" ]; then
        part=$(sinfo -h -o "%P" 2>/dev/null | awk '/\*$/{sub(/\*$/, ""); print; exit}')
    fi
    [ -n "$part" ] || _refuse "no partition given and the cluster has no default one; set EPHYS_PARTITION"
    local nodes
    nodes=$(sinfo -h -N -p "$part" -o "%c %m %G" 2>/dev/null || true)
    [ -n "$nodes" ] || _refuse "partition '$part' has no nodes (sinfo -p $part); set EPHYS_PARTITION to one of: $(sinfo -h -o %P 2>/dev/null | tr -d '*' | sort -u | tr '\n' ' ')"
    local max_cpus max_mem want_mb
    max_cpus=$(awk '{print $1}' <<< "$nodes" | sort -n | tail -1)
    max_mem=$(awk '{print $2}' <<< "$nodes" | sort -n | tail -1)
    if [ "$cpus" -gt "$max_cpus" ]; then
        _refuse "$step asks for $cpus CPUs per task but the nodes of partition '$part' have at most $max_cpus; set $cpus_var=$max_cpus (or less), or another EPHYS_PARTITION"
    fi
    want_mb=$(_mem_mb "$mem") || _refuse "$mem_var=$mem is not a memory size (e.g. 8G)"
    if [ "$want_mb" -gt "$max_mem" ]; then
        _refuse "$step asks for $mem_var=$mem but the nodes of partition '$part' have at most ${max_mem}M; set $mem_var=$(( max_mem / 1024 ))G (or less), or another EPHYS_PARTITION"
    fi
    local max_time want_min
    max_time=$(scontrol show partition "$part" 2>/dev/null | grep -o 'MaxTime=[^ ]*' | cut -d= -f2)
    want_min=$(_minutes "$time")
    local lim_min
    lim_min=$(_minutes "${max_time:-infinite}")
    if [ "$lim_min" -ge 0 ] && [ "$want_min" -gt "$lim_min" ]; then
        _refuse "$step asks for $time_var=$time but partition '$part' allows at most $max_time; set $time_var=$max_time (or less)"
    fi
    if [ -n "$gres" ]; then
        local kind=${gres%%:*}
        if ! grep -q "$kind" <<< "$(awk '{print $3}' <<< "$nodes")"; then
            _refuse "$step asks for $gres_var=$gres but the nodes of partition '$part' offer no '$kind' GRES ($(awk '{print $3}' <<< "$nodes" | sort -u | tr '\n' ' ')); set $gres_var= (empty: CPU training) or another EPHYS_PARTITION"
        fi
    fi
}

# preflight_test_only STEP SCRIPT: sbatch --test-only on the rendered script (no job is created)
preflight_test_only() {
    local step=$1 script=$2 out
    if ! out=$(sbatch --test-only "$script" 2>&1); then
        _refuse "$step: sbatch --test-only refused $script: $(tr '\n' ' ' <<< "$out" | sed 's/  */ /g')"
    fi
}
