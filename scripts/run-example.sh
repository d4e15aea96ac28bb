#!/usr/bin/env bash
# The main job on the bundled example: installs the pinned libtorch if missing, builds
# the host and plugins (release), trains a 3D U-Net on the MNI152 2 mm tissue task,
# segments the volume and evaluates it.
#
#   scripts/run-example.sh [CONFIG]        (default configs/unet3d.toml)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CONFIG="${1:-configs/unet3d.toml}"

# The tests crate is left out: it turns on MPI, which the example does not need.
cargo build --release --workspace --exclude niftyhost-tests
stage_release_plugins
BIN="$ROOT/target/release/niftyhost"

"$BIN" list-plugins
"$BIN" train -c "$CONFIG"
"$BIN" inference -c "$CONFIG"
"$BIN" evaluation -c "$CONFIG"

MODEL_DIR="$("$BIN" config -c "$CONFIG" --json 2>/dev/null | sed -n 's/^    "model_dir": "\(.*\)",$/\1/p')"
echo
echo "outputs:"
echo "  checkpoints:   $MODEL_DIR/checkpoints/"
echo "  training log:  $MODEL_DIR/train_log.jsonl"
echo "  loss curve:    $MODEL_DIR/loss_curve.png"
echo "  TensorBoard:   tensorboard --logdir $MODEL_DIR/logs"
echo "  segmentation:  $MODEL_DIR/inference/"
echo "  metrics:       $MODEL_DIR/evaluation/metrics.csv"
