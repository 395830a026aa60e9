# Sourced by submit.sh and plan.sh: render the templates and submit one step, recording it in
# $EPHYS_LOGS/jobs.tsv (make slurm-status reads it).
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
    render "$EPHYS_SLURM_DIR/$template" "$rendered/$template"
    local id
    id=$(sbatch --parsable --kill-on-invalid-dep=yes "$@" "$rendered/$template")
    id=${id%%;*}
    printf '%s\t%s\n' "$step" "$id" >> "$EPHYS_LOGS/jobs.tsv"
    echo "$id"
}
