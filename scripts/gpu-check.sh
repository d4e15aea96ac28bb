#!/usr/bin/env bash
# The GPU check (issue 20): unet3d training on cuda:0 in fp32, bf16 and fp16 at batch 2 and
# a larger batch, its first losses against the CPU's, whole-volume inference of the 1 mm T1
# in fp32 and bf16, NCCL with one process (and two with 2+ GPUs), and the same network in
# plain PyTorch on the same card (scripts/pytorch_unet3d.py), in under 6 minutes. Writes
# OUT/gpu-check.json (everything), OUT/gpu-check.txt (the summary it also prints) and
# OUT/gpu-check-logs.tar.gz (each step's output and training log). A failing step is
# recorded with its error and the check goes on; the exit status is 1 if any failed.
#
#   scripts/gpu-check.sh [--bundle DIR] [--out DIR] [--cpu] [...]   (--help: every option)
#
# It needs no build: DIR (default gpu-bundle/) holds a niftyhost binary and plugins/ made by
# scripts/build-gpu-bundle.sh, or any folder with niftyhost and plugins/ (a debug build's
# too). The data and configs come from the checkout. libtorch 2.11.0 is found, in this order,
# from $LIBTORCH (its lib/), or from the torch package of a Python that has one ($TORCH_PYTHON,
# python3, /opt/torch/.venv/bin/python3), and put first on LD_LIBRARY_PATH, ahead of the
# runpath the binary was built with. That Python also runs the PyTorch baseline; without one
# the baseline is recorded as skipped.
#
# On this project's GPU machines (device tool): build here with scripts/build-gpu-bundle.sh,
# then run `scripts/gpu-check.sh --bundle gpu-bundle --out $OUT` with carry ["gpu-bundle"].
#
# --cpu runs every step on the CPU with tiny settings (16³ windows, 10 iterations; the CUDA-only
# steps are recorded as skipped, with the reason); tests/gpu_check.rs runs it in CI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

source "$ROOT/scripts/torch-lib.sh"

# The orchestrator needs only the standard library: any python3 will do.
PY="${TORCH_PY:-$(command -v python3 || true)}"
[ -n "$PY" ] || { echo "error: scripts/gpu-check.sh needs python3" >&2; exit 2; }
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
