# Sourced by the scripts: repository root, pinned libtorch, and the link cargo uses.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install-libtorch.sh"
eval "$("$ROOT/scripts/install-libtorch.sh" --env)"
# .cargo/config.toml points cargo at .libtorch/torch unless LIBTORCH is set.
ln -sfn "$(dirname "$LIBTORCH")" "$ROOT/.libtorch"

# Copies the plugin libraries of a build profile into plugins/ as lib<name>.so.
stage_plugins() {
    local profile="$1" manifest lib
    for manifest in "$ROOT"/plugins/*/Cargo.toml; do
        lib="$(sed -n '/^\[lib\]/,/^\[/s/^name = "\(.*\)"/\1/p' "$manifest")"
        [ -n "$lib" ] && cp "$ROOT/target/$profile/lib$lib.so" "$ROOT/plugins/lib$lib.so"
    done
}
