#!/usr/bin/env bash
# Installs the pinned libtorch (PyPI torch==2.11.0, no Python needed at run time)
# into a cache outside the checkout, once. A second run only checks and prints
# the environment to use.
#
#   scripts/install-libtorch.sh            # install if missing, print env
#   eval "$(scripts/install-libtorch.sh --env)"   # export LIBTORCH etc.
#
# Cache: ${NIFTYHOST_TORCH_HOME:-$HOME/.cache/niftyhost/torch-2.11.0}
set -euo pipefail

TORCH_VERSION=2.11.0
CUDA_RUNTIME_VERSION=13.0.96
CUPTI_VERSION=13.0.85
HOME_DIR="${NIFTYHOST_TORCH_HOME:-$HOME/.cache/niftyhost/torch-$TORCH_VERSION}"
LIBTORCH="$HOME_DIR/torch"
STAMP="$HOME_DIR/.complete"

print_env() {
    echo "export LIBTORCH='$LIBTORCH'"
    echo "export LIBTORCH_CXX11_ABI=1"
}

installed_version() {
    sed -n "s/^__version__ = '\([^']*\)'.*/\1/p" "$LIBTORCH/version.py" 2>/dev/null | head -n1
}

if [ -f "$STAMP" ] && [ "$(installed_version | cut -d+ -f1)" = "$TORCH_VERSION" ]; then
    [ "${1:-}" = "--env" ] && print_env || echo "libtorch $TORCH_VERSION already installed at $LIBTORCH" >&2
    exit 0
fi

echo "installing torch==$TORCH_VERSION (libtorch only, no Python deps) into $HOME_DIR" >&2
PY="${PYTHON:-$(command -v python3 || command -v python)}"
[ -n "$PY" ] || { echo "error: python3 with pip is needed once to fetch the torch wheel" >&2; exit 1; }
mkdir -p "$HOME_DIR"
TMP="$(mktemp -d "$HOME_DIR/.partial.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
    --target "$TMP" \
    "torch==$TORCH_VERSION" \
    "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION" \
    "nvidia-cuda-cupti==$CUPTI_VERSION" >&2
# The wheel lacks build-version, which torch-sys reads in LIBTORCH mode.
echo "$TORCH_VERSION" > "$TMP/torch/build-version"
rm -rf "$HOME_DIR/torch" "$HOME_DIR/nvidia"
mv "$TMP/torch" "$HOME_DIR/torch"
mv "$TMP/nvidia" "$HOME_DIR/nvidia"
v="$(installed_version)"
case "$v" in
    "$TORCH_VERSION"|"$TORCH_VERSION+"*) ;;
    *) echo "error: installed torch reports version '$v', expected $TORCH_VERSION" >&2; exit 1 ;;
esac
touch "$STAMP"
echo "libtorch $v installed at $LIBTORCH" >&2
[ "${1:-}" = "--env" ] && print_env
exit 0
