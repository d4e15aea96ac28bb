//! What a training run checks before it reads any data, so that a typo is named in a
//! second, not after minutes of reading a cohort: the devices, and every component the
//! configuration names (network, loss, each augmentation) built once with its
//! parameters, which makes each plugin check them against its schema. Every problem is
//! listed at once. The configuration's keys and values were checked when it loaded, and
//! the plugins when the registry was loaded. The network is built for the channels of
//! the first subject's images, read from their headers only.

use std::path::Path;

use tch::Device;

use super::{EngineError, Model};
use crate::config::Settings;
use crate::data::{find_subjects, ChannelLayout, Needs};
use crate::plugins::Registry;

/// The network's `in_channels` as the data will give it: the channels of the first
/// subject's images (relative paths from `base_dir`), from their headers. Data that
/// cannot be found or read is the data check's to report: until then the network is
/// checked with one channel per image section.
fn expected_in_channels(settings: &Settings, base_dir: &Path) -> usize {
    let sections = &settings.segmentation.image;
    find_subjects(settings, base_dir, Needs::default())
        .ok()
        .and_then(|subjects| ChannelLayout::of_subject(sections, subjects.first()?).ok())
        .unwrap_or_else(|| ChannelLayout::one_per_section(sections))
        .total()
}

/// The devices of `device_names`, once the devices and the components of `settings`
/// (data paths relative to `base_dir`) have been checked. Builds each component once
/// (on the CPU) and drops it; call it before seeding libtorch, since building a network
/// draws its initial weights.
///
/// # Errors
/// [`EngineError::Preflight`] listing every problem found: a device that cannot be used,
/// an unknown component (with the nearest name) or a parameter a plugin refuses.
pub fn check(
    settings: &Settings,
    registry: &Registry,
    base_dir: &Path,
    device_names: &[String],
) -> Result<Vec<Device>, EngineError> {
    let mut problems = Vec::new();
    let devices = crate::torch::select_devices(device_names).map_err(|e| problems.push(e.to_string())).ok();
    let network_config = Model::network_config(settings, expected_in_channels(settings, base_dir));
    if let Err(e) = registry.new_network(&settings.network.name, &network_config) {
        problems.push(e.to_string());
    }
    let loss_params = serde_json::Value::Object(settings.training.loss_params.clone());
    if let Err(e) = registry.new_loss(&settings.training.loss, &loss_params) {
        problems.push(e.to_string());
    }
    for entry in crate::config::augmentation::chain(&settings.training) {
        if let Err(e) = registry.new_augmentation(&entry.name, &serde_json::Value::Object(entry.params)) {
            problems.push(e.to_string());
        }
    }
    match devices {
        Some(devices) if problems.is_empty() => Ok(devices),
        _ => Err(EngineError::Preflight(problems)),
    }
}
