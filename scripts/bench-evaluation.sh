#!/usr/bin/env bash
# The evaluation benchmark of issue 21: `niftyhost evaluation` end to end (process start,
# reading both files, every metric, the CSVs) on three pairs made from the bundled MNI152
# tissue maps, each segmentation being its reference shifted by one voxel along i (a
# realistic error: white-matter Dice 0.91):
#   masks1mm   white matter (tissue_1mm == 2) as a binary mask, 197 x 233 x 189
#   tissue1mm  the 1 mm tissue map (labels 1, 2)
#   tissue2mm  the 2 mm tissue map, 99 x 117 x 95
# Prints the minimum and median wall time of RUNS runs (default 9) of each.
#
#   scripts/bench-evaluation.sh [RUNS] [BIN]    BIN: a niftyhost binary (default: build the
#                                               torch-free front in release and use it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-9}"
BIN="${2:-}"
if [ -z "$BIN" ]; then
    (cd "$ROOT" && cargo build --release -p niftyhost-core --bin niftyhost)
    BIN="$ROOT/target/release/niftyhost"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$ROOT" "$WORK" <<'PY'
import os, struct, sys
root, work = sys.argv[1:]
sys.path.insert(0, os.path.join(root, "scripts"))
import nifti_min

def pair(name, source, keep=None):
    vol = nifti_min.read(os.path.join(root, source))
    assert vol.datatype == 2, f"{source}: expected uint8 voxels"
    ref = vol.data if keep is None else bytes(1 if v == keep else 0 for v in vol.data)
    seg = b"\0" + ref[:-1]  # shifted by one voxel along i
    for part, data in (("ref", ref), ("seg", seg)):
        folder = os.path.join(work, name, part)
        os.makedirs(folder)
        header = bytearray(vol.header)
        header[108:112] = struct.pack(vol.endian + "f", 352.0)
        with open(os.path.join(folder, "s1.nii"), "wb") as f:
            f.write(bytes(header) + b"\0" * 4 + data)

pair("masks1mm", "data/mni152_1mm/tissue_1mm.nii.gz", keep=2)
pair("tissue1mm", "data/mni152_1mm/tissue_1mm.nii.gz")
pair("tissue2mm", "data/mni152/tissue_2mm.nii.gz")
PY

for name in masks1mm tissue1mm tissue2mm; do
    times=()
    for _ in $(seq "$RUNS"); do
        start=$(date +%s.%N)
        "$BIN" evaluation --seg-dir "$WORK/$name/seg" --ref-dir "$WORK/$name/ref" --out "$WORK/$name/out/metrics.csv" >/dev/null 2>&1 \
            || { echo "error: evaluation of $name failed" >&2; exit 1; }
        end=$(date +%s.%N)
        times+=("$(echo "$end - $start" | bc)")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v n="$name" '{a[NR] = $1} END {printf "%-10s runs %d  min %.3f s  median %.3f s\n", n, NR, a[1], a[int((NR + 1) / 2)]}'
done
