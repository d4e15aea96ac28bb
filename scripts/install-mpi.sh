#!/usr/bin/env bash
# Installs Open MPI and libclang from Debian's packages if missing: the `mpi` feature
# (multi-process training, tests/distributed.rs) builds against them.
#
#   scripts/install-mpi.sh          install if missing
#   scripts/install-mpi.sh --check  only say whether they are there (exit 1 if not)
set -euo pipefail
PACKAGES=(openmpi-bin libopenmpi-dev libclang-dev)

have_mpi() {
    command -v mpirun >/dev/null && command -v mpicc >/dev/null &&
        compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null
}

if have_mpi; then
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "Open MPI or libclang missing: run scripts/install-mpi.sh" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: Open MPI (mpirun, mpicc) and libclang are needed; install ${PACKAGES[*]} (Debian/Ubuntu) or your system's equivalents, as root" >&2
    exit 1
fi
echo "installing ${PACKAGES[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null; }
have_mpi || { echo "error: ${PACKAGES[*]} installed, but mpirun, mpicc or libclang is still missing" >&2; exit 1; }
