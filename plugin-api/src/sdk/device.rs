//! Device names as configs spell them.

use tch::Device;

use crate::PluginError;

/// Parses `cpu`, `cuda`, `cuda:N` or `mps`.
///
/// # Errors
/// Any other spelling, naming what is accepted.
pub fn parse_device(name: &str) -> Result<Device, PluginError> {
    let name = name.trim();
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        "mps" => Ok(Device::Mps),
        _ => name.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()).map(Device::Cuda).ok_or_else(|| {
            PluginError::new(format!("unknown device `{name}`: expected `cpu`, `cuda`, `cuda:N` or `mps`"))
        }),
    }
}
