#!/usr/bin/env bash
# The whole test suite: installs the pinned libtorch if missing, builds the workspace
# (host and plugins; the tests build their fixture plugins themselves), installs Open MPI
# if missing, and runs every test.
#
#   scripts/test.sh [extra cargo test arguments]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# Multi-process tests run mpirun; the tests crate builds niftyhost with MPI.
"$ROOT/scripts/install-mpi.sh"

cargo build --workspace --all-targets
cargo test --workspace "$@"
