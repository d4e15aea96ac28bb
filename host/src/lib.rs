//! `niftyhost`: the host of a deep-learning engine for 3D medical images.
//!
//! The host owns everything but the maths of a model: configuration, plugin discovery
//! and loading, NIfTI I/O, patch sampling and loader threads, the trainer, sliding-window
//! inference, evaluation metrics, checkpoints, logs and progress. Networks, losses and
//! augmentations are plugins (see the `niftyhost-plugin-api` crate).
//!
//! # Axis convention
//! NIfTI stores voxels with the first index `i` (x) fastest. Volumes are kept in that
//! memory order and viewed by torch as C-order `[z, y, x]`, so tensors are
//! `[N, C, D, H, W]` with `D = k`, `H = j`, `W = i`, without copying. Window sizes in
//! configs are given in NIfTI order `(i, j, k)`, as in NiftyNet, and reversed internally.

pub mod bench;
pub mod budget;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod distributed;
pub mod engine;
pub mod help;
pub mod io;
pub mod memory;
pub mod metrics;
pub mod plan;
pub mod plugins;
pub mod preprocess;
pub mod rng;
pub mod runlog;
pub mod telemetry;
pub mod torch;
