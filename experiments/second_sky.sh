#!/usr/bin/env bash
# The second sky (issue 31): the default pipeline on a mock drawn with seed 2027, a sky no setting
# was tuned on (the default sky is seed 42, the test config seed 7), run in its own directory, then the headline tables of
# the default sky and the second sky side by side.
#
#   experiments/second_sky.sh [extra snakemake arguments...]    # e.g. --cores 8
#
# Environment: RUN_DIR (default runs/seed2027, git-ignored), DEFAULT_RUN (default: the repository
# root, where the default run writes results/), PYTHON and SNAKEMAKE (default: .venv's).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
run_dir="${RUN_DIR:-$repo/runs/seed2027}"
default_run="${DEFAULT_RUN:-$repo}"
python="${PYTHON:-$repo/.venv/bin/python}"
snakemake="${SNAKEMAKE:-$repo/.venv/bin/snakemake}"
mkdir -p "$run_dir"
# the shared real data the realism stage compares with is found at ../shared from the working directory
# (config realism.real_images); give the run directory the repository's
if [[ -d "$repo/../shared" && ! -e "$run_dir/../shared" ]]; then
    ln -s "$(cd "$repo/../shared" && pwd)" "$run_dir/../shared"
fi
"$snakemake" -s "$repo/Snakefile" --directory "$run_dir" --configfile "$repo/config/config.yaml" \
    --config seed=2027 --cores "${CORES:-all}" "$@"
for arg in "$@"; do  # a dry run has no tables to show
    [[ "$arg" == "-n" || "$arg" == "--dry-run" || "$arg" == "--dryrun" ]] && exit 0
done
"$python" "$repo/benchmarks/headline.py" "$default_run" "$run_dir" \
    --names "default sky (seed 42)" "second sky (seed 2027)" \
    --write "$repo/docs/results.md"
