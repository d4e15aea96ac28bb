# Sourced by the scripts: repository root, pinned libtorch, and the link cargo uses.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install-libtorch.sh"
eval "$("$ROOT/scripts/install-libtorch.sh" --env)"
# .cargo/config.toml points cargo at .libtorch/torch unless LIBTORCH is set.
ln -sfn "$(dirname "$LIBTORCH")" "$ROOT/.libtorch"

# Copies the release plugin libraries into plugins/ as lib<name>.so, and into
# target/release/plugins/ so that target/release/niftyhost finds them from any folder.
stage_release_plugins() {
    local manifest lib
    mkdir -p "$ROOT/target/release/plugins"
    for manifest in "$ROOT"/plugins/*/Cargo.toml; do
        lib="$(sed -n '/^\[lib\]/,/^\[/s/^name = "\(.*\)"/\1/p' "$manifest")"
        [ -n "$lib" ] || continue
        cp "$ROOT/target/release/lib$lib.so" "$ROOT/plugins/lib$lib.so"
        cp "$ROOT/target/release/lib$lib.so" "$ROOT/target/release/plugins/lib$lib.so"
    done
}
