#!/usr/bin/env bash
# Issue 17's benchmark: `niftyhost plan`'s config against configs/cohort.toml at the same
# training time, on the cohort's held-out subjects (scripts/bench_plan.py says how).
#
#   scripts/bench-plan.sh [--minutes M] [--device cpu|cuda:0] [--cohort DIR] [--out DIR]
#                         [--memory-gb G] [--loader-threads N] [--seed S] [--bundle DIR]
#
# Without --bundle it builds the release binaries and plugins here (as scripts/run-example.sh).
# On a device machine: build here with scripts/build-gpu-bundle.sh, copy the cohort into
# gpu-bundle/cohort, and run `scripts/bench-plan.sh --bundle gpu-bundle --cohort gpu-bundle/cohort
# --device cuda:0 --minutes 3 --out $OUT` with carry ["gpu-bundle"] (libtorch is found as
# scripts/gpu-check.sh finds it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ " $* " == *" --bundle "* ]]; then
    source "$ROOT/scripts/torch-lib.sh"
else
    source "$ROOT/scripts/common.sh"
    cargo build --release --workspace --exclude niftyhost-tests
    stage_release_plugins
fi
exec python3 "$ROOT/scripts/bench_plan.py" "$@"
