//! `niftyhost`: the host of a deep-learning engine for 3D medical images.
//!
//! The host owns everything but the maths of a model: configuration, plugin discovery
//! and loading, NIfTI I/O, patch sampling and loader threads, the trainer, sliding-window
//! inference, evaluation metrics, checkpoints, logs and progress. Networks, losses and
//! augmentations are plugins (see the `niftyhost-plugin-api` crate).
//!
//! What needs no libtorch (I/O, configuration, preprocessing, datasets, metrics and
//! evaluation, the command line) is the `niftyhost-core` crate, re-exported here under the
//! same paths; this crate builds the `niftyhost-engine` binary, which the torch-free
//! `niftyhost` front binary runs for every command but `evaluation`, `info` and `check`.
//!
//! # Axis convention
//! NIfTI stores voxels with the first index `i` (x) fastest. Volumes are kept in that
//! memory order and viewed by torch as C-order `[z, y, x]`, so tensors are
//! `[N, C, D, H, W]` with `D = k`, `H = j`, `W = i`, without copying. Window sizes in
//! configs are given in NIfTI order `(i, j, k)`, as in NiftyNet, and reversed internally.

pub mod bench;
pub mod bundle;
pub mod commands;
pub mod data;
pub mod distributed;
pub mod engine;
pub mod help;
pub mod plan;
pub mod plugins;
pub mod runlog;
pub mod torch;

// The torch-free modules, under the paths they always had.
pub use niftyhost_core::{budget, cli, config, io, memory, metrics, preprocess, rng, telemetry};
