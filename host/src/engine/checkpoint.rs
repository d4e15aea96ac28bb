//! Checkpoints: `iter_<n>.safetensors` (parameters and buffers by name) and
//! `iter_<n>.json` (metadata). Each file is written to a temporary name, synced and
//! renamed; the JSON goes last, so a checkpoint is complete exactly when its JSON exists.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::Model;
use crate::data::ChannelLayout;

/// A plugin a checkpoint depends on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginRef {
    /// Component name.
    pub component: String,
    /// network / loss.
    pub kind: String,
    /// Library name and version.
    pub library: String,
    /// Library version.
    pub version: String,
    /// Library file when saved.
    pub file: PathBuf,
    /// sha256 of the library file.
    pub sha256: String,
}

/// What a checkpoint says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    /// Iterations completed.
    pub iteration: u64,
    /// The run's seed.
    pub seed: u64,
    /// Loss of the last iteration.
    pub loss: f64,
    /// The plugins used.
    pub plugins: Vec<PluginRef>,
    /// The libtorch ABI tag of the host.
    pub torch_abi_tag: String,
    /// The whole configuration.
    pub config: serde_json::Value,
    /// The channels of each image section the network takes (`in_channels` is their
    /// total); empty in checkpoints written before it was recorded: one per section.
    #[serde(default)]
    pub image_channels: Vec<usize>,
    /// The fp16 loss scaler's state, when mixed precision scales the loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<super::precision::LossScaler>,
}

/// A checkpoint that cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {message}")]
pub struct CheckpointError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

fn err(path: &Path, message: impl ToString) -> CheckpointError {
    CheckpointError { path: path.to_owned(), message: message.to_string() }
}

/// The optimiser-state file beside a weights file.
pub fn optimiser_path(weights: &Path) -> PathBuf {
    weights.with_extension("optim.safetensors")
}

/// Paths of checkpoint `iteration` in `dir`: (weights, metadata).
pub fn paths(dir: &Path, iteration: u64) -> (PathBuf, PathBuf) {
    (dir.join(format!("iter_{iteration:08}.safetensors")), dir.join(format!("iter_{iteration:08}.json")))
}

fn sync_rename(tmp: &Path, dst: &Path) -> Result<(), CheckpointError> {
    File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| err(tmp, e))?;
    std::fs::rename(tmp, dst).map_err(|e| err(dst, e))?;
    if let Some(dir) = dst.parent() {
        File::open(dir).and_then(|f| f.sync_all()).map_err(|e| err(dir, e))?;
    }
    Ok(())
}

/// Writes a checkpoint atomically and returns its weights file; the metadata records the
/// model's image channels (whatever `meta.image_channels` says). A save that fails
/// part-way removes what it wrote (temporary files, and weights already renamed whose
/// JSON was not written), so a failed save leaves the folder as it was.
///
/// # Errors
/// The file that could not be written and why.
pub fn save(
    dir: &Path,
    model: &Model,
    optimiser: &[(String, Tensor)],
    meta: &CheckpointMeta,
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let (weights, json) = paths(dir, meta.iteration);
    let meta = CheckpointMeta { image_channels: model.channels.counts().to_vec(), ..meta.clone() };
    let written = write_files(&weights, &json, model, optimiser, &meta);
    if written.is_err() {
        for file in [
            weights.with_extension("tmp"),
            optimiser_path(&weights).with_extension("tmp"),
            json.with_extension("json.tmp"),
            optimiser_path(&weights),
            weights.clone(),
        ] {
            remove_file_if_there(&file);
        }
    }
    written.map(|()| weights)
}

/// The files of one checkpoint, each through a temporary name; the JSON last.
fn write_files(
    weights: &Path,
    json: &Path,
    model: &Model,
    optimiser: &[(String, Tensor)],
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    let write = |path: &Path, named: Vec<(&str, &Tensor)>| {
        let tmp = path.with_extension("tmp");
        Tensor::write_safetensors(&named, &tmp).map_err(|e| err(&tmp, e))?;
        sync_rename(&tmp, path)
    };
    write(weights, model.state().map(|(n, t)| (n.as_str(), t)).collect())?;
    if !optimiser.is_empty() {
        write(&optimiser_path(weights), optimiser.iter().map(|(n, t)| (n.as_str(), t)).collect())?;
    }
    let tmp = json.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(meta).map_err(|e| err(json, e))?;
    std::fs::write(&tmp, text).map_err(|e| err(&tmp, e))?;
    sync_rename(&tmp, json)
}

/// Removes a plain file; anything else (nothing there, a folder) is left alone.
fn remove_file_if_there(path: &Path) {
    if path.symlink_metadata().is_ok_and(|m| m.is_file()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Removes the leftovers of saves that did not complete: temporary files (`*.tmp`) and
/// weights or optimiser files of an iteration without its JSON. Returns the files
/// removed, for the caller to warn about. Only for a folder no other process writes to.
///
/// # Errors
/// A folder that cannot be listed or a leftover that cannot be removed.
pub fn remove_incomplete(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| err(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(rest) = name.strip_prefix("iter_") else { continue };
        let iteration = rest.split('.').next().and_then(|n| n.parse::<u64>().ok());
        let incomplete = match iteration {
            Some(_) if name.ends_with(".tmp") => true,
            Some(n) if name.ends_with(".safetensors") => !paths(dir, n).1.is_file(),
            _ => false,
        };
        if incomplete && path.symlink_metadata().is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&path)
                .map_err(|e| err(&path, format!("cannot remove a leftover of a failed save: {e}")))?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Complete checkpoints in `dir`, oldest first: (iteration, weights file).
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u64 = name.strip_prefix("iter_")?.strip_suffix(".json")?.parse().ok()?;
            let (weights, _) = paths(dir, n);
            weights.is_file().then_some((n, weights))
        })
        .collect();
    out.sort();
    out
}

