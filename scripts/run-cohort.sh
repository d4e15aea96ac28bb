#!/usr/bin/env bash
# The cohort benchmark: a 3D U-Net trained on the ten-subject cohort (two modalities,
# each subject in its own voxel size and axis order) and scored on the INFER subjects it
# never saw. Builds like scripts/run-example.sh; the cohort is read from
# ../shared/data/cohort (NIFTYHOST_COHORT=DIR for another copy).
#
#   scripts/run-cohort.sh            configs/cohort.toml: train, segment INFER, evaluate
#   scripts/run-cohort.sh --folds    5-fold cross-validation (500 iterations per fold) into
#                                    runs/cohort_folds: fold 0 alone against the ensemble
#   scripts/run-cohort.sh --planned  `niftyhost plan` from the input sections alone, then train,
#                                    segment and evaluate the planned config in runs/cohort_planned
#                                    on the same INFER subjects (configs/cohort_split.csv)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
COHORT="${NIFTYHOST_COHORT:-$ROOT/../shared/data/cohort}"
if [ ! -f "$COHORT/sub00_t1.nii.gz" ]; then
    echo "run-cohort.sh: no cohort at $COHORT (expected sub00_t1.nii.gz ... sub09_label.nii.gz);" >&2
    echo "  set NIFTYHOST_COHORT to the folder that holds it" >&2
    exit 2
fi
cargo build --release --workspace --exclude niftyhost-tests
stage_release_plugins
BIN="$ROOT/target/release/niftyhost"
ARGS=(-c configs/cohort.toml)
for section in t1 t2 label; do
    ARGS+=(--set "input.$section.path_to_search=$COHORT")
done

if [ "${1:-}" = "--planned" ]; then
    DIR=runs/cohort_planned
    mkdir -p "$DIR"
    # Only what plan cannot know: where the files are, which are images, how many classes.
    {
        for section in t1 t2 label; do
            printf '[input.%s]\npath_to_search = "%s"\nfilename_contains = ["_%s"]\n\n' "$section" "$COHORT" "$section"
        done
        printf '[segmentation]\nimage = ["t1", "t2"]\nlabel = "label"\nnum_classes = 3\n'
    } > "$DIR/data.toml"
    # The budget of the benchmark in the README: a 0.5 GiB step (48 x 48 x 40 windows) and
    # the iterations that train in the time configs/cohort.toml's 1000 take on this machine.
    "$BIN" plan -c "$DIR/data.toml" --out "$DIR/planned.toml" --memory-gb 0.5 --iterations "${PLANNED_ITERATIONS:-240}"
    RUN=(-c "$DIR/planned.toml" --set "system.model_dir=$DIR" --set system.dataset_split_file=configs/cohort_split.csv)
    "$BIN" train "${RUN[@]}"
    "$BIN" inference "${RUN[@]}"
    "$BIN" evaluation "${RUN[@]}"
    echo
    echo "metrics: $DIR/evaluation/metrics.csv (the INFER subjects of configs/cohort_split.csv)"
elif [ "${1:-}" = "--folds" ]; then
    ARGS+=(--set system.model_dir=runs/cohort_folds --set training.k_folds=5 --set training.max_iter=500)
    "$BIN" train "${ARGS[@]}" --all-folds
    "$BIN" inference "${ARGS[@]}" --fold 0
    "$BIN" evaluation "${ARGS[@]}" --fold 0
    "$BIN" inference "${ARGS[@]}" --folds all
    "$BIN" evaluation "${ARGS[@]}" --folds all
    echo
    echo "metrics: runs/cohort_folds/fold_0/evaluation/metrics.csv (fold 0)"
    echo "         runs/cohort_folds/folds_0_1_2_3_4/evaluation/metrics.csv (ensemble of 5 folds)"
else
    "$BIN" train "${ARGS[@]}"
    "$BIN" inference "${ARGS[@]}"
    "$BIN" evaluation "${ARGS[@]}"
    echo
    echo "metrics: runs/cohort/evaluation/metrics.csv (INFER subjects; the phase column says so)"
fi
