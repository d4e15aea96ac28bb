#!/usr/bin/env bash
# Runs NiftyNet's own configuration files as a NiftyNet user would: each segmentation
# file of NiftyNet's config/ folder, unchanged but for densevnet_config.ini's data path,
# trains 2 iterations and segments, on two subjects of the cohort laid out as NiftyNet's
# example_volumes/ (T1 and T1c = t1, T2 and Flair = t2, Label = label; Dense V-Net's
# 2-class file gets the labels made binary). Prints one line per job (exit code, wall
# seconds, peak resident MB) and the segmentations written; files of NiftyNet's other
# applications are refused by name, exit 2.
#
#   scripts/check-niftynet-files.sh NIFTYNET_CONFIG_DIR [OUT_DIR] [FILE.ini ...]
#
# NIFTYNET_CONFIG_DIR: the config/ folder of a NiftyNet checkout (0.6). OUT_DIR (default
# runs/niftynet-files) holds the runs and logs. COHORT (default ../shared/data/cohort) is
# the cohort folder. Release build, built here if missing. Slow on 2 cores: deepmedic's
# inference (195³ windows, 160 classes) takes about 20 min and 10 GB.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
configs="$(cd "${1:?the config/ folder of a NiftyNet checkout}" && pwd)"
out="$(mkdir -p "${2:-runs/niftynet-files}" && cd "${2:-runs/niftynet-files}" && pwd)"
shift $(( $# >= 2 ? 2 : 1 ))
cohort="$(cd "${COHORT:-$ROOT/../shared/data/cohort}" && pwd)"

cargo build --release --workspace --exclude niftyhost-tests
stage_release_plugins
bin="$ROOT/target/release/niftyhost"

# NiftyNet's example_volumes/ from two cohort subjects.
volumes="$out/example_volumes"
mkdir -p "$volumes/monomodal_parcellation" "$volumes/multimodal_BRATS" "$volumes/multimodal_parcellation" \
    "$out/example_volumes_binary/multimodal_BRATS"
for s in sub00 sub01; do
    cp "$cohort/${s}_t1.nii.gz" "$volumes/monomodal_parcellation/${s}_T1.nii.gz"
    cp "$cohort/${s}_label.nii.gz" "$volumes/monomodal_parcellation/${s}_Label.nii.gz"
    for m in T1:t1 T1c:t1 T2:t2 Flair:t2 Label:label; do
        cp "$cohort/${s}_${m#*:}.nii.gz" "$volumes/multimodal_BRATS/${s}_${m%:*}.nii.gz"
    done
    for m in T1c Label; do
        cp "$volumes/multimodal_BRATS/${s}_$m.nii.gz" "$out/example_volumes_binary/multimodal_BRATS/"
    done
done
python3 - "$out"/example_volumes_binary/multimodal_BRATS/*_Label.nii.gz <<'EOF'
# Labels > 0 become 1, in place (uint8/int16 NIfTI-1, gzip; standard library only).
import array, gzip, struct, sys
for path in sys.argv[1:]:
    data = bytearray(gzip.open(path).read())
    datatype = struct.unpack_from('<h', data, 70)[0]
    offset = int(struct.unpack_from('<f', data, 108)[0])
    code = {2: 'B', 4: 'h', 256: 'b', 512: 'H'}[datatype]
    voxels = array.array(code, bytes(data[offset:]))
    data[offset:] = array.array(code, (1 if v > 0 else 0 for v in voxels)).tobytes()
    gzip.open(path, 'wb').write(bytes(data))
EOF

files=("$@")
[ ${#files[@]} -gt 0 ] || files=($(cd "$configs" && ls *.ini))
table="$out/table.txt"
: > "$table"
job() { # job NAME ARGS...: runs niftyhost ARGS in the current folder, logs, one table line
    local name=$1; shift
    local started=$SECONDS rc=0
    local peak="?"
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "%M" -o "$out/logs/$name.rss" "$bin" "$@" > "$out/logs/$name.log" 2>&1 || rc=$?
        peak=$(( $(tail -1 "$out/logs/$name.rss") / 1024 ))
    else
        "$bin" "$@" > "$out/logs/$name.log" 2>&1 || rc=$?
    fi
    echo "$name exit=$rc wall=$((SECONDS - started))s peak_rss=${peak}MB" | tee -a "$table"
}
mkdir -p "$out/logs"
for f in "${files[@]}"; do
    n="${f%.ini}"; run="$out/runs/$n"
    rm -rf "$run"; mkdir -p "$run"
    ln -s "$volumes" "$run/example_volumes"
    ln -s "$out/example_volumes_binary" "$run/example_volumes_binary"
    extra=()
    if [ "$f" = densevnet_config.ini ]; then
        # 2 classes: the binary labels. The file segments with iteration 3000.
        sed 's|example_volumes/multimodal_BRATS|example_volumes_binary/multimodal_BRATS|' "$configs/$f" > "$run/$f"
        extra=(--set inference.inference_iter=2)
    else
        cp "$configs/$f" "$run/$f"
    fi
    (cd "$run" && job "$n.train" train -c "$f" --max_iter 2)
    grep -q "exit=0" <(tail -1 "$table") || continue
    (cd "$run" && job "$n.inference" inference -c "$f" "${extra[@]}")
    find "$run" -name "*.nii.gz" -newer "$run/$f" -path "*output*" | sed "s|^$out/|  segmentation: |" | tee -a "$table"
done
echo "table: $table; logs: $out/logs"
