//! `niftyhost-core`: the part of niftyhost that needs no libtorch, and the `niftyhost`
//! front binary built from it.
//!
//! It holds NIfTI I/O ([`io`]), the configuration ([`config`]), preprocessing
//! ([`preprocess`]), subjects, splits and prepared volumes ([`data`]), evaluation metrics
//! ([`metrics`], [`evaluation`]), the command line ([`cli`]) and the commands that run
//! without a network: `evaluation`, `info` and `check` ([`commands`], [`front`]). The
//! engine crate (`niftyhost`) re-exports these modules under the same paths and adds
//! everything that computes with tensors or loads plugins.
//!
//! The front binary runs those three commands itself, so they start without loading
//! libtorch, and hands every other command line to the engine binary
//! (`niftyhost-engine`, beside it) unchanged ([`front::exec_engine`]). Nothing in this
//! crate may depend on tch, torch-sys or the plugin interface.

pub mod budget;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod evaluation;
pub mod folds;
pub mod front;
pub mod io;
pub mod launch;
pub mod memory;
pub mod metrics;
pub mod plugins;
pub mod preprocess;
pub mod rng;
pub mod shard;
pub mod telemetry;

/// The spelling hints of the plugin interface's SDK (the same file), without depending on
/// the interface crate: its `sdk` feature, unified across the workspace, links libtorch.
#[path = "../../../plugin-api/src/sdk/nearest.rs"]
pub mod nearest;
