//! What a training run checks before it reads any data, so that a typo is named in a
//! second, not after minutes of reading a cohort: the devices, and every component the
//! configuration names (network, loss, each augmentation) built once with its
//! parameters, which makes each plugin check them against its schema. Every problem is
//! listed at once. The configuration's keys and values were checked when it loaded, and
//! the plugins when the registry was loaded.

use tch::Device;

use super::{EngineError, Model};
use crate::config::Settings;
use crate::plugins::Registry;

/// The devices of `device_names`, once the devices and the components of `settings`
/// have been checked. Builds each component once (on the CPU) and drops it; call it
/// before seeding libtorch, since building a network draws its initial weights.
///
/// # Errors
/// [`EngineError::Preflight`] listing every problem found: a device that cannot be used,
/// an unknown component (with the nearest name) or a parameter a plugin refuses.
pub fn check(settings: &Settings, registry: &Registry, device_names: &[String]) -> Result<Vec<Device>, EngineError> {
    let mut problems = Vec::new();
    let devices = crate::torch::select_devices(device_names).map_err(|e| problems.push(e.to_string())).ok();
    if let Err(e) = registry.new_network(&settings.network.name, &Model::network_config(settings)) {
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
