#!/usr/bin/env bash
# Submits a config as a Slurm array of N shards (scripts/slurm/sweep.sbatch) and a merge job that
# runs once every shard has succeeded:
#
#   scripts/slurm/submit.sh CONFIG OUT_BASE [N_TASKS [SBATCH_ARG...]]
#
# Shard I goes to OUT_BASE/shard-I, logs to OUT_BASE/logs/, the joined tables to OUT_BASE/merged.
# Prints the two job ids (array, merge).
#
#   N_TASKS       array size (default 4)
#   SBATCH_ARG... passed to both sbatch calls, e.g. --partition=gpu --account=lab --time=4:00:00
#                 (sbatch's own SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT, ... work too)
#   RNNSWEEP      rnnsweep binary (default: build/rnnsweep of this repository)
#   GPUS          GPUs per array task, e.g. GPUS=1: --gres=gpu:1, one task per GPU (default: none,
#                 CPU backend unless the node shows a GPU anyway)
#   CPUS          CPUs (rnnsweep threads) per array task (default 1)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: $0 CONFIG OUT_BASE [N_TASKS [SBATCH_ARG...]]"
(($# >= 2)) || { echo "$usage" >&2; exit 2; }
[[ -f $1 ]] || { echo "$0: no config file $1" >&2; exit 2; }
n=${3:-4}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "$usage (N_TASKS: a positive integer)" >&2; exit 2; }
config=$(realpath "$1")
mkdir -p "$2/logs"
out_base=$(realpath "$2")
shift $(($# < 3 ? $# : 3))

RNNSWEEP=$(realpath "${RNNSWEEP:-$here/../../build/rnnsweep}")
export RNNSWEEP
[[ -x $RNNSWEEP ]] || { echo "$0: no rnnsweep binary at $RNNSWEEP (set RNNSWEEP)" >&2; exit 2; }

gres=()
[[ -n ${GPUS:-} ]] && gres=(--gres="gpu:$GPUS")

array=$(sbatch --parsable --array="0-$((n - 1))" --cpus-per-task="${CPUS:-1}" "${gres[@]}" \
  --output="$out_base/logs/shard-%a.out" "$@" \
  "$here/sweep.sbatch" "$config" "$out_base" "$n")
array=${array%%;*}  # --parsable prints "id" or "id;cluster"

merge=$(sbatch --parsable --job-name=rnnsweep-merge --dependency="afterok:$array" \
  --kill-on-invalid-dep=yes --cpus-per-task=1 --output="$out_base/logs/merge.out" "$@" \
  --wrap="$(printf '%q ' "$RNNSWEEP" merge)$(printf '%q' "$out_base")/shard-* --out $(printf '%q' "$out_base/merged") --force")
merge=${merge%%;*}
echo "$array $merge"
