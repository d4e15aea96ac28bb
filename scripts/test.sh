#!/usr/bin/env bash
# The whole test suite: installs the pinned libtorch if missing, builds the workspace
# (host and plugins; the tests build their fixture plugins themselves) and runs every test.
#
#   scripts/test.sh [extra cargo test arguments]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cargo build --workspace --all-targets
cargo test --workspace "$@"
