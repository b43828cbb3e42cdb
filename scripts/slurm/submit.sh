#!/usr/bin/env bash
# Submit an experiment: sbatch with the resources its settings file asks for.
# Usage: scripts/slurm/submit.sh scripts/slurm/experiments/<name>.sh [--dry-run]
#   --dry-run prints the sbatch line and the srun line the job would run, and submits nothing.
set -euo pipefail
SETTINGS=${1:?usage: submit.sh <settings.sh> [--dry-run]}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$SETTINGS"
SBATCH=(sbatch --job-name "$(basename "$SETTINGS" .sh)" --nodes "${NODES:-1}" --gpus-per-node "${GPUS_PER_NODE:-1}"
        --time "${TIME:-24:00:00}" "$HERE/distill.sbatch" "$SETTINGS")
if [ "${2:-}" = "--dry-run" ]; then
  printf '%q ' "${SBATCH[@]}" | sed 's/ $//'
  echo
  bash "$HERE/distill.sbatch" "$SETTINGS" --dry-run
  exit 0
fi
"${SBATCH[@]}"
