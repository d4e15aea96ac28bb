# Sourced by the scripts that run a built niftyhost without building it (gpu-check.sh,
# bench-plan.sh --bundle): finds libtorch 2.11.0 and puts its lib/ first on
# LD_LIBRARY_PATH, ahead of the runpath the binary was built with. Looked up in this order:
# $LIBTORCH (its lib/), or the torch package of a Python that has one ($TORCH_PYTHON,
# python3, /opt/torch/.venv/bin/python3). Sets TORCH_PY (that Python, or empty) and exports
# GPU_CHECK_LIBTORCH_LIB, GPU_CHECK_LIBTORCH_VERSION and GPU_CHECK_TORCH_PYTHON.
# A Python whose `import torch` would find a package (looked up without importing it: fast).
has_torch() {
    "$1" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' 2>/dev/null
}
TORCH_PY=""
for candidate in "${TORCH_PYTHON:-}" python3 /opt/torch/.venv/bin/python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && has_torch "$candidate"; then
        TORCH_PY="$(command -v "$candidate")"
        break
    fi
done

LIB=""
if [ -n "${LIBTORCH:-}" ] && [ -e "$LIBTORCH/lib/libtorch_cpu.so" ]; then
    LIB="$LIBTORCH/lib"
elif [ -n "$TORCH_PY" ]; then
    TORCH_DIR="$("$TORCH_PY" -c 'import importlib.util; print(importlib.util.find_spec("torch").submodule_search_locations[0])')"
    [ -e "$TORCH_DIR/lib/libtorch_cpu.so" ] && LIB="$TORCH_DIR/lib"
fi
if [ -n "$LIB" ]; then
    export LD_LIBRARY_PATH="$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export GPU_CHECK_LIBTORCH_LIB="$LIB"
    GPU_CHECK_LIBTORCH_VERSION="$(sed -n "s/^__version__ = '\([^']*\)'.*/\1/p" "$LIB/../version.py" 2>/dev/null | head -n1)"
    export GPU_CHECK_LIBTORCH_VERSION
    case "$GPU_CHECK_LIBTORCH_VERSION" in
        2.11.0|2.11.0+*|"") ;;
        *) echo "warning: libtorch at $LIB is $GPU_CHECK_LIBTORCH_VERSION; niftyhost was built against 2.11.0" >&2 ;;
    esac
else
    echo "warning: no libtorch found (LIBTORCH unset, no Python with torch): relying on the binary's runpath" >&2
fi
if [ -n "$TORCH_PY" ]; then
    export GPU_CHECK_TORCH_PYTHON="$TORCH_PY"
fi
