#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh needs on a GPU machine that has no Rust toolchain: the
# release `niftyhost` (the torch-free front) and `niftyhost-engine` (every command but
# evaluation, info and check; the front runs it from its own folder) and every plugin
# library, stripped, in one ignored folder (default gpu-bundle/): gpu-bundle/niftyhost,
# gpu-bundle/niftyhost-engine, gpu-bundle/plugins/lib<name>.so and
# gpu-bundle/manifest.json (commit, libtorch, sizes, sha256, the shared libraries and the
# newest glibc / libstdc++ symbol versions the files need). Everything else the check reads
# (scripts, configs/, data/) is in git. Fails if the folder is over 60 MiB.
#
#   scripts/build-gpu-bundle.sh [DIR]
#
# How it travels: copy the folder beside the checkout's files. With this project's device
# tool, the working tree travels by itself and the ignored bundle is carried:
#   run(command="scripts/gpu-check.sh --bundle gpu-bundle --out $OUT", carry=["gpu-bundle"])
#
# The engine and plugins need libtorch_cpu.so and libc10.so. Their runpath points at the
# libtorch they were built against (scripts/install-libtorch.sh's cache), which a GPU machine
# lacks; scripts/gpu-check.sh puts the libtorch of $LIBTORCH, or of the Python package torch
# (python3 -c "import torch; print(torch.__path__[0])" + /lib), first on LD_LIBRARY_PATH,
# which the loader searches before a runpath. The CPU wheel's libtorch here and the cu130
# one there are the same torch 2.11.0 build, with the same ABI; niftyhost opens
# libtorch_cuda.so (and NCCL) beside the libtorch_cpu.so it mapped.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT="$(realpath -m "${1:-$ROOT/gpu-bundle}")"
LIMIT_MIB=60
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

# As scripts/run-example.sh: the tests crate is left out (it turns on MPI, which the GPU
# check does not use: several processes there talk through NCCL).
cargo build --release --workspace --exclude niftyhost-tests

rm -rf "$OUT"
mkdir -p "$OUT/plugins"
cp "$TARGET/niftyhost" "$TARGET/niftyhost-engine" "$OUT/"
for manifest in "$ROOT"/plugins/*/Cargo.toml; do
    lib="$(sed -n '/^\[lib\]/,/^\[/s/^name = "\(.*\)"/\1/p' "$manifest")"
    [ -n "$lib" ] || continue
    cp "$TARGET/lib$lib.so" "$OUT/plugins/lib$lib.so"
done
# Symbol tables and debug sections only: the dynamic symbols the loader and the plugin
# interface use stay.
strip --strip-unneeded "$OUT/niftyhost" "$OUT/niftyhost-engine" "$OUT"/plugins/*.so

# The newest symbol version of a family (GLIBC_, GLIBCXX_) that any bundled file needs.
newest() {
    objdump -T "$OUT/niftyhost" "$OUT/niftyhost-engine" "$OUT"/plugins/*.so | grep -o "$1[0-9.]*" | sort -uV | tail -n1
}
needed="$(readelf -d "$OUT/niftyhost" "$OUT/niftyhost-engine" "$OUT"/plugins/*.so | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)"
runpath="$(readelf -d "$OUT/niftyhost-engine" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')"
size="$(du -sb "$OUT" | cut -f1)"
commit="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo true || echo false)"
python3 - "$OUT" "$commit" "$dirty" "$LIBTORCH" "$runpath" "$(newest GLIBC_)" "$(newest GLIBCXX_)" "$size" "$needed" <<'EOF'
import hashlib, json, os, sys, time
out, commit, dirty, libtorch, runpath, glibc, glibcxx, size, needed = sys.argv[1:]
files = {}
for rel in ["niftyhost", "niftyhost-engine"] + sorted("plugins/" + f for f in os.listdir(os.path.join(out, "plugins"))):
    data = open(os.path.join(out, rel), "rb").read()
    files[rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
version = open(os.path.join(libtorch, "version.py")).read().split("__version__ = '")[1].split("'")[0]
manifest = {
    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": commit,
    "uncommitted_changes": dirty == "true",
    "libtorch_built_against": {"path": libtorch, "version": version},
    "runpath": runpath,
    "needed_libraries": needed.split(),
    "newest_symbol_versions": {"glibc": glibc, "libstdc++": glibcxx},
    "bytes": int(size),
    "files": files,
}
json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), indent=2)
EOF

mib=$(( (size + 1048575) / 1048576 ))
echo "bundle: $OUT, $mib MiB ($size bytes): niftyhost, niftyhost-engine and $(ls "$OUT/plugins" | wc -l) plugins, stripped"
echo "needs: $(echo $needed), $(newest GLIBC_), $(newest GLIBCXX_)"
if [ "$size" -gt $(( LIMIT_MIB * 1048576 )) ]; then
    echo "error: the bundle is $mib MiB, over the $LIMIT_MIB MiB it must stay under to travel quickly" >&2
    exit 1
fi