/// Deletes all but the newest `keep` complete checkpoints.
pub fn prune(dir: &Path, keep: usize) {
    let all = list(dir);
    for (n, _) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        let (weights, json) = paths(dir, *n);
        let _ = std::fs::remove_file(json);
        let _ = std::fs::remove_file(optimiser_path(&weights));
        let _ = std::fs::remove_file(weights);
    }
}

/// Reads a checkpoint's metadata.
///
/// # Errors
/// A missing or malformed file.
pub fn read_meta(weights: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let json = weights.with_extension("json");
    let text = std::fs::read_to_string(&json).map_err(|e| err(&json, e))?;
    serde_json::from_str(&text).map_err(|e| err(&json, e))
}

/// The channels of each image section (`sections`) the network of the checkpoints
/// `weights` takes, the same for all: what their metadata records, or one channel per
/// section for a checkpoint recorded before layouts were or without metadata.
///
/// # Errors
/// Malformed metadata, a record that does not fit `sections`, or checkpoints that
/// record different layouts.
pub fn recorded_channels(weights: &[PathBuf], sections: &[String]) -> Result<ChannelLayout, CheckpointError> {
    let mut first: Option<(&PathBuf, ChannelLayout)> = None;
    for w in weights {
        let layout = if w.with_extension("json").exists() {
            let meta = read_meta(w)?;
            ChannelLayout::recorded(sections, &meta.image_channels).map_err(|m| err(&w.with_extension("json"), m))?
        } else {
            ChannelLayout::one_per_section(sections)
        };
        match &first {
            None => first = Some((w, layout)),
            Some((f, l)) if *l != layout => {
                return Err(err(
                    w,
                    format!(
                        "takes image channels {layout}, but checkpoint {} takes {l}: an ensemble's models must take the same",
                        f.display()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or_else(|| ChannelLayout::one_per_section(sections), |(_, l)| l))
}

/// Copies saved tensors into the model's parameters and buffers, by name.
///
/// # Errors
/// A tensor missing from the file or from the model, or with another shape.
pub fn load_weights(weights: &Path, model: &mut Model) -> Result<(), CheckpointError> {
    let saved = Tensor::read_safetensors(weights).map_err(|e| err(weights, e))?;
    let mut saved: std::collections::HashMap<String, Tensor> = saved.into_iter().collect();
    for (name, t) in model.params.iter_mut().chain(model.buffers.iter_mut()) {
        let src = saved
            .remove(name)
            .ok_or_else(|| err(weights, format!("has no tensor `{name}` that network `{}` needs", model.name)))?;
        if src.size() != t.size() {
            return Err(err(
                weights,
                format!("tensor `{name}` is {:?}, the network expects {:?}", src.size(), t.size()),
            ));
        }
        tch::no_grad(|| t.copy_(&src));
    }
    if let Some(extra) = saved.keys().next() {
        return Err(err(weights, format!("holds tensor `{extra}` that network `{}` does not have", model.name)));
    }
    Ok(())
}

/// Reads the optimiser state saved beside `weights` (`None` when it has none).
///
/// # Errors
/// An unreadable file.
pub fn read_optimiser(weights: &Path) -> Result<Option<std::collections::HashMap<String, Tensor>>, CheckpointError> {
    let path = optimiser_path(weights);
    if !path.exists() {
        return Ok(None);
    }
    let tensors = Tensor::read_safetensors(&path).map_err(|e| err(&path, e))?;
    Ok(Some(tensors.into_iter().collect()))
}

/// Copies into the model the tensors of `weights` whose names match `names` (transfer
/// learning); the model's other tensors keep their values. Returns the names copied.
///
/// # Errors
/// A matching model tensor missing from the file or of another shape, or no match.
pub fn load_matching(weights: &Path, model: &mut Model, names: &regex::Regex) -> Result<Vec<String>, CheckpointError> {
    let saved: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(weights).map_err(|e| err(weights, e))?.into_iter().collect();
    let mut copied = Vec::new();
    for (name, t) in model.params.iter_mut().chain(model.buffers.iter_mut()).filter(|(n, _)| names.is_match(n)) {
        let src = saved
            .get(name.as_str())
            .ok_or_else(|| err(weights, format!("has no tensor `{name}` (matched by vars_to_restore)")))?;
        if src.size() != t.size() {
            return Err(err(
                weights,
                format!("tensor `{name}` is {:?}, the network expects {:?}", src.size(), t.size()),
            ));
        }
        tch::no_grad(|| t.copy_(src));
        copied.push(name.clone());
    }
    if copied.is_empty() {
        return Err(err(weights, format!("no tensor of network `{}` matches vars_to_restore `{names}`", model.name)));
    }
    Ok(copied)
}
